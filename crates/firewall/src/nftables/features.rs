//! The elements masquerade, MAC spoof checking and forwarding give an attachment, and the
//! isolation of a bridge.

use ipnetwork::IpNetwork;

use super::tables::{FORWARD, MASQUERADE, SPOOFCHECK};
use super::{owner_tag, per_family, Entry, FirewallError};
use cni::id::digest;
use cni::{AttachmentId, ValidAttachments};
use kernel::netlink::nftables::{Batch, Data, Expr, Field, Key};
use kernel::netlink::MacAddr;

fn masquerade_entries(owner: &AttachmentId, addresses: &[IpNetwork]) -> Vec<Entry> {
    let tag = owner_tag(owner);
    let mut entries = Vec::new();
    for address in addresses {
        let (ipv6, ip) = (address.is_ipv6(), Field::Addr(address.ip()));
        let local = Key::interval(vec![ip.clone(), Field::Net(*address)]);
        entries.push(Entry::tagged(
            per_family(ipv6, "snat4", "snat6"),
            Key::exact(vec![ip]),
            tag,
        ));
        entries.push(Entry::tagged(
            per_family(ipv6, "local4", "local6"),
            local,
            tag,
        ));
    }
    entries
}

pub(crate) fn add_masquerade(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<(), FirewallError> {
    MASQUERADE.add(owner, &masquerade_entries(owner, addresses))
}

pub(crate) fn del_masquerade(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<(), FirewallError> {
    MASQUERADE.delete(owner, &masquerade_entries(owner, addresses), None)
}

pub(crate) fn has_masquerade(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<bool, FirewallError> {
    MASQUERADE.has(owner, &masquerade_entries(owner, addresses))
}

pub(crate) fn gc_masquerade(valid: &ValidAttachments) -> Result<(), FirewallError> {
    MASQUERADE.gc(valid)
}

fn spoofcheck_entries(owner: &AttachmentId, port: &str, mac: MacAddr) -> [Entry; 2] {
    let (tag, port) = (owner_tag(owner), Field::Ifname(port.to_string()));
    [
        Entry::tagged("spoofing", Key::exact(vec![port.clone()]), tag),
        Entry::tagged("sources", Key::exact(vec![port, Field::Mac(mac.0)]), tag),
    ]
}

pub(crate) fn add_spoofcheck(
    owner: &AttachmentId,
    port: &str,
    mac: MacAddr,
) -> Result<(), FirewallError> {
    SPOOFCHECK.add(owner, &spoofcheck_entries(owner, port, mac))
}

pub(crate) fn del_spoofcheck(
    owner: &AttachmentId,
    port: Option<(&str, MacAddr)>,
) -> Result<(), FirewallError> {
    let entries = port.map(|(port, mac)| spoofcheck_entries(owner, port, mac));
    SPOOFCHECK.delete(owner, entries.as_ref().map_or(&[], |e| &e[..]), None)
}

pub(crate) fn has_spoofcheck(
    owner: &AttachmentId,
    port: &str,
    mac: MacAddr,
) -> Result<bool, FirewallError> {
    SPOOFCHECK.has(owner, &spoofcheck_entries(owner, port, mac))
}

pub(crate) fn gc_spoofcheck(valid: &ValidAttachments) -> Result<(), FirewallError> {
    SPOOFCHECK.gc(valid)
}

fn forward_entries(owner: &AttachmentId, addresses: &[IpNetwork]) -> Vec<Entry> {
    let tag = owner_tag(owner);
    addresses
        .iter()
        .map(|a| {
            let map = per_family(a.is_ipv6(), "allowed4", "allowed6");
            Entry::tagged(map, Key::exact(vec![Field::Addr(a.ip())]), tag)
        })
        .collect()
}

pub(crate) fn allow_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<(), FirewallError> {
    FORWARD.add(owner, &forward_entries(owner, addresses))
}

pub(crate) fn del_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<(), FirewallError> {
    FORWARD.delete(owner, &forward_entries(owner, addresses), None)
}

pub(crate) fn has_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<bool, FirewallError> {
    FORWARD.has(owner, &forward_entries(owner, addresses))
}

pub(crate) fn gc_forward(valid: &ValidAttachments) -> Result<(), FirewallError> {
    FORWARD.gc(valid)
}

/// `isolated` gets the bridge, and `isolation` sends what enters from it to a chain that
/// drops it toward any other isolated bridge. The bridge's name is an admin's, and may hold
/// any character the kernel takes (`"`, `;`, `{`, `#`): it goes as netlink data, never as
/// nft text.
pub(crate) fn isolate_bridge(bridge: &str) -> Result<(), FirewallError> {
    let chain = format!("iso-{}", digest(bridge, 16));
    let name = Field::Ifname(bridge.to_string());
    let key = Key::exact(vec![name.clone()]);
    let mut batch = Batch::new(FORWARD.family, FORWARD.table);
    batch.add_element("isolated", &key, None, None, false);
    batch.add_chain(&chain);
    batch.flush_chain(&chain);
    batch.add_rule(
        &chain,
        &[
            Expr::LoadOifname,
            Expr::NotEqual(name),
            Expr::LoadOifname,
            Expr::InSet("isolated"),
            Expr::Drop,
        ],
    );
    let jump = Data::Jump(chain.clone());
    batch.add_element("isolation", &key, Some(&jump), None, false);
    FORWARD.commit_on_base(&batch)
}
