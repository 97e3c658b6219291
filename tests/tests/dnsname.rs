//! The dnsname plugin and its server, in real namespaces: containers attached by our bridge
//! plugin resolve each other by name and alias through the server the first ADD starts,
//! other names through an upstream resolver run in the sandbox, and a DEL'd name no more.

use ferrocni_tests::dns::{lookup, query, DnsRuntime, ResolvConf, SERVER};
use ferrocni_tests::lab::wait_for;
use ferrocni_tests::{
    address, our_bin_dir, require_root, require_tools, Call, Impl, NetnsGuard, Outcome, Sandbox,
};
use serde_json::{json, Value};
use std::net::UdpSocket;
use std::time::Duration;

const NET: &str = "dnsnet";
const GATEWAY: &str = "10.89.0.1";

/// A bridge network in a sandbox host, with the dnsname plugin chained after the bridge.
struct Network {
    sandbox: Sandbox,
    dns: DnsRuntime,
    /// Extra keys of the dnsname config.
    extra: Value,
}

struct Container {
    ns: NetnsGuard,
    id: String,
    bridge: Value,
    result: Value,
    _resolv: ResolvConf,
}

impl Network {
    fn new() -> Network {
        let sandbox = Sandbox::new("bridge", NET);
        sandbox.ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        Network {
            sandbox,
            dns: DnsRuntime::default(),
            extra: json!({}),
        }
    }

    fn bridge_conf(&self) -> Value {
        self.sandbox.conf(
            "1.0.0",
            json!([[{"subnet": "10.89.0.0/24", "gateway": GATEWAY}]]),
            json!({"bridge": "dnsbr0", "isGateway": true}),
        )
    }

    fn dns_conf(&self, aliases: &[&str], previous: Option<&Value>) -> Value {
        let mut conf = json!({"cniVersion": "1.1.0", "name": NET, "type": "dnsname",
            "domainName": "dns.podman", "capabilities": {"aliases": true},
            "runtimeDir": self.dns.path_str(),
            "runtimeConfig": {"aliases": {NET: aliases, "othernet": ["elsewhere"]}}});
        if let (Some(conf), Some(extra)) = (conf.as_object_mut(), self.extra.as_object()) {
            conf.extend(extra.clone());
        }
        if let Some(previous) = previous {
            conf["prevResult"] = previous.clone();
        }
        conf
    }

    fn dnsname(
        &self,
        command: &str,
        id: &str,
        ns: &NetnsGuard,
        name: &str,
        conf: &Value,
    ) -> Outcome {
        Call::new(Impl::Ours, "dnsname", command)
            .attachment(id, &ns.path_str(), "eth0")
            .env(
                "CNI_ARGS",
                &format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={name};K8S_POD_NAME={name}"),
            )
            .stdin(conf)
            .run_in(&self.sandbox.ns)
    }

    /// A container attached by the bridge plugin, then registered as `name` with `aliases`;
    /// its resolv.conf written as a runtime writes it from the result.
    fn attach(&self, name: &str, aliases: &[&str]) -> Container {
        let ns = NetnsGuard::new("fdc");
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let id = format!("{}-{name}", ns.name());
        let bridge = self
            .sandbox
            .call(Impl::Ours, "ADD", &id, &ns, &self.bridge_conf())
            .success();
        let result = self
            .dnsname(
                "ADD",
                &id,
                &ns,
                name,
                &self.dns_conf(aliases, Some(&bridge)),
            )
            .success();
        let resolv = ResolvConf::write(&ns, &result);
        Container {
            ns,
            id,
            bridge,
            result,
            _resolv: resolv,
        }
    }

    fn detach(&self, container: &Container, name: &str) {
        let conf = self.dns_conf(&[], Some(&container.result));
        self.dnsname("DEL", &container.id, &container.ns, name, &conf)
            .success();
        let bridge = ferrocni_tests::with_previous(&self.bridge_conf(), &container.bridge);
        self.sandbox
            .call(Impl::Ours, "DEL", &container.id, &container.ns, &bridge)
            .success();
    }

