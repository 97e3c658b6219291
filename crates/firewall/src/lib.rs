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

pub mod conntrack;
mod iptables;
mod nftables;

use ipnetwork::IpNetwork;
use std::io;
use std::path::Path;

use cni::{AttachmentId, Coded, ErrorCode, ValidAttachments};
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
    #[error("cannot read {tool} output: {reason}")]
    Parse { tool: &'static str, reason: String },
    #[error("nftables refused the change")]
    Kernel(#[from] kernel::netlink::NetlinkError),
}

impl Coded for FirewallError {
    fn code(&self) -> ErrorCode {
        match self {
            FirewallError::UnknownBackend(_) => ErrorCode::InvalidConfig,
            FirewallError::NoTool | FirewallError::Lock(_) => ErrorCode::Io,
            FirewallError::Tool(e) => e.code(),
            FirewallError::Parse { .. }
            | FirewallError::Kernel(_)
            | FirewallError::PortTaken(_) => ErrorCode::Internal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nftables,
    Iptables,
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
}

impl Backend {
    /// The backend a config asks for, or nftables when `nft` is installed, else iptables.
    pub fn select(requested: Option<&str>) -> Result<Backend, FirewallError> {
        match requested.filter(|r| !r.is_empty()) {
            Some("nftables") => Ok(Backend::Nftables),
            Some("iptables") => Ok(Backend::Iptables),
            Some(other) => Err(FirewallError::UnknownBackend(other.to_string())),
            None if on_path("nft") => Ok(Backend::Nftables),
            None if on_path("iptables-restore") => Ok(Backend::Iptables),
            None => Err(FirewallError::NoTool),
        }
    }

    /// Source-NATs traffic from each address to anywhere outside its subnet (multicast
    /// excepted), as the reference's `ipMasq` does.
    pub fn add_masquerade(
        self,
        owner: &AttachmentId,
        addresses: &[IpNetwork],
    ) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::add_masquerade(owner, addresses),
            Backend::Iptables => iptables::add_masquerade(owner, addresses),
        }
    }

    /// Removes an attachment's masquerade. `addresses` (from prevResult) is a hint that saves
    /// a listing; without it the rules are found by owner. Removing nothing is fine.
    pub fn del_masquerade(
        self,
        owner: &AttachmentId,
        addresses: &[IpNetwork],
    ) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::del_masquerade(owner, addresses),
            Backend::Iptables => iptables::del_masquerade(owner),
        }
    }

    /// Whether every address of the attachment is masqueraded.
    pub fn has_masquerade(
        self,
        owner: &AttachmentId,
        addresses: &[IpNetwork],
    ) -> Result<bool, FirewallError> {
        match self {
            Backend::Nftables => nftables::has_masquerade(owner, addresses),
            Backend::Iptables => iptables::has_masquerade(owner, addresses),
        }
    }

    /// Removes the masquerade of every attachment of `valid`'s network not in it.
    pub fn gc_masquerade(self, valid: &ValidAttachments) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::gc_masquerade(valid),
            Backend::Iptables => iptables::gc_masquerade(valid),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// One published port: traffic to `host_port` (on `host_ip`, or any local address) goes to
/// the container's `container_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: Option<std::net::IpAddr>,
}

/// Everything portmap's rules for one attachment depend on.
#[derive(Debug, Clone)]
pub struct PortmapRules<'a> {
    pub mappings: &'a [PortMapping],
    /// The container's addresses with their prefixes (at most one per family).
    pub targets: &'a [IpNetwork],
    /// Masquerade hairpin (container to its own published port) and localhost traffic.
    pub snat: bool,
    /// Masquerade every DNATed connection, whatever its source.
    pub masq_all: bool,
    /// Extra match tokens in the backend's own syntax.
    pub conditions_v4: &'a [String],
    pub conditions_v6: &'a [String],
    /// iptables only: the mark bit for masquerading, or a chain of the admin's that marks.
    pub mark_bit: u8,
    pub external_mark_chain: Option<&'a str>,
}

impl PortmapRules<'_> {
    /// The container addresses a mapping applies to: those of its host IP's family.
    fn targets_for<'b>(
        &'b self,
        mapping: &'b PortMapping,
    ) -> impl Iterator<Item = &'b IpNetwork> + 'b {
        self.targets.iter().filter(move |t| {
            mapping
                .host_ip
                .is_none_or(|host| host.is_ipv4() == t.is_ipv4())
        })
    }
}

