//! DHCPv4 (RFC 2131) as the `dhcp` IPAM daemon speaks it: the message format, the options
//! a container needs, and a client socket inside a container's namespace. The daemon keeps
//! leases alive between exchanges; this module knows nothing of that.
//!
//! The client uses a UDP socket bound to the container interface and always sets the
//! broadcast flag while it has no address: a server's unicast reply to an address the
//! interface does not carry yet would be dropped by IP, and a packet socket with its own
//! IP/UDP parsing is not worth it for servers that all honour the flag.

use ipnetwork::{IpNetwork, Ipv4Network};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::cni::{CniResult, Dns, IpConfig, Route};
use crate::netns::{Netns, NetnsError};

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// op, htype, hlen, hops, xid, secs, flags, 4 addresses, chaddr, sname, file.
const FIXED_LEN: usize = 236;
const BROADCAST_FLAG: u16 = 0x8000;

pub mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const STATIC_ROUTES: u8 = 33;
    pub const REQUESTED_ADDRESS: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;

    /// What a container needs, asked for unless the config says `skipDefault`.
    pub const DEFAULT_REQUEST: [u8; 9] = [
        SUBNET_MASK,
        ROUTER,
        DNS_SERVERS,
        DOMAIN_NAME,
        STATIC_ROUTES,
        LEASE_TIME,
        RENEWAL_TIME,
        REBINDING_TIME,
        CLASSLESS_ROUTES,
    ];

    /// Option names the config may use instead of numbers (the reference's spelling).
    pub fn by_name(name: &str) -> Option<u8> {
        Some(match name {
            "subnet-mask" => SUBNET_MASK,
            "routers" | "router" => ROUTER,
            "domain-name-servers" | "dns" => DNS_SERVERS,
            "host-name" | "hostname" => HOST_NAME,
            "domain-name" => DOMAIN_NAME,
            "static-routes" => STATIC_ROUTES,
            "dhcp-lease-time" => LEASE_TIME,
            "dhcp-renewal-time" => RENEWAL_TIME,
            "dhcp-rebinding-time" => REBINDING_TIME,
            "dhcp-client-identifier" => CLIENT_ID,
            "classless-static-route" | "classless-route" => CLASSLESS_ROUTES,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl MessageType {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            _ => return None,
        })
    }
}

/// One DHCP message: the fixed header fields the client uses, and the options in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub reply: bool,
    pub xid: u32,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + 64);
        out.extend_from_slice(&[if self.reply { 2 } else { 1 }, 1, 6, 0]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        let flags = if self.broadcast { BROADCAST_FLAG } else { 0 };
        out.extend_from_slice(&flags.to_be_bytes());
        for address in [
            self.ciaddr,
            self.yiaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        ] {
            out.extend_from_slice(&address.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.resize(FIXED_LEN, 0);
        out.extend_from_slice(&MAGIC_COOKIE);
        for (code, value) in &self.options {
            // Longer values are split into consecutive options (RFC 3396).
            for chunk in value.chunks(255) {
                out.push(*code);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        out.push(option::END);
        // Some servers ignore requests shorter than a BOOTP message (300 bytes).
        if out.len() < 300 {
            out.resize(300, 0);
        }
        out
    }

    /// `None` for anything that is not a well-formed DHCP message.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() < FIXED_LEN + 4 || bytes[FIXED_LEN..FIXED_LEN + 4] != MAGIC_COOKIE {
            return None;
        }
        let address =
            |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
        let mut chaddr = [0; 6];
        chaddr.copy_from_slice(&bytes[28..34]);
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut rest = &bytes[FIXED_LEN + 4..];
        while let [code, tail @ ..] = rest {
            match *code {
                option::PAD => rest = tail,
                option::END => break,
                code => {
                    let (&len, tail) = tail.split_first()?;
                    let value = tail.get(..usize::from(len))?;
                    match options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, existing)) => existing.extend_from_slice(value),
                        None => options.push((code, value.to_vec())),
                    }
                    rest = &tail[usize::from(len)..];
                }
            }
        }
        Some(Message {
            reply: bytes[0] == 2,
            xid: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            broadcast: u16::from_be_bytes([bytes[10], bytes[11]]) & BROADCAST_FLAG != 0,
            ciaddr: address(12),
            yiaddr: address(16),
            chaddr,
            options,
        })
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, value)| value.as_slice())
    }

    pub fn message_type(&self) -> Option<MessageType> {
        MessageType::from_byte(*self.option(option::MESSAGE_TYPE)?.first()?)
    }

    fn address_option(&self, code: u8) -> Option<Ipv4Addr> {
        let value: [u8; 4] = self.option(code)?.get(..4)?.try_into().ok()?;
        Some(Ipv4Addr::from(value))
    }

    fn seconds_option(&self, code: u8) -> Option<Duration> {
        let value: [u8; 4] = self.option(code)?.get(..4)?.try_into().ok()?;
        Some(Duration::from_secs(u64::from(u32::from_be_bytes(value))))
    }
}

