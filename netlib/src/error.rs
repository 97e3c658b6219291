//! The library's error type, and the one place where errors become CNI error codes.

use crate::cni::{CniError, ErrorCode, ProtocolError, Version};
use crate::firewall::FirewallError;
use crate::invoke::InvokeError;
use crate::ipam::IpamError;
use crate::netlink::NetlinkError;
use crate::netns::NetnsError;
use crate::sysctl::SysctlError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Shaping(#[from] crate::shaping::ShapingError),
    /// State a plugin keeps on disk between ADD and DEL.
    #[error("plugin state {path:?}")]
    State {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record read back from disk that no ADD of the plugin would have written (someone
    /// else wrote or replaced it): nothing is done with it, and it is set aside for an admin.
    #[error("plugin state {path:?} is no record this plugin wrote: {reason}")]
    Record {
        path: std::path::PathBuf,
        reason: String,
    },
    /// ADD found the interface it must create already there (the spec says ADD must fail).
    #[error("{0}")]
    AlreadyExists(String),
    /// CHECK found the attachment differs from what ADD made.
    #[error("check failed: {0}")]
    Check(String),
    /// Something the plugin depends on is not ready yet (an overlay agent without a lease):
    /// the runtime should retry ADD later.
    #[error("{0}")]
    NotReadyYet(String),
    /// STATUS: the network cannot take ADDs now.
    #[error("{0}")]
    Unavailable(String),
    /// A file of the kernel's under /proc that must be there could not be read.
    #[error("cannot read {path}")]
    Proc {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel numbers bridge ports in 10 bits and answers the 1024th with a bare EXFULL,
    /// which musl cannot even name.
    #[error("bridge {0:?} is full: a Linux bridge takes at most 1023 ports")]
    BridgeFull(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Protocol(e) => match e {
                ProtocolError::MissingEnv(_)
                | ProtocolError::UnknownCommand(_)
                | ProtocolError::InvalidContainerId { .. }
                | ProtocolError::InvalidIfName { .. }
                | ProtocolError::InvalidArgs(_) => ErrorCode::InvalidEnvironment,
                ProtocolError::MissingContainerId => ErrorCode::UnknownContainer,
                ProtocolError::MissingNetworkName
                | ProtocolError::InvalidNetworkName(_)
                | ProtocolError::InvalidConfig { .. }
                | ProtocolError::OneAddressPerFamily { .. }
                | ProtocolError::MissingPrevResult => ErrorCode::InvalidConfig,
                ProtocolError::ReadStdin(_) => ErrorCode::Io,
                ProtocolError::Decode { .. } => ErrorCode::Decode,
                ProtocolError::IncompatibleVersion { .. }
                | ProtocolError::VerbNotAllowed { .. }
                | ProtocolError::VerbNotSupported { .. }
                | ProtocolError::Conversion { .. } => ErrorCode::IncompatibleVersion,
                ProtocolError::SameNetns(_) => ErrorCode::InvalidNetns,
            },
            Error::Invoke(e) => match e {
                InvokeError::NotFound { .. } | InvokeError::BadName(_) => ErrorCode::InvalidConfig,
                InvokeError::Spawn { .. } => ErrorCode::Io,
                InvokeError::Plugin(_) | InvokeError::Garbled { .. } => ErrorCode::Internal,
            },
            Error::Netns(e) => match e {
                NetnsError::NotFound(_) | NetnsError::NotANetns { .. } => ErrorCode::InvalidNetns,
                NetnsError::Open { .. }
                | NetnsError::Enter { .. }
                | NetnsError::Create { .. }
                | NetnsError::Delete { .. } => ErrorCode::Io,
                NetnsError::Exists(_) | NetnsError::BadName(_) => ErrorCode::InvalidNetns,
            },
            Error::Netlink(NetlinkError::Netns(_)) => ErrorCode::InvalidNetns,
            Error::Netlink(NetlinkError::KernelLacks(_)) => ErrorCode::UnsupportedField,
            Error::Netlink(_) | Error::Sysctl(_) => ErrorCode::Internal,
            Error::Ipam(e) => match e {
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
            },
            Error::Firewall(e) => match e {
                FirewallError::UnknownBackend(_) => ErrorCode::InvalidConfig,
                FirewallError::NoTool | FirewallError::Spawn { .. } | FirewallError::Lock(_) => {
                    ErrorCode::Io
                }
                FirewallError::Failed { .. }
                | FirewallError::Parse { .. }
                | FirewallError::Kernel(_)
                | FirewallError::PortTaken(_) => ErrorCode::Internal,
            },
            Error::State { .. } | Error::Proc { .. } => ErrorCode::Io,
            Error::Record { .. } => ErrorCode::Decode,
            Error::Shaping(crate::shaping::ShapingError::Spawn(_)) => ErrorCode::Io,
            Error::Shaping(crate::shaping::ShapingError::Failed(_)) => ErrorCode::Internal,
            Error::AlreadyExists(_) | Error::Check(_) | Error::BridgeFull(_) => ErrorCode::Internal,
            Error::NotReadyYet(_) => ErrorCode::TryAgainLater,
            Error::Unavailable(_) => ErrorCode::NotAvailable,
        }
    }

    /// The spec's error object: `msg` is this error's sentence, `details` what a fixed
    /// sentence leaves out, then its causes.
    pub fn to_cni(&self, version: Option<Version>) -> CniError {
        if let Error::Invoke(InvokeError::Plugin(delegated)) = self {
            return delegated.clone();
        }
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        // `transparent` variants report their inner error as the first source too.
        if causes
            .first()
            .is_some_and(|first| *first == self.to_string())
        {
            causes.remove(0);
        }
        if let Some(details) = match self {
            Error::Protocol(protocol) => protocol.details(),
            _ => None,
        } {
            causes.insert(0, details);
        }
        CniError {
            cni_version: version.map(|v| v.to_string()).unwrap_or_default(),
            code: self.code().number(),
            msg: self.to_string(),
            details: causes.join(": "),
        }
    }
}

/// An error and its causes on one line: "netlink add route failed: Network is unreachable".
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
