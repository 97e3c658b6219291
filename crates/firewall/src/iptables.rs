//! The iptables backend, compatible with the reference: per-attachment chain
//! `CNI-<sha512(network + containerID)[:24]>` in the nat table, entered from POSTROUTING by
//! source address, every rule commented `name: "<network>" id: "<containerID>"`.
//!
//! ADD is one `iptables-restore --noflush` per address family. DEL and GC read the nat table
//! once (`iptables-save`) to find the rules by their comment and chain, then remove them in
//! one restore, so they work without the container's addresses.
//!
//! Every value in restore input is one quoted argument (see [`quoted`]), as the reference
//! passes each as its own argv element: an interface name may hold `"` or `#`, and an
//! admin's condition a space.

use ipnetwork::IpNetwork;
use std::collections::HashSet;
use std::fmt::Write;
use std::thread;
use std::time::Duration;

use super::{run, FirewallError, PortmapRules};
use cni::id::{digest, head, network_in_short_tag, shortened};
use cni::{AttachmentId, ValidAttachments};
use kernel::lock::FileLock;
use kernel::tool::ToolError;

/// Legacy iptables fails instead of waiting when another process holds the xtables lock.
const LOCK_ATTEMPTS: u32 = 20;

fn chain_name(owner: &AttachmentId) -> String {
    format!(
        "CNI-{}",
        digest(&format!("{}{}", owner.network, owner.container_id), 24)
    )
}

/// The longest comment iptables keeps (XT_MAX_COMMENT_LEN less its NUL): iptables-nft cuts
/// a longer one silently, legacy iptables refuses it.
const COMMENT_MAX: usize = 255;

/// What starts the comment of portmap's DNAT jumps; the other rules' comments start with
/// the name.
const DNAT: &str = "dnat ";

/// `name: "<network>" id: "<containerID>"` after `kind` (empty, or [`DNAT`]), as the
/// reference writes it.
fn whole_comment(kind: &str, network: &str, container_id: &str) -> String {
    format!(r#"{kind}name: "{network}" id: "{container_id}""#)
}

/// The comment of an owner's rules: [`whole_comment`] when it fits; else with the container
/// ID (and a long network name) shortened to a head and a hash, so that it fits and stays
/// unique.
fn comment(kind: &str, network: &str, container_id: &str) -> String {
    let whole = whole_comment(kind, network, container_id);
    if whole.len() <= COMMENT_MAX {
        return whole;
    }
    let network = network_in_short_tag(network);
    let room = COMMENT_MAX - whole_comment(kind, &network, "").len();
    whole_comment(kind, &network, &shortened(container_id, room))
}

/// Every comment an owner's rules may carry: [`comment`], and what became of the whole
/// comment where it did not fit, so that DEL, CHECK and GC still find those rules: cut by
/// iptables-nft, as earlier versions and the reference's masquerade left it, or first
/// trimmed by the reference's portmap to 253 bytes and `...`, which iptables-nft then cuts.
fn comments(kind: &str, network: &str, container_id: &str) -> Vec<String> {
    let whole = whole_comment(kind, network, container_id);
    if whole.len() <= COMMENT_MAX {
        return vec![whole];
    }
    let cut = head(&whole, COMMENT_MAX).to_string();
    let trimmed = format!("{}..", head(&whole, COMMENT_MAX - 2));
    vec![comment(kind, network, container_id), cut, trimmed]
}

/// Whether a comment is of `network`'s rules of `kind`, in any of its forms.
fn of_network(comment: &str, kind: &str, network: &str) -> bool {
    [network, &network_in_short_tag(network)].iter().any(|n| {
        let without_id = whole_comment(kind, n, "");
        comment.starts_with(&without_id[..without_id.len() - 1])
    })
}

/// `value` as one argument of an iptables-restore line, quoted and escaped as iptables-save
/// prints comments: nothing in it (a space, `"`, `#`) is read as syntax.
fn quoted(value: &str) -> String {
    let mut argument = String::with_capacity(value.len() + 2);
    argument.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            argument.push('\\');
        }
        argument.push(c);
    }
    argument.push('"');
    argument
}

