//! Which attachment: a network, a container ID and an interface name, the three the spec
//! identifies an attachment by. [`AttachmentId`] is the one type for it and its `Display`
//! form, `<network>:<containerID>:<ifname>`, the one text every record of an attachment
//! carries: the owner comment of firewall elements, the bandwidth plugin's ifb alias, the
//! name of a plugin's state file, the dhcp daemon's lease record. It is a valid file name,
//! and unambiguous: no part can hold `:` (network names and container IDs keep to
//! `[A-Za-z0-9_.-]`, and an interface name holds no `:` or `/`).
//!
//! Earlier versions wrote `<network>/<containerID>/<ifname>` in firewall comments and ifb
//! aliases; those forms are read back ([`AttachmentId::read`], [`AttachmentId::tags`]), so
//! an upgrade finds what they made.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::fmt;
use std::str::FromStr;

use super::config::{validate_container_id, validate_ifname, validate_network_name};
use super::error::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentId {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

/// What separates the parts: `:` now, `/` in what earlier versions wrote.
const SEPARATOR: char = ':';
const OLD_SEPARATOR: char = '/';

impl AttachmentId {
    pub fn new(
        network: impl Into<String>,
        container_id: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Self {
        AttachmentId {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    fn joined(&self, separator: char) -> String {
        format!(
            "{}{separator}{}{separator}{}",
            self.network, self.container_id, self.ifname
        )
    }

    /// Parses the parts of `text` joined by `separator`, checked as the skeleton checks them.
    fn split(text: &str, separator: char) -> Option<AttachmentId> {
        let mut parts = text.split(separator);
        let (network, container_id, ifname) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || validate_network_name(network).is_err()
            || validate_container_id(container_id).is_err()
            || validate_ifname(ifname).is_err()
        {
            return None;
        }
        Some(AttachmentId::new(network, container_id, ifname))
    }

    /// The identity in `text`, in its form or in the one earlier versions wrote.
    pub fn read(text: &str) -> Option<AttachmentId> {
        Self::split(text, SEPARATOR).or_else(|| Self::split(text, OLD_SEPARATOR))
    }

    /// The identity as a tag of at most `max` bytes (at least 90) that holds nothing but
    /// `[A-Za-z0-9_.:~-]`, so that it is data even inside a tool's syntax (nft's quoted
    /// strings know no escapes, and an interface name may hold `"`): the whole form where it
    /// fits and the interface name keeps to that alphabet; else the network, the head of
    /// the container ID and a hash of the whole form, unique as the hash is.
    pub fn tag(&self, max: usize) -> String {
        self.tag_with(SEPARATOR, max)
    }

    fn tag_with(&self, separator: char, max: usize) -> String {
        let whole = self.joined(separator);
        if whole.len() <= max && plain(&self.ifname) {
            return whole;
        }
        let network = network_in_short_tag(&self.network);
        let room = max - network.len() - UNIQUE_DIGITS - 2;
        format!(
            "{network}{separator}{}~{}",
            head(&self.container_id, room),
            digest(&whole, UNIQUE_DIGITS)
        )
    }

    /// Every tag of at most `max` bytes this identity's records may carry: [`Self::tag`]
    /// first, then what earlier versions wrote: the same with `/` between the parts, and the
    /// whole `/` form whatever the interface name held (where it fit).
    pub fn tags(&self, max: usize) -> Vec<String> {
        let mut tags = vec![self.tag(max), self.tag_with(OLD_SEPARATOR, max)];
        let old_whole = self.joined(OLD_SEPARATOR);
        if old_whole.len() <= max {
            tags.push(old_whole);
        }
        tags.dedup();
        tags
    }

    /// Whether `tag` (any form of [`Self::tags`]) names an attachment of `network`.
    pub fn tag_is_of(tag: &str, network: &str) -> bool {
        let short = network_in_short_tag(network);
        [network, &short].iter().any(|name| {
            tag.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([SEPARATOR, OLD_SEPARATOR]))
        })
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined(SEPARATOR))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} names no attachment: the form is <network>:<containerID>:<ifname>")]
pub struct NotAnAttachment(String);

impl FromStr for AttachmentId {
    type Err = NotAnAttachment;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::split(text, SEPARATOR).ok_or_else(|| NotAnAttachment(text.to_string()))
    }
}

/// Hex digits of the hash that keeps a shortened name unique: 128 bits.
const UNIQUE_DIGITS: usize = 32;

/// The longest network name a shortened tag keeps whole.
const NETWORK_ROOM: usize = 48;

/// The first `len` hex digits of SHA-512 over `text`: short, stable names (the reference
/// names its iptables chains so).
pub fn digest(text: &str, len: usize) -> String {
    let hash = Sha512::digest(text.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    hex[..len].to_string()
}

/// The longest start of `text` that fits in `max` bytes.
pub fn head(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` as `<its head>~<hash of the whole>` in `room` bytes (at least 40): readable, and
/// unique as the hash is. Names of networks and container IDs never hold `~`, so a
/// shortened name never equals one kept whole.
pub fn shortened(text: &str, room: usize) -> String {
    let kept = head(text, room.saturating_sub(UNIQUE_DIGITS + 1));
    format!("{kept}~{}", digest(text, UNIQUE_DIGITS))
}

/// A network's name as a shortened tag holds it: whole up to [`NETWORK_ROOM`] bytes, so the
/// tags of a network still share a prefix.
pub fn network_in_short_tag(network: &str) -> std::borrow::Cow<'_, str> {
    if network.len() <= NETWORK_ROOM {
        network.into()
    } else {
        shortened(network, NETWORK_ROOM).into()
    }
}

/// Whether `text` keeps to the alphabet of network names and container IDs (skel refuses
/// others), `[A-Za-z0-9_.-]`.
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The attachments a GC request names as still in use: its list holds container IDs and
/// interface names, each of the request's network. Serialized as `network` and `keep`
/// (entries as the request writes them), the dhcp daemon's GC request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidAttachments {
    network: String,
    keep: Vec<Listed>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Listed {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

impl ValidAttachments {
    /// Reads the attachments a GC request on `network` says are still valid. Spec 1.1
    /// renamed the key after its release; libcni sends both, older runtimes only the first.
    pub fn of_request(config: &Value, network: &str) -> Result<Self, ProtocolError> {
        let list = config
            .get("cni.dev/valid-attachments")
            .or_else(|| config.get("cni.dev/attachments"));
        let keep: Vec<Listed> = match list {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => super::json::from_ref(list).map_err(|source| ProtocolError::Decode {
                what: "cni.dev/valid-attachments",
                error: source,
            })?,
        };
        Ok(ValidAttachments {
            network: network.to_string(),
            keep,
        })
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn contains(&self, id: &AttachmentId) -> bool {
        id.network == self.network
            && self
                .keep
                .iter()
                .any(|l| l.container_id == id.container_id && l.ifname == id.ifname)
    }

    /// Whether any valid attachment is of `container_id`: for records that name no
    /// interface (the reference's iptables comments, host-local's reservations of old).
    pub fn has_container(&self, container_id: &str) -> bool {
        self.keep.iter().any(|l| l.container_id == container_id)
    }

    /// The valid attachments, each as a whole identity.
    pub fn iter(&self) -> impl Iterator<Item = AttachmentId> + '_ {
        self.keep
            .iter()
            .map(|l| AttachmentId::new(&*self.network, &*l.container_id, &*l.ifname))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    fn id(network: &str, container_id: &str, ifname: &str) -> AttachmentId {
        AttachmentId::new(network, container_id, ifname)
    }

    #[test]
    fn the_text_form_reads_back_and_nothing_else_does() {
        let plain = id("net", "abc", "eth0.100");
        assert_eq!(plain.to_string(), "net:abc:eth0.100");
        assert_eq!("net:abc:eth0.100".parse::<AttachmentId>().ok(), Some(plain));
        for bad in [
            "net:abc",
            "net:abc:eth0:x",
            "../x:abc:eth0",
            "net:a b:eth0",
            "net:abc:",
        ] {
            assert!(bad.parse::<AttachmentId>().is_err(), "{bad:?}");
        }
        assert_eq!(
            AttachmentId::read(r#"net:abc:e"x"#),
            Some(id("net", "abc", r#"e"x"#))
        );
    }

    /// The ifb alias and firewall comments of earlier versions: `net/cid/if`.
    #[test]
    fn the_old_slashed_form_is_read() {
        assert_eq!(
            AttachmentId::read("net/abc/eth0"),
            Some(id("net", "abc", "eth0"))
        );
        assert!(AttachmentId::read("net/abc/eth0/x").is_none());
        assert!(
            "net/abc/eth0".parse::<AttachmentId>().is_err(),
            "not the form"
        );
    }

    #[test]
    fn tags_are_whole_where_that_fits_and_is_plain() {
        let plain = id("net", "abc", "eth0.100");
        assert_eq!(plain.tag(128), "net:abc:eth0.100");
        assert_eq!(plain.tags(128), ["net:abc:eth0.100", "net/abc/eth0.100"]);
    }

    #[test]
    fn other_tags_are_short_plain_and_unique_and_the_old_ones_are_known() {
        let (long, alike) = ("c".repeat(300), format!("{}d", "c".repeat(299)));
        let network = "n".repeat(200);
        let ids = [
            id("net", &long, "eth0"),
            id("net", &alike, "eth0"),
            id("net", "abc", r#"e"x"#),
            id("net", "abc", "e;x"),
            id(&network, "abc", "eth0"),
        ];
        let tags: Vec<String> = ids.iter().map(|i| i.tag(128)).collect();
        for tag in &tags {
            assert!(tag.len() <= 128, "{tag}");
            assert!(
                tag.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-:~".contains(&b)),
                "{tag}"
            );
        }
        let unique: HashSet<&String> = tags.iter().collect();
        assert_eq!(unique.len(), tags.len(), "{tags:?}");
        assert!(tags[0].starts_with("net:cccccccccc"), "{}", tags[0]);
        assert!(tags[4].starts_with(&format!("{}:", network_in_short_tag(&network))));
        // What earlier versions wrote: the same shortened with `/`, and the whole name for
        // an interface name nft text could not hold.
        let old_short = format!("net/abc~{}", digest(r#"net/abc/e"x"#, UNIQUE_DIGITS));
        assert_eq!(
            ids[2].tags(128),
            [tags[2].clone(), old_short, r#"net/abc/e"x"#.to_string()]
        );
        // Nothing whole was ever written for names too long for a tag.
        assert_eq!(ids[0].tags(128).len(), 2);
        for i in &ids {
            for tag in i.tags(128) {
                assert!(AttachmentId::tag_is_of(&tag, &i.network), "{tag}");
                assert!(!AttachmentId::tag_is_of(&tag, "ne"), "{tag}");
            }
        }
    }

    #[test]
    fn digest_matches_the_reference_chain_names() {
        // The reference names a masquerade chain "CNI-" + sha512(name + containerID)[:24].
        assert_eq!(digest("", 8), "cf83e135");
    }

    #[test]
    fn gc_reads_both_attachment_keys_and_looks_up_whole_identities() {
        let new = json!({"cni.dev/valid-attachments": [
            {"containerID": "b", "ifname": "eth1"}, {"containerID": "a", "ifname": "eth0"}]});
        let valid = ValidAttachments::of_request(&new, "net").expect("ok");
        assert!(valid.contains(&id("net", "a", "eth0")));
        assert!(valid.contains(&id("net", "b", "eth1")));
        assert!(
            !valid.contains(&id("net", "a", "eth1")),
            "another interface"
        );
        assert!(
            !valid.contains(&id("other", "a", "eth0")),
            "another network"
        );
        assert!(valid.has_container("b") && !valid.has_container("c"));
        assert_eq!(valid.iter().count(), 2);
        let old = json!({"cni.dev/attachments": [{"containerID": "b", "ifname": "eth1"}]});
        let valid = ValidAttachments::of_request(&old, "net").expect("ok");
        assert!(valid.contains(&id("net", "b", "eth1")));
        let none = ValidAttachments::of_request(&json!({}), "net").expect("ok");
        assert_eq!(none.iter().count(), 0);
    }
}
