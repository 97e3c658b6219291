//! dhcp IPAM against a real DHCP server (busybox udhcpd) on a bridge in the sandbox host:
//! the daemon leases, renews and releases; failures leave no veth behind; the reference
//! plugin and daemon, on the same server, are the oracle for the result.

use ferrocni_tests::unit::{self, NotifySocket, Unit};
use ferrocni_tests::{
    address, require_reference, require_root, require_tools, unique, with_previous, Background,
    Call, Impl, NetnsGuard, TempDir,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The server's network: it exists only on the sandbox host's bridge.
const SERVER: &str = "10.77.0.1";
const POOL: (&str, &str) = ("10.77.0.50", "10.77.0.59");
/// Short enough that a renewal (at half of it) happens within a test.
const LEASE_SECONDS: u64 = 8;

/// A sandbox host whose uplink `up0` leads to a DHCP server's host (unless `silent`, a host
/// that never answers), and whose bridge has that uplink as a port.
struct DhcpLab {
    host: NetnsGuard,
    bridge: String,
    dir: TempDir,
    server: Option<Background>,
    _server_host: NetnsGuard,
}

/// The host's link to the server's network: a bridge port, or a macvlan master.
const UPLINK: &str = "up0";

impl DhcpLab {
    fn new(silent: bool) -> DhcpLab {
        let host = NetnsGuard::new("fdhh");
        let server_host = NetnsGuard::new("fdhs");
        host.exec_ok(&[
            "ip",
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "srv0",
            "netns",
            server_host.name(),
        ]);
        server_host.exec_ok(&["ip", "addr", "add", &format!("{SERVER}/24"), "dev", "srv0"]);
        server_host.exec_ok(&["ip", "link", "set", "srv0", "up"]);
        let bridge = unique("dbr");
        host.exec_ok(&["ip", "link", "add", &bridge, "type", "bridge"]);
        host.exec_ok(&["ip", "link", "set", UPLINK, "master", &bridge, "up"]);
        host.exec_ok(&["ip", "link", "set", &bridge, "up"]);
        let dir = TempDir::new("dhcp");
        let server = (!silent).then(|| {
            let conf = dir.path().join("udhcpd.conf");
            std::fs::write(
                &conf,
                format!(
                    "interface srv0\nstart {}\nend {}\nlease_file {}\npidfile {}\n\
                     min_lease 1\noption subnet 255.255.255.0\noption router {SERVER}\n\
                     option dns 10.77.0.53\noption domain lab.test\noption lease {LEASE_SECONDS}\n",
                    POOL.0,
                    POOL.1,
                    dir.path().join("leases").display(),
                    dir.path().join("udhcpd.pid").display(),
                ),
            )
            .expect("write udhcpd.conf");
            let server =
                server_host.spawn(&["busybox", "udhcpd", "-f", &conf.display().to_string()]);
            wait_for(Duration::from_secs(5), "udhcpd to listen", || {
                let listening = server_host.exec(&["ss", "-Hlun", "sport = :67"]);
                !String::from_utf8_lossy(&listening.stdout).trim().is_empty()
            });
            server
        });
        DhcpLab {
            host,
            bridge,
            dir,
            server,
            _server_host: server_host,
        }
    }

    /// Frees the uplink from the bridge, to be a macvlan master.
    fn unbridge_uplink(&self) {
        self.host
            .exec_ok(&["ip", "link", "set", UPLINK, "nomaster"]);
    }

    /// Starts `implementation`'s daemon in the sandbox host; its log is kept for the test.
    fn daemon(&self, implementation: Impl, extra: &[&str]) -> Daemon {
        let name = match implementation {
            Impl::Ours => "ours",
            Impl::Reference => "reference",
        };
        let socket = self.dir.path().join(format!("{name}.sock"));
        self.daemon_on(implementation, socket, extra, None)
    }

    /// Starts `implementation`'s daemon on `socket`, under `umask` when one is given.
    fn daemon_on(
        &self,
        implementation: Impl,
        socket: PathBuf,
        extra: &[&str],
        umask: Option<libc::mode_t>,
    ) -> Daemon {
        let stem = socket.file_stem().unwrap_or_default().to_string_lossy();
        let log = self.dir.path().join(format!("{stem}.log"));
        let mut command = self.host.command(implementation.plugin("dhcp"));
        command
            .arg("daemon")
            .arg("-socketpath")
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"));
        if let Some(mask) = umask {
            ferrocni_tests::with_umask(&mut command, mask);
        }
        let child = command.spawn().expect("the dhcp daemon starts");
        wait_for(Duration::from_secs(5), "the daemon's socket", || {
            socket.exists()
        });
        Daemon { child, socket, log }
    }

    /// A bridge config on this lab's bridge, leasing through the daemon at `socket`.
    fn conf(&self, version: &str, socket: &std::path::Path, extra_ipam: Value) -> Value {
        let ipam = ferrocni_tests::extended(
            json!({"type": "dhcp", "daemonSocketPath": socket}),
            &extra_ipam,
        );
        json!({"cniVersion": version, "name": "dhnet", "type": "bridge",
               "bridge": self.bridge, "ipam": ipam})
    }

    fn call(
        &self,
        implementation: Impl,
        command: &str,
        id: &str,
        container: &NetnsGuard,
        config: &Value,
    ) -> ferrocni_tests::Outcome {
        self.call_mixed(
            (implementation, implementation),
            command,
            id,
            container,
            config,
        )
    }

    /// The bridge plugin of `plugins.0` delegating to the dhcp plugin of `plugins.1`.
    fn call_mixed(
        &self,
        (bridge, dhcp): (Impl, Impl),
        command: &str,
        id: &str,
        container: &NetnsGuard,
        config: &Value,
    ) -> ferrocni_tests::Outcome {
        Call::new(bridge, "bridge", command)
            .env("CNI_PATH", &dhcp.dir().display().to_string())
            .attachment(id, &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&self.host)
    }

    /// Links the containers left in the host: the uplink and the bridge were there before.
    fn ports(&self) -> Vec<String> {
        self.host
            .links()
            .into_iter()
            .filter(|l| *l != self.bridge && l != UPLINK)
            .collect()
    }
}

struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log mentions `needle`.
    fn await_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the daemon did not log {needle:?} within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn in_pool(result: &Value) -> bool {
    let leased: std::net::Ipv4Addr = address(result, 0).parse().expect("IPv4");
    let (first, last): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (POOL.0.parse().expect("ip"), POOL.1.parse().expect("ip"));
    (first..=last).contains(&leased)
}

/// The dhcp plugin alone, as a main plugin runs it, for `command`.
fn ipam_call(lab: &DhcpLab, command: &str, id: &str, config: &Value) -> ferrocni_tests::Outcome {
    Call::new(Impl::Ours, "dhcp", command)
        .attachment(id, "/run/netns/unused", "eth0")
        .stdin(config)
        .run_in(&lab.host)
}

#[test]
fn leases_renews_and_releases_an_address() {
    require_root!();
    let lab = DhcpLab::new(false);
    let daemon = lab.daemon(Impl::Ours, &[]);
    let container = NetnsGuard::new("fdhc");
    let config = lab.conf("1.1.0", &daemon.socket, json!({"priority": 7}));

    let result = lab
        .call(Impl::Ours, "ADD", "dh1", &container, &config)
        .success();
    assert!(in_pool(&result), "{result}");
    assert_eq!(
        result["ips"][0]["address"]
            .as_str()
            .map(|a| a.ends_with("/24")),
        Some(true)
    );
    assert_eq!(result["ips"][0]["gateway"], SERVER);
    assert_eq!(
        result["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": SERVER, "priority": 7})
    );
    assert_eq!(result["dns"]["nameservers"], json!(["10.77.0.53"]));
    assert_eq!(result["dns"]["domain"], "lab.test");
    // The address and the default route are on the container's interface, and work.
    let routes = container.ip_json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], SERVER, "{routes}");
    assert_eq!(routes[0]["metric"], 7, "{routes}");
    assert!(container.ping(SERVER), "the server answers the container");

    lab.call(
        Impl::Ours,
        "CHECK",
        "dh1",
        &container,
        &with_previous(&config, &result),
    )
    .success();
    // A repeated ADD (a runtime's retry) gets the lease the daemon already holds.
    let again = Call::new(Impl::Ours, "dhcp", "ADD")
        .attachment("dh1", &container.path_str(), "eth0")
        .stdin(&config)
        .run_in(&lab.host)
        .success();
    assert_eq!(again["ips"][0]["address"], result["ips"][0]["address"]);

    // Past the first lease's end, on renewals alone.
    let added = Instant::now();
    daemon.await_log("renewed", Duration::from_secs(LEASE_SECONDS * 2));
    std::thread::sleep(
        (added + Duration::from_secs(LEASE_SECONDS + 1)).saturating_duration_since(Instant::now()),
    );
    assert!(container.link_is_up("eth0"));
    assert!(container.ping(SERVER), "still reachable after the renewals");

    lab.call(
        Impl::Ours,
        "DEL",
        "dh1",
        &container,
        &with_previous(&config, &result),
    )
    .success();
    daemon.await_log("released", Duration::from_secs(2));
    assert!(lab.ports().is_empty(), "ports left: {:?}", lab.ports());
    // The daemon no longer holds the lease, and a second DEL is fine.
    ipam_call(&lab, "CHECK", "dh1", &with_previous(&config, &result))
        .assert_error(999, "holds no lease");
    lab.call(Impl::Ours, "DEL", "dh1", &container, &config)
        .success();
}

