//! The VXLAN overlay across nodes: ferrocni-agent leasing subnets from a real etcd, the
//! vxlan plugin attaching pods, pods on different nodes reaching each other by their own
//! addresses. Each test builds its own lab (node namespaces on a private underlay).

use ferrocni_tests::lab::{wait_for, Lab, PREFIX, TTL};
use ferrocni_tests::{require_root, require_tools, NetnsGuard, TempDir};
use std::time::Duration;

/// Ip FragCreates of a namespace: how many fragments its kernel made.
fn fragments_created(ns: &NetnsGuard) -> u64 {
    let snmp = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let mut ip_lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip_lines.next().unwrap_or(""), ip_lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "FragCreates")
        .and_then(|(_, value)| value.parse().ok())
        .expect("FragCreates in /proc/net/snmp")
}

#[test]
fn pods_on_three_nodes_reach_each_other_by_their_own_addresses() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let lab = Lab::new(3);
    let subnets: Vec<String> = (0..3).map(|i| lab.subnet(i)).collect();
    let mut unique = subnets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        3,
        "every node has its own subnet: {subnets:?}"
    );

    let pods: Vec<_> = (0..3).map(|i| lab.pod(i)).collect();
    for (i, pod) in pods.iter().enumerate() {
        let subnet: ipnetwork::Ipv4Network = subnets[i].parse().expect("subnet");
        assert!(
            subnet.contains(pod.ip.parse().expect("ip")),
            "pod on node {i} has {} from {subnet}",
            pod.ip
        );
        // The overlay's MTU: the underlay's 1500 less VXLAN's 50.
        let mtu = pod.ns.link_details("eth0")["mtu"].as_u64();
        assert_eq!(mtu, Some(1450));
    }
    lab.assert_pods_reach_each_other(&pods);
    // Full-size packets (1450 bytes: a 1422-byte ping) cross, and the node fragments nothing.
    let fragments_before = fragments_created(&lab.nodes[0].ns);
    let big = pods[0].ns.exec(&[
        "busybox",
        "ping",
        "-c",
        "3",
        "-W",
        "2",
        "-s",
        "1422",
        &pods[2].ip,
    ]);
    assert!(big.status.success(), "a full-MTU packet crosses");
    assert_eq!(fragments_created(&lab.nodes[0].ns), fragments_before);
}

#[test]
fn a_joining_node_is_reachable_from_every_node_within_a_second() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::new(3);
    let pods: Vec<_> = (0..3).map(|i| lab.pod(i)).collect();
    let joined = lab.add_node();
    lab.wait_leased(joined);
    let subnet = lab.subnet(joined);
    let converged = wait_for(Duration::from_secs(1), || {
        (0..3).all(|i| lab.overlay_routes(i).contains(&subnet))
    });
    assert!(
        converged.is_some(),
        "every node routes {subnet} within a second:\n{}",
        lab.logs()
    );
    let newcomer = lab.pod(joined);
    for pod in &pods {
        assert!(pod.ns.ping(&newcomer.ip), "{} -> {}", pod.ip, newcomer.ip);
        assert!(newcomer.ns.ping(&pod.ip), "{} -> {}", newcomer.ip, pod.ip);
    }
}

#[test]
fn a_stopped_node_is_forgotten_after_its_lease_expires() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::new(3);
    let gone = lab.subnet(2);
    for i in 0..2 {
        assert!(lab.overlay_routes(i).contains(&gone));
    }
    // A crash: no chance to say goodbye.
    lab.stop_agent(2, libc::SIGKILL);
    let forgotten = wait_for(TTL + Duration::from_secs(4), || {
        (0..2).all(|i| {
            let (neighbours, forwarding) = lab.overlay_entries(i);
            !lab.overlay_routes(i).contains(&gone) && neighbours.len() == 1 && forwarding.len() == 1
        })
    });
    assert!(
        forgotten.is_some(),
        "the others dropped route, neighbour and forwarding entry of {gone}:\n{}",
        lab.logs()
    );
    // The surviving nodes still hold each other.
    assert!(lab.overlay_routes(0).contains(&lab.subnet(1)));
    assert!(lab.overlay_routes(1).contains(&lab.subnet(0)));
}

