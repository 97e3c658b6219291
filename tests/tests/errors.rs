//! Bad input of every kind gets the right CNI error code and a message naming the problem,
//! never a panic, and changes nothing.

use ferrocni_tests::{require_root, reserved_ips, Call, Impl, NetnsGuard, Outcome, TempDir};
use serde_json::{json, Value};

fn host_local_conf(data_dir: &TempDir, ranges: Value) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "errnet", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": data_dir.path_str(), "ranges": ranges}
    })
}

fn loopback(
    host: &NetnsGuard,
    container: &NetnsGuard,
    command: &str,
    config: impl ToString,
) -> Outcome {
    Call::new(Impl::Ours, "loopback", command)
        .attachment("errtest", &container.path_str(), "lo")
        .stdin(config)
        .run_in(host)
}

#[test]
fn protocol_errors_have_the_spec_codes() {
    require_root!();
    let host = NetnsGuard::new("ferr");
    let container = NetnsGuard::new("ferc");
    let good = json!({"cniVersion": "1.0.0", "name": "errnet", "type": "loopback"});

    loopback(&host, &container, "ADD", "{not json").assert_error(6, "decoding network config");
    loopback(&host, &container, "ADD", "[1, 2]").assert_error(7, "JSON object");
    loopback(
        &host,
        &container,
        "ADD",
        json!({"cniVersion": "9.9.9", "name": "n"}),
    )
    .assert_error(1, "9.9.9");
    loopback(
        &host,
        &container,
        "ADD",
        json!({"cniVersion": "1.0.0", "type": "loopback"}),
    )
    .assert_error(7, "missing network name");
    loopback(
        &host,
        &container,
        "ADD",
        json!({"cniVersion": "1.0.0", "name": "a/b"}),
    )
    .assert_error(7, "network name");
    loopback(&host, &container, "FROB", &good).assert_error(4, "unknown CNI_COMMAND: FROB");
    loopback(
        &host,
        &container,
        "CHECK",
        json!({"cniVersion": "0.3.1", "name": "n"}),
    )
    .assert_error(1, "CHECK");
    loopback(&host, &container, "STATUS", &good).assert_error(1, "STATUS");
    Call::new(Impl::Ours, "loopback", "GC")
        .stdin(&good)
        .run_in(&host)
        .assert_error(1, "GC");

    let run = |call: Call| call.stdin(&good).run_in(&host);
    let base = || {
        Call::new(Impl::Ours, "loopback", "ADD").attachment("errtest", &container.path_str(), "lo")
    };
    run(base().without_env("CNI_CONTAINERID")).assert_error(4, "CNI_CONTAINERID");
    run(base().without_env("CNI_NETNS").without_env("CNI_IFNAME"))
        .assert_error(4, "CNI_NETNS,CNI_IFNAME");
    run(base().env("CNI_CONTAINERID", "bad id")).assert_error(4, "containerID");
    run(base().env("CNI_CONTAINERID", "-lead")).assert_error(4, "containerID");
    run(base().env("CNI_IFNAME", "eth0/x")).assert_error(4, "interface name");
    run(base().env("CNI_IFNAME", "averyveryverylongname")).assert_error(4, "too long");
    run(base().env("CNI_IFNAME", "..")).assert_error(4, "interface name");
    run(base().env("CNI_NETNS", "/run/netns/ferrocni-no-such-ns"))
        .assert_error(8, "does not exist");
    run(base().env("CNI_NETNS", "/etc/hostname")).assert_error(8, "not a network namespace");
    // The plugin runs inside `host`: pointing CNI_NETNS at it is pointing at its own namespace.
    run(base().env("CNI_NETNS", &host.path_str())).assert_error(8, "should not be the same");
    assert!(
        !host.link_is_up("lo"),
        "a refused ADD must not touch the namespace"
    );
    let overridden = run(base()
        .env("CNI_NETNS", &host.path_str())
        .env("CNI_NETNS_OVERRIDE", "1"));
    overridden.success();
}

#[test]
fn ipam_config_errors_name_the_field() {
    require_root!();
    let host = NetnsGuard::new("ferr");
    let container = NetnsGuard::new("ferc");
    let data_dir = TempDir::new("err");
    let add = |config: Value| {
        Call::new(Impl::Ours, "host-local", "ADD")
            .attachment("errtest", &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&host)
    };
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.0/33"}]]),
    ))
    .assert_error(6, "ipam.ranges[0][0].subnet");
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.9/24"}]]),
    ))
    .assert_error(7, "host bits");
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.0/24", "rangeStart": "10.78.0.1"}]]),
    ))
    .assert_error(7, "ipam.ranges[0][0].rangeStart");
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.0/24", "gateway": "10.9.0.1"}]]),
    ))
    .assert_error(7, "ipam.ranges[0][0].gateway");
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.0/31"}]]),
    ))
    .assert_error(7, "too small");
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.0/24"}, {"subnet": "fd00::/64"}]]),
    ))
    .assert_error(7, "mixed address families");
    add(host_local_conf(
        &data_dir,
        json!([[{"subnet": "10.77.0.0/16"}], [{"subnet": "10.77.1.0/24"}]]),
    ))
    .assert_error(7, "overlaps");
    add(host_local_conf(
        &data_dir,
        json!([[{"rangeStart": "10.77.0.1"}]]),
    ))
    .assert_error(7, "subnet is required");
    add(host_local_conf(&data_dir, json!([]))).assert_error(7, "no IP ranges specified");
    let mut relative = host_local_conf(&data_dir, json!([[{"subnet": "10.77.0.0/24"}]]));
    relative["ipam"]["dataDir"] = json!("store/here");
    add(relative).assert_error(7, "ipam.dataDir: \"store/here\" is relative");
    add(host_local_conf(&data_dir, json!("10.77.0.0/24"))).assert_error(6, "ipam.ranges");
    add(json!({"cniVersion": "1.0.0", "name": "errnet", "type": "x"})).assert_error(7, "'ipam'");
    let mut requested = host_local_conf(&data_dir, json!([[{"subnet": "10.77.0.0/24"}]]));
    requested["runtimeConfig"] = json!({"ips": ["not-an-ip"]});
    add(requested).assert_error(7, "runtimeConfig.ips");
    assert!(
        reserved_ips(&data_dir.path().join("errnet")).is_empty(),
        "no reservation after a refused ADD"
    );
}