#[test]
fn same_result_as_the_reference_on_the_same_server() {
    require_root!();
    require_reference!("dhcp");
    let lab = DhcpLab::new(false);
    let shape = |result: &Value| {
        json!({
            "gateway": result["ips"][0]["gateway"],
            "prefix": result["ips"][0]["address"].as_str().and_then(|a| a.split('/').nth(1)),
            "routes": result["routes"],
            "interfaces": result["interfaces"].as_array().map(Vec::len),
            "interface": result["ips"][0]["interface"],
        })
    };
    let mut reference = None;
    // The reference alone first, then ours alone, then our bridge with the reference's dhcp.
    for plugins in [
        (Impl::Reference, Impl::Reference),
        (Impl::Ours, Impl::Ours),
        (Impl::Ours, Impl::Reference),
    ] {
        let daemon = lab.daemon(plugins.1, &[]);
        let container = NetnsGuard::new("fdhc");
        let config = lab.conf("1.0.0", &daemon.socket, json!({}));
        let result = lab
            .call_mixed(plugins, "ADD", "dhref", &container, &config)
            .success();
        assert!(in_pool(&result), "{plugins:?}: {result}");
        assert!(container.ping(SERVER), "{plugins:?}: the server answers");
        let previous = with_previous(&config, &result);
        lab.call_mixed(plugins, "DEL", "dhref", &container, &previous)
            .success();
        assert!(lab.ports().is_empty(), "{plugins:?} left {:?}", lab.ports());
        let expected = reference.get_or_insert_with(|| shape(&result));
        assert_eq!(&shape(&result), expected, "{plugins:?}: {result}");
    }
}

