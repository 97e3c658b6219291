//! cnictl against real plugins: the demo, a network's whole life (add, check, ls, status,
//! del, gc), `run`, `netns`, and Kubernetes-style CNI_ARGS.

use ferrocni_tests::{
    modes_under, our_bin_dir, require_root, reserved_ips, skip::tools_installed, with_umask,
    NetnsGuard, TempDir,
};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What a run that must succeed printed; fails the test with it otherwise.
fn succeeded(output: &Output, what: &str, args: &[&str]) -> String {
    assert!(output.status.success(), "{what} {args:?}: {}", text(output));
    text(output)
}

/// cnictl with `conf` and `cache` dirs and our plugins, started by `command` (which puts it
/// in a sandbox's namespaces).
fn cnictl(command: Command, conf: &Path, cache: &Path, args: &[&str]) -> Output {
    with_dirs(command, conf, cache)
        .args(args)
        .output()
        .expect("cnictl runs")
}

/// `command` (a cnictl) told where the configs, the cache and our plugins are.
fn with_dirs(mut command: Command, conf: &Path, cache: &Path) -> Command {
    command
        .arg("--conf-dir")
        .arg(conf)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--path", &our_bin_dir().display().to_string()]);
    command
}

/// A sandbox host, a config dir with one bridge+portmap network, a cache and a store.
struct Setup {
    host: NetnsGuard,
    conf: TempDir,
    cache: TempDir,
    store: TempDir,
}

