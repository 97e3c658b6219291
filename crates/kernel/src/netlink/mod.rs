//! The one door to the kernel's routing netlink: links ([`link`]), bridge ports and VLANs,
//! addresses and routes ([`addr`]), neighbour and forwarding entries ([`neigh`]); and
//! nf_tables' netfilter netlink for the firewall's hot path ([`nftables`]).
//!
//! A thin synchronous layer over `netlink-packet-route` and `netlink-sys` rather than
//! `rtnetlink`: a plugin process lives a few milliseconds and makes a handful of requests,
//! so a tokio runtime's start-up and the extra allocations cost more than they save
//! (netavark measured the same and went synchronous). Requests carry sequence numbers,
//! errors come back as `io::Error`s with the kernel's errno, and a dump the kernel marks
//! as interrupted (`NLM_F_DUMP_INTR`, the reference's issue #1121) is retried.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator, NLA_TYPE_MASK,
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;

use crate::netns::{Netns, NetnsError};
use cni::{Coded, ErrorCode};

pub mod addr;
mod kinds;
pub mod link;
pub mod neigh;
pub mod nftables;

pub use addr::RouteSpec;
pub use kinds::VxlanSpec;
pub use link::{Link, MacAddr};
pub use neigh::{FdbEntry, Neighbour};

/// RT_SCOPE_LINK: a route whose destination (or gateway) is directly on the wire.
pub const SCOPE_LINK: u8 = 253;

/// A kernel that has not answered by then never will; fail instead of hanging the runtime.
const RECEIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn set_receive_timeout(socket: &Socket, timeout: std::time::Duration) -> Result<(), NetlinkError> {
    use std::os::fd::AsRawFd;
    let value = libc::timeval {
        tv_sec: timeout.as_secs().try_into().unwrap_or(10),
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads exactly size_of::<timeval>() bytes from `value`, which lives
    // across the call; the descriptor belongs to `socket`.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(NetlinkError::Socket(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A netlink socket of `protocol`, talking to the kernel, in the calling thread's namespace.
fn connect(protocol: isize) -> Result<Socket, NetlinkError> {
    let mut socket = Socket::new(protocol).map_err(NetlinkError::Socket)?;
    socket.bind_auto().map_err(NetlinkError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NetlinkError::Socket)?;
    // Extended acks make the kernel say which attribute it refused; best effort.
    let _ = socket.set_ext_ack(true);
    set_receive_timeout(&socket, RECEIVE_TIMEOUT)?;
    Ok(socket)
}

/// How often an interrupted dump is retried before giving up.
const DUMP_ATTEMPTS: usize = 5;

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

/// An error without the kernel's words: interrupted dumps, failed sends and receives.
fn bare(op: &'static str, source: io::Error) -> NetlinkError {
    NetlinkError::Request {
        op,
        source,
        kernel: None,
    }
}

/// The message of an extended ack (`NLMSGERR_ATTR_MSG`) in what follows an error's code:
/// the request echoed back (only its header when `NLM_F_CAPPED`), then attributes when
/// `NLM_F_ACK_TLVS`.
fn kernel_message(flags: u16, after_code: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    const HEADER: usize = 16;
    if flags & NLM_F_ACK_TLVS == 0 || after_code.len() < HEADER {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        HEADER
    } else {
        let length = u32::from_ne_bytes(after_code[..4].try_into().ok()?) as usize;
        (length + 3) & !3
    };
    NlasIterator::new(after_code.get(echoed..)?)
        .filter_map(Result::ok)
        .find(|nla: &NlaBuffer<&[u8]>| nla.kind() & NLA_TYPE_MASK == NLMSGERR_ATTR_MSG)
        .and_then(|nla| {
            let text = nla.value().split(|byte| *byte == 0).next()?;
            let text = String::from_utf8_lossy(text).trim().to_string();
            (!text.is_empty()).then_some(text)
        })
}

/// A routing-netlink socket bound to the namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    /// One receive buffer for the socket's life: allocating 64 KiB per answer costs an
    /// mmap and munmap each time under musl's allocator (15 of them in a bridge ADD).
    receive: Vec<u8>,
}

impl Netlink {
    /// A socket in the calling thread's namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Netlink {
            socket: connect(NETLINK_ROUTE)?,
            sequence: 0,
            // Large enough for any dump datagram the kernel sends (it sizes them well below).
            receive: Vec::with_capacity(64 * 1024),
        })
    }

    /// A socket inside `netns`, usable from the calling thread: one namespace switch there and
    /// back (see [`Netns::run`]), for any number of requests.
    pub fn open_in(netns: &Netns) -> Result<Self, NetlinkError> {
        netns.run(Netlink::open)?
    }

    /// Sends one request and collects every message the kernel answers with.
    pub(crate) fn request(
        &mut self,
        op: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let attempts = if dump { DUMP_ATTEMPTS } else { 1 };
        // Without an ACK a request that answers nothing would leave us waiting forever.
        let flags = if dump { flags } else { flags | NLM_F_ACK };
        let mut last_error = None;
        for _ in 0..attempts {
            match self.exchange(op, message.clone(), flags)? {
                Exchange::Complete(answers) => return Ok(answers),
                Exchange::Interrupted => {
                    last_error = Some(bare(op, io::Error::from_raw_os_error(libc::EINTR)))
                }
            }
        }
        Err(last_error.unwrap_or_else(|| bare(op, io::Error::from_raw_os_error(libc::EINTR))))
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
        let request_error = |source| bare(op, source);
        self.socket.send(&buffer, 0).map_err(request_error)?;

        let mut answers = Vec::new();
        let mut interrupted = false;
        let receive = &mut self.receive;
        loop {
            receive.clear();
            self.socket.recv(receive, 0).map_err(request_error)?;
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
                            return Err(NetlinkError::Request {
                                op,
                                source: io::Error::from_raw_os_error(-code.get()),
                                kernel: kernel_message(reply.header.flags, &error.header),
                            })
                        }
                    },
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An echoed request whose header says it is `length` bytes, then a MSG attribute.
    fn error_payload(length: u32, echoed: usize, message: &str) -> Vec<u8> {
        let mut payload = length.to_ne_bytes().to_vec();
        payload.resize(echoed, 0);
        let value = [message.as_bytes(), b"\0"].concat();
        let attribute_length = u16::try_from(4 + value.len()).expect("short message");
        payload.extend_from_slice(&attribute_length.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(&value);
        payload.resize(payload.len().next_multiple_of(4), 0);
        payload
    }

    #[test]
    fn the_kernels_message_is_found_after_a_capped_or_whole_echo() {
        let capped = error_payload(60, 16, "Nexthop has invalid gateway");
        assert_eq!(
            kernel_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, &capped).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        let whole = error_payload(22, 24, "mtu greater than device maximum");
        assert_eq!(
            kernel_message(NLM_F_ACK_TLVS, &whole).as_deref(),
            Some("mtu greater than device maximum")
        );
    }

    #[test]
    fn no_message_without_attributes_or_with_a_short_payload() {
        let capped = error_payload(60, 16, "ignored");
        assert_eq!(kernel_message(NLM_F_CAPPED, &capped), None);
        assert_eq!(kernel_message(NLM_F_ACK_TLVS, &[0; 8]), None);
        let beyond = error_payload(4000, 16, "unreachable");
        assert_eq!(kernel_message(NLM_F_ACK_TLVS, &beyond), None);
        assert_eq!(
            kernel_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, &[0; 16]),
            None
        );
    }
}