#[test]
fn a_failed_add_leaves_no_port_and_errors_name_the_cause() {
    require_root!();
    let lab = DhcpLab::new(true);
    let container = NetnsGuard::new("fdhc");

    // No daemon at all: try again later, and the veth is taken back.
    let nowhere = lab.dir.path().join("nobody.sock");
    let config = lab.conf("1.0.0", &nowhere, json!({}));
    lab.call(Impl::Ours, "ADD", "dhf", &container, &config)
        .assert_error(11, "no dhcp daemon answers");
    assert!(lab.ports().is_empty(), "ports left: {:?}", lab.ports());
    // DEL with no daemon holds nothing to give back (the reference fails here).
    lab.call(Impl::Ours, "DEL", "dhf", &container, &config)
        .success();

    // A daemon, but no server answers within its timeout.
    let daemon = lab.daemon(Impl::Ours, &["-timeout", "2s"]);
    let config = lab.conf("1.0.0", &daemon.socket, json!({}));
    let started = Instant::now();
    lab.call(Impl::Ours, "ADD", "dhf", &container, &config)
        .assert_error(11, "no DHCP offer");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(lab.ports().is_empty(), "ports left: {:?}", lab.ports());
    assert!(container.links().is_empty(), "{:?}", container.links());

    // Bad options are refused before anything is made, naming the field.
    let bad = lab.conf(
        "1.0.0",
        &daemon.socket,
        json!({"request": [{"option": "frobnicate"}]}),
    );
    lab.call(Impl::Ours, "ADD", "dhf", &container, &bad)
        .assert_error(7, "ipam.request[0].option");
    let bad = lab.conf(
        "1.0.0",
        &daemon.socket,
        json!({"provide": [{"option": 12}]}),
    );
    ipam_call(&lab, "ADD", "dhf", &bad).assert_error(7, "ipam.provide[0]");
    assert!(lab.ports().is_empty(), "ports left: {:?}", lab.ports());
}

