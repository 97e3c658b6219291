//! DHCPv4 (RFC 2131) as the `dhcp` IPAM daemon speaks it: the message format and options
//! (`message`), a lease, its CNI result and its renewal schedule (`lease`), and a client on
//! a container's interface (`client`). The daemon keeps leases alive between exchanges;
//! this module keeps no state of its own.

mod client;
mod lease;
mod message;

pub use client::{Client, ClientOptions, Patience};
pub use lease::{Lease, Next};
pub use message::option;

use std::time::Duration;

use cni::{Coded, ErrorCode};
use kernel::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("container interface {ifname}: {reason}")]
    Link { ifname: String, reason: String },
    /// The interface a lease was for is no longer there (another link may bear its name).
    #[error("the container's interface {0} is gone")]
    Gone(String),
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
    #[error("the exchange was called off")]
    Cancelled,
}

impl Coded for DhcpError {
    fn code(&self) -> ErrorCode {
        match self {
            DhcpError::Netns(e) => e.code(),
            // The server may answer a later attempt.
            DhcpError::Timeout { .. } => ErrorCode::TryAgainLater,
            DhcpError::Link { .. }
            | DhcpError::Gone(_)
            | DhcpError::Socket { .. }
            | DhcpError::Refused { .. }
            | DhcpError::Malformed(_)
            | DhcpError::Cancelled => ErrorCode::Internal,
        }
    }
}
