//! A DHCP client endpoint on one interface of a container: the exchanges of RFC 2131
//! (acquire, renew or rebind, release) over sockets made inside the container's namespace.
//!
//! Messages leave by a UDP socket on the client port; replies are read from a packet socket
//! on the interface, below IP. A reply to an interface with no address yet fails the
//! kernel's reverse-path check wherever `rp_filter` is on (systemd's default is 2, RHEL's 1,
//! and new namespaces inherit it), so a UDP socket never sees it; the reference reads from a
//! packet socket for the same reason. The UDP socket stays bound all the while, so the
//! kernel answers no reply with "port unreachable".

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::lease::Lease;
use super::message::{option, Message, MessageType, CLIENT_PORT, SERVER_PORT};
use super::DhcpError;
use kernel::netns::Netns;
use kernel::socket::set_option;

/// How often a wait for a reply looks whether it was called off.
const CANCEL_CHECK_EVERY: Duration = Duration::from_millis(250);
/// However the flags are set, requests are never resent back to back.
const SHORTEST_RESEND: Duration = Duration::from_millis(100);
/// sll_pkttype of a packet this host sends: never a server's reply.
const PACKET_OUTGOING: u8 = 4;
const IPPROTO_UDP: u8 = 17;

/// What the client sends besides the fixed fields: who it is and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOptions {
    /// `containerID/network/ifname`, as the reference: the server's key for the lease.
    pub client_id: Vec<u8>,
    pub request: Vec<u8>,
    /// Options the config provides to the server (a host name, say). They replace the ones
    /// the client would send itself, a client identifier included.
    pub provide: Vec<(u8, Vec<u8>)>,
}

impl ClientOptions {
    fn message(&self, kind: MessageType, xid: u32, chaddr: [u8; 6]) -> Message {
        let mut client_id = vec![0];
        client_id.extend_from_slice(&self.client_id);
        let mut message = Message {
            reply: false,
            xid,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![
                (option::MESSAGE_TYPE, vec![kind as u8]),
                (option::CLIENT_ID, client_id),
            ],
        };
        // A RELEASE names the lease and nothing more (RFC 2131, table 5).
        let asks = !matches!(kind, MessageType::Release | MessageType::Decline);
        if asks {
            message.set_option(option::PARAMETER_REQUEST_LIST, self.request.clone());
        }
        for (code, value) in &self.provide {
            if asks || *code == option::CLIENT_ID {
                message.set_option(*code, value.clone());
            }
        }
        message
    }
}

/// How long to keep asking, and how far apart.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub total: Duration,
    pub first_resend: Duration,
    pub max_resend: Duration,
}

/// A client endpoint on one interface of a container. It holds no reference to the
/// namespace once made, so a daemon that keeps leases does not keep dead namespaces alive:
/// it opens one per exchange.
pub struct Client {
    sender: UdpSocket,
    receiver: OwnedFd,
    ifname: String,
    mac: [u8; 6],
    options: ClientOptions,
}

impl Client {
    /// Sockets on `ifname` inside `netns` (several interfaces of one namespace may each run
    /// a client).
    pub fn open(
        netns: &Netns,
        ifname: &str,
        mac: [u8; 6],
        options: ClientOptions,
    ) -> Result<Client, DhcpError> {
        let (sender, receiver) = netns
            .run(|| Ok::<_, std::io::Error>((udp_socket_on(ifname)?, packet_socket_on(ifname)?)))?
            .map_err(|source| DhcpError::Socket {
                ifname: ifname.to_string(),
                source,
            })?;
        Ok(Client {
            sender,
            receiver,
            ifname: ifname.to_string(),
            mac,
            options,
        })
    }

