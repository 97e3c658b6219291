//! static IPAM: addresses from the config, CNI_ARGS and runtimeConfig; CHECK; the reference
//! as an oracle.

use ferrocni_tests::{require_reference, require_root, Call, Impl, NetnsGuard, Outcome, VERSIONS};
use serde_json::{json, Value};

fn conf(version: &str, ipam: Value) -> Value {
    let section = ferrocni_tests::extended(json!({"type": "static"}), &ipam);
    json!({"cniVersion": version, "name": "stnet", "type": "bridge", "ipam": section})
}

fn run(
    implementation: Impl,
    command: &str,
    host: &NetnsGuard,
    config: &Value,
    cni_args: &str,
) -> Outcome {
    Call::new(implementation, "static", command)
        .attachment("sttest", &host.path_str(), "eth0")
        .env("CNI_NETNS_OVERRIDE", "1")
        .env("CNI_ARGS", cni_args)
        .stdin(config)
        .run_in(host)
}

fn single() -> Value {
    json!({
        "addresses": [{"address": "10.70.0.5/24", "gateway": "10.70.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.70.0.1"}],
        "dns": {"nameservers": ["10.70.0.53"], "domain": "example.test"}
    })
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let host = NetnsGuard::new("fsh");
    for version in VERSIONS {
        let config = conf(version, single());
        let result = run(Impl::Ours, "ADD", &host, &config, "").success();
        assert_eq!(result["cniVersion"], version);
        let address = if version < "0.3.0" {
            &result["ip4"]["ip"]
        } else {
            &result["ips"][0]["address"]
        };
        assert_eq!(address, "10.70.0.5/24", "{version}: {result}");
        assert_eq!(result["dns"]["domain"], "example.test");
        if version >= "0.4.0" {
            let mut check = config.clone();
            check["prevResult"] = result.clone();
            run(Impl::Ours, "CHECK", &host, &check, "").success();
            let mut wrong = check.clone();
            wrong["ipam"]["addresses"][0]["address"] = json!("10.70.0.6/24");
            run(Impl::Ours, "CHECK", &host, &wrong, "").assert_error(999, "10.70.0.6/24");
            run(Impl::Ours, "CHECK", &host, &config, "").assert_error(7, "prevResult");
        }
        run(Impl::Ours, "DEL", &host, &config, "").success();
        if version == "1.1.0" {
            Call::new(Impl::Ours, "static", "STATUS")
                .stdin(&config)
                .run_in(&host)
                .success();
            Call::new(Impl::Ours, "static", "GC")
                .stdin(&config)
                .run_in(&host)
                .success();
        }
    }
}

#[test]
fn addresses_from_cni_args_and_runtime_config() {
    require_root!();
    let host = NetnsGuard::new("fsh");
    let config = conf("1.0.0", single());
    let with_args = run(
        Impl::Ours,
        "ADD",
        &host,
        &config,
        "IP=10.70.1.5/24,fd00:70::5/64;GATEWAY=10.70.1.1",
    )
    .success();
    assert_eq!(
        with_args["ips"],
        json!([
            {"address": "10.70.0.5/24", "gateway": "10.70.0.1"},
            {"address": "10.70.1.5/24", "gateway": "10.70.1.1"},
            {"address": "fd00:70::5/64"}
        ])
    );
    let mut runtime = config.clone();
    runtime["runtimeConfig"] = json!({"ips": ["10.70.2.5/24"]});
    runtime["args"] = json!({"cni": {"ips": ["10.70.3.5/24"]}});
    let result = run(Impl::Ours, "ADD", &host, &runtime, "").success();
    assert_eq!(
        result["ips"],
        json!([{"address": "10.70.2.5/24"}]),
        "runtimeConfig wins"
    );
}

#[test]
fn bad_addresses_name_the_field() {
    require_root!();
    let host = NetnsGuard::new("fsh");
    run(
        Impl::Ours,
        "ADD",
        &host,
        &conf("1.0.0", json!({"addresses": [{"address": "10.70.0.5"}]})),
        "",
    )
    .assert_error(7, "ipam.addresses[0].address");
    run(
        Impl::Ours,
        "ADD",
        &host,
        &conf(
            "1.0.0",
            json!({"addresses": [{"address": "10.70.0.300/24"}]}),
        ),
        "",
    )
    .assert_error(7, "ipam.addresses[0].address");
    run(
        Impl::Ours,
        "ADD",
        &host,
        &conf("1.0.0", json!({})),
        "IP=nonsense/8",
    )
    .assert_error(7, "CNI_ARGS IP");
    run(
        Impl::Ours,
        "ADD",
        &host,
        &conf("1.0.0", single()),
        "GATEWAY=x",
    )
    .assert_error(7, "CNI_ARGS GATEWAY");
    let mut runtime = conf("1.0.0", single());
    runtime["runtimeConfig"] = json!({"ips": ["10.1.1.1"]});
    run(Impl::Ours, "ADD", &host, &runtime, "").assert_error(7, "runtimeConfig.ips[0]");
    let two = json!({"addresses": [{"address": "10.70.0.5/24"}, {"address": "10.70.1.5/24"}]});
    run(Impl::Ours, "ADD", &host, &conf("0.2.0", two), "")
        .assert_error(7, "more than 1 address per family");
    run(
        Impl::Ours,
        "ADD",
        &host,
        &json!({"cniVersion": "1.0.0", "name": "n", "type": "x"}),
        "",
    )
    .assert_error(7, "'ipam'");
}

#[test]
fn same_results_as_the_reference() {
    require_root!();
    require_reference!("static");
    let host = NetnsGuard::new("fsh");
    let dual = json!({
        "addresses": [{"address": "10.70.0.5/24", "gateway": "10.70.0.1"}, {"address": "fd00:70::5/64"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.70.0.1"}, {"dst": "::/0"}],
        "dns": {"nameservers": ["10.70.0.53"], "search": ["a.test"]}
    });
    for version in ["0.2.0", "0.3.1", "0.4.0", "1.0.0"] {
        for ipam in [single(), dual.clone()] {
            let config = conf(version, ipam);
            for args in ["", "IP=10.70.9.9/24;GATEWAY=10.70.9.1"] {
                let ours = run(Impl::Ours, "ADD", &host, &config, args);
                let theirs = run(Impl::Reference, "ADD", &host, &config, args);
                if theirs.code == 0 {
                    assert_eq!(
                        ours.success(),
                        theirs.success(),
                        "version {version}, CNI_ARGS {args:?}"
                    );
                } else {
                    // Where the reference refuses, so do we, for the same reason.
                    let reason = theirs.error()["msg"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    assert!(
                        ours.error()["msg"]
                            .as_str()
                            .unwrap_or_default()
                            .contains(&reason),
                        "{reason}"
                    );
                }
            }
        }
    }
}
