//! portmap chained after bridge: a published port answers from another namespace
//! ("outside"), from the host on 127.0.0.1 and its own address, and from a second container
//! (hairpin); UDP too; both backends; scale; bad inputs; nothing left after DEL.

use ferrocni_tests::{
    address, require_reference, require_root, require_tools, wire, with_previous, Call, Impl,
    NetnsGuard, Outcome, Sandbox, TempDir, VERSIONS,
};
use serde_json::{json, Value};

const NET: &str = "pmnet";
const HOST_ADDRESS: &str = "172.31.100.1";

/// A host with a bridge network, an "outside" namespace wired to it, and helpers to attach
/// containers and publish their ports.
struct Node {
    sandbox: Sandbox,
    outside: NetnsGuard,
    bridge: String,
}

impl Node {
    fn new() -> Self {
        let sandbox = Sandbox::new("bridge", NET);
        // A real host's loopback is up; the sandbox's starts down.
        sandbox.ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let outside = NetnsGuard::new("fpo");
        wire(
            &sandbox.ns,
            &format!("{HOST_ADDRESS}/24"),
            &outside,
            "172.31.100.2/24",
        );
        Node {
            sandbox,
            outside,
            bridge: ferrocni_tests::unique("pmbr"),
        }
    }

    fn bridge_conf(&self, version: &str) -> Value {
        let mut config = self.sandbox.conf(
            version,
            json!([[{"subnet": "10.100.0.0/16"}]]),
            json!({"isGateway": true, "ipMasq": true, "hairpinMode": true}),
        );
        config["bridge"] = json!(self.bridge);
        config
    }

    fn portmap_conf(version: &str, previous: &Value, mappings: Value, extra: Value) -> Value {
        let mut config = json!({
            "cniVersion": version, "name": NET, "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": mappings},
            "prevResult": previous
        });
        if let (Some(target), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        config
    }

    fn portmap(&self, command: &str, id: &str, container: &NetnsGuard, config: &Value) -> Outcome {
        self.run("portmap", command, (id, container, "eth0"), config)
    }

    /// Runs `plugin` for the attachment `id`, `container`, `ifname`.
    fn run(
        &self,
        plugin: &str,
        command: &str,
        (id, container, ifname): (&str, &NetnsGuard, &str),
        config: &Value,
    ) -> Outcome {
        Call::new(Impl::Ours, plugin, command)
            .attachment(id, &container.path_str(), ifname)
            .stdin(config)
            .run_in(&self.sandbox.ns)
    }

    /// Attaches a container with the bridge plugin; returns the bridge result.
    fn attach(&self, id: &str, container: &NetnsGuard) -> Value {
        self.attach_as((id, container, "eth0"))
    }

    fn attach_as(&self, attachment: (&str, &NetnsGuard, &str)) -> Value {
        self.run("bridge", "ADD", attachment, &self.bridge_conf("1.0.0"))
            .success()
    }

    fn detach(&self, id: &str, container: &NetnsGuard, previous: &Value) {
        self.detach_as((id, container, "eth0"), previous);
    }

    fn detach_as(&self, attachment: (&str, &NetnsGuard, &str), previous: &Value) {
        let config = with_previous(&self.bridge_conf("1.0.0"), previous);
        self.run("bridge", "DEL", attachment, &config).success();
    }

    fn assert_no_portmap_rules(&self) {
        let ruleset = self.sandbox.ns.nft_table("ferrocni_portmap");
        assert!(!ruleset.contains("pmnet/"), "port mappings left: {ruleset}");
        assert!(
            !ruleset.contains("chain pm-"),
            "portmap chains left: {ruleset}"
        );
        let nat = self.sandbox.ns.iptables_nat(false);
        assert!(
            !nat.contains("CNI-DN-"),
            "iptables portmap rules left: {nat}"
        );
    }
}

