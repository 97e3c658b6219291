//! host-local: every verb in every version, concurrency, exhaustion, GC and STATUS, and the
//! reference plugin as an oracle for results and as a co-tenant of the same on-disk store.

use ferrocni_tests::{
    modes_under, require_reference, require_root, reserved_ips, Call, Impl, NetnsGuard, TempDir,
    VERSIONS,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const NET: &str = "hlnet";

fn conf(version: &str, data_dir: &TempDir, ipam: Value) -> Value {
    conf_in(version, data_dir.path(), ipam)
}

fn conf_in(version: &str, data_dir: &Path, ipam: Value) -> Value {
    let section =
        ferrocni_tests::extended(json!({"type": "host-local", "dataDir": data_dir}), &ipam);
    json!({"cniVersion": version, "name": NET, "type": "bridge", "ipam": section})
}

fn subnet(cidr: &str) -> Value {
    json!({"ranges": [[{"subnet": cidr}]]})
}

struct Node {
    host: NetnsGuard,
    container: NetnsGuard,
    data_dir: TempDir,
}

impl Node {
    fn new() -> Self {
        Node {
            host: NetnsGuard::new("fhh"),
            container: NetnsGuard::new("fhc"),
            data_dir: TempDir::new("hl"),
        }
    }

    fn call(
        &self,
        implementation: Impl,
        command: &str,
        id: &str,
        config: &Value,
    ) -> ferrocni_tests::Outcome {
        Call::new(implementation, "host-local", command)
            .attachment(id, &self.container.path_str(), "eth0")
            .stdin(config)
            .run_in(&self.host)
    }

    fn gc(&self, config: &Value) -> ferrocni_tests::Outcome {
        Call::new(Impl::Ours, "host-local", "GC")
            .stdin(config)
            .run_in(&self.host)
    }

    fn status(&self, config: &Value) -> ferrocni_tests::Outcome {
        Call::new(Impl::Ours, "host-local", "STATUS")
            .stdin(config)
            .run_in(&self.host)
    }

    fn reserved(&self) -> Vec<String> {
        reserved_ips(&self.data_dir.path().join(NET))
    }

    fn owner(&self, ip: &str) -> String {
        std::fs::read_to_string(self.data_dir.path().join(NET).join(ip)).expect("reservation file")
    }
}

#[test]
fn every_verb_in_every_version() {
    require_root!();
    let node = Node::new();
    for version in VERSIONS {
        let id = format!("c{}", version.replace('.', ""));
        let config = conf(version, &node.data_dir, subnet("10.60.0.0/24"));
        let result = node.call(Impl::Ours, "ADD", &id, &config).success();
        assert_eq!(result["cniVersion"], version);
        let address = match version {
            "0.1.0" | "0.2.0" => result["ip4"]["ip"].clone(),
            "0.3.0" | "0.3.1" | "0.4.0" => {
                assert_eq!(result["ips"][0]["version"], "4");
                result["ips"][0]["address"].clone()
            }
            _ => {
                assert!(result["ips"][0].get("version").is_none());
                assert!(
                    result["ips"][0].get("interface").is_none(),
                    "IPAM results name no interface"
                );
                result["ips"][0]["address"].clone()
            }
        };
        let ip = address
            .as_str()
            .expect("address")
            .trim_end_matches("/24")
            .to_string();
        assert_eq!(node.owner(&ip), format!("{id}\r\neth0"));
        if version >= "0.4.0" {
            node.call(Impl::Ours, "CHECK", &id, &config).success();
        }
        if version == "1.1.0" {
            node.status(&config).success();
            let mut keep = config.clone();
            keep["cni.dev/valid-attachments"] = json!([{"containerID": id, "ifname": "eth0"}]);
            node.gc(&keep).success();
            assert!(
                node.reserved().contains(&ip),
                "GC keeps a listed attachment"
            );
        }
        node.call(Impl::Ours, "DEL", &id, &config).success();
        assert!(
            !node.reserved().contains(&ip),
            "DEL {version} releases {ip}"
        );
        node.call(Impl::Ours, "DEL", &id, &config).success();
        if version >= "0.4.0" {
            node.call(Impl::Ours, "CHECK", &id, &config)
                .assert_error(999, "failed to find address");
        }
    }
    assert!(node.reserved().is_empty());
}

#[test]
fn dual_stack_routes_resolv_conf_and_private_files() {
    require_root!();
    let node = Node::new();
    let resolv = node.data_dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.61.0.53\nsearch example.test\noptions ndots:2\n",
    )
    .expect("write");
    let config = conf(
        "1.0.0",
        &node.data_dir,
        json!({
            "ranges": [
                [{"subnet": "10.61.0.0/24", "rangeStart": "10.61.0.100", "rangeEnd": "10.61.0.110"},
                 {"subnet": "10.61.1.0/24"}],
                [{"subnet": "fd00:61::/64", "gateway": "fd00:61::fe"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:61::fe"}],
            "resolvConf": resolv.display().to_string()
        }),
    );
    let result = node.call(Impl::Ours, "ADD", "dual", &config).success();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "10.61.0.100/24", "gateway": "10.61.0.1"},
                {"address": "fd00:61::1/64", "gateway": "fd00:61::fe"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:61::fe"}],
            "dns": {"nameservers": ["10.61.0.53"], "search": ["example.test"], "options": ["ndots:2"]}
        })
    );
    for ip in node.reserved() {
        let mode = std::fs::metadata(node.data_dir.path().join(NET).join(&ip))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{ip} must be private");
    }
    node.call(Impl::Ours, "DEL", "dual", &config).success();
    assert!(node.reserved().is_empty());
}

