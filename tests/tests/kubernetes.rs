//! What a Kubernetes node gets from scripts/install.sh, tested without a cluster: the
//! install into a temporary root, and the written conflist used (through cnictl) to attach
//! a pod namespace with kubelet's CNI_ARGS.

use ferrocni_tests::{our_bin_dir, require_root, require_tools, shipped, NetnsGuard, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn install_sh(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("install.sh runs")
}

/// The manifests in deploy/, with their file names.
fn manifests() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("deploy/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read_to_string(&p).expect("readable"))
        })
        .collect();
    found.sort();
    found
}

/// Every image is pinned (no `latest`, no bare name), ferrocni's own to this release; each
/// DaemonSet runs on Linux nodes only; the agent is probed on /healthz and /readyz, and its
/// service account, which it never uses, has no token and no role.
#[test]
fn manifests_pin_their_images_and_the_agent_is_probed_and_powerless() {
    let all = manifests();
    assert!(
        all.iter().any(|(name, _)| name == "overlay.yaml"),
        "{all:?}"
    );
    for (name, text) in &all {
        for image in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
        {
            let (repository, tag) = image
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
            assert!(tag != "latest" && !tag.is_empty(), "{name}: {image}");
            if repository.starts_with("ferrocni/") {
                assert_eq!(tag, env!("CARGO_PKG_VERSION"), "{name}: {image}");
            }
        }
        for document in text.split("\n---\n") {
            if document.contains("\nkind: DaemonSet\n") {
                assert!(
                    document.contains("nodeSelector:\n        kubernetes.io/os: linux\n"),
                    "{name}: a DaemonSet without the Linux node selector"
                );
            }
        }
    }
    let overlay = &all
        .iter()
        .find(|(name, _)| name == "overlay.yaml")
        .expect("overlay")
        .1;
    for probe in [
        "livenessProbe:\n            httpGet: {host: 127.0.0.1, port: 9471, path: /healthz}",
        "readinessProbe:\n            httpGet: {host: 127.0.0.1, port: 9471, path: /readyz}",
    ] {
        assert!(overlay.contains(probe), "{probe}");
    }
    assert!(!overlay.contains("kind: ClusterRole") && !overlay.contains("kind: Role"));
    assert_eq!(
        overlay
            .matches("automountServiceAccountToken: false")
            .count(),
        2
    );
}

/// The manifests against the Kubernetes API's own schemas, strictly (an unknown or
/// misspelled field fails), with kubernetes-validate, which carries the schemas of each
/// release: kubectl's `--dry-run=client` asks an API server for them, and kubeconform
/// downloads them, neither of which a machine without a cluster or the internet can do.
#[test]
fn manifests_pass_the_api_schemas() {
    require_tools!("kubernetes-validate");
    for (name, _) in manifests() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy")
            .join(&name);
        for release in ["1.29.0", "1.33.0"] {
            let checked = std::process::Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", release])
                .arg(&path)
                .output()
                .expect("kubernetes-validate runs");
            let said = String::from_utf8_lossy(&checked.stdout);
            assert!(
                checked.status.success() && !said.contains("ERROR"),
                "{name} against {release}: {said}{}",
                String::from_utf8_lossy(&checked.stderr)
            );
        }
    }
}

/// `install.sh --help` says what it takes; it installs into the bin dirs it is given, the
/// units with those paths, and the overlay's conflist, or none.
#[test]
fn install_sh_answers_help_and_takes_its_directories() {
    let help = install_sh(&["--help"]);
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--cni-bin-dir",
        "--bin-dir",
        "--conflist",
        "--unit-dir",
        "nft",
        "conntrack",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }

    let root = TempDir::new("inst");
    let from = our_bin_dir().display().to_string();
    let args = [
        "--root",
        &root.path_str(),
        "--from",
        &from,
        "--cni-bin-dir",
        "/usr/libexec/cni",
        "--bin-dir",
        "/usr/sbin",
        "--unit-dir",
        "/etc/systemd/system",
        "--conflist",
        "vxlan",
    ];
    let installed = install_sh(&args);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let under = |path: &str| -> PathBuf { root.path().join(path) };
    for (binary, kind) in shipped() {
        let dir = if kind == "plugin" {
            "usr/libexec/cni"
        } else {
            "usr/sbin"
        };
        assert!(under(dir).join(&binary).is_file(), "{binary} in {dir}");
    }
    let unit =
        |name: &str| std::fs::read_to_string(under("etc/systemd/system").join(name)).expect(name);
    assert!(unit("cni-dhcp.service").contains("\nExecStart=/usr/libexec/cni/dhcp daemon\n"));
    assert!(unit("ferrocni-agent.service").contains("\nExecStart=/usr/sbin/ferrocni-agent\n"));
    assert!(unit("cni-dhcp.socket").contains("ListenStream=/run/cni/dhcp.sock"));
    let conflist: Value = serde_json::from_slice(
        &std::fs::read(under("etc/cni/net.d/10-ferrocni.conflist")).expect("conflist"),
    )
    .expect("valid JSON");
    assert_eq!(conflist["plugins"][0]["type"], "vxlan");
    assert_eq!(
        conflist["plugins"][0]["subnetFile"],
        "/run/ferrocni/vxlan.json"
    );

    // The install-cni container: plugins only, and no network written.
    let bare = TempDir::new("inst");
    let args = [
        "--root",
        &bare.path_str(),
        "--from",
        &from,
        "--plugins-only",
        "--conflist",
        "none",
    ];
    let installed = install_sh(&args);
    assert!(installed.status.success(), "{installed:?}");
    assert!(bare.path().join("opt/cni/bin/vxlan").is_file());
    assert!(!bare.path().join("usr/local/bin").exists());
    assert!(!bare.path().join("etc/cni/net.d").exists());

    let unknown = install_sh(&["--conflist", "flannel"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}

#[test]
fn install_into_a_root_then_attach_a_pod() {
    require_root!();
    let root = TempDir::new("k8s");
    let installed = install_sh(&[
        "--root",
        &root.path_str(),
        "--from",
        &our_bin_dir().display().to_string(),
        "--pod-cidr",
        "10.160.3.0/24",
    ]);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let bin = root.path().join("opt/cni/bin");
    for (binary, kind) in shipped() {
        let dir = if kind == "plugin" {
            bin.clone()
        } else {
            root.path().join("usr/local/bin")
        };
        assert!(dir.join(&binary).is_file(), "{binary} installed in {dir:?}");
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
    let bad = install_sh(&["--root", &root.path_str(), "--pod-cidr", "nonsense"]);
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
