//! What a Kubernetes node gets from scripts/install.sh, tested without a cluster: the
//! install into a temporary root, and the written conflist used (through cnictl) to attach
//! a pod namespace with kubelet's CNI_ARGS.

use ferrocni_tests::{our_bin_dir, require_root, NetnsGuard, TempDir};
use serde_json::Value;
use std::path::Path;

#[test]
fn install_into_a_root_then_attach_a_pod() {
    require_root!();
    let root = TempDir::new("k8s");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    let installed = std::process::Command::new("bash")
        .arg(&script)
        .args([
            "--root",
            &root.path_str(),
            "--from",
            &our_bin_dir().display().to_string(),
            "--pod-cidr",
            "10.160.3.0/24",
        ])
        .output()
        .expect("install.sh runs");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let bin = root.path().join("opt/cni/bin");
    for binary in ["bridge", "portmap", "bandwidth", "host-local", "loopback"] {
        assert!(bin.join(binary).is_file(), "{binary} installed");
    }
    assert!(
        std::fs::read_dir(&bin)
            .expect("bin")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with('.')),
        "no temporaries left"
    );
    let conflist: Value = serde_json::from_slice(
        &std::fs::read(root.path().join("etc/cni/net.d/10-ferrocni.conflist")).expect("conflist"),
    )
    .expect("valid JSON");
    assert_eq!(
        conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.160.3.0/24"
    );
    let bad = std::process::Command::new("bash")
        .arg(&script)
        .args(["--root", &root.path_str(), "--pod-cidr", "nonsense"])
        .output()
        .expect("runs");
    assert!(!bad.status.success(), "a CIDR without a prefix is refused");

    // The node: a sandbox host; the pod: a namespace; the IPAM store kept private to the test.
    let host = NetnsGuard::new("fkh");
    let pod = NetnsGuard::new("fkp");
    let cache = TempDir::new("kcache");
    let conf_dir = root.path().join("etc/cni/net.d");
    let mut private = conflist.clone();
    private["plugins"][0]["ipam"]["dataDir"] =
        Value::from(root.path().join("ipam").display().to_string());
    std::fs::write(conf_dir.join("10-ferrocni.conflist"), private.to_string()).expect("write");
    let cnictl = |args: &[&str]| {
        host.command(our_bin_dir().join("cnictl"))
            .args([
                "--conf-dir",
                &conf_dir.display().to_string(),
                "--path",
                &bin.display().to_string(),
                "--cache-dir",
                &cache.path_str(),
            ])
            .args(args)
            .output()
            .expect("cnictl runs")
    };
    let kubelet_args = [
        "--arg",
        "K8S_POD_NAMESPACE=default",
        "--arg",
        "K8S_POD_NAME=web-0",
        "--arg",
        "K8S_POD_INFRA_CONTAINER_ID=0123abcd",
        "--arg",
        "K8S_POD_UID=1b2c",
    ];
    let path = pod.path_str();
    let mut add = vec![
        "--json",
        "add",
        "k8s-pod-network",
        path.as_str(),
        "--id",
        "0123abcd",
    ];
    add.extend_from_slice(&kubelet_args);
    let added = cnictl(&add);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let result: Value = serde_json::from_slice(&added.stdout).expect("result");
    assert_eq!(result["ips"][0]["address"], "10.160.3.2/24");
    assert_eq!(result["ips"][0]["gateway"], "10.160.3.1");
    let routes = pod.ip_json(&["route", "show", "default"]);
    assert_eq!(
        routes[0]["gateway"], "10.160.3.1",
        "isDefaultGateway gives pods a default route"
    );
    let removed = cnictl(&["del", "k8s-pod-network", &path, "--id", "0123abcd"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
}