#[test]
fn requested_addresses_from_args_and_runtime_config() {
    require_root!();
    let node = Node::new();
    let config = conf("1.0.0", &node.data_dir, subnet("10.62.0.0/24"));
    let by_args = Call::new(Impl::Ours, "host-local", "ADD")
        .attachment("byargs", &node.container.path_str(), "eth0")
        .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.62.0.50")
        .stdin(&config)
        .run_in(&node.host)
        .success();
    assert_eq!(by_args["ips"][0]["address"], "10.62.0.50/24");

    let mut runtime = config.clone();
    runtime["runtimeConfig"] = json!({"ips": ["10.62.0.60/24"]});
    let by_runtime = node
        .call(Impl::Ours, "ADD", "byruntime", &runtime)
        .success();
    assert_eq!(by_runtime["ips"][0]["address"], "10.62.0.60/24");

    let mut args_section = config.clone();
    args_section["args"] = json!({"cni": {"ips": ["10.62.0.70"]}});
    let by_section = node
        .call(Impl::Ours, "ADD", "bysection", &args_section)
        .success();
    assert_eq!(by_section["ips"][0]["address"], "10.62.0.70/24");

    let mut ranges = config.clone();
    ranges["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.162.0.0/24"}]]});
    let by_ranges = node.call(Impl::Ours, "ADD", "byranges", &ranges).success();
    assert_eq!(
        by_ranges["ips"][0]["address"], "10.162.0.2/24",
        "runtimeConfig.ipRanges come first"
    );
    assert_eq!(by_ranges["ips"][1]["address"], "10.62.0.2/24");
    node.call(Impl::Ours, "DEL", "byranges", &ranges).success();

    let mut taken = config.clone();
    taken["runtimeConfig"] = json!({"ips": ["10.62.0.50"]});
    node.call(Impl::Ours, "ADD", "second", &taken)
        .assert_error(999, "10.62.0.50 is not available");
    let mut gateway = config.clone();
    gateway["runtimeConfig"] = json!({"ips": ["10.62.0.1"]});
    node.call(Impl::Ours, "ADD", "second", &gateway)
        .assert_error(7, "gateway");
    let mut outside = config.clone();
    outside["runtimeConfig"] = json!({"ips": ["10.99.0.5"]});
    node.call(Impl::Ours, "ADD", "second", &outside)
        .assert_error(999, "failed to allocate all requested IPs: 10.99.0.5");
    assert_eq!(
        node.reserved(),
        ["10.62.0.50", "10.62.0.60", "10.62.0.70"],
        "failed ADDs left nothing"
    );
}