    fn servers(&self) -> Vec<u32> {
        self.dns.servers(NET)
    }
}

#[test]
fn two_containers_reach_each_other_by_name_and_alias() {
    require_root!();
    let network = Network::new();
    let web = network.attach("web", &["svc"]);
    let client = network.attach("client", &[]);
    let web_ip = address(&web.bridge, 0);
    assert_eq!(
        client.result["dns"],
        json!({"nameservers": [GATEWAY], "search": ["dns.podman"]}),
        "the result names the network's server and domain"
    );
    for name in ["web", "web.dns.podman", "svc", "svc.dns.podman", "WEB"] {
        assert_eq!(
            lookup(&client.ns, name, None),
            Ok(vec![web_ip.clone()]),
            "{name}"
        );
    }
    // The alias of another network is not this one's.
    assert!(lookup(&client.ns, "elsewhere.dns.podman", None).is_err());
    // busybox ping resolves through the container's resolv.conf, as any program would.
    assert!(client.ns.ping("web"), "ping web by name");
    assert!(client.ns.ping("svc.dns.podman"), "ping by alias");
    assert!(web.ns.ping("client"), "and back");
    // PTR.
    let ptr = client.ns.exec(&["busybox", "nslookup", &web_ip]);
    assert!(
        String::from_utf8_lossy(&ptr.stdout).contains("web.dns.podman"),
        "{}",
        String::from_utf8_lossy(&ptr.stdout)
    );
    assert_eq!(network.servers().len(), 1);
    network.detach(&client, "client");
    network.detach(&web, "web");
    let stopped = wait_for(Duration::from_secs(5), || network.servers().is_empty());
    assert!(
        stopped.is_some(),
        "the server stops with the last container"
    );
}

/// A name that is no DNS name (Podman allows names of over 63 characters, or with `..`)
/// registers the container's aliases only, whether the server runs already or is started by
/// that ADD; its registration is read back like any other and leaves no rejected file.
#[test]
fn a_container_whose_name_is_no_dns_name_is_found_by_its_aliases() {
    require_root!();
    let network = Network::new();
    let long = "n".repeat(70);
    let first = network.attach(&long, &["first-alias"]);
    let web = network.attach("web", &[]);
    let second = network.attach("a..b", &["second-alias"]);
    let (first_ip, second_ip) = (address(&first.bridge, 0), address(&second.bridge, 0));
    assert_eq!(lookup(&web.ns, "first-alias", None), Ok(vec![first_ip]));
    assert_eq!(lookup(&web.ns, "second-alias", None), Ok(vec![second_ip]));
    let names = std::path::Path::new(&network.dns.path_str())
        .join(NET)
        .join("names");
    let rejected: Vec<String> = std::fs::read_dir(&names)
        .expect("the names directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rejected"))
        .collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    for (container, name, aliases) in [
        (&first, long.as_str(), ["first-alias"].as_slice()),
        (&web, "web", [].as_slice()),
        (&second, "a..b", ["second-alias"].as_slice()),
    ] {
        let conf = network.dns_conf(aliases, Some(&container.result));
        network
            .dnsname("CHECK", &container.id, &container.ns, name, &conf)
            .success();
        network.detach(container, name);
    }
}

#[test]
fn a_deleted_name_stops_resolving_at_once() {
    require_root!();
    let network = Network::new();
    let web = network.attach("web", &["svc"]);
    let db = network.attach("db", &["svc"]);
    let client = network.attach("client", &[]);
    let mut both = vec![address(&web.bridge, 0), address(&db.bridge, 0)];
    both.sort();
    let mut found = lookup(&client.ns, "svc", None).expect("svc resolves");
    found.sort();
    assert_eq!(found, both, "a shared alias answers with every container");
    network.detach(&db, "db");
    let answer = lookup(&client.ns, "db.dns.podman", None);
    assert!(
        answer.as_ref().is_err_and(|text| text.contains("NXDOMAIN")),
        "{answer:?}"
    );
    assert_eq!(
        lookup(&client.ns, "svc", None),
        Ok(vec![address(&web.bridge, 0)])
    );
    // A second DEL (a runtime's retry) is fine.
    let conf = network.dns_conf(&[], None);
    network
        .dnsname("DEL", &db.id, &db.ns, "db", &conf)
        .success();
    network.detach(&web, "web");
    network.detach(&client, "client");
}

