//! bridge against the kernel: reachability, masquerade through a routed "remote", VLANs,
//! port options, every verb in every version, failure clean-up, concurrency, and the
//! reference as an oracle. After each test nothing of the attachment is left (checked).

use ferrocni_tests::{
    address, require_reference, require_root, require_tools, wire, with_previous, Call, Impl,
    NetnsGuard, Sandbox, VERSIONS,
};
use serde_json::{json, Value};
use std::collections::HashSet;

const NET: &str = "brnet";

/// The bridge sandbox: the shared fixture plus a bridge name unique to the test.
struct Host {
    sandbox: Sandbox,
    bridge: String,
}

impl std::ops::Deref for Host {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Host {
    fn new() -> Self {
        Host {
            sandbox: Sandbox::new("bridge", NET),
            bridge: ferrocni_tests::unique("br"),
        }
    }

    /// A bridge config on `subnet` (dual-stack when `v6` is given) with `extra` keys.
    fn conf(&self, version: &str, subnet: &str, v6: Option<&str>, extra: Value) -> Value {
        let mut ranges = vec![json!([{"subnet": subnet}])];
        if let Some(v6) = v6 {
            ranges.push(json!([{"subnet": v6}]));
        }
        let mut config = self.sandbox.conf(version, json!(ranges), extra);
        if config.get("bridge").is_none() {
            config["bridge"] = json!(self.bridge);
        }
        config
    }

    /// The usual gateway config, masquerading, IPv4 only.
    fn gateway_with_masquerade(&self, version: &str, subnet: &str) -> Value {
        self.conf(
            version,
            subnet,
            None,
            json!({"isGateway": true, "ipMasq": true}),
        )
    }

    fn add(&self, id: &str, container: &NetnsGuard, config: &Value) -> Value {
        self.call(Impl::Ours, "ADD", id, container, config)
            .success()
    }

    fn del(&self, id: &str, container: &NetnsGuard, config: &Value, previous: &Value) {
        self.call(
            Impl::Ours,
            "DEL",
            id,
            container,
            &with_previous(config, previous),
        )
        .success();
    }

    /// Masquerade elements as another plugin run left them: (address, owner comment).
    fn plant_masquerade(&self, elements: &[(&str, &str)]) {
        let mut batch = "add table inet ferrocni; \
                         add map inet ferrocni snat4 { type ipv4_addr : mark; }"
            .to_string();
        for (address, comment) in elements {
            batch.push_str(&format!(
                "; add element inet ferrocni snat4 {{ {address} comment \"{comment}\" : 0x1 }}"
            ));
        }
        self.ns.exec_ok(&["nft", &batch]);
    }

