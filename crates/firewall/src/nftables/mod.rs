//! The nftables backend. Every table follows one scheme: base chains look a key of the packet
//! up in maps, and an attachment owns elements of those maps, each carrying its owner as a
//! comment. ADD and DEL touch a few elements whatever the number of containers, and every
//! change is one atomic netlink batch (see [`kernel::netlink::nftables`] for why not `nft`).
//! CHECK, GC and DEL without keys read the table's elements back over netlink, in the same
//! typed model ([`Element`]), and compare keys as the kernel does, by their bytes.
//!
//! `nft` remains where the kernel's interface would be absurd to write by hand: declaring
//! each table's base once (its maps, and hooked chains whose rules are expressions nft
//! compiles), and the chain of a port mapping with an admin's conditions, which are nft
//! syntax by definition. That text holds, besides the admin's tokens, only what nft cannot
//! misread: addresses, numbers, hashed chain names and owner comments of a plain alphabet
//! (see [`scheme::comment`]). Names that may hold anything (a bridge's) go over netlink.
//!
//! Elements map to values, not to a chain per attachment: a jump element makes each commit
//! validate every chain the base reaches, and every netdev event walk every chain, which at
//! 1,000 containers was half of a bridge ADD's CPU time. Where a map only serves as a set, its
//! value is a tag of the owner, so a DEL that names a key never deletes another's element.
//! Each attachment also owns a manifest, `manifests` { owner tag . digest of its elements },
//! which a DEL by keys deletes first: when it is missing (DEL repeated, ADD by another
//! version) or names other elements (the DEL's keys differ from the ADD's), the kernel refuses
//! the whole batch and the elements are found by owner instead, so a DEL never leaves its own
//! elements behind nor takes those of a container that reuses its address or port.
//!
//! - masquerade, table `inet ferrocni`: `masquerading` masquerades sources in `snat4` and
//!   `snat6`, except to multicast and to the container's own subnet (`local4`/`local6`:
//!   address . subnet).
//! - MAC spoof checking, table `bridge ferrocni`: `source-macs` drops frames entering a port
//!   in `spoofing` unless `sources` holds that port . source MAC.
//! - port mappings and forwarding: see [`tables`].
//!
//! Listings read every named map and set of a table, so elements of any layout a table may
//! still hold (verdict maps jumping to per-attachment chains) are found by owner like any
//! other (GC, DEL without prevResult) and removed with their chains.

mod features;
mod portmap;
mod scheme;
mod tables;
#[cfg(test)]
mod tests;

use cni::{AttachmentId, ValidAttachments};
use kernel::netlink::nftables::Element;

use super::entry::{of_feature, Entry, Feature};
use super::{add_by_feature, check_by_feature, Firewall, FirewallError};
use scheme::{comment, owner_tag};
use tables::{Scheme, FORWARD, MASQUERADE, PORTMAP, SPOOFCHECK};

/// The nftables backend. It has no options: what the iptables backend's options name
/// (mark bits, chains of an admin's) are parts of its own tables here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nftables;

fn scheme(feature: Feature) -> &'static Scheme {
    match feature {
        Feature::Masquerade => &MASQUERADE,
        Feature::PortMap => &PORTMAP,
        Feature::Forward => &FORWARD,
        Feature::SpoofCheck => &SPOOFCHECK,
    }
}

/// How an attachment's elements name it.
struct Owner {
    /// The comment of each element.
    comment: String,
    /// The value of its elements in maps that only serve as sets.
    tag: u32,
    /// The chain of its port mappings with an admin's conditions, when it has any.
    chain: Option<String>,
}

impl Owner {
    fn new(owner: &AttachmentId, entries: &[&Entry]) -> Owner {
        Owner {
            comment: comment(owner),
            tag: owner_tag(owner),
            chain: portmap::chain(owner, entries),
        }
    }
}

/// The elements `entries` give their owner.
fn elements(owner: &Owner, entries: &[&Entry]) -> Vec<Element> {
    entries
        .iter()
        .flat_map(|entry| match entry {
            Entry::Masquerade { address } => features::masquerade(owner, address),
            Entry::Forward { address } => features::forward(owner, address),
            Entry::SpoofCheck { port, mac } => features::spoofcheck(owner, port, *mac),
            Entry::PortMap(map) => portmap::elements(owner, map),
        })
        .collect()
}

impl Firewall for Nftables {
    fn add(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<(), FirewallError> {
        add_by_feature(self, owner, entries, |feature, entries| {
            let named = Owner::new(owner, entries);
            match feature {
                Feature::PortMap => portmap::add(owner, &named, entries),
                _ => scheme(feature).add(owner, &elements(&named, entries)),
            }
        })
    }

    fn del(
        &self,
        owner: &AttachmentId,
        feature: Feature,
        known: &[Entry],
    ) -> Result<(), FirewallError> {
        let known = of_feature(known, feature);
        let named = Owner::new(owner, &known);
        scheme(feature).delete(owner, &elements(&named, &known), named.chain.as_deref())
    }

    fn check(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<bool, FirewallError> {
        check_by_feature(entries, |feature, entries| {
            let named = Owner::new(owner, entries);
            scheme(feature).has(owner, &elements(&named, entries))
        })
    }

    fn gc(&self, feature: Feature, valid: &ValidAttachments) -> Result<(), FirewallError> {
        scheme(feature).gc(valid)
    }

    fn isolate_bridge(&self, bridge: &str) -> Result<(), FirewallError> {
        features::isolate_bridge(bridge)
    }
}
