//! cnictl against real plugins: the demo, a network's whole life (add, check, ls, status,
//! del, gc), `run`, `netns`, and Kubernetes-style CNI_ARGS.

use ferrocni_tests::{
    modes_under, our_bin_dir, require_root, reserved_ips, with_umask, NetnsGuard, TempDir,
};
use serde_json::{json, Value};
use std::process::Output;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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
        self.command(&self.cache.path_str())
            .args(args)
            .output()
            .expect("cnictl runs")
    }

    /// cnictl in the sandbox host with this setup's configs and plugins and `cache`.
    fn command(&self, cache: &str) -> std::process::Command {
        let mut command = self.host.command(our_bin_dir().join("cnictl"));
        command
            .args(["--conf-dir", &self.conf.path_str(), "--cache-dir", cache])
            .args(["--path", &our_bin_dir().display().to_string()]);
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.cnictl(args);
        assert!(
            output.status.success(),
            "cnictl {args:?}: {}",
            text(&output)
        );
        text(&output)
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
    let output = std::process::Command::new(our_bin_dir().join("cnictl"))
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
    assert!(!netlib::netns::Netns::list()
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
        std::process::Command::new(our_bin_dir().join("cnictl"))
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
    let inside = std::process::Command::new("ip")
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

/// Started under `umask 000`, cnictl still keeps its result cache private as libcni does:
/// directories 0700, entries 0600 (they hold every attachment's addresses and arguments).
#[test]
fn cache_modes_do_not_depend_on_the_umask() {
    require_root!();
    let setup = Setup::new();
    let container = NetnsGuard::new("fkc");
    // A cache directory that does not exist yet: cnictl makes every directory on the way.
    let root = setup.cache.path().join("made");
    let cache = root.join("cache").display().to_string();
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
