//! The elements masquerade, forwarding and MAC spoof checking give an attachment, and the
//! isolation of a bridge.

use ipnetwork::IpNetwork;

use super::tables::FORWARD;
use super::Owner;
use crate::FirewallError;
use cni::id::digest;
use kernel::netlink::nftables::{Batch, Data, Element, Expr, Field, Key};
use kernel::netlink::MacAddr;

/// The map of a family: `name4` or `name6`.
pub(super) fn per_family(ipv6: bool, v4: &'static str, v6: &'static str) -> &'static str {
    if ipv6 {
        v6
    } else {
        v4
    }
}

/// An element of a map that serves as a set: its value is the owner's tag.
pub(super) fn tagged(owner: &Owner, set: &str, key: Key) -> Element {
    Element {
        set: set.to_string(),
        key,
        data: Some(Data::Mark(owner.tag)),
        comment: Some(owner.comment.clone()),
    }
}

/// `address` in `snat4`/`snat6`, and `address . its subnet` in `local4`/`local6`.
pub(super) fn masquerade(owner: &Owner, address: &IpNetwork) -> Vec<Element> {
    let (ipv6, ip) = (address.is_ipv6(), Field::Addr(address.ip()));
    let local = Key::interval(vec![ip.clone(), Field::Net(*address)]);
    vec![
        tagged(
            owner,
            per_family(ipv6, "snat4", "snat6"),
            Key::exact(vec![ip]),
        ),
        tagged(owner, per_family(ipv6, "local4", "local6"), local),
    ]
}

/// `address` in `allowed4`/`allowed6`.
pub(super) fn forward(owner: &Owner, address: &IpNetwork) -> Vec<Element> {
    let map = per_family(address.is_ipv6(), "allowed4", "allowed6");
    vec![tagged(
        owner,
        map,
        Key::exact(vec![Field::Addr(address.ip())]),
    )]
}

/// `port` in `spoofing`, and `port . mac` in `sources`.
pub(super) fn spoofcheck(owner: &Owner, port: &str, mac: MacAddr) -> Vec<Element> {
    let port = Field::Ifname(port.to_string());
    vec![
        tagged(owner, "spoofing", Key::exact(vec![port.clone()])),
        tagged(owner, "sources", Key::exact(vec![port, Field::Mac(mac.0)])),
    ]
}

/// `isolated` gets the bridge, and `isolation` sends what enters from it to a chain that
/// drops it toward any other isolated bridge. The bridge's name is an admin's, and may hold
/// any character the kernel takes (`"`, `;`, `{`, `#`): it goes as netlink data, never as
/// nft text.
pub(super) fn isolate_bridge(bridge: &str) -> Result<(), FirewallError> {
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
