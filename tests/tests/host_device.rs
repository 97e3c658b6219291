//! host-device with a veth end as the device (the kernel here has no dummy module): moved in,
//! reachable from its peer, brought back with its name, MTU, state and addresses; DEL after
//! the namespace is gone still releases the reservation; one device, one container.

use ferrocni_tests::{
    require_root, with_previous, Call, Impl, NetnsGuard, Outcome, Sandbox, TempDir, VERSIONS,
};
use serde_json::{json, Value};

const NET: &str = "hdnet";

struct Rig {
    sandbox: Sandbox,
    peer: NetnsGuard,
    records: TempDir,
}

impl Rig {
    /// `hdev0` on the host (10.190.0.1/24, MTU 1400, up); its peer at 10.190.0.254.
    fn new() -> Self {
        let sandbox = Sandbox::new("host-device", NET);
        let peer = NetnsGuard::new("fdp");
        sandbox.ns.exec_ok(&[
            "ip",
            "link",
            "add",
            "hdev0",
            "mtu",
            "1400",
            "type",
            "veth",
            "peer",
            "name",
            "hdpeer",
            "netns",
            peer.name(),
        ]);
        sandbox
            .ns
            .exec_ok(&["ip", "addr", "add", "10.190.0.1/24", "dev", "hdev0"]);
        sandbox.ns.exec_ok(&["ip", "link", "set", "hdev0", "up"]);
        peer.exec_ok(&["ip", "link", "set", "hdpeer", "mtu", "1400"]);
        peer.exec_ok(&["ip", "addr", "add", "10.190.0.254/24", "dev", "hdpeer"]);
        peer.exec_ok(&["ip", "link", "set", "hdpeer", "up"]);
        Rig {
            sandbox,
            peer,
            records: TempDir::new("hd"),
        }
    }

    fn conf(&self, version: &str, extra: Value) -> Value {
        let ranges = json!([[{"subnet": "10.190.0.0/24", "rangeStart": "10.190.0.5", "rangeEnd": "10.190.0.9"}]]);
        ferrocni_tests::extended(
            self.sandbox.conf(
                version,
                ranges,
                json!({"device": "hdev0", "dataDir": self.records.path_str()}),
            ),
            &extra,
        )
    }

    fn call(&self, command: &str, id: &str, container: &NetnsGuard, config: &Value) -> Outcome {
        self.sandbox
            .call(Impl::Ours, command, id, container, config)
    }

    /// ADD into `container`, delete the namespace, then DEL with its path.
    fn attach_then_lose_the_namespace(&self, id: &str, container: NetnsGuard, config: &Value) {
        self.call("ADD", id, &container, config).success();
        let path = container.path_str();
        drop(container);
        Call::new(Impl::Ours, "host-device", "DEL")
            .attachment(id, &path, "eth0")
            .stdin(config)
            .run_in(&self.sandbox.ns)
            .success();
    }

    /// hdev0 as the host sees it: present, MTU, up, address.
    fn host_device(&self) -> Option<(u64, bool, Vec<String>)> {
        if !self.sandbox.ns.links().contains(&"hdev0".to_string()) {
            return None;
        }
        let link = self.sandbox.ns.link_details("hdev0");
        let addresses = self
            .sandbox
            .ns
            .ip_json(&["-4", "addr", "show", "dev", "hdev0"]);
        let addresses = addresses[0]["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"]
                )
            })
            .collect();
        Some((
            link["mtu"].as_u64().unwrap_or(0),
            self.sandbox.ns.link_is_up("hdev0"),
            addresses,
        ))
    }
}

#[test]
fn moves_in_reaches_its_peer_and_comes_back_as_it_was() {
    require_root!();
    let rig = Rig::new();
    let before = rig.host_device().expect("hdev0 on the host");
    let container = NetnsGuard::new("fdc");
    let config = rig.conf("1.0.0", json!({}));
    let result = rig.call("ADD", "hd", &container, &config).success();
    assert!(rig.host_device().is_none(), "the device left the host");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["ips"][0]["address"], "10.190.0.5/24");
    assert!(
        container.ping("10.190.0.254"),
        "the container reaches the device's peer"
    );
    let other = NetnsGuard::new("fdc");
    rig.call("ADD", "hd2", &other, &config)
        .assert_error(7, "not in the host namespace");
    rig.call("CHECK", "hd", &container, &with_previous(&config, &result))
        .success();
    rig.call("DEL", "hd", &container, &with_previous(&config, &result))
        .success();
    assert_eq!(
        rig.host_device(),
        Some(before),
        "name, MTU, state and address are back"
    );
    assert!(!container.links().contains(&"eth0".to_string()));
    rig.call("DEL", "hd", &container, &with_previous(&config, &result))
        .success();
    assert!(rig.sandbox.reserved().is_empty());
    assert!(
        rig.peer.ping("10.190.0.1"),
        "the host's address works again"
    );
}

