//! What a Kubernetes node gets, tested without a cluster: scripts/install.sh into a
//! temporary root, and the written conflist used (through cnictl) to attach a pod namespace
//! with kubelet's CNI_ARGS; the manifests in deploy/ parsed and checked against the API's
//! schemas, against each other, and against the image and the binaries they run.

use ferrocni_tests::skip::{skip, tools_installed};
use ferrocni_tests::{our_bin_dir, require_root, require_tools, shipped, NetnsGuard, TempDir};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn install_sh(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("install.sh runs")
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The manifests in deploy/, by file name.
fn manifests() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(deploy())
        .expect("deploy/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    found.sort();
    found
}

/// Every document of every manifest, parsed by PyYAML's safe loader (YAML 1.1, as the API
/// server's decoder reads it: `0400` is octal) and handed over as JSON: (file, document).
/// None, with the skip recorded, without python3 or its yaml module.
fn documents() -> Option<Vec<(String, Value)>> {
    const LOAD: &str = "import json, sys\ntry:\n    import yaml\nexcept ImportError:\n    \
                        sys.exit(3)\njson.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) \
                        if d is not None], sys.stdout)\n";
    if !tools_installed(&["python3"]) {
        return None;
    }
    let mut all = Vec::new();
    for file in manifests() {
        let loaded = Command::new("python3")
            .args(["-c", LOAD])
            .arg(deploy().join(&file))
            .output()
            .expect("python3 runs");
        if loaded.status.code() == Some(3) {
            skip("needs python3's yaml module (python3-yaml)");
            return None;
        }
        assert!(
            loaded.status.success(),
            "{file} is not YAML: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        let parsed: Vec<Value> = serde_json::from_slice(&loaded.stdout).expect("JSON");
        all.extend(parsed.into_iter().map(|document| (file.clone(), document)));
    }
    Some(all)
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {value}"))
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A pod template's init containers and containers.
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    list(&pod["initContainers"])
        .iter()
        .chain(list(&pod["containers"]))
}

/// The mount of `container` that holds `path` (the longest mount path above it), and its
/// volume in `pod`.
fn mount_of<'a>(
    pod: &'a Value,
    container: &'a Value,
    path: &str,
) -> Option<(&'a Value, &'a Value)> {
    let mount = list(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            let at = m["mountPath"].as_str().unwrap_or_default();
            path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or_default().len())?;
    let volume = list(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    Some((mount, volume))
}

/// Where `path` of `container` is on the node, when its mount is a hostPath volume.
fn on_the_node(pod: &Value, container: &Value, path: &str) -> Option<PathBuf> {
    let (mount, volume) = mount_of(pod, container, path)?;
    let at = str_of(&mount["mountPath"], "mountPath");
    let host = volume["hostPath"]["path"].as_str()?;
    let below = path[at.len()..].trim_start_matches('/');
    Some(Path::new(host).join(below))
}

/// What a kubelet and the controllers need of each document, and the references between
/// them, resolved within the file: each DaemonSet's selector matches its pods, which run on
/// Linux nodes only, with pinned images (ferrocni's at this release), mounts of volumes they
/// have, ConfigMaps and a service account the file creates; a service account without a
/// role gets no token; a role grants exactly what install.sh uses (its node, read).
#[test]
fn manifests_are_complete_and_their_references_resolve() {
    let Some(documents) = documents() else {
        return;
    };
    let files: BTreeSet<&str> = documents.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(
        files,
        BTreeSet::from(["daemonset.yaml", "overlay.yaml"]),
        "every manifest is checked"
    );
    for (file, document) in &documents {
        let kind = str_of(&document["kind"], "kind");
        let name = str_of(&document["metadata"]["name"], "metadata.name");
        let at = format!("{file}: {kind} {name}");
        str_of(&document["apiVersion"], &at);
        if !kind.starts_with("Cluster") {
            assert_eq!(document["metadata"]["namespace"], "kube-system", "{at}");
        }
        let created = |kind: &str, name: &Value| {
            documents
                .iter()
                .any(|(f, d)| f == file && d["kind"] == kind && d["metadata"]["name"] == *name)
        };
        match kind {
            "ServiceAccount" | "ConfigMap" => {}
            "ClusterRole" => assert_eq!(
                document["rules"],
                json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
                "{at}: install.sh reads its own node's spec.podCIDR, and nothing else"
            ),
            "ClusterRoleBinding" => {
                let role = &document["roleRef"];
                assert!(
                    role["kind"] == "ClusterRole" && created("ClusterRole", &role["name"]),
                    "{at}: {role}"
                );
                for subject in list(&document["subjects"]) {
                    assert!(
                        subject["kind"] == "ServiceAccount"
                            && subject["namespace"] == "kube-system"
                            && created("ServiceAccount", &subject["name"]),
                        "{at}: {subject}"
                    );
                }
            }
            "DaemonSet" => {
                let selector = document["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .filter(|labels| !labels.is_empty())
                    .unwrap_or_else(|| panic!("{at}: no spec.selector.matchLabels"));
                let template = &document["spec"]["template"];
                for (label, value) in selector {
                    assert_eq!(
                        template["metadata"]["labels"][label], *value,
                        "{at}: the selector does not select its own pods"
                    );
                }
                let pod = &template["spec"];
                assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux", "{at}");
                let account = &pod["serviceAccountName"];
                assert!(created("ServiceAccount", account), "{at}: {account}");
                let bound = documents.iter().any(|(f, d)| {
                    f == file
                        && d["kind"] == "ClusterRoleBinding"
                        && list(&d["subjects"]).iter().any(|s| s["name"] == *account)
                });
                if !bound {
                    assert_eq!(
                        pod["automountServiceAccountToken"], false,
                        "{at}: a service account without a role needs no token"
                    );
                }
                assert!(pod["containers"].as_array().is_some_and(|c| !c.is_empty()));
                for volume in list(&pod["volumes"]) {
                    if let Some(map) = volume.get("configMap") {
                        assert!(created("ConfigMap", &map["name"]), "{at}: {volume}");
                    }
                }
                for container in containers(pod) {
                    let image = str_of(&container["image"], &at);
                    let (repository, tag) = image
                        .rsplit_once(':')
                        .unwrap_or_else(|| panic!("{at}: {image} has no tag"));
                    assert!(!tag.is_empty() && tag != "latest", "{at}: {image}");
                    if repository.starts_with("ferrocni/") {
                        assert_eq!(tag, env!("CARGO_PKG_VERSION"), "{at}: {image}");
                    }
                    for from in list(&container["envFrom"]) {
                        let map = &from["configMapRef"]["name"];
                        assert!(created("ConfigMap", map), "{at}: envFrom {map}");
                    }
                    for mount in list(&container["volumeMounts"]) {
                        let path = str_of(&mount["mountPath"], &at);
                        let (_, volume) = mount_of(pod, container, path)
                            .unwrap_or_else(|| panic!("{at}: no volume for {mount}"));
                        if let Some(key) = mount["subPath"].as_str() {
                            let map = &volume["configMap"]["name"];
                            let holds = documents.iter().any(|(f, d)| {
                                f == file
                                    && d["metadata"]["name"] == *map
                                    && d["data"].get(key).is_some()
                            });
                            assert!(holds, "{at}: {key} is not in ConfigMap {map}");
                        }
                    }
                }
            }
            other => panic!("{file}: {other} is not checked here: add it"),
        }
    }
}

/// The image (deploy/Dockerfile): its entrypoint and the directory the binaries are in.
fn image() -> (Vec<String>, String) {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("Dockerfile: no {prefix}"))
    };
    let entrypoint: Vec<String> = serde_json::from_str(line("ENTRYPOINT ")).expect("exec form");
    let bin = line("COPY --from=build ")
        .split_whitespace()
        .last()
        .expect("a destination");
    assert!(
        text.contains("packaging/binaries"),
        "the image holds every binary packaging/binaries lists"
    );
    (entrypoint, bin.to_string())
}

/// The settings a container is given in its environment: its `env` values and the data of
/// the ConfigMaps of its `envFrom`. A value from a field (the node's name) is `None`.
fn environment(
    documents: &[(String, Value)],
    file: &str,
    container: &Value,
) -> BTreeMap<String, Option<String>> {
    let mut settings = BTreeMap::new();
    for from in list(&container["envFrom"]) {
        let map = &from["configMapRef"]["name"];
        let data = documents
            .iter()
            .find(|(f, d)| f == file && d["kind"] == "ConfigMap" && d["metadata"]["name"] == *map)
            .map(|(_, d)| d["data"].as_object().cloned().unwrap_or_default())
            .unwrap_or_default();
        for (name, value) in data {
            settings.insert(name, value.as_str().map(str::to_string));
        }
    }
    for variable in list(&container["env"]) {
        let name = str_of(&variable["name"], "env name").to_string();
        settings.insert(name, variable["value"].as_str().map(str::to_string));
    }
    settings
}

/// The line of clap's `help` of the option read from the environment variable `variable`
/// (`[env: NAME=value]`, or `[env: NAME]` for a hidden value).
fn env_line<'a>(help: &'a str, variable: &str) -> Option<&'a str> {
    let (shown, hidden) = (format!("[env: {variable}="), format!("[env: {variable}]"));
    help.lines()
        .find(|l| l.contains(&shown) || l.contains(&hidden))
}

