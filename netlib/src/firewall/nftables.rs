//! The nftables backend: table `inet ferrocni`.
//!
//! `postrouting` looks the source address up in a verdict map (`masq4`/`masq6`) whose
//! element for a container jumps to that attachment's chain `masq-<hash>`; map elements carry
//! the owner as their comment. A container's ADD or DEL therefore costs one map element and
//! one chain, whatever the number of containers, and each change is one atomic batch.

use ipnetwork::IpNetwork;
use serde_json::Value;
use std::fmt::Write;

use super::{digest, run, FirewallError, Owner};
use crate::cni::AttachmentKey;

const TABLE: &str = "inet ferrocni";

fn chain_name(owner: Owner) -> String {
    format!(
        "masq-{}",
        digest(
            &format!("{}/{}/{}", owner.network, owner.container_id, owner.ifname),
            16
        )
    )
}

fn comment(owner: Owner) -> String {
    format!("{}/{}/{}", owner.network, owner.container_id, owner.ifname)
}

fn map_of(address: &IpNetwork) -> &'static str {
    if address.is_ipv4() {
        "masq4"
    } else {
        "masq6"
    }
}

/// The table, maps and base chain, declared idempotently. The base chain is flushed and
/// refilled in the same transaction, so concurrent plugins never see it empty or doubled.
fn base() -> String {
    format!(
        "add table {TABLE}\n\
         add map {TABLE} masq4 {{ type ipv4_addr : verdict; }}\n\
         add map {TABLE} masq6 {{ type ipv6_addr : verdict; }}\n\
         add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain {TABLE} postrouting\n\
         add rule {TABLE} postrouting ip saddr vmap @masq4\n\
         add rule {TABLE} postrouting ip6 saddr vmap @masq6\n"
    )
}

fn apply(batch: &str) -> Result<(), FirewallError> {
    run("nft", &["-f", "-"], batch).map(drop)
}

pub(super) fn add_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    let chain = chain_name(owner);
    let mut batch = base();
    let _ = writeln!(
        batch,
        "add chain {TABLE} {chain}\nflush chain {TABLE} {chain}"
    );
    for address in addresses {
        let family = if address.is_ipv4() { "ip" } else { "ip6" };
        let subnet = IpNetwork::new(address.network(), address.prefix()).unwrap_or(*address);
        let _ = writeln!(
            batch,
            "add rule {TABLE} {chain} {family} daddr {subnet} return"
        );
    }
    if addresses.iter().any(IpNetwork::is_ipv4) {
        let _ = writeln!(
            batch,
            "add rule {TABLE} {chain} ip daddr != 224.0.0.0/4 masquerade"
        );
    }
    if addresses.iter().any(IpNetwork::is_ipv6) {
        let _ = writeln!(
            batch,
            "add rule {TABLE} {chain} ip6 daddr != ff00::/8 masquerade"
        );
    }
    for address in addresses {
        let _ = writeln!(
            batch,
            "add element {TABLE} {} {{ {} comment \"{}\" : jump {chain} }}",
            map_of(address),
            address.ip(),
            comment(owner)
        );
    }
    apply(&batch)
}

/// Everything of ours in the table, as (map, address, owner comment, target chain).
struct Element {
    map: String,
    address: String,
    comment: String,
    chain: String,
}

fn list() -> Result<(Vec<Element>, Vec<String>), FirewallError> {
    let text = match run("nft", &["-j", "list", "table", "inet", "ferrocni"], "") {
        Ok(text) => text,
        // No table yet: nothing of ours exists.
        Err(FirewallError::Failed { stderr, .. }) if stderr.contains("No such file") => {
            return Ok((Vec::new(), Vec::new()))
        }
        Err(e) => return Err(e),
    };
    let parse_error = |reason: &str| FirewallError::Parse {
        tool: "nft",
        reason: reason.to_string(),
    };
    let document: Value = serde_json::from_str(&text).map_err(|e| parse_error(&e.to_string()))?;
    let objects = document["nftables"]
        .as_array()
        .ok_or_else(|| parse_error("no nftables array"))?;
    let mut elements = Vec::new();
    let mut chains = Vec::new();
    for object in objects {
        if let Some(chain) = object["chain"]["name"].as_str() {
            chains.push(chain.to_string());
        }
        let map = &object["map"];
        let Some(map_name) = map["name"].as_str() else {
            continue;
        };
        for pair in map["elem"].as_array().into_iter().flatten() {
            let (key, verdict) = (&pair[0], &pair[1]);
            let (address, comment) = match key {
                Value::String(address) => (address.clone(), String::new()),
                _ => (
                    key["elem"]["val"].as_str().unwrap_or_default().to_string(),
                    key["elem"]["comment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
            };
            elements.push(Element {
                map: map_name.to_string(),
                address,
                comment,
                chain: verdict["jump"]["target"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
    }
    Ok((elements, chains))
}

/// Deletes elements and the chains they jump to, in one batch.
fn remove(elements: &[&Element], chains: &[String]) -> Result<(), FirewallError> {
    let mut batch = String::new();
    for element in elements {
        let _ = writeln!(
            batch,
            "delete element {TABLE} {} {{ {} }}",
            element.map, element.address
        );
    }
    let mut targets: Vec<&String> = elements
        .iter()
        .map(|e| &e.chain)
        .filter(|c| chains.contains(c))
        .collect();
    targets.sort();
    targets.dedup();
    for chain in targets {
        let _ = writeln!(
            batch,
            "flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}"
        );
    }
    if batch.is_empty() {
        return Ok(());
    }
    apply(&batch)
}

pub(super) fn del_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    if !addresses.is_empty() {
        // One process: declare what we are about to delete, so deleting is idempotent.
        let chain = chain_name(owner);
        let mut batch = base();
        let _ = writeln!(batch, "add chain {TABLE} {chain}");
        for address in addresses {
            let _ = writeln!(
                batch,
                "add element {TABLE} {0} {{ {1} comment \"{2}\" : jump {chain} }}\n\
                 delete element {TABLE} {0} {{ {1} }}",
                map_of(address),
                address.ip(),
                comment(owner)
            );
        }
        let _ = writeln!(
            batch,
            "flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}"
        );
        if apply(&batch).is_ok() {
            return Ok(());
        }
        // The address may meanwhile belong to another attachment: fall back to a listing.
    }
    let (elements, chains) = list()?;
    let ours = comment(owner);
    let mine: Vec<&Element> = elements.iter().filter(|e| e.comment == ours).collect();
    remove(&mine, &chains)?;
    let chain = chain_name(owner);
    if mine.is_empty() && chains.contains(&chain) {
        apply(&format!(
            "flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}\n"
        ))?;
    }
    Ok(())
}

pub(super) fn has_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<bool, FirewallError> {
    let (elements, chains) = list()?;
    let chain = chain_name(owner);
    Ok(chains.contains(&chain)
        && addresses.iter().all(|address| {
            elements
                .iter()
                .any(|e| e.chain == chain && e.address == address.ip().to_string())
        }))
}

pub(super) fn gc_masquerade(network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
    let (elements, chains) = list()?;
    let prefix = format!("{network}/");
    let stale: Vec<&Element> = elements
        .iter()
        .filter(|e| {
            let Some(rest) = e.comment.strip_prefix(&prefix) else {
                return false;
            };
            let Some((container_id, ifname)) = rest.split_once('/') else {
                return false;
            };
            !Owner {
                network,
                container_id,
                ifname,
            }
            .is_valid(valid)
        })
        .collect();
    remove(&stale, &chains)
}
