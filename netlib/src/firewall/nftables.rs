//! The nftables backend. Both kinds of rules it owns follow one scheme: a base chain looks
//! a key of the packet up in a verdict map whose element for an attachment jumps to that
//! attachment's own chain, and elements carry their owner as a comment. ADD and DEL
//! therefore touch one element and one chain whatever the number of containers, and every
//! change is one atomic transaction: a netlink batch (see [`crate::netlink::nftables`] for
//! why not `nft`), or an `nft -f` one for the rare and the reading paths (declaring the
//! base, rules with an admin's nft tokens, listing for CHECK, GC and DEL without keys).
//!
//! - masquerade, table `inet ferrocni`: `postrouting` maps the source address (`masq4`,
//!   `masq6`) to `masq-<hash>`, which returns for the container's own subnet and
//!   masquerades the rest (multicast excepted).
//! - MAC spoof checking, table `bridge ferrocni`: `prerouting` maps the input port (the host
//!   veth, `spoof`) to `mac-<hash>`, which lets the container's MAC through and drops the rest.

use ipnetwork::IpNetwork;
use serde_json::Value;
use std::fmt::Write;
use std::net::IpAddr;

use super::{digest, run, FirewallError, Owner, PortmapRules};
use crate::cni::AttachmentKey;
use crate::netlink::nftables::{Batch, Family, Key, Stmt, Verdict};
use crate::netlink::MacAddr;

struct Scheme {
    family: Family,
    table: &'static str,
    chain_prefix: &'static str,
    /// The table, maps and base chain, declared idempotently. The base chain is flushed and
    /// refilled in the same transaction, so concurrent plugins never see it empty or doubled.
    base: &'static str,
    /// Whether keys are strings (interface names), quoted in nft syntax.
    quoted_keys: bool,
    /// Whether a key can belong to one attachment only (a host port): ADD then fails on a
    /// taken key instead of silently keeping the other's, and DEL only ever deletes
    /// elements it finds under its own owner.
    exclusive_keys: bool,
}

const MASQUERADE: Scheme = Scheme {
    family: Family::Inet,
    table: "ferrocni",
    chain_prefix: "masq-",
    base: "add table inet ferrocni\n\
           add map inet ferrocni masq4 { type ipv4_addr : verdict; }\n\
           add map inet ferrocni masq6 { type ipv6_addr : verdict; }\n\
           add chain inet ferrocni postrouting { type nat hook postrouting priority srcnat; policy accept; }\n\
           flush chain inet ferrocni postrouting\n\
           add rule inet ferrocni postrouting ip saddr vmap @masq4\n\
           add rule inet ferrocni postrouting ip6 saddr vmap @masq6\n",
    quoted_keys: false,
    exclusive_keys: false,
};

const SPOOFCHECK: Scheme = Scheme {
    family: Family::Bridge,
    table: "ferrocni",
    chain_prefix: "mac-",
    base: "add table bridge ferrocni\n\
           add map bridge ferrocni spoof { type ifname : verdict; }\n\
           add chain bridge ferrocni prerouting { type filter hook prerouting priority -300; policy accept; }\n\
           flush chain bridge ferrocni prerouting\n\
           add rule bridge ferrocni prerouting iifname vmap @spoof\n",
    quoted_keys: true,
    exclusive_keys: false,
};