    /// DISCOVER, OFFER, REQUEST, ACK: a new lease, broadcast all the way.
    pub fn acquire(&self, patience: Patience) -> Result<Lease, DhcpError> {
        let deadline = Instant::now() + patience.total;
        let never = || false;
        loop {
            let xid = transaction_id();
            let discover = self.options.message(MessageType::Discover, xid, self.mac);
            // An OFFER that names no server cannot be requested: wait for another.
            let usable_offer = |m: &Message| {
                m.message_type() == Some(MessageType::Offer)
                    && m.address_option(option::SERVER_ID).is_some()
            };
            let offer = self.exchange(
                &discover,
                broadcast(),
                &usable_offer,
                deadline,
                patience,
                "offer",
                &never,
            )?;
            let server = offer
                .address_option(option::SERVER_ID)
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            let mut request = self.options.message(MessageType::Request, xid, self.mac);
            request.set_option(option::REQUESTED_ADDRESS, offer.yiaddr.octets().to_vec());
            request.set_option(option::SERVER_ID, server.octets().to_vec());
            let answer = self.exchange(
                &request,
                broadcast(),
                &acknowledges,
                deadline,
                patience,
                "acknowledgement",
                &never,
            )?;
            // A NAK here means another client took the offer: start again, a moment later
            // (a server that refuses everything must not be asked in a tight loop).
            if answer.message_type() == Some(MessageType::Ack) {
                return Lease::from_ack(&answer);
            }
            std::thread::sleep(
                patience
                    .first_resend
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    /// REQUEST for `lease`'s address: unicast to its server while renewing, broadcast to
    /// any server once rebinding. A NAK means the address is lost. `cancelled` calls it off
    /// between resends (a DEL must not race a renewal that would take the lease back).
    pub fn extend(
        &self,
        lease: &Lease,
        rebinding: bool,
        patience: Patience,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Lease, DhcpError> {
        let deadline = Instant::now() + patience.total;
        let mut request = self
            .options
            .message(MessageType::Request, transaction_id(), self.mac);
        request.ciaddr = lease.address.ip();
        request.broadcast = false;
        let to = if rebinding {
            broadcast()
        } else {
            SocketAddrV4::new(lease.server, SERVER_PORT)
        };
        let answer = self.exchange(
            &request,
            to,
            &acknowledges,
            deadline,
            patience,
            "acknowledgement",
            cancelled,
        )?;
        // An ACK for another address than the one in use extends nothing: a refusal.
        if answer.message_type() == Some(MessageType::Nak) || answer.yiaddr != lease.address.ip() {
            return Err(DhcpError::Refused {
                ifname: self.ifname.clone(),
            });
        }
        Lease::from_ack(&answer)
    }

    /// RELEASE: the server may hand the address out again. No answer comes.
    pub fn release(&self, lease: &Lease) -> Result<(), DhcpError> {
        let mut release = self
            .options
            .message(MessageType::Release, transaction_id(), self.mac);
        release.ciaddr = lease.address.ip();
        release.broadcast = false;
        release.set_option(option::SERVER_ID, lease.server.octets().to_vec());
        self.send(&release, SocketAddrV4::new(lease.server, SERVER_PORT))
    }

    fn socket_error(&self, source: std::io::Error) -> DhcpError {
        DhcpError::Socket {
            ifname: self.ifname.clone(),
            source,
        }
    }

    fn send(&self, message: &Message, to: SocketAddrV4) -> Result<(), DhcpError> {
        self.sender
            .send_to(&message.encode(), to)
            .map(drop)
            .map_err(|e| self.socket_error(e))
    }

    /// Sends `message` and resends it, each time twice as late, until a reply to it that
    /// `accept` takes arrives, `deadline` passes, or `cancelled` says so.
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &self,
        message: &Message,
        to: SocketAddrV4,
        accept: &dyn Fn(&Message) -> bool,
        deadline: Instant,
        patience: Patience,
        awaited: &'static str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Message, DhcpError> {
        let mut resend = patience.first_resend.max(SHORTEST_RESEND);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            self.send(message, to)?;
            let resend_at = (Instant::now() + resend).min(deadline);
            loop {
                if cancelled() {
                    return Err(DhcpError::Cancelled);
                }
                let now = Instant::now();
                if now >= resend_at {
                    break;
                }
                let wait = (resend_at - now).min(CANCEL_CHECK_EVERY);
                let Some(received) =
                    receive(&self.receiver, &mut buffer, wait).map_err(|e| self.socket_error(e))?
                else {
                    continue;
                };
                let Some(reply) = dhcp_payload(&buffer[..received]).and_then(Message::decode)
                else {
                    continue;
                };
                let ours = reply.reply && reply.xid == message.xid && reply.chaddr == self.mac;
                if ours && accept(&reply) {
                    return Ok(reply);
                }
            }
            if Instant::now() >= deadline {
                return Err(DhcpError::Timeout {
                    awaited,
                    ifname: self.ifname.clone(),
                    waited: patience.total,
                });
            }
            resend = (resend * 2).min(patience.max_resend).max(SHORTEST_RESEND);
        }
    }
}

fn acknowledges(message: &Message) -> bool {
    matches!(
        message.message_type(),
        Some(MessageType::Ack | MessageType::Nak)
    )
}

fn broadcast() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT)
}