#[test]
fn gc_releases_the_leases_of_unlisted_attachments_and_status_needs_the_daemon() {
    require_root!();
    let lab = DhcpLab::new(false);
    let daemon = lab.daemon(Impl::Ours, &[]);
    let config = lab.conf("1.1.0", &daemon.socket, json!({}));
    let kept = NetnsGuard::new("fdhc");
    let gone = NetnsGuard::new("fdhc");
    let kept_result = lab
        .call(Impl::Ours, "ADD", "dhkeep", &kept, &config)
        .success();
    let gone_result = lab
        .call(Impl::Ours, "ADD", "dhgone", &gone, &config)
        .success();
    assert_ne!(address(&kept_result, 0), address(&gone_result, 0));

    Call::new(Impl::Ours, "dhcp", "STATUS")
        .stdin(&config)
        .run_in(&lab.host)
        .success();
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "dhkeep", "ifname": "eth0"}]);
    Call::new(Impl::Ours, "dhcp", "GC")
        .stdin(&gc)
        .run_in(&lab.host)
        .success();
    daemon.await_log("released", Duration::from_secs(2));
    ipam_call(
        &lab,
        "CHECK",
        "dhgone",
        &with_previous(&config, &gone_result),
    )
    .assert_error(999, "holds no lease");
    ipam_call(
        &lab,
        "CHECK",
        "dhkeep",
        &with_previous(&config, &kept_result),
    )
    .success();

    drop(daemon);
    Call::new(Impl::Ours, "dhcp", "STATUS")
        .stdin(&config)
        .run_in(&lab.host)
        .assert_error(50, "no dhcp daemon answers");
}

/// The reference's own example: macvlan containers on the LAN, leased by the LAN's server.
#[test]
fn macvlan_containers_lease_from_the_lan() {
    require_root!();
    let lab = DhcpLab::new(false);
    lab.unbridge_uplink();
    let daemon = lab.daemon(Impl::Ours, &[]);
    let container = NetnsGuard::new("fdhc");
    let config = json!({
        "cniVersion": "1.0.0", "name": "dhmv", "type": "macvlan", "master": UPLINK,
        "ipam": {"type": "dhcp", "daemonSocketPath": daemon.socket}
    });
    let call = |command: &str, config: &Value| {
        Call::new(Impl::Ours, "macvlan", command)
            .attachment("dhmv1", &container.path_str(), "eth0")
            .stdin(config)
            .run_in(&lab.host)
    };
    let result = call("ADD", &config).success();
    assert!(in_pool(&result), "{result}");
    assert!(
        container.ping(SERVER),
        "the server answers the macvlan container"
    );
    call("DEL", &with_previous(&config, &result)).success();
    daemon.await_log("released", Duration::from_secs(2));
    assert!(container.links().is_empty(), "{:?}", container.links());
}

/// A lease its server stops renewing must not stay in use: at expiry the daemon takes the
/// interface down, as the reference's does. DEL still cleans up.
#[test]
fn an_expired_lease_takes_the_interface_down() {
    require_root!();
    let mut lab = DhcpLab::new(false);
    let daemon = lab.daemon(Impl::Ours, &["-resendtimeout", "1s"]);
    let container = NetnsGuard::new("fdhc");
    let config = lab.conf("1.0.0", &daemon.socket, json!({}));
    let result = lab
        .call(Impl::Ours, "ADD", "dhexp", &container, &config)
        .success();
    assert!(container.link_is_up("eth0"));
    drop(lab.server.take());
    daemon.await_log("expired", Duration::from_secs(LEASE_SECONDS * 3));
    wait_for(Duration::from_secs(2), "the interface going down", || {
        !container.link_is_up("eth0")
    });
    lab.call(
        Impl::Ours,
        "DEL",
        "dhexp",
        &container,
        &with_previous(&config, &result),
    )
    .success();
    assert!(lab.ports().is_empty(), "ports left: {:?}", lab.ports());
}