/// Host ports, table `inet ferrocni_portmap`: `prerouting` (traffic from outside) and
/// `output` (from the host itself) map destination address . protocol . port of local
/// traffic to the container's chain `pm-<hash>`, which marks hairpin and localhost traffic
/// for masquerading and DNATs. `postrouting` masquerades marked packets.
const PORTMAP: Scheme = Scheme {
    family: Family::Inet,
    table: "ferrocni_portmap",
    chain_prefix: "pm-",
    base: "add table inet ferrocni_portmap\n\
           add map inet ferrocni_portmap ports4 { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }\n\
           add map inet ferrocni_portmap ports6 { type ipv6_addr . inet_proto . inet_service : verdict; flags interval; }\n\
           add chain inet ferrocni_portmap prerouting { type nat hook prerouting priority dstnat; policy accept; }\n\
           flush chain inet ferrocni_portmap prerouting\n\
           add rule inet ferrocni_portmap prerouting fib daddr type local ip daddr . meta l4proto . th dport vmap @ports4\n\
           add rule inet ferrocni_portmap prerouting fib daddr type local ip6 daddr . meta l4proto . th dport vmap @ports6\n\
           add chain inet ferrocni_portmap output { type nat hook output priority -100; policy accept; }\n\
           flush chain inet ferrocni_portmap output\n\
           add rule inet ferrocni_portmap output fib daddr type local ip daddr . meta l4proto . th dport vmap @ports4\n\
           add rule inet ferrocni_portmap output fib daddr type local ip6 daddr . meta l4proto . th dport vmap @ports6\n\
           add chain inet ferrocni_portmap postrouting { type nat hook postrouting priority srcnat; policy accept; }\n\
           flush chain inet ferrocni_portmap postrouting\n\
           add rule inet ferrocni_portmap postrouting meta mark & 0x2000 == 0x2000 masquerade\n",
    quoted_keys: false,
    exclusive_keys: true,
};

/// The firewall plugin's table `inet ferrocni_firewall`: `forward` sends packets from and
/// to a container (maps `from4`/`from6`, `to4`/`to6`) to its chain `fw-<hash>`, which
/// accepts its outgoing traffic and replies and DNATed connections to it. Bridges in
/// `isolated` are cut off from each other first. Note that an accept here cannot override a
/// drop in another table (nftables runs every base chain on a hook), so against an
/// iptables FORWARD policy the iptables backend is the one that helps.
const FORWARD: Scheme = Scheme {
    family: Family::Inet,
    table: "ferrocni_firewall",
    chain_prefix: "fw-",
    base: "add table inet ferrocni_firewall\n\
           add map inet ferrocni_firewall from4 { type ipv4_addr : verdict; }\n\
           add map inet ferrocni_firewall from6 { type ipv6_addr : verdict; }\n\
           add map inet ferrocni_firewall to4 { type ipv4_addr : verdict; }\n\
           add map inet ferrocni_firewall to6 { type ipv6_addr : verdict; }\n\
           add set inet ferrocni_firewall isolated { type ifname; }\n\
           add map inet ferrocni_firewall isolation { type ifname : verdict; }\n\
           add chain inet ferrocni_firewall forward { type filter hook forward priority filter; policy accept; }\n\
           flush chain inet ferrocni_firewall forward\n\
           add rule inet ferrocni_firewall forward iifname vmap @isolation\n\
           add rule inet ferrocni_firewall forward ip saddr vmap @from4\n\
           add rule inet ferrocni_firewall forward ip6 saddr vmap @from6\n\
           add rule inet ferrocni_firewall forward ip daddr vmap @to4\n\
           add rule inet ferrocni_firewall forward ip6 daddr vmap @to6\n",
    quoted_keys: false,
    exclusive_keys: false,
};

/// The mark that asks `postrouting` to masquerade (the reference's default bit 13).
const MASQ_MARK: u32 = 0x2000;

/// One rule of an attachment's chain: an admin's own match tokens in nft syntax (portmap's
/// conditions; usually none), then statements.
struct Rule {
    tokens: String,
    statements: Vec<Stmt>,
}

impl Rule {
    fn new(statements: Vec<Stmt>) -> Rule {
        Rule {
            tokens: String::new(),
            statements,
        }
    }

    fn text(&self) -> String {
        let statements: Vec<String> = self.statements.iter().map(Stmt::to_string).collect();
        format!("{} {}", self.tokens, statements.join(" "))
            .trim()
            .to_string()
    }
}

/// One element of a scheme's maps: the key in `map` for `owner`, jumping to `chain`.
struct Element {
    map: String,
    key: String,
    comment: String,
    chain: String,
}

impl Scheme {
    fn table(&self) -> String {
        format!("{} {}", self.family.name(), self.table)
    }

    fn chain(&self, owner: Owner) -> String {
        format!("{}{}", self.chain_prefix, digest(&comment(owner), 16))
    }