fn publishes_tcp(backend: Option<&str>) {
    let node = Node::new();
    let (web, other) = (NetnsGuard::new("fpc"), NetnsGuard::new("fpc"));
    let web_result = node.attach("web", &web);
    let other_result = node.attach("other", &other);
    let docroot = TempDir::new("www");
    let _server = web.http_server(80, "hello from web", &docroot);
    let extra = backend.map_or(json!({}), |b| json!({"backend": b}));
    let config = Node::portmap_conf(
        "1.0.0",
        &web_result,
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        extra,
    );
    let passed = node.portmap("ADD", "web", &web, &config).success();
    assert_eq!(passed, web_result, "portmap passes prevResult through");
    let host = &node.sandbox.ns;
    // A runtime retrying ADD: accepted, and no second copy of anything.
    let rules = || (host.nft_table("ferrocni_portmap"), host.iptables_nat(false));
    let once = rules();
    node.portmap("ADD", "web", &web, &config).success();
    assert_eq!(rules(), once, "{backend:?}: a repeated ADD changes nothing");
    assert_eq!(
        node.outside
            .curl(&format!("http://{HOST_ADDRESS}:8080/"))
            .as_deref(),
        Some("hello from web"),
        "from outside"
    );
    assert_eq!(
        host.curl("http://127.0.0.1:8080/").as_deref(),
        Some("hello from web"),
        "from the host on 127.0.0.1"
    );
    assert_eq!(
        host.curl(&format!("http://{HOST_ADDRESS}:8080/"))
            .as_deref(),
        Some("hello from web"),
        "from the host's address"
    );
    assert_eq!(
        other
            .curl(&format!("http://{HOST_ADDRESS}:8080/"))
            .as_deref(),
        Some("hello from web"),
        "hairpin from a neighbour"
    );
    assert_eq!(
        web.curl(&format!("http://{HOST_ADDRESS}:8080/")).as_deref(),
        Some("hello from web"),
        "hairpin to itself"
    );
    assert!(
        node.outside
            .curl(&format!("http://{HOST_ADDRESS}:8081/"))
            .is_none(),
        "unmapped ports stay closed"
    );
    node.portmap("CHECK", "web", &web, &config).success();
    node.portmap("DEL", "web", &web, &config).success();
    node.portmap("DEL", "web", &web, &config).success();
    assert!(
        node.outside
            .curl(&format!("http://{HOST_ADDRESS}:8080/"))
            .is_none(),
        "unpublished after DEL"
    );
    node.assert_no_portmap_rules();
    node.portmap("CHECK", "web", &web, &config)
        .assert_error(999, "missing");
    node.detach("web", &web, &web_result);
    node.detach("other", &other, &other_result);
    node.sandbox.assert_clean(&[&node.bridge, "wa"]);
}

#[test]
fn publishes_tcp_with_nftables() {
    require_root!();
    require_tools!("curl");
    publishes_tcp(None);
}

#[test]
fn publishes_tcp_with_iptables() {
    require_root!();
    require_tools!("curl");
    publishes_tcp(Some("iptables"));
}

#[test]
fn publishes_udp() {
    require_root!();
    require_tools!("python3", "conntrack");
    let node = Node::new();
    let container = NetnsGuard::new("fpc");
    let result = node.attach("udp", &container);
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5353))\nwhile True:\n d,a=s.recvfrom(100)\n s.sendto(b'echo:'+d,a)\n";
    let _server = container.spawn(&["python3", "-c", echo]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let config = Node::portmap_conf(
        "1.0.0",
        &result,
        json!([{"hostPort": 5300, "containerPort": 5353, "protocol": "udp"}]),
        json!({}),
    );
    node.portmap("ADD", "udp", &container, &config).success();
    let client = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'ping',('{HOST_ADDRESS}',5300))\nprint(s.recvfrom(100)[0].decode())\n"
    );
    let answer = node.outside.exec(&["python3", "-c", &client]);
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout).trim(),
        "echo:ping",
        "{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    let flows = || {
        let listed = node.sandbox.ns.exec(&[
            "conntrack",
            "-L",
            "-p",
            "udp",
            "--reply-src",
            &address(&result, 0),
        ]);
        String::from_utf8_lossy(&listed.stdout).lines().count()
    };
    assert!(flows() > 0, "the UDP flow is tracked");
    node.portmap("DEL", "udp", &container, &config).success();
    assert_eq!(
        flows(),
        0,
        "DEL flushed the flow that pointed at the container"
    );
    node.assert_no_portmap_rules();
    node.detach("udp", &container, &result);
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fpc");
    let result = node.attach("verbs", &container);
    for version in VERSIONS.iter().filter(|v| **v >= "0.3.0") {
        let previous = ferrocni_tests::convert(&result, version);
        let config = Node::portmap_conf(
            version,
            &previous,
            json!([{"hostPort": 9090, "containerPort": 90}]),
            json!({}),
        );
        let passed = node.portmap("ADD", "verbs", &container, &config).success();
        assert_eq!(passed["cniVersion"], *version);
        assert_eq!(address(&passed, 0), address(&result, 0));
        if *version >= "0.4.0" {
            node.portmap("CHECK", "verbs", &container, &config)
                .success();
        }
        if *version == "1.1.0" {
            Call::new(Impl::Ours, "portmap", "STATUS")
                .stdin(&config)
                .run_in(&node.sandbox.ns)
                .success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([]);
            Call::new(Impl::Ours, "portmap", "GC")
                .stdin(&gc)
                .run_in(&node.sandbox.ns)
                .success();
            node.assert_no_portmap_rules();
        }
        node.portmap("DEL", "verbs", &container, &config).success();
        node.assert_no_portmap_rules();
        // Without mappings every verb is a pass-through that touches nothing.
        let empty = Node::portmap_conf(version, &previous, json!([]), json!({}));
        assert_eq!(
            node.portmap("ADD", "verbs", &container, &empty).success()["cniVersion"],
            *version
        );
        node.portmap("DEL", "verbs", &container, &empty).success();
    }
    node.detach("verbs", &container, &result);
}

