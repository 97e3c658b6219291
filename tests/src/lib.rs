//! Test harness: runs the built plugin binaries exactly as a runtime does (a clean
//! environment of `CNI_*` variables, config on stdin, JSON on stdout), each from inside a
//! sandbox "host" namespace the test made, so no test touches the machine's own network.
//! Everything a test creates is named uniquely and removed on drop, also when it fails.
//! A test that cannot run here (no root, a tool or a reference plugin missing) is counted as
//! skipped, never as passed: see [`skip`].

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every spec version the plugins speak, oldest first.
pub const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Where the reference plugins live (Debian's containernetworking-plugins).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// strace, which kills a plugin at a chosen system call ([`Call::killed_at_send`]).
pub const STRACE: &str = "/usr/bin/strace";

/// Runs `attempt` with a plugin killed at its request 1, 2, ... (see
/// [`Call::killed_at_send`]) until `attempt` says the plugin ran to its end; returns how many
/// requests it was killed at. Fails if it never ran to its end.
pub fn kill_at_each_request(mut attempt: impl FnMut(usize) -> bool) -> usize {
    const MOST: usize = 24;
    (1..=MOST)
        .find(|&request| attempt(request))
        .map(|completed_at| completed_at - 1)
        .unwrap_or_else(|| panic!("the plugin never ran to its end within {MOST} requests"))
}

/// A short name unique to this process and call, usable as a netns or link name.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

fn ip(args: &[&str]) -> std::process::Output {
    skip::assert_installed(Path::new("ip"));
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("the ip tool (iproute2) runs");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A network namespace that exists for the life of the value.
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        ip(&["netns", "add", &name]);
        NetnsGuard { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// `ip -j` output inside this namespace, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", &self.name, "-j"];
        full.extend_from_slice(args);
        serde_json::from_slice(&ip(&full).stdout).expect("ip -j prints JSON")
    }

    /// Whether link `name` in this namespace has IFF_UP set.
    pub fn link_is_up(&self, name: &str) -> bool {
        let links = self.ip_json(&["link", "show", "dev", name]);
        links[0]["flags"]
            .as_array()
            .is_some_and(|flags| flags.iter().any(|f| f == "UP"))
    }
}

impl NetnsGuard {
    /// Runs a command inside this namespace.
    pub fn exec(&self, command: &[&str]) -> std::process::Output {
        skip::assert_installed(Path::new(command[0]));
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs a command inside this namespace and fails the test if it fails.
    pub fn exec_ok(&self, command: &[&str]) {
        let output = self.exec(command);
        assert!(
            output.status.success(),
            "{command:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Whether one ping from this namespace to `address` is answered (busybox ping; the
    /// machine has no other).
    pub fn ping(&self, address: &str) -> bool {
        self.exec(&["busybox", "ping", "-c", "1", "-W", "1", address])
            .status
            .success()
    }

    /// Names of the links in this namespace, `lo` excluded.
    pub fn links(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ip_json(&["link", "show"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .filter(|name| name != "lo")
            .collect();
        names.sort();
        names
    }

    /// `ip -d -j link show dev NAME` of one link.
    pub fn link_details(&self, name: &str) -> Value {
        self.ip_json(&["-d", "link", "show", "dev", name])[0].clone()
    }

    /// The nftables ruleset of this namespace as text (empty when there is none).
    pub fn nft_ruleset(&self) -> String {
        String::from_utf8_lossy(&self.exec(&["nft", "list", "ruleset"]).stdout).into_owned()
    }

    /// One `inet` table of this namespace as text (empty when there is none).
    pub fn nft_table(&self, name: &str) -> String {
        let listed = self.exec(&["nft", "list", "table", "inet", name]);
        String::from_utf8_lossy(&listed.stdout).into_owned()
    }

    /// The nat table as iptables-save prints it (rules only).
    pub fn iptables_nat(&self, v6: bool) -> String {
        let tool = if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        String::from_utf8_lossy(&self.exec(&[tool, "-t", "nat"]).stdout)
            .lines()
            .filter(|l| l.starts_with("-A") || l.starts_with(':'))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A process running inside a namespace (a server), killed when dropped.
pub struct Background {
    child: std::process::Child,
}

impl Background {
    /// The process's id (outside any PID namespace: the namespaces here are network ones).
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NetnsGuard {
    /// Starts `command` inside this namespace in the background.
    pub fn spawn(&self, command: &[&str]) -> Background {
        skip::assert_installed(Path::new(command[0]));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec runs");
        Background { child }
    }

    /// A command that runs inside this namespace (network only: mounts are not touched, unlike
    /// `ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        skip::assert_installed(Path::new(program.as_ref()));
        let netns = kernel::netns::Netns::open(self.path()).expect("the sandbox namespace opens");
        netns.command(program).expect("a descriptor for the child")
    }

    /// An HTTP server answering `body` on `port` (busybox httpd serving a scratch dir).
    pub fn http_server(&self, port: u16, body: &str, dir: &TempDir) -> Background {
        std::fs::write(dir.path().join("index.html"), body).expect("write index");
        let server = self.spawn(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            &port.to_string(),
            "-h",
            &dir.path_str(),
        ]);
        // Wait until it listens, so a test never races its own server.
        for _ in 0..100 {
            let listening = self.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
            if !String::from_utf8_lossy(&listening.stdout).trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    /// The body curl gets for `url` from this namespace, or `None` when it fails.
    pub fn curl(&self, url: &str) -> Option<String> {
        let output = self.exec(&["curl", "-s", "--max-time", "3", url]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// A veth pair between two namespaces with an address on each end: a point-to-point link
/// in a private range that exists only inside the test's namespaces.
pub fn wire(a: &NetnsGuard, a_addr: &str, b: &NetnsGuard, b_addr: &str) {
    let (a_if, b_if) = (unique("wa"), unique("wb"));
    ip(&[
        "-n",
        a.name(),
        "link",
        "add",
        &a_if,
        "type",
        "veth",
        "peer",
        "name",
        &b_if,
        "netns",
        b.name(),
    ]);
    ip(&["-n", a.name(), "addr", "add", a_addr, "dev", &a_if]);
    ip(&["-n", b.name(), "addr", "add", b_addr, "dev", &b_if]);
    ip(&["-n", a.name(), "link", "set", &a_if, "up"]);
    ip(&["-n", b.name(), "link", "set", &b_if, "up"]);
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A scratch directory removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        Self::under(&std::env::temp_dir(), prefix)
    }

    /// In tmpfs when there is one: for data a test's process fsyncs often (etcd's WAL), so
    /// many tests at once do not queue on the disk.
    pub fn in_memory(prefix: &str) -> Self {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Self::under(shm, prefix)
        } else {
            Self::new(prefix)
        }
    }

    fn under(parent: &Path, prefix: &str) -> Self {
        let path = parent.join(format!("ferrocni-{}", unique(prefix)));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Which implementation of a plugin to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Ours,
    Reference,
}

/// `cargo metadata` of the workspace, without its dependencies: its packages, their targets
/// and the workspace packages each depends on, as the manifests declare them.
pub fn workspace_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata is JSON")
}

/// The binaries ferrocni ships, as `packaging/binaries` lists them: (name, kind), the kind
/// `plugin`, `server` (installed as a plugin, no CNI plugin) or `tool`.
pub fn shipped() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/binaries");
    let text = std::fs::read_to_string(&path).expect("packaging/binaries");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(name), Some(kind), None) => (name.to_string(), kind.to_string()),
                _ => panic!("packaging/binaries: not \"name kind\": {line}"),
            }
        })
        .collect()
}

/// The CNI plugins ferrocni ships.
pub fn shipped_plugins() -> Vec<String> {
    shipped()
        .into_iter()
        .filter(|(_, kind)| kind == "plugin")
        .map(|(name, _)| name)
        .collect()
}

/// The directory holding our built binaries: `FERROCNI_BIN_DIR` (the shipped build that
/// `scripts/build.sh` assembles), else [`profile_dir`].
pub fn our_bin_dir() -> PathBuf {
    let dir = std::env::var_os("FERROCNI_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(profile_dir);
    assert!(
        dir.join("loopback").is_file(),
        "no plugin binaries in {dir:?}: run `cargo build --workspace` before the tests (scripts/test.sh does)"
    );
    dir
}

/// `target/<profile>`, where cargo put this binary (test fixtures live in its `examples`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Test binaries live in target/<profile>/deps, the bench binary beside the plugins.
    let beside = exe.parent().filter(|dir| dir.join("loopback").is_file());
    beside
        .or_else(|| exe.parent().and_then(Path::parent))
        .expect("binaries live in target/<profile>")
        .to_path_buf()
}

impl Impl {
    pub fn dir(self) -> PathBuf {
        match self {
            Impl::Ours => our_bin_dir(),
            Impl::Reference => PathBuf::from(REFERENCE_DIR),
        }
    }

    pub fn plugin(self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Whether this implementation of `plugin` is installed; records a skip when the
    /// reference is not (the comparison cannot run). Ours is always there: a plugin of ours
    /// that was not built fails the test.
    pub fn available(self, plugin: &str) -> bool {
        let path = self.plugin(plugin);
        let present = path.is_file();
        match self {
            Impl::Ours => assert!(present, "{path:?} was not built"),
            Impl::Reference if !present => skip::skip(&format!(
                "no reference {} to compare with (apt-get install containernetworking-plugins)",
                path.display()
            )),
            Impl::Reference => {}
        }
        present
    }
}

/// What a plugin run printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The result of a successful run; fails the test with the plugin's error otherwise.
    pub fn success(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// The error object of a failed run; fails the test if the run succeeded or panicked.
    pub fn error(&self) -> Value {
        assert_ne!(
            self.code, 0,
            "plugin unexpectedly succeeded: {}",
            self.stdout
        );
        assert!(
            !self.stderr.contains("panicked"),
            "plugin panicked: {}",
            self.stderr
        );
        let error = self.json();
        assert!(
            error["code"].is_u64(),
            "error object without a code: {error}"
        );
        assert!(
            error["msg"].is_string(),
            "error object without a msg: {error}"
        );
        error
    }

    /// Asserts a failure with `code` whose message mentions `needle`.
    pub fn assert_error(&self, code: u64, needle: &str) {
        let error = self.error();
        assert_eq!(error["code"], code, "wrong code: {error}");
        // The strings themselves, not their JSON form: a needle may quote a name.
        let text = format!(
            "{} {}",
            error["msg"].as_str().unwrap_or_default(),
            error["details"].as_str().unwrap_or_default()
        );
        assert!(
            text.contains(needle),
            "message should mention {needle:?}: {error}"
        );
    }
}

/// One plugin invocation as a runtime makes it.
pub struct Call {
    plugin: PathBuf,
    /// Values as bytes: a runtime may pass anything, UTF-8 or not.
    env: Vec<(String, std::ffi::OsString)>,
    stdin: String,
    /// A program (and its arguments) that runs the plugin: strace injecting a fault.
    wrapper: Vec<String>,
    umask: Option<libc::mode_t>,
    /// The user (and group) the plugin runs as, when not root.
    user: Option<u32>,
}

impl Call {
    /// `command` on `plugin`, with `CNI_PATH` pointing at the same implementation.
    pub fn new(implementation: Impl, plugin: &str, command: &str) -> Self {
        Call::binary(&implementation.plugin(plugin), command)
            .env("CNI_PATH", &implementation.dir().display().to_string())
    }

    /// `command` on our `plugin` for the attachment `id`/`eth0` in `container`, with `config`.
    pub fn ours(
        plugin: &str,
        command: &str,
        id: &str,
        container: &NetnsGuard,
        config: &Value,
    ) -> Self {
        Call::new(Impl::Ours, plugin, command)
            .attachment(id, &container.path_str(), "eth0")
            .stdin(config)
    }

    /// `command` on any plugin binary (a test fixture, say); no `CNI_PATH`.
    pub fn binary(path: &Path, command: &str) -> Self {
        Call {
            plugin: path.to_path_buf(),
            env: vec![
                ("CNI_COMMAND".into(), command.into()),
                ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ],
            stdin: String::new(),
            wrapper: Vec::new(),
            umask: None,
            user: None,
        }
    }

    /// Runs the plugin as `uid` (its group too), after it entered the sandbox namespace.
    pub fn as_user(mut self, uid: u32) -> Self {
        self.user = Some(uid);
        self
    }

    /// Runs the plugin under `mask`, as a careless service manager might start it.
    pub fn umask(mut self, mask: libc::mode_t) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Has strace kill the plugin at its `request`th netlink send (its first, second, ...
    /// kernel request), as a runtime's timeout or the OOM killer might.
    pub fn killed_at_send(mut self, request: usize) -> Self {
        let inject = format!("inject=sendto:signal=KILL:when={request}");
        self.wrapper = [STRACE, "-f", "-o", "/dev/null", "-e", &inject]
            .map(String::from)
            .to_vec();
        self
    }

    /// Sets the usual attachment variables.
    pub fn attachment(self, container_id: &str, netns: &str, ifname: &str) -> Self {
        self.env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
    }

    pub fn env(self, key: &str, value: &str) -> Self {
        self.env_os(key, value.as_ref())
    }

    /// A variable whose value need not be UTF-8.
    pub fn env_os(mut self, key: &str, value: &std::ffi::OsStr) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.to_os_string()));
        self
    }

    pub fn without_env(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn stdin(mut self, config: impl ToString) -> Self {
        self.stdin = config.to_string();
        self
    }

    /// Runs the plugin from inside `host`, never from the machine's own namespace.
    pub fn run_in(&self, host: &NetnsGuard) -> Outcome {
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = host.command(program);
                command.args(args).arg(&self.plugin);
                command
            }
            None => host.command(&self.plugin),
        };
        if let Some(mask) = self.umask {
            with_umask(&mut command, mask);
        }
        if let Some(uid) = self.user {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only makes system calls that allocate
            // nothing; it runs after the namespace switch, which needs root.
            unsafe {
                command.pre_exec(move || {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.plugin));
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(self.stdin.as_bytes());
        }
        let output = child.wait_with_output().expect("plugin finishes");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Makes `command` start under umask `mask`.
pub fn with_umask(command: &mut Command, mask: libc::mode_t) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only makes the umask(2) system call, which
    // cannot fail; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        })
    }
}

/// The permission bits of everything under `root` (itself included, symlinks not followed),
/// as `(path relative to root's parent, mode)`, sorted: what a careless umask would show.
pub fn modes_under(root: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let base = root.parent().unwrap_or(root);
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        let name = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .display()
            .to_string();
        found.push((name, metadata.permissions().mode() & 0o7777));
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir").flatten() {
                pending.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Reservation files in a host-local store directory (addresses only).
pub fn reserved_ips(store: &Path) -> Vec<String> {
    let mut ips: Vec<String> = std::fs::read_dir(store)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips
}

/// A sandbox host for an interface plugin: its namespace, a host-local store, the network.
pub struct Sandbox {
    pub ns: NetnsGuard,
    pub store: TempDir,
    pub network: &'static str,
    plugin: &'static str,
}

impl Sandbox {
    pub fn new(plugin: &'static str, network: &'static str) -> Self {
        Sandbox {
            ns: NetnsGuard::new("fsb"),
            store: TempDir::new(plugin),
            network,
            plugin,
        }
    }

    /// A config for this sandbox's plugin: host-local over `ranges` with a default route,
    /// plus `extra` top-level keys.
    pub fn conf(&self, version: &str, ranges: Value, extra: Value) -> Value {
        extended(
            serde_json::json!({
                "cniVersion": version, "name": self.network, "type": self.plugin,
                "ipam": {"type": "host-local", "dataDir": self.store.path_str(), "ranges": ranges,
                         "routes": [{"dst": "0.0.0.0/0"}]}
            }),
            &extra,
        )
    }

    pub fn call(
        &self,
        implementation: Impl,
        command: &str,
        id: &str,
        container: &NetnsGuard,
        config: &Value,
    ) -> Outcome {
        Call::new(implementation, self.plugin, command)
            .attachment(id, &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&self.ns)
    }

    /// GC or STATUS: no attachment.
    pub fn call_network(&self, command: &str, config: &Value) -> Outcome {
        Call::new(Impl::Ours, self.plugin, command)
            .stdin(config)
            .run_in(&self.ns)
    }

    pub fn reserved(&self) -> Vec<String> {
        reserved_ips(&self.store.path().join(self.network))
    }

    /// Nothing of any attachment is left: no links but those named in `keep` (by prefix), no
    /// reservation, no masquerade rule in either backend.
    pub fn assert_clean(&self, keep: &[&str]) {
        let leftover = || -> Vec<String> {
            self.ns
                .links()
                .into_iter()
                .filter(|l| !keep.iter().any(|k| l.starts_with(k)))
                .collect()
        };
        // A deleted namespace takes its veth ends along asynchronously; give it a moment.
        let mut links = leftover();
        for _ in 0..40 {
            if links.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            links = leftover();
        }
        assert!(links.is_empty(), "links left behind: {links:?}");
        assert!(
            self.reserved().is_empty(),
            "reservations left: {:?}",
            self.reserved()
        );
        let ruleset = self.ns.nft_ruleset();
        let owner = format!("comment \"{}/", self.network);
        assert!(
            !ruleset.contains(&owner),
            "masquerade elements left: {ruleset}"
        );
        // Shared chains (CNI-HOSTPORT-*) stay, as the bridge does; per-attachment ones go.
        let comment = format!("name: \\\"{}\\\"", self.network);
        for v6 in [false, true] {
            let nat = self.ns.iptables_nat(v6);
            let left: Vec<&str> = nat
                .lines()
                .filter(|l| {
                    l.contains(&comment)
                        || (l.starts_with(":CNI-") && !l.starts_with(":CNI-HOSTPORT-"))
                })
                .collect();
            assert!(left.is_empty(), "iptables rules left: {left:?}");
        }
    }
}

/// `base` with the top-level keys of `extra` added, replacing those of the same name; an
/// `extra` that is no object adds nothing.
pub fn extended(mut base: Value, extra: &Value) -> Value {
    if let (Some(target), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    base
}

/// `config` with `prevResult` set, as a runtime sends DEL and CHECK.
pub fn with_previous(config: &Value, previous: &Value) -> Value {
    let mut config = config.clone();
    config["prevResult"] = previous.clone();
    config
}

/// The bare address of `ips[index]` of a result.
pub fn address(result: &Value, index: usize) -> String {
    let cidr = result["ips"][index]["address"].as_str().expect("address");
    cidr.split('/').next().expect("ip").to_string()
}

/// A result re-labelled for an older spec version the way libcni converts 1.x down to
/// 0.3.x/0.4.0 (IPs gain `version`), for feeding prevResult of that version to a plugin.
pub fn convert(result: &Value, version: &str) -> Value {
    let mut converted = result.clone();
    converted["cniVersion"] = Value::from(version);
    if version < "1.0.0" {
        if let Some(ips) = converted["ips"].as_array_mut() {
            for ip in ips {
                let v4 = ip["address"].as_str().is_some_and(|a| a.contains('.'));
                ip["version"] = Value::from(if v4 { "4" } else { "6" });
            }
        }
    }
    converted
}
pub mod dns;
pub mod fuzz;
pub mod lab;
pub mod skip;
pub mod unit;
