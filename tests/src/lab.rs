//! A multi-node overlay lab for tests: node namespaces on a private underlay bridge
//! (198.18.0.0/24, which exists only inside the lab's namespaces), etcd in the underlay
//! namespace on private ports, a `ferrocni-agent` per node on either backend (VXLAN, or
//! WireGuard), and pods attached by the `vxlan` plugin run inside their node. Everything is
//! killed and removed on drop.

use serde_json::{json, Value};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::dns::ResolvConf;
use crate::unit::{NotifySocket, Unit};
use crate::{address, our_bin_dir, Call, NetnsGuard, Outcome, TempDir};

/// etcd's client address inside the underlay namespace (`https` with [`EtcdTls`]).
const ETCD_ADDRESS: &str = "198.18.0.254:23790";
pub const PREFIX: &str = "/ferrocni/network";
/// The lease TTL the lab's agents use: short, so departures are seen quickly, but long
/// enough that an etcd slowed by a loaded CI machine (ten labs at once) does not expire it.
pub const TTL: Duration = Duration::from_secs(5);
/// Where each agent serves /healthz, /readyz and /metrics, inside its node's namespace.
pub const HEALTH: &str = "http://127.0.0.1:9471";

/// Certificates for an etcd that speaks TLS and asks clients for theirs: a CA, etcd's
/// certificate for its lab address, a client certificate, and a second CA that signed
/// nothing of this (to be the wrong one). Made with openssl, valid for a day.
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
}

fn openssl(dir: &std::path::Path, args: &[String]) {
    let output = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `text` split at spaces, for arguments that contain none.
fn words(text: &str) -> Vec<String> {
    text.split(' ').map(str::to_string).collect()
}

impl EtcdTls {
    pub fn make(dir: &std::path::Path) -> EtcdTls {
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        for ca in ["ca", "other-ca"] {
            let mut args = words(&format!(
                "req -x509 -days 1 {key} -keyout {ca}.key -out {ca}.crt \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -subj"
            ));
            args.push(format!("/CN=ferrocni lab {ca}"));
            openssl(dir, &args);
        }
        let ip = ETCD_ADDRESS.split(':').next().unwrap_or_default();
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "subjectAltName=IP:{ip}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
                ),
            )
            .expect("write extensions");
            let mut args = words(&format!(
                "req {key} -keyout {name}.key -out {name}.csr -subj"
            ));
            args.push(format!("/CN=ferrocni lab {name}"));
            openssl(dir, &args);
            openssl(
                dir,
                &words(&format!(
                    "x509 -req -days 1 -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                     -extfile {name}.ext -out {name}.crt"
                )),
            );
        }
        EtcdTls {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.crt"),
        }
    }
}

pub struct LabNode {
    pub ns: NetnsGuard,
    pub name: String,
    agent: Option<Child>,
}

pub struct Lab {
    pub dir: TempDir,
    etcd_data: TempDir,
    pub underlay: NetnsGuard,
    pub nodes: Vec<LabNode>,
    etcd: Option<Child>,
    /// Static mode: no etcd, each node's peers in its config file.
    static_mode: bool,
    /// etcd speaks TLS with these (set before [`Lab::start_etcd`]).
    pub tls: Option<EtcdTls>,
    /// etcdctl logs in as this user (`name:password`) once auth is on.
    pub etcd_user: Option<String>,
    /// Environment of every agent started from now on. Settings the lab's tests need are
    /// given this way rather than as flags, so an agent that predates them still starts
    /// and shows how it behaves without them.
    pub agent_env: Vec<(String, String)>,
    /// The cluster's backend: "vxlan" or "wireguard".
    backend: &'static str,
    network: String,
}

/// A peer of a node's WireGuard device, as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerSeen {
    /// Hex, as the configuration protocol writes it.
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
}

/// A pod: its namespace and its overlay address.
pub struct Pod {
    pub ns: NetnsGuard,
    pub ip: String,
    pub result: Value,
}

impl Pod {
    /// Whether this pod and `other` ping each other, both ways.
    pub fn pings_both_ways(&self, other: &Pod) -> bool {
        self.ns.ping(&other.ip) && other.ns.ping(&self.ip)
    }