/// Random enough to tell our transactions apart: the clock's nanoseconds and our pid.
fn transaction_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// The UDP payload of an IPv4 packet for the client port; `None` for anything else (the
/// packet socket sees every IPv4 packet of the interface, its own among them).
fn dhcp_payload(packet: &[u8]) -> Option<&[u8]> {
    let (&first, _) = packet.split_first()?;
    let header = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    // More-fragments flag or an offset: DHCP replies come whole.
    let fragmented = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x3fff != 0;
    if first >> 4 != 4 || header < 20 || fragmented || *packet.get(9)? != IPPROTO_UDP {
        return None;
    }
    let udp = packet.get(header..total.min(packet.len()))?;
    let port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let length = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if port != CLIENT_PORT || length < 8 {
        return None;
    }
    udp.get(8..length)
}

/// One packet into `buffer` if one arrives within `wait`; its length.
fn receive(socket: &OwnedFd, buffer: &mut [u8], wait: Duration) -> std::io::Result<Option<usize>> {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, and its count.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    if ready < 0 {
        let error = std::io::Error::last_os_error();
        return match error.kind() {
            std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(error),
        };
    }
    if ready == 0 {
        return Ok(None);
    }
    // SAFETY: sockaddr_ll is plain data, valid when zeroed.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buffer` is valid for writes of its length and `from` of `from_len` bytes,
    // which are passed along.
    let received = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            libc::MSG_DONTWAIT,
            std::ptr::from_mut(&mut from).cast(),
            &mut from_len,
        )
    };
    match usize::try_from(received) {
        // What the container itself sends is no reply, whatever it looks like.
        Ok(_) if from.sll_pkttype == PACKET_OUTGOING => Ok(None),
        Ok(length) => Ok(Some(length)),
        Err(_) => match std::io::Error::last_os_error() {
            e if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
            {
                Ok(None)
            }
            e => Err(e),
        },
    }
}

/// A packet socket of the calling thread's namespace that receives the IPv4 packets of
/// `ifname`, without their link-layer header.
fn packet_socket_on(ifname: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Protocol 0 receives nothing until the bind below, so no packet of another interface
    // is queued before the filter is in place.
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we own from here on.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    attach_client_port_filter(&socket)?;
    let protocol = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: sockaddr_ll is plain data, valid when zeroed.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = index as i32;
    bind(&socket, &address)?;
    Ok(socket)
}

/// Lets only unfragmented UDP to the client port through to `socket` (the kernel copies
/// every other packet of a busy container to no purpose, and could fill the buffer before
/// the reply comes). Offsets count from the IPv4 header, as a SOCK_DGRAM packet socket
/// sees it.
fn attach_client_port_filter(socket: &OwnedFd) -> std::io::Result<()> {
    const LD_B_ABS: u16 = 0x30;
    const LD_H_ABS: u16 = 0x28;
    const LD_H_IND: u16 = 0x48;
    const LDX_B_MSH: u16 = 0xb1;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        op(LD_B_ABS, 0, 0, 9),                   // the protocol
        op(JEQ_K, 0, 6, u32::from(IPPROTO_UDP)), // UDP, else drop
        op(LD_H_ABS, 0, 0, 6),                   // flags and fragment offset
        op(JSET_K, 4, 0, 0x1fff),                // a later fragment: drop
        op(LDX_B_MSH, 0, 0, 0),                  // X = the IPv4 header's length
        op(LD_H_IND, 0, 0, 2),                   // the UDP destination port
        op(JEQ_K, 0, 1, u32::from(CLIENT_PORT)), // the client port, else drop
        op(RET_K, 0, 0, 0x0004_0000),            // keep the whole packet
        op(RET_K, 0, 0, 0),                      // drop
    ];
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // `filter` points at `program`, which outlives the call; the kernel copies it.
    set_option(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &filter)
}

