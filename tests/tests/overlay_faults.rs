//! The overlay's control plane under faults, each as an operator would cause it: etcd
//! frozen, killed, given credentials it refuses; a second machine under a node's name; a
//! node's records deleted by hand; agents killed for seconds and for longer than their
//! subnet's ownership. Settings the tests need reach the agents through `FERROCNI_*`
//! variables (see `Lab::agent_env`).

use ferrocni_tests::lab::{subnet_key, wait_for, EtcdTls, Lab, PREFIX, TTL};
use ferrocni_tests::unit::NotifySocket;
use ferrocni_tests::{require_root, require_tools};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Every node's subnet, from its node file.
fn subnets(lab: &Lab, count: usize) -> Vec<String> {
    (0..count).map(|i| lab.subnet(i)).collect()
}

/// Whether every pod pings every other within `limit`.
fn mesh_whole(pods: &[ferrocni_tests::lab::Pod], limit: Duration) -> bool {
    wait_for(limit, || {
        pods.iter().all(|a| {
            pods.iter()
                .filter(|b| b.ip != a.ip)
                .all(|b| a.ns.ping(&b.ip))
        })
    })
    .is_some()
}

/// The overlay's keys and values in etcd, in order.
fn records(lab: &Lab) -> Vec<(String, String)> {
    let text = lab
        .etcdctl(&["get", "--prefix", &format!("{PREFIX}/")])
        .expect("etcdctl get");
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
        .collect()
}

/// Metric `name` of machine `i`'s agent, from its /metrics.
fn metric(lab: &Lab, i: usize, name: &str) -> Option<f64> {
    let text = lab.health(i, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The etcd lease `key` is attached to, in hex (0 when none).
fn attached_lease(lab: &Lab, key: &str) -> String {
    let text = lab
        .etcdctl(&["get", key, "-w", "json"])
        .expect("etcdctl get");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("etcdctl JSON");
    format!("{:x}", answer["kvs"][0]["lease"].as_i64().unwrap_or(0))
}

/// The lease that keeps `subnet` its owner's: the one its record names, else (a layout with
/// one lease per node) the one the key is attached to.
fn ownership_lease(lab: &Lab, subnet: &str) -> String {
    let key = subnet_key(subnet);
    let value = lab
        .etcdctl(&["get", &key, "--print-value-only"])
        .unwrap_or_default();
    let record: serde_json::Value = serde_json::from_str(value.trim()).unwrap_or_default();
    match record["lease"].as_str() {
        Some(lease) => lease.to_string(),
        None => attached_lease(lab, &key),
    }
}

#[test]
fn an_etcd_frozen_for_30_s_while_a_node_joins_moves_no_live_node() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::with(3, |lab| {
        // Four subnets: three live nodes and one never owned.
        lab.set_network("10.244.0.0/22");
        // Ownership shorter than the freeze: by etcd's clock every subnet lapses during it,
        // and still no live node may lose its own.
        lab.agent_env("FERROCNI_SUBNET_TTL", "10");
    });
    let before = subnets(&lab, 3);
    let mut pods: Vec<_> = (0..3).map(|i| lab.pod(i)).collect();
    assert!(mesh_whole(&pods, Duration::from_secs(5)));

    // The newcomer starts near the end of the freeze: when etcd answers again, it is fresh
    // and quick to retry, while the live nodes' agents have backed off to their longest
    // delay, and every lease has expired.
    lab.pause_etcd();
    std::thread::sleep(Duration::from_secs(27));
    let joined = lab.add_node();
    std::thread::sleep(Duration::from_secs(3));
    lab.resume_etcd();

    lab.wait_leased(joined);
    let converged = wait_for(Duration::from_secs(30), || {
        (0..4).all(|i| lab.overlay_routes(i).len() == 3)
    });
    assert!(
        converged.is_some(),
        "the four nodes converged:\n{}",
        lab.logs()
    );
    let after = subnets(&lab, 4);
    assert_eq!(
        after[..3],
        before[..],
        "no live node changed subnet:\n{}",
        lab.logs()
    );
    assert!(
        !before.contains(&after[3]),
        "the newcomer took the free subnet, not a live node's: {after:?}"
    );
    pods.push(lab.pod(joined));
    assert!(
        mesh_whole(&pods, Duration::from_secs(20)),
        "every pod reaches every other:\n{}",
        lab.logs()
    );
}

#[test]
fn etcd_killed_and_restarted_moves_nothing_and_readiness_follows_it() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::new(2);
    let before = subnets(&lab, 2);
    let (a, b) = (lab.pod(0), lab.pod(1));
    let ready = |lab: &Lab, i: usize| lab.health(i, "/readyz").as_deref() == Some("ready\n");
    assert!(
        wait_for(Duration::from_secs(5), || ready(&lab, 0) && ready(&lab, 1)).is_some(),
        "both nodes ready: {:?}\n{}",
        lab.health(0, "/readyz"),
        lab.logs()
    );
    assert_eq!(lab.health(0, "/healthz").as_deref(), Some("ok\n"));

    lab.kill_etcd();
    // Longer than the liveness TTL: no lease can be renewed, nothing may be torn down.
    let outage_end = Instant::now() + TTL + Duration::from_secs(2);
    while Instant::now() < outage_end {
        assert!(a.ns.ping(&b.ip), "connectivity during the outage");
        std::thread::sleep(Duration::from_millis(300));
    }
    let unready = lab.health(0, "/readyz").unwrap_or_default();
    assert!(
        unready.starts_with("not ready: the lease was last renewed"),
        "{unready}"
    );
    let errors = metric(&lab, 0, "ferrocni_agent_etcd_errors_total");
    assert!(
        errors.is_some_and(|e| e > 0.0),
        "etcd errors counted: {errors:?}"
    );
    let age = metric(&lab, 0, "ferrocni_agent_lease_age_seconds");
    assert!(
        age.is_some_and(|a| a > TTL.as_secs_f64()),
        "lease age: {age:?}"
    );
    assert!(lab.agent_running(0) && lab.agent_running(1));

    lab.start_etcd();
    assert!(
        wait_for(Duration::from_secs(15), || ready(&lab, 0) && ready(&lab, 1)).is_some(),
        "ready again after etcd came back: {:?}\n{}",
        lab.health(0, "/readyz"),
        lab.logs()
    );
    assert_eq!(subnets(&lab, 2), before);
    let joined = lab.add_node();
    lab.wait_leased(joined);
    let subnet = lab.subnet(joined);
    let seen = wait_for(Duration::from_secs(10), || {
        (0..2).all(|i| lab.overlay_routes(i).contains(&subnet))
    });
    assert!(seen.is_some(), "agents follow etcd again:\n{}", lab.logs());
    assert_eq!(
        metric(&lab, 0, "ferrocni_agent_peers_programmed"),
        Some(2.0)
    );
    assert!(a.ns.ping(&b.ip) && b.ns.ping(&a.ip));
}