#[test]
fn duplicate_add_is_refused_and_round_robin_skips_released_addresses() {
    require_root!();
    let node = Node::new();
    let config = conf("1.0.0", &node.data_dir, subnet("10.63.0.0/24"));
    let first = node.call(Impl::Ours, "ADD", "dup", &config).success();
    assert_eq!(first["ips"][0]["address"], "10.63.0.2/24");
    node.call(Impl::Ours, "ADD", "dup", &config)
        .assert_error(999, "duplicate allocation is not allowed");
    node.call(Impl::Ours, "DEL", "dup", &config).success();
    let next = node.call(Impl::Ours, "ADD", "other", &config).success();
    assert_eq!(
        next["ips"][0]["address"], "10.63.0.3/24",
        "a released address is not reused at once"
    );
}

#[test]
fn concurrent_adds_get_distinct_addresses_and_dels_empty_the_store() {
    require_root!();
    let node = Node::new();
    let config = conf("1.0.0", &node.data_dir, subnet("10.64.0.0/24"));
    let ids: Vec<String> = (0..64).map(|i| format!("conc{i}")).collect();
    let addresses: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .iter()
            .map(|id| scope.spawn(|| node.call(Impl::Ours, "ADD", id, &config).success()))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().expect("worker")["ips"][0]["address"]
                    .as_str()
                    .expect("address")
                    .to_string()
            })
            .collect()
    });
    let distinct: HashSet<&String> = addresses.iter().collect();
    assert_eq!(
        distinct.len(),
        64,
        "64 ADDs, 64 distinct addresses: {addresses:?}"
    );
    assert_eq!(node.reserved().len(), 64);
    std::thread::scope(|scope| {
        for id in &ids {
            scope.spawn(|| node.call(Impl::Ours, "DEL", id, &config).success());
        }
    });
    assert!(node.reserved().is_empty(), "left: {:?}", node.reserved());
}

#[test]
fn exhaustion_is_a_clear_error_and_status_says_not_available() {
    require_root!();
    let node = Node::new();
    let config = conf(
        "1.1.0",
        &node.data_dir,
        json!({"ranges": [[{"subnet": "10.65.0.0/24", "rangeStart": "10.65.0.1", "rangeEnd": "10.65.0.3"}]]}),
    );
    node.status(&config).success();
    node.call(Impl::Ours, "ADD", "full1", &config).success();
    node.call(Impl::Ours, "ADD", "full2", &config).success();
    node.call(Impl::Ours, "ADD", "full3", &config).assert_error(
        999,
        "no IP addresses available in range set: 10.65.0.1-10.65.0.3",
    );
    node.status(&config).assert_error(50, "10.65.0.1-10.65.0.3");
    node.call(Impl::Ours, "DEL", "full1", &config).success();
    node.status(&config).success();
    assert_eq!(node.reserved().len(), 1);
}

#[test]
fn gc_releases_every_attachment_not_listed() {
    require_root!();
    let node = Node::new();
    let config = conf("1.1.0", &node.data_dir, subnet("10.66.0.0/24"));
    for id in ["keep", "stale1", "stale2"] {
        node.call(Impl::Ours, "ADD", id, &config).success();
    }
    // A legacy reservation (reference before 0.8 recorded only the container ID).
    std::fs::write(
        node.data_dir.path().join(NET).join("10.66.0.200"),
        "oldcontainer",
    )
    .expect("write");
    // A temporary a killed process left behind.
    std::fs::write(node.data_dir.path().join(NET).join(".tmp-1-10.66.0.9"), "x").expect("write");
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    node.gc(&gc).success();
    assert_eq!(node.reserved(), ["10.66.0.2"]);
    assert_eq!(node.owner("10.66.0.2"), "keep\r\neth0");
    assert!(!node
        .data_dir
        .path()
        .join(NET)
        .join(".tmp-1-10.66.0.9")
        .exists());

    let mut old_key = config.clone();
    old_key["cni.dev/attachments"] = json!([]);
    node.gc(&old_key).success();
    assert!(
        node.reserved().is_empty(),
        "an empty list means nothing is valid"
    );
}

