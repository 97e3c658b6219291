//! Queries for names that are not the network's go to the upstream resolvers: the ones
//! the config names, else the host's resolv.conf (read again when it changes). Over UDP a
//! forwarded query waits in a bounded table under a fresh random ID until its answer comes
//! back (relayed to the client) or its time runs out (the next upstream is tried; after
//! the last, the client gets SERVFAIL). Over TCP the connection's own thread asks.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::answer;
use crate::log;

/// How long one upstream has to answer before the next is asked.
const UPSTREAM_LIMIT: Duration = Duration::from_millis(1500);
/// Forwarded UDP queries waiting at once; beyond, a query gets SERVFAIL at once (a flood
/// of queries for outside names must not grow the table without bound).
const PENDING_MAX: usize = 4096;
/// How often expired queries are looked for.
const SWEEP: Duration = Duration::from_millis(100);
/// The largest UDP answer relayed (EDNS sizes upstream may use).
const RELAY_MAX: usize = 4096;
/// How often resolv.conf is looked at for changes.
const RESOLV_CHECK: Duration = Duration::from_secs(1);

struct Waiting {
    client: SocketAddr,
    reply_on: Arc<UdpSocket>,
    /// The client's ID, put back into the answer.
    id: u16,
    /// The query as sent upstream (with this table's ID).
    packet: Vec<u8>,
    /// The upstream asked last, and when it has had its time.
    upstream: usize,
    sent_to: SocketAddr,
    deadline: Instant,
}

struct Upstreams {
    configured: Vec<SocketAddr>,
    resolv_conf: PathBuf,
    from_host: Vec<SocketAddr>,
    seen: Option<SystemTime>,
    checked: Option<Instant>,
    /// The server's own addresses: never an upstream (a host whose resolv.conf names a
    /// gateway would loop).
    own: Vec<IpAddr>,
}

impl Upstreams {
    fn current(&mut self) -> Vec<SocketAddr> {
        if !self.configured.is_empty() {
            return self.configured.clone();
        }
        let due = self.checked.is_none_or(|at| at.elapsed() >= RESOLV_CHECK);
        if due {
            self.checked = Some(Instant::now());
            let modified = std::fs::metadata(&self.resolv_conf)
                .and_then(|m| m.modified())
                .ok();
            if modified != self.seen {
                self.seen = modified;
                let text = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
                self.from_host = ipam::resolv::parse(&text)
                    .nameservers
                    .iter()
                    .filter_map(|server| server.parse::<IpAddr>().ok())
                    .filter(|ip| !self.own.contains(ip))
                    .map(|ip| SocketAddr::new(ip, 53))
                    .collect();
            }
        }
        self.from_host.clone()
    }
}

pub struct Forwarder {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    waiting: Mutex<HashMap<u16, Waiting>>,
    upstreams: Mutex<Upstreams>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked holding the table left it whole: every change is one insert
    // or remove.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Forwarder {
    pub fn new(configured: Vec<SocketAddr>, own: Vec<IpAddr>) -> std::io::Result<Forwarder> {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        // A host without IPv6 forwards over IPv4 only.
        let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok();
        for socket in std::iter::once(&v4).chain(&v6) {
            socket.set_read_timeout(Some(SWEEP))?;
        }
        Ok(Forwarder {
            v4,
            v6,
            waiting: Mutex::new(HashMap::new()),
            upstreams: Mutex::new(Upstreams {
                configured,
                resolv_conf: PathBuf::from("/etc/resolv.conf"),
                from_host: Vec::new(),
                seen: None,
                checked: None,
                own,
            }),
        })
    }

    /// A new config's upstreams and listen addresses.
    pub fn configure(&self, configured: Vec<SocketAddr>, own: Vec<IpAddr>) {
        let mut upstreams = lock(&self.upstreams);
        upstreams.configured = configured;
        upstreams.own = own;
        upstreams.seen = None;
        upstreams.checked = None;
    }

    fn socket_for(&self, upstream: SocketAddr) -> Option<&UdpSocket> {
        match upstream {
            SocketAddr::V4(_) => Some(&self.v4),
            SocketAddr::V6(_) => self.v6.as_ref(),
        }
    }

    /// Sends `packet`, a query from `client` that came in on `reply_on`, to the first
    /// upstream. Returns an answer for the client when it cannot be forwarded at all.
    pub fn forward_udp(
        &self,
        packet: &[u8],
        client: SocketAddr,
        reply_on: &Arc<UdpSocket>,
    ) -> Option<Vec<u8>> {
        let upstreams = lock(&self.upstreams).current();
        let mut waiting = lock(&self.waiting);
        if upstreams.is_empty() || waiting.len() >= PENDING_MAX || packet.len() < 12 {
            return answer::server_failure(packet);
        }
        let id = loop {
            let candidate = u16::from_ne_bytes(kernel::random::bytes());
            if !waiting.contains_key(&candidate) {
                break candidate;
            }
        };
        let mut sent = packet.to_vec();
        let client_id = u16::from_be_bytes([packet[0], packet[1]]);
        sent[..2].copy_from_slice(&id.to_be_bytes());
        let mut entry = Waiting {
            client,
            reply_on: Arc::clone(reply_on),
            id: client_id,
            packet: sent,
            upstream: 0,
            sent_to: upstreams[0],
            deadline: Instant::now() + UPSTREAM_LIMIT,
        };
        if !self.send(&mut entry, &upstreams) {
            return answer::server_failure(packet);
        }
        waiting.insert(id, entry);
        None
    }

