//! The one door to the kernel's netlink: one request/response exchange for every family
//! ([`exchange`]) over a transport (the kernel's socket, or in tests a recording fake:
//! `fake`), and over it routing netlink for links ([`link`]) and the kinds of link ferrocni
//! creates ([`LinkBuilder`]), bridge ports and their VLANs (`port`), addresses and routes ([`addr`]),
//! neighbour and forwarding entries ([`neigh`]); and nf_tables batches for the firewall's
//! hot path ([`nftables`]).
//!
//! A thin synchronous layer over `netlink-packet-route` and `netlink-sys` rather than
//! `rtnetlink`: a plugin process lives a few milliseconds and makes a handful of requests,
//! so a tokio runtime's start-up and the extra allocations cost more than they save
//! (netavark found the same and went synchronous).

use netlink_packet_route::RouteNetlinkMessage;
use std::io;

use crate::netns::{Netns, NetnsError};
use cni::{Coded, ErrorCode};

pub mod addr;
pub mod exchange;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod kinds;
pub mod link;
pub mod neigh;
pub mod nftables;
mod port;

pub use addr::RouteSpec;
pub use exchange::{Exchange, Protocol, SocketOption, Transport};
pub use kinds::{Bridge, Ifb, Kind, LinkBuilder, MacVlan, Peer, Veth, Vxlan};
pub use link::{Link, MacAddr};
pub use neigh::{FdbEntry, Neighbour};

/// RT_SCOPE_LINK: a route whose destination (or gateway) is directly on the wire.
pub const SCOPE_LINK: u8 = 253;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket")]
    Socket(#[source] io::Error),
    #[error("cannot open a netlink socket inside the namespace")]
    Netns(#[from] NetnsError),
    #[error("netlink {op} failed{}", explained(kernel))]
    Request {
        op: &'static str,
        #[source]
        source: io::Error,
        /// The kernel's own words (extended ack), which name what it refused far better
        /// than the errno: "Nexthop has invalid gateway" beside "Network unreachable".
        kernel: Option<String>,
    },
    #[error("cannot add route {route}")]
    Route {
        route: String,
        #[source]
        source: Box<NetlinkError>,
    },
    #[error("netlink {op}: cannot decode the kernel's answer: {reason}")]
    Decode { op: &'static str, reason: String },
    #[error("link {0:?} not found")]
    LinkNotFound(String),
    #[error("this kernel does not support {0}")]
    KernelLacks(&'static str),
    #[error("{name:?} already exists and is not a {expected}")]
    WrongKind {
        name: String,
        expected: &'static str,
    },
}

impl Coded for NetlinkError {
    fn code(&self) -> ErrorCode {
        match self {
            NetlinkError::Netns(_) => ErrorCode::InvalidNetns,
            NetlinkError::KernelLacks(_) => ErrorCode::UnsupportedField,
            NetlinkError::Socket(_)
            | NetlinkError::Request { .. }
            | NetlinkError::Route { .. }
            | NetlinkError::Decode { .. }
            | NetlinkError::LinkNotFound(_)
            | NetlinkError::WrongKind { .. } => ErrorCode::Internal,
        }
    }
}

impl NetlinkError {
    /// The kernel's errno, for callers that treat e.g. ENODEV as "already gone".
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            NetlinkError::Route { source, .. } => source.errno(),
            _ => None,
        }
    }

    /// EEXIST: another plugin (or an earlier attempt) made it first.
    pub fn already_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

fn explained(kernel: &Option<String>) -> String {
    kernel
        .as_deref()
        .map(|message| format!(": {message}"))
        .unwrap_or_default()
}

/// A routing-netlink socket bound to the namespace it was opened in.
pub struct Netlink {
    exchange: Exchange,
}

impl Netlink {
    /// A socket in the calling thread's namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Netlink {
            exchange: Exchange::open(Protocol::Route)?,
        })
    }

    /// A socket inside `netns`, usable from the calling thread: one namespace switch there and
    /// back (see [`Netns::run`]), for any number of requests.
    pub fn open_in(netns: &Netns) -> Result<Self, NetlinkError> {
        netns.run(Netlink::open)?
    }

    /// Requests over `transport` instead of the kernel's socket (a test's fake kernel).
    pub fn over(transport: impl Transport + 'static) -> Self {
        Netlink {
            exchange: Exchange::over(transport),
        }
    }

    /// Sends one request and collects every message the kernel answers with.
    pub(crate) fn request(
        &mut self,
        op: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange.request(op, &message, flags)
    }

    pub(crate) fn set(&mut self, option: SocketOption) -> Result<(), NetlinkError> {
        self.exchange.set(option)
    }
}