impl Backend {
    pub fn add_portmap(
        self,
        owner: &AttachmentId,
        rules: &PortmapRules,
    ) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::add_portmap(owner, rules),
            Backend::Iptables => iptables::add_portmap(owner, rules),
        }
    }

    /// Removes an attachment's port mappings. `rules` (from the runtime's mappings and
    /// prevResult) is a hint that saves listing every mapping; without it, or when it no
    /// longer matches, they are found by owner.
    pub fn del_portmap(
        self,
        owner: &AttachmentId,
        rules: Option<&PortmapRules>,
    ) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::del_portmap(owner, rules),
            Backend::Iptables => iptables::del_portmap(owner),
        }
    }

    pub fn has_portmap(
        self,
        owner: &AttachmentId,
        rules: &PortmapRules,
    ) -> Result<bool, FirewallError> {
        match self {
            Backend::Nftables => nftables::has_portmap(owner, rules),
            Backend::Iptables => iptables::has_portmap(owner, rules),
        }
    }

    pub fn gc_portmap(self, valid: &ValidAttachments) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::gc_portmap(valid),
            Backend::Iptables => iptables::gc_portmap(valid),
        }
    }
}

impl Backend {
    /// Lets a container's own traffic, replies to it and DNATed connections to it through
    /// the host's forwarding, even where the host's policy drops forwarded packets.
    pub fn allow_forward(
        self,
        owner: &AttachmentId,
        addresses: &[IpNetwork],
        admin_chain: &str,
    ) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::allow_forward(owner, addresses),
            Backend::Iptables => iptables::allow_forward(owner, addresses, admin_chain),
        }
    }

    pub fn del_forward(
        self,
        owner: &AttachmentId,
        addresses: &[IpNetwork],
    ) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::del_forward(owner, addresses),
            Backend::Iptables => iptables::del_forward(owner, addresses),
        }
    }

    pub fn has_forward(
        self,
        owner: &AttachmentId,
        addresses: &[IpNetwork],
    ) -> Result<bool, FirewallError> {
        match self {
            Backend::Nftables => nftables::has_forward(owner, addresses),
            Backend::Iptables => iptables::has_forward(owner, addresses),
        }
    }

    pub fn gc_forward(self, valid: &ValidAttachments) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::gc_forward(valid),
            Backend::Iptables => iptables::gc_forward(valid),
        }
    }

    /// Cuts `bridge` off from every other isolated bridge (ingressPolicy `same-bridge`).
    pub fn isolate_bridge(self, bridge: &str) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables => nftables::isolate_bridge(bridge),
            Backend::Iptables => iptables::isolate_bridge(bridge),
        }
    }
}

/// MAC spoof checking on a bridge port: frames from `port` (the container's host-side veth)
/// whose source is not the container's MAC are dropped. nftables only, as the reference.
pub mod spoofcheck {
    use super::{nftables, FirewallError};
    use cni::{AttachmentId, ValidAttachments};
    use kernel::netlink::MacAddr;

    pub fn add(owner: &AttachmentId, port: &str, mac: MacAddr) -> Result<(), FirewallError> {
        nftables::add_spoofcheck(owner, port, mac)
    }

    /// `port` and its MAC (from prevResult) save a listing; without them the rules are found
    /// by owner.
    pub fn del(owner: &AttachmentId, port: Option<(&str, MacAddr)>) -> Result<(), FirewallError> {
        nftables::del_spoofcheck(owner, port)
    }

    pub fn has(owner: &AttachmentId, port: &str, mac: MacAddr) -> Result<bool, FirewallError> {
        nftables::has_spoofcheck(owner, port, mac)
    }

    pub fn gc(valid: &ValidAttachments) -> Result<(), FirewallError> {
        nftables::gc_spoofcheck(valid)
    }
}

/// Runs a firewall tool with `input` on stdin and returns its stdout.
fn run(tool: &'static str, args: &[&str], input: &str) -> Result<String, FirewallError> {
    Ok(kernel::tool::run(tool, args, Some(input.as_bytes()))?)
}
