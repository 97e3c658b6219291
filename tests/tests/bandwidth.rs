//! bandwidth chained after bridge: both directions are measurably capped (within a loose
//! band), every verb in every version, the ifb goes on DEL and GC, bad input is refused.

use ferrocni_tests::{
    address, require_root, with_previous, Call, Impl, NetnsGuard, Outcome, Sandbox, TempDir,
    VERSIONS,
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
        let mut config = json!({"cniVersion": version, "name": NET, "type": "bandwidth",
                                "prevResult": ferrocni_tests::convert(previous, version)});
        if let (Some(target), Some(extra)) = (config.as_object_mut(), limits.as_object()) {
            target.extend(extra.clone());
        }
        config
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
