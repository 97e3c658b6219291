//! The iptables backend, compatible with the reference: per-attachment chain
//! `CNI-<sha512(network + containerID)[:24]>` in the nat table, entered from POSTROUTING by
//! source address, every rule commented `name: "<network>" id: "<containerID>"`.
//!
//! ADD is one `iptables-restore --noflush` per address family. DEL and GC read the nat table
//! once (`iptables-save`) to find the rules by their comment and chain, then remove them in
//! one restore, so they work without the container's addresses.

use ipnetwork::IpNetwork;
use std::fmt::Write;
use std::thread;
use std::time::Duration;

use super::{digest, run, FirewallError, Owner};
use crate::cni::AttachmentKey;

/// Legacy iptables fails instead of waiting when another process holds the xtables lock.
const LOCK_ATTEMPTS: u32 = 20;

fn chain_name(owner: Owner) -> String {
    format!(
        "CNI-{}",
        digest(&format!("{}{}", owner.network, owner.container_id), 24)
    )
}

fn comment(network: &str, container_id: &str) -> String {
    format!(r#""name: \"{network}\" id: \"{container_id}\"""#)
}

fn tools(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("ip6tables-restore", "ip6tables-save")
    } else {
        ("iptables-restore", "iptables-save")
    }
}

fn restore(v6: bool, input: &str) -> Result<(), FirewallError> {
    let (tool, _) = tools(v6);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run(tool, &["--noflush"], input) {
            Err(FirewallError::Failed { stderr, .. })
                if stderr.contains("xtables lock") && attempt < LOCK_ATTEMPTS =>
            {
                thread::sleep(Duration::from_millis(50));
            }
            other => return other.map(drop),
        }
    }
}

fn save(v6: bool) -> Result<String, FirewallError> {
    run(tools(v6).1, &["-t", "nat"], "")
}

pub(super) fn add_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    let chain = chain_name(owner);
    let comment = comment(owner.network, owner.container_id);
    for v6 in [false, true] {
        let family: Vec<&IpNetwork> = addresses.iter().filter(|a| a.is_ipv6() == v6).collect();
        if family.is_empty() {
            continue;
        }
        let (multicast, host) = if v6 {
            ("ff00::/8", 128)
        } else {
            ("224.0.0.0/4", 32)
        };
        let mut input = format!("*nat\n:{chain} - [0:0]\n");
        for address in &family {
            let subnet = IpNetwork::new(address.network(), address.prefix()).unwrap_or(**address);
            let _ = writeln!(
                input,
                "-A {chain} -d {subnet} -m comment --comment {comment} -j ACCEPT"
            );
        }
        let _ = writeln!(
            input,
            "-A {chain} ! -d {multicast} -m comment --comment {comment} -j MASQUERADE"
        );
        for address in &family {
            let _ = writeln!(
                input,
                "-A POSTROUTING -s {}/{host} -m comment --comment {comment} -j {chain}",
                address.ip()
            );
        }
        input.push_str("COMMIT\n");
        restore(v6, &input)?;
    }
    Ok(())
}

/// The container ID in a rule's comment, when the rule belongs to `network`.
fn rule_container<'a>(line: &'a str, network: &str) -> Option<&'a str> {
    let marker = format!(r#"name: \"{network}\" id: \""#);
    let start = line.find(&marker)? + marker.len();
    let rest = &line[start..];
    rest.find(r#"\""#).map(|end| &rest[..end])
}

/// Removes the POSTROUTING rules jumping to `CNI-` chains for which `stale` says so, and
/// those chains, in one restore per family.
fn remove_where(network: &str, stale: impl Fn(&str) -> bool) -> Result<(), FirewallError> {
    for v6 in [false, true] {
        let saved = match save(v6) {
            Ok(saved) => saved,
            // No ip6tables support on this kernel: nothing of ours can be there.
            Err(_) if v6 => continue,
            Err(e) => return Err(e),
        };
        let mut input = String::from("*nat\n");
        let mut chains = Vec::new();
        for line in saved.lines() {
            let Some(rule) = line.strip_prefix("-A POSTROUTING ") else {
                continue;
            };
            let Some(container_id) = rule_container(rule, network) else {
                continue;
            };
            let Some(chain) = rule.split(" -j ").nth(1).filter(|c| c.starts_with("CNI-")) else {
                continue;
            };
            if stale(container_id) {
                let _ = writeln!(input, "-D POSTROUTING {rule}");
                chains.push(chain.trim().to_string());
            }
        }
        chains.sort();
        chains.dedup();
        for chain in &chains {
            if saved.lines().any(|l| l.starts_with(&format!(":{chain} "))) {
                let _ = writeln!(input, "-F {chain}\n-X {chain}");
            }
        }
        if input.len() > "*nat\n".len() {
            input.push_str("COMMIT\n");
            restore(v6, &input)?;
        }
    }
    Ok(())
}

pub(super) fn del_masquerade(owner: Owner) -> Result<(), FirewallError> {
    remove_where(owner.network, |container_id| {
        container_id == owner.container_id
    })
}

pub(super) fn has_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<bool, FirewallError> {
    let chain = chain_name(owner);
    for v6 in [false, true] {
        let family: Vec<&IpNetwork> = addresses.iter().filter(|a| a.is_ipv6() == v6).collect();
        if family.is_empty() {
            continue;
        }
        let saved = save(v6)?;
        let host = if v6 { 128 } else { 32 };
        let present = family.iter().all(|address| {
            let source = format!("-s {}/{host} ", address.ip());
            saved.lines().any(|l| {
                l.starts_with("-A POSTROUTING ")
                    && l.contains(&source)
                    && l.ends_with(&format!("-j {chain}"))
            })
        });
        if !present {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The reference's comment names no interface, so an attachment counts as valid when any
/// valid attachment has its container ID.
pub(super) fn gc_masquerade(network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
    remove_where(network, |container_id| {
        !valid.iter().any(|k| k.container_id == container_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_comments_match_the_reference() {
        let owner = Owner {
            network: "mynet",
            container_id: "abc",
            ifname: "eth0",
        };
        assert_eq!(chain_name(owner).len(), 28);
        assert!(chain_name(owner).starts_with("CNI-"));
        let line = r#"-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "name: \"mynet\" id: \"abc\"" -j CNI-0123"#;
        assert_eq!(rule_container(line, "mynet"), Some("abc"));
        assert_eq!(rule_container(line, "other"), None);
        assert_eq!(comment("mynet", "abc"), r#""name: \"mynet\" id: \"abc\"""#);
    }
}