#[test]
fn selects_by_mac_and_works_without_ipam() {
    require_root!();
    let rig = Rig::new();
    let mac = rig.sandbox.ns.link_details("hdev0")["address"]
        .as_str()
        .expect("mac")
        .to_string();
    let mut config = rig.conf("1.0.0", json!({"hwaddr": mac}));
    config.as_object_mut().map(|c| {
        c.remove("device");
        c.remove("ipam")
    });
    let container = NetnsGuard::new("fdc");
    let result = rig.call("ADD", "mac", &container, &config).success();
    assert!(result.get("ips").is_none());
    assert!(container.link_is_up("eth0"));
    rig.call("DEL", "mac", &container, &with_previous(&config, &result))
        .success();
    assert!(rig.host_device().is_some());
}

/// A device stacked on another shares its MAC (a passthru macvlan here; a VLAN alike): when
/// its namespace is gone the kernel has destroyed it, and DEL must not take the link below
/// it, same MAC and all, for the device and rename or re-address it.
#[test]
fn del_never_takes_the_link_below_a_vanished_device_for_it() {
    require_root!();
    let rig = Rig::new();
    let before = rig.host_device().expect("hdev0 on the host");
    rig.sandbox.ns.exec_ok(&[
        "ip", "link", "add", "link", "hdev0", "name", "hdmv0", "type", "macvlan", "mode",
        "passthru",
    ]);
    let container = NetnsGuard::new("fdc");
    let config = rig.conf("1.0.0", json!({"device": "hdmv0"}));
    rig.attach_then_lose_the_namespace("stacked", container, &config);
    assert_eq!(
        rig.host_device(),
        Some(before),
        "hdev0 keeps its name, MTU, state and address"
    );
}

