//! bandwidth chained after bridge: both directions are measurably capped (within a loose
//! band), every verb in every version, the ifb goes on DEL and GC, bad input is refused.

use ferrocni_tests::{
    address, require_root, require_tools, with_previous, Call, Impl, NetnsGuard, Outcome, Sandbox,
    TempDir, VERSIONS,
};
use serde_json::{json, Value};

const NET: &str = "bwnet";
/// 16 Mbit/s: 2 MB/s, slow enough to measure, fast enough for a short test.
const RATE: u64 = 16_000_000;
const MEGABYTES: usize = 3;

struct Node {
    sandbox: Sandbox,
}

impl Node {
    fn new() -> Self {
        Node {
            sandbox: Sandbox::new("bridge", NET),
        }
    }

    fn attach(&self, id: &str, container: &NetnsGuard) -> Value {
        let mut config = self.sandbox.conf(
            "1.0.0",
            json!([[{"subnet": "10.130.0.0/24"}]]),
            json!({"isGateway": true}),
        );
        config["bridge"] = json!("bwbr0");
        self.sandbox
            .call(Impl::Ours, "ADD", id, container, &config)
            .success()
    }

    fn conf(version: &str, previous: &Value, limits: Value) -> Value {
        ferrocni_tests::extended(
            json!({"cniVersion": version, "name": NET, "type": "bandwidth",
                                "prevResult": ferrocni_tests::convert(previous, version)}),
            &limits,
        )
    }

    fn call(&self, command: &str, id: &str, container: &NetnsGuard, config: &Value) -> Outcome {
        Call::new(Impl::Ours, "bandwidth", command)
            .attachment(id, &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&self.sandbox.ns)
    }

    fn ifbs(&self) -> Vec<String> {
        self.sandbox
            .ns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("bwp"))
            .collect()
    }
}

fn limits() -> Value {
    json!({"ingressRate": RATE, "ingressBurst": 256_000, "egressRate": RATE, "egressBurst": 256_000})
}

