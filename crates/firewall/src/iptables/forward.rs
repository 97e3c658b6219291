//! The firewall plugin's rules, as the reference writes them: `CNI-FORWARD` with the admin
//! chain first, and bridge isolation in `CNI-ISOLATION-STAGE-1`/`-2`.

use ipnetwork::IpNetwork;
use std::fmt::Write;

use super::*;

const FORWARD_CHAIN: &str = "CNI-FORWARD";
const ISOLATION_1: &str = "CNI-ISOLATION-STAGE-1";
const ISOLATION_2: &str = "CNI-ISOLATION-STAGE-2";

/// Where a jump from FORWARD goes in: after the isolation jump when there is one, so no
/// accept ever runs before isolation's drops.
fn forward_position(saved: &str) -> usize {
    let forward: Vec<&str> = saved
        .lines()
        .filter(|l| l.starts_with("-A FORWARD "))
        .collect();
    forward
        .iter()
        .position(|l| l.ends_with(&format!("-j {ISOLATION_1}")))
        .map_or(1, |at| at + 2)
}

pub(super) fn add(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
    admin_chain: &str,
) -> Result<(), FirewallError> {
    all_or_nothing(
        || write_forward(owner, addresses, admin_chain),
        || del(owner, addresses),
    )
}

fn write_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
    admin_chain: &str,
) -> Result<(), FirewallError> {
    let _one_at_a_time = serialized()?;
    let comment = quoted(&comment("", &owner.network, &owner.container_id));
    for v6 in [false, true] {
        let family: Vec<&IpNetwork> = addresses.iter().filter(|a| a.is_ipv6() == v6).collect();
        if family.is_empty() {
            continue;
        }
        let saved = save(v6, "filter")?;
        let mut input = String::from("*filter\n");
        if !chain_exists(&saved, FORWARD_CHAIN) {
            let _ = writeln!(
                input,
                ":{FORWARD_CHAIN} - [0:0]\n-I FORWARD {} -m comment --comment \"CNI firewall plugin rules\" -j {FORWARD_CHAIN}",
                forward_position(&saved)
            );
        }
        if !chain_exists(&saved, admin_chain) {
            // A declaration is split at blanks, never unquoted; the config has no blanks.
            let _ = writeln!(
                input,
                ":{admin_chain} - [0:0]\n-I {FORWARD_CHAIN} 1 -m comment --comment \"CNI firewall plugin admin overrides\" -j {}",
                quoted(admin_chain)
            );
        }
        let host = if v6 { 128 } else { 32 };
        for address in family {
            let ip = format!("{}/{host}", address.ip());
            // Written as iptables-save prints them, so a repeated ADD (a runtime's retry)
            // finds its rules and adds no twins, as the reference's AppendUnique.
            let rules = [
                format!("-A {FORWARD_CHAIN} -d {ip} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment {comment} -j ACCEPT"),
                format!("-A {FORWARD_CHAIN} -d {ip} -m conntrack --ctstate DNAT -m comment --comment {comment} -j ACCEPT"),
                format!("-A {FORWARD_CHAIN} -s {ip} -m comment --comment {comment} -j ACCEPT"),
            ];
            for rule in rules {
                if !saved.lines().any(|line| line == rule) {
                    let _ = writeln!(input, "{rule}");
                }
            }
        }
        if input.lines().count() > 1 {
            input.push_str("COMMIT\n");
            restore(v6, &input)?;
        }
    }
    Ok(())
}

/// `addresses` (from prevResult) name the families ADD wrote rules for, which saves the
/// other family's save; without them both are read.
pub(super) fn del(owner: &AttachmentId, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    let families: Vec<bool> = if addresses.is_empty() {
        BOTH_FAMILIES.to_vec()
    } else {
        BOTH_FAMILIES
            .into_iter()
            .filter(|&v6| addresses.iter().any(|a| a.is_ipv6() == v6))
            .collect()
    };
    remove_where(
        "filter",
        FORWARD_CHAIN,
        None,
        &families,
        owned_by("", owner),
    )
}

pub(super) fn has(owner: &AttachmentId, addresses: &[IpNetwork]) -> Result<bool, FirewallError> {
    let ours = owned_by("", owner);
    for v6 in [false, true] {
        let family: Vec<&IpNetwork> = addresses.iter().filter(|a| a.is_ipv6() == v6).collect();
        if family.is_empty() {
            continue;
        }
        let saved = save(v6, "filter")?;
        let host = if v6 { 128 } else { 32 };
        let present = family.iter().all(|address| {
            let source = format!("-A {FORWARD_CHAIN} -s {}/{host} ", address.ip());
            saved
                .lines()
                .any(|l| l.starts_with(&source) && comments_of(l).iter().any(|c| ours(c)))
        });
        if !present {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) fn gc(valid: &ValidAttachments) -> Result<(), FirewallError> {
    remove_where(
        "filter",
        FORWARD_CHAIN,
        None,
        &BOTH_FAMILIES,
        stale_in("", valid),
    )
}

/// Traffic entering from `bridge` may not leave into another isolated bridge (the
/// reference's two-stage isolation chains), added once per bridge. iptables-save prints
/// interface names bare, and restore reads them quoted.
pub(super) fn isolate_bridge(bridge: &str) -> Result<(), FirewallError> {
    let _one_at_a_time = serialized()?;
    for v6 in [false, true] {
        let saved = match save(v6, "filter") {
            Err(_) if v6 => continue,
            other => other?,
        };
        let mut input = String::from("*filter\n");
        if !chain_exists(&saved, ISOLATION_1) {
            let _ = writeln!(
                input,
                ":{ISOLATION_1} - [0:0]\n-I FORWARD 1 -j {ISOLATION_1}"
            );
        }
        if !chain_exists(&saved, ISOLATION_2) {
            let _ = writeln!(input, ":{ISOLATION_2} - [0:0]");
        }
        let name = quoted(bridge);
        for (saved_as, rule) in [
            (
                format!("-A {ISOLATION_1} -i {bridge} ! -o {bridge} -j {ISOLATION_2}"),
                format!("-A {ISOLATION_1} -i {name} ! -o {name} -j {ISOLATION_2}"),
            ),
            (
                format!("-A {ISOLATION_2} -o {bridge} -j DROP"),
                format!("-A {ISOLATION_2} -o {name} -j DROP"),
            ),
        ] {
            if !saved.lines().any(|l| l == saved_as) {
                let _ = writeln!(input, "{rule}");
            }
        }
        if input.len() > "*filter\n".len() {
            input.push_str("COMMIT\n");
            restore(v6, &input)?;
        }
    }
    Ok(())
}
