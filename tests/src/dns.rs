//! Name discovery in tests: a runtime directory for the `dnsname` plugin whose servers are
//! killed when it goes (a server outlives the plugin that started it, and would keep a
//! test's namespace alive), the resolv.conf a runtime writes for a container, and lookups
//! with busybox's nslookup.

use serde_json::Value;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{NetnsGuard, TempDir};

/// The servers' binary.
pub const SERVER: &str = "ferrocni-dns";

/// A `runtimeDir` for the plugin's configs, in memory as `/run` is.
pub struct DnsRuntime {
    pub dir: TempDir,
}

impl Default for DnsRuntime {
    fn default() -> Self {
        DnsRuntime {
            dir: TempDir::in_memory("dns"),
        }
    }
}

/// The pids of the running `ferrocni-dns` processes whose command line holds `needle`.
pub fn servers_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let ours = words.first().is_some_and(|w| w.ends_with(SERVER));
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .is_ok_and(|stat| stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')));
        if ours && !zombie && words.iter().any(|w| w.contains(needle)) {
            found.push(pid);
        }
    }
    found
}

pub fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a pid read from /proc; at worst it names no process now.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

impl DnsRuntime {
    pub fn path_str(&self) -> String {
        self.dir.path_str()
    }

    pub fn network_dir(&self, network: &str) -> PathBuf {
        self.dir.path().join(network)
    }

    /// The servers running for `network`.
    pub fn servers(&self, network: &str) -> Vec<u32> {
        servers_with(&self.network_dir(network).display().to_string())
    }

    /// Kills `network`'s servers, as a crash or the OOM killer would.
    pub fn kill_servers(&self, network: &str) {
        for pid in self.servers(network) {
            kill(pid);
        }
        let gone =
            crate::lab::wait_for(Duration::from_secs(5), || self.servers(network).is_empty());
        assert!(gone.is_some(), "the server of {network} does not die");
    }
}

impl Drop for DnsRuntime {
    fn drop(&mut self) {
        for pid in servers_with(&self.path_str()) {
            kill(pid);
        }
    }
}

/// The resolv.conf a runtime writes for a container from its result's `dns`, where `ip
/// netns exec` puts it (`/etc/netns/<name>/resolv.conf`); removed on drop.
pub struct ResolvConf {
    dir: PathBuf,
}

impl ResolvConf {
    pub fn write(container: &NetnsGuard, result: &Value) -> ResolvConf {
        let dir = Path::new("/etc/netns").join(container.name());
        std::fs::create_dir_all(&dir).expect("/etc/netns/<name>");
        let mut text = String::new();
        for server in result["dns"]["nameservers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            text.push_str(&format!(
                "nameserver {}\n",
                server.as_str().unwrap_or_default()
            ));
        }
        let search: Vec<&str> = result["dns"]["search"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !search.is_empty() {
            text.push_str(&format!("search {}\n", search.join(" ")));
        }
        std::fs::write(dir.join("resolv.conf"), text).expect("resolv.conf");
        ResolvConf { dir }
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The addresses busybox's nslookup finds for `name` from `ns`, asking `server` (or the
/// namespace's resolv.conf when `None`); the error text when it finds none.
pub fn lookup(ns: &NetnsGuard, name: &str, server: Option<&str>) -> Result<Vec<String>, String> {
    let mut command = vec!["busybox", "nslookup", "-timeout=2", name];
    command.extend(server);
    let output = ns.exec(&command);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // The first "Address" names the server; the answers follow a "Name:" line.
    let answers: Vec<String> = text
        .split_once("\nName:")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("Address: "))
        .map(|address| address.trim().to_string())
        .collect();
    if answers.is_empty() {
        Err(text)
    } else {
        Ok(answers)
    }
}

/// What an A query for `name` sent from the calling thread's namespace to `server`:53 got:
/// its response code and how many answers, and how long it took; `None` when nothing came
/// within `limit`. A query by hand, so that tests and the bench see the wire itself.
pub fn query(server: IpAddr, name: &str, limit: Duration) -> Option<(u8, u16, Duration)> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let mut packet = id.to_be_bytes().to_vec();
    packet.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        packet.push(u8::try_from(label.len()).ok()?);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    let any: IpAddr = if server.is_ipv4() {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    };
    let socket = UdpSocket::bind((any, 0)).ok()?;
    socket.set_read_timeout(Some(limit)).ok()?;
    let started = Instant::now();
    socket.send_to(&packet, (server, 53)).ok()?;
    let mut answer = [0u8; 1500];
    loop {
        let (len, _) = socket.recv_from(&mut answer).ok()?;
        if len >= 12 && answer[..2] == packet[..2] {
            let count = u16::from_be_bytes([answer[6], answer[7]]);
            return Some((answer[3] & 0x0f, count, started.elapsed()));
        }
    }
}