/// As ferrocni-agent.service starts it: under the unit's capability bounding set and no new
/// privileges, its settings in the environment. While etcd is down the node has no lease,
/// and the agent says nothing to systemd; READY=1 comes once it is leased and programmed,
/// and at that moment /readyz agrees and the node file is written.
#[test]
fn started_as_its_unit_the_agent_is_ready_only_once_leased_and_programmed() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl", "setpriv");
    let mut lab = Lab::empty(false);
    let node = lab.add_machine(None);
    let notify = NotifySocket::default();
    lab.start_agent_as_unit(node, &notify);

    let early = notify.receive(Duration::from_secs(4));
    assert_eq!(early, None, "notified without etcd:\n{}", lab.logs());
    let unready = lab.health(node, "/readyz").unwrap_or_default();
    assert!(unready.starts_with("not ready: no lease yet"), "{unready}");
    assert!(lab.agent_running(node), "{}", lab.logs());

    lab.start_etcd();
    let ready = notify.receive(Duration::from_secs(30));
    let readyz = lab.health(node, "/readyz");
    let message = ready.unwrap_or_else(|| panic!("no READY=1:\n{}", lab.logs()));
    assert!(message.starts_with("READY=1\n"), "{message}");
    assert!(message.contains("STATUS=node n1 on 10.244."), "{message}");
    assert_eq!(readyz.as_deref(), Some("ready\n"));
    assert!(lab.leased(node));
    // Once: systemd has no use for a second READY=1.
    assert_eq!(notify.receive(Duration::from_secs(3)), None);
}

