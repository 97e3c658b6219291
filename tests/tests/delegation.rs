//! netlib's delegation runs another plugin as libcni's invoke does: found on CNI_PATH, its
//! result parsed, its error object passed on unchanged.

use ferrocni_tests::{our_bin_dir, require_root, NetnsGuard, TempDir};
use netlib::invoke::{self, InvokeError};
use netlib::netns::Netns;
use serde_json::json;

#[test]
fn runs_a_delegate_from_cni_path_and_passes_its_errors_on() {
    require_root!();
    let host = NetnsGuard::new("fdh");
    let data_dir = TempDir::new("dg");
    let paths = invoke::split_path(&format!("/nonexistent:{}", our_bin_dir().display()));
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
