//! The nftables backend. Every table follows one scheme: base chains look a key of the packet
//! up in maps, and an attachment owns elements of those maps, each carrying its owner as a
//! comment. ADD and DEL touch a few elements whatever the number of containers, and every
//! change is one atomic transaction: a netlink batch (see [`kernel::netlink::nftables`] for why
//! not `nft`), or an `nft -f` one for the rare and the reading paths (declaring the base,
//! rules with an admin's nft tokens, listing for CHECK, GC and DEL without keys).
//!
//! Elements map to values, not to a chain per attachment: a jump element makes each commit
//! validate every chain the base reaches, and every netdev event walk every chain, which at
//! 1,000 containers was half of a bridge ADD's CPU time. Where a map only serves as a set, its
//! value is a tag of the owner, so a DEL that names a key never deletes another's element.
//! Each attachment also owns a manifest, `manifests` { owner tag . digest of its elements },
//! which a DEL by keys deletes first: when it is missing (DEL repeated, ADD by another
//! version) or names other elements (the DEL's keys differ from the ADD's), the kernel refuses
//! the whole batch and the elements are found by owner instead, so a DEL never leaves its own
//! elements behind nor takes those of a container that reuses its address or port.
//!
//! - masquerade, table `inet ferrocni`: `masquerading` masquerades sources in `snat4` and
//!   `snat6`, except to multicast and to the container's own subnet (`local4`/`local6`:
//!   address . subnet).
//! - MAC spoof checking, table `bridge ferrocni`: `source-macs` drops frames entering a port
//!   in `spoofing` unless `sources` holds that port . source MAC.
//!
//! Listings read every map and set of a table, so elements of any layout a table may still
//! hold (verdict maps jumping to per-attachment chains) are found by owner like any other (GC,
//! DEL without prevResult) and removed with their chains.
//!
//! Values reach nft text only where nft cannot misread them: addresses, numbers, hashed
//! chain names and owner comments of a plain alphabet (see [`comment`]). An admin's
//! conditions are nft syntax by design; names that may hold anything (a bridge's) go over
//! netlink.

mod features;
mod portmap;
mod tables;

pub(super) use features::{
    add_masquerade, add_spoofcheck, allow_forward, del_forward, del_masquerade, del_spoofcheck,
    gc_forward, gc_masquerade, gc_spoofcheck, has_forward, has_masquerade, has_spoofcheck,
    isolate_bridge,
};
pub(super) use portmap::{add_portmap, del_portmap, gc_portmap, has_portmap};

use ipnetwork::IpNetwork;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt::Write;

use super::{run, FirewallError, PortmapRules};
use cni::id::digest;
use cni::{AttachmentId, ValidAttachments};
use kernel::netlink::nftables::{Batch, Data, Field, Key};
use kernel::tool::ToolError;
use tables::Scheme;

/// One element an attachment owns: `key` in `map`, mapping to `data`.
struct Entry {
    map: &'static str,
    key: Key,
    data: Data,
    /// Whether the key can belong to one attachment only (a host port): ADD then fails on
    /// a taken key instead of taking it over.
    exclusive: bool,
}

impl Entry {
    /// An element of a map that serves as a set: its value is the owner's tag.
    fn tagged(map: &'static str, key: Key, tag: u32) -> Entry {
        Entry {
            map,
            key,
            data: Data::Mark(tag),
            exclusive: false,
        }
    }
}

/// An element as listed.
struct Element {
    map: String,
    /// As nft's JSON gives it, to delete it by.
    key: Value,
    comment: String,
    /// What it maps to, as nft's JSON gives it (null for a set's element).
    value: Value,
}

impl Element {
    /// The chain it jumps to, if any.
    fn chain(&self) -> Option<&str> {
        self.value["jump"]["target"].as_str()
    }
}

impl Scheme {
    fn table(&self) -> String {
        format!("{} {}", self.family.name(), self.table)
    }