    fn key(&self, key: &str) -> String {
        if self.quoted_keys {
            format!("\"{key}\"")
        } else {
            key.to_string()
        }
    }

    /// Applies `batch`, declaring the base first only when it is missing: the base's hooked
    /// chain makes nft fetch and rebuild far more (about 11 ms a run here, against 2 ms for
    /// a batch of elements and plain chains), and it is there after the first ADD.
    fn apply_on_base(&self, batch: &str) -> Result<(), FirewallError> {
        match apply(batch) {
            Err(FirewallError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                apply(&format!("{}{batch}", self.base))
            }
            other => other,
        }
    }

    /// Commits a netlink batch, declaring the base (with nft) when the table or a map is
    /// missing (ENOENT), then once more.
    fn commit_on_base(&self, batch: &Batch) -> Result<(), FirewallError> {
        match batch.commit() {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                apply(self.base)?;
                Ok(batch.commit()?)
            }
            other => Ok(other?),
        }
    }

    /// Declares the attachment's chain with `rules` and points `keys` (map, key) at it.
    fn add(&self, owner: Owner, rules: &[Rule], keys: &[(&str, Key)]) -> Result<(), FirewallError> {
        let chain = self.chain(owner);
        let comment = comment(owner);
        if comment.len() > COMMENT_MAX {
            return Err(FirewallError::OwnerTooLong {
                owner: comment,
                max: COMMENT_MAX,
            });
        }
        if rules.iter().any(|rule| !rule.tokens.is_empty()) {
            return self.add_with_nft(&chain, &comment, rules, keys);
        }
        let mut batch = Batch::new(self.family, self.table);
        batch.add_chain(&chain);
        batch.flush_chain(&chain);
        for rule in rules {
            batch.add_rule(&chain, &rule.statements);
        }
        for (map, key) in keys {
            batch.add_element(map, key, &chain, &comment, self.exclusive_keys);
        }
        self.commit_on_base(&batch)
    }

    /// [`Scheme::add`] for rules only nft can compile (they carry an admin's nft tokens).
    fn add_with_nft(
        &self,
        chain: &str,
        comment: &str,
        rules: &[Rule],
        keys: &[(&str, Key)],
    ) -> Result<(), FirewallError> {
        let table = self.table();
        let mut batch = String::new();
        let _ = writeln!(
            batch,
            "add chain {table} {chain}\nflush chain {table} {chain}"
        );
        for rule in rules {
            let _ = writeln!(batch, "add rule {table} {chain} {}", rule.text());
        }
        let verb = if self.exclusive_keys { "create" } else { "add" };
        for (map, key) in keys {
            let _ = writeln!(
                batch,
                "{verb} element {table} {map} {{ {} comment \"{comment}\" : jump {chain} }}",
                self.key(&key.to_string()),
            );
        }
        self.apply_on_base(&batch)
    }

    /// Every element of this scheme's maps, and the chains of its table.
    fn list(&self) -> Result<(Vec<Element>, Vec<String>), FirewallError> {
        let args = ["-j", "list", "table", self.family.name(), self.table];
        let text = match run("nft", &args, "") {
            Ok(text) => text,
            // No table yet: nothing of ours exists.
            Err(FirewallError::Failed { stderr, .. }) if stderr.contains("No such file") => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => return Err(e),
        };
        let parse_error = |reason: String| FirewallError::Parse {
            tool: "nft",
            reason,
        };
        let document: Value =
            serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        let objects = document["nftables"]
            .as_array()
            .ok_or_else(|| parse_error("no nftables array".to_string()))?;
        let mut elements = Vec::new();
        let mut chains = Vec::new();
        for object in objects {
            if let Some(chain) = object["chain"]["name"].as_str() {
                chains.push(chain.to_string());
            }
            let Some(map) = object["map"]["name"].as_str() else {
                continue;
            };
            for pair in object["map"]["elem"].as_array().into_iter().flatten() {
                let (key, verdict) = (&pair[0], &pair[1]);
                let (key, comment) = match &key["elem"] {
                    Value::Object(elem) => (
                        key_text(&elem["val"]),
                        elem["comment"].as_str().unwrap_or_default().to_string(),
                    ),
                    _ => (key_text(key), String::new()),
                };
                elements.push(Element {
                    map: map.to_string(),
                    key,
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
    fn remove(&self, elements: &[&Element], chains: &[String]) -> Result<(), FirewallError> {
        let table = self.table();
        let mut batch = String::new();
        for element in elements {
            let _ = writeln!(
                batch,
                "delete element {table} {} {{ {} }}",
                element.map,
                self.key(&element.key)
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
                "flush chain {table} {chain}\ndelete chain {table} {chain}"
            );
        }
        if batch.is_empty() {
            return Ok(());
        }
        apply(&batch)
    }

    /// Removes an attachment's elements and chain. With `keys` known (from prevResult) this
    /// is one netlink batch that lists nothing: declaring first makes deleting idempotent,
    /// and a key held by another attachment (its element jumps elsewhere) makes the kernel
    /// refuse the whole batch, as does a missing table (never declared for a DEL). Then, as
    /// without keys, the elements are found by owner.
    fn delete(&self, owner: Owner, keys: &[(&str, Key)]) -> Result<(), FirewallError> {
        let (table, chain) = (self.table(), self.chain(owner));
        if !keys.is_empty() {
            let comment = comment(owner);
            let mut batch = Batch::new(self.family, self.table);
            batch.add_chain(&chain);
            for (map, key) in keys {
                batch.add_element(map, key, &chain, &comment, false);
                batch.delete_element(map, key);
            }
            batch.flush_chain(&chain);
            batch.delete_chain(&chain);
            if batch.commit().is_ok() {
                return Ok(());
            }
        }
        let (elements, chains) = self.list()?;
        let ours = comment(owner);
        let mine: Vec<&Element> = elements.iter().filter(|e| e.comment == ours).collect();
        self.remove(&mine, &chains)?;
        if mine.is_empty() && chains.contains(&chain) {
            apply(&format!(
                "flush chain {table} {chain}\ndelete chain {table} {chain}\n"
            ))?;
        }
        Ok(())
    }

    fn has(&self, owner: Owner, keys: &[(&str, Key)]) -> Result<bool, FirewallError> {
        let (elements, chains) = self.list()?;
        let chain = self.chain(owner);
        Ok(chains.contains(&chain)
            && keys.iter().all(|(map, key)| {
                let key = key.to_string();
                elements
                    .iter()
                    .any(|e| e.chain == chain && e.map == *map && e.key == key)
            }))
    }

    fn gc(&self, network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
        let (elements, chains) = self.list()?;
        let prefix = format!("{network}/");
        let stale: Vec<&Element> = elements
            .iter()
            .filter(|e| {
                let Some((container_id, ifname)) = e
                    .comment
                    .strip_prefix(&prefix)
                    .and_then(|r| r.split_once('/'))
                else {
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
        self.remove(&stale, &chains)
    }
}

/// A key as nft's JSON gives it, written back in nft syntax (`0.0.0.0/0 . tcp . 8080`).
fn key_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Object(object) => {
            if let Some(parts) = object.get("concat").and_then(Value::as_array) {
                parts.iter().map(key_text).collect::<Vec<_>>().join(" . ")
            } else if let Some(prefix) = object.get("prefix") {
                format!("{}/{}", key_text(&prefix["addr"]), prefix["len"])
            } else if let Some(range) = object.get("range").and_then(Value::as_array) {
                range.iter().map(key_text).collect::<Vec<_>>().join("-")
            } else {
                value.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// The longest comment nft accepts and reads back; elements carry their owner in it.
const COMMENT_MAX: usize = 128;

fn comment(owner: Owner) -> String {
    format!("{}/{}/{}", owner.network, owner.container_id, owner.ifname)
}

fn apply(batch: &str) -> Result<(), FirewallError> {
    run("nft", &["-f", "-"], batch).map(drop)
}

fn masquerade_keys(addresses: &[IpNetwork]) -> Vec<(&'static str, Key)> {
    addresses
        .iter()
        .map(|a| {
            (
                if a.is_ipv4() { "masq4" } else { "masq6" },
                Key::Addr(a.ip()),
            )
        })
        .collect()
}

fn network(text: &str) -> IpNetwork {
    text.parse().expect("a valid constant network")
}

pub(super) fn add_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    let mut rules: Vec<Rule> = addresses
        .iter()
        .map(|address| Rule::new(vec![Stmt::daddr(*address), Stmt::Verdict(Verdict::Return)]))
        .collect();
    if addresses.iter().any(IpNetwork::is_ipv4) {
        rules.push(Rule::new(vec![
            Stmt::daddr_not(network("224.0.0.0/4")),
            Stmt::Masquerade,
        ]));
    }
    if addresses.iter().any(IpNetwork::is_ipv6) {
        rules.push(Rule::new(vec![
            Stmt::daddr_not(network("ff00::/8")),
            Stmt::Masquerade,
        ]));
    }
    MASQUERADE.add(owner, &rules, &masquerade_keys(addresses))
}

pub(super) fn del_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    MASQUERADE.delete(owner, &masquerade_keys(addresses))
}

pub(super) fn has_masquerade(owner: Owner, addresses: &[IpNetwork]) -> Result<bool, FirewallError> {
    MASQUERADE.has(owner, &masquerade_keys(addresses))
}

pub(super) fn gc_masquerade(network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
    MASQUERADE.gc(network, valid)
}

pub(super) fn add_spoofcheck(owner: Owner, port: &str, mac: MacAddr) -> Result<(), FirewallError> {
    let rules = [
        Rule::new(vec![
            Stmt::EtherSource(mac.0),
            Stmt::Verdict(Verdict::Return),
        ]),
        Rule::new(vec![Stmt::Verdict(Verdict::Drop)]),
    ];
    SPOOFCHECK.add(owner, &rules, &[("spoof", Key::Ifname(port.to_string()))])
}

pub(super) fn del_spoofcheck(owner: Owner, port: Option<&str>) -> Result<(), FirewallError> {
    let keys: Vec<(&str, Key)> = port
        .map(|p| ("spoof", Key::Ifname(p.to_string())))
        .into_iter()
        .collect();
    SPOOFCHECK.delete(owner, &keys)
}

pub(super) fn has_spoofcheck(owner: Owner, port: &str) -> Result<bool, FirewallError> {
    SPOOFCHECK.has(owner, &[("spoof", Key::Ifname(port.to_string()))])
}

pub(super) fn gc_spoofcheck(network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
    SPOOFCHECK.gc(network, valid)
}

fn portmap_keys(rules: &PortmapRules) -> Vec<(&'static str, Key)> {
    let mut keys = Vec::new();
    for mapping in rules.mappings {
        for target in rules.targets_for(mapping) {
            keys.push((
                if target.is_ipv4() { "ports4" } else { "ports6" },
                Key::HostPort {
                    host: mapping.host_ip,
                    ipv6: target.is_ipv6(),
                    protocol: mapping.protocol.number(),
                    port: mapping.host_port,
                },
            ));
        }
    }
    keys
}

fn host(address: IpAddr) -> IpNetwork {
    IpNetwork::from(address)
}

pub(super) fn add_portmap(owner: Owner, rules: &PortmapRules) -> Result<(), FirewallError> {
    let mut chain_rules = Vec::new();
    for mapping in rules.mappings {
        for target in rules.targets_for(mapping) {
            let tokens = if target.is_ipv4() {
                rules.conditions_v4.join(" ")
            } else {
                rules.conditions_v6.join(" ")
            };
            let mut matches = vec![
                Stmt::L4Proto(mapping.protocol.number()),
                Stmt::DestinationPort(mapping.host_port),
            ];
            if let Some(host_ip) = mapping.host_ip {
                matches.push(Stmt::daddr(host(host_ip)));
            }
            if rules.snat {
                // One rule per source, never an anonymous set (`ip saddr { a, b }`): sets
                // made every listing and every nft run slower as containers accumulated.
                let sources = match (rules.masq_all, target.is_ipv4()) {
                    (true, _) => vec![None],
                    (false, true) => vec![
                        Some(Stmt::saddr(*target)),
                        Some(Stmt::saddr(network("127.0.0.1/32"))),
                    ],
                    (false, false) => vec![Some(Stmt::saddr(*target))],
                };
                for source in sources {
                    let mut statements = matches.clone();
                    statements.extend(source);
                    statements.push(Stmt::SetMarkBits(MASQ_MARK));
                    chain_rules.push(Rule {
                        tokens: tokens.clone(),
                        statements,
                    });
                }
            }
            let mut statements = matches;
            statements.push(Stmt::Dnat(target.ip(), mapping.container_port));
            chain_rules.push(Rule { tokens, statements });
        }
    }
    let keys = portmap_keys(rules);
    match PORTMAP.add(owner, &chain_rules, &keys) {
        Err(e) if key_taken(&e) => Err(FirewallError::PortTaken(
            keys.iter()
                .map(|(_, k)| k.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )),
        other => other,
    }
}

/// Whether adding failed because an exclusive key exists, as the kernel or nft says it.
fn key_taken(error: &FirewallError) -> bool {
    match error {
        FirewallError::Kernel(e) => e.already_exists(),
        FirewallError::Failed { stderr, .. } => stderr.contains("File exists"),
        _ => false,
    }
}

pub(super) fn del_portmap(owner: Owner, rules: Option<&PortmapRules>) -> Result<(), FirewallError> {
    PORTMAP.delete(owner, &rules.map(portmap_keys).unwrap_or_default())
}

pub(super) fn has_portmap(owner: Owner, rules: &PortmapRules) -> Result<bool, FirewallError> {
    PORTMAP.has(owner, &portmap_keys(rules))
}

pub(super) fn gc_portmap(network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
    PORTMAP.gc(network, valid)
}

fn forward_keys(addresses: &[IpNetwork]) -> Vec<(&'static str, Key)> {
    addresses
        .iter()
        .flat_map(|a| {
            let (from, to) = if a.is_ipv4() {
                ("from4", "to4")
            } else {
                ("from6", "to6")
            };
            [(from, Key::Addr(a.ip())), (to, Key::Addr(a.ip()))]
        })
        .collect()
}

pub(super) fn allow_forward(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    let accept = Stmt::Verdict(Verdict::Accept);
    let mut rules = Vec::new();
    for address in addresses {
        let ip = host(address.ip());
        rules.push(Rule::new(vec![Stmt::saddr(ip), accept.clone()]));
        rules.push(Rule::new(vec![
            Stmt::daddr(ip),
            Stmt::CtEstablishedOrRelated,
            accept.clone(),
        ]));
        rules.push(Rule::new(vec![
            Stmt::daddr(ip),
            Stmt::CtDnat,
            accept.clone(),
        ]));
    }
    FORWARD.add(owner, &rules, &forward_keys(addresses))
}

pub(super) fn del_forward(owner: Owner, addresses: &[IpNetwork]) -> Result<(), FirewallError> {
    FORWARD.delete(owner, &forward_keys(addresses))
}

pub(super) fn has_forward(owner: Owner, addresses: &[IpNetwork]) -> Result<bool, FirewallError> {
    FORWARD.has(owner, &forward_keys(addresses))
}

pub(super) fn gc_forward(network: &str, valid: &[AttachmentKey]) -> Result<(), FirewallError> {
    FORWARD.gc(network, valid)
}

pub(super) fn isolate_bridge(bridge: &str) -> Result<(), FirewallError> {
    let table = FORWARD.table();
    let chain = format!("iso-{}", digest(bridge, 16));
    let batch = format!(
        "add element {table} isolated {{ \"{bridge}\" }}\n\
         add chain {table} {chain}\n\
         flush chain {table} {chain}\n\
         add rule {table} {chain} oifname != \"{bridge}\" oifname @isolated drop\n\
         add element {table} isolation {{ \"{bridge}\" : jump {chain} }}\n"
    );
    FORWARD.apply_on_base(&batch)
}