#[test]
fn a_taken_host_port_is_refused_and_the_first_mapping_survives() {
    require_root!();
    require_tools!("curl");
    let node = Node::new();
    let (a, b) = (NetnsGuard::new("fpc"), NetnsGuard::new("fpc"));
    let (ra, rb) = (node.attach("a", &a), node.attach("b", &b));
    let docroot = TempDir::new("www");
    let _server = a.http_server(80, "from a", &docroot);
    let mapping = json!([{"hostPort": 8088, "containerPort": 80}]);
    node.portmap(
        "ADD",
        "a",
        &a,
        &Node::portmap_conf("1.0.0", &ra, mapping.clone(), json!({})),
    )
    .success();
    let config_b = Node::portmap_conf("1.0.0", &rb, mapping, json!({}));
    node.portmap("ADD", "b", &b, &config_b)
        .assert_error(999, "already mapped");
    // The runtime cleans up after the failed ADD: b's DEL must not touch a's mapping.
    node.portmap("DEL", "b", &b, &config_b).success();
    assert_eq!(
        node.outside
            .curl(&format!("http://{HOST_ADDRESS}:8088/"))
            .as_deref(),
        Some("from a")
    );
    node.detach("a", &a, &ra);
    node.detach("b", &b, &rb);
}

#[test]
fn a_del_removes_only_what_its_own_add_made() {
    require_root!();
    require_tools!("curl");
    let node = Node::new();
    let a = NetnsGuard::new("fpc");
    let ra = node.attach("a", &a);
    let docroot = TempDir::new("www");
    let _server = a.http_server(80, "from a", &docroot);
    let url = format!("http://{HOST_ADDRESS}:8089/");
    // Same port, same target: what a container that inherits a's address would ask for
    // (without snat, so that only the DNAT itself is at stake).
    let config = Node::portmap_conf(
        "1.0.0",
        &ra,
        json!([{"hostPort": 8089, "containerPort": 80}]),
        json!({"snat": false}),
    );
    node.portmap("ADD", "a", &a, &config).success();
    node.portmap("DEL", "a", &a, &config).success();
    node.portmap("ADD", "heir", &a, &config).success();
    node.portmap("DEL", "a", &a, &config).success();
    assert_eq!(
        node.outside.curl(&url).as_deref(),
        Some("from a"),
        "a repeated DEL leaves the next owner's mapping alone"
    );
    // A DEL whose mappings differ from its ADD's still removes what the ADD made.
    let other = Node::portmap_conf(
        "1.0.0",
        &ra,
        json!([{"hostPort": 8090, "containerPort": 80}]),
        json!({}),
    );
    node.portmap("DEL", "heir", &a, &other).success();
    assert_eq!(node.outside.curl(&url), None);
    node.assert_no_portmap_rules();
    node.detach("a", &a, &ra);
}