/// The default of the option of `help` read from the environment variable `variable`.
fn option_default(help: &str, variable: &str) -> Option<String> {
    let line = env_line(help, variable)?;
    let (_, rest) = line.split_once("[default: ")?;
    rest.split_once(']').map(|(value, _)| value.to_string())
}

/// The agent's files, as environment variables, and whether it writes them (then they must
/// be on the node, to outlive the pod) or only reads them.
const AGENT_FILES: [(&str, bool); 6] = [
    ("FERROCNI_IDENTITY_FILE", true),
    ("FERROCNI_NODE_FILE", true),
    ("FERROCNI_CONFIG", false),
    ("FERROCNI_ETCD_CAFILE", false),
    ("FERROCNI_ETCD_CERTFILE", false),
    ("FERROCNI_ETCD_KEYFILE", false),
];

/// The containers run what the image holds, as the binaries take it: install-cni's
/// arguments are run by install.sh (the image's entrypoint) into a root standing for the
/// node's /host, and everything it writes must land on a mount of the node's directories;
/// a container running a binary names one packaging/binaries ships as a tool, and every
/// option and `FERROCNI_*` variable it passes is one that binary's --help lists. The agent's
/// probes are on its --metrics-address, on the node's network, at paths it serves; the files
/// it reads are mounted, those it writes are on the node, and the node file it writes is the
/// one the vxlan conflist written beside it reads.
#[test]
fn manifests_run_what_the_image_holds_with_arguments_that_exist() {
    let Some(documents) = documents() else {
        return;
    };
    let (entrypoint, image_bin) = image();
    let tools: Vec<String> = shipped()
        .into_iter()
        .filter(|(_, kind)| kind == "tool")
        .map(|(name, _)| name)
        .collect();
    let mut agents = 0;
    for (file, document) in documents.iter().filter(|(_, d)| d["kind"] == "DaemonSet") {
        let pod = &document["spec"]["template"]["spec"];
        let mut subnet_file: Option<String> = None;
        let mut node_file: Option<PathBuf> = None;
        for container in containers(pod) {
            if !container["image"]
                .as_str()
                .unwrap_or_default()
                .starts_with("ferrocni/")
            {
                continue;
            }
            let at = format!("{file}: {}", container["name"]);
            let command: Vec<String> = match container.get("command") {
                Some(command) => serde_json::from_value(command.clone()).expect("strings"),
                None => entrypoint.clone(),
            };
            let args: Vec<String> =
                serde_json::from_value(container.get("args").cloned().unwrap_or(json!([])))
                    .expect("strings");
            if command == entrypoint {
                // install.sh as in the image (FROM, ROOT: Dockerfile's ENV), the node's pod
                // CIDR given as install.sh would read it from the API server.
                let root = TempDir::new("k8sroot");
                let installed = Command::new("bash")
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh"))
                    .args(&args)
                    .env("FROM", our_bin_dir())
                    .env("ROOT", root.path())
                    .env("POD_CIDR", "10.244.1.0/24")
                    .output()
                    .expect("install.sh runs");
                assert!(
                    installed.status.success(),
                    "{at}: install.sh {args:?}: {}",
                    String::from_utf8_lossy(&installed.stderr)
                );
                let mut written = Vec::new();
                let mut pending = vec![root.path().to_path_buf()];
                while let Some(dir) = pending.pop() {
                    for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            pending.push(path);
                        } else {
                            written.push(path);
                        }
                    }
                }
                assert!(!written.is_empty(), "{at}: install.sh wrote nothing");
                for path in &written {
                    // The root stands for the node's /, mounted piecewise at /host.
                    let relative = path.strip_prefix(root.path()).expect("under the root");
                    let inside = Path::new("/host").join(relative);
                    let inside = inside.to_string_lossy();
                    assert_eq!(
                        on_the_node(pod, container, &inside),
                        Some(Path::new("/").join(relative)),
                        "{at}: {inside} is not the node's /{}",
                        relative.display()
                    );
                    if inside.ends_with(".conflist") {
                        let conflist: Value =
                            serde_json::from_slice(&std::fs::read(path).expect("read"))
                                .expect("JSON");
                        if let Some(path) = conflist["plugins"][0]["subnetFile"].as_str() {
                            subnet_file = Some(path.to_string());
                        }
                    }
                }
                continue;
            }
            let binary = command[0]
                .strip_prefix(&format!("{}/", image_bin.trim_end_matches('/')))
                .unwrap_or_else(|| panic!("{at}: {command:?} is not in the image's {image_bin}"));
            assert!(
                tools.iter().any(|t| t == binary),
                "{at}: {binary} is not a shipped tool"
            );
            let help = Command::new(our_bin_dir().join(binary))
                .arg("--help")
                .output()
                .expect("runs");
            assert!(help.status.success(), "{at}: {binary} --help");
            let help = String::from_utf8_lossy(&help.stdout).into_owned();
            for arg in command[1..]
                .iter()
                .chain(&args)
                .filter(|a| a.starts_with("--"))
            {
                let flag = arg.split('=').next().unwrap_or_default();
                assert!(
                    help.lines()
                        .any(|l| l.split_whitespace().next() == Some(flag)),
                    "{at}: {binary} has no {flag}"
                );
            }
            let settings = environment(&documents, file, container);
            for name in settings.keys() {
                assert!(
                    env_line(&help, name).is_some(),
                    "{at}: {binary} does not read {name}"
                );
            }
            if binary != "ferrocni-agent" {
                continue;
            }
            agents += 1;
            let effective = |variable: &str| {
                settings
                    .get(variable)
                    .cloned()
                    .flatten()
                    .or_else(|| option_default(&help, variable))
            };
            let address = effective("FERROCNI_METRICS_ADDRESS").expect("a metrics address");
            let (host, port) = address.rsplit_once(':').expect("address:port");
            assert_eq!(
                pod["hostNetwork"], true,
                "{at}: its loopback is the node's, where kubelet probes"
            );
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"], path, "{at}: {probe}");
                assert_eq!(get["host"], host, "{at}: {probe}");
                assert_eq!(get["port"].to_string(), port, "{at}: {probe}");
                assert!(help.contains(path), "the agent serves {path}");
            }
            assert_eq!(
                container["securityContext"]["readOnlyRootFilesystem"], true,
                "{at}"
            );
            for (variable, writes) in AGENT_FILES {
                let Some(path) = effective(variable) else {
                    continue;
                };
                let (mount, _) = mount_of(pod, container, &path)
                    .unwrap_or_else(|| panic!("{at}: {variable} {path} is on no mount"));
                if writes {
                    assert_ne!(
                        mount["readOnly"], true,
                        "{at}: {variable} {path} is written"
                    );
                    let on_node = on_the_node(pod, container, &path)
                        .unwrap_or_else(|| panic!("{at}: {variable} {path} must outlive the pod"));
                    if variable == "FERROCNI_NODE_FILE" {
                        node_file = Some(on_node);
                    }
                }
            }
        }
        if let Some(node_file) = node_file {
            assert_eq!(
                subnet_file.map(PathBuf::from),
                Some(node_file),
                "{file}: the vxlan plugin reads the node file the agent writes"
            );
        }
    }
    assert_eq!(agents, 1, "overlay.yaml runs the agent");
}

/// The manifests against the Kubernetes API's own schemas, strictly (an unknown or
/// misspelled field fails), with kubernetes-validate, which carries the schemas of each
/// release: kubectl's `--dry-run=client` asks an API server for them, and kubeconform
/// downloads them, neither of which a machine without a cluster or the internet can do.
#[test]
fn manifests_pass_the_api_schemas() {
    require_tools!("kubernetes-validate");
    for name in manifests() {
        let path = deploy().join(&name);
        for release in ["1.29.0", "1.33.0"] {
            let checked = Command::new("kubernetes-validate")
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
        let dir = if kind != "tool" {
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
        let dir = if kind != "tool" {
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