/// systemd socket activation: the daemon serves the socket it is handed as descriptor 3, and
/// leaves the socket file, which is systemd's, when it stops.
#[test]
fn serves_a_socket_handed_over_by_systemd() {
    require_root!();
    let lab = DhcpLab::new(false);
    let socket = lab.dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let mut command = lab.host.command("sh");
    // `$$` is the shell's pid, which exec keeps for the daemon.
    command
        .args([
            "-c",
            "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" daemon -socketpath \"$1\"",
        ])
        .arg(Impl::Ours.plugin("dhcp"))
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(lab.dir.path().join("activated.log")).expect("log"));
    unit::pass_as_descriptor_3(&mut command, std::os::fd::AsRawFd::as_raw_fd(&listener));
    let child = command.spawn().expect("the daemon starts");
    let daemon = Daemon {
        child,
        socket: socket.clone(),
        log: lab.dir.path().join("activated.log"),
    };
    let container = NetnsGuard::new("fdhc");
    let config = lab.conf("1.0.0", &socket, json!({}));
    daemon.await_log("socket activation", Duration::from_secs(5));
    let result = lab
        .call(Impl::Ours, "ADD", "dhsd", &container, &config)
        .success();
    assert!(in_pool(&result), "{result}");
    lab.call(
        Impl::Ours,
        "DEL",
        "dhsd",
        &container,
        &with_previous(&config, &result),
    )
    .success();
    drop(listener);
    let mut daemon = daemon;
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let status = daemon.child.wait().expect("the daemon exits");
    assert!(status.success(), "{status}");
    assert!(socket.exists(), "the daemon removed systemd's socket file");
}

/// Hosts whose distribution turns on reverse-path filtering (systemd sets it to 2, RHEL to
/// one) hand it to new namespaces: a reply to an interface with no address yet fails that
/// check, so the client must not depend on the IP stack to receive it.
#[test]
fn leases_where_reverse_path_filtering_is_on() {
    require_root!();
    let lab = DhcpLab::new(false);
    let daemon = lab.daemon(Impl::Ours, &[]);
    let container = NetnsGuard::new("fdhc");
    for key in ["all", "default"] {
        let knob = format!("echo 1 > /proc/sys/net/ipv4/conf/{key}/rp_filter");
        container.exec_ok(&["sh", "-c", &knob]);
    }
    let config = lab.conf("1.0.0", &daemon.socket, json!({}));
    let result = lab
        .call(Impl::Ours, "ADD", "dhrp", &container, &config)
        .success();
    assert!(in_pool(&result), "{result}");
    lab.call(
        Impl::Ours,
        "DEL",
        "dhrp",
        &container,
        &with_previous(&config, &result),
    )
    .success();
}