#[test]
fn bad_inputs_are_clear_errors_and_change_nothing() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fpc");
    let result = node.attach("bad", &container);
    // A DEL before any ADD finds nothing and declares nothing.
    let config = Node::portmap_conf(
        "1.0.0",
        &result,
        json!([{"hostPort": 8080, "containerPort": 80}]),
        json!({}),
    );
    node.portmap("DEL", "bad", &container, &config).success();
    let listed = node
        .sandbox
        .ns
        .exec(&["nft", "list", "table", "inet", "ferrocni_portmap"]);
    assert!(!listed.status.success(), "DEL declared the portmap table");
    let cases = [
        (
            json!([{"hostPort": 0, "containerPort": 80}]),
            json!({}),
            7,
            "portMappings[0].hostPort",
        ),
        (
            json!([{"hostPort": 70000, "containerPort": 80}]),
            json!({}),
            7,
            "portMappings[0].hostPort",
        ),
        (
            json!([{"hostPort": 80, "containerPort": -1}]),
            json!({}),
            7,
            "portMappings[0].containerPort",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]),
            json!({}),
            7,
            "icmp",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80, "hostIP": "fd00::1"}]),
            json!({}),
            7,
            "portMappings[0].hostIP",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80, "hostIP": "nonsense"}]),
            json!({}),
            7,
            "portMappings[0].hostIP",
        ),
        // The nftables backend has no use for an iptables option: the error names it.
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "nftables", "markMasqBit": 5}),
            7,
            "config: markMasqBit:",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "nftables", "externalSetMarkChain": "KUBE-MARK-MASQ"}),
            7,
            "config: externalSetMarkChain:",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "nftables", "conditionsV6": ["-s", "fd00::/8"]}),
            7,
            "config: conditionsV6:",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "iptables", "conditionsV4": ["ip", "saddr", "10.0.0.0/8"]}),
            7,
            "config: conditionsV4:",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"markMasqBit": 40}),
            7,
            "markMasqBit",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "ipfw"}),
            7,
            "ipfw",
        ),
        // Conditions are tool syntax by design, but one token is one token: nothing in it
        // may start another command of nft's or iptables-restore's input.
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "nftables",
                   "conditionsV4": ["ip", "saddr", "10.0.0.0/8\nflush ruleset"]}),
            7,
            "conditionsV4[2]",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "nftables", "conditionsV4": ["ip", "saddr", "10.0.0.0/8;"]}),
            7,
            "conditionsV4[2]",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "iptables", "conditionsV4": ["-s", "10.0.0.0/8\n-A FORWARD"]}),
            7,
            "conditionsV4[1]",
        ),
        (
            json!([{"hostPort": 80, "containerPort": 80}]),
            json!({"backend": "iptables", "externalSetMarkChain": "MARK\n-A FORWARD"}),
            7,
            "externalSetMarkChain",
        ),
    ];
    for (mappings, extra, code, needle) in cases {
        let config = Node::portmap_conf("1.0.0", &result, mappings, extra);
        node.portmap("ADD", "bad", &container, &config)
            .assert_error(code, needle);
    }
    let mut no_previous = Node::portmap_conf(
        "1.0.0",
        &result,
        json!([{"hostPort": 80, "containerPort": 80}]),
        json!({}),
    );
    no_previous.as_object_mut().map(|c| c.remove("prevResult"));
    node.portmap("ADD", "bad", &container, &no_previous)
        .assert_error(7, "prevResult");
    // A newline is whitespace, which no link name holds: refused as the reference does.
    Call::new(Impl::Ours, "portmap", "ADD")
        .attachment("bad", &container.path_str(), "e\nx")
        .stdin(&config)
        .run_in(&node.sandbox.ns)
        .assert_error(4, "whitespace");
    node.assert_no_portmap_rules();
    node.detach("bad", &container, &result);
}

