//! The one door to the kernel's routing netlink: links, addresses (routes come with the
//! plugins that need them).
//!
//! A thin synchronous layer over `netlink-packet-route` and `netlink-sys` rather than
//! `rtnetlink`: a plugin process lives a few milliseconds and makes a handful of requests,
//! so a tokio runtime's start-up and the extra allocations cost more than they save
//! (netavark measured the same and went synchronous). Requests carry sequence numbers,
//! errors come back as `io::Error`s with the kernel's errno, and a dump the kernel marks
//! as interrupted (`NLM_F_DUMP_INTR`, the reference's issue #1121) is retried.

use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;

use crate::netns::{Netns, NetnsError};

/// How often an interrupted dump is retried before giving up.
const DUMP_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket")]
    Socket(#[source] io::Error),
    #[error("cannot open a netlink socket inside the namespace")]
    Netns(#[from] NetnsError),
    #[error("netlink {op} failed")]
    Request {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink {op}: cannot decode the kernel's answer: {reason}")]
    Decode { op: &'static str, reason: String },
    #[error("link {0:?} not found")]
    LinkNotFound(String),
}

impl NetlinkError {
    /// The kernel's errno, for callers that treat e.g. ENODEV as "already gone".
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// What the plugins need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let name = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        Link {
            index: msg.header.index,
            name,
            up: msg.header.flags.contains(LinkFlags::Up),
        }
    }
}

/// A routing-netlink socket bound to the namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// A socket in the calling thread's namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Extended acks make the kernel say which attribute it refused; best effort.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// A socket inside `netns`, usable from the calling thread: one namespace switch, on a
    /// throwaway thread, for any number of requests.
    pub fn open_in(netns: &Netns) -> Result<Self, NetlinkError> {
        netns.run(Netlink::open)?
    }

    /// Sends one request and collects every message the kernel answers with.
    fn request(
        &mut self,
        op: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let attempts = if flags & NLM_F_DUMP == NLM_F_DUMP {
            DUMP_ATTEMPTS
        } else {
            1
        };
        let mut last_error = None;
        for _ in 0..attempts {
            match self.exchange(op, message.clone(), flags)? {
                Exchange::Complete(answers) => return Ok(answers),
                Exchange::Interrupted => {
                    last_error = Some(NetlinkError::Request {
                        op,
                        source: io::Error::from_raw_os_error(libc::EINTR),
                    })
                }
            }
        }
        Err(last_error.unwrap_or(NetlinkError::Request {
            op,
            source: io::Error::from_raw_os_error(libc::EINTR),
        }))
    }

    fn exchange(
        &mut self,
        op: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Exchange, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        let request_error = |source| NetlinkError::Request { op, source };
        self.socket.send(&buffer, 0).map_err(request_error)?;

        let mut answers = Vec::new();
        let mut interrupted = false;
        let mut receive = Vec::with_capacity(32 * 1024);
        loop {
            receive.clear();
            self.socket.recv(&mut receive, 0).map_err(request_error)?;
            let mut offset = 0;
            while offset < receive.len() {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&receive[offset..]).map_err(|e| {
                        NetlinkError::Decode {
                            op,
                            reason: e.to_string(),
                        }
                    })?;
                let length = reply.header.length as usize;
                if length == 0 {
                    return Err(NetlinkError::Decode {
                        op,
                        reason: "zero-length message".into(),
                    });
                }
                offset += (length + 3) & !3;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(finish(answers, interrupted)),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(finish(answers, interrupted)),
                        Some(code) => {
                            return Err(request_error(io::Error::from_raw_os_error(-code.get())))
                        }
                    },
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Looks a link up by name; `None` when there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request("get link", RouteNetlinkMessage::GetLink(message), NLM_F_ACK) {
            Ok(answers) => Ok(answers.iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`Netlink::link_by_name`], but a missing link is an error.
    pub fn link(&mut self, name: &str) -> Result<Link, NetlinkError> {
        self.link_by_name(name)?
            .ok_or_else(|| NetlinkError::LinkNotFound(name.to_string()))
    }

    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.change_mask = LinkFlags::Up;
        if up {
            message.header.flags = LinkFlags::Up;
        }
        self.request(
            "set link state",
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    /// The addresses on a link, each with its prefix length.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNetwork>, NetlinkError> {
        let answers = self.request(
            "list addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut addresses = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(message) = answer else {
                continue;
            };
            if message.header.index != index {
                continue;
            }
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = address {
                let network = IpNetwork::new(ip, message.header.prefix_len).map_err(|e| {
                    NetlinkError::Decode {
                        op: "list addresses",
                        reason: e.to_string(),
                    }
                })?;
                addresses.push(network);
            }
        }
        Ok(addresses)
    }
}

enum Exchange {
    Complete(Vec<RouteNetlinkMessage>),
    Interrupted,
}

fn finish(answers: Vec<RouteNetlinkMessage>, interrupted: bool) -> Exchange {
    if interrupted {
        Exchange::Interrupted
    } else {
        Exchange::Complete(answers)
    }
}
