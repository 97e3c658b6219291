//! `"mtu": 0` means unset, as in the reference: bridge, ptp and tuning take it on every verb
//! and leave the kernel's default, and a container the reference attached with it is
//! detached by ours.

use ferrocni_tests::{require_root, with_previous, Call, Impl, NetnsGuard, Sandbox, TempDir};
use serde_json::{json, Value};

/// A veth's MTU when nobody sets one.
const DEFAULT_MTU: u64 = 1500;

#[test]
fn bridge_and_ptp_take_mtu_zero_as_unset() {
    require_root!();
    for (plugin, keep) in [("bridge", &["cni0"][..]), ("ptp", &[][..])] {
        let host = Sandbox::new(plugin, "mtunet");
        let config = host.conf(
            "1.0.0",
            json!([[{"subnet": "10.101.0.0/24"}]]),
            json!({"mtu": 0}),
        );
        let container = NetnsGuard::new("fmc");
        let result = host
            .call(Impl::Ours, "ADD", "mtu0", &container, &config)
            .success();
        assert_eq!(
            container.link_details("eth0")["mtu"],
            DEFAULT_MTU,
            "{plugin}"
        );
        let previous = with_previous(&config, &result);
        host.call(Impl::Ours, "CHECK", "mtu0", &container, &previous)
            .success();
        host.call(Impl::Ours, "DEL", "mtu0", &container, &previous)
            .success();
        assert!(container.links().is_empty(), "{plugin}: DEL removed eth0");
        drop(container);
        host.assert_clean(keep);

        if !Impl::Reference.available(plugin) {
            continue;
        }
        let container = NetnsGuard::new("fmc");
        let result = host
            .call(Impl::Reference, "ADD", "ref0", &container, &config)
            .success();
        assert_eq!(
            container.link_details("eth0")["mtu"],
            DEFAULT_MTU,
            "{plugin}: the reference leaves the default too"
        );
        host.call(
            Impl::Ours,
            "DEL",
            "ref0",
            &container,
            &with_previous(&config, &result),
        )
        .success();
        assert!(
            container.links().is_empty(),
            "{plugin}: ours detached what the reference attached"
        );
        drop(container);
        host.assert_clean(keep);
    }
}

/// tuning with `mtu: 0`, at the top level or in `args.cni` (where it overrides the top
/// level's value, as in the reference), changes no MTU and passes every verb.
#[test]
fn tuning_takes_mtu_zero_as_unset() {
    require_root!();
    let host = NetnsGuard::new("fmh");
    let implementations: &[Impl] = if Impl::Reference.available("tuning") {
        &[Impl::Ours, Impl::Reference]
    } else {
        &[Impl::Ours]
    };
    for extra in [
        json!({"mtu": 0}),
        json!({"mtu": 1400, "args": {"cni": {"mtu": 0}}}),
    ] {
        for &implementation in implementations {
            let container = NetnsGuard::new("fmc");
            container.exec_ok(&[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
            ]);
            let records = TempDir::new("mtu");
            let config = ferrocni_tests::extended(
                json!({
                    "cniVersion": "1.0.0", "name": "mtunet", "type": "tuning",
                    "dataDir": records.path_str(),
                    "prevResult": {
                        "cniVersion": "1.0.0",
                        "interfaces": [{"name": "eth0", "sandbox": container.path_str()}],
                        "ips": [{"interface": 0, "address": "10.101.1.2/24"}]
                    }
                }),
                &extra,
            );
            let call = |command: &str, config: &Value| {
                Call::new(implementation, "tuning", command)
                    .attachment("mtu0", &container.path_str(), "eth0")
                    .stdin(config)
                    .run_in(&host)
            };
            let what = format!("{implementation:?} {extra}");
            let result = call("ADD", &config).success();
            assert_eq!(container.link_details("eth0")["mtu"], DEFAULT_MTU, "{what}");
            let previous = with_previous(&config, &result);
            call("CHECK", &previous).success();
            call("DEL", &previous).success();
            assert_eq!(container.link_details("eth0")["mtu"], DEFAULT_MTU, "{what}");
        }
    }
}