/// Interface names holding what is syntax to nft (`"`, `;`, `{`, `#`: the kernel and CNI_IFNAME
/// take them) are data: with an admin's conditions, whose rules go through `nft -f`, ADD
/// works, the port answers, CHECK finds the mapping under exactly that name, and a DEL of
/// another name leaves it. A `"` left as it is in nft text would end the comment's string,
/// and ADD would fail with a syntax error.
#[test]
fn interface_names_with_nft_syntax_stay_data() {
    require_root!();
    require_tools!("curl");
    let node = Node::new();
    let docroot = TempDir::new("www");
    for (i, ifname) in [r#"e"x"#, "e;x", "e{x", "e#x", r#"e"};{#"#]
        .iter()
        .enumerate()
    {
        let container = NetnsGuard::new("fpc");
        let id = format!("odd{i}");
        let attachment = (id.as_str(), &container, *ifname);
        let result = node.attach_as(attachment);
        let link = container.ip_json(&["link", "show", "dev", ifname]);
        assert_eq!(link[0]["ifname"], *ifname, "the kernel took the name");
        let _server = container.http_server(80, ifname, &docroot);
        let port = 8100 + i;
        let config = Node::portmap_conf(
            "1.0.0",
            &result,
            json!([{"hostPort": port, "containerPort": 80}]),
            json!({"conditionsV4": ["ip", "saddr", "172.31.100.0/24"]}),
        );
        node.run("portmap", "ADD", attachment, &config).success();
        let url = format!("http://{HOST_ADDRESS}:{port}/");
        assert_eq!(
            node.outside.curl(&url).as_deref(),
            Some(*ifname),
            "{ifname}"
        );
        node.run("portmap", "CHECK", attachment, &config).success();
        let another = (id.as_str(), &container, "e");
        node.run("portmap", "CHECK", another, &config)
            .assert_error(999, "missing");
        node.run("portmap", "DEL", another, &config).success();
        assert_eq!(
            node.outside.curl(&url).as_deref(),
            Some(*ifname),
            "{ifname}"
        );
        node.run("portmap", "DEL", attachment, &config).success();
        assert_eq!(node.outside.curl(&url), None, "{ifname}: unpublished");
        node.assert_no_portmap_rules();
        node.detach_as(attachment, &result);
    }
}

/// 200 containers with a mapping each: all answer, and DEL leaves no rule. The cost per ADD
/// and DEL staying flat as mappings pile up is shown in the benchmark suite, not timed here.
#[test]
fn two_hundred_mappings_all_answer_and_all_go() {
    require_root!();
    require_tools!("curl");
    let node = Node::new();
    let docroot = TempDir::new("www");
    let mut attached = Vec::new();
    for i in 0..200u16 {
        let container = NetnsGuard::new("fps");
        let id = format!("s{i}");
        let result = node.attach(&id, &container);
        let server = container.spawn(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            &docroot.path_str(),
        ]);
        let config = Node::portmap_conf(
            "1.0.0",
            &result,
            json!([{"hostPort": 20000 + i, "containerPort": 80}]),
            json!({}),
        );
        node.portmap("ADD", &id, &container, &config).success();
        attached.push((id, container, result, config, server));
    }
    std::fs::write(docroot.path().join("index.html"), "ok").expect("write");
    for (i, _) in attached.iter().enumerate() {
        let url = format!("http://{HOST_ADDRESS}:{}/", 20000 + i);
        // Up to three tries, as a client would: once in six CI runs one request got no
        // answer within its 3 s while the bridge floods 200 containers' IPv6 chatter. A
        // mapping that is missing never answers.
        let answer = (0..3).find_map(|_| node.outside.curl(&url));
        assert_eq!(answer.as_deref(), Some("ok"), "mapping {i}");
    }
    for (id, container, result, config, server) in attached {
        node.portmap("DEL", &id, &container, &config).success();
        drop(server);
        node.detach(&id, &container, &result);
    }
    node.assert_no_portmap_rules();
    node.sandbox.assert_clean(&[&node.bridge, "wa"]);
}

#[test]
fn publishes_over_ipv6_and_honours_conditions() {
    require_root!();
    require_tools!("curl");
    let node = Node::new();
    node.sandbox
        .ns
        .exec_ok(&["ip", "addr", "add", "fd00:99::1/64", "dev", "lo"]);
    let mut config = node.sandbox.conf(
        "1.0.0",
        json!([[{"subnet": "10.140.0.0/24"}], [{"subnet": "fd00:140::/64"}]]),
        json!({"isGateway": true, "ipMasq": true}),
    );
    config["bridge"] = json!(node.bridge);
    config["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    let container = NetnsGuard::new("fpc");
    let result = node
        .sandbox
        .call(Impl::Ours, "ADD", "six", &container, &config)
        .success();
    let docroot = TempDir::new("www");
    let _server = container.http_server(80, "over six", &docroot);
    let mapping = json!([{"hostPort": 8086, "containerPort": 80}]);
    let portmap = Node::portmap_conf("1.0.0", &result, mapping.clone(), json!({}));
    node.portmap("ADD", "six", &container, &portmap).success();
    assert_eq!(
        node.sandbox.ns.curl("http://[fd00:99::1]:8086/").as_deref(),
        Some("over six"),
        "IPv6 DNAT"
    );
    node.portmap("DEL", "six", &container, &portmap).success();

    // Conditions narrow who the mapping applies to: only the outside's subnet here.
    let elsewhere = Node::portmap_conf(
        "1.0.0",
        &result,
        mapping.clone(),
        json!({"conditionsV4": ["ip", "saddr", "192.0.2.0/24"]}),
    );
    node.portmap("ADD", "six", &container, &elsewhere).success();
    assert!(
        node.outside
            .curl(&format!("http://{HOST_ADDRESS}:8086/"))
            .is_none(),
        "a source outside the condition is not forwarded"
    );
    node.portmap("DEL", "six", &container, &elsewhere).success();
    let outside_only = Node::portmap_conf(
        "1.0.0",
        &result,
        mapping,
        json!({"conditionsV4": ["ip", "saddr", "172.31.100.0/24"]}),
    );
    node.portmap("ADD", "six", &container, &outside_only)
        .success();
    assert_eq!(
        node.outside
            .curl(&format!("http://{HOST_ADDRESS}:8086/"))
            .as_deref(),
        Some("over six")
    );
    node.portmap("DEL", "six", &container, &outside_only)
        .success();
    node.assert_no_portmap_rules();
    node.sandbox
        .call(
            Impl::Ours,
            "DEL",
            "six",
            &container,
            &with_previous(&config, &result),
        )
        .success();
}

/// The host needs no route to the container at ADD time, as with the reference (which then
/// skips `route_localnet`): a chain may bring the route up after portmap.
#[test]
fn maps_a_container_the_host_has_no_route_to_yet() {
    require_root!();
    let host = NetnsGuard::new("fph");
    let container = NetnsGuard::new("fpc");
    let previous = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": container.path_str()}],
        "ips": [{"address": "10.101.0.2/24", "interface": 0}]});
    for backend in ["nftables", "iptables"] {
        let config = Node::portmap_conf(
            "1.0.0",
            &previous,
            json!([{"hostPort": 8091, "containerPort": 80, "protocol": "tcp"}]),
            json!({"backend": backend}),
        );
        let call = |command| {
            Call::new(Impl::Ours, "portmap", command)
                .attachment("unrouted", &container.path_str(), "eth0")
                .stdin(&config)
                .run_in(&host)
        };
        call("ADD").success();
        call("DEL").success();
    }
    let ruleset = host.nft_table("ferrocni_portmap");
    assert!(!ruleset.contains("unrouted"), "{ruleset}");
    assert!(!host.iptables_nat(false).contains("CNI-DN-"));
}