#[test]
fn other_names_are_forwarded_to_the_upstream_resolver() {
    require_root!();
    require_tools!("dnsmasq");
    let mut network = Network::new();
    // An upstream resolver in the sandbox host, on its loopback.
    let _upstream = network.sandbox.ns.spawn(&[
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--user=root",
        "--pid-file=",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--port=5353",
        "--address=/upstream.test/192.0.2.7",
    ]);
    network.extra = json!({"upstreams": ["127.0.0.1:5353"]});
    let client = network.attach("client", &[]);
    let answered = wait_for(Duration::from_secs(5), || {
        lookup(&client.ns, "www.upstream.test", None) == Ok(vec!["192.0.2.7".to_string()])
    });
    assert!(
        answered.is_some(),
        "forwarded: {:?}",
        lookup(&client.ns, "www.upstream.test", None)
    );
    network.detach(&client, "client");
}

/// The response code of an A query for `name` to the gateway from `ns`, and how long the
/// answer took; `None` when none came within 8 s.
fn raw_query(ns: &NetnsGuard, name: &str) -> Option<(u8, Duration)> {
    let netns = kernel::netns::Netns::open(ns.path()).expect("the namespace");
    let gateway = GATEWAY.parse().expect("an address");
    netns
        .run(|| query(gateway, name, Duration::from_secs(8)))
        .expect("in the namespace")
        .map(|(rcode, _, took)| (rcode, took))
}

#[test]
fn an_upstream_that_does_not_answer_gets_servfail() {
    require_root!();
    let mut network = Network::new();
    // Nothing listens there: the query times out upstream.
    network.extra = json!({"upstreams": ["127.0.0.1:5354"]});
    let client = network.attach("client", &[]);
    let (rcode, took) = raw_query(&client.ns, "www.example.test").expect("an answer");
    assert_eq!(rcode, 2, "SERVFAIL");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    network.detach(&client, "client");
}

/// 32 containers' ADDs at once: each name resolves when its ADD returns, and one server
/// runs.
#[test]
fn concurrent_adds_start_one_server_and_every_name_resolves() {
    require_root!();
    let network = Network::new();
    let containers: Vec<Container> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..32)
            .map(|i| {
                let network = &network;
                scope.spawn(move || {
                    let container = network.attach(&format!("c{i}"), &["all"]);
                    // Resolvable the moment ADD returned: no retries.
                    let found = lookup(&container.ns, &format!("c{i}"), None);
                    assert_eq!(found, Ok(vec![address(&container.bridge, 0)]), "c{i}");
                    container
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("an ADD thread"))
            .collect()
    });
    assert_eq!(network.servers().len(), 1, "one server for the network");
    // 32 addresses pass a plain UDP answer's 512 bytes: as many as fit, truncated.
    let addresses: Vec<String> = containers.iter().map(|c| address(&c.bridge, 0)).collect();
    let all = lookup(&containers[0].ns, "all", Some(GATEWAY)).expect("the shared alias");
    assert!(all.len() > 16, "{all:?}");
    assert!(all.iter().all(|a| addresses.contains(a)), "{all:?}");
    for (i, container) in containers.iter().enumerate() {
        network.detach(container, &format!("c{i}"));
    }
    assert!(wait_for(Duration::from_secs(5), || network.servers().is_empty()).is_some());
}