#[test]
fn network_names_cannot_escape_the_data_dir() {
    require_root!();
    let node = Node::new();
    let mut config = conf("1.0.0", &node.data_dir, subnet("10.67.0.0/24"));
    for name in ["../escape", "a/b", ".."] {
        config["name"] = json!(name);
        node.call(Impl::Ours, "ADD", "esc", &config)
            .assert_error(7, "network name");
    }
    let parent = node.data_dir.path().parent().expect("parent");
    assert!(!parent.join("escape").exists());
}

/// Results equal to the reference's for the same config, in every version both speak.
#[test]
fn same_results_as_the_reference() {
    require_root!();
    require_reference!("host-local");
    let configs = [
        subnet("10.68.0.0/24"),
        json!({"subnet": "10.68.1.0/24", "rangeStart": "10.68.1.20", "rangeEnd": "10.68.1.30", "gateway": "10.68.1.254"}),
        json!({"ranges": [[{"subnet": "10.68.2.0/28"}], [{"subnet": "fd00:68::/120"}]],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.68.2.5"}]}),
    ];
    for version in ["0.2.0", "0.3.1", "0.4.0", "1.0.0"] {
        for ipam in &configs {
            if version == "0.2.0"
                && ipam
                    .get("ranges")
                    .is_some_and(|r| r.as_array().is_some_and(|a| a.len() > 1))
            {
                continue;
            }
            let ours = Node::new();
            let theirs = Node::new();
            let ours_result = ours
                .call(
                    Impl::Ours,
                    "ADD",
                    "diff",
                    &conf(version, &ours.data_dir, ipam.clone()),
                )
                .success();
            let theirs_result = theirs
                .call(
                    Impl::Reference,
                    "ADD",
                    "diff",
                    &conf(version, &theirs.data_dir, ipam.clone()),
                )
                .success();
            assert_eq!(ours_result, theirs_result, "version {version}, ipam {ipam}");
            assert_eq!(ours.reserved(), theirs.reserved());
        }
    }
}

/// A node can switch implementations in either direction without losing a reservation.
#[test]
fn shares_the_on_disk_store_with_the_reference_both_ways() {
    require_root!();
    require_reference!("host-local");
    for (first, second) in [(Impl::Reference, Impl::Ours), (Impl::Ours, Impl::Reference)] {
        let node = Node::new();
        let config = conf("1.0.0", &node.data_dir, subnet("10.69.0.0/24"));
        let a = node.call(first, "ADD", "alpha", &config).success();
        assert_eq!(a["ips"][0]["address"], "10.69.0.2/24");
        node.call(second, "CHECK", "alpha", &config).success();
        node.call(second, "ADD", "alpha", &config)
            .assert_error(999, "duplicate allocation");
        let b = node.call(second, "ADD", "beta", &config).success();
        assert_eq!(
            b["ips"][0]["address"], "10.69.0.3/24",
            "{first:?} then {second:?}: round robin continues"
        );
        node.call(first, "CHECK", "beta", &config).success();
        node.call(first, "DEL", "beta", &config).success();
        node.call(second, "DEL", "alpha", &config).success();
        assert!(
            node.reserved().is_empty(),
            "{first:?} then {second:?}: {:?}",
            node.reserved()
        );
        let c = node.call(first, "ADD", "gamma", &config).success();
        assert_eq!(c["ips"][0]["address"], "10.69.0.4/24");
        node.call(second, "DEL", "gamma", &config).success();
        assert!(node.reserved().is_empty());
    }
}

/// Started under `umask 000`, host-local still makes its directories 0755 as the reference
/// does (its owner index 0700) and every file 0600: nobody else can plant or change a
/// reservation.
#[test]
fn store_modes_do_not_depend_on_the_umask() {
    require_root!();
    let node = Node::new();
    // A dataDir that does not exist yet: the plugin makes every directory on the way.
    let root = node.data_dir.path().join("made");
    let config = conf_in("1.0.0", &root.join("networks"), subnet("10.71.0.0/24"));
    for (command, id) in [("ADD", "um1"), ("ADD", "um2"), ("DEL", "um1")] {
        Call::new(Impl::Ours, "host-local", command)
            .attachment(id, &node.container.path_str(), "eth0")
            .stdin(&config)
            .umask(0)
            .run_in(&node.host)
            .success();
    }
    let modes = modes_under(&root);
    let index = format!("made/networks/{NET}/.ferrocni-owners");
    assert!(
        modes
            .iter()
            .any(|(path, _)| *path == format!("{index}/spare")),
        "the DEL kept a spare: {modes:?}"
    );
    for (path, mode) in &modes {
        let is_dir = std::fs::symlink_metadata(node.data_dir.path().join(path))
            .expect("metadata")
            .is_dir();
        let wanted = match (is_dir, path.starts_with(&index)) {
            (true, true) => 0o700,
            (true, false) => 0o755,
            (false, _) => 0o600,
        };
        assert_eq!(*mode, wanted, "{path} is {mode:o}: {modes:?}");
    }
}

/// A store directory that someone else could write into (or that a link points elsewhere)
/// is refused before anything is read or written there.
#[test]
fn a_store_others_can_write_or_a_link_is_refused() {
    require_root!();
    let node = Node::new();
    let config = conf("1.0.0", &node.data_dir, subnet("10.72.0.0/24"));
    let store = node.data_dir.path().join(NET);
    std::fs::create_dir(&store).expect("mkdir");
    for (mode, needle) in [(0o777, "writable by others"), (0o775, "writable by others")] {
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(mode)).expect("chmod");
        node.call(Impl::Ours, "ADD", "unsafe", &config)
            .assert_error(5, needle);
    }
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(&store, Some(65534), Some(65534)).expect("chown");
    node.call(Impl::Ours, "ADD", "unsafe", &config)
        .assert_error(5, "owned by user 65534");
    std::fs::remove_dir(&store).expect("rmdir");
    let elsewhere = TempDir::new("hlx");
    std::os::unix::fs::symlink(elsewhere.path(), &store).expect("symlink");
    node.call(Impl::Ours, "ADD", "unsafe", &config)
        .assert_error(5, "symbolic link");
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).expect("dir").count(),
        0,
        "nothing was written where the link points"
    );
    std::fs::remove_file(&store).expect("unlink");
    node.call(Impl::Ours, "ADD", "safe", &config).success();
}