    /// Whether a TCP connection from this pod to `server`'s address is answered (an HTTP
    /// fetch), with no NAT between: the server sees the client's own address.
    pub fn tcp_connects_to(&self, server: &Pod) -> bool {
        let dir = TempDir::new("www");
        let _http = server.ns.http_server(8080, "overlay", &dir);
        self.ns
            .curl(&format!("http://{}:8080/", server.ip))
            .as_deref()
            == Some("overlay")
    }
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on a child this lab started and has not reaped yet.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The ownership record, then the liveness record (keys and values) of a simulated node:
/// see [`Lab::simulate_node`].
pub fn simulated_records(name: &str, subnet: &str, vtep: &str, mac: &str) -> [(String, String); 2] {
    simulated_records_keyed(name, subnet, vtep, mac, None)
}

/// As [`simulated_records`], the liveness record with a WireGuard public key (base64).
pub fn simulated_records_keyed(
    name: &str,
    subnet: &str,
    vtep: &str,
    mac: &str,
    public_key: Option<&str>,
) -> [(String, String); 2] {
    let identity = format!("simulated-{name}");
    let ownership = json!({"node": name, "identity": identity, "vtep": vtep, "lease": "0"});
    let mut liveness = json!({"identity": identity, "subnet": subnet, "vtep": vtep, "mac": mac});
    if let Some(key) = public_key {
        liveness["publicKey"] = json!(key);
    }
    [
        (subnet_key(subnet), ownership.to_string()),
        (format!("{PREFIX}/nodes/{name}"), liveness.to_string()),
    ]
}

/// The etcd key of `subnet` (`10.244.3.0/24`).
pub fn subnet_key(subnet: &str) -> String {
    format!("{PREFIX}/subnets/{}", subnet.replace('/', "-"))
}

/// Waits up to `limit` for `condition`; returns how long it took, or `None`.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Lab {
    /// `count` nodes with etcd and an agent each, all leased.
    pub fn new(count: usize) -> Lab {
        Lab::with(count, |_| {})
    }

    /// As [`Lab::new`], with `setup` run on the empty lab first (agent settings, network).
    pub fn with(count: usize, setup: impl FnOnce(&mut Lab)) -> Lab {
        let mut lab = Lab::empty(false);
        setup(&mut lab);
        lab.start_etcd();
        for _ in 0..count {
            lab.add_node();
        }
        for i in 0..count {
            lab.wait_leased(i);
        }
        // Generous: ten labs at once on a 2-core CI machine can delay a first session by a
        // store call's timeout or two; the tests that time convergence do so themselves.
        let converged = wait_for(Duration::from_secs(30), || {
            (0..count).all(|i| lab.overlay_routes(i).len() == count - 1)
        });
        assert!(converged.is_some(), "the lab converged:\n{}", lab.logs());
        lab
    }

    /// The underlay alone; nodes come with [`Lab::add_node`].
    pub fn empty(static_mode: bool) -> Lab {
        let underlay = NetnsGuard::new("fov");
        underlay.exec_ok(&["ip", "link", "set", "lo", "up"]);
        // A MAC of its own: a bridge without one takes its lowest port's and changes it when
        // a lower port joins. A node that had cached another port's MAC (node 2 when node 1's
        // port was the lowest, until node 3 brings a lower one) then sends frames the bridge
        // drops as not its own, and loses etcd until its ARP entry expires, ~30 s later.
        underlay.exec_ok(&[
            "ip",
            "link",
            "add",
            "ul0",
            "address",
            "02:00:c6:12:00:fe",
            "type",
            "bridge",
        ]);
        underlay.exec_ok(&["ip", "addr", "add", "198.18.0.254/24", "dev", "ul0"]);
        underlay.exec_ok(&["ip", "link", "set", "ul0", "up"]);
        let lab = Lab {
            dir: TempDir::new("lab"),
            etcd_data: TempDir::in_memory("etcd"),
            underlay,
            nodes: Vec::new(),
            etcd: None,
            static_mode,
            tls: None,
            etcd_user: None,
            agent_env: Vec::new(),
            backend: "vxlan",
            network: "10.244.0.0/16".to_string(),
        };
        lab.write_cluster();
        lab
    }

    /// The cluster network node subnets (/24) are carved from, as the agents started from
    /// now on publish it (the first one's wins in etcd).
    pub fn set_network(&mut self, network: &str) {
        self.network = network.to_string();
        self.write_cluster();
    }

    /// The cluster's backend ("vxlan", "wireguard"), as the agents started from now on
    /// publish it.
    pub fn set_backend(&mut self, backend: &'static str) {
        self.backend = backend;
        self.write_cluster();
    }