/// One ADD publishing 1,000 ports (an nftables batch of thousands of messages, far past
/// the socket buffers' defaults): ADD succeeds, a runtime's retry too, CHECK passes, a
/// high-numbered port answers, and DEL removes every mapping; with both backends. A batch
/// that large needs socket buffers sized to it: with the defaults it fails whole ("Message
/// too long"), or its acks overflow though the kernel committed it ("No buffer space
/// available").
#[test]
fn a_thousand_mappings_in_one_add() {
    require_root!();
    require_tools!("curl");
    for backend in ["nftables", "iptables"] {
        let node = Node::new();
        let container = NetnsGuard::new("fpc");
        let result = node.attach("many", &container);
        let docroot = TempDir::new("www");
        let _server = container.http_server(80, "one of many", &docroot);
        let mappings: Vec<Value> = (0..1000)
            .map(|i| json!({"hostPort": 30000 + i, "containerPort": 80}))
            .collect();
        let config = Node::portmap_conf(
            "1.0.0",
            &result,
            json!(mappings),
            json!({"backend": backend}),
        );
        node.portmap("ADD", "many", &container, &config).success();
        node.portmap("ADD", "many", &container, &config).success();
        node.portmap("CHECK", "many", &container, &config).success();
        for port in [30000, 30999] {
            assert_eq!(
                node.outside
                    .curl(&format!("http://{HOST_ADDRESS}:{port}/"))
                    .as_deref(),
                Some("one of many"),
                "{backend}: port {port}"
            );
        }
        node.portmap("DEL", "many", &container, &config).success();
        assert_eq!(
            node.outside.curl(&format!("http://{HOST_ADDRESS}:30999/")),
            None,
            "{backend}: unpublished"
        );
        node.assert_no_portmap_rules();
        node.detach("many", &container, &result);
    }
}