#[test]
fn a_duplicate_node_name_is_refused_and_the_first_node_keeps_working() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::new(2);
    let (a, b) = (lab.pod(0), lab.pod(1));
    let before = records(&lab);
    // Another machine (198.18.0.3) given the first node's name by mistake.
    let duplicate = lab.add_machine(Some("n1"));
    lab.start_agent(duplicate);
    let status = lab.agent_exit(duplicate, Duration::from_secs(15));
    let log = lab.agent_log(duplicate);
    assert!(
        status.is_some_and(|s| !s.success()),
        "the duplicate stops with an error: {status:?}\n{}",
        lab.logs()
    );
    assert!(
        log.contains("ERROR") && log.contains("\"n1\" is held by the machine at 198.18.0.1"),
        "the refusal names the holder's address:\n{log}"
    );
    assert!(
        log.contains("--take-over"),
        "and says how to take over:\n{log}"
    );
    assert_eq!(records(&lab), before, "the duplicate wrote nothing");
    for _ in 0..10 {
        assert!(a.ns.ping(&b.ip) && b.ns.ping(&a.ip), "{}", lab.logs());
    }
    assert!(lab.agent_running(0));
    assert!(!lab.agent_log(0).contains("ERROR"), "{}", lab.agent_log(0));
}

#[test]
fn taking_over_a_name_moves_the_node_and_stops_the_machine_that_held_it() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::new(2);
    let subnet = lab.subnet(0);
    // The node's replacement, told to take over.
    let replacement = lab.add_machine(Some("n1"));
    let log =
        Stdio::from(std::fs::File::create(lab.dir.path().join("replacement.log")).expect("log"));
    lab.start_agent_with(replacement, &[("FERROCNI_TAKE_OVER", "true")], log);
    lab.wait_leased(replacement);
    assert_eq!(
        lab.subnet(replacement),
        subnet,
        "it keeps the node's subnet"
    );
    let status = lab.agent_exit(0, Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the machine that held the name stops with an error: {status:?}\n{}",
        lab.logs()
    );
    let log = lab.agent_log(0);
    assert!(
        log.contains("ERROR") && log.contains("was taken over by the machine at 198.18.0.3"),
        "{log}"
    );
    // The other node sends the subnet's traffic to the replacement now.
    let moved = wait_for(Duration::from_secs(5), || {
        lab.overlay_entries(1)
            .1
            .iter()
            .any(|f| f.contains("dst 198.18.0.3"))
    });
    assert!(moved.is_some(), "{:?}", lab.overlay_entries(1));
    let (pod, other) = (lab.pod(replacement), lab.pod(1));
    assert!(other.ns.ping(&pod.ip) && pod.ns.ping(&other.ip));
}