    /// Only the bridge (and links the test made, by prefix) remain; nothing else of ours.
    fn assert_clean(&self, extra: &[&str]) {
        let mut keep = vec![self.bridge.as_str()];
        keep.extend_from_slice(extra);
        self.sandbox.assert_clean(&keep);
    }
}

#[test]
fn containers_reach_each_other_and_the_gateway_dual_stack() {
    require_root!();
    let host = Host::new();
    let config = host.conf(
        "1.0.0",
        "10.81.0.0/24",
        Some("fd00:81::/64"),
        json!({"isGateway": true}),
    );
    let (c1, c2) = (NetnsGuard::new("fbc"), NetnsGuard::new("fbc"));
    let r1 = host.add("one", &c1, &config);
    let r2 = host.add("two", &c2, &config);
    assert_eq!(r1["interfaces"].as_array().map(Vec::len), Some(3), "{r1}");
    assert_eq!(r1["interfaces"][0]["name"], host.bridge);
    assert_eq!(r1["interfaces"][2]["sandbox"], c1.path_str());
    assert_eq!(r1["ips"][0]["interface"], 2);
    assert_eq!(r1["ips"][0]["gateway"], "10.81.0.1");
    assert!(c1.ping(&address(&r2, 0)), "container to container, IPv4");
    assert!(c2.ping(&address(&r1, 1)), "container to container, IPv6");
    assert!(c1.ping("10.81.0.1"), "container to gateway");
    assert!(c1.ping("fd00:81::1"), "container to IPv6 gateway");
    let routes = c1.ip_json(&["route", "show", "default"]);
    assert_eq!(
        routes[0]["gateway"], "10.81.0.1",
        "IPAM's default route goes via the gateway"
    );
    host.del("one", &c1, &config, &r1);
    host.del("two", &c2, &config, &r2);
    host.del("two", &c2, &config, &r2);
    host.assert_clean(&[]);
}

/// A "remote" namespace routed through the host knows no route back to the containers, so
/// only masquerading lets a container reach it.
fn masquerade_case(backend: &str) {
    masquerade_case_in(&Host::new(), backend);
}

fn masquerade_case_in(host: &Host, backend: &str) {
    let remote = NetnsGuard::new("fbr");
    wire(&host.ns, "172.31.81.1/30", &remote, "172.31.81.2/30");
    let masq = host.conf(
        "1.0.0",
        "10.82.0.0/24",
        None,
        json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": backend}),
    );
    let container = NetnsGuard::new("fbc");
    let result = host.add("masq", &container, &masq);
    assert!(
        container.ping("172.31.81.2"),
        "{backend}: reaches the remote through NAT"
    );
    host.call(
        Impl::Ours,
        "CHECK",
        "masq",
        &container,
        &with_previous(&masq, &result),
    )
    .success();
    host.del("masq", &container, &masq, &result);
    host.assert_clean(&["wa"]);

    let plain = host.conf("1.0.0", "10.82.0.0/24", None, json!({"isGateway": true}));
    let result = host.add("plain", &container, &plain);
    assert!(
        !container.ping("172.31.81.2"),
        "{backend}: without ipMasq the remote cannot answer"
    );
    host.del("plain", &container, &plain, &result);
    host.assert_clean(&["wa"]);
}

#[test]
fn masquerade_with_nftables() {
    require_root!();
    // An element another attachment left for the address ADD is about to get (a crash
    // before its DEL) is stale: ADD takes it over, and DEL leaves nothing of either.
    let host = Host::new();
    host.plant_masquerade(&[("10.82.0.2", "brnet/gone/eth0")]);
    masquerade_case_in(&host, "nftables");
}

#[test]
fn masquerade_with_iptables_uses_the_reference_chains() {
    require_root!();
    masquerade_case("iptables");
    let host = Host::new();
    let config = host.conf(
        "1.0.0",
        "10.83.0.0/24",
        None,
        json!({"ipMasq": true, "ipMasqBackend": "iptables"}),
    );
    let container = NetnsGuard::new("fbc");
    let result = host.add("ipt", &container, &config);
    let nat = host.ns.iptables_nat(false);
    assert!(
        nat.contains(r#"--comment "name: \"brnet\" id: \"ipt\"""#),
        "{nat}"
    );
    assert!(nat.contains("-A POSTROUTING -s 10.83.0.2/32"), "{nat}");
    assert!(nat.contains("-j MASQUERADE"), "{nat}");
    host.del("ipt", &container, &config, &result);
    host.assert_clean(&[]);
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let host = Host::new();
    for version in VERSIONS {
        let config = host.gateway_with_masquerade(version, "10.84.0.0/24");
        let container = NetnsGuard::new("fbc");
        let result = host.add("verbs", &container, &config);
        assert_eq!(result["cniVersion"], version);
        if version < "0.3.0" {
            assert_eq!(result["ip4"]["gateway"], "10.84.0.1", "{result}");
        } else {
            assert_eq!(
                result["interfaces"].as_array().map(Vec::len),
                Some(3),
                "{result}"
            );
        }
        let previous = with_previous(&config, &result);
        if version >= "0.4.0" {
            host.call(Impl::Ours, "CHECK", "verbs", &container, &previous)
                .success();
            host.call(Impl::Ours, "CHECK", "verbs", &container, &config)
                .assert_error(7, "prevResult");
        }
        if version == "1.1.0" {
            host.call_network("STATUS", &config).success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([{"containerID": "verbs", "ifname": "eth0"}]);
            host.call_network("GC", &gc).success();
            assert_eq!(host.reserved().len(), 1, "GC keeps the valid attachment");
            host.call(Impl::Ours, "CHECK", "verbs", &container, &previous)
                .success();
        }
        host.call(Impl::Ours, "DEL", "verbs", &container, &previous)
            .success();
        host.call(Impl::Ours, "DEL", "verbs", &container, &previous)
            .success();
        host.assert_clean(&[]);
    }
}

/// CHECK has the IPAM plugin check its part too: with the interface in place but its
/// reservation gone, CHECK fails with host-local's words.
#[test]
fn check_asks_the_ipam_plugin_about_the_reservation() {
    require_root!();
    let host = Host::new();
    let config = host.conf("1.0.0", "10.88.0.0/24", None, json!({}));
    let container = NetnsGuard::new("fbk");
    let result = host.add("lost", &container, &config);
    let previous = with_previous(&config, &result);
    host.call(Impl::Ours, "CHECK", "lost", &container, &previous)
        .success();
    let reserved = host.reserved();
    assert_eq!(reserved.len(), 1, "{reserved:?}");
    let file = host.store.path().join(NET).join(&reserved[0]);
    std::fs::remove_file(&file).expect("the reservation removed");
    host.call(Impl::Ours, "CHECK", "lost", &container, &previous)
        .assert_error(
            999,
            "failed to find address added by container lost on eth0",
        );
    host.del("lost", &container, &config, &result);
    host.assert_clean(&[]);
}

#[test]
fn gc_removes_rules_and_reservations_of_unlisted_attachments() {
    require_root!();
    let host = Host::new();
    let config = host.conf(
        "1.1.0",
        "10.85.0.0/24",
        Some("fd00:85::/64"),
        json!({"ipMasq": true}),
    );
    let (keep, stale) = (NetnsGuard::new("fbc"), NetnsGuard::new("fbc"));
    host.add("keep", &keep, &config);
    host.add("stale", &stale, &config);
    drop(stale);
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    host.call_network("GC", &gc).success();
    assert_eq!(
        host.reserved().len(),
        2,
        "keep's two addresses stay: {:?}",
        host.reserved()
    );
    let ruleset = host.ns.nft_ruleset();
    assert!(
        ruleset.contains("brnet:keep:eth0") && !ruleset.contains("brnet:stale:eth0"),
        "{ruleset}"
    );
    gc["cni.dev/valid-attachments"] = json!([]);
    host.call_network("GC", &gc).success();
    drop(keep);
    host.assert_clean(&[]);
}

/// Earlier versions commented an attachment's elements `<network>/<containerID>/<ifname>`:
/// a DEL without prevResult and GC find them by that name too.
#[test]
fn elements_an_earlier_version_commented_are_removed() {
    require_root!();
    let host = Host::new();
    host.plant_masquerade(&[
        ("10.86.9.8", "brnet/old/eth0"),
        ("10.86.9.9", "brnet/gone/eth0"),
    ]);
    let config = host.conf("1.1.0", "10.86.9.0/24", None, json!({"ipMasq": true}));
    let container = NetnsGuard::new("fbc");
    host.call(Impl::Ours, "DEL", "old", &container, &config)
        .success();
    let ruleset = host.ns.nft_ruleset();
    assert!(
        !ruleset.contains("10.86.9.8 ") && ruleset.contains("10.86.9.9 "),
        "DEL removed its own element only: {ruleset}"
    );
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    host.call_network("GC", &gc).success();
    let ruleset = host.ns.nft_ruleset();
    assert!(!ruleset.contains("10.86.9.9 "), "GC: {ruleset}");
    host.assert_clean(&[]);
}

/// Earlier versions kept a chain per attachment, jumped to from verdict maps of other names
/// (`masq4`): the listing reads every map of the table, whatever its types, so DEL without
/// prevResult and GC find those elements by owner too and remove their chains with them.
#[test]
fn verdict_elements_of_earlier_versions_go_with_their_chains() {
    require_root!();
    let host = Host::new();
    let mut batch = "add table inet ferrocni; \
                     add map inet ferrocni masq4 { type ipv4_addr : verdict; }"
        .to_string();
    for (address, id) in [("10.86.9.8", "old"), ("10.86.9.9", "gone")] {
        batch.push_str(&format!(
            "; add chain inet ferrocni cni-{id}; \
             add element inet ferrocni masq4 {{ {address} comment \"brnet:{id}:eth0\" : jump cni-{id} }}"
        ));
    }
    host.ns.exec_ok(&["nft", &batch]);
    let config = host.conf("1.1.0", "10.86.9.0/24", None, json!({"ipMasq": true}));
    let container = NetnsGuard::new("fbc");
    host.call(Impl::Ours, "DEL", "old", &container, &config)
        .success();
    let table = host.ns.nft_table("ferrocni");
    assert!(
        !table.contains("10.86.9.8 ") && !table.contains("chain cni-old"),
        "DEL removed its element and chain: {table}"
    );
    assert!(
        table.contains("10.86.9.9 ") && table.contains("chain cni-gone"),
        "DEL left another's: {table}"
    );
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    host.call_network("GC", &gc).success();
    let table = host.ns.nft_table("ferrocni");
    assert!(
        !table.contains("10.86.9.9 ") && !table.contains("chain cni-gone"),
        "GC: {table}"
    );
    host.assert_clean(&[]);
}

#[test]
fn del_cleans_up_without_the_namespace() {
    require_root!();
    let host = Host::new();
    let config = host.conf("1.0.0", "10.86.0.0/24", None, json!({"ipMasq": true}));
    let container = NetnsGuard::new("fbc");
    host.add("gone", &container, &config);
    let path = container.path_str();
    drop(container);
    // The runtime lost the namespace and the cached result: no prevResult, a dead path.
    Call::new(Impl::Ours, "bridge", "DEL")
        .attachment("gone", &path, "eth0")
        .stdin(&config)
        .run_in(&host.ns)
        .success();
    host.assert_clean(&[]);
    let other = NetnsGuard::new("fbc");
    host.add("nonetns", &other, &config);
    drop(other);
    Call::new(Impl::Ours, "bridge", "DEL")
        .attachment("nonetns", "", "eth0")
        .without_env("CNI_NETNS")
        .stdin(&config)
        .run_in(&host.ns)
        .success();
    host.assert_clean(&[]);
}

#[test]
fn a_failed_add_leaves_nothing_behind() {
    require_root!();
    let host = Host::new();
    let tiny = host.conf(
        "1.0.0",
        "10.87.0.0/24",
        None,
        json!({"ipMasq": true, "ipam": {"type": "host-local", "dataDir": host.store.path_str(),
               "ranges": [[{"subnet": "10.87.0.0/24", "rangeStart": "10.87.0.2", "rangeEnd": "10.87.0.2"}]]}}),
    );
    let first = NetnsGuard::new("fbc");
    let result = host.add("first", &first, &tiny);
    let before = host.ns.links();
    let second = NetnsGuard::new("fbc");
    host.call(Impl::Ours, "ADD", "second", &second, &tiny)
        .assert_error(999, "no IP addresses available");
    assert_eq!(
        host.ns.links(),
        before,
        "the veth made before IPAM failed is gone"
    );
    assert!(second.links().is_empty());
    assert_eq!(host.reserved(), ["10.87.0.2"]);

    let mut missing_ipam = tiny.clone();
    missing_ipam["ipam"]["type"] = json!("no-such-ipam");
    host.call(Impl::Ours, "ADD", "second", &second, &missing_ipam)
        .assert_error(7, "no-such-ipam");
    assert_eq!(host.ns.links(), before);

    // A gateway on no link of the container: refused late, once veth and address exist.
    let mut unreachable = tiny.clone();
    unreachable["ipam"]["ranges"] =
        json!([[{"subnet": "10.87.0.0/24", "rangeStart": "10.87.0.9"}]]);
    unreachable["ipam"]["routes"] = json!([{"dst": "10.1.0.0/16", "gw": "10.8.9.9"}]);
    let refused = host.call(Impl::Ours, "ADD", "second", &second, &unreachable);
    refused.assert_error(999, "cannot add route 10.1.0.0/16 via 10.8.9.9");
    refused.assert_error(999, "Nexthop has invalid gateway");
    assert_eq!(host.ns.links(), before);
    assert!(second.links().is_empty());
    assert_eq!(host.reserved(), ["10.87.0.2"]);

    let mut bad_gateway = host.conf("1.0.0", "10.87.0.0/24", None, json!({"isGateway": true}));
    bad_gateway["ipam"]["ranges"] =
        json!([[{"subnet": "10.87.0.0/24", "gateway": "10.87.0.254", "rangeStart": "10.87.0.9"}]]);
    // The bridge already has 10.87.0.1 from nowhere: put it there to force a gateway conflict.
    host.ns
        .exec_ok(&["ip", "addr", "add", "10.87.0.1/24", "dev", &host.bridge]);
    host.call(Impl::Ours, "ADD", "second", &second, &bad_gateway)
        .assert_error(999, "already has an IP address");
    assert_eq!(
        host.ns.links(),
        before,
        "undone after the gateway step failed"
    );
    assert_eq!(
        host.reserved(),
        ["10.87.0.2"],
        "the reservation was released again"
    );
    host.del("first", &first, &tiny, &result);
    host.assert_clean(&[]);
}

/// An ADD killed at any of its kernel requests (a runtime's timeout, the OOM killer) leaves
/// nothing that a DEL without a result to go by cannot remove: strace kills the plugin at
/// its first, second, ... netlink send.
#[test]
fn an_add_killed_at_any_request_is_undone_by_del() {
    ferrocni_tests::require_fault_injection!();
    let host = Host::new();
    let config = host.gateway_with_masquerade("1.0.0", "10.89.0.0/24");
    let killed = ferrocni_tests::kill_at_each_request(|request| {
        let container = NetnsGuard::new("fbk");
        let id = format!("killed{request}");
        let add = Call::ours("bridge", "ADD", &id, &container, &config)
            .killed_at_send(request)
            .run_in(&host.ns);
        host.call(Impl::Ours, "DEL", &id, &container, &config)
            .success();
        host.assert_clean(&[]);
        add.code == 0
    });
    assert!(
        killed >= 5,
        "killed at each of its requests, {killed} in all"
    );
}

#[test]
fn a_full_bridge_is_named_in_the_error() {
    require_root!();
    let host = Host::new();
    let config = host.conf("1.0.0", "10.88.0.0/16", None, json!({}));
    let first = NetnsGuard::new("fbf");
    let result = host.add("first", &first, &config);
    // The kernel numbers ports 1..=1023; fill the rest in one `ip` process, with veths
    // because kernels without the dummy module are common in VMs.
    let fill: String = (1..1023)
        .map(|i| {
            format!(
                "link add fill{i} master {} type veth peer fillp{i}\n",
                host.bridge
            )
        })
        .collect();
    let mut ip = host
        .ns
        .command("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ip starts");
    std::io::Write::write_all(&mut ip.stdin.take().expect("stdin"), fill.as_bytes())
        .expect("batch written");
    assert!(ip.wait().expect("ip ran").success(), "1022 ports added");
    let before = host.ns.links();

    let second = NetnsGuard::new("fbf");
    let full = format!(
        "bridge \"{}\" is full: a Linux bridge takes at most 1023 ports",
        host.bridge
    );
    host.call(Impl::Ours, "ADD", "second", &second, &config)
        .assert_error(999, &full);
    assert_eq!(host.ns.links(), before, "no veth left behind");
    assert!(second.links().is_empty());
    assert_eq!(
        host.reserved(),
        [address(&result, 0)],
        "the second reservation was released"
    );
    host.del("first", &first, &config, &result);
    host.assert_clean(&["fill"]);
}

#[test]
fn concurrent_adds_on_one_bridge() {
    require_root!();
    let host = Host::new();
    let config = host.gateway_with_masquerade("1.0.0", "10.88.0.0/24");
    let containers: Vec<NetnsGuard> = (0..32).map(|_| NetnsGuard::new("fbc")).collect();
    let results: Vec<Value> = std::thread::scope(|scope| {
        let workers: Vec<_> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let host = &host;
                let config = &config;
                scope.spawn(move || host.add(&format!("c{i}"), c, config))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let distinct: HashSet<String> = results.iter().map(|r| address(r, 0)).collect();
    assert_eq!(distinct.len(), 32);
    assert!(containers[0].ping(&address(&results[31], 0)));
    std::thread::scope(|scope| {
        for (i, (c, r)) in containers.iter().zip(&results).enumerate() {
            let host = &host;
            let config = &config;
            scope.spawn(move || host.del(&format!("c{i}"), c, config, r));
        }
    });
    drop(containers);
    host.assert_clean(&[]);
}

#[test]
fn port_options_mtu_mac_hairpin_isolation() {
    require_root!();
    let host = Host::new();
    let config = host.conf(
        "1.0.0",
        "10.89.0.0/24",
        None,
        json!({"mtu": 1400, "hairpinMode": true, "runtimeConfig": {"mac": "0a:58:0a:59:00:99"}}),
    );
    let container = NetnsGuard::new("fbc");
    let result = host.add("opts", &container, &config);
    let eth0 = container.link_details("eth0");
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(eth0["address"], "0a:58:0a:59:00:99");
    assert_eq!(result["interfaces"][2]["mac"], "0a:58:0a:59:00:99");
    let port = host
        .ns
        .link_details(result["interfaces"][1]["name"].as_str().expect("host veth"));
    assert_eq!(
        port["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{port}"
    );
    host.del("opts", &container, &config, &result);

    let isolated = host.conf(
        "1.0.0",
        "10.89.0.0/24",
        None,
        json!({"portIsolation": true}),
    );
    let (a, b) = (NetnsGuard::new("fbc"), NetnsGuard::new("fbc"));
    let ra = host.add("iso-a", &a, &isolated);
    let rb = host.add("iso-b", &b, &isolated);
    let port = host
        .ns
        .link_details(ra["interfaces"][1]["name"].as_str().expect("host veth"));
    assert_eq!(
        port["linkinfo"]["info_slave_data"]["isolated"], true,
        "{port}"
    );
    assert!(
        !a.ping(&address(&rb, 0)),
        "isolated ports cannot talk to each other"
    );
    host.del("iso-a", &a, &isolated, &ra);
    host.del("iso-b", &b, &isolated, &rb);
    host.assert_clean(&[]);
}

#[test]
fn vlans_separate_containers_on_one_bridge() {
    require_root!();
    let host = Host::new();
    let on_vlan = |vlan: u16| host.conf("1.0.0", "10.90.0.0/24", None, json!({"vlan": vlan}));
    let (a, b, c) = (
        NetnsGuard::new("fbc"),
        NetnsGuard::new("fbc"),
        NetnsGuard::new("fbc"),
    );
    let probe = ferrocni_tests::unique("vp");
    let supported = host
        .ns
        .exec(&[
            "ip",
            "link",
            "add",
            &probe,
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .status
        .success();
    if !supported {
        host.call(Impl::Ours, "ADD", "v10a", &a, &on_vlan(10))
            .assert_error(2, "CONFIG_BRIDGE_VLAN_FILTERING");
        host.assert_clean(&[]);
        ferrocni_tests::skip::skip(
            "VLAN reachability: this kernel has no bridge VLAN filtering \
             (CONFIG_BRIDGE_VLAN_FILTERING); only the error was checked",
        );
        return;
    }
    host.ns.exec_ok(&["ip", "link", "del", &probe]);
    let ra = host.add("v10a", &a, &on_vlan(10));
    let rb = host.add("v10b", &b, &on_vlan(10));
    let rc = host.add("v20c", &c, &on_vlan(20));
    assert!(a.ping(&address(&rb, 0)), "same VLAN");
    assert!(!a.ping(&address(&rc, 0)), "different VLANs");
    let vlans = host.ns.exec(&["bridge", "-j", "vlan", "show"]);
    let text = String::from_utf8_lossy(&vlans.stdout);
    assert!(
        text.contains("\"vlan\":10") && text.contains("\"vlan\":20"),
        "{text}"
    );
    host.del("v10a", &a, &on_vlan(10), &ra);
    host.del("v10b", &b, &on_vlan(10), &rb);
    host.del("v20c", &c, &on_vlan(20), &rc);
    host.assert_clean(&[]);
}

#[test]
fn bad_configs_are_refused_before_anything_changes() {
    require_root!();
    let host = Host::new();
    let container = NetnsGuard::new("fbc");
    let cases = [
        (json!({"vlan": 5000}), 7, "vlan"),
        (
            json!({"vlanTrunk": [{"minID": 30, "maxID": 20}]}),
            7,
            "vlanTrunk[0]",
        ),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            7,
            "promiscMode",
        ),
        (json!({"ipMasq": true, "ipMasqBackend": "pf"}), 7, "pf"),
        (
            json!({"runtimeConfig": {"mac": "nonsense"}}),
            7,
            "runtimeConfig.mac",
        ),
        (json!({"mtu": 10}), 7, "mtu"),
        (json!({"mtu": "1500"}), 6, "mtu"),
        (json!({"bridge": "a-very-long-bridge-name"}), 7, "bridge"),
    ];
    for (extra, code, needle) in cases {
        let config = host.conf("1.0.0", "10.91.0.0/24", None, extra);
        host.call(Impl::Ours, "ADD", "bad", &container, &config)
            .assert_error(code, needle);
    }
    assert!(host.ns.links().is_empty(), "not even the bridge was made");
    let config = host.conf("1.0.0", "10.91.0.0/24", None, json!({}));
    let result = host.add("twice", &container, &config);
    host.call(Impl::Ours, "ADD", "twice2", &container, &config)
        .assert_error(999, "already exists");
    host.del("twice", &container, &config, &result);
    host.assert_clean(&[]);
}

#[test]
fn same_shape_and_reachability_as_the_reference() {
    require_root!();
    require_reference!("bridge");
    for implementation in [Impl::Ours, Impl::Reference] {
        let host = Host::new();
        let config = host.conf(
            "1.0.0",
            "10.92.0.0/24",
            Some("fd00:92::/64"),
            json!({"isGateway": true, "ipMasq": true}),
        );
        let (a, b) = (NetnsGuard::new("fbc"), NetnsGuard::new("fbc"));
        let ra = host
            .call(implementation, "ADD", "refa", &a, &config)
            .success();
        let rb = host
            .call(implementation, "ADD", "refb", &b, &config)
            .success();
        for r in [&ra, &rb] {
            assert_eq!(
                r["interfaces"].as_array().map(Vec::len),
                Some(3),
                "{implementation:?}: {r}"
            );
            assert_eq!(r["interfaces"][2]["name"], "eth0");
            assert_eq!(r["ips"][0]["interface"], 2);
            assert_eq!(r["ips"][1]["interface"], 2);
            assert_eq!(r["ips"][0]["gateway"], "10.92.0.1");
            assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]));
        }
        assert_eq!(address(&ra, 0), "10.92.0.2", "{implementation:?}");
        assert!(a.ping(&address(&rb, 0)), "{implementation:?}");
        assert!(a.ping("10.92.0.1"), "{implementation:?}");
        assert!(b.ping(&address(&ra, 1)), "{implementation:?}");
        for (id, ns, r) in [("refa", &a, &ra), ("refb", &b, &rb)] {
            host.call(implementation, "DEL", id, ns, &with_previous(&config, r))
                .success();
        }
        if implementation == Impl::Ours {
            host.assert_clean(&[]);
        }
    }
}

#[test]
fn mac_spoof_check_drops_frames_from_a_changed_mac() {
    require_root!();
    let host = Host::new();
    let checked = host.conf("1.0.0", "10.97.0.0/24", None, json!({"macspoofchk": true}));
    let (a, b) = (NetnsGuard::new("fbc"), NetnsGuard::new("fbc"));
    let ra = host.add("spoof-a", &a, &checked);
    let rb = host.add("spoof-b", &b, &checked);
    assert!(a.ping(&address(&rb, 0)), "its own MAC passes");
    assert!(host.ns.nft_ruleset().contains("brnet:spoof-a:eth0"));
    host.call(
        Impl::Ours,
        "CHECK",
        "spoof-a",
        &a,
        &with_previous(&checked, &ra),
    )
    .success();
    a.exec_ok(&["ip", "link", "set", "eth0", "address", "0a:58:0a:61:00:99"]);
    a.exec_ok(&["ip", "neigh", "flush", "all"]);
    assert!(!a.ping(&address(&rb, 0)), "a spoofed MAC is dropped");
    host.del("spoof-a", &a, &checked, &ra);
    // Without prevResult the rules are found by owner.
    Call::new(Impl::Ours, "bridge", "DEL")
        .attachment("spoof-b", &b.path_str(), "eth0")
        .stdin(&checked)
        .run_in(&host.ns)
        .success();
    host.assert_clean(&[]);
}

#[test]
fn ipv6_dad_is_skipped_unless_asked_for() {
    require_root!();
    let host = Host::new();
    let flags = |container: &NetnsGuard| -> String {
        let addresses =
            container.ip_json(&["-6", "addr", "show", "dev", "eth0", "scope", "global"]);
        addresses[0]["addr_info"][0].to_string()
    };
    let fast = host.conf("1.0.0", "10.98.0.0/24", Some("fd00:98::/64"), json!({}));
    let a = NetnsGuard::new("fbc");
    let ra = host.add("nodad", &a, &fast);
    assert!(flags(&a).contains("\"nodad\":true"), "{}", flags(&a));
    let careful = host.conf(
        "1.0.0",
        "10.98.0.0/24",
        Some("fd00:98::/64"),
        json!({"enabledad": true}),
    );
    let b = NetnsGuard::new("fbc");
    let rb = host.add("dad", &b, &careful);
    let settled = flags(&b);
    assert!(
        !settled.contains("nodad") && !settled.contains("tentative"),
        "DAD ran and finished: {settled}"
    );
    host.del("nodad", &a, &fast, &ra);
    host.del("dad", &b, &careful, &rb);
    host.assert_clean(&[]);
}

/// A link name may hold a dot (`eth0.5`): its IPv6 settings are still written (as a path,
/// since a dotted sysctl key would read the dot as a separator) and DAD is off.
#[test]
fn ipv6_settings_reach_an_interface_whose_name_holds_a_dot() {
    require_root!();
    let host = Host::new();
    let config = host.conf("1.0.0", "10.97.0.0/24", Some("fd00:97::/64"), json!({}));
    let container = NetnsGuard::new("fbd");
    let call = |command: &str, config: &Value| {
        Call::new(Impl::Ours, "bridge", command)
            .attachment("dotted", &container.path_str(), "eth0.5")
            .stdin(config)
            .run_in(&host.ns)
    };
    let result = call("ADD", &config).success();
    let accept_dad = container.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0.5/accept_dad"]);
    assert_eq!(
        String::from_utf8_lossy(&accept_dad.stdout).trim(),
        "0",
        "DAD is off on eth0.5"
    );
    call("DEL", &with_previous(&config, &result)).success();
    host.assert_clean(&[]);
}

#[test]
fn a_new_container_announces_itself_with_gratuitous_arp() {
    require_root!();
    require_tools!("sysctl");
    let host = Host::new();
    // Let the host learn neighbours from unsolicited ARP, so an announcement is visible.
    host.ns
        .exec_ok(&["sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1"]);
    let config = host.conf("1.0.0", "10.99.0.0/24", None, json!({"isGateway": true}));
    // The first container brings the bridge its gateway address (and route), so the host can
    // accept the second container's announcement.
    let first = NetnsGuard::new("fbc");
    let first_result = host.add("garp0", &first, &config);
    host.ns.exec_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv4.conf.{}.arp_accept=1", host.bridge),
    ]);
    let container = NetnsGuard::new("fbc");
    let result = host.add("garp", &container, &config);
    let arp_notify = container.exec(&["sysctl", "-n", "net.ipv4.conf.eth0.arp_notify"]);
    assert_eq!(String::from_utf8_lossy(&arp_notify.stdout).trim(), "1");
    let ip = address(&result, 0);
    let mut learned = false;
    for _ in 0..40 {
        let neighbours = host.ns.exec(&["ip", "neigh", "show", &ip]);
        if !String::from_utf8_lossy(&neighbours.stdout)
            .trim()
            .is_empty()
        {
            learned = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(
        learned,
        "the host learned {ip} without any traffic: the kernel announced it"
    );
    host.del("garp", &container, &config, &result);
    host.del("garp0", &first, &config, &first_result);
    host.assert_clean(&[]);
}

/// The bridge as tools see it: `ip -d link` shows `state UP` once a port forwards, and a
/// bridge ID (the STP identity, priority then MAC) that is its MAC, never zero. The MAC
/// stays what it was as ports with lower MACs join and ports leave (a bridge left to itself
/// takes its lowest port's). The reference's bridge looks the same.
#[test]
fn the_bridge_is_up_with_its_mac_as_its_id_and_keeps_that_mac() {
    require_root!();
    let reference = Impl::Reference.available("bridge");
    for implementation in [Impl::Ours, Impl::Reference] {
        if implementation == Impl::Reference && !reference {
            continue;
        }
        let host = Host::new();
        let config = host.conf("1.0.0", "10.93.0.0/24", None, json!({"isGateway": true}));
        let looks = || {
            let details = host.ns.link_details(&host.bridge);
            let sysfs = host.ns.exec(&[
                "cat",
                &format!("/sys/class/net/{}/bridge/bridge_id", host.bridge),
            ]);
            let mac = details["address"].as_str().unwrap_or_default().to_string();
            (
                details["operstate"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                mac,
                String::from_utf8_lossy(&sysfs.stdout).trim().to_string(),
            )
        };
        // Operstate follows carrier through linkwatch, which may take up to a second.
        let up_within_two_seconds = || {
            (0..40).any(|_| {
                let up = looks().0 == "UP";
                if !up {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                up
            })
        };
        let a = NetnsGuard::new("fbi");
        let ra = host
            .call(implementation, "ADD", "ida", &a, &config)
            .success();
        assert!(up_within_two_seconds(), "{implementation:?}: {:?}", looks());
        let (_, mac, id) = looks();
        assert_eq!(
            id,
            format!("8000.{}", mac.replace(':', "")),
            "{implementation:?}: the bridge ID is the bridge's MAC"
        );
        // A port with a MAC below any other joins, then the container's leaves.
        host.ns.exec_ok(&[
            "ip",
            "link",
            "add",
            "lowp0",
            "address",
            "00:00:00:00:00:01",
            "type",
            "veth",
            "peer",
            "name",
            "lowp1",
        ]);
        host.ns
            .exec_ok(&["ip", "link", "set", "lowp0", "master", &host.bridge, "up"]);
        host.ns.exec_ok(&["ip", "link", "set", "lowp1", "up"]);
        let b = NetnsGuard::new("fbi");
        let rb = host
            .call(implementation, "ADD", "idb", &b, &config)
            .success();
        host.call(
            implementation,
            "DEL",
            "ida",
            &a,
            &with_previous(&config, &ra),
        )
        .success();
        assert_eq!(
            looks().1,
            mac,
            "{implementation:?}: the MAC stays as ports come and go"
        );
        assert_eq!(looks().2, id, "{implementation:?}: and so does the ID");
        host.call(
            implementation,
            "DEL",
            "idb",
            &b,
            &with_previous(&config, &rb),
        )
        .success();
        host.ns.exec_ok(&["ip", "link", "del", "lowp0"]);
        if implementation == Impl::Ours {
            host.assert_clean(&[]);
        }
    }
}
