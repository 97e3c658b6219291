//! IP address management: host-local (ranges, an on-disk store shared with the reference
//! plugin) and static. The logic lives here, not in the IPAM binaries, so that main plugins
//! run it in-process ([`HOST_LOCAL`], [`STATIC`]). dhcp's client lives in its own binary.

pub mod host_local;
pub mod range;
pub mod resolv;
pub mod static_ipam;
pub mod store;

use serde::Deserialize;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use cni::skel::Delegate;
use cni::{Coded, ErrorCode, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no IP addresses available in range set: {range_set}")]
    Exhausted { range_set: String },
    #[error("requested IP address {ip} is not available in range set {range_set}")]
    RequestedTaken { ip: IpAddr, range_set: String },
    #[error("requested ip {0} is subnet's gateway")]
    RequestedIsGateway(IpAddr),
    #[error("requested ip {ip} is not in any range ({field})")]
    RequestedNotInRange { ip: IpAddr, field: &'static str },
    #[error("failed to allocate all requested IPs: {}", .0.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(" "))]
    Unfulfilled(Vec<IpAddr>),
    #[error("{ip} has been allocated to {container_id}, duplicate allocation is not allowed")]
    Duplicate { ip: IpAddr, container_id: String },
    #[error("host-local: failed to find address added by container {container_id} on {ifname}")]
    NotReserved {
        container_id: String,
        ifname: String,
    },
    #[error("no free address in range set {range_set}")]
    NoFreeAddress { range_set: String },
    #[error("IPAM store {path:?}")]
    Store {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read resolvConf {path:?}")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Coded for IpamError {
    fn code(&self) -> ErrorCode {
        match self {
            IpamError::RequestedNotInRange { .. } | IpamError::RequestedIsGateway(_) => {
                ErrorCode::InvalidConfig
            }
            IpamError::Store { .. } | IpamError::ResolvConf { .. } => ErrorCode::Io,
            IpamError::NoFreeAddress { .. } => ErrorCode::NotAvailable,
            // The reference answers these with plain errors (999); runtimes and users
            // match on the message, which we keep.
            IpamError::Exhausted { .. }
            | IpamError::RequestedTaken { .. }
            | IpamError::Unfulfilled(_)
            | IpamError::Duplicate { .. }
            | IpamError::NotReserved { .. } => ErrorCode::Internal,
        }
    }
}

/// `args.cni` of the config (CONVENTIONS.md): what a runtime asks for per attachment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ArgsSection {
    pub cni: CniArgsSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CniArgsSection {
    pub ips: Vec<String>,
}

/// Parses requested addresses written as `10.1.2.3` or `10.1.2.3/24`; `field` names where
/// they came from in errors.
pub fn parse_requested_ips(items: &[String], field: &str) -> Result<Vec<IpAddr>, ProtocolError> {
    items
        .iter()
        .map(|item| {
            let text = item.trim();
            let address = text.split_once('/').map_or(text, |(ip, _)| ip);
            address
                .parse()
                .map_err(|_| ProtocolError::config(field, format!("{text:?} is not an IP address")))
        })
        .collect()
}

/// host-local, for a main plugin's binary to run in-process (see [`run_with`](cni::skel::run_with)).
pub const HOST_LOCAL: Delegate = Delegate {
    plugin_type: "host-local",
    plugin: &host_local::HostLocalPlugin,
};

/// static, for a main plugin's binary to run in-process (see [`run_with`](cni::skel::run_with)).
pub const STATIC: Delegate = Delegate {
    plugin_type: "static",
    plugin: &static_ipam::StaticPlugin,
};