    /// Applies `batch`, declaring the base first only when it is missing: the base's hooked
    /// chains make nft fetch and rebuild many times more than a batch of elements and plain
    /// chains does, and it is there after the first ADD.
    fn apply_on_base(&self, batch: &str) -> Result<(), FirewallError> {
        match apply(batch) {
            Err(FirewallError::Tool(ToolError::Failed { stderr, .. }))
                if stderr.contains("No such file or directory") =>
            {
                apply(&format!("{}{batch}", self.base()))
            }
            other => other,
        }
    }

    /// The declarations, then each base chain flushed and refilled.
    fn base(&self) -> String {
        let mut batch = self.declarations.to_string();
        let table = self.table();
        for (chain, rules) in self.rules {
            let _ = writeln!(batch, "flush chain {table} {chain}");
            for rule in *rules {
                let _ = writeln!(batch, "add rule {table} {chain} {rule}");
            }
        }
        batch
    }

    /// Commits a netlink batch, declaring the base (with nft) when the table or a map is
    /// missing (ENOENT), then once more.
    fn commit_on_base(&self, batch: &Batch) -> Result<(), FirewallError> {
        match batch.commit() {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                apply(&self.base())?;
                Ok(batch.commit()?)
            }
            other => Ok(other?),
        }
    }

    /// Adds the attachment's elements and manifest. A non-exclusive key another attachment
    /// holds is stale (keys are the attachment's own addresses and ports): it is taken over.
    fn add(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<(), FirewallError> {
        let comment = comment(owner);
        let manifest = manifest(owner, entries);
        let batch = |take_over: bool| {
            let mut batch = Batch::new(self.family, self.table);
            // Exclusive keys first: a taken one is then the error the kernel reports.
            let (exclusive, shared): (Vec<&Entry>, Vec<&Entry>) =
                entries.iter().chain([&manifest]).partition(|e| e.exclusive);
            for entry in exclusive.into_iter().chain(shared) {
                if take_over && !entry.exclusive {
                    batch.destroy_element(entry.map, &entry.key);
                }
                batch.add_element(
                    entry.map,
                    &entry.key,
                    Some(&entry.data),
                    Some(&comment),
                    entry.exclusive,
                );
            }
            batch
        };
        match self.commit_on_base(&batch(false)) {
            Err(FirewallError::Kernel(e))
                if e.already_exists() && entries.iter().any(|e| !e.exclusive) =>
            {
                self.commit_on_base(&batch(true))
            }
            other => other,
        }
    }

    /// [`Scheme::add`] for a chain of rules only nft can compile (they carry an admin's nft
    /// tokens), with entries that jump to it. Everything else in the text is data nft cannot
    /// misread: addresses, numbers, hashed chain names and the owner's comment, which keeps
    /// to an alphabet of its own (see [`comment`]).
    fn add_with_chain(
        &self,
        owner: &AttachmentId,
        chain: &str,
        rules: &[String],
        entries: &[Entry],
    ) -> Result<(), FirewallError> {
        let comment = comment(owner);
        let table = self.table();
        let mut batch = format!("add chain {table} {chain}\nflush chain {table} {chain}\n");
        for rule in rules {
            let _ = writeln!(batch, "add rule {table} {chain} {rule}");
        }
        for entry in entries.iter().chain([&manifest(owner, entries)]) {
            let verb = if entry.exclusive { "create" } else { "add" };
            let _ = writeln!(
                batch,
                "{verb} element {table} {} {{ {} comment \"{comment}\" : {} }}",
                entry.map, entry.key, entry.data
            );
        }
        self.apply_on_base(&batch)
    }

    /// Every element of this scheme's maps and sets, and the chains of its table.
    fn list(&self) -> Result<(Vec<Element>, Vec<String>), FirewallError> {
        let args = ["-j", "list", "table", self.family.name(), self.table];
        let text = match run("nft", &args, "") {
            Ok(text) => text,
            // No table yet: nothing of ours exists.
            Err(FirewallError::Tool(ToolError::Failed { stderr, .. }))
                if stderr.contains("No such file") =>
            {
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
            let Some(holder) = ["map", "set"]
                .iter()
                .map(|k| &object[k])
                .find(|h| h.is_object())
            else {
                continue;
            };
            let Some(map) = holder["name"].as_str() else {
                continue;
            };
            for item in holder["elem"].as_array().into_iter().flatten() {
                // Map elements are [key, value]; set elements are keys.
                let (key, value) = match item.as_array() {
                    Some(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
                    _ => (item, &Value::Null),
                };
                let (key, comment) = match &key["elem"] {
                    Value::Object(elem) => (
                        elem["val"].clone(),
                        elem["comment"].as_str().unwrap_or_default().to_string(),
                    ),
                    _ => (key.clone(), String::new()),
                };
                elements.push(Element {
                    map: map.to_string(),
                    key,
                    comment,
                    value: value.clone(),
                });
            }
        }
        Ok((elements, chains))
    }

    /// Deletes the listed elements `select` picks and the chains they jump to, in one batch.
    /// Each is first added again with the value listed: an element another attachment took
    /// over since the listing (ADD takes stale keys over) then makes nft refuse the batch,
    /// and a second listing no longer picks it.
    fn remove_where(&self, select: impl Fn(&Element) -> bool) -> Result<(), FirewallError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (elements, chains) = self.list()?;
            let picked: Vec<&Element> = elements.iter().filter(|e| select(e)).collect();
            match self.remove(&picked, &chains) {
                Err(FirewallError::Tool(ToolError::Failed { stderr, .. }))
                    if attempts == 1 && stderr.contains("File exists") => {}
                other => return other,
            }
        }
    }

    fn remove(&self, elements: &[&Element], chains: &[String]) -> Result<(), FirewallError> {
        let (family, table) = (self.family.name(), self.table);
        let mut commands = Vec::new();
        for e in elements {
            let map = json!({"family": family, "table": table, "name": e.map});
            if !e.value.is_null() {
                let mut add = map.clone();
                add["elem"] = json!([[e.key, e.value]]);
                commands.push(json!({ "add": { "element": add } }));
            }
            let mut delete = map;
            delete["elem"] = json!([e.key]);
            commands.push(json!({ "delete": { "element": delete } }));
        }
        let mut targets: Vec<&str> = elements
            .iter()
            .filter_map(|e| e.chain())
            .filter(|c| chains.iter().any(|listed| listed == c))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        for chain in targets {
            let chain = json!({"family": family, "table": table, "name": chain});
            commands.push(json!({"flush": {"chain": chain}}));
            commands.push(json!({"delete": {"chain": chain}}));
        }
        if commands.is_empty() {
            return Ok(());
        }
        let document = json!({ "nftables": commands }).to_string();
        run("nft", &["-j", "-f", "-"], &document).map(drop)
    }

    /// Removes an attachment's elements (and `chain`, when it has one). With `entries` known
    /// (from prevResult) this is one netlink batch that lists nothing: the manifest of
    /// exactly these entries goes first, and the kernel refuses the whole batch when it is
    /// missing, as when a key another attachment holds maps elsewhere (each entry is added
    /// before it is deleted) or the table is missing (never declared for a DEL). Then, as
    /// without entries, the elements are found by owner.
    fn delete(
        &self,
        owner: &AttachmentId,
        entries: &[Entry],
        chain: Option<&str>,
    ) -> Result<(), FirewallError> {
        if !entries.is_empty() {
            let comment = comment(owner);
            let mut batch = Batch::new(self.family, self.table);
            let manifest = manifest(owner, entries);
            batch.delete_element(manifest.map, &manifest.key);
            if let Some(chain) = chain {
                batch.add_chain(chain);
            }
            for entry in entries {
                batch.add_element(
                    entry.map,
                    &entry.key,
                    Some(&entry.data),
                    Some(&comment),
                    false,
                );
                batch.delete_element(entry.map, &entry.key);
            }
            if let Some(chain) = chain {
                batch.flush_chain(chain);
                batch.delete_chain(chain);
            }
            if batch.commit().is_ok() {
                return Ok(());
            }
        }
        let ours = comments(owner);
        self.remove_where(|e| ours.contains(&e.comment))
    }

    /// Whether every entry is there under the owner's name; an entry that jumps must find
    /// the chain it jumps to.
    fn has(&self, owner: &AttachmentId, entries: &[Entry]) -> Result<bool, FirewallError> {
        let (elements, chains) = self.list()?;
        let ours = comments(owner);
        // Keys as listed, looked up once: a mapping of 1,000 ports has thousands of entries.
        let listed: HashSet<(&str, String)> = elements
            .iter()
            .filter(|e| ours.contains(&e.comment))
            .filter(|e| e.chain().is_none_or(|c| chains.iter().any(|l| l == c)))
            .map(|e| (e.map.as_str(), key_text(&e.key)))
            .collect();
        Ok(entries
            .iter()
            .all(|entry| listed.contains(&(entry.map, entry.key.to_string()))))
    }

    /// The exclusive keys of `entries` that another owner holds (all of them, when none is:
    /// then the owner's own elements map them elsewhere), as nft writes them.
    fn held_by_others(
        &self,
        owner: &AttachmentId,
        entries: &[Entry],
    ) -> Result<Vec<String>, FirewallError> {
        let (elements, _) = self.list()?;
        let ours = comments(owner);
        let held: HashSet<(&str, String)> = elements
            .iter()
            .filter(|e| !ours.contains(&e.comment))
            .map(|e| (e.map.as_str(), key_text(&e.key)))
            .collect();
        let exclusive = entries.iter().filter(|e| e.exclusive);
        let mut taken: Vec<String> = exclusive
            .clone()
            .filter(|e| held.contains(&(e.map, e.key.to_string())))
            .map(|e| e.key.to_string())
            .collect();
        if taken.is_empty() {
            taken = exclusive.map(|e| e.key.to_string()).collect();
        }
        // A key with conditions is in two maps.
        taken.dedup();
        Ok(taken)
    }

    /// Removes the elements of the attachments of `valid`'s network that are not in it,
    /// whichever form their comments take.
    fn gc(&self, valid: &ValidAttachments) -> Result<(), FirewallError> {
        let kept: HashSet<String> = valid.iter().flat_map(|id| comments(&id)).collect();
        self.remove_where(|e| {
            AttachmentId::tag_is_of(&e.comment, valid.network()) && !kept.contains(&e.comment)
        })
    }
}

