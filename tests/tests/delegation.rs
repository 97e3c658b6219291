//! cni's delegation runs another plugin as libcni's invoke does: found on CNI_PATH, its
//! result parsed, its error object passed on unchanged.

use cni::invoke::{self, InvokeError};
use ferrocni_tests::{
    address, our_bin_dir, require_root, Call, Impl, NetnsGuard, Sandbox, TempDir,
};
use kernel::netns::Netns;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

#[test]
fn runs_a_delegate_from_cni_path_and_passes_its_errors_on() {
    require_root!();
    let host = NetnsGuard::new("fdh");
    let data_dir = TempDir::new("dg");
    let paths = invoke::split_path(format!("/nonexistent:{}", our_bin_dir().display()));
    let plugin = invoke::find("host-local", &paths).expect("found on the second path entry");
    let config = json!({
        "cniVersion": "1.0.0", "name": "dgnet", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": data_dir.path_str(),
                 "ranges": [[{"subnet": "10.71.0.0/24"}]]}
    })
    .to_string();
    let env = |command| {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "delegated"),
            ("CNI_NETNS", "/run/netns/unused"),
            ("CNI_IFNAME", "eth0"),
        ]
    };
    // The child is forked from a thread inside the sandbox host, so it runs there.
    let sandbox = Netns::open(host.path()).expect("host netns");
    let added = sandbox
        .run(|| invoke::exec(&plugin, config.as_bytes(), &env("ADD")))
        .expect("entered")
        .expect("delegated ADD succeeds");
    let result: serde_json::Value = serde_json::from_slice(&added).expect("JSON");
    assert_eq!(result["ips"][0]["address"], "10.71.0.2/24");

    let failed = sandbox
        .run(|| invoke::exec(&plugin, config.as_bytes(), &env("ADD")))
        .expect("entered");
    match failed {
        Err(InvokeError::Plugin(error)) => {
            assert_eq!(error.code, 999);
            assert!(error.msg.contains("duplicate allocation"), "{error}");
        }
        other => panic!("expected the delegate's own error, got {other:?}"),
    }
    sandbox
        .run(|| invoke::exec(&plugin, config.as_bytes(), &env("DEL")))
        .expect("entered")
        .expect("delegated DEL succeeds");

    assert!(matches!(
        invoke::find("no-such-plugin", &paths),
        Err(InvokeError::NotFound { .. })
    ));
    assert!(matches!(
        invoke::find("../host-local", &paths),
        Err(InvokeError::BadName(_))
    ));
}

#[test]
fn recognises_its_own_ipam_binaries_and_nothing_else() {
    let ours = our_bin_dir();
    assert!(invoke::is_ferrocni(&ours.join("host-local"), "host-local"));
    assert!(invoke::is_ferrocni(&ours.join("static"), "static"));
    // The right binary under another plugin's name, a binary with no identity, a foreign
    // binary, a truncated ELF and a script are all exec'd instead.
    assert!(!invoke::is_ferrocni(&ours.join("host-local"), "static"));
    assert!(!invoke::is_ferrocni(&ours.join("bridge"), "bridge"));
    // A missing file is not ours either: only an installed reference shows anything.
    if Impl::Reference.available("host-local") {
        assert!(!invoke::is_ferrocni(
            &Impl::Reference.plugin("host-local"),
            "host-local"
        ));
    }
    let dir = TempDir::new("idn");
    let binary = std::fs::read(ours.join("host-local")).expect("read our host-local");
    std::fs::write(dir.path().join("truncated"), &binary[..200]).expect("write");
    assert!(!invoke::is_ferrocni(
        &dir.path().join("truncated"),
        "host-local"
    ));
    std::fs::write(dir.path().join("script"), "#!/bin/sh\n").expect("write");
    assert!(!invoke::is_ferrocni(
        &dir.path().join("script"),
        "host-local"
    ));
}

/// A ferrocni host-local on CNI_PATH runs inside the caller: a copy without the execute bit
/// (which exec would refuse) still serves bridge, with the same allocation and release as the
/// executable reference host-local gives through exec.
#[test]
fn runs_its_own_host_local_in_process_and_a_foreign_one_by_exec() {
    require_root!();
    for (implementation, executable) in [(Impl::Ours, false), (Impl::Reference, true)] {
        if !implementation.available("host-local") {
            continue;
        }
        let source = implementation.plugin("host-local");
        let plugins = TempDir::new("ipd");
        let copy = plugins.path().join("host-local");
        std::fs::copy(&source, &copy).expect("copy host-local");
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let sandbox = Sandbox::new("bridge", "ipdnet");
        let container = NetnsGuard::new("ipc");
        let config = sandbox.conf(
            "1.0.0",
            json!([[{"subnet": "10.72.0.0/24"}]]),
            json!({"bridge": "ipdbr0"}),
        );
        let call = |command| {
            Call::binary(&our_bin_dir().join("bridge"), command)
                .env("CNI_PATH", &plugins.path_str())
                .attachment("ipd", &container.path_str(), "eth0")
                .stdin(&config)
                .run_in(&sandbox.ns)
        };
        let added = call("ADD").success();
        assert_eq!(address(&added, 0), "10.72.0.2", "from {source:?}");
        assert_eq!(sandbox.reserved(), ["10.72.0.2"]);
        call("DEL").success();
        assert!(sandbox.reserved().is_empty(), "released by {source:?}");
    }
}