/// What the client sends besides the fixed fields: who it is and what it asks for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `containerID/network/ifname`, as the reference: the server's key for the lease.
    pub client_id: Vec<u8>,
    pub request: Vec<u8>,
    /// Options the config provides to the server (a host name, say).
    pub provide: Vec<(u8, Vec<u8>)>,
}

impl ClientOptions {
    fn message(&self, kind: MessageType, xid: u32, chaddr: [u8; 6]) -> Message {
        let mut client_id = vec![0];
        client_id.extend_from_slice(&self.client_id);
        let mut options = vec![
            (option::MESSAGE_TYPE, vec![kind as u8]),
            (option::CLIENT_ID, client_id),
        ];
        if !matches!(kind, MessageType::Release | MessageType::Decline) {
            options.push((option::PARAMETER_REQUEST_LIST, self.request.clone()));
            options.extend(self.provide.iter().cloned());
        }
        Message {
            reply: false,
            xid,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options,
        }
    }
}

/// A lease as the server granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Network,
    pub server: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Option 121 routes, else option 33 routes (classful host routes).
    pub routes: Vec<(Ipv4Network, Option<Ipv4Addr>)>,
    pub classless: bool,
    pub lease_time: Duration,
    pub renew_after: Duration,
    pub rebind_after: Duration,
}

impl Lease {
    fn from_ack(ack: &Message) -> Result<Lease, DhcpError> {
        let server = ack
            .address_option(option::SERVER_ID)
            .ok_or(DhcpError::Malformed("an ACK without a server identifier"))?;
        let mask = ack
            .address_option(option::SUBNET_MASK)
            .unwrap_or_else(|| classful_mask(ack.yiaddr));
        let prefix = u32::from(mask).leading_ones() as u8;
        let address = Ipv4Network::new(ack.yiaddr, prefix)
            .map_err(|_| DhcpError::Malformed("an ACK with an invalid subnet mask"))?;
        let lease_time = ack
            .seconds_option(option::LEASE_TIME)
            .unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        let renew_after = ack
            .seconds_option(option::RENEWAL_TIME)
            .unwrap_or(lease_time / 2);
        let rebind_after = ack
            .seconds_option(option::REBINDING_TIME)
            .unwrap_or(lease_time * 7 / 8);
        let dns = ack
            .option(option::DNS_SERVERS)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        let domain = ack
            .option(option::DOMAIN_NAME)
            .map(|d| {
                String::from_utf8_lossy(d)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .filter(|d| !d.is_empty());
        let classless = ack
            .option(option::CLASSLESS_ROUTES)
            .and_then(classless_routes)
            .filter(|routes| !routes.is_empty());
        let routes = match &classless {
            Some(routes) => routes.clone(),
            None => ack
                .option(option::STATIC_ROUTES)
                .unwrap_or_default()
                .chunks_exact(8)
                .filter_map(|c| {
                    let dst = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                    let mask = classful_mask(dst);
                    let prefix = u32::from(mask).leading_ones() as u8;
                    let network = Ipv4Network::new(dst & mask, prefix).ok()?;
                    Some((network, Some(Ipv4Addr::new(c[4], c[5], c[6], c[7]))))
                })
                .collect(),
        };
        Ok(Lease {
            address,
            server,
            router: ack.address_option(option::ROUTER),
            dns,
            domain,
            routes,
            classless: classless.is_some(),
            lease_time,
            renew_after,
            rebind_after,
        })
    }

    /// The CNI result the reference gives: the address with the router as gateway; option
    /// 121 routes alone when there are any (RFC 3442: they replace the router and option 33),
    /// else option 33 routes plus a default route via the router. Routes without a gateway
    /// are on-link. `priority` is the config's route metric.
    pub fn result(&self, priority: Option<u32>) -> CniResult {
        let mut routes: Vec<Route> = self
            .routes
            .iter()
            .map(|(dst, gw)| {
                let gw = gw.filter(|g| !g.is_unspecified()).map(IpAddr::V4);
                Route {
                    scope: gw.is_none().then_some(crate::netlink::SCOPE_LINK),
                    priority,
                    ..Route::via(IpNetwork::V4(*dst), gw)
                }
            })
            .collect();
        if let (Some(router), false) = (self.router, self.classless) {
            let default = Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is a prefix");
            routes.push(Route {
                priority,
                ..Route::via(IpNetwork::V4(default), Some(IpAddr::V4(router)))
            });
        }
        CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: IpNetwork::V4(self.address),
                gateway: self.router.map(IpAddr::V4),
            }],
            routes,
            dns: Dns {
                nameservers: self.dns.iter().map(ToString::to_string).collect(),
                domain: self.domain.clone().unwrap_or_default(),
                ..Dns::default()
            },
            ..CniResult::default()
        }
    }
}