    fn write_cluster(&self) {
        let cluster = json!({"network": self.network, "subnetLen": 24, "vni": 42,
                             "backend": self.backend});
        std::fs::write(self.dir.path().join("cluster.json"), cluster.to_string()).expect("write");
    }

    /// The interface pod traffic to other nodes leaves by.
    pub fn tunnel_device(&self) -> &'static str {
        if self.backend == "wireguard" {
            "ferrocni.wg"
        } else {
            "ferrocni.vx"
        }
    }

    /// Every agent started from now on gets `key=value` in its environment.
    pub fn agent_env(&mut self, key: &str, value: &str) {
        self.agent_env.push((key.to_string(), value.to_string()));
    }

    /// The URL agents and etcdctl reach etcd at.
    pub fn etcd_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{ETCD_ADDRESS}")
    }

    fn log(&self, name: &str) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .expect("log file")
    }

    pub fn start_etcd(&mut self) {
        let data = self.etcd_data.path().join("etcd");
        let url = self.etcd_url();
        let mut command = self.underlay.command("etcd");
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.display().to_string();
            command
                .args(["--cert-file", &path(&tls.server_cert)])
                .args(["--key-file", &path(&tls.server_key)])
                .args(["--trusted-ca-file", &path(&tls.ca)])
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", "lab", "--data-dir", &data.display().to_string()])
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:23800"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:23800"])
            .args(["--initial-cluster", "lab=http://127.0.0.1:23800"])
            .stdout(Stdio::null())
            .stderr(self.log("etcd.log"))
            .spawn()
            .expect("etcd starts (apt-get install etcd-server)");
        self.etcd = Some(child);
        let healthy = wait_for(Duration::from_secs(15), || {
            self.etcdctl(&["endpoint", "health"]).is_some()
        });
        assert!(healthy.is_some(), "etcd did not come up:\n{}", self.logs());
    }

    pub fn stop_etcd(&mut self) {
        self.signal_etcd(libc::SIGTERM);
    }

    /// etcd dies at once, as on a crash or an OOM kill: no clean shutdown.
    pub fn kill_etcd(&mut self) {
        self.signal_etcd(libc::SIGKILL);
    }

    fn signal_etcd(&mut self, sig: i32) {
        if let Some(mut etcd) = self.etcd.take() {
            signal(&etcd, sig);
            let _ = etcd.wait();
        }
    }

    /// Stops etcd's process for `pause` without closing its sockets: connections stay up but
    /// nothing answers, the way a hung or partitioned server looks to a client.
    pub fn freeze_etcd(&self, pause: Duration) {
        self.pause_etcd();
        std::thread::sleep(pause);
        self.resume_etcd();
    }

    /// Stops etcd's process (SIGSTOP) until [`Lab::resume_etcd`].
    pub fn pause_etcd(&self) {
        signal(self.etcd.as_ref().expect("etcd runs"), libc::SIGSTOP);
    }

    pub fn resume_etcd(&self) {
        signal(self.etcd.as_ref().expect("etcd runs"), libc::SIGCONT);
    }

    /// `etcdctl ARGS` against the lab's etcd; its stdout, or `None` when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> Option<String> {
        let mut command = self.underlay.command("etcdctl");
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.display().to_string();
            command
                .args(["--cacert", &path(&tls.ca)])
                .args(["--cert", &path(&tls.client_cert)])
                .args(["--key", &path(&tls.client_key)]);
        }
        if let Some(user) = &self.etcd_user {
            command.args(["--user", user]);
        }
        let output = command
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.etcd_url(),
                "--dial-timeout",
                "1s",
                "--command-timeout",
                "2s",
            ])
            .args(args)
            .output()
            .expect("etcdctl runs (apt-get install etcd-client)");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Adds node `n<i+1>` at 198.18.0.<i+1> and starts its agent; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.add_machine(None);
        self.start_agent(i);
        i
    }

    /// Adds a machine (index i) at 198.18.0.<i+1>, its node called `name` (default
    /// `n<i+1>`), with no agent running yet; returns its index.
    pub fn add_machine(&mut self, name: Option<&str>) -> usize {
        let i = self.nodes.len();
        let name = name.map_or_else(|| format!("n{}", i + 1), str::to_string);
        let ns = NetnsGuard::new("fon");
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let port = format!("p{}", i + 1);
        self.underlay.exec_ok(&[
            "ip",
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            ns.name(),
        ]);
        self.underlay
            .exec_ok(&["ip", "link", "set", &port, "master", "ul0", "up"]);
        ns.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("198.18.0.{}/24", i + 1),
            "dev",
            "eth0",
        ]);
        ns.exec_ok(&["ip", "link", "set", "eth0", "up"]);
        std::fs::create_dir_all(self.node_dir(i)).expect("node dir");
        self.nodes.push(LabNode {
            ns,
            name,
            agent: None,
        });
        i
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    pub fn node_file(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("vxlan.json")
    }

    pub fn wireguard_key_file(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("wireguard.key")
    }

    /// Where machine `i`'s agent serves its WireGuard device's state.
    pub fn wireguard_socket(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("wg.sock")
    }

    /// Node `i`'s WireGuard peers, read from its agent's device (empty when it serves none).
    pub fn wireguard_peers(&self, i: usize) -> Vec<WgPeerSeen> {
        use std::io::{Read, Write};
        let Ok(mut socket) = std::os::unix::net::UnixStream::connect(self.wireguard_socket(i))
        else {
            return Vec::new();
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(3)));
        let mut text = String::new();
        if socket.write_all(b"get=1\n\n").is_err() {
            return Vec::new();
        }
        let mut buffer = [0u8; 4096];
        while !text.ends_with("\n\n") {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
        let mut peers: Vec<WgPeerSeen> = Vec::new();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            match (key, peers.last_mut()) {
                ("public_key", _) => peers.push(WgPeerSeen {
                    public_key: value.to_string(),
                    endpoint: None,
                    allowed_ips: Vec::new(),
                }),
                ("endpoint", Some(peer)) => peer.endpoint = Some(value.to_string()),
                ("allowed_ip", Some(peer)) => peer.allowed_ips.push(value.to_string()),
                _ => {}
            }
        }
        peers
    }

    /// Static mode: writes node `i`'s config with `subnets[j]` for node j, all others peers.
    pub fn write_static_config(&self, i: usize, subnets: &[&str]) {
        let peers: Vec<Value> = subnets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, subnet)| {
                json!({"node": format!("n{}", j + 1), "subnet": subnet,
                       "vtep": format!("198.18.0.{}", j + 1)})
            })
            .collect();
        let config = json!({"network": "10.244.0.0/16", "subnetLen": 24, "vni": 42,
                            "subnet": subnets[i], "peers": peers});
        std::fs::write(self.node_dir(i).join("static.json"), config.to_string()).expect("write");
    }

    pub fn start_agent(&mut self, i: usize) {
        let log = Stdio::from(self.log(&self.log_name(i)));
        self.start_agent_with(i, &[], log);
    }

    /// Starts node `i`'s agent with `env` besides the lab's, its stderr going to `stderr`.
    pub fn start_agent_with(&mut self, i: usize, env: &[(&str, &str)], stderr: Stdio) {
        let command = self.nodes[i]
            .ns
            .command(our_bin_dir().join("ferrocni-agent"));
        self.spawn_agent(i, command, env, stderr);
    }

    /// Starts machine `i`'s agent as `ferrocni-agent.service` does (see [`crate::unit`]),
    /// telling `notify` when it is ready.
    pub fn start_agent_as_unit(&mut self, i: usize, notify: &NotifySocket) {
        let unit = Unit::load("ferrocni-agent.service");
        let command = unit.command(&self.nodes[i].ns, &[], notify, None);
        let log = Stdio::from(self.log(&self.log_name(i)));
        self.spawn_agent(i, command, &[], log);
    }

    /// Starts machine `i`'s agent through `wrapper`, a command that ends by exec'ing the
    /// arguments it is given (`sh -c '...; exec "$@"' sh`), the agent's path appended.
    pub fn start_agent_wrapped(&mut self, i: usize, wrapper: &[&str]) {
        let mut command = self.nodes[i].ns.command(wrapper[0]);
        command
            .args(&wrapper[1..])
            .arg(our_bin_dir().join("ferrocni-agent"));
        let log = Stdio::from(self.log(&self.log_name(i)));
        self.spawn_agent(i, command, &[], log);
    }

    /// Runs `command`, an agent, as machine `i`'s, with the lab's settings in its
    /// environment (as the unit's EnvironmentFile gives them), then the lab's `agent_env`,
    /// then `env`.
    fn spawn_agent(&mut self, i: usize, mut command: Command, env: &[(&str, &str)], stderr: Stdio) {
        let dir = self.node_dir(i);
        let path = |p: PathBuf| p.display().to_string();
        let mut settings = vec![
            ("FERROCNI_NODE", self.nodes[i].name.clone()),
            ("FERROCNI_UNDERLAY_INTERFACE", "eth0".to_string()),
            ("FERROCNI_NODE_FILE", path(dir.join("vxlan.json"))),
            ("FERROCNI_LEASE_TTL", TTL.as_secs().to_string()),
            ("FERROCNI_RESYNC", "2".to_string()),
            ("FERROCNI_LOG_LEVEL", "debug".to_string()),
            // Each machine its own identity, names and key: they share this filesystem.
            ("FERROCNI_IDENTITY_FILE", path(dir.join("identity"))),
            ("FERROCNI_DNS_DIR", path(dir.join("dns"))),
            (
                "FERROCNI_WIREGUARD_KEY_FILE",
                path(self.wireguard_key_file(i)),
            ),
            ("FERROCNI_WIREGUARD_SOCKET", path(self.wireguard_socket(i))),
        ];
        if self.static_mode {
            settings.push(("FERROCNI_CONFIG", path(dir.join("static.json"))));
        } else {
            settings.push(("FERROCNI_ETCD_ENDPOINTS", self.etcd_url()));
            settings.push((
                "FERROCNI_CONFIG",
                path(self.dir.path().join("cluster.json")),
            ));
        }
        command.envs(settings);
        command.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        command.envs(env.iter().copied());
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the agent starts");
        self.nodes[i].agent = Some(child);
    }

    /// The log file of machine `i`'s agent (named by machine, as two may share a node name).
    fn log_name(&self, i: usize) -> String {
        format!("agent{}-{}.log", i + 1, self.nodes[i].name)
    }

    /// What machine `i`'s agent has logged.
    pub fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(self.log_name(i))).unwrap_or_default()
    }

    /// Waits up to `limit` for machine `i`'s agent to exit; its status, or `None`.
    pub fn agent_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            let agent = self.nodes[i].agent.as_mut()?;
            if let Ok(Some(status)) = agent.try_wait() {
                self.nodes[i].agent = None;
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` of machine `i`'s agent's health endpoint: the body, or `None` when
    /// nothing answers.
    pub fn health(&self, i: usize, path: &str) -> Option<String> {
        self.nodes[i].ns.curl(&format!("{HEALTH}{path}"))
    }

    /// Writes the records of a node that no agent runs (a simulated one): it owns `subnet`
    /// and is live, reachable at `vtep` with VXLAN MAC `mac`. No lease: it stays until
    /// deleted ([`Lab::forget_simulated`]).
    pub fn simulate_node(&self, name: &str, subnet: &str, vtep: &str, mac: &str) {
        for (key, value) in simulated_records(name, subnet, vtep, mac) {
            self.etcdctl(&["put", &key, &value])
                .expect("put a simulated record");
        }
    }

    /// Removes a simulated node's records: it is gone, and its subnet free.
    pub fn forget_simulated(&self, name: &str, subnet: &str) {
        self.etcdctl(&["del", &format!("{PREFIX}/nodes/{name}")]);
        self.etcdctl(&["del", &subnet_key(subnet)]);
    }

    /// Stops node `i`'s agent with `sig` and returns how it exited.
    pub fn stop_agent(&mut self, i: usize, sig: i32) -> ExitStatus {
        let mut agent = self.nodes[i].agent.take().expect("agent running");
        signal(&agent, sig);
        agent.wait().expect("agent reaped")
    }

    /// The process id of node `i`'s agent, while it runs.
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].agent.as_ref().map(Child::id)
    }

    pub fn agent_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .agent
            .as_mut()
            .is_some_and(|a| matches!(a.try_wait(), Ok(None)))
    }

    /// Whether machine `i` got a subnet (its agent wrote the node file).
    pub fn leased(&self, i: usize) -> bool {
        self.node_file(i).is_file()
    }

    /// Waits until node `i` has its lease and node file.
    pub fn wait_leased(&self, i: usize) {
        let leased = wait_for(Duration::from_secs(20), || self.node_file(i).is_file());
        assert!(leased.is_some(), "node {i} got no lease:\n{}", self.logs());
    }

    /// Node `i`'s subnet, from its node file.
    pub fn subnet(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.node_file(i)).expect("node file");
        let file: Value = serde_json::from_str(&text).expect("node file JSON");
        file["subnet"].as_str().expect("subnet").to_string()
    }

    pub fn plugin_config(&self, i: usize) -> Value {
        let dir = self.node_dir(i);
        json!({"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan",
               "subnetFile": dir.join("vxlan.json"), "dataDir": dir.join("ipam"),
               "stateDir": dir.join("state")})
    }

    /// Runs the vxlan plugin inside node `i`.
    pub fn plugin(&self, i: usize, command: &str, pod: Option<(&str, &NetnsGuard)>) -> Outcome {
        let mut call = Call::binary(&our_bin_dir().join("vxlan"), command)
            .env("CNI_PATH", &our_bin_dir().display().to_string())
            .stdin(self.plugin_config(i));
        if let Some((id, ns)) = pod {
            call = call.attachment(id, &ns.path_str(), "eth0");
        }
        call.run_in(&self.nodes[i].ns)
    }

    /// A pod on node `i`.
    pub fn pod(&self, i: usize) -> Pod {
        let ns = NetnsGuard::new("fop");
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let id = ns.name().to_string();
        let result = self.plugin(i, "ADD", Some((&id, &ns))).success();
        Pod {
            ip: address(&result, 0),
            ns,
            result,
        }
    }

    /// Node `i`'s dnsname config (its names under the node's directory), with `previous`.
    pub fn dns_config(&self, i: usize, previous: Option<&Value>) -> Value {
        let mut config = json!({"cniVersion": "1.1.0", "name": "overlay", "type": "dnsname",
            "domainName": "cluster.test", "runtimeDir": self.node_dir(i).join("dns")});
        if let Some(previous) = previous {
            config["prevResult"] = previous.clone();
        }
        config
    }

    /// Runs the dnsname plugin inside node `i` for `pod`, registered as `name`.
    pub fn dnsname(&self, i: usize, command: &str, pod: &Pod, name: &str) -> Outcome {
        Call::binary(&our_bin_dir().join("dnsname"), command)
            .env("CNI_PATH", &our_bin_dir().display().to_string())
            .env("CNI_ARGS", &format!("K8S_POD_NAME={name}"))
            .attachment(pod.ns.name(), &pod.ns.path_str(), "eth0")
            .stdin(self.dns_config(i, Some(&pod.result)))
            .run_in(&self.nodes[i].ns)
    }

    /// A pod on node `i` named `name` (vxlan, then dnsname), with the resolv.conf a runtime
    /// writes from the result.
    pub fn named_pod(&self, i: usize, name: &str) -> (Pod, ResolvConf) {
        let pod = self.pod(i);
        let result = self.dnsname(i, "ADD", &pod, name).success();
        let resolv = ResolvConf::write(&pod.ns, &result);
        (pod, resolv)
    }

    /// `ip -j ARGS` inside node `i`.
    pub fn ip_json(&self, i: usize, args: &[&str]) -> Value {
        self.nodes[i].ns.ip_json(args)
    }

    /// Node `i`'s overlay routes, as destination prefixes.
    pub fn overlay_routes(&self, i: usize) -> Vec<String> {
        let routes = self.ip_json(i, &["route", "show", "dev", self.tunnel_device()]);
        routes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["dst"].as_str().map(str::to_string))
            .collect()
    }

    /// Node `i`'s permanent neighbours and forwarding entries on the VXLAN device, as text.
    pub fn overlay_entries(&self, i: usize) -> (Vec<String>, Vec<String>) {
        let text = |args: &[&str]| {
            let output = self.nodes[i].ns.exec(args);
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        (
            text(&[
                "ip",
                "neigh",
                "show",
                "dev",
                "ferrocni.vx",
                "nud",
                "permanent",
            ]),
            text(&["bridge", "fdb", "show", "dev", "ferrocni.vx"])
                .into_iter()
                .filter(|l| l.contains(" dst "))
                .collect(),
        )
    }

    /// Every log of the lab, for failure messages.
    /// Asserts that every pod pings every other, and that TCP connects both ways between
    /// the first two.
    pub fn assert_pods_reach_each_other(&self, pods: &[Pod]) {
        for a in pods {
            for b in pods {
                if a.ip != b.ip {
                    assert!(a.ns.ping(&b.ip), "{} -> {}\n{}", a.ip, b.ip, self.logs());
                }
            }
        }
        assert!(pods[0].tcp_connects_to(&pods[1]));
        assert!(pods[1].tcp_connects_to(&pods[0]));
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            all.push_str(&format!("--- {}\n", path.display()));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in crate::dns::servers_with(&self.dir.path_str()) {
            crate::dns::kill(pid);
        }
        for node in &mut self.nodes {
            if let Some(mut agent) = node.agent.take() {
                let _ = agent.kill();
                let _ = agent.wait();
            }
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }
}
