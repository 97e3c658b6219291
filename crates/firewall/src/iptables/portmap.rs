//! Port mappings, as the reference's portmap writes them: `CNI-HOSTPORT-DNAT`,
//! `CNI-HOSTPORT-SETMARK`, `CNI-HOSTPORT-MASQ` and a `CNI-DN-…` chain per container.

use ipnetwork::IpNetwork;
use std::fmt::Write;

use super::*;

const HOSTPORT_DNAT: &str = "CNI-HOSTPORT-DNAT";
const HOSTPORT_SETMARK: &str = "CNI-HOSTPORT-SETMARK";
const HOSTPORT_MASQ: &str = "CNI-HOSTPORT-MASQ";

/// As the reference: chain names are cut to 28 characters, 21 of them hash.
fn dnat_chain(owner: &AttachmentId) -> String {
    format!(
        "CNI-DN-{}",
        digest(&format!("{}{}", owner.network, owner.container_id), 21)
    )
}

/// The shared chains, created (with their entry rules) only where missing: declaring an
/// existing chain in a `--noflush` restore would flush other containers' rules from it.
fn shared_chains(saved: &str, rules: &PortmapRules, mark: &str, input: &mut String) {
    if !chain_exists(saved, HOSTPORT_DNAT) {
        let _ = writeln!(input, ":{HOSTPORT_DNAT} - [0:0]");
        for parent in ["PREROUTING", "OUTPUT"] {
            let _ = writeln!(
                input,
                "-A {parent} -m addrtype --dst-type LOCAL -j {HOSTPORT_DNAT}"
            );
        }
    }
    if rules.external_mark_chain.is_some() {
        return;
    }
    if !chain_exists(saved, HOSTPORT_SETMARK) {
        let _ = writeln!(input, ":{HOSTPORT_SETMARK} - [0:0]");
        let _ = writeln!(
            input,
            "-A {HOSTPORT_SETMARK} -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark {mark}/{mark}"
        );
    }
    if !chain_exists(saved, HOSTPORT_MASQ) {
        let _ = writeln!(input, ":{HOSTPORT_MASQ} - [0:0]");
        let _ = writeln!(
            input,
            "-A {HOSTPORT_MASQ} -m mark --mark {mark}/{mark} -j MASQUERADE"
        );
        let _ = writeln!(
            input,
            "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j {HOSTPORT_MASQ}"
        );
    }
}

pub(crate) fn add_portmap(owner: &AttachmentId, rules: &PortmapRules) -> Result<(), FirewallError> {
    all_or_nothing(|| write_portmap(owner, rules), || del_portmap(owner))
}

fn write_portmap(owner: &AttachmentId, rules: &PortmapRules) -> Result<(), FirewallError> {
    let _one_at_a_time = serialized()?;
    let chain = dnat_chain(owner);
    let comment = quoted(&comment(DNAT, &owner.network, &owner.container_id));
    let ours = owned_by(DNAT, owner);
    let mark = format!("{:#x}", 1u32 << rules.mark_bit);
    let set_mark = quoted(rules.external_mark_chain.unwrap_or(HOSTPORT_SETMARK));
    for v6 in [false, true] {
        let mappings: Vec<(&crate::PortMapping, &IpNetwork)> = rules
            .mappings
            .iter()
            .flat_map(|m| rules.targets_for(m).map(move |t| (m, t)))
            .filter(|(_, t)| t.is_ipv6() == v6)
            .collect();
        if mappings.is_empty() {
            continue;
        }
        let saved = save(v6, "nat")?;
        let mut input = String::from("*nat\n");
        shared_chains(&saved, rules, &mark, &mut input);
        // Declaring the container's chain empties it; a repeated ADD (a runtime's retry)
        // also drops its old jumps, so it ends with one set, for the ports asked now.
        let _ = writeln!(input, ":{chain} - [0:0]");
        let jump_prefix = format!("-A {HOSTPORT_DNAT} ");
        for old_jump in saved.lines().filter_map(|l| l.strip_prefix(&jump_prefix)) {
            if comments_of(old_jump).iter().any(|c| ours(c)) {
                let _ = writeln!(input, "-D {HOSTPORT_DNAT} {old_jump}");
            }
        }
        let conditions = if v6 {
            rules.conditions_v6
        } else {
            rules.conditions_v4
        };
        // The admin's tokens, each one argument as the reference passes them.
        let conditions: Vec<String> = conditions.iter().map(|c| quoted(c)).collect();
        let conditions = conditions.join(" ");
        let host = if v6 { 128 } else { 32 };
        let mut protocols: Vec<String> = mappings
            .iter()
            .map(|(m, _)| m.protocol.to_string())
            .collect();
        protocols.sort();
        protocols.dedup();
        for protocol in &protocols {
            let ports: Vec<String> = mappings
                .iter()
                .filter(|(m, _)| m.protocol.to_string() == *protocol)
                .map(|(m, _)| m.host_port.to_string())
                .collect();
            // multiport takes at most 15 ports per rule.
            for group in ports.chunks(15) {
                let _ = writeln!(
                    input,
                    "-A {HOSTPORT_DNAT} {conditions} -p {protocol} -m comment --comment {comment} -m multiport --dports {} -j {chain}",
                    group.join(",")
                );
            }
        }
        for (mapping, target) in &mappings {
            let protocol = mapping.protocol;
            let destination = mapping
                .host_ip
                .map(|ip| format!(" -d {ip}/{host}"))
                .unwrap_or_default();
            let port = format!("-p {protocol} -m {protocol} --dport {}", mapping.host_port);
            if rules.snat {
                if rules.masq_all {
                    let _ = writeln!(input, "-A {chain}{destination} {port} -j {set_mark}");
                } else {
                    let subnet =
                        IpNetwork::new(target.network(), target.prefix()).unwrap_or(**target);
                    let _ = writeln!(
                        input,
                        "-A {chain} -s {subnet}{destination} {port} -j {set_mark}"
                    );
                    if !v6 {
                        let _ = writeln!(
                            input,
                            "-A {chain} -s 127.0.0.1/32{destination} {port} -j {set_mark}"
                        );
                    }
                }
            }
            let to = match target.ip() {
                std::net::IpAddr::V4(ip) => format!("{ip}:{}", mapping.container_port),
                std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", mapping.container_port),
            };
            let _ = writeln!(
                input,
                "-A {chain}{destination} {port} -j DNAT --to-destination {to}"
            );
        }
        input.push_str("COMMIT\n");
        restore(v6, &input)?;
    }
    Ok(())
}

pub(crate) fn del_portmap(owner: &AttachmentId) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        HOSTPORT_DNAT,
        Some("CNI-DN-"),
        &BOTH_FAMILIES,
        owned_by(DNAT, owner),
    )
}

pub(crate) fn has_portmap(
    owner: &AttachmentId,
    rules: &PortmapRules,
) -> Result<bool, FirewallError> {
    let chain = dnat_chain(owner);
    for v6 in [false, true] {
        if !rules.targets.iter().any(|t| t.is_ipv6() == v6) {
            continue;
        }
        let saved = save(v6, "nat")?;
        let jumps = saved.lines().any(|l| {
            l.starts_with(&format!("-A {HOSTPORT_DNAT} ")) && l.ends_with(&format!("-j {chain}"))
        });
        if !jumps || !chain_exists(&saved, &chain) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn gc_portmap(valid: &ValidAttachments) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        HOSTPORT_DNAT,
        Some("CNI-DN-"),
        &BOTH_FAMILIES,
        stale_in(DNAT, valid),
    )
}