#[test]
fn an_agent_restart_keeps_its_subnet_and_its_pods_connected() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::new(2);
    let before = lab.subnet(1);
    let (a, b) = (lab.pod(0), lab.pod(1));
    assert!(a.ns.ping(&b.ip));
    let status = lab.stop_agent(1, libc::SIGTERM);
    assert!(
        status.success(),
        "SIGTERM stops the agent cleanly: {status:?}"
    );
    // The kernel state stays while the agent is away.
    assert!(a.ns.ping(&b.ip) && b.ns.ping(&a.ip));
    std::fs::remove_file(lab.node_file(1)).expect("node file removed");
    lab.start_agent(1);
    lab.wait_leased(1);
    assert_eq!(
        lab.subnet(1),
        before,
        "the restarted agent reclaimed its subnet"
    );
    let leases = lab
        .etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("{PREFIX}/subnets/"),
        ])
        .expect("etcdctl get");
    assert_eq!(
        leases.lines().filter(|l| !l.is_empty()).count(),
        2,
        "no second lease for the restarted node: {leases}"
    );
    assert!(a.ns.ping(&b.ip) && b.ns.ping(&a.ip));
    let c = lab.pod(1);
    assert!(a.ns.ping(&c.ip));
}

#[test]
fn an_etcd_outage_loses_no_connectivity_and_agents_resync_after_it() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::new(2);
    let (a, b) = (lab.pod(0), lab.pod(1));
    lab.stop_etcd();
    // Longer than the lease TTL: the agents cannot renew, and must not tear anything down.
    let outage_end = std::time::Instant::now() + TTL + Duration::from_secs(1);
    while std::time::Instant::now() < outage_end {
        assert!(
            a.ns.ping(&b.ip),
            "connectivity during the outage:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(lab.agent_running(0) && lab.agent_running(1));
    lab.start_etcd();
    // After the outage the agents re-list and re-watch: a node joining now is seen.
    let joined = lab.add_node();
    lab.wait_leased(joined);
    let subnet = lab.subnet(joined);
    let seen = wait_for(Duration::from_secs(15), || {
        (0..2).all(|i| lab.overlay_routes(i).contains(&subnet))
    });
    assert!(
        seen.is_some(),
        "agents resynced after etcd came back:\n{}",
        lab.logs()
    );
    let c = lab.pod(joined);
    assert!(a.ns.ping(&b.ip) && a.ns.ping(&c.ip) && c.ns.ping(&b.ip));
    assert_ne!(lab.subnet(0), lab.subnet(1));
}

#[test]
fn agents_recover_from_an_etcd_that_hangs_with_connections_open() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::new(2);
    // Longer than a store call's 5 s limit and the HTTP/2 ping timeout: the agents must give
    // up on the silent connection rather than wait behind it.
    lab.freeze_etcd(Duration::from_secs(7));
    let joined = lab.add_node();
    lab.wait_leased(joined);
    let subnet = lab.subnet(joined);
    let seen = wait_for(Duration::from_secs(20), || {
        (0..2).all(|i| lab.overlay_routes(i).contains(&subnet))
    });
    assert!(
        seen.is_some(),
        "agents follow leases again after etcd hung:\n{}",
        lab.logs()
    );
    let logs = lab.logs();
    assert!(
        logs.contains("WARN ferrocni_agent: etcd"),
        "the freeze was seen:\n{logs}"
    );
    let (a, c) = (lab.pod(0), lab.pod(joined));
    assert!(a.ns.ping(&c.ip) && c.ns.ping(&a.ip));
    assert_ne!(lab.subnet(0), lab.subnet(1));
}

