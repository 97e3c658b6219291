//! Name discovery's numbers, side by side: our `dnsname` step and its server against
//! containers/dnsname (the reference's chain with dnsmasq) and aardvark-dns (netavark's
//! server), in one sandbox host namespace:
//! - the dnsname step's ADD and DEL (exec to exit), its first ADD (which starts the
//!   server), and its start-up (a VERSION exec);
//! - the time from ADD's return until the name resolves;
//! - queries per second and latency with 1,000 names, dnsperf in a client container;
//! - each server's RSS with 1,000 names;
//! - across hosts, in an overlay lab: ADD on node 2 until node 1's server answers.

use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrocni_tests::dns::{kill, query, servers_with, DnsRuntime};
use kernel::netns::Netns;

use super::{median, ms, p95, run_plugin};

const NETWORK: &str = "ferrocni-benchdns";
const DOMAIN: &str = "dns.podman";
/// Names registered before the servers are measured.
const NAMES: usize = 1000;
/// The reference's runtime directory (containers/dnsname's own, not configurable).
const REFERENCE_DIR: &str = "/run/containers/cni/dnsname";

/// One server under load.
pub struct Served {
    who: &'static str,
    qps: f64,
    /// Average latency at full load, and at a light load (2,000 queries per second), in ms.
    latency: f64,
    light_latency: f64,
    rss_kib: u64,
}

pub struct DnsBench {
    /// The dnsname step's ADD with the server running, ours and the reference's (ms).
    add: (Vec<f64>, Vec<f64>),
    del: (Vec<f64>, Vec<f64>),
    first_add: (f64, f64),
    version: (Vec<f64>, Vec<f64>),
    /// ADD's return until an A query is answered (ms).
    visible: (Vec<f64>, Vec<f64>),
    /// Names the first query after ADD's return did not find.
    missed: (usize, usize),
    served: Vec<Served>,
    /// ADD on one node until another node's server answers (ms).
    propagation: Vec<f64>,
    sizes: (u64, u64),
}

/// The bridge and addresses of the server a kind is measured on: `10.23<k>.0.0/16`.
fn subnet(k: u8) -> (String, IpAddr) {
    (format!("bdns{k}"), IpAddr::from([10, 231 + k, 0, 1]))
}

fn address(k: u8, i: usize) -> String {
    format!("10.{}.{}.{}", 231 + k, i / 250 + 1, i % 250 + 2)
}

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split(' '))
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args}");
}

/// A bridge with the kind's gateway, and a client container on it at `.255.200`.
fn wire(k: u8, client: &str) {
    let (bridge, gateway) = subnet(k);
    ip(&format!("link add {bridge} type bridge"));
    ip(&format!("addr add {gateway}/16 dev {bridge}"));
    ip(&format!("link set {bridge} up"));
    Netns::create(client).expect("client netns");
    ip(&format!(
        "link add c{bridge} type veth peer name eth0 netns {client}"
    ));
    ip(&format!("link set c{bridge} master {bridge} up"));
    let inside = |args: &str| ip(&format!("-n {client} {args}"));
    inside(&format!("addr add 10.{}.255.200/16 dev eth0", 231 + k));
    inside("link set eth0 up");
    inside("link set lo up");
}

struct Plugin<'a> {
    binary: PathBuf,
    cni_path: &'a Path,
    netns: String,
    k: u8,
    runtime_dir: Option<String>,
}

impl Plugin<'_> {
    fn config(&self, i: usize, previous: bool) -> Value {
        let (bridge, gateway) = subnet(self.k);
        let mut config = json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "dnsname",
            "domainName": DOMAIN, "capabilities": {"aliases": true}});
        if let Some(dir) = &self.runtime_dir {
            config["runtimeDir"] = json!(dir);
        }
        if previous {
            config["prevResult"] = json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": bridge}, {"name": "eth0", "sandbox": self.netns}],
                "ips": [{"interface": 1, "address": format!("{}/16", address(self.k, i)),
                         "gateway": gateway.to_string()}]});
        }
        config
    }

    /// `command` for name `c<i>`; wall milliseconds.
    fn run(&self, command: &str, i: usize) -> f64 {
        let env = [
            ("CNI_CONTAINERID", format!("benchdns{i}")),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", self.cni_path.display().to_string()),
            ("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAME=c{i}")),
        ];
        let config = self.config(i, command != "VERSION");
        let start = Instant::now();
        let (_, outcome) = run_plugin(&self.binary, command, &env, &config, None);
        let took = ms(start.elapsed());
        if let Err(e) = outcome {
            panic!("dnsname {command} c{i}: {e}");
        }
        took
    }

    /// ADD of `c<i>`, how long after its return the name resolves (polled at once and then
    /// every half millisecond, for at most 2 s), and whether the first query found it.
    fn add_visible(&self, i: usize) -> (f64, f64, bool) {
        let took = self.run("ADD", i);
        let returned = Instant::now();
        let (_, gateway) = subnet(self.k);
        let name = format!("c{i}.{DOMAIN}");
        let mut first = true;
        while returned.elapsed() < Duration::from_secs(2) {
            if let Some((0, answers, _)) = query(gateway, &name, Duration::from_millis(200)) {
                if answers > 0 {
                    return (took, ms(returned.elapsed()), first);
                }
            }
            first = false;
            std::thread::sleep(Duration::from_micros(500));
        }
        (took, 2000.0, false)
    }
}