/// Bytes per second of a download from the container (its egress) and an upload to it (its
/// ingress), each of `MEGABYTES`.
fn throughput(
    host: &NetnsGuard,
    container: &NetnsGuard,
    ip: &str,
    docroot: &TempDir,
) -> (f64, f64) {
    std::fs::write(docroot.path().join("blob"), vec![7u8; MEGABYTES << 20]).expect("blob");
    let _web = container.http_server(80, "index", docroot);
    let download = host.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{speed_download}",
        &format!("http://{ip}/blob"),
    ]);
    let down: f64 = String::from_utf8_lossy(&download.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    let sink = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen()\nwhile True:\n c,_=s.accept()\n while c.recv(65536): pass\n c.close()\n";
    let _sink = container.spawn(&["python3", "-c", sink]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sender = format!(
        "import socket,time\ns=socket.create_connection(('{ip}',9000))\nd=b'x'*({MEGABYTES}<<20)\nt=time.time()\ns.sendall(d)\ns.shutdown(socket.SHUT_WR)\ns.recv(1)\nprint(len(d)/(time.time()-t))\n"
    );
    let upload = host.exec(&["python3", "-c", &sender]);
    let up: f64 = String::from_utf8_lossy(&upload.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    (down, up)
}

#[test]
fn limits_cap_throughput_both_ways() {
    require_root!();
    require_tools!("curl", "python3");
    let node = Node::new();
    let docroot = TempDir::new("bw");
    let free = NetnsGuard::new("fbw");
    let free_result = node.attach("free", &free);
    let (free_down, free_up) =
        throughput(&node.sandbox.ns, &free, &address(&free_result, 0), &docroot);

    let capped = NetnsGuard::new("fbw");
    let capped_result = node.attach("capped", &capped);
    let config = Node::conf("1.0.0", &capped_result, limits());
    node.call("ADD", "capped", &capped, &config).success();
    // A runtime retrying ADD: the same ifb, and one redirect filter rather than two.
    let result = node.call("ADD", "capped", &capped, &config).success();
    assert_eq!(node.ifbs().len(), 1, "one ifb for egress");
    let host_veth = result["interfaces"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find_map(|i| i["name"].as_str().filter(|n| n.starts_with("veth")))
        })
        .expect("the host veth in the result");
    let filters = node
        .sandbox
        .ns
        .exec(&["tc", "filter", "show", "dev", host_veth, "parent", "ffff:"]);
    let filters = String::from_utf8_lossy(&filters.stdout);
    assert_eq!(filters.matches("mirred").count(), 1, "{filters}");
    assert!(result["interfaces"].as_array().is_some_and(|i| i
        .iter()
        .any(|i| i["name"].as_str().is_some_and(|n| n.starts_with("bwp")))));
    let (down, up) = throughput(
        &node.sandbox.ns,
        &capped,
        &address(&capped_result, 0),
        &docroot,
    );
    let cap = RATE as f64 / 8.0;
    assert!(
        down > 0.0 && down < cap * 1.3,
        "egress capped near {cap} B/s: {down}"
    );
    assert!(
        up > 0.0 && up < cap * 1.3,
        "ingress capped near {cap} B/s: {up}"
    );
    assert!(
        free_down > cap * 3.0 && free_up > cap * 3.0,
        "unlimited is far faster: {free_down} {free_up}"
    );
    node.call("CHECK", "capped", &capped, &with_previous(&config, &result))
        .success();
    node.call("DEL", "capped", &capped, &with_previous(&config, &result))
        .success();
    assert!(node.ifbs().is_empty());
    node.call("DEL", "capped", &capped, &config).success();
}

#[test]
fn every_verb_in_every_version_and_gc() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fbw");
    let main = node.attach("v", &container);
    for version in VERSIONS.iter().filter(|v| **v >= "0.3.0") {
        let config = Node::conf(version, &main, limits());
        let result = node.call("ADD", "v", &container, &config).success();
        assert_eq!(result["cniVersion"], *version);
        if *version >= "0.4.0" {
            node.call("CHECK", "v", &container, &config).success();
        }
        if *version == "1.1.0" {
            Call::new(Impl::Ours, "bandwidth", "STATUS")
                .stdin(&config)
                .run_in(&node.sandbox.ns)
                .success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([]);
            Call::new(Impl::Ours, "bandwidth", "GC")
                .stdin(&gc)
                .run_in(&node.sandbox.ns)
                .success();
            assert!(node.ifbs().is_empty(), "GC removed the stale ifb");
        }
        node.call("DEL", "v", &container, &config).success();
        assert!(node.ifbs().is_empty());
        // The qdiscs live on the host veth until the main plugin deletes it; clear them so
        // the next version's ADD starts from a bare veth, as after a real DEL.
        let host_veth = main["interfaces"][1]["name"].as_str().expect("host veth");
        node.sandbox
            .ns
            .exec(&["tc", "qdisc", "del", "dev", host_veth, "root"]);
        node.sandbox
            .ns
            .exec(&["tc", "qdisc", "del", "dev", host_veth, "ingress"]);
    }
    Call::new(Impl::Ours, "bandwidth", "ADD")
        .attachment("v", &container.path_str(), "eth0")
        .stdin(Node::conf("0.2.0", &main, limits()))
        .run_in(&node.sandbox.ns)
        .assert_error(1, "0.2.0");
}

#[test]
fn bad_inputs_are_refused_before_anything_changes() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fbw");
    let main = node.attach("bad", &container);
    for (limits, needle) in [
        (json!({"ingressRate": 1000}), "ingressBurst"),
        (json!({"egressBurst": 1000}), "egressRate"),
        (
            json!({"egressRate": 1000, "egressBurst": 8u64 << 33}),
            "egressBurst",
        ),
    ] {
        node.call(
            "ADD",
            "bad",
            &container,
            &Node::conf("1.0.0", &main, limits),
        )
        .assert_error(7, needle);
    }
    let mut no_previous = Node::conf("1.0.0", &main, limits());
    no_previous.as_object_mut().map(|c| c.remove("prevResult"));
    node.call("ADD", "bad", &container, &no_previous)
        .assert_error(7, "prevResult");
    let lo = Call::new(Impl::Ours, "bandwidth", "ADD")
        .attachment("bad", &container.path_str(), "lo")
        .stdin(Node::conf("1.0.0", &main, limits()))
        .run_in(&node.sandbox.ns);
    lo.assert_error(7, "not a veth");
    // A veth whose both ends are in the container: nothing on the host to shape.
    container.exec_ok(&[
        "ip", "link", "add", "inner0", "type", "veth", "peer", "inner1",
    ]);
    Call::new(Impl::Ours, "bandwidth", "ADD")
        .attachment("bad", &container.path_str(), "inner0")
        .stdin(Node::conf("1.0.0", &main, limits()))
        .run_in(&node.sandbox.ns)
        .assert_error(7, "host end of inner0's veth is not in this namespace");
    assert!(node.ifbs().is_empty());
    let runtime = {
        let mut c = Node::conf("1.0.0", &main, json!({}));
        c["runtimeConfig"] = json!({"bandwidth": {"egressRate": RATE, "egressBurst": 256_000}});
        c
    };
    node.call("ADD", "bad", &container, &runtime).success();
    assert_eq!(
        node.ifbs().len(),
        1,
        "runtimeConfig.bandwidth applies when the config sets none"
    );
    node.call("DEL", "bad", &container, &runtime).success();
}

