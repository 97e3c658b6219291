//! Port mappings, as the reference's portmap writes them: `CNI-HOSTPORT-DNAT`,
//! `CNI-HOSTPORT-SETMARK`, `CNI-HOSTPORT-MASQ` and a `CNI-DN-…` chain per container.

use ipnetwork::IpNetwork;
use std::fmt::Write;

use super::*;
use crate::entry::{PortMap, Protocol, Snat};

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
/// existing chain in a `--noflush` restore would flush other containers' rules from it. With
/// an admin's marking chain, marking and masquerading are the admin's.
fn shared_chains(saved: &str, mark: &MasqueradeMark, input: &mut String) {
    if !chain_exists(saved, HOSTPORT_DNAT) {
        let _ = writeln!(input, ":{HOSTPORT_DNAT} - [0:0]");
        for parent in ["PREROUTING", "OUTPUT"] {
            let _ = writeln!(
                input,
                "-A {parent} -m addrtype --dst-type LOCAL -j {HOSTPORT_DNAT}"
            );
        }
    }
    let MasqueradeMark::Bit(bit) = mark else {
        return;
    };
    let mark = format!("{:#x}", 1u32 << bit);
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

pub(super) fn add(
    owner: &AttachmentId,
    maps: &[&PortMap],
    mark: &MasqueradeMark,
) -> Result<(), FirewallError> {
    all_or_nothing(|| write(owner, maps, mark), || del(owner))
}

fn write(
    owner: &AttachmentId,
    maps: &[&PortMap],
    mark: &MasqueradeMark,
) -> Result<(), FirewallError> {
    let _one_at_a_time = serialized()?;
    for v6 in [false, true] {
        let family: Vec<&PortMap> = maps
            .iter()
            .filter(|m| m.target.is_ipv6() == v6)
            .copied()
            .collect();
        if family.is_empty() {
            continue;
        }
        let saved = save(v6, "nat")?;
        restore(v6, &restore_input(&saved, owner, &family, mark))?;
    }
    Ok(())
}

/// The restore input that maps `family` (the mappings of one address family), given the
/// table as `saved`.
fn restore_input(
    saved: &str,
    owner: &AttachmentId,
    family: &[&PortMap],
    mark: &MasqueradeMark,
) -> String {
    let chain = dnat_chain(owner);
    let comment = quoted(&comment(DNAT, &owner.network, &owner.container_id));
    let ours = owned_by(DNAT, owner);
    let set_mark = quoted(match mark {
        MasqueradeMark::Bit(_) => HOSTPORT_SETMARK,
        MasqueradeMark::Chain(chain) => chain,
    });
    let mut input = String::from("*nat\n");
    shared_chains(saved, mark, &mut input);
    // Declaring the container's chain empties it; a repeated ADD (a runtime's retry) also
    // drops its old jumps, so it ends with one set, for the ports asked now.
    let _ = writeln!(input, ":{chain} - [0:0]");
    let jump_prefix = format!("-A {HOSTPORT_DNAT} ");
    for old_jump in saved.lines().filter_map(|l| l.strip_prefix(&jump_prefix)) {
        if comments_of(old_jump).iter().any(|c| ours(c)) {
            let _ = writeln!(input, "-D {HOSTPORT_DNAT} {old_jump}");
        }
    }
    // The admin's tokens for the family, each one argument as the reference passes them.
    let conditions: Vec<String> = family
        .first()
        .map(|m| m.conditions.iter().map(|c| quoted(c)).collect())
        .unwrap_or_default();
    let conditions = conditions.join(" ");
    let mut protocols: Vec<Protocol> = family.iter().map(|m| m.mapping.protocol).collect();
    protocols.sort_by_key(|p| p.to_string());
    protocols.dedup();
    for protocol in protocols {
        let ports: Vec<String> = family
            .iter()
            .filter(|m| m.mapping.protocol == protocol)
            .map(|m| m.mapping.host_port.to_string())
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
    for map in family {
        let (mapping, target) = (&map.mapping, map.target);
        let (protocol, host) = (mapping.protocol, if target.is_ipv6() { 128 } else { 32 });
        let destination = mapping
            .host_ip
            .map(|ip| format!(" -d {ip}/{host}"))
            .unwrap_or_default();
        let port = format!("-p {protocol} -m {protocol} --dport {}", mapping.host_port);
        match map.snat {
            Snat::Off => {}
            Snat::All => {
                let _ = writeln!(input, "-A {chain}{destination} {port} -j {set_mark}");
            }
            Snat::Local => {
                let subnet = IpNetwork::new(target.network(), target.prefix()).unwrap_or(target);
                let _ = writeln!(
                    input,
                    "-A {chain} -s {subnet}{destination} {port} -j {set_mark}"
                );
                if target.is_ipv4() {
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
    input
}

pub(super) fn del(owner: &AttachmentId) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        HOSTPORT_DNAT,
        Some("CNI-DN-"),
        &BOTH_FAMILIES,
        owned_by(DNAT, owner),
    )
}

/// Whether the jumps to the owner's chain, and the chain, are there in each family it has
/// mappings of.
pub(super) fn has(owner: &AttachmentId, maps: &[&PortMap]) -> Result<bool, FirewallError> {
    let chain = dnat_chain(owner);
    for v6 in [false, true] {
        if !maps.iter().any(|m| m.target.is_ipv6() == v6) {
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

pub(super) fn gc(valid: &ValidAttachments) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        HOSTPORT_DNAT,
        Some("CNI-DN-"),
        &BOTH_FAMILIES,
        stale_in(DNAT, valid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::PortMapping;

    fn map(host_port: u16, target: &str, snat: Snat, conditions: &[&str]) -> PortMap {
        PortMap {
            mapping: PortMapping {
                host_port,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            target: target.parse().expect("a valid literal"),
            snat,
            conditions: conditions.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn has_line(input: &str, line: &str) {
        assert!(
            input.lines().any(|l| l == line),
            "{line:?} not in:\n{input}"
        );
    }

    #[test]
    fn a_mapping_writes_the_references_chains_with_its_own_mark_bit() {
        let owner = AttachmentId::new("net", "abc", "eth0");
        let one = map(8080, "10.88.0.5/16", Snat::Local, &["-s", "10.0.0.0/8"]);
        let input = restore_input("", &owner, &[&one], &MasqueradeMark::Bit(5));
        let chain = dnat_chain(&owner);
        let comment = quoted(&comment(DNAT, "net", "abc"));
        for line in [
            format!(":{HOSTPORT_DNAT} - [0:0]"),
            format!("-A PREROUTING -m addrtype --dst-type LOCAL -j {HOSTPORT_DNAT}"),
            format!("-A {HOSTPORT_SETMARK} -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x20/0x20"),
            format!("-A {HOSTPORT_MASQ} -m mark --mark 0x20/0x20 -j MASQUERADE"),
            format!("-A {HOSTPORT_DNAT} \"-s\" \"10.0.0.0/8\" -p tcp -m comment --comment {comment} -m multiport --dports 8080 -j {chain}"),
            format!("-A {chain} -s 10.88.0.0/16 -p tcp -m tcp --dport 8080 -j \"{HOSTPORT_SETMARK}\""),
            format!("-A {chain} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j \"{HOSTPORT_SETMARK}\""),
            format!("-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.5:80"),
        ] {
            has_line(&input, &line);
        }
        assert!(input.ends_with("COMMIT\n"), "{input}");
    }

    #[test]
    fn an_admins_marking_chain_replaces_ours_and_masquerade_follows_snat() {
        let owner = AttachmentId::new("net", "abc", "eth0");
        let chain = dnat_chain(&owner);
        let mark = MasqueradeMark::Chain("KUBE-MARK-MASQ".to_string());
        let all = map(8080, "fd00::5/64", Snat::All, &[]);
        let input = restore_input("", &owner, &[&all], &mark);
        assert!(
            !input.contains(HOSTPORT_SETMARK) && !input.contains(HOSTPORT_MASQ),
            "{input}"
        );
        has_line(
            &input,
            &format!("-A {chain} -p tcp -m tcp --dport 8080 -j \"KUBE-MARK-MASQ\""),
        );
        assert!(input.contains("--to-destination [fd00::5]:80"), "{input}");
        let off = map(8080, "10.88.0.5/16", Snat::Off, &[]);
        let input = restore_input("", &owner, &[&off], &MasqueradeMark::Bit(13));
        assert!(!input.contains(&format!("-A {chain} -s ")), "{input}");
        // Where the shared chains exist, only the container's own is declared.
        let saved = format!(
            ":{HOSTPORT_DNAT} - [0:0]\n:{HOSTPORT_SETMARK} - [0:0]\n:{HOSTPORT_MASQ} - [0:0]\n"
        );
        let input = restore_input(&saved, &owner, &[&off], &MasqueradeMark::Bit(13));
        assert_eq!(input.matches(" - [0:0]").count(), 1, "{input}");
    }
}
