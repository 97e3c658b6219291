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

use super::entry::{addresses, of_feature, port_maps, Entry, Feature};
use super::{add_by_feature, check_by_feature, run, Firewall, FirewallError};
use cni::id::{digest, head, network_in_short_tag, shortened};
use cni::{AttachmentId, ValidAttachments};
use kernel::lock::FileLock;
use kernel::tool::ToolError;

mod forward;
mod portmap;

/// The iptables backend, with the options only it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iptables {
    /// How port mappings mark the connections to masquerade.
    pub masquerade_mark: MasqueradeMark,
    /// The firewall plugin's chain of an admin's rules, which `CNI-FORWARD` jumps to first.
    pub admin_chain: String,
}

/// How port mappings mark connections for masquerading (`markMasqBit`,
/// `externalSetMarkChain`: one or the other, as in the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasqueradeMark {
    /// This bit, set by `CNI-HOSTPORT-SETMARK` and masqueraded by `CNI-HOSTPORT-MASQ`.
    Bit(u8),
    /// An admin's chain that marks (and masquerades elsewhere), such as Kubernetes' own.
    Chain(String),
}

impl Default for Iptables {
    /// The reference's: bit 13, `CNI-ADMIN`.
    fn default() -> Iptables {
        Iptables {
            masquerade_mark: MasqueradeMark::Bit(13),
            admin_chain: "CNI-ADMIN".to_string(),
        }
    }
}

/// MAC spoof checking is nftables' only: the reference checks MACs with nftables whatever
/// its `ipMasqBackend`, and so does the bridge plugin. Nothing of it is ever written here,
/// so there is nothing to remove either.
fn no_spoofcheck() -> FirewallError {
    FirewallError::Unsupported {
        backend: "iptables",
        feature: "MAC spoof checking",
    }
}

impl Firewall for Iptables {
    fn add(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<(), FirewallError> {
        add_by_feature(self, owner, entries, |feature, entries| match feature {
            Feature::Masquerade => add_masquerade(owner, &addresses(entries)),
            Feature::PortMap => portmap::add(owner, &port_maps(entries), &self.masquerade_mark),
            Feature::Forward => forward::add(owner, &addresses(entries), &self.admin_chain),
            Feature::SpoofCheck => Err(no_spoofcheck()),
        })
    }

    /// The rules are found by owner (one save per family): `known` only tells which
    /// families forwarding rules were written for.
    fn del(
        &self,
        owner: &AttachmentId,
        feature: Feature,
        known: &[Entry],
    ) -> Result<(), FirewallError> {
        match feature {
            Feature::Masquerade => del_masquerade(owner),
            Feature::PortMap => portmap::del(owner),
            Feature::Forward => forward::del(owner, &addresses(&of_feature(known, feature))),
            Feature::SpoofCheck => Ok(()),
        }
    }

    fn check(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<bool, FirewallError> {
        check_by_feature(entries, |feature, entries| match feature {
            Feature::Masquerade => has_masquerade(owner, &addresses(entries)),
            Feature::PortMap => portmap::has(owner, &port_maps(entries)),
            Feature::Forward => forward::has(owner, &addresses(entries)),
            Feature::SpoofCheck => Err(no_spoofcheck()),
        })
    }

    fn gc(&self, feature: Feature, valid: &ValidAttachments) -> Result<(), FirewallError> {
        match feature {
            Feature::Masquerade => gc_masquerade(valid),
            Feature::PortMap => portmap::gc(valid),
            Feature::Forward => forward::gc(valid),
            Feature::SpoofCheck => Ok(()),
        }
    }

    fn isolate_bridge(&self, bridge: &str) -> Result<(), FirewallError> {
        forward::isolate_bridge(bridge)
    }
}

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

fn add_masquerade(owner: &AttachmentId, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
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

fn del_masquerade(owner: &AttachmentId) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        "POSTROUTING",
        Some("CNI-"),
        &BOTH_FAMILIES,
        owned_by("", owner),
    )
}

fn has_masquerade(owner: &AttachmentId, addresses: &[IpNetwork]) -> Result<bool, FirewallError> {
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

fn gc_masquerade(valid: &ValidAttachments) -> Result<(), FirewallError> {
    remove_where(
        "nat",
        "POSTROUTING",
        Some("CNI-"),
        &BOTH_FAMILIES,
        stale_in("", valid),
    )
}

/// Whether `iptables-save` output `saved` declares `chain`.
fn chain_exists(saved: &str, chain: &str) -> bool {
    saved.lines().any(|l| l.starts_with(&format!(":{chain} ")))
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