/// A file outside the store, and a check that it is exactly as it was.
struct Outside {
    _dir: TempDir,
    file: std::path::PathBuf,
}

const PRECIOUS: &str = "precious content\n";

impl Outside {
    fn new() -> Self {
        let dir = TempDir::new("hlo");
        let file = dir.path().join("precious");
        std::fs::write(&file, PRECIOUS).expect("write");
        Outside { _dir: dir, file }
    }

    /// Replaces `path` (whatever is there) with a symlink to the outside file.
    fn plant(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        std::os::unix::fs::symlink(&self.file, path).expect("symlink");
    }

    fn assert_untouched(&self, after: &str) {
        assert_eq!(
            std::fs::read_to_string(&self.file).expect("the outside file is still there"),
            PRECIOUS,
            "written through a planted link ({after})"
        );
    }
}

/// Symlinks planted in the store (a spare, the stamp, every index file, the round-robin
/// hint, a reservation that GC recycles, the spare directory itself) are never followed.
#[test]
fn planted_links_in_the_store_are_never_written_through() {
    require_root!();
    let node = Node::new();
    let config = conf("1.1.0", &node.data_dir, subnet("10.73.0.0/24"));
    let store = node.data_dir.path().join(NET);
    let index = store.join(".ferrocni-owners");
    let outside = Outside::new();
    let files_in = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Spares to plant over: one of each kind.
    node.call(Impl::Ours, "ADD", "first", &config).success();
    node.call(Impl::Ours, "DEL", "first", &config).success();
    let spares = files_in(&index.join("spare"));
    assert_eq!(spares.len(), 2, "{spares:?}");
    for spare in &spares {
        outside.plant(spare);
    }
    node.call(Impl::Ours, "ADD", "second", &config).success();
    outside.assert_untouched("ADD over planted spares");

    // Every file of the index (stamp, owner lists) and the round-robin hint.
    for file in files_in(&index) {
        outside.plant(&file);
    }
    outside.plant(&store.join("last_reserved_ip.0"));
    let third = node.call(Impl::Ours, "ADD", "third", &config).success();
    outside.assert_untouched("ADD over a planted stamp, owner list and hint");
    node.call(Impl::Ours, "DEL", "second", &config).success();
    outside.assert_untouched("DEL");

    // A reservation that is a link: GC releases it, and the next ADD reuses what GC keeps.
    outside.plant(&store.join("10.73.0.77"));
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "third", "ifname": "eth0"}]);
    node.gc(&gc).success();
    outside.assert_untouched("GC");
    assert_eq!(
        node.reserved(),
        [ferrocni_tests::address(&third, 0)],
        "GC released the planted one"
    );
    for id in ["fourth", "fifth"] {
        node.call(Impl::Ours, "ADD", id, &config).success();
    }
    outside.assert_untouched("ADD after GC");

    // The spare directory itself a link to a directory holding a spare-like file.
    let spare_dir = index.join("spare");
    std::fs::remove_dir_all(&spare_dir).expect("rm spares");
    let elsewhere = TempDir::new("hls");
    for name in ["r10.73.0.50", "oabc"] {
        std::fs::write(elsewhere.path().join(name), PRECIOUS).expect("write");
    }
    std::os::unix::fs::symlink(elsewhere.path(), &spare_dir).expect("symlink");
    for id in ["fourth", "fifth"] {
        node.call(Impl::Ours, "DEL", id, &config).success();
    }
    node.call(Impl::Ours, "ADD", "sixth", &config).success();
    for name in ["r10.73.0.50", "oabc"] {
        assert_eq!(
            std::fs::read_to_string(elsewhere.path().join(name)).expect("still there"),
            PRECIOUS,
            "{name} was used through a linked spare directory"
        );
    }
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).expect("dir").count(),
        2,
        "nothing was retired into a linked spare directory"
    );
    outside.assert_untouched("the end");
}