#[test]
fn a_nodes_records_deleted_or_revoked_by_hand_are_re_asserted_and_logged_as_errors() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let lab = Lab::new(2);
    let subnet = lab.subnet(0);
    let (a, b) = (lab.pod(0), lab.pod(1));
    // Every key of node n1, whatever the layout: named by it, or holding its name.
    let own: Vec<String> = records(&lab)
        .into_iter()
        .filter(|(k, v)| k.ends_with("/n1") || v.contains(r#""node":"n1""#))
        .map(|(k, _)| k)
        .collect();
    assert!(!own.is_empty());
    let restored = |lab: &Lab| {
        let keys: Vec<String> = records(lab).into_iter().map(|(k, _)| k).collect();
        own.iter().all(|k| keys.contains(k)) && lab.overlay_routes(1).contains(&subnet)
    };
    for key in &own {
        lab.etcdctl(&["del", key]).expect("deleted");
    }
    assert!(
        wait_for(Duration::from_secs(5), || restored(&lab)).is_some(),
        "the agent put its records back and the peer routes to it again:\n{}",
        lab.logs()
    );
    let errors = |lab: &Lab| {
        let log = lab.agent_log(0);
        log.lines()
            .filter(|l| l.contains("ERROR") && l.contains("re-asserting"))
            .count()
    };
    let logged = errors(&lab);
    assert!(logged > 0, "{}", lab.agent_log(0));
    // Its liveness lease revoked: the record goes with it; the agent re-asserts it.
    let live_key = own.iter().find(|k| k.ends_with("/n1")).unwrap_or(&own[0]);
    let lease = attached_lease(&lab, live_key);
    lab.etcdctl(&["lease", "revoke", &lease]).expect("revoked");
    assert!(
        wait_for(Duration::from_secs(5), || restored(&lab)
            && attached_lease(&lab, live_key) != lease)
        .is_some(),
        "re-asserted on a new lease:\n{}",
        lab.logs()
    );
    assert!(errors(&lab) > logged, "{}", lab.agent_log(0));
    let reasserts = metric(&lab, 0, "ferrocni_agent_reasserts_total");
    assert!(
        reasserts.is_some_and(|r| r >= 2.0),
        "counted: {reasserts:?}"
    );
    assert_eq!(lab.subnet(0), subnet);
    assert!(a.ns.ping(&b.ip) && b.ns.ping(&a.ip));
}

#[test]
fn an_agent_killed_keeps_its_subnet_within_and_beyond_the_liveness_ttl() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::new(2);
    let subnet = lab.subnet(1);
    let (a, b) = (lab.pod(0), lab.pod(1));
    // Within the TTL: the peer never stops routing to it.
    lab.stop_agent(1, libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(1));
    lab.start_agent(1);
    let back = Instant::now() + Duration::from_secs(3);
    while Instant::now() < back {
        assert!(lab.overlay_routes(0).contains(&subnet), "{}", lab.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab.subnet(1), subnet);
    assert!(a.ns.ping(&b.ip));

    // Beyond it: the peer drops the node, but the subnet stays the node's.
    lab.stop_agent(1, libc::SIGKILL);
    let dropped = wait_for(TTL + Duration::from_secs(4), || {
        !lab.overlay_routes(0).contains(&subnet)
    });
    assert!(dropped.is_some(), "the peer dropped the dead node");
    let newcomer = lab.add_node();
    lab.wait_leased(newcomer);
    assert_ne!(
        lab.subnet(newcomer),
        subnet,
        "a newcomer does not take the subnet of a node down for less than its ownership:\n{}",
        lab.logs()
    );
    lab.start_agent(1);
    let routed = wait_for(Duration::from_secs(15), || {
        lab.overlay_routes(0).contains(&subnet)
    });
    assert!(routed.is_some(), "{}", lab.logs());
    assert_eq!(lab.subnet(1), subnet);
    // The pod that stayed on the node through all of it is reachable again.
    assert!(
        wait_for(Duration::from_secs(5), || a.ns.ping(&b.ip)).is_some(),
        "{}",
        lab.logs()
    );
}

#[test]
fn a_dead_nodes_subnet_is_reused_only_after_its_ownership_lapses() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    const OWNERSHIP: Duration = Duration::from_secs(12);
    let mut lab = Lab::with(2, |lab| {
        // Two subnets, both taken: a newcomer can only have a dead node's.
        lab.set_network("10.244.0.0/23");
        lab.agent_env("FERROCNI_SUBNET_TTL", &OWNERSHIP.as_secs().to_string());
    });
    let dead = lab.subnet(1);
    lab.stop_agent(1, libc::SIGKILL);
    let killed = Instant::now();
    let newcomer = lab.add_node();
    // Past the liveness TTL, within the ownership: nothing for the newcomer.
    std::thread::sleep((TTL + Duration::from_secs(4)).saturating_sub(killed.elapsed()));
    assert!(
        !lab.leased(newcomer),
        "no subnet before the dead node's ownership lapsed:\n{}",
        lab.logs()
    );
    let leased = wait_for(Duration::from_secs(60), || lab.leased(newcomer));
    assert!(leased.is_some(), "{}", lab.logs());
    assert!(
        killed.elapsed() >= OWNERSHIP,
        "reused after {:?}",
        killed.elapsed()
    );
    assert_eq!(lab.subnet(newcomer), dead);
    assert!(
        lab.agent_log(newcomer).contains("lapsed"),
        "{}",
        lab.agent_log(newcomer)
    );
    let routed = wait_for(Duration::from_secs(5), || {
        lab.overlay_entries(0)
            .1
            .iter()
            .any(|f| f.contains("dst 198.18.0.3"))
    });
    assert!(routed.is_some(), "the other node routes it to the newcomer");
}

#[test]
fn an_owner_re_asserts_a_revoked_ownership_before_a_waiting_node_can_take_it() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::with(2, |lab| lab.set_network("10.244.0.0/23"));
    let subnet = lab.subnet(0);
    // The pool is full: the newcomer waits for a subnet.
    let newcomer = lab.add_node();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!lab.leased(newcomer));
    let lease = ownership_lease(&lab, &subnet);
    lab.etcdctl(&["lease", "revoke", &lease]).expect("revoked");
    // Longer than the grace a waiting node gives a lapsed subnet's owner (5 + 5 + 5 s).
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        !lab.leased(newcomer),
        "the newcomer took no live node's subnet:\n{}",
        lab.logs()
    );
    assert_eq!(lab.subnet(0), subnet);
    assert_ne!(
        ownership_lease(&lab, &subnet),
        lease,
        "re-asserted on a new lease"
    );
    assert!(
        lab.agent_log(0).contains("ERROR")
            && lab
                .agent_log(0)
                .contains("no longer has this node's ownership lease"),
        "{}",
        lab.agent_log(0)
    );
}

