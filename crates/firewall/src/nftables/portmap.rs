//! Port mappings: the elements of table `inet ferrocni_portmap` an attachment owns, and the
//! chain of mappings with an admin's conditions.

use ipnetwork::IpNetwork;
use std::fmt::Write;
use std::net::IpAddr;

use super::features::{per_family, tagged};
use super::scheme::comment;
use super::tables::{MASQ_MARK, PORTMAP};
use super::Owner;
use crate::entry::{port_maps, Entry, PortMap, Snat};
use crate::FirewallError;
use cni::id::digest;
use cni::AttachmentId;
use kernel::netlink::nftables::{Data, Element, Field, Key};
use kernel::tool::ToolError;

/// The chain of an attachment's port mappings when any carries an admin's conditions.
pub(super) fn chain(owner: &AttachmentId, entries: &[&Entry]) -> Option<String> {
    port_maps(entries)
        .iter()
        .any(|map| !map.conditions.is_empty())
        .then(|| format!("pm-{}", digest(&comment(owner), 16)))
}

fn any_address(ipv6: bool) -> IpNetwork {
    let text = if ipv6 { "::/0" } else { "0.0.0.0/0" };
    text.parse().expect("a valid constant network")
}

/// The sources whose traffic to a mapping is masqueraded.
fn masqueraded_sources(map: &PortMap) -> Vec<IpNetwork> {
    let target = map.target;
    match (map.snat, target.is_ipv4()) {
        (Snat::Off, _) => Vec::new(),
        (Snat::All, _) => vec![any_address(target.is_ipv6())],
        (Snat::Local, true) => vec![target, "127.0.0.1/32".parse().expect("a valid constant")],
        (Snat::Local, false) => vec![target],
    }
}

/// Host address . protocol . port in `dnat4`/`dnat6`, mapping to the target; with the
/// owner's chain, the same key in `filtered4`/`filtered6` jumping to it; else the key and
/// each masqueraded source in `hairpin4`/`hairpin6`.
pub(super) fn elements(owner: &Owner, map: &PortMap) -> Vec<Element> {
    let (mapping, target) = (&map.mapping, map.target);
    let ipv6 = target.is_ipv6();
    let host = mapping
        .host_ip
        .map_or(Field::Net(any_address(ipv6)), Field::Addr);
    let port = vec![
        host,
        Field::Proto(mapping.protocol.number()),
        Field::Port(mapping.host_port),
    ];
    let exclusive = |set: &str, data: Data| Element {
        set: set.to_string(),
        key: Key::interval(port.clone()),
        data: Some(data),
        comment: Some(owner.comment.clone()),
    };
    let mut elements = vec![exclusive(
        per_family(ipv6, "dnat4", "dnat6"),
        Data::Target(target.ip(), mapping.container_port),
    )];
    if let Some(chain) = &owner.chain {
        let filtered = per_family(ipv6, "filtered4", "filtered6");
        elements.push(exclusive(filtered, Data::Jump(chain.clone())));
        return elements;
    }
    for source in masqueraded_sources(map) {
        let mut fields = port.clone();
        fields.push(Field::Net(source));
        let set = per_family(ipv6, "hairpin4", "hairpin6");
        elements.push(tagged(owner, set, Key::interval(fields)));
    }
    elements
}

/// The rules of the owner's chain: the same marks and DNAT as the maps, behind the
/// conditions, then accept so that the maps do not DNAT the rest.
pub(super) fn conditional_rules(maps: &[&PortMap]) -> Vec<String> {
    let mut rules = Vec::new();
    for map in maps {
        let (mapping, target) = (&map.mapping, map.target);
        let family = if target.is_ipv4() { "ip" } else { "ip6" };
        let mut matches = format!(
            "{} meta l4proto {} th dport {}",
            map.conditions.join(" "),
            mapping.protocol.number(),
            mapping.host_port
        );
        if let Some(host_ip) = mapping.host_ip {
            let _ = write!(matches, " {family} daddr {host_ip}");
        }
        for source in masqueraded_sources(map) {
            let source = Field::Net(source);
            rules.push(format!(
                "{matches} {family} saddr {source} meta mark set meta mark | {MASQ_MARK:#x}"
            ));
        }
        let destination = match target.ip() {
            IpAddr::V4(a) => format!("{a}:{}", mapping.container_port),
            IpAddr::V6(a) => format!("[{a}]:{}", mapping.container_port),
        };
        rules.push(format!("{matches} dnat {family} to {destination}"));
    }
    rules.push("accept".to_string());
    rules
}

/// Adds the mappings; a host port another attachment holds fails the whole ADD, naming the
/// keys taken.
pub(super) fn add(
    owner: &AttachmentId,
    named: &Owner,
    entries: &[&Entry],
) -> Result<(), FirewallError> {
    let elements = super::elements(named, entries);
    let added = match &named.chain {
        Some(chain) => {
            let rules = conditional_rules(&port_maps(entries));
            PORTMAP.add_with_chain(owner, chain, &rules, &elements)
        }
        None => PORTMAP.add(owner, &elements),
    };
    match added {
        // A runtime retrying ADD finds its own mapping in place: nothing to add.
        Err(e) if key_taken(&e) && PORTMAP.has(owner, &elements).unwrap_or(false) => Ok(()),
        Err(e) if key_taken(&e) => Err(FirewallError::PortTaken(
            PORTMAP.held_by_others(owner, &elements)?.join(", "),
        )),
        other => other,
    }
}

/// Whether adding failed because an exclusive key exists, as the kernel or nft says it.
fn key_taken(error: &FirewallError) -> bool {
    match error {
        FirewallError::Kernel(e) => e.already_exists(),
        FirewallError::Tool(ToolError::Failed { stderr, .. }) => stderr.contains("File exists"),
        _ => false,
    }
}