#[test]
fn a_malformed_lease_is_skipped_and_valid_ones_still_apply() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::new(2);
    let subnets = format!("{PREFIX}/subnets/");
    lab.etcdctl(&["put", &format!("{subnets}10.244.2.0-24"), "not json"])
        .expect("put garbage");
    lab.etcdctl(&["put", &format!("{subnets}nonsense"), "{}"])
        .expect("put a bad key");
    lab.etcdctl(&["put", &format!("{PREFIX}/nodes/garbled"), "{"])
        .expect("put a bad liveness record");
    // A valid node simulated after the garbage: still applied.
    lab.simulate_node("sim", "10.244.99.0/24", "198.18.0.99", "02:00:00:00:00:99");
    let applied = wait_for(Duration::from_secs(2), || {
        (0..2).all(|i| {
            lab.overlay_routes(i)
                .contains(&"10.244.99.0/24".to_string())
        })
    });
    assert!(
        applied.is_some(),
        "the valid lease applied:\n{}",
        lab.logs()
    );
    assert!(lab.agent_running(0) && lab.agent_running(1));
    assert!(!lab.overlay_routes(0).contains(&"10.244.2.0/24".to_string()));
    assert!(lab.logs().contains("malformed"), "{}", lab.logs());
    // A malformed record occupies its subnet: a node that joins now does not take it.
    let joined = lab.add_node();
    lab.wait_leased(joined);
    assert_ne!(lab.subnet(joined), "10.244.2.0/24");
    // A restarted agent lists the garbage too, and still comes up.
    lab.stop_agent(0, libc::SIGTERM);
    lab.start_agent(0);
    let (a, b) = (lab.pod(0), lab.pod(1));
    assert!(a.ns.ping(&b.ip));
}

#[test]
fn the_plugin_asks_to_retry_until_the_agent_has_a_lease() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let mut lab = Lab::empty(false);
    // An agent that cannot reach etcd has no lease: ADD says "try again later", STATUS 50.
    let node = lab.add_node();
    let pod = NetnsGuard::new("fop");
    lab.plugin(node, "ADD", Some(("early", &pod)))
        .assert_error(11, "not leased");
    lab.plugin(node, "STATUS", None)
        .assert_error(50, "not leased");
    assert!(pod.links().is_empty(), "nothing was configured");
    lab.start_etcd();
    lab.wait_leased(node);
    lab.plugin(node, "STATUS", None).success();
    let added = lab.plugin(node, "ADD", Some(("early", &pod))).success();
    let with_previous = |lab: &Lab, command: &str| {
        ferrocni_tests::Call::binary(&ferrocni_tests::our_bin_dir().join("vxlan"), command)
            .env(
                "CNI_PATH",
                &ferrocni_tests::our_bin_dir().display().to_string(),
            )
            .attachment("early", &pod.path_str(), "eth0")
            .stdin(ferrocni_tests::with_previous(
                &serde_json::json!({"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan",
                    "subnetFile": lab.node_file(node), "dataDir": lab.node_dir(node).join("ipam"),
                    "stateDir": lab.node_dir(node).join("state")}),
                &added,
            ))
            .run_in(&lab.nodes[node].ns)
    };
    with_previous(&lab, "CHECK").success();
    // DEL works even after the agent (and its file) are gone.
    lab.stop_agent(node, libc::SIGTERM);
    std::fs::remove_file(lab.node_file(node)).expect("node file removed");
    with_previous(&lab, "DEL").success();
    assert!(pod.links().is_empty(), "the pod's interface is gone");
    let reservations =
        ferrocni_tests::reserved_ips(&lab.node_dir(node).join("ipam").join("overlay"));
    assert!(
        reservations.is_empty(),
        "the address was released: {reservations:?}"
    );
}