/// A failed ADD leaves none of its mappings: with nftables one of 1,000 ports taken by
/// another container fails the whole batch; with iptables, a family whose restore fails
/// takes back what the other family's wrote.
#[test]
fn a_failed_add_leaves_none_of_its_mappings() {
    require_root!();
    let node = Node::new();
    let (a, b) = (NetnsGuard::new("fpc"), NetnsGuard::new("fpc"));
    let (ra, rb) = (node.attach("a", &a), node.attach("b", &b));
    let taken = Node::portmap_conf(
        "1.0.0",
        &ra,
        json!([{"hostPort": 30500, "containerPort": 80}]),
        json!({}),
    );
    node.portmap("ADD", "a", &a, &taken).success();
    let mappings: Vec<Value> = (0..1000)
        .map(|i| json!({"hostPort": 30000 + i, "containerPort": 80}))
        .collect();
    let config = Node::portmap_conf("1.0.0", &rb, json!(mappings), json!({}));
    let refused = node.portmap("ADD", "b", &b, &config);
    refused.assert_error(
        999,
        "already mapped by another container: 0.0.0.0/0 . tcp . 30500",
    );
    assert!(
        !refused.stdout.contains("30000"),
        "names the taken port only: {}",
        refused.stdout
    );
    let table = node.sandbox.ns.nft_table("ferrocni_portmap");
    assert!(!table.contains("pmnet/b/"), "{table}");
    node.portmap("DEL", "a", &a, &taken).success();
    node.assert_no_portmap_rules();

    // A dual-stack target whose IPv6 conditions iptables refuses: IPv4 is written first.
    let previous = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": b.path_str()}],
        "ips": [{"address": "10.101.0.2/24", "interface": 0},
                {"address": "fd00:101::2/64", "interface": 0}]});
    let config = Node::portmap_conf(
        "1.0.0",
        &previous,
        json!([{"hostPort": 8092, "containerPort": 80}]),
        json!({"conditionsV4": ["-s", "172.31.100.0/24"],
               "conditionsV6": ["--no-such-option"]}),
    );
    node.portmap("ADD", "dual", &b, &config)
        .assert_error(999, "ip6tables-restore");
    node.assert_no_portmap_rules();
    node.detach("a", &a, &ra);
    node.detach("b", &b, &rb);
}

/// What ours writes where iptables looks (the ip/ip6 nat and filter tables) lists with
/// iptables, an admin's first command; the reference's portmap spec (ptp with ipMasq, then
/// portmap) runs `iptables -t nat -S CNI-DN-<hash>`. With the iptables backend that chain
/// is there and lists its DNAT; with nftables ours keeps out of those tables altogether
/// (and iptables-nft calls a chain it cannot find "incompatible").
#[test]
fn iptables_lists_what_either_backend_wrote() {
    require_root!();
    for backend in ["iptables", "nftables"] {
        let sandbox = Sandbox::new("ptp", "ptpnet");
        let container = NetnsGuard::new("fpc");
        let ptp = sandbox.conf(
            "1.0.0",
            json!([[{"subnet": "10.126.0.0/24"}], [{"subnet": "fd00:126::/64"}]]),
            json!({"ipMasq": true, "ipMasqBackend": backend}),
        );
        let result = sandbox
            .call(Impl::Ours, "ADD", "spec", &container, &ptp)
            .success();
        let mut portmap = Node::portmap_conf(
            "1.0.0",
            &result,
            json!([{"hostPort": 8093, "containerPort": 80}]),
            json!({"backend": backend}),
        );
        portmap["name"] = json!("ptpnet");
        let firewall = json!({"cniVersion": "1.0.0", "name": "ptpnet", "type": "firewall",
                              "backend": backend, "prevResult": result});
        for config in [&portmap, &firewall] {
            let plugin = config["type"].as_str().expect("a type");
            Call::ours(plugin, "ADD", "spec", &container, config)
                .run_in(&sandbox.ns)
                .success();
        }
        let host = &sandbox.ns;
        if backend == "nftables" {
            let listed = host.exec(&["nft", "list", "tables"]);
            let tables = String::from_utf8_lossy(&listed.stdout);
            assert!(
                tables.lines().all(|t| t.starts_with("table inet ferrocni")),
                "nftables: tables beside ours: {tables}"
            );
        }
        let listing = |command: &[&str]| {
            let listed = host.exec(command);
            let stderr = String::from_utf8_lossy(&listed.stderr);
            assert!(
                listed.status.success() && !stderr.contains("incompatible"),
                "{backend}: {command:?}: {stderr}"
            );
            String::from_utf8_lossy(&listed.stdout).into_owned()
        };
        for tool in ["iptables", "ip6tables"] {
            for table in ["nat", "filter"] {
                listing(&[tool, "-t", table, "-S"]);
            }
            listing(&[&format!("{tool}-save")]);
        }
        if backend == "iptables" {
            for (tool, index) in [("iptables", 0), ("ip6tables", 1)] {
                let nat = listing(&[tool, "-t", "nat", "-S"]);
                let chain = nat
                    .lines()
                    .find_map(|l| l.strip_prefix("-N CNI-DN-"))
                    .map(|hash| format!("CNI-DN-{hash}"))
                    .unwrap_or_else(|| panic!("{tool}: no DNAT chain: {nat}"));
                let rules = listing(&[tool, "-t", "nat", "-S", &chain]);
                let target = address(&result, index);
                assert!(rules.contains(&target), "{tool} {chain}: {rules}");
            }
        }
        for config in [&firewall, &portmap] {
            let plugin = config["type"].as_str().expect("a type");
            Call::ours(plugin, "DEL", "spec", &container, config)
                .run_in(host)
                .success();
        }
        sandbox
            .call(
                Impl::Ours,
                "DEL",
                "spec",
                &container,
                &with_previous(&ptp, &result),
            )
            .success();
        sandbox.assert_clean(&[]);
    }
}