#[test]
fn a_closed_stderr_does_not_stop_the_agent() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::empty(false);
    lab.start_etcd();
    let node = lab.add_machine(None);
    // stderr is a pipe nobody reads any more: every log line fails with EPIPE.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors of a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are this process's, owned by nothing else.
    let (reader, writer) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    lab.start_agent_with(node, &[], Stdio::from(writer));
    lab.wait_leased(node);
    // A few reconciliations and renewals, each logging at debug.
    std::thread::sleep(Duration::from_secs(4));
    assert!(lab.agent_running(node), "the agent survived its stderr");
    assert_eq!(lab.health(node, "/readyz").as_deref(), Some("ready\n"));
}

/// A lab whose etcd speaks only TLS and wants client certificates.
fn tls_lab() -> Lab {
    let mut lab = Lab::empty(false);
    lab.tls = Some(EtcdTls::make(lab.dir.path()));
    lab.start_etcd();
    lab
}

#[test]
fn agents_reach_etcd_over_tls_with_client_certificates() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl", "openssl");
    let mut lab = tls_lab();
    let tls = lab.tls.as_ref().expect("tls");
    let env = [
        ("FERROCNI_ETCD_CAFILE", tls.ca.display().to_string()),
        (
            "FERROCNI_ETCD_CERTFILE",
            tls.client_cert.display().to_string(),
        ),
        (
            "FERROCNI_ETCD_KEYFILE",
            tls.client_key.display().to_string(),
        ),
    ];
    for (key, value) in &env {
        lab.agent_env(key, value);
    }
    for _ in 0..2 {
        lab.add_node();
    }
    lab.wait_leased(0);
    lab.wait_leased(1);
    let (a, b) = (lab.pod(0), lab.pod(1));
    assert!(
        wait_for(Duration::from_secs(10), || a.ns.ping(&b.ip)).is_some(),
        "{}",
        lab.logs()
    );
}

/// Starts a machine's agent with `env` and expects it to stop within seconds, with an error
/// containing every one of `needles`.
fn fails_fast(lab: &mut Lab, env: &[(&str, &str)], needles: &[&str]) {
    let machine = lab.add_machine(None);
    let log = lab.dir.path().join(format!("refused{machine}.log"));
    let file = std::fs::File::create(&log).expect("log");
    let started = Instant::now();
    lab.start_agent_with(machine, env, Stdio::from(file));
    let status = lab.agent_exit(machine, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the agent stopped with an error: {status:?}\n{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    assert!(!lab.leased(machine));
}

#[test]
fn a_wrong_ca_or_a_missing_client_certificate_fails_fast_and_says_why() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl", "openssl");
    let mut lab = tls_lab();
    let tls = lab.tls.as_ref().expect("tls");
    let (ca, other_ca) = (
        tls.ca.display().to_string(),
        tls.other_ca.display().to_string(),
    );
    let (cert, key) = (
        tls.client_cert.display().to_string(),
        tls.client_key.display().to_string(),
    );
    fails_fast(
        &mut lab,
        &[
            ("FERROCNI_ETCD_CAFILE", &other_ca),
            ("FERROCNI_ETCD_CERTFILE", &cert),
            ("FERROCNI_ETCD_KEYFILE", &key),
        ],
        &["ERROR", "certificate", "--etcd-cafile"],
    );
    fails_fast(
        &mut lab,
        &[("FERROCNI_ETCD_CAFILE", &ca)],
        &["ERROR", "--etcd-certfile"],
    );
    fails_fast(
        &mut lab,
        &[
            ("FERROCNI_ETCD_CAFILE", &ca),
            ("FERROCNI_ETCD_CERTFILE", "/nonexistent/client.crt"),
            ("FERROCNI_ETCD_KEYFILE", &key),
        ],
        &[
            "ERROR",
            "cannot read --etcd-certfile /nonexistent/client.crt",
        ],
    );
}

#[test]
fn etcd_users_log_in_and_a_wrong_password_fails_fast() {
    require_root!();
    require_tools!("etcd", "etcdctl", "curl");
    let mut lab = Lab::empty(false);
    lab.start_etcd();
    for args in [
        &["user", "add", "root:secret", "--interactive=false"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        lab.etcdctl(args).expect("etcd auth set up");
    }
    lab.etcd_user = Some("root:secret".to_string());
    lab.agent_env("FERROCNI_ETCD_USERNAME", "root");
    let node = lab.add_machine(None);
    lab.start_agent_with(node, &[("FERROCNI_ETCD_PASSWORD", "secret")], Stdio::null());
    lab.wait_leased(node);
    fails_fast(
        &mut lab,
        &[("FERROCNI_ETCD_PASSWORD", "wrong")],
        &["ERROR", "authentication failed"],
    );
}