#[test]
fn static_mode_connects_nodes_without_etcd() {
    require_root!();
    let mut lab = Lab::empty(true);
    let subnets = ["10.244.10.0/24", "10.244.20.0/24"];
    for i in 0..2 {
        std::fs::create_dir_all(lab.node_dir(i)).expect("dir");
        lab.write_static_config(i, &subnets);
    }
    lab.add_node();
    lab.add_node();
    lab.wait_leased(0);
    lab.wait_leased(1);
    assert_eq!(lab.subnet(0), subnets[0]);
    let (a, b) = (lab.pod(0), lab.pod(1));
    assert!(a.ns.ping(&b.ip), "{}", lab.logs());
    assert!(b.ns.ping(&a.ip));
}

/// In a container that is not privileged (the DaemonSet's), /proc/sys is read-only; on a
/// node where forwarding is on already, as Kubernetes requires, the agent leaves it alone
/// and comes up.
#[test]
fn the_agent_comes_up_where_proc_sys_is_read_only_and_forwarding_is_on() {
    require_root!();
    require_tools!("unshare", "mount", "curl");
    let mut lab = Lab::empty(true);
    std::fs::create_dir_all(lab.node_dir(0)).expect("dir");
    lab.write_static_config(0, &["10.244.30.0/24"]);
    let node = lab.add_machine(None);
    lab.nodes[node]
        .ns
        .exec_ok(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    lab.start_agent_wrapped(
        node,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind -o ro /proc/sys /proc/sys && exec \"$@\"",
            "sh",
        ],
    );
    let ready = wait_for(Duration::from_secs(10), || {
        lab.health(node, "/readyz").as_deref() == Some("ready\n")
    });
    assert!(ready.is_some(), "{}", lab.logs());
    assert_eq!(lab.subnet(node), "10.244.30.0/24");
}

#[test]
fn gc_releases_attachments_the_runtime_no_longer_has() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let lab = Lab::new(1);
    let (kept, lost) = (lab.pod(0), lab.pod(0));
    let mut config = lab.plugin_config(0);
    config["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": kept.ns.name(), "ifname": "eth0"}]);
    ferrocni_tests::Call::binary(&ferrocni_tests::our_bin_dir().join("vxlan"), "GC")
        .env(
            "CNI_PATH",
            &ferrocni_tests::our_bin_dir().display().to_string(),
        )
        .stdin(config)
        .run_in(&lab.nodes[0].ns)
        .success();
    let reserved = ferrocni_tests::reserved_ips(&lab.node_dir(0).join("ipam").join("overlay"));
    assert_eq!(
        reserved,
        std::slice::from_ref(&kept.ip),
        "{} was released",
        lost.ip
    );
    let records = std::fs::read_dir(lab.node_dir(0).join("state"))
        .expect("state dir")
        .count();
    assert_eq!(records, 1, "only the kept attachment's record is left");
}

#[test]
fn a_deleted_vxlan_device_is_set_up_again() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let lab = Lab::new(2);
    let (a, b) = (lab.pod(0), lab.pod(1));
    lab.nodes[0]
        .ns
        .exec_ok(&["ip", "link", "del", "ferrocni.vx"]);
    let other = lab.subnet(1);
    // The periodic resync (2 s in the lab) notices, and a new session rebuilds the node.
    let repaired = wait_for(Duration::from_secs(8), || {
        lab.nodes[0]
            .ns
            .exec(&["ip", "link", "show", "ferrocni.vx"])
            .status
            .success()
            && lab.overlay_routes(0).contains(&other)
    });
    assert!(
        repaired.is_some(),
        "the agent repaired its node:\n{}",
        lab.logs()
    );
    assert!(a.ns.ping(&b.ip) && b.ns.ping(&a.ip));
}

