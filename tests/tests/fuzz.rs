//! Hostile configs through the real binaries, and the fuzz seeds through the in-process
//! checks. libFuzzer (scripts/fuzz.sh) covers the library decoders with coverage guidance; the
//! plugins' own config types live in their binaries, so here every binary gets mutated
//! configs, a 10 MB config and a 100,000-deep one, and must answer each with a result or a
//! CNI error: never a panic, a signal, a hang, or a reservation left by a failed ADD.

use ferrocni_tests::{
    fuzz, our_bin_dir, require_root, reserved_ips, Call, NetnsGuard, Outcome, TempDir,
};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .flatten()
        .map(|entry| {
            let bytes = std::fs::read(entry.path()).expect("seed reads");
            (entry.path(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_seed_passes_the_fuzz_checks() {
    for (target, check) in [
        ("config", fuzz::config as fn(&[u8])),
        ("result", fuzz::result),
    ] {
        let files = seeds(target);
        assert!(files.len() > 50, "only {} {target} seeds", files.len());
        for (path, bytes) in files {
            if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                panic!("{target} seed {path:?} fails (scripts/fuzz.sh replays it)");
            }
        }
    }
}

/// The plugins, each with a config that gets far in the sandbox, to mutate from.
fn bases(store: &TempDir, previous: &Value) -> Vec<(&'static str, Value)> {
    let ipam = |subnet: &str| {
        json!({"type": "host-local", "ranges": [[{"subnet": subnet}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": store.path_str()})
    };
    let chained = |plugin: &str, keys: Value| {
        let mut config = json!({"type": plugin, "prevResult": previous});
        if let (Some(config), Some(keys)) = (config.as_object_mut(), keys.as_object()) {
            config.extend(keys.clone());
        }
        config
    };
    vec![
        (
            "bridge",
            json!({"type": "bridge", "bridge": "fzbr0", "isGateway": true, "ipMasq": true,
                   "hairpinMode": true, "mtu": 1400, "vlan": 0, "ipam": ipam("10.250.0.0/24")}),
        ),
        (
            "ptp",
            json!({"type": "ptp", "ipMasq": true, "mtu": 1400, "ipam": ipam("10.250.1.0/24")}),
        ),
        (
            "macvlan",
            json!({"type": "macvlan", "master": "fzm0", "mode": "bridge",
                   "ipam": ipam("10.250.2.0/24")}),
        ),
        (
            "host-device",
            json!({"type": "host-device", "device": "fzd0", "ipam": ipam("10.250.3.0/24")}),
        ),
        ("vxlan", json!({"type": "vxlan", "ipMasq": true})),
        ("loopback", json!({"type": "loopback"})),
        (
            "host-local",
            json!({"type": "x", "ipam": ipam("10.250.4.0/24")}),
        ),
        (
            "static",
            json!({"type": "x", "ipam": {"type": "static",
                   "addresses": [{"address": "10.250.5.2/24", "gateway": "10.250.5.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}],
                   "dns": {"nameservers": ["10.250.5.1"], "search": ["fuzz"]}}}),
        ),
        ("dhcp", json!({"type": "x", "ipam": {"type": "dhcp"}})),
        (
            "portmap",
            chained(
                "portmap",
                json!({"snat": true, "capabilities": {"portMappings": true},
                       "runtimeConfig": {"portMappings": [
                           {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                           {"hostPort": 8053, "containerPort": 53, "protocol": "udp",
                            "hostIP": "10.250.9.1"}]}}),
            ),
        ),
        (
            "tuning",
            chained(
                "tuning",
                json!({"sysctl": {"net.ipv4.conf.IFNAME.forwarding": "1"}, "mtu": 1300,
                       "promisc": true, "txQLen": 500}),
            ),
        ),
        (
            "bandwidth",
            chained(
                "bandwidth",
                json!({"ingressRate": 1_000_000, "ingressBurst": 100_000,
                       "egressRate": 1_000_000, "egressBurst": 100_000}),
            ),
        ),
        ("firewall", chained("firewall", json!({}))),
        (
            "dnsname",
            chained(
                "dnsname",
                json!({"domainName": "dns.podman", "capabilities": {"aliases": true},
                       "runtimeConfig": {"aliases": {"fuzznet": ["svc", "db"]}},
                       "upstreams": ["127.0.0.1:5399"]}),
            ),
        ),
    ]
}

/// xorshift64*: a run is reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

/// Values that have broken decoders: wrong types, limits of every integer width, hostile
/// strings, addresses of the wrong family, empty and nested containers.
fn interesting(rng: &mut Rng) -> Value {
    let choices = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(255),
        json!(256),
        json!(4095),
        json!(65535),
        json!(65536),
        json!(i32::MAX),
        json!(u32::MAX),
        json!(4_294_967_296_u64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e300),
        json!(-0.5),
        json!(""),
        json!("x".repeat(5000)),
        json!("a\"b;{c}#\nd"),
        json!("\u{0}"),
        json!("../../x"),
        json!("é✓"),
        json!("10.250.0.7/24"),
        json!("10.250.0.0/31"),
        json!("0.0.0.0/0"),
        json!("255.255.255.255"),
        json!("fd00::7/64"),
        json!("::ffff:10.250.0.7/120"),
        json!("::/0"),
        json!("fzbr0"),
        json!("eth0"),
        json!("lo"),
        json!([]),
        json!({}),
        json!([[]]),
        json!([{}]),
        json!({"type": "host-local"}),
    ];
    choices[rng.below(choices.len())].clone()
}

/// Every node of `value` as a JSON pointer.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One to four random edits anywhere in `config`, some of them taken from `donors`.
fn mutate(config: &mut Value, rng: &mut Rng, donors: &[Value]) {
    for _ in 0..=rng.below(4) {
        let mut nodes = Vec::new();
        pointers(config, String::new(), &mut nodes);
        let at = nodes[rng.below(nodes.len())].clone();
        let Some(node) = config.pointer_mut(&at) else {
            continue;
        };
        match rng.below(8) {
            0 | 1 => *node = interesting(rng),
            2 => {
                let donor = &donors[rng.below(donors.len())];
                let mut inside = Vec::new();
                pointers(donor, String::new(), &mut inside);
                let from = &inside[rng.below(inside.len())];
                *node = donor.pointer(from).cloned().unwrap_or_default();
            }
            3 => {
                if let Value::Object(map) = node {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    if let Some(key) = keys.get(rng.below(keys.len().max(1))) {
                        if let Some(value) = map.remove(key) {
                            // Go matches keys case-insensitively: an odd case must still work.
                            let renamed = match rng.below(3) {
                                0 => key.to_uppercase(),
                                1 => key.to_lowercase(),
                                _ => format!("{key}X"),
                            };
                            map.insert(renamed, value);
                        }
                    }
                }
            }
            4 => {
                if let Value::Array(items) = node {
                    if let Some(first) = items.first().cloned() {
                        let copies = [2, 64, 1000][rng.below(3)];
                        items.extend(std::iter::repeat_n(first, copies));
                    }
                }
            }
            5 => {
                let inner = node.take();
                *node = if rng.below(2) == 0 {
                    json!([inner])
                } else {
                    json!({"x": inner})
                };
            }
            6 => {
                if let Some(n) = node.as_i64() {
                    let tweaked = [n.wrapping_add(1), n.wrapping_sub(1), n.wrapping_neg()];
                    *node = json!(tweaked[rng.below(3)]);
                } else if let Some(text) = node.as_str() {
                    let tweaked = [
                        format!("{text}\u{0}"),
                        format!(" {text}"),
                        text.to_uppercase(),
                        text.repeat(30),
                        text.chars().rev().collect(),
                    ];
                    *node = json!(tweaked[rng.below(5)]);
                }
            }
            _ => {
                let key = last_segment(&at).replace("~1", "/").replace("~0", "~");
                if let Some(Value::Object(map)) = config.pointer_mut(&parent(&at)) {
                    map.remove(&key);
                }
            }
        }
    }
}

fn parent(pointer: &str) -> String {
    pointer
        .rsplit_once('/')
        .map(|(head, _)| head.to_string())
        .unwrap_or_default()
}

fn last_segment(pointer: &str) -> &str {
    pointer.rsplit_once('/').map_or("", |(_, tail)| tail)
}

/// Keeps a mutated config inside the sandbox: every path a plugin writes or reads is the
/// sandbox's (also when a mutation dropped the key, whose default is the machine's own),
/// and the IPAM plugin stays the one the base config named.
fn pin(config: &mut Value, store: &TempDir, ipam_type: Option<&str>) {
    let paths = [
        ("dataDir", json!(store.path_str())),
        ("stateDir", json!(store.path().join("state"))),
        ("subnetFile", json!(store.path().join("no-subnet.env"))),
        (
            "daemonSocketPath",
            json!(store.path().join("no-daemon.sock")),
        ),
        ("resolvConf", json!("")),
        ("runtimeDir", json!(store.path().join("dns"))),
        // A server the DEL with the same config stops.
        ("keepServer", json!(false)),
    ];
    let set = |map: &mut Map<String, Value>, key: &str, value: Value| {
        map.retain(|k, _| !k.eq_ignore_ascii_case(key));
        map.insert(key.to_string(), value);
    };
    if !config.is_object() {
        return;
    }
    let top = config.as_object_mut().expect("an object");
    for (key, value) in &paths {
        set(top, key, value.clone());
    }
    for (_, ipam) in top
        .iter_mut()
        .filter(|(k, _)| k.eq_ignore_ascii_case("ipam"))
    {
        if let Value::Object(ipam) = ipam {
            for (key, value) in &paths {
                set(ipam, key, value.clone());
            }
            if let Some(kind) = ipam_type {
                set(ipam, "type", json!(kind));
            }
        }
    }
}

/// A sandbox host with a container namespace and a store, for plugins run as a runtime
/// runs them.
struct Fixture {
    host: NetnsGuard,
    container: NetnsGuard,
    store: TempDir,
}

/// dnsname's servers outlive the plugin that started them (a failed DEL leaves one).
impl Drop for Fixture {
    fn drop(&mut self) {
        for pid in ferrocni_tests::dns::servers_with(&self.store.path_str()) {
            ferrocni_tests::dns::kill(pid);
        }
    }
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            host: NetnsGuard::new("ffh"),
            container: NetnsGuard::new("ffc"),
            store: TempDir::new("fuzz"),
        }
    }

    /// Runs `plugin`, killed after `limit`: `None` when it had to be.
    fn run(
        &self,
        plugin: &str,
        command: &str,
        (id, ifname): (&str, &str),
        stdin: &[u8],
        limit: Duration,
    ) -> Option<Outcome> {
        let bin = our_bin_dir();
        let mut child = self
            .host
            .command("/usr/bin/timeout")
            .args(["-s", "KILL", &limit.as_secs().to_string()])
            .arg(bin.join(plugin))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", self.container.path())
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("timeout runs the plugin");
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(stdin);
        }
        let output = child.wait_with_output().expect("the plugin ends");
        // timeout(1) answers 137 for a plugin it had to kill.
        (output.status.code() != Some(137)).then(|| Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// A result or a spec error, nothing else: no panic, no signal, no garbled stdout.
fn assert_answered(outcome: &Outcome, what: &str) {
    assert!(
        !outcome.stderr.contains("panicked"),
        "{what}: panicked: {}",
        outcome.stderr
    );
    match outcome.code {
        0 if outcome.stdout.trim().is_empty() => {}
        0 => {
            let printed = outcome.json();
            cni::CniResult::from_json(printed, cni::Version::V0_1_0)
                .unwrap_or_else(|e| panic!("{what}: printed a result that does not read: {e}"));
        }
        1 => {
            outcome.error();
        }
        code => panic!(
            "{what}: exit code {code}: {}\n{}",
            outcome.stdout, outcome.stderr
        ),
    }
}

/// The reservations under `store` that name `id`.
fn reservations_of(store: &Path, id: &str) -> Vec<String> {
    let networks = std::fs::read_dir(store).into_iter().flatten().flatten();
    networks
        .flat_map(|network| {
            let dir = network.path();
            reserved_ips(&dir).into_iter().filter(move |ip| {
                std::fs::read_to_string(dir.join(ip))
                    .is_ok_and(|text| text.lines().next() == Some(id))
            })
        })
        .collect()
}

#[test]
fn mutated_configs_get_a_result_or_a_cni_error_from_every_plugin() {
    require_root!();
    let seed = std::env::var("FERROCNI_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("FERROCNI_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let fixture = Fixture::new();
    let (host, container, store) = (&fixture.host, &fixture.container, &fixture.store);
    // A macvlan master and a device for host-device (this kernel has no dummy links).
    for name in ["fzm0", "fzd0"] {
        let peer = format!("{name}p");
        host.exec_ok(&[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ]);
        host.exec_ok(&["ip", "link", "set", name, "up"]);
    }
    // The chained plugins act on a real attachment.
    let base_conf = json!({"cniVersion": "1.0.0", "name": "fuzzbase", "type": "ptp",
        "ipam": {"type": "host-local", "dataDir": store.path_str(),
                 "ranges": [[{"subnet": "10.250.9.0/24"}]]}});
    let previous = Call::ours("ptp", "ADD", "base", container, &base_conf)
        .run_in(host)
        .success();
    let bases = bases(store, &previous);
    let donors: Vec<Value> = seeds("config")
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
        .chain(bases.iter().map(|(_, config)| config.clone()))
        .collect();

    let versions = ferrocni_tests::VERSIONS;
    let budget = Duration::from_secs(45);
    let started = Instant::now();
    let mut cases = 0;
    let mut succeeded: std::collections::BTreeMap<&str, usize> = Default::default();
    while started.elapsed() < budget {
        let (plugin, base) = &bases[cases % bases.len()];
        let mut config = base.clone();
        config["name"] = json!("fuzznet");
        config["cniVersion"] = json!(versions[rng.below(versions.len())]);
        mutate(&mut config, &mut rng, &donors);
        let ipam_type = base["ipam"]["type"].as_str();
        pin(&mut config, store, ipam_type);
        let id = format!("fz{cases}");
        let ifname = if base.get("prevResult").is_some() {
            "eth0"
        } else {
            "fz0"
        };
        let text = config.to_string();
        let what = |verb: &str| format!("{plugin} {verb} (seed {seed}, case {cases}): {text}");
        let limit = Duration::from_secs(30);
        let add = fixture
            .run(plugin, "ADD", (&id, ifname), text.as_bytes(), limit)
            .unwrap_or_else(|| panic!("{} hung", what("ADD")));
        assert_answered(&add, &what("ADD"));
        if add.code == 0 {
            *succeeded.entry(plugin).or_default() += 1;
        } else {
            let left = reservations_of(store.path(), &id);
            assert!(left.is_empty(), "{}: failed but kept {left:?}", what("ADD"));
        }
        let del = fixture
            .run(plugin, "DEL", (&id, ifname), text.as_bytes(), limit)
            .unwrap_or_else(|| panic!("{} hung", what("DEL")));
        assert_answered(&del, &what("DEL"));
        // What ADD could make, DEL with the same config can remove.
        assert!(
            add.code != 0 || del.code == 0,
            "{}: {}",
            what("DEL"),
            del.stdout
        );
        cases += 1;
    }
    eprintln!(
        "{cases} mutated configs in {:?}; ADDs that succeeded: {succeeded:?}",
        started.elapsed()
    );
    assert!(cases >= bases.len(), "only {cases} cases in {budget:?}");
    Call::ours("ptp", "DEL", "base", container, &base_conf)
        .run_in(host)
        .success();
}

/// Every plugin binary, with the sandbox's config for it.
fn every_plugin(store: &TempDir) -> Vec<(&'static str, Value)> {
    let previous = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.250.9.2/24"}]});
    bases(store, &previous)
}

#[test]
fn a_100000_deep_config_is_a_decode_error_for_every_plugin() {
    require_root!();
    let fixture = Fixture::new();
    for (plugin, base) in every_plugin(&fixture.store) {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let mut config = base.clone();
            config["cniVersion"] = json!("1.0.0");
            config["name"] = json!("deepnet");
            let shallow = config.to_string();
            let deep = format!(
                "{},\"deep\":{}0{}}}",
                &shallow[..shallow.len() - 1],
                open.repeat(100_000),
                close.repeat(100_000)
            );
            let limit = Duration::from_secs(30);
            let outcome = fixture
                .run(plugin, "ADD", ("deep", "fz0"), deep.as_bytes(), limit)
                .unwrap_or_else(|| panic!("{plugin} hung on a 100,000-deep config"));
            outcome.assert_error(6, "recursion limit exceeded");
        }
    }
}

#[test]
fn ten_megabyte_configs_are_read_in_bounded_time() {
    require_root!();
    let fixture = Fixture::new();
    let store = &fixture.store;
    let ten_mb = 10 * 1024 * 1024;
    // 370,000 disjoint ranges: every one checked against every other took hours.
    let ranges: Vec<Value> = (0..370_000u32)
        .map(|i| {
            let network = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4);
            json!({"subnet": format!("{network}/30")})
        })
        .collect();
    let huge_ranges = json!({"cniVersion": "1.0.0", "name": "hugenet", "type": "bridge",
        "bridge": "fzbr1",
        "ipam": {"type": "host-local", "dataDir": store.path_str(), "ranges": [ranges]}});
    // A padding key nobody reads, in a config each plugin otherwise accepts.
    let padded = |mut config: Value| {
        config["cniVersion"] = json!("1.0.0");
        config["name"] = json!("padnet");
        config["padding"] = json!("x".repeat(ten_mb));
        config["list"] = json!(vec![0; ten_mb / 2]);
        config
    };
    let mut cases = vec![("bridge", huge_ranges)];
    cases.extend(
        every_plugin(store)
            .into_iter()
            .filter(|(plugin, _)| ["ptp", "loopback", "static"].contains(plugin))
            .map(|(plugin, config)| (plugin, padded(config))),
    );
    for (plugin, config) in cases {
        let text = config.to_string();
        assert!(text.len() >= ten_mb, "{plugin}: only {} bytes", text.len());
        let started = Instant::now();
        let limit = Duration::from_secs(120);
        let add = fixture
            .run(plugin, "ADD", ("huge", "fz0"), text.as_bytes(), limit)
            .unwrap_or_else(|| panic!("{plugin} ADD of {} bytes hung", text.len()));
        let result = add.success();
        assert!(result["cniVersion"] == "1.0.0", "{plugin}: {result}");
        eprintln!(
            "{plugin}: ADD of {} bytes in {:?}",
            text.len(),
            started.elapsed()
        );
        let del = fixture
            .run(plugin, "DEL", ("huge", "fz0"), text.as_bytes(), limit)
            .unwrap_or_else(|| panic!("{plugin} DEL of {} bytes hung", text.len()));
        del.success();
    }
}