/// The comments of a rule as iptables-save prints it: `--comment` and one argument, quoted
/// as [`quoted`] quotes (or bare, without characters that need quotes).
fn comments_of(rule: &str) -> Vec<String> {
    const OPTION: &str = "--comment ";
    let mut found = Vec::new();
    for (at, _) in rule.match_indices(OPTION) {
        let argument = &rule[at + OPTION.len()..];
        let mut rest = argument.chars();
        let mut comment = String::new();
        if argument.starts_with('"') {
            rest.next();
            while let Some(c) = rest.next() {
                match c {
                    '\\' => comment.extend(rest.next()),
                    '"' => break,
                    c => comment.push(c),
                }
            }
        } else {
            comment.extend(rest.take_while(|c| *c != ' '));
        }
        found.push(comment);
    }
    found
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
            Err(FirewallError::Tool(ToolError::Failed { stderr, .. }))
                if stderr.contains("xtables lock") && attempt < LOCK_ATTEMPTS =>
            {
                thread::sleep(Duration::from_millis(50));
            }
            other => return other.map(drop),
        }
    }
}

/// Changes that read the rules first (save, then restore what is missing) run one at a
/// time per namespace: restore empties every chain it declares, so two plugins each
/// declaring a chain they found missing would wipe each other's rules, and a rule added
/// between another's save and restore would be missed by its DEL.
fn serialized() -> Result<FileLock, FirewallError> {
    FileLock::this_netns().map_err(FirewallError::Lock)
}

fn save(v6: bool, table: &str) -> Result<String, FirewallError> {
    run(tools(v6).1, &["-t", table], "")
}

/// Runs an ADD, which writes each address family in a restore of its own; when one fails,
/// removes what the others wrote, so that a failed ADD leaves nothing behind. (`remove`
/// takes the lock that `add` holds while it runs.)
fn all_or_nothing(
    add: impl FnOnce() -> Result<(), FirewallError>,
    remove: impl FnOnce() -> Result<(), FirewallError>,
) -> Result<(), FirewallError> {
    add().inspect_err(|_| {
        let _ = remove();
    })
}

pub(super) fn add_masquerade(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<(), FirewallError> {
    all_or_nothing(
        || write_masquerade(owner, addresses),
        || del_masquerade(owner),
    )
}

fn write_masquerade(owner: &AttachmentId, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    let chain = chain_name(owner);
    let comment = quoted(&comment("", &owner.network, &owner.container_id));
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

/// Picks the rules of `owner` of `kind`, by their comments.
fn owned_by(kind: &str, owner: &AttachmentId) -> impl Fn(&str) -> bool {
    let ours = comments(kind, &owner.network, &owner.container_id);
    move |comment| ours.iter().any(|c| c == comment)
}

/// Picks the rules of `kind` of the containers of `valid`'s network that are not in it.
/// The reference's comment names no interface, so an attachment counts as valid when any
/// valid attachment has its container ID.
fn stale_in<'a>(kind: &'a str, valid: &'a ValidAttachments) -> impl Fn(&str) -> bool + 'a {
    let kept: HashSet<String> = valid
        .iter()
        .flat_map(|id| comments(kind, valid.network(), &id.container_id))
        .collect();
    move |comment| of_network(comment, kind, valid.network()) && !kept.contains(comment)
}

/// Both families, for removals that cannot know which ones hold rules.
const BOTH_FAMILIES: [bool; 2] = [false, true];

/// Removes the rules of `parent` in `table` with a comment `select` picks, and the
/// per-container chains (named with `prefix`) they jump to, in one restore per family of
/// `families` (`true` for IPv6).
fn remove_where(
    table: &str,
    parent: &str,
    prefix: Option<&str>,
    families: &[bool],
    select: impl Fn(&str) -> bool,
) -> Result<(), FirewallError> {
    let _one_at_a_time = serialized()?;
    let rule_prefix = format!("-A {parent} ");
    let header = format!("*{table}\n");
    for &v6 in families {
        let saved = match save(v6, table) {
            Ok(saved) => saved,
            // No ip6tables support on this kernel: nothing of ours can be there.
            Err(_) if v6 => continue,
            Err(e) => return Err(e),
        };
        let mut input = header.clone();
        let mut chains = Vec::new();
        for line in saved.lines() {
            let Some(rule) = line.strip_prefix(&rule_prefix) else {
                continue;
            };
            if !comments_of(rule).iter().any(|c| select(c)) {
                continue;
            }
            let _ = writeln!(input, "-D {parent} {rule}");
            let jump = rule.split(" -j ").nth(1).map(str::trim);
            if let (Some(chain), Some(prefix)) = (jump, prefix) {
                if chain.starts_with(prefix) {
                    chains.push(chain.to_string());
                }
            }
        }
        chains.sort();
        chains.dedup();
        for chain in &chains {
            if saved.lines().any(|l| l.starts_with(&format!(":{chain} "))) {
                let _ = writeln!(input, "-F {chain}\n-X {chain}");
            }
        }
        if input.len() > header.len() {
            input.push_str("COMMIT\n");
            restore(v6, &input)?;
        }
    }
    Ok(())
}

pub(super) fn del_masquerade(owner: &AttachmentId) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        "POSTROUTING",
        Some("CNI-"),
        &BOTH_FAMILIES,
        owned_by("", owner),
    )
}