/// RFC 3442: each route is a prefix length, the significant octets of the destination, and
/// a router (0.0.0.0 for on-link).
fn classless_routes(value: &[u8]) -> Option<Vec<(Ipv4Network, Option<Ipv4Addr>)>> {
    let mut routes = Vec::new();
    let mut rest = value;
    while let [prefix, tail @ ..] = rest {
        if *prefix > 32 {
            return None;
        }
        let significant = usize::from(prefix.div_ceil(8));
        let destination = tail.get(..significant)?;
        let router = tail.get(significant..significant + 4)?;
        let mut octets = [0u8; 4];
        octets[..significant].copy_from_slice(destination);
        let network = Ipv4Network::new(Ipv4Addr::from(octets), *prefix).ok()?;
        let router = Ipv4Addr::new(router[0], router[1], router[2], router[3]);
        routes.push((network, (!router.is_unspecified()).then_some(router)));
        rest = &tail[significant + 4..];
    }
    Some(routes)
}

fn classful_mask(address: Ipv4Addr) -> Ipv4Addr {
    match address.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("container interface {ifname}: {reason}")]
    Link { ifname: String, reason: String },
    #[error("DHCP socket on {ifname}")]
    Socket {
        ifname: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no DHCP {awaited} on {ifname} within {} s", .waited.as_secs_f32())]
    Timeout {
        awaited: &'static str,
        ifname: String,
        waited: Duration,
    },
    #[error("the DHCP server refused the request (NAK) for {ifname}")]
    Refused { ifname: String },
    #[error("malformed DHCP reply: {0}")]
    Malformed(&'static str),
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
    socket: UdpSocket,
    ifname: String,
    mac: [u8; 6],
    options: ClientOptions,
}

impl Client {
    /// A socket on `ifname` inside `netns`, bound to the client port on that interface only
    /// (several interfaces of one namespace may each run a client).
    pub fn open(
        netns: &Netns,
        ifname: &str,
        mac: [u8; 6],
        options: ClientOptions,
    ) -> Result<Client, DhcpError> {
        let socket_error = |source| DhcpError::Socket {
            ifname: ifname.to_string(),
            source,
        };
        let socket = netns.run(|| udp_socket_on(ifname))?.map_err(socket_error)?;
        Ok(Client {
            socket,
            ifname: ifname.to_string(),
            mac,
            options,
        })
    }

    /// DISCOVER, OFFER, REQUEST, ACK: a new lease, broadcast all the way.
    pub fn acquire(&self, patience: Patience) -> Result<Lease, DhcpError> {
        let deadline = Instant::now() + patience.total;
        loop {
            let xid = transaction_id();
            let discover = self.options.message(MessageType::Discover, xid, self.mac);
            let offer = self.exchange(
                &discover,
                broadcast(),
                &[MessageType::Offer],
                deadline,
                patience,
                "offer",
            )?;
            let server = offer
                .address_option(option::SERVER_ID)
                .ok_or(DhcpError::Malformed("an OFFER without a server identifier"))?;
            let mut request = self.options.message(MessageType::Request, xid, self.mac);
            request
                .options
                .push((option::REQUESTED_ADDRESS, offer.yiaddr.octets().to_vec()));
            request
                .options
                .push((option::SERVER_ID, server.octets().to_vec()));
            let answer = self.exchange(
                &request,
                broadcast(),
                &[MessageType::Ack, MessageType::Nak],
                deadline,
                patience,
                "acknowledgement",
            )?;
            // A NAK here means another client took the offer: start again.
            if answer.message_type() == Some(MessageType::Ack) {
                return Lease::from_ack(&answer);
            }
        }
    }

    /// REQUEST for `lease`'s address: unicast to its server while renewing, broadcast to
    /// any server once rebinding. A NAK means the address is lost.
    pub fn extend(
        &self,
        lease: &Lease,
        rebinding: bool,
        patience: Patience,
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
            &[MessageType::Ack, MessageType::Nak],
            deadline,
            patience,
            "acknowledgement",
        )?;
        if answer.message_type() == Some(MessageType::Nak) {
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
        release
            .options
            .push((option::SERVER_ID, lease.server.octets().to_vec()));
        self.send(&release, SocketAddrV4::new(lease.server, SERVER_PORT))
    }

    fn send(&self, message: &Message, to: SocketAddrV4) -> Result<(), DhcpError> {
        self.socket
            .send_to(&message.encode(), to)
            .map(drop)
            .map_err(|source| DhcpError::Socket {
                ifname: self.ifname.clone(),
                source,
            })
    }

    /// Sends `message` and resends it, each time twice as late, until a reply of one of
    /// `kinds` for its transaction arrives or `deadline` passes.
    fn exchange(
        &self,
        message: &Message,
        to: SocketAddrV4,
        kinds: &[MessageType],
        deadline: Instant,
        patience: Patience,
        awaited: &'static str,
    ) -> Result<Message, DhcpError> {
        let mut resend = patience.first_resend;
        let mut buffer = vec![0u8; 1500];
        loop {
            self.send(message, to)?;
            let resend_at = (Instant::now() + resend).min(deadline);
            loop {
                let now = Instant::now();
                if now >= resend_at {
                    break;
                }
                self.socket
                    .set_read_timeout(Some(resend_at - now))
                    .map_err(|source| DhcpError::Socket {
                        ifname: self.ifname.clone(),
                        source,
                    })?;
                let received = match self.socket.recv(&mut buffer) {
                    Ok(len) => len,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(source) => {
                        return Err(DhcpError::Socket {
                            ifname: self.ifname.clone(),
                            source,
                        })
                    }
                };
                let Some(reply) = Message::decode(&buffer[..received]) else {
                    continue;
                };
                let ours = reply.reply && reply.xid == message.xid && reply.chaddr == self.mac;
                if ours && reply.message_type().is_some_and(|t| kinds.contains(&t)) {
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
            resend = (resend * 2).min(patience.max_resend);
        }
    }
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
    let socket = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (level, name) in [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        (libc::SOL_SOCKET, libc::SO_BROADCAST),
    ] {
        set_option(&socket, level, name, &one.to_ne_bytes())?;
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
    // SAFETY: a valid sockaddr_in of its own size, on our socket.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::from_ref(&address).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
}

fn set_option(socket: &UdpSocket, level: i32, name: i32, value: &[u8]) -> std::io::Result<()> {
    // SAFETY: `value` is valid for its length, which is passed along.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(options: Vec<(u8, Vec<u8>)>) -> Message {
        Message {
            reply: true,
            xid: 7,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 9, 0, 23),
            chaddr: [2, 0, 0, 0, 0, 1],
            options,
        }
    }

    #[test]
    fn a_message_survives_encoding_and_decoding() {
        let message = ack(vec![
            (option::MESSAGE_TYPE, vec![MessageType::Ack as u8]),
            (option::SERVER_ID, vec![10, 9, 0, 1]),
        ]);
        let bytes = message.encode();
        assert!(bytes.len() >= 300);
        assert_eq!(Message::decode(&bytes), Some(message));
        assert_eq!(Message::decode(&bytes[..200]), None);
    }

    #[test]
    fn long_options_are_split_and_joined_again() {
        let long = vec![7u8; 300];
        let message = ack(vec![(option::HOST_NAME, long.clone())]);
        let decoded = Message::decode(&message.encode()).expect("decodes");
        assert_eq!(decoded.option(option::HOST_NAME), Some(long.as_slice()));
    }

    #[test]
    fn a_truncated_option_is_refused() {
        let mut bytes = ack(vec![]).encode();
        bytes.truncate(FIXED_LEN + 4);
        bytes.extend_from_slice(&[option::ROUTER, 4, 10, 9]);
        assert_eq!(Message::decode(&bytes), None);
    }

    #[test]
    fn a_lease_becomes_the_reference_result() {
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::SUBNET_MASK, vec![255, 255, 255, 0]),
            (option::ROUTER, vec![10, 9, 0, 1]),
            (option::DNS_SERVERS, vec![10, 9, 0, 53, 10, 9, 0, 54]),
            (option::DOMAIN_NAME, b"lab.example".to_vec()),
            (option::LEASE_TIME, 600u32.to_be_bytes().to_vec()),
        ]))
        .expect("lease");
        assert_eq!(lease.renew_after, Duration::from_secs(300));
        assert_eq!(lease.rebind_after, Duration::from_secs(525));
        let result = serde_json::to_value(lease.result(Some(5))).expect("json");
        assert_eq!(result["ips"][0]["address"], "10.9.0.23/24");
        assert_eq!(result["ips"][0]["gateway"], "10.9.0.1");
        assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(result["routes"][0]["gw"], "10.9.0.1");
        assert_eq!(result["routes"][0]["priority"], 5);
        assert_eq!(result["dns"]["nameservers"][1], "10.9.0.54");
        assert_eq!(result["dns"]["domain"], "lab.example");
    }

    #[test]
    fn classless_routes_replace_the_router_and_static_routes() {
        // 10.20.0.0/16 via 10.9.0.2, 192.168.7.0/24 on-link.
        let classless = vec![16, 10, 20, 10, 9, 0, 2, 24, 192, 168, 7, 0, 0, 0, 0];
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::ROUTER, vec![10, 9, 0, 1]),
            (option::STATIC_ROUTES, vec![10, 30, 0, 0, 10, 9, 0, 3]),
            (option::CLASSLESS_ROUTES, classless),
        ]))
        .expect("lease");
        let result = serde_json::to_value(lease.result(None)).expect("json");
        let routes = result["routes"].as_array().expect("routes");
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert_eq!(routes[0]["dst"], "10.20.0.0/16");
        assert_eq!(routes[0]["gw"], "10.9.0.2");
        assert_eq!(routes[1]["dst"], "192.168.7.0/24");
        assert!(routes[1]["gw"].is_null());
        assert_eq!(routes[1]["scope"], 253);
        // The address still takes a classful mask without option 1.
        assert_eq!(result["ips"][0]["address"], "10.9.0.23/8");
    }

    #[test]
    fn static_routes_come_with_a_default_route() {
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::ROUTER, vec![10, 9, 0, 1]),
            (option::STATIC_ROUTES, vec![172, 16, 4, 0, 10, 9, 0, 3]),
        ]))
        .expect("lease");
        let result = serde_json::to_value(lease.result(None)).expect("json");
        assert_eq!(result["routes"][0]["dst"], "172.16.0.0/16");
        assert_eq!(result["routes"][1]["dst"], "0.0.0.0/0");
    }
}
