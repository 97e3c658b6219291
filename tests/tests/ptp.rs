//! ptp against the kernel: containers reach each other and the host only through the host's
//! routing, masquerade to a routed remote, every verb in every version, clean-up, and the
//! reference as an oracle.

use ferrocni_tests::{
    address, require_reference, require_root, wire, with_previous, Call, Impl, NetnsGuard, Sandbox,
    VERSIONS,
};
use serde_json::json;

const NET: &str = "ptpnet";

#[test]
fn containers_route_through_the_host_and_masquerade_to_a_remote() {
    require_root!();
    let host = Sandbox::new("ptp", NET);
    let remote = NetnsGuard::new("fpr");
    wire(&host.ns, "172.31.93.1/30", &remote, "172.31.93.2/30");
    let config = host.conf(
        "1.0.0",
        json!([[{"subnet": "10.93.0.0/24"}], [{"subnet": "fd00:93::/64"}]]),
        json!({"ipMasq": true}),
    );
    let (a, b) = (NetnsGuard::new("fpc"), NetnsGuard::new("fpc"));
    let ra = host.call(Impl::Ours, "ADD", "pa", &a, &config).success();
    let rb = host.call(Impl::Ours, "ADD", "pb", &b, &config).success();
    assert_eq!(ra["interfaces"].as_array().map(Vec::len), Some(2), "{ra}");
    assert_eq!(ra["ips"][0]["interface"], 1);
    assert!(a.ping(&address(&rb, 0)), "IPv4 container to container");
    assert!(b.ping(&address(&ra, 1)), "IPv6 container to container");
    assert!(a.ping("10.93.0.1"), "the gateway on the host");
    assert!(a.ping("172.31.93.2"), "the remote, through masquerade");
    let routes = a.ip_json(&["route", "show", "10.93.0.0/24"]);
    assert_eq!(
        routes[0]["gateway"], "10.93.0.1",
        "the subnet goes via the gateway: {routes}"
    );
    host.call(Impl::Ours, "CHECK", "pa", &a, &with_previous(&config, &ra))
        .success();
    host.call(Impl::Ours, "DEL", "pa", &a, &with_previous(&config, &ra))
        .success();
    host.call(Impl::Ours, "DEL", "pb", &b, &with_previous(&config, &rb))
        .success();
    host.call(Impl::Ours, "DEL", "pb", &b, &with_previous(&config, &rb))
        .success();
    host.assert_clean(&["wa"]);
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let host = Sandbox::new("ptp", NET);
    for version in VERSIONS {
        let config = host.conf(
            version,
            json!([[{"subnet": "10.94.0.0/24"}]]),
            json!({"ipMasq": true}),
        );
        let container = NetnsGuard::new("fpc");
        let result = host
            .call(Impl::Ours, "ADD", "pv", &container, &config)
            .success();
        assert_eq!(result["cniVersion"], version);
        let previous = with_previous(&config, &result);
        if version >= "0.4.0" {
            host.call(Impl::Ours, "CHECK", "pv", &container, &previous)
                .success();
        }
        if version == "1.1.0" {
            host.call_network("STATUS", &config).success();
            let mut gc = config.clone();
            gc["cni.dev/valid-attachments"] = json!([]);
            host.call_network("GC", &gc).success();
            assert!(host.reserved().is_empty(), "GC released it");
            assert!(!host.ns.nft_ruleset().contains("ptpnet/"));
        }
        host.call(Impl::Ours, "DEL", "pv", &container, &previous)
            .success();
        drop(container);
        host.assert_clean(&[]);
    }
}

#[test]
fn del_without_namespace_and_failed_add_leave_nothing() {
    require_root!();
    let host = Sandbox::new("ptp", NET);
    let tiny = host.conf(
        "1.0.0",
        json!([[{"subnet": "10.95.0.0/24", "rangeStart": "10.95.0.2", "rangeEnd": "10.95.0.2"}]]),
        json!({"ipMasq": true}),
    );
    let first = NetnsGuard::new("fpc");
    host.call(Impl::Ours, "ADD", "first", &first, &tiny)
        .success();
    let before = host.ns.links();
    let second = NetnsGuard::new("fpc");
    host.call(Impl::Ours, "ADD", "second", &second, &tiny)
        .assert_error(999, "no IP addresses available");
    assert_eq!(host.ns.links(), before);
    let path = first.path_str();
    drop(first);
    Call::new(Impl::Ours, "ptp", "DEL")
        .attachment("first", &path, "eth0")
        .stdin(&tiny)
        .run_in(&host.ns)
        .success();
    host.assert_clean(&[]);
    host.call(
        Impl::Ours,
        "ADD",
        "x",
        &second,
        &json!({"cniVersion": "1.0.0", "name": NET, "type": "ptp"}),
    )
    .assert_error(7, "ipam");
}

#[test]
fn same_shape_and_reachability_as_the_reference() {
    require_root!();
    require_reference!("ptp");
    for implementation in [Impl::Ours, Impl::Reference] {
        let host = Sandbox::new("ptp", NET);
        let config = host.conf("1.0.0", json!([[{"subnet": "10.96.0.0/24"}]]), json!({}));
        let (a, b) = (NetnsGuard::new("fpc"), NetnsGuard::new("fpc"));
        let ra = host
            .call(implementation, "ADD", "ra", &a, &config)
            .success();
        let rb = host
            .call(implementation, "ADD", "rb", &b, &config)
            .success();
        assert_eq!(
            ra["interfaces"].as_array().map(Vec::len),
            Some(2),
            "{implementation:?}: {ra}"
        );
        assert_eq!(ra["interfaces"][1]["name"], "eth0");
        assert_eq!(
            ra["ips"],
            json!([{"interface": 1, "address": "10.96.0.2/24", "gateway": "10.96.0.1"}])
        );
        assert_eq!(ra["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert!(a.ping(&address(&rb, 0)), "{implementation:?}");
        assert!(a.ping("10.96.0.1"), "{implementation:?}");
        host.call(
            implementation,
            "DEL",
            "ra",
            &a,
            &with_previous(&config, &ra),
        )
        .success();
        host.call(
            implementation,
            "DEL",
            "rb",
            &b,
            &with_previous(&config, &rb),
        )
        .success();
        if implementation == Impl::Ours {
            host.assert_clean(&[]);
        }
    }
}