    /// Sends the entry's query to its upstream or, when that cannot be sent to, the next
    /// that can; false when none is left.
    fn send(&self, entry: &mut Waiting, upstreams: &[SocketAddr]) -> bool {
        while let Some(&upstream) = upstreams.get(entry.upstream) {
            let sent = self
                .socket_for(upstream)
                .is_some_and(|socket| socket.send_to(&entry.packet, upstream).is_ok());
            if sent {
                entry.sent_to = upstream;
                entry.deadline = Instant::now() + UPSTREAM_LIMIT;
                return true;
            }
            entry.upstream += 1;
        }
        false
    }

    /// Relays answers arriving on the IPv4 (`v6` false) or IPv6 socket to their clients,
    /// and retries or fails the queries whose time ran out. Runs for the server's life.
    pub fn relay(&self, v6: bool) {
        let Some(socket) = (if v6 { self.v6.as_ref() } else { Some(&self.v4) }) else {
            return;
        };
        let mut buffer = vec![0u8; RELAY_MAX];
        let mut swept = Instant::now();
        loop {
            match socket.recv_from(&mut buffer) {
                Ok((len, from)) if len >= 12 => self.deliver(&mut buffer[..len], from),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                // ICMP errors for earlier sends surface here: the query times out instead.
                Err(_) => {}
            }
            if swept.elapsed() >= SWEEP {
                swept = Instant::now();
                self.sweep();
            }
        }
    }

    fn deliver(&self, answer: &mut [u8], from: SocketAddr) {
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        let entry = {
            let mut waiting = lock(&self.waiting);
            // Only the upstream asked may answer: anyone else guessing the ID is ignored.
            match waiting.get(&id) {
                Some(entry) if same_endpoint(entry.sent_to, from) => waiting.remove(&id),
                _ => None,
            }
        };
        if let Some(entry) = entry {
            answer[..2].copy_from_slice(&entry.id.to_be_bytes());
            let _ = entry.reply_on.send_to(answer, entry.client);
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        let upstreams = lock(&self.upstreams).current();
        let mut failed = Vec::new();
        {
            let mut waiting = lock(&self.waiting);
            let expired: Vec<u16> = waiting
                .iter()
                .filter(|(_, entry)| entry.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                let Some(mut entry) = waiting.remove(&id) else {
                    continue;
                };
                entry.upstream += 1;
                if self.send(&mut entry, &upstreams) {
                    waiting.insert(id, entry);
                } else {
                    failed.push(entry);
                }
            }
        }
        for entry in failed {
            let mut packet = entry.packet;
            packet[..2].copy_from_slice(&entry.id.to_be_bytes());
            if let Some(reply) = answer::server_failure(&packet) {
                let _ = entry.reply_on.send_to(&reply, entry.client);
            }
        }
    }

    /// A query that came over TCP, asked over TCP of each upstream in turn; SERVFAIL when
    /// none answers.
    pub fn forward_tcp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let upstreams = lock(&self.upstreams).current();
        for upstream in upstreams {
            match ask_tcp(upstream, packet) {
                Ok(answer) => return Some(answer),
                Err(e) => log(&format!("upstream {upstream} over TCP: {e}")),
            }
        }
        answer::server_failure(packet)
    }
}

/// Whether an answer from `from` comes from `upstream` (an IPv4 upstream may be seen as an
/// IPv4-mapped IPv6 address).
fn same_endpoint(upstream: SocketAddr, from: SocketAddr) -> bool {
    let plain = |address: SocketAddr| match address.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    upstream.port() == from.port() && plain(upstream) == plain(from)
}

fn ask_tcp(upstream: SocketAddr, packet: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&upstream, UPSTREAM_LIMIT)?;
    stream.set_read_timeout(Some(UPSTREAM_LIMIT))?;
    stream.set_write_timeout(Some(UPSTREAM_LIMIT))?;
    let len = u16::try_from(packet.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(packet)?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_taken_only_from_the_upstream_asked() {
        let upstream: SocketAddr = "10.0.0.53:53".parse().expect("addr");
        assert!(same_endpoint(upstream, upstream));
        assert!(same_endpoint(
            upstream,
            "[::ffff:10.0.0.53]:53".parse().expect("addr")
        ));
        assert!(!same_endpoint(
            upstream,
            "10.0.0.54:53".parse().expect("addr")
        ));
        assert!(!same_endpoint(
            upstream,
            "10.0.0.53:5353".parse().expect("addr")
        ));
    }

    #[test]
    fn the_hosts_resolvers_are_read_without_the_servers_own_addresses() {
        let dir = std::env::temp_dir().join(format!("ferrocni-dns-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let resolv = dir.join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 10.88.0.1\nnameserver 192.0.2.53\nnameserver fd00::53\n",
        )
        .expect("write");
        let mut upstreams = Upstreams {
            configured: Vec::new(),
            resolv_conf: resolv,
            from_host: Vec::new(),
            seen: None,
            checked: None,
            own: vec!["10.88.0.1".parse().expect("ip")],
        };
        let found: Vec<String> = upstreams
            .current()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["192.0.2.53:53", "[fd00::53]:53"]);
        upstreams.configured = vec!["127.0.0.1:5353".parse().expect("addr")];
        assert_eq!(upstreams.current().len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
