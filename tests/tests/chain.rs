//! The firewall plugin, and the chain Podman writes (bridge → portmap → firewall → tuning)
//! run the way libcni runs a conflist: ADD in order with each result as the next
//! prevResult, CHECK in order, DEL in reverse with the final result.

use ferrocni_tests::{
    address, require_root, require_tools, wire, Call, Impl, NetnsGuard, Sandbox, TempDir, VERSIONS,
};
use serde_json::{json, Value};

const NET: &str = "podnet";
const HOST_ADDRESS: &str = "172.31.120.1";

struct Node {
    sandbox: Sandbox,
    outside: NetnsGuard,
    tuning: TempDir,
}

impl Node {
    /// A host whose FORWARD policy drops, as Docker leaves it, wired to an "outside".
    fn new() -> Self {
        let sandbox = Sandbox::new("bridge", NET);
        sandbox.ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        sandbox.ns.exec_ok(&["iptables", "-P", "FORWARD", "DROP"]);
        let outside = NetnsGuard::new("fco");
        wire(
            &sandbox.ns,
            &format!("{HOST_ADDRESS}/24"),
            &outside,
            "172.31.120.2/24",
        );
        Node {
            sandbox,
            outside,
            tuning: TempDir::new("tun"),
        }
    }

    /// The plugins of the conflist, each a full config for `version`.
    fn plugins(&self, version: &str, bridge: &str, subnet: &str, firewall: Value) -> Vec<Value> {
        let mut main = self.sandbox.conf(
            version,
            json!([[{"subnet": subnet}]]),
            json!({"isGateway": true, "ipMasq": true}),
        );
        main["bridge"] = json!(bridge);
        let firewall_conf = ferrocni_tests::extended(
            json!({"cniVersion": version, "name": NET, "type": "firewall"}),
            &firewall,
        );
        vec![
            main,
            json!({"cniVersion": version, "name": NET, "type": "portmap",
                   "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
            firewall_conf,
            json!({"cniVersion": version, "name": NET, "type": "tuning", "dataDir": self.tuning.path_str(),
                   "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}}),
        ]
    }

    fn run(
        &self,
        plugin: &Value,
        command: &str,
        id: &str,
        container: &NetnsGuard,
        previous: Option<&Value>,
    ) -> ferrocni_tests::Outcome {
        let mut config = plugin.clone();
        if let Some(previous) = previous {
            config["prevResult"] = previous.clone();
        }
        Call::new(Impl::Ours, plugin["type"].as_str().expect("type"), command)
            .attachment(id, &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&self.sandbox.ns)
    }

    /// ADD through the whole chain; returns the final result.
    fn add(&self, plugins: &[Value], id: &str, container: &NetnsGuard) -> Value {
        let mut previous: Option<Value> = None;
        for plugin in plugins {
            previous = Some(
                self.run(plugin, "ADD", id, container, previous.as_ref())
                    .success(),
            );
        }
        previous.expect("a chain has plugins")
    }

    fn del(&self, plugins: &[Value], id: &str, container: &NetnsGuard, result: &Value) {
        for plugin in plugins.iter().rev() {
            self.run(plugin, "DEL", id, container, Some(result))
                .success();
        }
    }

    fn forward_rules(&self) -> String {
        String::from_utf8_lossy(
            &self
                .sandbox
                .ns
                .exec(&["iptables-save", "-t", "filter"])
                .stdout,
        )
        .lines()
        .filter(|l| l.contains("podnet"))
        .collect::<Vec<_>>()
        .join("\n")
    }
}

#[test]
fn podman_chain_in_every_version() {
    require_root!();
    require_tools!("curl");
    let node = Node::new();
    let docroot = TempDir::new("www");
    for version in VERSIONS {
        let plugins = node.plugins(version, "podbr0", "10.120.0.0/24", json!({}));
        let container = NetnsGuard::new("fcc");
        let _server = container.http_server(80, "podman chain", &docroot);
        let result = node.add(&plugins, "pod", &container);
        assert_eq!(result["cniVersion"], version);
        assert_eq!(
            node.outside
                .curl(&format!("http://{HOST_ADDRESS}:8080/"))
                .as_deref(),
            Some("podman chain"),
            "{version}: the published port answers through a FORWARD DROP policy"
        );
        assert_eq!(
            node.sandbox.ns.curl("http://127.0.0.1:8080/").as_deref(),
            Some("podman chain"),
            "{version}"
        );
        if version >= "0.4.0" {
            for plugin in &plugins {
                node.run(plugin, "CHECK", "pod", &container, Some(&result))
                    .success();
            }
        }
        node.del(&plugins, "pod", &container, &result);
        assert!(
            node.forward_rules().is_empty(),
            "{version}: {}",
            node.forward_rules()
        );
        node.sandbox.assert_clean(&["podbr0", "wa"]);
    }
}

#[test]
fn firewall_opens_forwarding_only_while_attached() {
    require_root!();
    for backend in ["iptables", "nftables"] {
        let node = Node::new();
        let remote = NetnsGuard::new("fcr");
        wire(
            &node.sandbox.ns,
            "172.31.121.1/30",
            &remote,
            "172.31.121.2/30",
        );
        let plugins = node.plugins(
            "1.0.0",
            "fwbr0",
            "10.121.0.0/24",
            json!({"backend": backend}),
        );
        let container = NetnsGuard::new("fcc");
        let main = node
            .run(&plugins[0], "ADD", "fw", &container, None)
            .success();
        assert!(
            !container.ping("172.31.121.2"),
            "{backend}: the drop policy holds without the firewall plugin"
        );
        if backend == "nftables" {
            // An nftables accept cannot override the iptables FORWARD policy; lift it to
            // show the nftables rules themselves, with a drop in our own table's place.
            node.sandbox
                .ns
                .exec_ok(&["iptables", "-P", "FORWARD", "ACCEPT"]);
        }
        let result = node
            .run(&plugins[2], "ADD", "fw", &container, Some(&main))
            .success();
        assert!(
            container.ping("172.31.121.2"),
            "{backend}: allowed while attached"
        );
        let rules = |node: &Node| match backend {
            "iptables" => node.forward_rules(),
            _ => node.sandbox.ns.nft_table("ferrocni_firewall"),
        };
        let once = rules(&node);
        node.run(&plugins[2], "ADD", "fw", &container, Some(&main))
            .success();
        assert_eq!(
            rules(&node),
            once,
            "{backend}: a repeated ADD adds no twins"
        );
        node.run(&plugins[2], "CHECK", "fw", &container, Some(&result))
            .success();
        node.run(&plugins[2], "DEL", "fw", &container, Some(&result))
            .success();
        node.run(&plugins[2], "CHECK", "fw", &container, Some(&result))
            .assert_error(999, "missing");
        assert!(node.forward_rules().is_empty(), "{}", node.forward_rules());
        let table = node.sandbox.ns.nft_table("ferrocni_firewall");
        assert!(!table.contains("podnet/"), "{table}");
        node.run(&plugins[0], "DEL", "fw", &container, Some(&main))
            .success();
    }
}

/// Also for bridges whose names hold what is syntax to nft and iptables-restore (`"`, `;`,
/// `{`, `#`: the kernel takes them): the names go as data, so that none can end a string in
/// nft's input and fail ADD with a syntax error.
#[test]
fn same_bridge_policy_isolates_bridges() {
    require_root!();
    for (backend, names) in [
        ("iptables", ["isobr1", "isobr2"]),
        ("nftables", ["isobr1", "isobr2"]),
        ("iptables", [r#"i"s;{#1"#, r#"i"s;{#2"#]),
        ("nftables", [r#"i"s;{#1"#, r#"i"s;{#2"#]),
    ] {
        let node = Node::new();
        node.sandbox
            .ns
            .exec_ok(&["iptables", "-P", "FORWARD", "ACCEPT"]);
        let policy = json!({"backend": backend, "ingressPolicy": "same-bridge"});
        let one = node.plugins("1.0.0", names[0], "10.122.1.0/24", policy.clone());
        let two = node.plugins("1.0.0", names[1], "10.122.2.0/24", policy);
        let (a, b) = (NetnsGuard::new("fcc"), NetnsGuard::new("fcc"));
        let ra = node.run(&one[0], "ADD", "a", &a, None).success();
        let rb = node.run(&two[0], "ADD", "b", &b, None).success();
        assert!(
            a.ping(&address(&rb, 0)),
            "{backend}: bridges route to each other before isolation"
        );
        let fa = node.run(&one[2], "ADD", "a", &a, Some(&ra)).success();
        let fb = node.run(&two[2], "ADD", "b", &b, Some(&rb)).success();
        assert!(
            !a.ping(&address(&rb, 0)),
            "{backend} {names:?}: isolated bridges cannot reach each other"
        );
        // The rules name exactly these bridges.
        for name in names {
            if backend == "iptables" {
                let listed = node.sandbox.ns.exec(&["iptables", "-S"]);
                let rules = String::from_utf8_lossy(&listed.stdout);
                let rule = format!("-A CNI-ISOLATION-STAGE-1 -i {name} ! -o {name} -j");
                assert!(rules.contains(&rule), "{rule:?} not in {rules}");
            } else {
                let listed = node.sandbox.ns.exec(&[
                    "nft",
                    "-j",
                    "list",
                    "table",
                    "inet",
                    "ferrocni_firewall",
                ]);
                let table: Value = serde_json::from_slice(&listed.stdout).expect("nft JSON");
                let objects = table["nftables"].as_array().expect("a list");
                let isolated = objects
                    .iter()
                    .find(|o| o["set"]["name"] == "isolated")
                    .expect("the isolated set");
                assert!(
                    isolated["set"]["elem"]
                        .as_array()
                        .is_some_and(|e| e.contains(&json!(name))),
                    "{isolated}"
                );
                let compares = objects.iter().any(|o| {
                    o["rule"]["expr"][0]["match"]
                        == json!({"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": name})
                });
                assert!(compares, "no rule compares with {name:?}: {table}");
            }
        }
        node.run(&one[2], "DEL", "a", &a, Some(&fa)).success();
        node.run(&two[2], "DEL", "b", &b, Some(&fb)).success();
        node.run(&one[0], "DEL", "a", &a, Some(&ra)).success();
        node.run(&two[0], "DEL", "b", &b, Some(&rb)).success();
    }
}

#[test]
fn firewall_bad_inputs() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fcc");
    let previous = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.123.0.2/24"}], "dns": {}});
    for (extra, needle) in [
        (json!({"backend": "firewalld"}), "firewalld"),
        (json!({"backend": "pf"}), "pf"),
        (json!({"ingressPolicy": "closed"}), "ingressPolicy"),
        (
            json!({"iptablesAdminChainName": "A VERY LONG CHAIN NAME WITH SPACES"}),
            "iptablesAdminChainName",
        ),
    ] {
        let config = ferrocni_tests::extended(
            json!({"cniVersion": "1.0.0", "name": NET, "type": "firewall"}),
            &extra,
        );
        node.run(&config, "ADD", "bad", &container, Some(&previous))
            .assert_error(7, needle);
    }
    let config = json!({"cniVersion": "1.0.0", "name": NET, "type": "firewall"});
    node.run(&config, "ADD", "bad", &container, None)
        .assert_error(7, "prevResult");
    assert!(node.forward_rules().is_empty());
}

#[test]
fn firewall_gc_removes_rules_of_unlisted_attachments() {
    require_root!();
    let node = Node::new();
    let firewall = json!({"cniVersion": "1.1.0", "name": NET, "type": "firewall"});
    let container = NetnsGuard::new("fcc");
    for (id, ip) in [("keep", "10.124.0.2/24"), ("stale", "10.124.0.3/24")] {
        let previous = json!({"cniVersion": "1.1.0", "ips": [{"address": ip}], "dns": {}});
        node.run(&firewall, "ADD", id, &container, Some(&previous))
            .success();
    }
    let mut gc = firewall.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    Call::new(Impl::Ours, "firewall", "GC")
        .stdin(&gc)
        .run_in(&node.sandbox.ns)
        .success();
    let rules = node.forward_rules();
    assert!(
        rules.contains("10.124.0.2/32") && !rules.contains("10.124.0.3/32"),
        "{rules}"
    );
    gc["cni.dev/valid-attachments"] = json!([]);
    Call::new(Impl::Ours, "firewall", "GC")
        .stdin(&gc)
        .run_in(&node.sandbox.ns)
        .success();
    assert!(node.forward_rules().is_empty(), "{}", node.forward_rules());
}

/// iptables changes are read-modify-write: ADDs and DELs at once, firewall and portmap alike,
/// must lose none of each other's rules.
#[test]
fn concurrent_iptables_adds_and_dels_lose_no_rules() {
    require_root!();
    const COUNT: usize = 16;
    let host = NetnsGuard::new("fch");
    let container = NetnsGuard::new("fcc");
    let config = |plugin: &str, i: usize| {
        let previous = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": container.path_str()}],
            "ips": [{"address": format!("10.124.0.{}/24", i + 2), "interface": 0}]});
        json!({"cniVersion": "1.0.0", "name": NET, "type": plugin, "backend": "iptables",
               "capabilities": {"portMappings": true},
               "runtimeConfig": {"portMappings": [{"hostPort": 18000 + i, "containerPort": 80}]},
               "prevResult": previous})
    };
    let all_at_once = |command: &'static str| {
        std::thread::scope(|scope| {
            let runs: Vec<_> = (0..COUNT)
                .flat_map(|i| ["firewall", "portmap"].map(|plugin| (i, plugin)))
                .map(|(i, plugin)| {
                    let stdin = config(plugin, i);
                    let (host, container) = (&host, &container);
                    scope.spawn(move || {
                        Call::new(Impl::Ours, plugin, command)
                            .attachment(&format!("c{i}"), &container.path_str(), "eth0")
                            .stdin(&stdin)
                            .run_in(host)
                            .success();
                    })
                })
                .collect();
            for run in runs {
                run.join().expect("no panic");
            }
        });
    };
    let rules = || {
        let filter = host.exec(&["iptables-save", "-t", "filter"]).stdout;
        let nat = host.exec(&["iptables-save", "-t", "nat"]).stdout;
        String::from_utf8_lossy(&[filter, nat].concat()).into_owned()
    };
    all_at_once("ADD");
    let added = rules();
    for i in 0..COUNT {
        assert!(
            added.contains(&format!("-s 10.124.0.{}/32", i + 2)),
            "firewall c{i}: {added}"
        );
        assert!(
            added.contains(&format!("--dports {}", 18000 + i)),
            "portmap c{i}: {added}"
        );
    }
    all_at_once("DEL");
    let left = rules();
    assert!(!left.contains("10.124.0."), "{left}");
    assert!(!left.contains("CNI-DN-"), "{left}");
}

/// Container IDs of any length the spec allows (here 300 bytes, two of them alike but for
/// the last byte): the owner comments of masquerade, port mapping and forwarding rules stay
/// within what nft (128 bytes) and iptables (255) keep and stay unique, so ADD, CHECK, GC
/// and DEL work with both backends. nftables refused such an ADD, and iptables cut the
/// comment so that DEL left the rules behind.
#[test]
fn long_container_ids_on_both_backends() {
    require_root!();
    require_tools!("curl");
    let docroot = TempDir::new("www");
    for backend in ["nftables", "iptables"] {
        let node = Node::new();
        if backend == "nftables" {
            // An nftables accept cannot override the iptables FORWARD policy.
            node.sandbox
                .ns
                .exec_ok(&["iptables", "-P", "FORWARD", "ACCEPT"]);
        }
        let ids = ["c".repeat(300), format!("{}d", "c".repeat(299))];
        let attached: Vec<(Vec<Value>, NetnsGuard, Value)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut plugins = node.plugins(
                    "1.1.0",
                    "longbr0",
                    "10.125.0.0/24",
                    json!({"backend": backend}),
                );
                plugins.truncate(3);
                plugins[0]["ipMasqBackend"] = json!(backend);
                plugins[1]["backend"] = json!(backend);
                plugins[1]["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(8080 + i);
                let container = NetnsGuard::new("fcc");
                let result = node.add(&plugins, id, &container);
                (plugins, container, result)
            })
            .collect();
        let (plugins, container, _) = &attached[0];
        let _server = container.http_server(80, "long", &docroot);
        assert_eq!(
            node.outside
                .curl(&format!("http://{HOST_ADDRESS}:8080/"))
                .as_deref(),
            Some("long"),
            "{backend}"
        );
        let check = |i: usize| {
            let (plugins, container, result) = &attached[i];
            plugins
                .iter()
                .map(|p| node.run(p, "CHECK", &ids[i], container, Some(result)))
                .collect::<Vec<_>>()
        };
        for outcome in check(0).iter().chain(&check(1)) {
            outcome.success();
        }
        for plugin in plugins {
            let mut gc = plugin.clone();
            gc["cni.dev/valid-attachments"] = json!([{"containerID": ids[0], "ifname": "eth0"}]);
            Call::new(Impl::Ours, plugin["type"].as_str().expect("type"), "GC")
                .stdin(&gc)
                .run_in(&node.sandbox.ns)
                .success();
        }
        for outcome in check(0) {
            outcome.success();
        }
        // GC took the other's rules: its portmap and firewall CHECKs miss them.
        let other = check(1);
        other[1].assert_error(999, "missing");
        other[2].assert_error(999, "missing");
        for (i, (plugins, container, result)) in attached.iter().enumerate() {
            node.del(plugins, &ids[i], container, result);
        }
        assert!(node.forward_rules().is_empty(), "{}", node.forward_rules());
        let portmap = node.sandbox.ns.nft_table("ferrocni_portmap");
        assert!(!portmap.contains("podnet/"), "{portmap}");
        assert!(!node.sandbox.ns.iptables_nat(false).contains("CNI-DN-"));
        node.sandbox.assert_clean(&["longbr0", "wa"]);
    }
}