#[test]
fn a_killed_server_is_restarted_by_the_next_add_with_every_name() {
    require_root!();
    let network = Network::new();
    let web = network.attach("web", &[]);
    let db = network.attach("db", &[]);
    let first = network.servers();
    assert_eq!(first.len(), 1);
    network.dns.kill_servers(NET);
    let client = network.attach("client", &[]);
    let second = network.servers();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new server");
    for (name, container) in [("web", &web), ("db", &db)] {
        assert_eq!(
            lookup(&client.ns, name, None),
            Ok(vec![address(&container.bridge, 0)]),
            "{name} is back"
        );
    }
    for (name, container) in [("web", &web), ("db", &db), ("client", &client)] {
        network.detach(container, name);
    }
}

#[test]
fn hostile_queries_never_stop_the_server() {
    require_root!();
    let network = Network::new();
    let web = network.attach("web", &[]);
    let sandbox = kernel::netns::Netns::open(network.sandbox.ns.path()).expect("sandbox");
    let sent = sandbox.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("a socket");
        let server = format!("{GATEWAY}:53");
        // Garbage of every length, a header promising 65535 questions, a name of 300
        // labels (compression loops included), a flood.
        let mut packets: Vec<Vec<u8>> = (0..600)
            .map(|len| (0..len).map(|i| (i * 31 + len) as u8).collect())
            .collect();
        packets.push(vec![0x12, 0x34, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        let mut loop_name = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        loop_name.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        packets.push(loop_name);
        let mut long_name = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..300 {
            long_name.extend_from_slice(&[1, b'a']);
        }
        long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
        packets.push(long_name);
        packets.push(vec![0u8; 65000]);
        for packet in &packets {
            let _ = socket.send_to(packet, &server);
        }
        // A flood of TCP connections that send nothing, more than the server serves at once.
        let idle: Vec<_> = (0..100)
            .filter_map(|_| std::net::TcpStream::connect(&server).ok())
            .collect();
        idle.len()
    });
    assert!(sent.expect("in the sandbox") > 0);
    let client = network.attach("client", &[]);
    assert_eq!(
        lookup(&client.ns, "web", None),
        Ok(vec![address(&web.bridge, 0)]),
        "the server still answers"
    );
    let log = std::fs::read_to_string(network.dns.network_dir(NET).join("server.log"))
        .unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(network.servers().len(), 1);
    network.detach(&client, "client");
    network.detach(&web, "web");
}

#[test]
fn the_server_answers_only_on_the_gateway_addresses() {
    require_root!();
    let network = Network::new();
    network
        .sandbox
        .ns
        .exec_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "lo"]);
    let web = network.attach("web", &[]);
    assert!(lookup(&web.ns, "web", Some(GATEWAY)).is_ok());
    for other in ["127.0.0.1", "192.0.2.1"] {
        let answer = lookup(&network.sandbox.ns, "web", Some(other));
        assert!(answer.is_err(), "answered on {other}: {answer:?}");
    }
    let listening = network.sandbox.ns.exec(&["ss", "-Hlnup"]);
    let text = String::from_utf8_lossy(&listening.stdout);
    let on_53: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(SERVER))
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|local| local.ends_with(":53"))
        .collect();
    assert_eq!(on_53, [format!("{GATEWAY}:53")], "{text}");
    network.detach(&web, "web");
}