/// A UDP socket of the calling thread's namespace on `ifname`'s client port, allowed to
/// broadcast; several may share the port, one per interface.
fn udp_socket_on(ifname: &str) -> std::io::Result<UdpSocket> {
    // std binds before options can be set, and SO_REUSEADDR must come first: make the
    // socket by hand, then hand it to std.
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we own from here on.
    let socket = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (level, name) in [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        (libc::SOL_SOCKET, libc::SO_BROADCAST),
    ] {
        set_option(&socket, level, name, &one)?;
    }
    set_option(
        &socket,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        ifname.as_bytes(),
    )?;
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: CLIENT_PORT.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    bind(&socket, &address)?;
    Ok(socket)
}

/// bind(2) to `address`, a sockaddr of some family (`sockaddr_in`, `sockaddr_ll`).
fn bind<A>(socket: &impl AsRawFd, address: &A) -> std::io::Result<()> {
    // SAFETY: `address` is a whole sockaddr of its family, and its size is passed along.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::from_ref(address).cast(),
            std::mem::size_of::<A>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/UDP packet from the server port to `port` carrying `payload`.
    fn packet(port: u16, payload: &[u8], fragment: u16) -> Vec<u8> {
        let total = (28 + payload.len()) as u16;
        let mut bytes = vec![0x45, 0];
        bytes.extend_from_slice(&total.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&fragment.to_be_bytes());
        bytes.extend_from_slice(&[64, IPPROTO_UDP, 0, 0, 10, 9, 0, 1, 255, 255, 255, 255]);
        bytes.extend_from_slice(&SERVER_PORT.to_be_bytes());
        bytes.extend_from_slice(&port.to_be_bytes());
        bytes.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn only_whole_udp_packets_to_the_client_port_are_read() {
        assert_eq!(dhcp_payload(&packet(68, b"reply", 0)), Some(&b"reply"[..]));
        assert_eq!(dhcp_payload(&packet(67, b"request", 0)), None);
        assert_eq!(dhcp_payload(&packet(68, b"part", 0x2000)), None);
        let mut tcp = packet(68, b"x", 0);
        tcp[9] = 6;
        assert_eq!(dhcp_payload(&tcp), None);
        // Ethernet padding after the IP packet is not payload.
        let mut padded = packet(68, b"reply", 0);
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(dhcp_payload(&padded), Some(&b"reply"[..]));
        assert_eq!(dhcp_payload(&packet(68, b"reply", 0)[..30]), None);
    }

    #[test]
    fn provided_options_replace_the_clients_own() {
        let options = ClientOptions {
            client_id: b"c1/net/eth0".to_vec(),
            request: vec![option::SUBNET_MASK],
            provide: vec![
                (option::CLIENT_ID, b"mine".to_vec()),
                (option::HOST_NAME, b"web".to_vec()),
            ],
        };
        let discover = options.message(MessageType::Discover, 1, [2, 0, 0, 0, 0, 1]);
        let ids = discover
            .options
            .iter()
            .filter(|(c, _)| *c == option::CLIENT_ID);
        assert_eq!(ids.count(), 1);
        assert_eq!(discover.option(option::CLIENT_ID), Some(&b"mine"[..]));
        assert_eq!(discover.option(option::HOST_NAME), Some(&b"web"[..]));
        let release = options.message(MessageType::Release, 1, [2, 0, 0, 0, 0, 1]);
        assert_eq!(release.option(option::CLIENT_ID), Some(&b"mine"[..]));
        assert_eq!(release.option(option::HOST_NAME), None);
        assert_eq!(release.option(option::PARAMETER_REQUEST_LIST), None);
    }
}