/// An ADD killed at any of its netlink requests (strace fault injection; tc is killed at its
/// own too), then retried as a runtime would: the retry succeeds, even with an ifb left
/// unlabelled, and DEL leaves no ifb.
#[test]
fn a_killed_then_retried_add_is_still_undone_by_del() {
    ferrocni_tests::require_fault_injection!();
    let node = Node::new();
    let container = NetnsGuard::new("fbw");
    let main = node.attach("killed", &container);
    let config = Node::conf("1.0.0", &main, limits());
    ferrocni_tests::kill_at_each_request(|request| {
        let killed = Call::ours("bandwidth", "ADD", "killed", &container, &config)
            .killed_at_send(request)
            .run_in(&node.sandbox.ns);
        if killed.code != 0 {
            node.call("ADD", "killed", &container, &config).success();
        }
        assert_eq!(node.ifbs().len(), 1, "request {request}: one ifb");
        node.call("DEL", "killed", &container, &config).success();
        assert!(
            node.ifbs().is_empty(),
            "request {request}: {:?}",
            node.ifbs()
        );
        killed.code == 0
    });
}

/// Rates and bursts TBF cannot hold are refused with code 7 naming the field, from the
/// config's keys and from runtimeConfig alike, before anything changes; the reference
/// refuses every one of them too (its own check or the kernel's EINVAL). The edges it takes
/// work in ours, CHECK included, and the queue limit never wraps.
#[test]
fn limits_tbf_cannot_hold_are_refused_as_the_reference_refuses_them() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fbw");
    let main = node.attach("edge", &container);
    let host_veth = main["interfaces"][1]["name"]
        .as_str()
        .expect("host veth")
        .to_string();
    let reference = Impl::Reference.available("bandwidth");
    let run = |implementation: Impl, command: &str, config: &Value| {
        Call::new(implementation, "bandwidth", command)
            .attachment("edge", &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&node.sandbox.ns)
    };
    // The reference's DEL refuses a config it refuses at ADD: both DEL with a sane one.
    let sane = Node::conf("1.0.0", &main, limits());
    let clean = || {
        for implementation in [Impl::Ours, Impl::Reference] {
            if implementation == Impl::Ours || reference {
                run(implementation, "DEL", &sane).success();
            }
        }
        for parent in ["root", "ingress"] {
            node.sandbox
                .ns
                .exec(&["tc", "qdisc", "del", "dev", &host_veth, parent]);
        }
    };
    let both_ways = |rate: u64, burst: u64| json!({"ingressRate": rate, "ingressBurst": burst, "egressRate": rate, "egressBurst": burst});
    let refused: [(u64, u64, &str); 8] = [
        (u64::MAX, 256_000, "ingressRate"),
        (i64::MAX as u64, 256_000, "ingressRate"),
        // 32,000,000,001 bytes a second: a 32,000-byte burst lasts under a microsecond.
        (256_000_000_008, 256_000, "ingressRate"),
        (7, 256_000, "ingressRate"),
        (8, 7, "ingressBurst"),
        (1000, 8 * u64::from(u32::MAX), "ingressBurst"),
        // One byte at 1,000,000 bytes a second: a microsecond, 15 ticks of 64 ns, no byte.
        (8_000_000, 8, "ingressBurst"),
        // 275 bytes at one a second: more 64 ns ticks than 32 bits count; they wrap to
        // under a byte.
        (8, 2_200, "ingressBurst"),
    ];
    for (rate, burst, field) in refused {
        let limits = both_ways(rate, burst);
        let own = Node::conf("1.0.0", &main, limits.clone());
        let mut runtime = Node::conf("1.0.0", &main, json!({}));
        runtime["runtimeConfig"] = json!({ "bandwidth": limits });
        for config in [&own, &runtime] {
            run(Impl::Ours, "ADD", config).assert_error(7, field);
            assert!(node.ifbs().is_empty(), "{rate}/{burst}: nothing made");
        }
        if reference {
            let theirs = run(Impl::Reference, "ADD", &own);
            assert_ne!(theirs.code, 0, "the reference takes {rate}/{burst}");
            clean();
        }
    }
    // The edges of what the reference takes: a microsecond of burst, a rate that is not a
    // whole number of bytes, the least rate and burst, a burst just under 4 GiB whose queue
    // limit (burst plus 25 ms at the rate) would pass 32 bits.
    let tbf_limit = |device: &str| {
        let out = node
            .sandbox
            .ns
            .exec(&["tc", "-j", "qdisc", "show", "dev", device]);
        let qdiscs: Value = serde_json::from_slice(&out.stdout).expect("tc -j");
        qdiscs[0]["options"]["limit"].as_u64()
    };
    for (rate, burst) in [
        (256_000_000_000, 256_000),
        (1001, 256_000),
        (8, 8),
        (1000, 8 * u64::from(u32::MAX) - 8),
    ] {
        let config = Node::conf("1.0.0", &main, both_ways(rate, burst));
        if reference {
            run(Impl::Reference, "ADD", &config).success();
            clean();
        }
        let result = run(Impl::Ours, "ADD", &config).success();
        run(Impl::Ours, "CHECK", &with_previous(&config, &result)).success();
        if let Some(limit) = tbf_limit(&host_veth) {
            assert!(
                limit >= burst / 8,
                "{rate}/{burst}: the queue holds the burst, not {limit} bytes"
            );
        }
        clean();
    }
}