pub(super) fn has_masquerade(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<bool, FirewallError> {
    let chain = chain_name(owner);
    for v6 in [false, true] {
        let family: Vec<&IpNetwork> = addresses.iter().filter(|a| a.is_ipv6() == v6).collect();
        if family.is_empty() {
            continue;
        }
        let saved = save(v6, "nat")?;
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

pub(super) fn gc_masquerade(valid: &ValidAttachments) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        "POSTROUTING",
        Some("CNI-"),
        &BOTH_FAMILIES,
        stale_in("", valid),
    )
}

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

fn chain_exists(saved: &str, chain: &str) -> bool {
    saved.lines().any(|l| l.starts_with(&format!(":{chain} ")))
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

pub(super) fn add_portmap(owner: &AttachmentId, rules: &PortmapRules) -> Result<(), FirewallError> {
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
        let mappings: Vec<(&super::PortMapping, &IpNetwork)> = rules
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

pub(super) fn del_portmap(owner: &AttachmentId) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        HOSTPORT_DNAT,
        Some("CNI-DN-"),
        &BOTH_FAMILIES,
        owned_by(DNAT, owner),
    )
}

pub(super) fn has_portmap(
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

pub(super) fn gc_portmap(valid: &ValidAttachments) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        HOSTPORT_DNAT,
        Some("CNI-DN-"),
        &BOTH_FAMILIES,
        stale_in(DNAT, valid),
    )
}

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

pub(super) fn allow_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
    admin_chain: &str,
) -> Result<(), FirewallError> {
    all_or_nothing(
        || write_forward(owner, addresses, admin_chain),
        || del_forward(owner, addresses),
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
pub(super) fn del_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<(), FirewallError> {
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

pub(super) fn has_forward(
    owner: &AttachmentId,
    addresses: &[IpNetwork],
) -> Result<bool, FirewallError> {
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

pub(super) fn gc_forward(valid: &ValidAttachments) -> Result<(), FirewallError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_comments_match_the_reference() {
        let owner = &AttachmentId::new("mynet", "abc", "eth0");
        assert_eq!(chain_name(owner).len(), 28);
        assert!(chain_name(owner).starts_with("CNI-"));
        let line = r#"-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "name: \"mynet\" id: \"abc\"" -j CNI-0123"#;
        assert_eq!(comments_of(line), [r#"name: "mynet" id: "abc""#]);
        assert!(owned_by("", owner)(&comments_of(line)[0]));
        assert!(!owned_by(DNAT, owner)(&comments_of(line)[0]));
        assert_eq!(
            quoted(&comment("", "mynet", "abc")),
            r#""name: \"mynet\" id: \"abc\"""#
        );
        assert_eq!(
            comment(DNAT, "mynet", "abc"),
            r#"dnat name: "mynet" id: "abc""#
        );
    }

    #[test]
    fn long_comments_fit_stay_unique_and_keep_their_old_forms() {
        let (long, alike) = ("c".repeat(300), format!("{}d", "c".repeat(299)));
        let (a, b) = (comment(DNAT, "net", &long), comment(DNAT, "net", &alike));
        assert!(a.len() <= COMMENT_MAX && b.len() <= COMMENT_MAX, "{a}");
        assert_ne!(a, b);
        assert!(of_network(&a, DNAT, "net") && !of_network(&a, "", "net"));
        let old = comments(DNAT, "net", &long);
        assert_eq!(old[0], a);
        assert_eq!(old[1].len(), COMMENT_MAX);
        assert!(old[2].ends_with("cc.."), "{}", old[2]);
        let network = "n".repeat(250);
        let short = comment("", &network, "abc");
        assert!(short.len() <= COMMENT_MAX, "{short}");
        assert!(of_network(&short, "", &network));
        assert!(!of_network(&short, "", "n"));
    }

    #[test]
    fn values_are_one_quoted_argument_and_comments_read_back() {
        assert_eq!(quoted(r#"br"x\y"#), r#""br\"x\\y""#);
        let rule = format!(
            "-A X -i e#x -m comment --comment {} -m comment --comment bare -j Y",
            quoted(r#"say "hi" \ ok"#)
        );
        assert_eq!(comments_of(&rule), [r#"say "hi" \ ok"#, "bare"]);
    }
}