/// Once an attachment is deleted, its container ID is nowhere in the store: spares are
/// blank, not old reservations under another name.
#[test]
fn a_released_container_leaves_no_trace_in_the_store() {
    require_root!();
    let node = Node::new();
    let config = conf("1.0.0", &node.data_dir, subnet("10.74.0.0/24"));
    let id = "c0ffee0ddba11c0ffee0ddba11c0ffee0ddba11c0ffee0ddba11c0ffee0ddba1";
    node.call(Impl::Ours, "ADD", id, &config).success();
    node.call(Impl::Ours, "ADD", "other", &config).success();
    node.call(Impl::Ours, "DEL", id, &config).success();
    let store = node.data_dir.path().join(NET);
    for (path, _) in modes_under(&store) {
        let path = node.data_dir.path().join(path);
        if path.is_file() {
            let content = std::fs::read(&path).expect("read");
            assert!(
                !String::from_utf8_lossy(&content).contains(id),
                "{} still names the released container",
                path.display()
            );
        }
    }
    let spares: Vec<_> = std::fs::read_dir(store.join(".ferrocni-owners/spare"))
        .expect("the DEL kept spares")
        .flatten()
        .collect();
    assert!(!spares.is_empty());
    for spare in spares {
        let content = std::fs::read_to_string(spare.path()).expect("read");
        assert!(
            content.trim().is_empty(),
            "a spare keeps old content: {:?} in {}",
            content,
            spare.path().display()
        );
    }
    // Spares reused still say exactly what they say now.
    let third = node.call(Impl::Ours, "ADD", "third", &config).success();
    assert_eq!(
        node.owner(&ferrocni_tests::address(&third, 0)),
        "third\r\neth0"
    );
}