impl Setup {
    fn new() -> Self {
        let setup = Setup {
            host: NetnsGuard::new("fkh"),
            conf: TempDir::new("conf"),
            cache: TempDir::new("cache"),
            store: TempDir::new("store"),
        };
        let list = json!({
            "cniVersion": "1.1.0", "name": "ctlnet",
            "plugins": [
                {"type": "bridge", "bridge": "ctlbr0", "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "dataDir": setup.store.path_str(), "ranges": [[{"subnet": "10.150.0.0/24"}]]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(setup.conf.path().join("10-ctl.conflist"), list.to_string()).expect("write");
        setup
    }

    /// Runs cnictl from inside the sandbox host.
    fn cnictl(&self, args: &[&str]) -> Output {
        let command = self.host.command(our_bin_dir().join("cnictl"));
        cnictl(command, self.conf.path(), self.cache.path(), args)
    }

    /// cnictl in the sandbox host with this setup's configs and plugins and `cache`.
    fn command(&self, cache: &Path) -> Command {
        let command = self.host.command(our_bin_dir().join("cnictl"));
        with_dirs(command, self.conf.path(), cache)
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(&self.cnictl(args), "cnictl", args)
    }

    fn listed(&self) -> Vec<Value> {
        let listed: Value =
            serde_json::from_str(&self.ok(&["--json", "ls"])).expect("ls --json prints JSON");
        listed.as_array().cloned().unwrap_or_default()
    }
}

#[test]
fn the_demo_runs_and_leaves_nothing() {
    require_root!();
    let output = Command::new(our_bin_dir().join("cnictl"))
        .arg("demo")
        .output()
        .expect("cnictl demo runs");
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    assert_eq!(
        shown.matches("hello from the web container").count(),
        2,
        "{shown}"
    );
    assert!(shown.contains("demo namespaces left: []"), "{shown}");
}

#[test]
fn a_network_from_add_to_gc() {
    require_root!();
    let setup = Setup::new();
    let one = NetnsGuard::new("fkc");
    let two = NetnsGuard::new("fkc");
    let added = setup.ok(&[
        "--json",
        "add",
        "ctlnet",
        &one.path_str(),
        "--port",
        "8080:80/tcp",
        "--arg",
        "K8S_POD_NAMESPACE=default",
        "--arg",
        "K8S_POD_NAME=web",
    ]);
    let result: Value = serde_json::from_str(&added).expect("result JSON");
    assert_eq!(result["ips"][0]["address"], "10.150.0.2/24");
    assert!(
        setup.host.nft_ruleset().contains(". tcp . 8080 comment"),
        "the port mapping came from --port"
    );
    setup.ok(&["add", "ctlnet", &two.path_str(), "--id", "second"]);
    assert_eq!(setup.listed().len(), 2);
    setup.ok(&["check", "ctlnet", &one.path_str()]);
    assert!(setup.ok(&["status"]).contains("ready"));
    assert!(setup.ok(&["ls"]).contains("10.150.0.3/24"));
    setup.ok(&["del", "ctlnet", &one.path_str()]);
    assert!(
        !setup.host.nft_ruleset().contains(". tcp . 8080 comment"),
        "DEL got the cached port mappings"
    );
    assert_eq!(setup.listed().len(), 1);
    // The second container vanishes without a DEL: GC detaches it.
    drop(two);
    assert!(setup.ok(&["gc"]).contains("collected 1"));
    assert!(setup.listed().is_empty());
    assert!(reserved_ips(&setup.store.path().join("ctlnet")).is_empty());
    let missing = setup.cnictl(&["add", "nosuchnet", &one.path_str()]);
    assert!(!missing.status.success() && text(&missing).contains("no network named \"nosuchnet\""));
}

#[test]
fn run_attaches_a_fresh_namespace_and_cleans_up() {
    require_root!();
    let setup = Setup::new();
    let output = setup.cnictl(&[
        "run", "--net", "ctlnet", "--", "ip", "-o", "addr", "show", "dev", "eth0",
    ]);
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains("10.150.0.2/24"),
        "the command ran inside, attached: {shown}"
    );
    assert!(setup.listed().is_empty(), "detached afterwards");
    assert!(!kernel::netns::Netns::list()
        .iter()
        .any(|n| n.starts_with("cnictl-run-")));
    let failing = setup.cnictl(&["run", "--net", "ctlnet", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        failing.status.code(),
        Some(3),
        "the command's exit code comes through"
    );
    assert!(reserved_ips(&setup.store.path().join("ctlnet")).is_empty());
}

#[test]
fn netns_add_ls_del() {
    require_root!();
    let name = ferrocni_tests::unique("fkn");
    let cnictl = |args: &[&str]| {
        Command::new(our_bin_dir().join("cnictl"))
            .args(args)
            .output()
            .expect("runs")
    };
    assert!(cnictl(&["netns", "add", &name]).status.success());
    assert!(text(&cnictl(&["netns", "ls"])).contains(&name));
    assert!(
        !cnictl(&["netns", "add", &name]).status.success(),
        "no duplicates"
    );
    let inside = Command::new("ip")
        .args(["netns", "exec", &name, "ip", "-o", "link"])
        .output()
        .expect("ip");
    assert!(
        String::from_utf8_lossy(&inside.stdout).contains("lo"),
        "a real namespace, usable by ip"
    );
    assert!(cnictl(&["netns", "del", &name]).status.success());
    assert!(!text(&cnictl(&["netns", "ls"])).contains(&name));

    // Names are joined to /run/netns: one that climbs out must touch nothing out there.
    let scratch = ferrocni_tests::TempDir::new("fkn");
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, "keep").expect("victim file");
    let climbing = format!("../..{}", victim.display());
    for verb in ["del", "add"] {
        let refused = cnictl(&["netns", verb, &climbing]);
        assert!(!refused.status.success(), "netns {verb} {climbing} refused");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("is not a namespace name"),
            "says why: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(&victim).expect("still there"),
        "keep"
    );
}

/// Podman with its CNI backend (libcni inside) in a sandbox: a network namespace of the
/// test's as its host, all its state under one scratch directory, and a mount namespace of
/// its own in which `/var/lib/cni`, libcni's cache, is the test's directory (the machine's
/// is never touched). Podman and cnictl both run inside the two namespaces.
struct Podman {
    host: NetnsGuard,
    work: TempDir,
    /// Keeps the mount namespace (and the mounts made in it) alive.
    holder: std::process::Child,
}

impl Podman {
    /// `None` (a skip recorded) where podman or runc is missing.
    fn new() -> Option<Podman> {
        if !tools_installed(&["podman", "runc", "unshare", "nsenter"]) {
            return None;
        }
        let host = NetnsGuard::new("fph");
        host.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let work = TempDir::new("pod");
        for dir in ["net.d", "tmp", "run", "storage", "cni", "rootfs/bin"] {
            std::fs::create_dir_all(work.path().join(dir)).expect("work dirs");
        }
        let w = work.path_str();
        let containers = format!(
            "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             runtime = \"runc\"\nlock_type = \"file\"\ntmp_dir = \"{w}/tmp\"\n\
             events_logger = \"file\"\n[network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{w}/net.d\"\n",
            our_bin_dir().display()
        );
        std::fs::write(work.path().join("containers.conf"), containers).expect("conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{w}/storage\"\nrunroot = \"{w}/run\"\n"
        );
        std::fs::write(work.path().join("storage.conf"), storage).expect("conf");
        std::fs::write(
            work.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("conf");
        // /var/lib/cni may not exist on this machine: a tmpfs over /var/lib gives the mount
        // point, in this mount namespace only.
        let ready = work.path().join("ready");
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /var/lib && mkdir /var/lib/cni && \
                 mount --bind \"$0\" /var/lib/cni && touch \"$1\" && exec sleep 3600",
            )
            .arg(work.path().join("cni"))
            .arg(&ready)
            .spawn()
            .expect("unshare runs");
        let podman = Podman { host, work, holder };
        for _ in 0..200 {
            if ready.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(ready.exists(), "the mount namespace is set up");
        let busybox = String::from_utf8_lossy(
            &Command::new("sh")
                .args(["-c", "command -v busybox"])
                .output()
                .expect("sh")
                .stdout,
        )
        .trim()
        .to_string();
        let rootfs = podman.work.path().join("rootfs");
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).expect("busybox");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).expect("symlink");
        let tarball = podman.work.path().join("rootfs.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .expect("tar");
        assert!(tar.success());
        podman.ok(&[
            "import",
            "-q",
            &tarball.display().to_string(),
            "localhost/ferrobox:latest",
        ]);
        Some(podman)
    }

    /// `program` run inside the sandbox's mount and network namespaces.
    fn inside(&self, program: &str) -> std::process::Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(format!("--net={}", self.host.path_str()))
            .arg(program);
        let w = self.work.path();
        command
            .env("CONTAINERS_CONF", w.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", w.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", w.join("registries.conf"));
        command
    }

    fn podman(&self, args: &[&str]) -> Output {
        let w = self.work.path_str();
        self.inside("podman")
            .args([
                "--root",
                &format!("{w}/storage"),
                "--runroot",
                &format!("{w}/run"),
            ])
            .args([
                "--tmpdir",
                &format!("{w}/tmp"),
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(["--events-backend", "file"])
            .args(args)
            .output()
            .expect("podman runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(&self.podman(args), "podman", args)
    }

    fn cnictl(&self, args: &[&str]) -> Output {
        let command = self.inside(&our_bin_dir().join("cnictl").display().to_string());
        let (conf, cache) = (self.work.path().join("net.d"), self.work.path().join("cni"));
        cnictl(command, &conf, &cache, args)
    }

    fn cnictl_ok(&self, args: &[&str]) -> String {
        succeeded(&self.cnictl(args), "cnictl", args)
    }

    fn cache_entry(&self, network: &str, id: &str, ifname: &str) -> Option<Value> {
        let file = self
            .work
            .path()
            .join(format!("cni/results/{network}-{id}-{ifname}"));
        let bytes = std::fs::read(file).ok()?;
        Some(serde_json::from_slice(&bytes).expect("a cache entry is JSON"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// libcni's result cache is shared by every runtime on a node: an entry Podman (libcni)
/// wrote is one cnictl lists, checks and detaches with; an entry cnictl wrote is one
/// libcni takes as its own (config, CNI_ARGS, capability arguments and result) when
/// Podman detaches that network.
#[test]
fn libcni_and_cnictl_read_each_others_cache_entries() {
    require_root!();
    let Some(podman) = Podman::new() else {
        return;
    };
    podman.ok(&["network", "create", "--subnet", "10.172.0.0/24", "podnet"]);
    podman.ok(&["network", "create", "--subnet", "10.173.0.0/24", "podnet2"]);
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "podnet",
        "localhost/ferrobox",
        "sleep",
        "600",
    ]);
    let id = podman
        .ok(&["inspect", "-f", "{{.Id}}", "c1"])
        .trim()
        .to_string();
    let netns = podman
        .ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "c1"])
        .trim()
        .to_string();

    // libcni wrote, cnictl reads: the attachment is listed, and CHECK runs with the cached
    // result.
    let listed: Value =
        serde_json::from_str(&podman.cnictl_ok(&["--json", "ls"])).expect("ls --json");
    let ours = listed
        .as_array()
        .and_then(|all| all.iter().find(|e| e["containerID"] == id.as_str()))
        .unwrap_or_else(|| panic!("podman's attachment listed: {listed}"));
    assert_eq!(ours["network"], "podnet");
    assert_eq!(ours["ifname"], "eth0");
    assert_eq!(ours["result"]["ips"][0]["address"], "10.172.0.2/24");
    podman.cnictl_ok(&["check", "podnet", &netns, "--id", &id]);

    // cnictl writes, libcni reads: Podman connects a second network, cnictl detaches and
    // attaches it again (its own entry now), and Podman's disconnect takes that entry.
    podman.ok(&["network", "connect", "podnet2", "c1"]);
    assert!(podman.cache_entry("podnet2", &id, "eth1").is_some());
    podman.cnictl_ok(&["del", "podnet2", &netns, "--id", &id, "--ifname", "eth1"]);
    assert!(podman.cache_entry("podnet2", &id, "eth1").is_none());
    podman.cnictl_ok(&[
        "add",
        "podnet2",
        &netns,
        "--id",
        &id,
        "--ifname",
        "eth1",
        "--arg",
        "K8S_POD_NAME=c1",
    ]);
    let entry = podman
        .cache_entry("podnet2", &id, "eth1")
        .expect("cnictl's entry");
    assert_eq!(entry["kind"], "cniCacheV1", "{entry}");
    let disconnect = podman.podman(&["network", "disconnect", "podnet2", "c1"]);
    let said = text(&disconnect);
    assert!(disconnect.status.success(), "{said}");
    assert!(
        !said.contains("cached") && !said.contains("wrong kind"),
        "libcni took cnictl's entry as its own: {said}"
    );
    assert!(podman.cache_entry("podnet2", &id, "eth1").is_none());
    let links = podman
        .inside("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip");
    let _ = links;
    let inside = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", podman.holder.id()))
        .arg(format!("--net={netns}"))
        .args(["ip", "-o", "link"])
        .output()
        .expect("ip in the container");
    assert!(
        !String::from_utf8_lossy(&inside.stdout).contains("eth1"),
        "eth1 is gone: {}",
        text(&inside)
    );
    let store = podman.work.path().join("cni/networks/podnet2");
    assert!(reserved_ips(&store).is_empty(), "the address went back");
}

/// Started under `umask 000`, cnictl still keeps its result cache private as libcni does:
/// directories 0700, entries 0600 (they hold every attachment's addresses and arguments).
#[test]
fn cache_modes_do_not_depend_on_the_umask() {
    require_root!();
    let setup = Setup::new();
    let container = NetnsGuard::new("fkc");
    // A cache directory that does not exist yet: cnictl makes every directory on the way.
    let root = setup.cache.path().join("made");
    let cache = root.join("cache");
    let run = |args: &[&str]| {
        let output = with_umask(&mut setup.command(&cache), 0)
            .args(args)
            .output()
            .expect("cnictl runs");
        assert!(
            output.status.success(),
            "cnictl {args:?}: {}",
            text(&output)
        );
    };
    run(&["add", "ctlnet", &container.path_str(), "--id", "umask"]);
    assert_eq!(
        modes_under(&root),
        [
            ("made".to_string(), 0o700),
            ("made/cache".to_string(), 0o700),
            ("made/cache/results".to_string(), 0o700),
            ("made/cache/results/ctlnet-umask-eth0".to_string(), 0o600),
        ]
    );
    run(&["del", "ctlnet", &container.path_str(), "--id", "umask"]);
}