/// The host end of the container's veth may be named by another plugin with characters that
/// tc's batch text cannot carry (`"` and `#`, which the kernel allows): the limits still
/// land on exactly that link, and DEL still removes the ifb.
#[test]
fn a_host_link_whose_name_holds_quotes_and_hashes_is_shaped() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fbq");
    let host_end = "v\"b#1";
    node.sandbox.ns.exec_ok(&[
        "ip",
        "link",
        "add",
        host_end,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &container.path_str(),
    ]);
    let previous = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": host_end},
            {"name": "eth0", "sandbox": container.path_str()}
        ],
        "ips": [{"address": "10.131.0.2/24", "interface": 1}]
    });
    let config = Node::conf("1.0.0", &previous, limits());
    node.call("ADD", "q", &container, &config).success();
    let qdiscs = node
        .sandbox
        .ns
        .exec(&["tc", "qdisc", "show", "dev", host_end]);
    let shown = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(
        shown.contains("tbf") && shown.contains("ingress"),
        "both limits on {host_end:?}: {shown}"
    );
    node.call("CHECK", "q", &container, &config).success();
    node.call("DEL", "q", &container, &config).success();
    assert!(node.ifbs().is_empty(), "DEL removed the ifb");
}

/// An ifb an earlier version made names its owner as `<network>/<id>/<ifname>` in its alias:
/// a retried ADD still takes it for its own, and GC removes it only once its attachment is
/// no longer valid.
#[test]
fn ifbs_an_earlier_version_labelled_stay_their_owners() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fbo");
    let main = node.attach("old", &container);
    let config = Node::conf("1.1.0", &main, limits());
    // Every version names the ifb `bwp` and the head of sha512(network + id + ifname).
    let ifb = format!("bwp{}", cni::id::digest(&format!("{NET}oldeth0"), 12));
    let alias = format!("ferrocni-bandwidth {NET}/old/eth0");
    node.sandbox
        .ns
        .exec_ok(&["ip", "link", "add", &ifb, "type", "ifb"]);
    node.sandbox
        .ns
        .exec_ok(&["ip", "link", "set", &ifb, "alias", &alias]);
    node.call("ADD", "old", &container, &config).success();
    assert_eq!(
        node.ifbs(),
        std::slice::from_ref(&ifb),
        "ADD kept the ifb as its own"
    );
    let gc = |valid: Value| {
        let mut gc = config.clone();
        gc["cni.dev/valid-attachments"] = valid;
        Call::new(Impl::Ours, "bandwidth", "GC")
            .stdin(&gc)
            .run_in(&node.sandbox.ns)
            .success();
    };
    gc(json!([{"containerID": "old", "ifname": "eth0"}]));
    assert_eq!(node.ifbs(), [ifb], "GC keeps a valid attachment's ifb");
    gc(json!([]));
    assert!(node.ifbs().is_empty(), "GC removed the stale ifb");
    node.call("DEL", "old", &container, &config).success();
}
