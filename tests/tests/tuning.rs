//! tuning: changes land on the container interface (and only there), DEL restores the
//! originals, renames go and come back, bad keys are refused before anything changes.

use ferrocni_tests::{
    require_root, require_tools, with_previous, Call, Impl, NetnsGuard, Outcome, TempDir, VERSIONS,
};
use serde_json::{json, Value};

struct Setup {
    host: NetnsGuard,
    container: NetnsGuard,
    records: TempDir,
    previous: Value,
}

impl Setup {
    /// A container with an `eth0` (one end of a veth) and a prevResult naming it.
    fn new() -> Self {
        let host = NetnsGuard::new("fth");
        let container = NetnsGuard::new("ftc");
        container.exec_ok(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ]);
        container.exec_ok(&["ip", "link", "set", "eth0", "up"]);
        let mac = container.link_details("eth0")["address"].clone();
        let previous = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": mac, "sandbox": container.path_str()}],
            "ips": [{"interface": 0, "address": "10.110.0.2/24"}],
            "dns": {}
        });
        Setup {
            host,
            container,
            records: TempDir::new("tun"),
            previous,
        }
    }

    fn conf(&self, version: &str, extra: Value) -> Value {
        ferrocni_tests::extended(
            json!({
                "cniVersion": version, "name": "tunnet", "type": "tuning",
                "dataDir": self.records.path_str(),
                "prevResult": ferrocni_tests::convert(&self.previous, version)
            }),
            &extra,
        )
    }

    fn call(&self, command: &str, config: &Value) -> Outcome {
        Call::new(Impl::Ours, "tuning", command)
            .attachment("tun", &self.container.path_str(), "eth0")
            .stdin(config)
            .run_in(&self.host)
    }

    /// A rename to `net1` with an MTU and a per-interface sysctl, which names the interface
    /// as the runtime does, before the rename.
    fn renaming(&self) -> Value {
        self.conf(
            "1.0.0",
            json!({"ifName": "net1", "mtu": 1450,
                   "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}),
        )
    }

    /// How many records tuning keeps.
    fn records_left(&self) -> usize {
        std::fs::read_dir(self.records.path())
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The settings tuning may change, as the kernel reports them.
    fn state(&self, name: &str) -> Value {
        let link = self.container.link_details(name);
        let sysctl = |key: &str| {
            let out = self.container.exec(&["sysctl", "-n", key]);
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        json!({
            "mac": link["address"], "mtu": link["mtu"], "txqlen": link["txqlen"],
            "promisc": link["promiscuity"], "allmulti": link["allmulti"],
            "up": self.container.link_is_up(name),
            "arp_filter": sysctl(&format!("net.ipv4.conf.{name}.arp_filter")),
            "somaxconn": sysctl("net.core.somaxconn"),
        })
    }
}

fn everything() -> Value {
    json!({
        "mac": "0a:58:0a:6e:00:02", "mtu": 1400, "promisc": true, "allmulti": true, "txQLen": 500,
        "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1", "net.core.somaxconn": "512"}
    })
}

#[test]
fn applies_everything_and_del_restores_it() {
    require_root!();
    require_tools!("sysctl");
    let setup = Setup::new();
    let before = setup.state("eth0");
    let host_somaxconn = setup
        .host
        .exec(&["sysctl", "-n", "net.core.somaxconn"])
        .stdout;
    let config = setup.conf("1.0.0", everything());
    setup.call("ADD", &config).success();
    // A runtime retrying ADD: the originals recorded by the first one must survive it.
    let result = setup.call("ADD", &config).success();
    assert_eq!(
        result["interfaces"][0]["mac"], "0a:58:0a:6e:00:02",
        "the result carries the new MAC"
    );
    let after = setup.state("eth0");
    assert_eq!(after["mac"], "0a:58:0a:6e:00:02");
    assert_eq!(after["mtu"], 1400);
    assert_eq!(after["txqlen"], 500);
    assert_eq!(after["allmulti"], 1);
    assert!(after["promisc"].as_u64().unwrap_or(0) >= 1, "{after}");
    assert_eq!(after["arp_filter"], "1");
    assert_eq!(after["somaxconn"], "512");
    assert_eq!(
        setup
            .host
            .exec(&["sysctl", "-n", "net.core.somaxconn"])
            .stdout,
        host_somaxconn,
        "the host is untouched"
    );
    setup
        .call("CHECK", &with_previous(&config, &result))
        .success();
    setup
        .container
        .exec_ok(&["ip", "link", "set", "eth0", "mtu", "1300"]);
    setup
        .call("CHECK", &with_previous(&config, &result))
        .assert_error(999, "mtu");
    setup
        .call("DEL", &with_previous(&config, &result))
        .success();
    assert_eq!(
        setup.state("eth0"),
        before,
        "DEL restored every original value"
    );
    setup.call("DEL", &config).success();
    assert_eq!(setup.records_left(), 0, "the record is gone");
}

#[test]
fn renames_and_renames_back() {
    require_root!();
    require_tools!("sysctl");
    let setup = Setup::new();
    let before = setup.state("eth0");
    let config = setup.renaming();
    let result = setup.call("ADD", &config).success();
    assert_eq!(result["interfaces"][0]["name"], "net1");
    assert_eq!(setup.state("net1")["mtu"], 1450);
    assert_eq!(setup.state("net1")["arp_filter"], "1");
    setup
        .call("CHECK", &with_previous(&config, &result))
        .success();
    assert!(
        setup.container.link_is_up("net1"),
        "a renamed link stays up"
    );
    setup
        .call("DEL", &with_previous(&config, &result))
        .success();
    assert_eq!(setup.state("eth0"), before, "name, MTU and sysctl are back");
    assert!(setup.container.link_is_up("eth0"));
}

#[test]
fn every_verb_in_every_version_and_gc() {
    require_root!();
    let setup = Setup::new();
    for version in VERSIONS.iter().filter(|v| **v >= "0.3.0") {
        let config = setup.conf(version, json!({"mtu": 1420}));
        let result = setup.call("ADD", &config).success();
        assert_eq!(result["cniVersion"], *version);
        if *version >= "0.4.0" {
            setup.call("CHECK", &config).success();
        }
        if *version == "1.1.0" {
            Call::new(Impl::Ours, "tuning", "STATUS")
                .stdin(&config)
                .run_in(&setup.host)
                .success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([]);
            Call::new(Impl::Ours, "tuning", "GC")
                .stdin(&gc)
                .run_in(&setup.host)
                .success();
            assert_eq!(setup.records_left(), 0, "GC dropped the record");
        }
        setup.call("DEL", &config).success();
    }
}

#[test]
fn bad_inputs_are_refused_before_anything_changes() {
    require_root!();
    require_tools!("sysctl");
    let setup = Setup::new();
    let before = setup.state("eth0");
    let cases = [
        (
            json!({"sysctl": {"kernel.panic": "1"}}),
            7,
            "sysctl.kernel.panic",
        ),
        (
            json!({"sysctl": {"net/../../kernel/panic": "1"}}),
            7,
            "sysctl.net/../../kernel/panic",
        ),
        (json!({"mac": "nonsense"}), 7, "mac"),
        (json!({"mtu": 10}), 7, "mtu"),
        (json!({"ifName": "a/b"}), 7, "ifName"),
        (json!({"mtu": "big"}), 6, "mtu"),
        (
            json!({"mtu": 1400, "dataDir": "rel/dir"}),
            7,
            "dataDir: \"rel/dir\" is relative",
        ),
    ];
    for (extra, code, needle) in cases {
        setup
            .call("ADD", &setup.conf("1.0.0", extra))
            .assert_error(code, needle);
    }
    let mut no_previous = setup.conf("1.0.0", json!({"mtu": 1400}));
    no_previous.as_object_mut().map(|c| c.remove("prevResult"));
    setup
        .call("ADD", &no_previous)
        .assert_error(7, "prevResult");
    // A sysctl the kernel does not have fails ADD; what was applied is taken back.
    setup
        .call(
            "ADD",
            &setup.conf(
                "1.0.0",
                json!({"mtu": 1400, "sysctl": {"net.ipv4.no_such_key": "1"}}),
            ),
        )
        .assert_error(999, "no sysctl net.ipv4.no_such_key in this namespace");
    // One the kernel refuses the value of: named with the value, and also taken back.
    setup
        .call(
            "ADD",
            &setup.conf(
                "1.0.0",
                json!({"mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.forwarding": "banana"}}),
            ),
        )
        .assert_error(
            999,
            "cannot set sysctl net.ipv4.conf.eth0.forwarding to \"banana\"",
        );
    assert_eq!(setup.state("eth0"), before, "nothing changed");
}

/// An ADD killed at any of its netlink requests (strace fault injection), then retried as a
/// runtime would: the retry succeeds (even when the kill came before the rename its record
/// announces), and DEL restores every original, name included.
#[test]
fn a_killed_then_retried_add_is_still_undone_by_del() {
    ferrocni_tests::require_fault_injection!();
    let setup = Setup::new();
    let before = setup.state("eth0");
    let mut tuned = everything();
    tuned["ifName"] = json!("net1");
    let config = setup.conf("1.0.0", tuned);
    ferrocni_tests::kill_at_each_request(|request| {
        let killed = Call::ours("tuning", "ADD", "tun", &setup.container, &config)
            .killed_at_send(request)
            .run_in(&setup.host);
        if killed.code != 0 {
            setup.call("ADD", &config).success();
        }
        setup.call("DEL", &config).success();
        assert_eq!(
            setup.state("eth0"),
            before,
            "killed at request {request}, retried: DEL restored every original"
        );
        killed.code == 0
    });
}

/// An MTU below 1280 makes the kernel drop the interface's IPv6 state, its sysctls with it.
/// DEL must raise the MTU back before it restores an IPv6 sysctl (which then exists again),
/// and a sysctl the kernel dropped is nothing to restore, not a reason to fail every DEL.
#[test]
fn del_restores_ipv6_sysctls_after_an_mtu_below_1280() {
    require_root!();
    require_tools!("sysctl");
    let setup = Setup::new();
    let accept_ra = |setup: &Setup| {
        let out = setup
            .container
            .exec(&["sysctl", "-n", "net.ipv6.conf.eth0.accept_ra"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = (setup.state("eth0"), accept_ra(&setup));
    let config = setup.conf(
        "1.0.0",
        json!({"mtu": 1200, "mac": "0a:58:0a:6e:00:07",
               "sysctl": {"net.ipv6.conf.IFNAME.accept_ra": "2"}}),
    );
    let result = setup.call("ADD", &config).success();
    assert_eq!(setup.state("eth0")["mtu"], 1200);
    setup
        .call("DEL", &with_previous(&config, &result))
        .success();
    assert_eq!(
        (setup.state("eth0"), accept_ra(&setup)),
        before,
        "MTU, MAC and the IPv6 sysctl are back"
    );
    assert_eq!(setup.records_left(), 0, "the record is gone");

    // The sysctl dropped for good: a config that leaves the MTU alone, and the MTU lowered
    // behind tuning's back. DEL still restores the MAC and forgets the record.
    let config = setup.conf(
        "1.0.0",
        json!({"mac": "0a:58:0a:6e:00:07", "sysctl": {"net.ipv6.conf.IFNAME.accept_ra": "2"}}),
    );
    let result = setup.call("ADD", &config).success();
    setup
        .container
        .exec_ok(&["ip", "link", "set", "eth0", "mtu", "1200"]);
    setup
        .call("DEL", &with_previous(&config, &result))
        .success();
    assert_eq!(
        setup.state("eth0")["mac"],
        before.0["mac"],
        "the MAC is back"
    );
    assert_eq!(setup.records_left(), 0, "the record is gone");
}

/// DEL cannot rename the link back when another took the runtime's name meanwhile: it still
/// restores the rest (the sysctls under the name the link has, never the newcomer's), reports
/// the failure once and forgets the record, so the retry succeeds.
#[test]
fn del_whose_rename_back_fails_restores_the_rest_once() {
    require_root!();
    require_tools!("sysctl");
    let setup = Setup::new();
    let before = setup.state("eth0");
    let config = setup.renaming();
    let result = setup.call("ADD", &config).success();
    setup.container.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer1",
    ]);
    setup
        .container
        .exec_ok(&["sysctl", "-w", "net.ipv4.conf.eth0.arp_filter=1"]);
    setup
        .call("DEL", &with_previous(&config, &result))
        .assert_error(999, "rename link");
    let restored = setup.state("net1");
    assert_eq!(restored["mtu"], before["mtu"]);
    assert_eq!(restored["arp_filter"], before["arp_filter"]);
    assert_eq!(
        setup.state("eth0")["arp_filter"],
        "1",
        "the newcomer's sysctl is not ours"
    );
    setup
        .call("DEL", &with_previous(&config, &result))
        .success();
}

/// Started under `umask 000`, tuning still keeps its records private: directories 0700,
/// files 0600, so nobody else can read or replace what DEL will restore.
#[test]
fn record_modes_do_not_depend_on_the_umask() {
    require_root!();
    let setup = Setup::new();
    // A dataDir that does not exist yet: the plugin makes every directory on the way.
    let root = setup.records.path().join("made");
    let mut config = setup.conf("1.0.0", json!({"mtu": 1400}));
    config["dataDir"] = json!(root.join("tuning"));
    Call::new(Impl::Ours, "tuning", "ADD")
        .attachment("tun", &setup.container.path_str(), "eth0")
        .stdin(&config)
        .umask(0)
        .run_in(&setup.host)
        .success();
    assert_eq!(
        ferrocni_tests::modes_under(&root),
        [
            ("made".to_string(), 0o700),
            ("made/tuning".to_string(), 0o700),
            ("made/tuning/tunnet:tun:eth0.json".to_string(), 0o600),
        ]
    );
    setup.call("DEL", &config).success();
}

/// The hostname of the calling thread's UTS namespace.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

/// A record is input like any other: one replaced so that DEL would "restore" a host
/// sysctl is refused, and the sysctl is never written. The DEL runs in a UTS namespace of
/// its own (unshared by a thread of this test, which its children inherit), so a plugin
/// that did write `kernel.hostname` would change only that namespace's name, which the
/// test then reads: the machine's hostname is never at stake.
#[test]
fn a_record_naming_a_host_sysctl_is_refused_by_del() {
    require_root!();
    require_tools!("sysctl");
    let setup = Setup::new();
    let machine = hostname();
    let config = setup.conf("1.0.0", json!({"mtu": 1400}));
    setup.call("ADD", &config).success();
    let record_path = setup.records.path().join("tunnet:tun:eth0.json");
    let mut record: Value =
        serde_json::from_slice(&std::fs::read(&record_path).expect("the record")).expect("JSON");
    record["original"]["sysctls"] = json!({"kernel.hostname": "ferrocni-planted"});
    let planted = record.to_string();
    std::fs::write(&record_path, &planted).expect("plant the record");

    const SENTINEL: &str = "ferrocni-uts-sentinel";
    let (outcome, after) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)
                    .expect("a UTS namespace of this thread's own");
                let uts = |path| std::fs::read_link(path).expect("a UTS namespace");
                assert_ne!(
                    uts("/proc/thread-self/ns/uts"),
                    uts("/proc/self/ns/uts"),
                    "this thread has a UTS namespace of its own"
                );
                std::fs::write("/proc/sys/kernel/hostname", SENTINEL).expect("name it");
                assert_eq!(hostname(), SENTINEL, "the private name took");
                let outcome = setup.call("DEL", &config);
                (outcome, hostname())
            })
            .join()
            .expect("the DEL thread")
    });
    assert_eq!(hostname(), machine, "the machine's hostname is untouched");
    assert_eq!(after, SENTINEL, "DEL wrote kernel.hostname: {outcome:?}");
    outcome.assert_error(6, "kernel.hostname");
    let aside = record_path.with_extension("json.rejected");
    assert_eq!(
        std::fs::read_to_string(&aside).expect("the record is set aside for an admin"),
        planted
    );
    assert!(
        !record_path.exists(),
        "the refused record is not read again"
    );
    // The runtime's retry goes on without the refused record, so the DEL does not fail
    // for good.
    setup.call("DEL", &config).success();
    // Others sysctls than net.* in any spelling are refused too.
    for key in [
        "net.ipv4/../../kernel.hostname",
        "net",
        "net..core",
        "net.core/somaxconn",
    ] {
        record["original"]["sysctls"] = json!({key: "1"});
        std::fs::write(&record_path, record.to_string()).expect("plant the record");
        setup.call("DEL", &config).assert_error(6, "sysctl");
    }
}
