//! The sockets on a gateway address, port 53, and the loops that serve them: one thread
//! per UDP socket answering packet after packet; for TCP, a thread per connection, few of
//! them at once, each with a deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::answer::{self, Outcome};
use crate::{log, Shared};

pub const DNS_PORT: u16 = 53;
/// The largest UDP query read (EDNS clients offer up to 4096; anything longer is cut and
/// then fails to parse).
const UDP_READ: usize = 4096;
/// The most loops reading one UDP socket.
const UDP_LOOPS: usize = 4;
/// TCP connections served at once; more are closed at once.
const TCP_CONNECTIONS: usize = 32;
/// How long a TCP connection may stay, whatever it sends.
const TCP_LIFETIME: Duration = Duration::from_secs(10);
/// How long a TCP connection may be silent.
const TCP_IDLE: Duration = Duration::from_secs(3);
/// Queries answered on one TCP connection.
const TCP_QUERIES: usize = 64;
/// How long a restarted server waits for the one before it to let go of the port.
const BIND_WAIT: Duration = Duration::from_secs(2);

/// A socket of `kind` bound to `address` even before the address is up (IP_FREEBIND: an
/// IPv6 gateway may still be tentative), so binding never races the bridge.
fn bind(address: SocketAddr, kind: libc::c_int) -> std::io::Result<OwnedFd> {
    let family = match address {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and belongs to nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    let set = |level, option| {
        // SAFETY: an int option of the socket just made, read for the call's duration.
        let done = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    match address {
        SocketAddr::V4(_) => set(libc::SOL_IP, libc::IP_FREEBIND)?,
        SocketAddr::V6(_) => {
            set(libc::SOL_IPV6, libc::IPV6_FREEBIND)?;
            set(libc::SOL_IPV6, libc::IPV6_V6ONLY)?;
        }
    }
    if kind == libc::SOCK_STREAM {
        set(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    }
    let (storage, len) = sockaddr(address);
    let started = Instant::now();
    loop {
        // SAFETY: storage holds a sockaddr of `len` bytes for the call's duration.
        let bound =
            unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
        if bound == 0 {
            return Ok(owned);
        }
        let error = std::io::Error::last_os_error();
        // The server before this one closes its sockets as it exits, a moment after it let
        // go of its lock.
        if error.kind() != std::io::ErrorKind::AddrInUse || started.elapsed() > BIND_WAIT {
            return Err(error);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Binds UDP and TCP on `address`:53 and starts serving both.
pub fn serve(address: IpAddr, shared: &Arc<Shared>) -> std::io::Result<()> {
    let at = SocketAddr::new(address, DNS_PORT);
    let udp = Arc::new(UdpSocket::from(bind(at, libc::SOCK_DGRAM)?));
    let tcp_fd = bind(at, libc::SOCK_STREAM)?;
    // SAFETY: listen(2) on a bound stream socket this function owns.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&tcp_fd), 64) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let tcp = TcpListener::from(tcp_fd);
    // A loop per core on the one socket: the kernel hands each datagram to one waiting
    // reader, so a burst is answered in parallel.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..cores.min(UDP_LOOPS) {
        let (udp, shared) = (Arc::clone(&udp), Arc::clone(shared));
        spawn(&format!("udp {at}"), move || serve_udp(&udp, &shared))?;
    }
    let for_tcp = Arc::clone(shared);
    spawn(&format!("tcp {at}"), move || serve_tcp(&tcp, &for_tcp))?;
    Ok(())
}

pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(work)
        .map(drop)
}

fn serve_udp(socket: &Arc<UdpSocket>, shared: &Shared) {
    let mut buffer = vec![0u8; UDP_READ];
    loop {
        let (len, client) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log(&format!("udp: {e}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let packet = &buffer[..len];
        let outcome = answer::answer(&shared.table(), packet, false, shared.turn());
        let reply = match outcome {
            Outcome::Reply(reply) => Some(reply),
            Outcome::Forward => shared.forwarder.forward_udp(packet, client, socket),
            Outcome::Drop => None,
        };
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, client);
        }
    }
}

fn serve_tcp(listener: &TcpListener, shared: &Arc<Shared>) {
    static OPEN: AtomicUsize = AtomicUsize::new(0);
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log(&format!("tcp: {e}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if OPEN.fetch_add(1, Ordering::SeqCst) >= TCP_CONNECTIONS {
            OPEN.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let shared = Arc::clone(shared);
        let spawned = spawn("tcp connection", move || {
            serve_connection(stream, &shared);
            OPEN.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            OPEN.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let started = Instant::now();
    for _ in 0..TCP_QUERIES {
        let left = TCP_LIFETIME.saturating_sub(started.elapsed());
        if left.is_zero()
            || stream.set_read_timeout(Some(left.min(TCP_IDLE))).is_err()
            || stream.set_write_timeout(Some(left)).is_err()
        {
            return;
        }
        let mut prefix = [0u8; 2];
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if stream.read_exact(&mut packet).is_err() {
            return;
        }
        let outcome = answer::answer(&shared.table(), &packet, true, shared.turn());
        let reply = match outcome {
            Outcome::Reply(reply) => Some(reply),
            Outcome::Forward => shared.forwarder.forward_tcp(&packet),
            Outcome::Drop => None,
        };
        let Some(reply) = reply else {
            return;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_all(&len.to_be_bytes()).is_err() || stream.write_all(&reply).is_err() {
            return;
        }
    }
}