/// Earlier versions named an owner in full whatever its interface name held (masquerade
/// and plain mappings go over netlink, where a `"` is no trouble); now such a name is
/// hashed, and DEL and GC still find the elements named the old way.
#[test]
fn elements_named_in_full_by_earlier_versions_are_still_found() {
    require_root!();
    let node = Node::new();
    let container = NetnsGuard::new("fpc");
    let result = node.attach("now", &container);
    let plant = |id: &str, address: &str| {
        let element = json!({"nftables": [{"add": {"element": {
            "family": "inet", "table": "ferrocni", "name": "snat4",
            "elem": [[{"elem": {"val": address, "comment": format!("{NET}/{id}/e\"x")}}, 1]]}}}]});
        node.sandbox
            .ns
            .exec_ok(&["nft", "-j", &element.to_string()]);
    };
    plant("old", "10.100.9.9");
    plant("gone", "10.100.9.10");
    let old = ("old", &container, r#"e"x"#);
    node.run("bridge", "DEL", old, &node.bridge_conf("1.0.0"))
        .success();
    let ruleset = node.sandbox.ns.nft_ruleset();
    assert!(!ruleset.contains("10.100.9.9 "), "DEL by owner: {ruleset}");
    assert!(ruleset.contains("10.100.9.10 "), "{ruleset}");
    let mut gc = node.bridge_conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "now", "ifname": "eth0"}]);
    node.sandbox.call_network("GC", &gc).success();
    let ruleset = node.sandbox.ns.nft_ruleset();
    assert!(!ruleset.contains("10.100.9.10 "), "GC: {ruleset}");
    assert!(ruleset.contains(&address(&result, 0)), "{ruleset}");
    node.detach("now", &container, &result);
}

/// The reference cuts nothing itself: iptables-nft cuts a comment past 255 bytes, so for a
/// long container ID its DNAT jump carries part of the ID. Ours finds and removes that rule
/// (the two implementations share these chains).
#[test]
fn rules_the_reference_wrote_for_a_long_id_are_removed() {
    require_root!();
    require_reference!("portmap");
    let host = NetnsGuard::new("fph");
    let container = NetnsGuard::new("fpc");
    let previous = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": container.path_str()}],
        "ips": [{"address": "10.101.0.2/24", "interface": 0}]});
    let config = Node::portmap_conf(
        "1.0.0",
        &previous,
        json!([{"hostPort": 8094, "containerPort": 80, "protocol": "tcp"}]),
        json!({"backend": "iptables"}),
    );
    let id = "c".repeat(300);
    let call = |implementation, command| {
        Call::new(implementation, "portmap", command)
            .attachment(&id, &container.path_str(), "eth0")
            .stdin(&config)
            .run_in(&host)
    };
    call(Impl::Reference, "ADD").success();
    let nat = host.iptables_nat(false);
    assert!(nat.contains("-A CNI-HOSTPORT-DNAT"), "{nat}");
    call(Impl::Ours, "CHECK").success();
    call(Impl::Ours, "DEL").success();
    let nat = host.iptables_nat(false);
    assert!(!nat.contains("CNI-DN-"), "{nat}");
}

/// A bridge whose name holds a dot (`cni.0`; VLAN devices are named so too): ADD finds the
/// bridge's `route_localnet` and the port answers on 127.0.0.1. A dotted sysctl key read the
/// name's dot as a separator, and ADD failed with "no sysctl".
#[test]
fn a_dotted_bridge_name_still_takes_localhost_traffic() {
    require_root!();
    require_tools!("curl");
    let mut node = Node::new();
    node.bridge = ferrocni_tests::unique("pm.");
    let container = NetnsGuard::new("fpc");
    let result = node.attach("dot", &container);
    let docroot = TempDir::new("www");
    let _server = container.http_server(80, "dotted", &docroot);
    let config = Node::portmap_conf(
        "1.0.0",
        &result,
        json!([{"hostPort": 8096, "containerPort": 80}]),
        json!({}),
    );
    node.portmap("ADD", "dot", &container, &config).success();
    assert_eq!(
        node.sandbox.ns.curl("http://127.0.0.1:8096/").as_deref(),
        Some("dotted")
    );
    node.portmap("DEL", "dot", &container, &config).success();
    node.detach("dot", &container, &result);
}