#[test]
fn check_gc_and_status_follow_the_registrations() {
    require_root!();
    let network = Network::new();
    let web = network.attach("web", &["svc"]);
    let db = network.attach("db", &[]);
    let check = |container: &Container, name: &str| {
        network.dnsname(
            "CHECK",
            &container.id,
            &container.ns,
            name,
            &network.dns_conf(&["svc"], Some(&container.bridge)),
        )
    };
    check(&web, "web").success();
    // CHECK under another name fails, naming what is registered.
    check(&web, "other").assert_error(999, "registered as");
    // GC keeps the listed attachments only.
    let mut gc = network.dns_conf(&[], None);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": web.id, "ifname": "eth0"}]);
    Call::new(Impl::Ours, "dnsname", "GC")
        .stdin(&gc)
        .run_in(&network.sandbox.ns)
        .success();
    let answer = lookup(&web.ns, "db.dns.podman", Some(GATEWAY));
    assert!(answer.is_err(), "{answer:?}");
    check(&db, "db").assert_error(999, "not registered");
    let status = || {
        Call::new(Impl::Ours, "dnsname", "STATUS")
            .stdin(network.dns_conf(&[], None))
            .run_in(&network.sandbox.ns)
    };
    status().success();
    // Without the server's binary on CNI_PATH, the network cannot serve ADD.
    Call::new(Impl::Ours, "dnsname", "STATUS")
        .env("CNI_PATH", "/nonexistent")
        .stdin(network.dns_conf(&[], None))
        .run_in(&network.sandbox.ns)
        .assert_error(50, SERVER);
    network.detach(&db, "db");
    network.detach(&web, "web");
}

#[test]
fn bad_configs_and_failed_adds_leave_nothing() {
    require_root!();
    let network = Network::new();
    let ns = NetnsGuard::new("fdc");
    let previous = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "dnsbr0"}, {"name": "eth0", "sandbox": ns.path_str()}],
        "ips": [{"interface": 1, "address": "10.89.0.9/24", "gateway": GATEWAY}]});
    let add = |conf: &Value| network.dnsname("ADD", "bad1", &ns, "bad", conf);
    let mut conf = network.dns_conf(&[], Some(&previous));
    conf["domainName"] = json!("not a domain");
    add(&conf).assert_error(7, "domainName");
    let mut conf = network.dns_conf(&[], Some(&previous));
    conf["upstreams"] = json!(["10.0.0.1", "resolver.example"]);
    add(&conf).assert_error(7, "upstreams[1]");
    add(&network.dns_conf(&[], None)).assert_error(7, "prevResult");
    let mut conf = network.dns_conf(&[], Some(&previous));
    conf["runtimeDir"] = json!("relative/dir");
    add(&conf).assert_error(7, "runtimeDir");
    // The server cannot bind: the gateway's port 53 is someone else's.
    network
        .sandbox
        .ns
        .exec_ok(&["ip", "link", "add", "dnsbr0", "type", "bridge"]);
    network.sandbox.ns.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{GATEWAY}/24"),
        "dev",
        "dnsbr0",
    ]);
    network
        .sandbox
        .ns
        .exec_ok(&["ip", "link", "set", "dnsbr0", "up"]);
    let sandbox = kernel::netns::Netns::open(network.sandbox.ns.path()).expect("sandbox");
    let squatter = sandbox
        .run(|| UdpSocket::bind(format!("{GATEWAY}:53")).expect("squat port 53"))
        .expect("in the sandbox");
    add(&network.dns_conf(&[], Some(&previous))).assert_error(999, "cannot serve DNS");
    drop(squatter);
    let names = network.dns.network_dir(NET).join("names");
    let left: Vec<_> = std::fs::read_dir(&names).into_iter().flatten().collect();
    assert!(
        left.is_empty(),
        "a failed ADD left a registration: {left:?}"
    );
    assert!(network.servers().is_empty());
    // Now it can.
    add(&network.dns_conf(&[], Some(&previous))).success();
    assert_eq!(network.servers().len(), 1);
    network
        .dnsname("DEL", "bad1", &ns, "bad", &network.dns_conf(&[], None))
        .success();
}

#[test]
fn the_plugin_binary_links_no_dns_library() {
    let plugin = std::fs::read(our_bin_dir().join("dnsname")).expect("the plugin");
    let server = std::fs::read(our_bin_dir().join(SERVER)).expect("the server");
    let mentions = |binary: &[u8]| binary.windows(7).any(|w| w == b"hickory");
    assert!(mentions(&server), "the server uses hickory-proto");
    assert!(!mentions(&plugin), "the plugin must not link a DNS library");
}