/// A key as nft's JSON gives it, written in nft syntax (`0.0.0.0/0 . tcp . 8080`).
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

/// How elements name their owner (see [`AttachmentId::tag`]): in a comment nft keeps, of an
/// alphabet that stays data inside `nft -f` text too, where rules with an admin's conditions
/// go.
fn comment(owner: &AttachmentId) -> String {
    owner.tag(COMMENT_MAX)
}

/// Every comment an owner's elements may carry, this version's and earlier ones': DEL,
/// CHECK and GC still find what those added.
fn comments(owner: &AttachmentId) -> Vec<String> {
    owner.tags(COMMENT_MAX)
}

/// The first 32 bits of SHA-512 over `text`.
fn digest32(text: &str) -> u32 {
    u32::from_str_radix(&digest(text, 8), 16).unwrap_or_default()
}

/// The value of an owner's elements in maps that serve as sets.
fn owner_tag(owner: &AttachmentId) -> u32 {
    digest32(&comment(owner))
}

/// The element that says which entries an attachment owns: owner tag . digest of them.
fn manifest(owner: &AttachmentId, entries: &[Entry]) -> Entry {
    let listed: String = entries
        .iter()
        .map(|e| format!("{} {} {}\n", e.map, e.key, e.data))
        .collect();
    let tag = owner_tag(owner);
    let key = Key::exact(vec![Field::Mark(tag), Field::Mark(digest32(&listed))]);
    Entry::tagged("manifests", key, tag)
}

fn apply(batch: &str) -> Result<(), FirewallError> {
    run("nft", &["-f", "-"], batch).map(drop)
}

fn any_address(ipv6: bool) -> IpNetwork {
    let text = if ipv6 { "::/0" } else { "0.0.0.0/0" };
    text.parse().expect("a valid constant network")
}

/// The map of a family: `name4` or `name6`.
fn per_family(ipv6: bool, v4: &'static str, v6: &'static str) -> &'static str {
    if ipv6 {
        v6
    } else {
        v4
    }
}
