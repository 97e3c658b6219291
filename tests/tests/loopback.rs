//! loopback in every spec version, against the kernel and against the reference.

use ferrocni_tests::{require_reference, require_root, Call, Impl, NetnsGuard, VERSIONS};
use serde_json::{json, Value};

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "lonet", "type": "loopback"})
}

fn call(implementation: Impl, command: &str, container: &NetnsGuard, version: &str) -> Call {
    Call::new(implementation, "loopback", command)
        .attachment("lotest", &container.path_str(), "lo")
        .stdin(conf(version))
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let host = NetnsGuard::new("flh");
    for version in VERSIONS {
        let container = NetnsGuard::new("flc");
        assert!(!container.link_is_up("lo"));
        let result = call(Impl::Ours, "ADD", &container, version)
            .run_in(&host)
            .success();
        assert!(container.link_is_up("lo"), "ADD {version} sets lo up");
        assert_eq!(result["cniVersion"], version);
        match version {
            "0.1.0" | "0.2.0" => {
                assert_eq!(result["ip4"]["ip"], "127.0.0.1/8", "{result}");
                assert!(result.get("interfaces").is_none(), "{result}");
            }
            "0.3.0" | "0.3.1" | "0.4.0" => {
                assert_eq!(result["interfaces"][0]["name"], "lo");
                assert_eq!(result["ips"][0]["version"], "4", "{result}");
                assert_eq!(result["ips"][0]["address"], "127.0.0.1/8");
            }
            _ => {
                assert_eq!(result["interfaces"][0]["sandbox"], container.path_str());
                assert_eq!(
                    result["ips"][0],
                    json!({"interface": 0, "address": "127.0.0.1/8"})
                );
            }
        }
        if version >= "0.4.0" {
            call(Impl::Ours, "CHECK", &container, version)
                .run_in(&host)
                .success();
        }
        call(Impl::Ours, "DEL", &container, version)
            .run_in(&host)
            .success();
        assert!(!container.link_is_up("lo"), "DEL {version} sets lo down");
        if version >= "0.4.0" {
            call(Impl::Ours, "CHECK", &container, version)
                .run_in(&host)
                .assert_error(999, "loopback interface is down");
        }
        if version == "1.1.0" {
            Call::new(Impl::Ours, "loopback", "GC")
                .stdin(
                    json!({"cniVersion": "1.1.0", "name": "lonet", "type": "loopback",
                              "cni.dev/valid-attachments": []}),
                )
                .run_in(&host)
                .success();
            Call::new(Impl::Ours, "loopback", "STATUS")
                .stdin(conf(version))
                .run_in(&host)
                .success();
        }
    }
}

/// The reference's own loopback spec, run against ours and the reference alike: every
/// version, `CNI_ARGS=none` (loopback reads no argument, so it cannot fail on one), a
/// `CNI_PATH` that does not exist and a config without `type`. ADD prints a result and sets
/// lo up, CHECK (from 0.4.0) finds it up, DEL sets it down, also in a fresh namespace.
#[test]
fn the_references_spec_with_cni_args_none() {
    require_root!();
    let host = NetnsGuard::new("flh");
    let spec = |implementation, command: &str, container: &NetnsGuard, version: &str| {
        Call::new(implementation, "loopback", command)
            .attachment("dummy", &container.path_str(), "lo")
            .env("CNI_ARGS", "none")
            .env("CNI_PATH", "/some/test/path")
            .stdin(json!({"name": "loopback-test", "cniVersion": version}))
            .run_in(&host)
    };
    let reference_speaks: Vec<String> = if Impl::Reference.available("loopback") {
        let answer = Call::new(Impl::Reference, "loopback", "VERSION")
            .run_in(&host)
            .success();
        serde_json::from_value(answer["supportedVersions"].clone()).expect("a version list")
    } else {
        Vec::new()
    };
    for version in VERSIONS {
        let mut answers = Vec::new();
        for implementation in [Impl::Ours, Impl::Reference] {
            if implementation == Impl::Reference && !reference_speaks.iter().any(|v| v == version) {
                continue;
            }
            let what = format!("{implementation:?} {version}");
            let container = NetnsGuard::new("flc");
            let added = spec(implementation, "ADD", &container, version).success();
            assert!(added.is_object(), "{what}: {added}");
            assert!(container.link_is_up("lo"), "{what}: ADD sets lo up");
            let checked = spec(implementation, "CHECK", &container, version);
            if version >= "0.4.0" {
                checked.success();
            } else {
                checked.assert_error(1, "config version does not allow CHECK");
            }
            spec(implementation, "DEL", &container, version).success();
            assert!(!container.link_is_up("lo"), "{what}: DEL sets lo down");
            let fresh = NetnsGuard::new("flc");
            spec(implementation, "DEL", &fresh, version).success();
            assert!(!fresh.link_is_up("lo"), "{what}");
            answers.push((checked.code, checked.stdout.contains("does not allow")));
        }
        if let [ours, theirs] = answers[..] {
            assert_eq!(
                ours, theirs,
                "CHECK under {version}: ours and the reference"
            );
        }
    }
}