/// A daemon that dies (a crash, an upgrade) leaves its leases recorded; the next one takes
/// them up: it still holds them for CHECK, renews them, and releases them on DEL.
#[test]
fn a_restarted_daemon_takes_up_the_leases_of_the_last() {
    require_root!();
    let lab = DhcpLab::new(false);
    let container = NetnsGuard::new("fdhc");
    let first = lab.daemon(Impl::Ours, &[]);
    let config = lab.conf("1.0.0", &first.socket, json!({}));
    let result = lab
        .call(Impl::Ours, "ADD", "dhrs", &container, &config)
        .success();
    drop(first);

    let second = lab.daemon(Impl::Ours, &[]);
    second.await_log("took up the lease", Duration::from_secs(2));
    ipam_call(&lab, "CHECK", "dhrs", &with_previous(&config, &result)).success();
    second.await_log("renewed", Duration::from_secs(LEASE_SECONDS * 2));
    assert!(container.ping(SERVER), "still reachable");
    lab.call(
        Impl::Ours,
        "DEL",
        "dhrs",
        &container,
        &with_previous(&config, &result),
    )
    .success();
    second.await_log("released", Duration::from_secs(2));
    let records = std::fs::read_dir(lab.dir.path().join("dhcp-leases"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(records, 0, "lease records left behind");

    // A record whose container is gone is dropped at start, not renewed.
    let gone = NetnsGuard::new("fdhc");
    let gone_result = lab
        .call(Impl::Ours, "ADD", "dhgn", &gone, &config)
        .success();
    drop(second);
    drop(gone);
    let third = lab.daemon(Impl::Ours, &[]);
    third.await_log("forgetting the lease", Duration::from_secs(2));
    ipam_call(&lab, "CHECK", "dhgn", &with_previous(&config, &gone_result))
        .assert_error(999, "holds no lease");
}

/// As cni-dhcp.socket and cni-dhcp.service start it: handed the socket, under the unit's
/// capability bounding set and no new privileges. It says READY=1 only once it has taken up
/// its predecessor's leases (a plugin's CHECK right after must find them) and dropped the
/// records of containers that are gone; and those capabilities are enough to lease.
#[test]
fn started_as_its_unit_it_is_ready_once_the_recorded_leases_are_taken_up() {
    require_root!();
    require_tools!("setpriv");
    let service = Unit::load("cni-dhcp.service");
    let socket_unit = Unit::load("cni-dhcp.socket");
    assert_eq!(
        socket_unit.get("Socket", "ListenStream"),
        Some("/run/cni/dhcp.sock")
    );
    let lab = DhcpLab::new(false);
    let kept = NetnsGuard::new("fdhc");
    let gone = NetnsGuard::new("fdhc");
    let records = lab.dir.path().join("dhcp-leases");
    let kept_result = {
        let first = lab.daemon(Impl::Ours, &[]);
        let config = lab.conf("1.0.0", &first.socket, json!({}));
        lab.call(Impl::Ours, "ADD", "dhug", &gone, &config)
            .success();
        lab.call(Impl::Ours, "ADD", "dhuk", &kept, &config)
            .success()
    };
    drop(gone);
    let recorded = |records: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(records)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(recorded(&records).len(), 2, "{:?}", recorded(&records));

    // The same socket path and lease directory as the first daemon's: the test's, in place
    // of /run/cni.
    let path = lab.dir.path().join("unit.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let notify = NotifySocket::default();
    let log = lab.dir.path().join("unit.log");
    let path_arg = path.display().to_string();
    let leasedir = records.display().to_string();
    let child = service
        .command(
            &lab.host,
            &["-socketpath", &path_arg, "-leasedir", &leasedir],
            &notify,
            Some(&listener),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("the daemon starts");
    let daemon = Daemon {
        child,
        socket: path.clone(),
        log,
    };
    let ready = notify.receive(Duration::from_secs(10));
    // Checked before anything else can happen: the state at the moment READY=1 came.
    let at_ready = recorded(&records);
    let log_at_ready = daemon.log();
    assert_eq!(
        ready.as_deref(),
        Some("READY=1"),
        "the daemon's log:\n{log_at_ready}"
    );
    assert!(
        log_at_ready.contains("took up the lease") && log_at_ready.contains("forgetting the lease"),
        "READY=1 came before the leases were taken up:\n{log_at_ready}"
    );
    assert_eq!(
        at_ready.len(),
        1,
        "the gone container's record: {at_ready:?}"
    );
    assert!(at_ready[0].contains("dhuk"), "{at_ready:?}");

    let config = lab.conf("1.0.0", &path, json!({}));
    ipam_call(&lab, "CHECK", "dhuk", &with_previous(&config, &kept_result)).success();
    // The unit's capabilities are enough for a new lease and its release.
    let fresh = NetnsGuard::new("fdhc");
    let result = lab
        .call(Impl::Ours, "ADD", "dhun", &fresh, &config)
        .success();
    assert!(in_pool(&result), "{result}");
    for (id, container, result) in [("dhun", &fresh, &result), ("dhuk", &kept, &kept_result)] {
        lab.call(
            Impl::Ours,
            "DEL",
            id,
            container,
            &with_previous(&config, result),
        )
        .success();
    }
    daemon.await_log("released", Duration::from_secs(2));
}

/// Started under `umask 000`, the daemon still keeps its socket's directory and its lease
/// records private (0700 directories, 0600 socket and records; the pid file 0644, as the
/// reference writes it): nobody
/// else can reach the socket or read and replace another container's lease.
#[test]
fn daemon_state_modes_do_not_depend_on_the_umask() {
    require_root!();
    let lab = DhcpLab::new(false);
    let root = lab.dir.path().join("run");
    let socket = root.join("cni").join("dhcp.sock");
    let pidfile = lab.dir.path().join("dhcp.pid");
    let pidfile_arg = pidfile.display().to_string();
    let daemon = lab.daemon_on(
        Impl::Ours,
        socket.clone(),
        &["-pidfile", &pidfile_arg],
        Some(0),
    );
    let container = NetnsGuard::new("fdhc");
    let config = lab.conf("1.0.0", &daemon.socket, json!({}));
    let result = lab
        .call(Impl::Ours, "ADD", "dhum", &container, &config)
        .success();
    assert_eq!(
        ferrocni_tests::modes_under(&root),
        [
            ("run".to_string(), 0o700),
            ("run/cni".to_string(), 0o700),
            ("run/cni/dhcp-leases".to_string(), 0o700),
            (
                "run/cni/dhcp-leases/dhnet:dhum:eth0.json".to_string(),
                0o600
            ),
            ("run/cni/dhcp.sock".to_string(), 0o600),
        ]
    );
    assert_eq!(
        ferrocni_tests::modes_under(&pidfile),
        [("dhcp.pid".to_string(), 0o644)]
    );
    lab.call(
        Impl::Ours,
        "DEL",
        "dhum",
        &container,
        &with_previous(&config, &result),
    )
    .success();
}

/// Only root and the daemon's own user may ask the daemon anything: a socket that others
/// can reach (a systemd socket unit's default mode is 0666) still serves nobody else.
#[test]
fn the_daemon_serves_only_root_and_its_own_user() {
    require_root!();
    let lab = DhcpLab::new(true);
    let daemon = lab.daemon(Impl::Ours, &[]);
    std::fs::set_permissions(
        &daemon.socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let config = lab.conf("1.1.0", &daemon.socket, json!({}));
    let status = |call: Call| call.stdin(&config).run_in(&lab.host);
    status(Call::new(Impl::Ours, "dhcp", "STATUS")).success();
    status(Call::new(Impl::Ours, "dhcp", "STATUS").as_user(65534)).assert_error(999, "uid 65534");
    daemon.await_log("uid 65534", Duration::from_secs(2));
}

/// A lease record is input like any other: one whose namespace is no path the plugin could
/// have sent (a relative one) is neither taken up nor forgotten, but set aside for an admin.
#[test]
fn a_restarted_daemon_refuses_a_record_no_plugin_sent() {
    require_root!();
    let lab = DhcpLab::new(false);
    let container = NetnsGuard::new("fdhc");
    let first = lab.daemon(Impl::Ours, &[]);
    let config = lab.conf("1.0.0", &first.socket, json!({}));
    let result = lab
        .call(Impl::Ours, "ADD", "dhbad", &container, &config)
        .success();
    drop(first);
    let record = lab.dir.path().join("dhcp-leases/dhnet:dhbad:eth0.json");
    let mut planted: Value =
        serde_json::from_slice(&std::fs::read(&record).expect("the record")).expect("JSON");
    planted["netns"] = json!("run/netns/elsewhere");
    std::fs::write(&record, planted.to_string()).expect("plant");

    let second = lab.daemon(Impl::Ours, &[]);
    second.await_log("is not an absolute path", Duration::from_secs(2));
    ipam_call(&lab, "CHECK", "dhbad", &with_previous(&config, &result))
        .assert_error(999, "holds no lease");
    assert!(
        !record.exists() && record.with_extension("json.rejected").exists(),
        "the refused record is set aside"
    );
}
