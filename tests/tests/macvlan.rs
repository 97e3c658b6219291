//! macvlan on a "LAN": the master is one end of a veth pair whose other end is a peer host on
//! that LAN (the kernel here has no dummy module). Modes, default master, MTU, MAC, no-IPAM,
//! linkInContainer, every verb in every version, and nothing left after DEL.

use ferrocni_tests::{
    address, require_root, with_previous, Call, Impl, NetnsGuard, Outcome, Sandbox, VERSIONS,
};
use serde_json::{json, Value};

const NET: &str = "mvnet";
const PEER: &str = "10.180.0.254";

struct Lan {
    sandbox: Sandbox,
    peer: NetnsGuard,
}

impl Lan {
    /// A host whose `lan0` (MTU 1500) leads to a peer at 10.180.0.254.
    fn new() -> Self {
        let sandbox = Sandbox::new("macvlan", NET);
        let peer = NetnsGuard::new("fmp");
        sandbox.ns.exec_ok(&[
            "ip",
            "link",
            "add",
            "lan0",
            "type",
            "veth",
            "peer",
            "name",
            "lanpeer",
            "netns",
            peer.name(),
        ]);
        sandbox.ns.exec_ok(&["ip", "link", "set", "lan0", "up"]);
        sandbox
            .ns
            .exec_ok(&["ip", "addr", "add", "10.180.0.1/24", "dev", "lan0"]);
        peer.exec_ok(&["ip", "addr", "add", &format!("{PEER}/24"), "dev", "lanpeer"]);
        peer.exec_ok(&["ip", "link", "set", "lanpeer", "up"]);
        Lan { sandbox, peer }
    }

    fn conf(&self, version: &str, extra: Value) -> Value {
        let ranges = json!([[{"subnet": "10.180.0.0/24", "rangeStart": "10.180.0.10", "rangeEnd": "10.180.0.50"}]]);
        ferrocni_tests::extended(
            self.sandbox
                .conf(version, ranges, json!({"master": "lan0"})),
            &extra,
        )
    }

    fn call(&self, command: &str, id: &str, container: &NetnsGuard, config: &Value) -> Outcome {
        self.sandbox
            .call(Impl::Ours, command, id, container, config)
    }

    fn assert_clean(&self) {
        self.sandbox.assert_clean(&["lan0"]);
    }
}

#[test]
fn bridge_mode_reaches_neighbours_and_the_lan() {
    require_root!();
    let lan = Lan::new();
    let config = lan.conf(
        "1.0.0",
        json!({"runtimeConfig": {"mac": "0a:58:0a:b4:00:99"}}),
    );
    let plain = lan.conf("1.0.0", json!({}));
    let (a, b) = (NetnsGuard::new("fmc"), NetnsGuard::new("fmc"));
    let ra = lan.call("ADD", "a", &a, &config).success();
    let rb = lan.call("ADD", "b", &b, &plain).success();
    assert_eq!(
        ra["interfaces"],
        json!([{"name": "eth0", "mac": "0a:58:0a:b4:00:99", "sandbox": a.path_str()}])
    );
    assert_eq!(ra["ips"][0]["interface"], 0);
    assert_eq!(
        a.link_details("eth0")["linkinfo"]["info_data"]["mode"],
        "bridge"
    );
    assert!(
        a.ping(&address(&rb, 0)),
        "macvlans of one master reach each other in bridge mode"
    );
    assert!(a.ping(PEER), "the container is on the LAN");
    lan.call("CHECK", "a", &a, &with_previous(&config, &ra))
        .success();
    lan.call("DEL", "a", &a, &with_previous(&config, &ra))
        .success();
    lan.call("DEL", "a", &a, &with_previous(&config, &ra))
        .success();
    let path = b.path_str();
    drop(b);
    Call::new(Impl::Ours, "macvlan", "DEL")
        .attachment("b", &path, "eth0")
        .stdin(&config)
        .run_in(&lan.sandbox.ns)
        .success();
    lan.assert_clean();
}

