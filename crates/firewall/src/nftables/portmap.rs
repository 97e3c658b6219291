//! Port mappings: the elements of table `inet ferrocni_portmap` an attachment owns, and the
//! chain of a mapping with an admin's conditions.

use ipnetwork::IpNetwork;
use std::fmt::Write;
use std::net::IpAddr;

use super::tables::{MASQ_MARK, PORTMAP};
use super::{any_address, comment, owner_tag, per_family, Entry, FirewallError, PortmapRules};
use cni::id::digest;
use cni::{AttachmentId, ValidAttachments};
use kernel::netlink::nftables::{Data, Field, Key};
use kernel::tool::ToolError;

/// The chain of a port mapping with an admin's conditions.
fn portmap_chain(owner: &AttachmentId) -> String {
    format!("pm-{}", digest(&comment(owner), 16))
}

fn portmap_conditions(rules: &PortmapRules, ipv6: bool) -> String {
    let conditions = if ipv6 {
        rules.conditions_v6
    } else {
        rules.conditions_v4
    };
    conditions.join(" ")
}

fn has_conditions(rules: &PortmapRules) -> bool {
    !rules.conditions_v4.is_empty() || !rules.conditions_v6.is_empty()
}

/// The sources whose traffic to a mapping is masqueraded: the container's subnet (hairpin)
/// and, for IPv4, localhost; or any, with `masq_all`.
fn masqueraded_sources(rules: &PortmapRules, target: &IpNetwork) -> Vec<IpNetwork> {
    match (rules.snat, rules.masq_all, target.is_ipv4()) {
        (false, _, _) => Vec::new(),
        (true, true, _) => vec![any_address(target.is_ipv6())],
        (true, false, true) => vec![*target, "127.0.0.1/32".parse().expect("a valid constant")],
        (true, false, false) => vec![*target],
    }
}

fn portmap_entries(owner: &AttachmentId, rules: &PortmapRules) -> Vec<Entry> {
    let chain = has_conditions(rules).then(|| portmap_chain(owner));
    let tag = owner_tag(owner);
    let mut entries = Vec::new();
    for mapping in rules.mappings {
        for target in rules.targets_for(mapping) {
            let ipv6 = target.is_ipv6();
            let host = mapping
                .host_ip
                .map_or(Field::Net(any_address(ipv6)), Field::Addr);
            let port = vec![
                host,
                Field::Proto(mapping.protocol.number()),
                Field::Port(mapping.host_port),
            ];
            entries.push(Entry {
                map: per_family(ipv6, "dnat4", "dnat6"),
                key: Key::interval(port.clone()),
                data: Data::Target(target.ip(), mapping.container_port),
                exclusive: true,
            });
            if let Some(chain) = &chain {
                entries.push(Entry {
                    map: per_family(ipv6, "filtered4", "filtered6"),
                    key: Key::interval(port),
                    data: Data::Jump(chain.clone()),
                    exclusive: true,
                });
                continue;
            }
            for source in masqueraded_sources(rules, target) {
                let mut fields = port.clone();
                fields.push(Field::Net(source));
                let map = per_family(ipv6, "hairpin4", "hairpin6");
                entries.push(Entry::tagged(map, Key::interval(fields), tag));
            }
        }
    }
    entries
}

/// The rules of a mapping's chain when the admin gave conditions: the same marks and DNAT
/// as the maps, behind the conditions, then accept so that the maps do not DNAT the rest.
fn conditional_rules(rules: &PortmapRules) -> Vec<String> {
    let mut chain_rules = Vec::new();
    for mapping in rules.mappings {
        for target in rules.targets_for(mapping) {
            let family = if target.is_ipv4() { "ip" } else { "ip6" };
            let mut matches = format!(
                "{} meta l4proto {} th dport {}",
                portmap_conditions(rules, target.is_ipv6()),
                mapping.protocol.number(),
                mapping.host_port
            );
            if let Some(host_ip) = mapping.host_ip {
                let _ = write!(matches, " {family} daddr {host_ip}");
            }
            for source in masqueraded_sources(rules, target) {
                let source = Field::Net(source);
                chain_rules.push(format!(
                    "{matches} {family} saddr {source} meta mark set meta mark | {MASQ_MARK:#x}"
                ));
            }
            let destination = match target.ip() {
                IpAddr::V4(a) => format!("{a}:{}", mapping.container_port),
                IpAddr::V6(a) => format!("[{a}]:{}", mapping.container_port),
            };
            chain_rules.push(format!("{matches} dnat {family} to {destination}"));
        }
    }
    chain_rules.push("accept".to_string());
    chain_rules
}

pub(crate) fn add_portmap(owner: &AttachmentId, rules: &PortmapRules) -> Result<(), FirewallError> {
    let entries = portmap_entries(owner, rules);
    let added = if has_conditions(rules) {
        let chain = portmap_chain(owner);
        PORTMAP.add_with_chain(owner, &chain, &conditional_rules(rules), &entries)
    } else {
        PORTMAP.add(owner, &entries)
    };
    match added {
        // A runtime retrying ADD finds its own mapping in place: nothing to add.
        Err(e) if key_taken(&e) && has_portmap(owner, rules).unwrap_or(false) => Ok(()),
        Err(e) if key_taken(&e) => Err(FirewallError::PortTaken(
            PORTMAP.held_by_others(owner, &entries)?.join(", "),
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

pub(crate) fn del_portmap(
    owner: &AttachmentId,
    rules: Option<&PortmapRules>,
) -> Result<(), FirewallError> {
    let entries = rules.map(|r| portmap_entries(owner, r)).unwrap_or_default();
    let chain = rules
        .filter(|r| has_conditions(r))
        .map(|_| portmap_chain(owner));
    PORTMAP.delete(owner, &entries, chain.as_deref())
}

pub(crate) fn has_portmap(
    owner: &AttachmentId,
    rules: &PortmapRules,
) -> Result<bool, FirewallError> {
    PORTMAP.has(owner, &portmap_entries(owner, rules))
}

pub(crate) fn gc_portmap(valid: &ValidAttachments) -> Result<(), FirewallError> {
    PORTMAP.gc(valid)
}
