//! Firewall rules the plugins own, behind one interface with two backends.
//!
//! nftables (the default where `nft` exists) keeps everything in tables of its own and
//! applies each change as one atomic transaction. iptables writes the same chains the
//! reference plugins write, with one `iptables-restore --noflush` per change, so rules made by
//! either implementation can be found and removed by the other. There is no process per rule
//! anywhere: the `iptables` crate's approach costs a process start per rule, and the
//! reference's DEL spends most of its time there.
//!
//! Rules are keyed by the attachment (network, container ID, interface), never by what is
//! inside the container's namespace, so DEL and GC can remove them after the namespace is
//! gone (the reference leaks them then: its issue #810).
//!
//! The plugins say what they want as [`Entry`]s, each of one [`Feature`], in no backend's
//! terms; a [`Firewall`] ([`Nftables`], [`Iptables`]) adds, removes, checks and collects them
//! by owner. Which backend, with the options only it has, is a [`Backend`] decided when the
//! config is loaded.

pub mod conntrack;
mod entry;
mod iptables;
mod nftables;

pub use entry::{Entry, Feature, PortMap, PortMapping, Protocol, Snat};
pub use iptables::{Iptables, MasqueradeMark};
pub use nftables::Nftables;

use std::fmt;
use std::io;
use std::path::Path;

use cni::{AttachmentId, Coded, ErrorCode, ValidAttachments};
use entry::by_feature;
use kernel::tool::ToolError;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("unknown firewall backend {0:?}: use \"nftables\" or \"iptables\"")]
    UnknownBackend(String),
    #[error("no firewall tool found: install nftables (nft) or iptables")]
    NoTool,
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot lock this namespace's iptables rules")]
    Lock(#[source] io::Error),
    #[error("host port already mapped by another container: {0}")]
    PortTaken(String),
    #[error("the {backend} backend has no {feature}")]
    Unsupported {
        backend: &'static str,
        feature: &'static str,
    },
    #[error("nftables refused the change")]
    Kernel(#[from] kernel::netlink::NetlinkError),
}

impl Coded for FirewallError {
    fn code(&self) -> ErrorCode {
        match self {
            FirewallError::UnknownBackend(_) => ErrorCode::InvalidConfig,
            FirewallError::NoTool | FirewallError::Lock(_) => ErrorCode::Io,
            FirewallError::Tool(e) => e.code(),
            FirewallError::Kernel(_)
            | FirewallError::PortTaken(_)
            | FirewallError::Unsupported { .. } => ErrorCode::Internal,
        }
    }
}

/// What each backend does with an attachment's entries. Entries are found by their owner,
/// never through the container's namespace, so DEL and GC work after it is gone.
pub trait Firewall: fmt::Debug {
    /// Adds `entries` for `owner`: all of them, or none when one fails. Adding what is there
    /// already (a runtime's retried ADD) is fine.
    fn add(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<(), FirewallError>;

    /// Removes what `owner` holds of `feature`. `known`, the entries as ADD made them (from
    /// prevResult), saves a listing where the backend can use it; without them, or when they
    /// no longer match, what `owner` holds is found by owner. Removing nothing is fine.
    fn del(
        &self,
        owner: &AttachmentId,
        feature: Feature,
        known: &[Entry],
    ) -> Result<(), FirewallError>;

    /// Whether every entry is in place under `owner`.
    fn check(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<bool, FirewallError>;

    /// Removes what the attachments of `valid`'s network that `valid` does not list hold of
    /// `feature`.
    fn gc(&self, feature: Feature, valid: &ValidAttachments) -> Result<(), FirewallError>;

    /// Cuts `bridge` off from every other isolated bridge (ingressPolicy `same-bridge`). The
    /// isolation belongs to the bridge, which outlives its containers: as in the reference,
    /// nothing removes it.
    fn isolate_bridge(&self, bridge: &str) -> Result<(), FirewallError>;
}

/// A backend and the options only it has, decided when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Nftables,
    Iptables(Iptables),
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
}

impl Backend {
    /// The backend a config asks for, or nftables when `nft` is installed, else iptables;
    /// iptables with the reference's defaults.
    pub fn select(requested: Option<&str>) -> Result<Backend, FirewallError> {
        match requested.filter(|r| !r.is_empty()) {
            Some("nftables") => Ok(Backend::Nftables),
            Some("iptables") => Ok(Backend::Iptables(Iptables::default())),
            Some(other) => Err(FirewallError::UnknownBackend(other.to_string())),
            None if on_path("nft") => Ok(Backend::Nftables),
            None if on_path("iptables-restore") => Ok(Backend::Iptables(Iptables::default())),
            None => Err(FirewallError::NoTool),
        }
    }

    pub fn firewall(&self) -> &dyn Firewall {
        match self {
            Backend::Nftables => &Nftables,
            Backend::Iptables(iptables) => iptables,
        }
    }
}

/// A backend's ADD: `add` for each feature's entries in turn; when one fails, what the
/// features before it added is removed again (found by owner), so that nothing is left.
fn add_by_feature(
    firewall: &dyn Firewall,
    owner: &AttachmentId,
    entries: &[Entry],
    add: impl Fn(Feature, &[&Entry]) -> Result<(), FirewallError>,
) -> Result<(), FirewallError> {
    let features = by_feature(entries);
    for (at, (feature, group)) in features.iter().enumerate() {
        if let Err(e) = add(*feature, group) {
            for (added, _) in &features[..at] {
                let _ = firewall.del(owner, *added, &[]);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// A backend's CHECK: whether `present` finds each feature's entries.
fn check_by_feature(
    entries: &[Entry],
    present: impl Fn(Feature, &[&Entry]) -> Result<bool, FirewallError>,
) -> Result<bool, FirewallError> {
    for (feature, group) in by_feature(entries) {
        if !present(feature, &group)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs a firewall tool with `input` on stdin and returns its stdout.
fn run(tool: &'static str, args: &[&str], input: &str) -> Result<String, FirewallError> {
    Ok(kernel::tool::run(tool, args, Some(input.as_bytes()))?)
}