#[test]
fn ip_masq_hides_pods_leaving_the_cluster_but_not_pod_to_pod_traffic() {
    require_root!();
    require_tools!("etcd", "etcdctl");
    let lab = Lab::new(2);
    let pod = NetnsGuard::new("fop");
    let mut config = lab.plugin_config(0);
    config["ipMasq"] = serde_json::json!(true);
    let call = |command: &str, config: &serde_json::Value| {
        ferrocni_tests::Call::binary(&ferrocni_tests::our_bin_dir().join("vxlan"), command)
            .env(
                "CNI_PATH",
                &ferrocni_tests::our_bin_dir().display().to_string(),
            )
            .attachment("masq", &pod.path_str(), "eth0")
            .stdin(config)
            .run_in(&lab.nodes[0].ns)
    };
    let added = call("ADD", &config).success();
    // The underlay has no route back to pod addresses: only a masqueraded ping returns.
    assert!(pod.ping("198.18.0.254"), "masqueraded to the underlay");
    // Pod-to-pod stays unmasqueraded: the rule exempts the whole cluster network.
    let ruleset = lab.nodes[0].ns.nft_ruleset();
    assert!(ruleset.contains("10.244.0.0/16"), "{ruleset}");
    let other = lab.pod(1);
    assert!(pod.ping(&other.ip));
    let with_previous = ferrocni_tests::with_previous(&config, &added);
    call("CHECK", &with_previous).success();
    call("DEL", &with_previous).success();
    assert!(
        !lab.nodes[0].ns.nft_ruleset().contains("10.244.0.0/16"),
        "DEL removed the masquerade rule"
    );
}

#[test]
fn the_agents_help_documents_every_option_with_its_environment_variable() {
    let output = std::process::Command::new(ferrocni_tests::our_bin_dir().join("ferrocni-agent"))
        .arg("--help")
        .output()
        .expect("the agent runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    // An option's block: its line (indented by at most 6) and its description (by 10).
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && indent <= 6 {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    let mut count = 0;
    for block in &blocks {
        let name = block
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap_or_default();
        if name == "--help" || name == "--version" {
            continue;
        }
        count += 1;
        let variable = format!(
            "[env: FERROCNI_{}",
            name.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(block.contains(&variable), "{name}: {variable} in\n{block}");
    }
    assert!(count >= 20, "{count} options in\n{help}");
    for endpoint in ["/healthz", "/readyz", "/metrics"] {
        assert!(help.contains(endpoint), "{endpoint} in\n{help}");
    }
}

/// `scripts/lab.sh ARGS` of this checkout, with its lab directory in `dir`.
fn lab_script(dir: &TempDir, args: &[&str]) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab.sh");
    std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env("LAB_DIR", dir.path())
        .env("LAB_BIN", ferrocni_tests::our_bin_dir())
        .output()
        .expect("bash runs")
}

#[test]
fn the_lab_script_removes_a_pods_namespace_when_its_add_fails() {
    require_root!();
    let dir = TempDir::new("labsh");
    // A node namespace named as `lab.sh up` names them, whose agent never leased a subnet:
    // the vxlan plugin's ADD fails (code 11, try again later).
    let node_ns = NetnsGuard::new("flab-n");
    let node = node_ns.name().trim_start_matches("flab-n").to_string();
    std::fs::create_dir_all(dir.path().join(format!("n{node}"))).expect("node dir");
    let pod = ferrocni_tests::unique("p");
    let output = lab_script(&dir, &["pod", &node, &pod]);
    let left = std::path::Path::new("/run/netns")
        .join(format!("flab-{pod}"))
        .exists();
    if left {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &format!("flab-{pod}")])
            .status();
    }
    assert!(!output.status.success(), "ADD failed");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("not leased"),
        "the plugin's error is shown"
    );
    assert!(!left, "the failed pod's namespace is removed");
}

#[test]
fn the_lab_script_warns_before_the_neighbour_table_overflows() {
    require_root!();
    let dir = TempDir::new("labsh");
    let fifty = lab_script(&dir, &["check", "50"]);
    assert!(fifty.status.success());
    let warning = String::from_utf8_lossy(&fifty.stderr);
    assert!(
        warning.contains("50 nodes need about 2550 neighbour entries")
            && warning.contains("gc_thresh3"),
        "{warning}"
    );
    let three = lab_script(&dir, &["check", "3"]);
    assert!(three.status.success() && three.stderr.is_empty());
}
