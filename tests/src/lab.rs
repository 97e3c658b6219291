//! A multi-node overlay lab for tests: node namespaces on a private underlay bridge
//! (198.18.0.0/24, which exists only inside the lab's namespaces), etcd in the underlay
//! namespace on private ports, a `ferrocni-agent` per node, and pods attached by the `vxlan`
//! plugin run inside their node. Everything is killed and removed on drop.

use serde_json::{json, Value};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{address, our_bin_dir, Call, NetnsGuard, Outcome, TempDir};

pub const ETCD: &str = "http://198.18.0.254:23790";
pub const PREFIX: &str = "/ferrocni/network";
/// The lease TTL the lab's agents use: short, so departures are seen quickly, but long
/// enough that an etcd slowed by a loaded CI machine (ten labs at once) does not expire it.
pub const TTL: Duration = Duration::from_secs(5);

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
}

/// A pod: its namespace and its overlay address.
pub struct Pod {
    pub ns: NetnsGuard,
    pub ip: String,
    pub result: Value,
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on a child this lab started and has not reaped yet.
    unsafe {
        libc::kill(pid, signal);
    }
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
        let mut lab = Lab::empty(false);
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
        let dir = TempDir::new("lab");
        let cluster = json!({"network": "10.244.0.0/16", "subnetLen": 24, "vni": 42});
        std::fs::write(dir.path().join("cluster.json"), cluster.to_string()).expect("write");
        Lab {
            dir,
            etcd_data: TempDir::in_memory("etcd"),
            underlay,
            nodes: Vec::new(),
            etcd: None,
            static_mode,
        }
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
        let child = self
            .underlay
            .command("etcd")
            .args(["--name", "lab", "--data-dir", &data.display().to_string()])
            .args([
                "--listen-client-urls",
                ETCD,
                "--advertise-client-urls",
                ETCD,
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
        if let Some(mut etcd) = self.etcd.take() {
            signal(&etcd, libc::SIGTERM);
            let _ = etcd.wait();
        }
    }

    /// Stops etcd's process for `pause` without closing its sockets: connections stay up but
    /// nothing answers, the way a hung or partitioned server looks to a client.
    pub fn freeze_etcd(&self, pause: Duration) {
        let etcd = self.etcd.as_ref().expect("etcd runs");
        signal(etcd, libc::SIGSTOP);
        std::thread::sleep(pause);
        signal(etcd, libc::SIGCONT);
    }

    /// `etcdctl ARGS` against the lab's etcd; its stdout, or `None` when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> Option<String> {
        let output = self
            .underlay
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                ETCD,
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
        let i = self.nodes.len();
        let name = format!("n{}", i + 1);
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
        self.start_agent(i);
        i
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    pub fn node_file(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("vxlan.json")
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
        let node = &self.nodes[i];
        let agent = our_bin_dir().join("ferrocni-agent");
        let dir = self.node_dir(i);
        let mut command = node.ns.command(agent);
        command
            .args(["--node", &node.name, "--underlay-interface", "eth0"])
            .args(["--node-file", &dir.join("vxlan.json").display().to_string()])
            .args(["--lease-ttl", &TTL.as_secs().to_string(), "--resync", "2"])
            .args(["--log-level", "debug"]);
        if self.static_mode {
            command.args(["--config", &dir.join("static.json").display().to_string()]);
        } else {
            let cluster = self.dir.path().join("cluster.json");
            command
                .args(["--etcd-endpoints", ETCD])
                .args(["--config", &cluster.display().to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(self.log(&format!("{}.log", node.name)))
            .spawn()
            .expect("the agent starts");
        self.nodes[i].agent = Some(child);
    }

    /// Stops node `i`'s agent with `sig` and returns how it exited.
    pub fn stop_agent(&mut self, i: usize, sig: i32) -> ExitStatus {
        let mut agent = self.nodes[i].agent.take().expect("agent running");
        signal(&agent, sig);
        agent.wait().expect("agent reaped")
    }

    pub fn agent_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .agent
            .as_mut()
            .is_some_and(|a| matches!(a.try_wait(), Ok(None)))
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

    /// `ip -j ARGS` inside node `i`.
    pub fn ip_json(&self, i: usize, args: &[&str]) -> Value {
        self.nodes[i].ns.ip_json(args)
    }

    /// Node `i`'s overlay routes, as destination prefixes.
    pub fn overlay_routes(&self, i: usize) -> Vec<String> {
        let routes = self.ip_json(i, &["route", "show", "dev", "ferrocni.vx"]);
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