#[test]
fn del_tolerates_a_vanished_or_missing_namespace_and_repeats() {
    require_root!();
    let host = NetnsGuard::new("flh");
    let container = NetnsGuard::new("flc");
    call(Impl::Ours, "ADD", &container, "1.0.0")
        .run_in(&host)
        .success();
    let path = container.path_str();
    drop(container);
    for _ in 0..2 {
        Call::new(Impl::Ours, "loopback", "DEL")
            .attachment("lotest", &path, "lo")
            .stdin(conf("1.0.0"))
            .run_in(&host)
            .success();
    }
    Call::new(Impl::Ours, "loopback", "DEL")
        .attachment("lotest", "", "lo")
        .without_env("CNI_NETNS")
        .stdin(conf("1.0.0"))
        .run_in(&host)
        .success();
}

#[test]
fn chained_loopback_passes_the_previous_result_through() {
    require_root!();
    let host = NetnsGuard::new("flh");
    let container = NetnsGuard::new("flc");
    let previous = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": container.path_str()}],
        "ips": [{"interface": 0, "address": "10.44.0.2/24", "gateway": "10.44.0.1"}],
        "dns": {}
    });
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let mut config = conf(version);
        config["prevResult"] = previous.clone();
        let result = Call::new(Impl::Ours, "loopback", "ADD")
            .attachment("lotest", &container.path_str(), "lo")
            .stdin(config)
            .run_in(&host)
            .success();
        assert_eq!(
            result["ips"][0]["address"], "10.44.0.2/24",
            "{version}: {result}"
        );
        assert_eq!(result["cniVersion"], version);
    }
    assert!(container.link_is_up("lo"));
}

#[test]
fn same_result_as_the_reference() {
    require_root!();
    require_reference!("loopback");
    let host = NetnsGuard::new("flh");
    let ours_ns = NetnsGuard::new("flc");
    let theirs_ns = NetnsGuard::new("flc");
    let mut ours = call(Impl::Ours, "ADD", &ours_ns, "1.0.0")
        .run_in(&host)
        .success();
    let mut theirs = call(Impl::Reference, "ADD", &theirs_ns, "1.0.0")
        .run_in(&host)
        .success();
    ours["interfaces"][0]["sandbox"] = json!("");
    theirs["interfaces"][0]["sandbox"] = json!("");
    assert_eq!(ours, theirs);
    assert_eq!(ours_ns.link_is_up("lo"), theirs_ns.link_is_up("lo"));
    call(Impl::Ours, "DEL", &ours_ns, "1.0.0")
        .run_in(&host)
        .success();
    call(Impl::Reference, "DEL", &theirs_ns, "1.0.0")
        .run_in(&host)
        .success();
    assert_eq!(ours_ns.link_is_up("lo"), theirs_ns.link_is_up("lo"));
}