#[test]
fn private_mode_isolates_and_passthru_takes_the_master() {
    require_root!();
    let lan = Lan::new();
    let private = lan.conf("1.0.0", json!({"mode": "private"}));
    let (a, b) = (NetnsGuard::new("fmc"), NetnsGuard::new("fmc"));
    let ra = lan.call("ADD", "a", &a, &private).success();
    let rb = lan.call("ADD", "b", &b, &private).success();
    assert!(
        !a.ping(&address(&rb, 0)),
        "private macvlans cannot reach each other"
    );
    assert!(a.ping(PEER), "but they reach the LAN");
    lan.call("DEL", "a", &a, &with_previous(&private, &ra))
        .success();
    lan.call("DEL", "b", &b, &with_previous(&private, &rb))
        .success();

    let passthru = lan.conf("1.0.0", json!({"mode": "passthru"}));
    let rp = lan.call("ADD", "p", &a, &passthru).success();
    assert_eq!(
        a.link_details("eth0")["linkinfo"]["info_data"]["mode"],
        "passthru"
    );
    assert!(a.ping(PEER));
    lan.call("ADD", "q", &b, &passthru).error();
    lan.call("DEL", "p", &a, &with_previous(&passthru, &rp))
        .success();
    lan.assert_clean();
}

#[test]
fn default_master_no_ipam_and_link_in_container() {
    require_root!();
    let lan = Lan::new();
    lan.sandbox
        .ns
        .exec_ok(&["ip", "route", "add", "default", "via", PEER, "dev", "lan0"]);
    let mut no_master = lan.conf("1.0.0", json!({}));
    no_master.as_object_mut().map(|c| c.remove("master"));
    let a = NetnsGuard::new("fmc");
    let ra = lan.call("ADD", "a", &a, &no_master).success();
    assert!(a.ping(PEER), "the default route's link was the master");
    lan.call("DEL", "a", &a, &with_previous(&no_master, &ra))
        .success();

    let mut l2 = lan.conf("1.0.0", json!({}));
    l2.as_object_mut().map(|c| c.remove("ipam"));
    let result = lan.call("ADD", "l2", &a, &l2).success();
    assert!(result.get("ips").is_none(), "no IPAM, no address: {result}");
    assert!(a.link_is_up("eth0"));
    lan.call("DEL", "l2", &a, &with_previous(&l2, &result))
        .success();

    // linkInContainer: the master is already inside the container's namespace.
    let inner = NetnsGuard::new("fmc");
    inner.exec_ok(&[
        "ip", "link", "add", "inner0", "type", "veth", "peer", "name", "inner1",
    ]);
    inner.exec_ok(&["ip", "link", "set", "inner0", "up"]);
    let inside = lan.conf(
        "1.0.0",
        json!({"master": "inner0", "linkInContainer": true}),
    );
    let ri = lan.call("ADD", "in", &inner, &inside).success();
    assert_eq!(
        inner.link_details("eth0")["linkinfo"]["info_kind"],
        "macvlan"
    );
    lan.call("DEL", "in", &inner, &with_previous(&inside, &ri))
        .success();
    lan.assert_clean();
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let lan = Lan::new();
    for version in VERSIONS {
        let config = lan.conf(version, json!({}));
        let container = NetnsGuard::new("fmc");
        let result = lan.call("ADD", "v", &container, &config).success();
        assert_eq!(result["cniVersion"], version);
        if version >= "0.4.0" {
            lan.call("CHECK", "v", &container, &with_previous(&config, &result))
                .success();
        }
        if version == "1.1.0" {
            lan.sandbox.call_network("STATUS", &config).success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([]);
            lan.sandbox.call_network("GC", &gc).success();
            assert!(lan.sandbox.reserved().is_empty());
        }
        lan.call("DEL", "v", &container, &with_previous(&config, &result))
            .success();
    }
    lan.assert_clean();
}

#[test]
fn bad_inputs_are_clear_and_leave_nothing() {
    require_root!();
    let lan = Lan::new();
    let container = NetnsGuard::new("fmc");
    for (extra, needle) in [
        (json!({"master": "nosuch0"}), "master"),
        (
            json!({"master": "lo"}),
            "master: \"lo\" is not an Ethernet device",
        ),
        (json!({"mode": "source"}), "mode"),
        (json!({"mtu": 9000}), "mtu"),
        (json!({"runtimeConfig": {"mac": "zz"}}), "runtimeConfig.mac"),
    ] {
        lan.call("ADD", "bad", &container, &lan.conf("1.0.0", extra))
            .assert_error(7, needle);
    }
    assert!(container.links().is_empty());
    lan.assert_clean();
    assert!(lan.peer.ping("10.180.0.1"), "the LAN itself is untouched");
}