/// dnsperf from `client` against `server` over `names` names for `seconds`: queries per
/// second and average latency (ms). `rate` bounds the queries per second.
fn dnsperf(
    client: &str,
    server: IpAddr,
    names: usize,
    seconds: u32,
    rate: Option<u32>,
) -> (f64, f64) {
    let file = std::env::temp_dir().join(format!("ferrocni-dnsperf-{}", std::process::id()));
    let queries: String = (0..names).map(|i| format!("c{i}.{DOMAIN} A\n")).collect();
    std::fs::write(&file, queries).expect("query file");
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            client,
            "dnsperf",
            "-s",
            &server.to_string(),
        ])
        .args([
            "-d",
            &file.display().to_string(),
            "-l",
            &seconds.to_string(),
        ])
        .args(["-c", "4", "-q", "100", "-t", "2"]);
    if let Some(rate) = rate {
        command.args(["-Q", &rate.to_string()]);
    }
    let output = command.output().expect("dnsperf runs");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&output.stdout);
    let number = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("dnsperf printed no {label:?}: {text}"))
    };
    let lost = number("Queries lost:");
    assert!(
        lost < number("Queries sent:") / 100.0,
        "dnsperf lost queries: {text}"
    );
    (
        number("Queries per second:"),
        number("Average Latency (s):") * 1000.0,
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn pid_in(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {file:?}"))
}

/// aardvark-dns 1.4 serving `names` names (and the client) of kind `k` from `dir`: its pid.
fn aardvark(k: u8, dir: &Path, names: usize) -> u32 {
    let (_, gateway) = subnet(k);
    let mut config = format!("{gateway}\n");
    config.push_str(&format!("{:064x} 10.{}.255.200  client\n", 1, 231 + k));
    for i in 0..names {
        config.push_str(&format!("{:064x} {}  c{i}\n", i + 2, address(k, i)));
    }
    std::fs::create_dir_all(dir).expect("aardvark dir");
    std::fs::write(dir.join(NETWORK), config).expect("aardvark config");
    let status = Command::new("/usr/lib/podman/aardvark-dns")
        .args(["--config", &dir.display().to_string(), "-p", "53", "run"])
        .status()
        .expect("aardvark-dns runs");
    assert!(status.success(), "aardvark-dns started");
    pid_in(&dir.join("aardvark.pid"))
}

pub fn run(quick: bool, ours: &Path, reference: &Path) -> DnsBench {
    let n = if quick { 20 } else { 100 };
    let seconds = if quick { 2 } else { 5 };
    let host = format!("fbdns{}", std::process::id());
    let sandbox = Netns::create(&host).expect("sandbox host");
    let runtime = DnsRuntime::default();
    let aardvark_dir = runtime.dir.path().join("aardvark");
    let clients: Vec<String> = (0..3).map(|k| format!("{host}c{k}")).collect();
    let bench = sandbox.run(|| {
        ip("link set lo up");
        for (k, client) in clients.iter().enumerate() {
            wire(k as u8, client);
        }
        let netns = |k: usize| format!("{}/{}", kernel::netns::NETNS_DIR, clients[k]);
        let ours = Plugin {
            binary: ours.join("dnsname"),
            cni_path: ours,
            netns: netns(0),
            k: 0,
            runtime_dir: Some(runtime.path_str()),
        };
        let theirs = Plugin {
            binary: reference.join("dnsname"),
            cni_path: reference,
            netns: netns(1),
            k: 1,
            runtime_dir: None,
        };
        let mut version = (Vec::new(), Vec::new());
        for _ in 0..n {
            version.0.push(ours.run("VERSION", 0));
            version.1.push(theirs.run("VERSION", 0));
        }
        let first_add = (ours.run("ADD", 0), theirs.run("ADD", 0));
        let (mut add, mut visible) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        let mut missed = (0, 0);
        for i in 1..NAMES {
            for (plugin, adds, seen, misses) in [
                (&ours, &mut add.0, &mut visible.0, &mut missed.0),
                (&theirs, &mut add.1, &mut visible.1, &mut missed.1),
            ] {
                if i % (NAMES / n) == 0 {
                    let (took, after, first) = plugin.add_visible(i);
                    adds.push(took);
                    seen.push(after);
                    *misses += usize::from(!first);
                } else {
                    adds.push(plugin.run("ADD", i));
                }
            }
        }
        let mut del = (Vec::new(), Vec::new());
        for j in 0..n {
            let i = NAMES + j;
            for (plugin, dels) in [(&ours, &mut del.0), (&theirs, &mut del.1)] {
                plugin.run("ADD", i);
                dels.push(plugin.run("DEL", i));
            }
        }
        let server_pid = *servers_with(&runtime.path_str())
            .first()
            .expect("our server");
        let dnsmasq_pid = pid_in(&Path::new(REFERENCE_DIR).join(NETWORK).join("pidfile"));
        let aardvark_pid = aardvark(2, &aardvark_dir, NAMES);
        let mut served = Vec::new();
        for (who, k, pid) in [
            ("ferrocni-dns", 0u8, server_pid),
            ("dnsmasq (containers/dnsname)", 1, dnsmasq_pid),
            ("aardvark-dns 1.4", 2, aardvark_pid),
        ] {
            let (_, gateway) = subnet(k);
            let client = &clients[usize::from(k)];
            let rss = rss_kib(pid);
            let (_, light_latency) = dnsperf(client, gateway, NAMES, seconds, Some(2000));
            let (qps, latency) = dnsperf(client, gateway, NAMES, seconds, None);
            served.push(Served {
                who,
                qps,
                latency,
                light_latency,
                rss_kib: rss,
            });
        }
        kill(aardvark_pid);
        for i in 0..NAMES {
            ours.run("DEL", i);
            theirs.run("DEL", i);
        }
        DnsBench {
            add,
            del,
            first_add,
            version,
            visible,
            missed,
            served,
            propagation: Vec::new(),
            sizes: (
                std::fs::metadata(ours.binary.as_path()).map_or(0, |m| m.len()),
                std::fs::metadata(theirs.binary.as_path()).map_or(0, |m| m.len()),
            ),
        }
    });
    for client in &clients {
        let _ = Netns::delete(client);
    }
    let _ = Netns::delete(&host);
    let mut bench = bench.expect("the DNS bench ran in its sandbox");
    bench.propagation = propagation(if quick { 5 } else { 20 });
    bench
}

/// ADD of a name on node 2 of an overlay lab until node 1's server answers for it.
fn propagation(count: usize) -> Vec<f64> {
    use ferrocni_tests::lab::Lab;
    let lab = Lab::new(2);
    let (client, _resolv) = lab.named_pod(0, "client");
    let (anchor, _anchor_resolv) = lab.named_pod(1, "anchor");
    let gateway: IpAddr = client.result["ips"][0]["gateway"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .expect("the pod's gateway");
    let node1 = Netns::open(lab.nodes[0].ns.path()).expect("node 1");
    let resolves = |fqdn: &str| matches!(query(gateway, fqdn, Duration::from_millis(100)), Some((0, answers, _)) if answers > 0);
    // Timed once both nodes' names are known to each other: the sessions are up.
    let settled = node1
        .run(|| {
            ferrocni_tests::lab::wait_for(Duration::from_secs(30), || {
                resolves("anchor.cluster.test")
            })
        })
        .expect("in node 1");
    assert!(
        settled.is_some(),
        "node 1 never learned node 2's names:\n{}",
        lab.logs()
    );
    let mut times = Vec::new();
    for j in 0..count {
        // A registration of its own for each round, on node 2 (the anchor's namespace and
        // prevResult, another container ID and name).
        let name = format!("p{j}");
        let start = Instant::now();
        ferrocni_tests::Call::binary(&ferrocni_tests::our_bin_dir().join("dnsname"), "ADD")
            .env(
                "CNI_PATH",
                &ferrocni_tests::our_bin_dir().display().to_string(),
            )
            .env("CNI_ARGS", &format!("K8S_POD_NAME={name}"))
            .attachment(&format!("{name}x"), &anchor.ns.path_str(), "eth0")
            .stdin(lab.dns_config(1, Some(&anchor.result)))
            .run_in(&lab.nodes[1].ns)
            .success();
        let fqdn = format!("{name}.cluster.test");
        let answered = node1
            .run(|| ferrocni_tests::lab::wait_for(Duration::from_secs(10), || resolves(&fqdn)))
            .expect("in node 1");
        assert!(
            answered.is_some(),
            "{fqdn} never resolved on node 1:\n{}",
            lab.logs()
        );
        times.push(ms(start.elapsed()));
    }
    times
}

impl DnsBench {
    /// The median of ADD and DEL of the dnsname step, theirs over ours.
    pub fn add_ratio(&self) -> f64 {
        median(&self.add.1) / median(&self.add.0).max(f64::MIN_POSITIVE)
    }

    /// Our server's QPS over the faster of the others'.
    pub fn qps_ratio(&self) -> f64 {
        let ours = self.served.first().map_or(0.0, |s| s.qps);
        let best = self
            .served
            .iter()
            .skip(1)
            .map(|s| s.qps)
            .fold(0.0, f64::max);
        ours / best.max(f64::MIN_POSITIVE)
    }

    pub fn slowest_propagation(&self) -> f64 {
        self.propagation.iter().copied().fold(0.0, f64::max)
    }

    pub fn report(&self) -> String {
        let row = |what: &str, ours: &[f64], theirs: &[f64]| {
            format!(
                "| {what} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}x |\n",
                median(ours),
                p95(ours),
                median(theirs),
                p95(theirs),
                median(theirs) / median(ours).max(f64::MIN_POSITIVE)
            )
        };
        let mut md = format!(
            "## Name discovery (dnsname)\n\n\
             The `dnsname` step alone, exec to exit, ours against containers/dnsname (which runs \
             dnsmasq), on bridges in one sandbox host; {NAMES} names registered one after the \
             other, so ADD is measured from 1 to {NAMES} names on the network, DEL at {NAMES}.\n\n\
             | | ours median (ms) | ours p95 | containers/dnsname median | p95 | theirs / ours |\n|---|---|---|---|---|---|\n"
        );
        md.push_str(&row("ADD (server running)", &self.add.0, &self.add.1));
        md.push_str(&row("DEL", &self.del.0, &self.del.1));
        md.push_str(&row(
            "start-up (VERSION exec)",
            &self.version.0,
            &self.version.1,
        ));
        md.push_str(&row(
            "ADD's return until the name resolves",
            &self.visible.0,
            &self.visible.1,
        ));
        md.push_str(&format!(
            "\nNames the first query after ADD's return did not find: ours {} of {}, \
             containers/dnsname {} of {} (dnsmasq rereads its hosts file on the SIGHUP the \
             plugin sends, after the plugin has returned; ours returns once the server has \
             the name).\n",
            self.missed.0,
            self.visible.0.len(),
            self.missed.1,
            self.visible.1.len()
        ));
        md.push_str(&format!(
            "\nThe first ADD, which starts the server: ours {:.1} ms, containers/dnsname {:.1} ms. \
             Binary: ours {:.2} MiB, containers/dnsname {:.2} MiB (ours links no DNS code: the \
             server is `ferrocni-dns`).\n\n",
            self.first_add.0,
            self.first_add.1,
            self.sizes.0 as f64 / 1048576.0,
            self.sizes.1 as f64 / 1048576.0
        ));
        md.push_str(&format!(
            "Servers with {NAMES} names, dnsperf (4 clients, 100 outstanding) in a container on \
             the network, A queries for the names, in turn:\n\n\
             | server | queries per second | latency at full load (ms) | latency at 2,000 q/s (ms) | RSS |\n|---|---|---|---|---|\n"
        ));
        for s in &self.served {
            md.push_str(&format!(
                "| {} | {:.0} | {:.3} | {:.3} | {} KiB |\n",
                s.who, s.qps, s.latency, s.light_latency, s.rss_kib
            ));
        }
        md.push_str(&format!(
            "\nAcross hosts (overlay lab, 2 nodes): ADD on node 2 until node 1's server answers: \
             median {:.0} ms, max {:.0} ms over {} names.\n",
            median(&self.propagation),
            self.slowest_propagation(),
            self.propagation.len()
        ));
        md
    }
}