#[test]
fn del_after_the_namespace_is_gone_releases_the_address() {
    require_root!();
    let rig = Rig::new();
    let container = NetnsGuard::new("fdc");
    let config = rig.conf("1.0.0", json!({}));
    rig.attach_then_lose_the_namespace("gone", container, &config);
    assert!(
        rig.sandbox.reserved().is_empty(),
        "the reservation is released (the reference leaks it)"
    );
    assert_eq!(
        std::fs::read_dir(rig.records.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "the record is gone"
    );
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let rig = Rig::new();
    for version in VERSIONS {
        let config = rig.conf(version, json!({}));
        let container = NetnsGuard::new("fdc");
        let result = rig.call("ADD", "v", &container, &config).success();
        assert_eq!(result["cniVersion"], version);
        if version >= "0.4.0" {
            rig.call("CHECK", "v", &container, &with_previous(&config, &result))
                .success();
        }
        if version == "1.1.0" {
            rig.sandbox.call_network("STATUS", &config).success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([{"containerID": "v", "ifname": "eth0"}]);
            rig.sandbox.call_network("GC", &gc).success();
            assert_eq!(
                rig.sandbox.reserved().len(),
                1,
                "GC keeps the valid attachment"
            );
        }
        rig.call("DEL", "v", &container, &with_previous(&config, &result))
            .success();
        assert!(rig.host_device().is_some(), "{version}: back on the host");
    }
}

#[test]
fn bad_inputs_are_clear() {
    require_root!();
    let rig = Rig::new();
    let container = NetnsGuard::new("fdc");
    rig.call(
        "ADD",
        "b",
        &container,
        &rig.conf("1.0.0", json!({"device": "nosuch0"})),
    )
    .assert_error(7, "nosuch0");
    rig.call(
        "ADD",
        "b",
        &container,
        &rig.conf("1.0.0", json!({"hwaddr": "0a:58:00:00:00:01"})),
    )
    .assert_error(7, "exactly one");
    let mut none = rig.conf("1.0.0", json!({}));
    none.as_object_mut().map(|c| c.remove("device"));
    rig.call("ADD", "b", &container, &none)
        .assert_error(7, "exactly one");
    rig.call(
        "ADD",
        "b",
        &container,
        &rig.conf("1.0.0", json!({"device": "", "hwaddr": "zz"})),
    )
    .assert_error(7, "hwaddr");
    assert!(rig.host_device().is_some(), "the device never moved");
    assert!(container.links().is_empty());
    // A failure after the move (no such IPAM plugin) puts the device back as it was.
    let before = rig.host_device();
    let mut broken = rig.conf("1.0.0", json!({}));
    broken["ipam"]["type"] = json!("no-such-ipam");
    rig.call("ADD", "b", &container, &broken)
        .assert_error(7, "no-such-ipam");
    assert_eq!(
        rig.host_device(),
        before,
        "undone: name, MTU, state and address"
    );
    assert!(container.links().is_empty());
    assert_eq!(
        std::fs::read_dir(rig.records.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

/// ADD or DEL killed at any of its netlink requests (strace fault injection), an ADD then
/// retried: the next DEL still brings the device back as it was.
#[test]
fn a_killed_add_or_del_leaves_the_device_recoverable() {
    ferrocni_tests::require_fault_injection!();
    let rig = Rig::new();
    let before = rig.host_device().expect("hdev0 on the host");
    let config = rig.conf("1.0.0", json!({}));
    for killed in ["ADD", "DEL"] {
        ferrocni_tests::kill_at_each_request(|request| {
            let container = NetnsGuard::new("fdk");
            let id = format!("k{killed}{request}");
            if killed == "DEL" {
                rig.call("ADD", &id, &container, &config).success();
            }
            let run = Call::ours("host-device", killed, &id, &container, &config)
                .killed_at_send(request)
                .run_in(&rig.sandbox.ns);
            if killed == "ADD" && run.code != 0 {
                // The runtime may retry first: it either attaches or finds the device in.
                let retry = rig.call("ADD", &id, &container, &config);
                if retry.code != 0 {
                    retry.assert_error(999, "already exists");
                }
            }
            rig.call("DEL", &id, &container, &config).success();
            assert_eq!(
                rig.host_device(),
                Some(before.clone()),
                "{killed} killed at request {request}: the device is back as it was"
            );
            assert!(container.links().is_empty(), "{:?}", container.links());
            assert!(rig.sandbox.reserved().is_empty());
            run.code == 0
        });
    }
}

/// A retry that selects another device (a runtime's `deviceID` moved on) after the first ADD
/// died half-way: the first device is put back as it was, the second attached, and DEL
/// restores that one.
#[test]
fn a_retry_with_another_device_puts_the_first_back() {
    ferrocni_tests::require_fault_injection!();
    let rig = Rig::new();
    let before = rig.host_device().expect("hdev0 on the host");
    rig.sandbox.ns.exec_ok(&[
        "ip", "link", "add", "hdev1", "type", "veth", "peer", "name", "hdpeer1",
    ]);
    let first = rig.conf("1.0.0", json!({}));
    let second = rig.conf("1.0.0", json!({"device": "hdev1"}));
    ferrocni_tests::kill_at_each_request(|request| {
        let container = NetnsGuard::new("fdr");
        let id = format!("r{request}");
        let killed = Call::ours("host-device", "ADD", &id, &container, &first)
            .killed_at_send(request)
            .run_in(&rig.sandbox.ns);
        if killed.code != 0 && !container.links().contains(&"eth0".to_string()) {
            rig.call("ADD", &id, &container, &second).success();
            assert_eq!(
                rig.host_device(),
                Some(before.clone()),
                "request {request}: hdev0 is back before hdev1 goes in"
            );
        }
        rig.call("DEL", &id, &container, &second).success();
        assert_eq!(rig.host_device(), Some(before.clone()), "request {request}");
        assert!(rig.sandbox.ns.links().contains(&"hdev1".to_string()));
        killed.code == 0
    });
}

/// Started under `umask 000`, host-device still keeps its records private: directories
/// 0700, files 0600, so nobody else can change which device DEL "returns" where.
#[test]
fn record_modes_do_not_depend_on_the_umask() {
    require_root!();
    let rig = Rig::new();
    let container = NetnsGuard::new("fdc");
    // A dataDir that does not exist yet: the plugin makes every directory on the way.
    let root = rig.records.path().join("made");
    let config = rig.conf("1.0.0", json!({"dataDir": root.join("host-device")}));
    Call::new(Impl::Ours, "host-device", "ADD")
        .attachment("hdum", &container.path_str(), "eth0")
        .stdin(&config)
        .umask(0)
        .run_in(&rig.sandbox.ns)
        .success();
    assert_eq!(
        ferrocni_tests::modes_under(&root),
        [
            ("made".to_string(), 0o700),
            ("made/host-device".to_string(), 0o700),
            (format!("made/host-device/{NET}:hdum:eth0.json"), 0o600),
        ]
    );
    rig.call("DEL", "hdum", &container, &config).success();
}

/// A record is input like any other: DEL refuses one whose device name, kind or MAC no
/// ADD would have recorded, acts on nothing and sets it aside; with the real record back, DEL
/// returns the device.
#[test]
fn a_record_no_add_wrote_is_refused_by_del() {
    require_root!();
    let rig = Rig::new();
    let before = rig.host_device().expect("hdev0 on the host");
    let container = NetnsGuard::new("fdc");
    let config = rig.conf("1.0.0", json!({}));
    rig.call("ADD", "hdrec", &container, &config).success();
    let path = rig.records.path().join(format!("{NET}:hdrec:eth0.json"));
    let written = std::fs::read_to_string(&path).expect("the record");
    let record: Value = serde_json::from_str(&written).expect("JSON");
    for (field, value) in [
        ("kind", json!("veth\nip link del dev eth0")),
        ("kind", json!("")),
        ("name", json!("a/b")),
        ("name", json!("a-name-longer-than-fifteen")),
        ("mac", json!("not a mac")),
    ] {
        let mut planted = record.clone();
        planted[field] = value.clone();
        std::fs::write(&path, planted.to_string()).expect("plant");
        rig.call("DEL", "hdrec", &container, &config)
            .assert_error(6, field);
        assert!(
            !path.exists() && path.with_extension("json.rejected").exists(),
            "the refused record is set aside ({field} {value})"
        );
        assert!(
            container.links().contains(&"eth0".to_string()),
            "nothing moved on a refused record ({field} {value})"
        );
    }
    std::fs::write(&path, &written).expect("put the real record back");
    rig.call("DEL", "hdrec", &container, &config).success();
    assert_eq!(rig.host_device(), Some(before));
}
