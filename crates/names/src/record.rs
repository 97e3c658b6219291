//! What is written down: a container's names and addresses on one network (a
//! [`Registration`], one file per attachment), the names other nodes published
//! ([`RemoteFile`], written by the overlay agent), and how the network's server runs
//! ([`ServerConfig`]). Each is checked when read back, like any input.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

use cni::AttachmentId;
use netlib::state::Record;

/// The longest name DNS carries, in bytes of its text form without the final dot.
pub const NAME_MAX: usize = 253;
/// The longest label.
pub const LABEL_MAX: usize = 63;

/// `text` as a name the server answers for, lower-cased (DNS compares names without case),
/// or `None` when it is no such name: labels of 1 to 63 letters, digits, `-` or `_`
/// (container names may hold `_`, and so may dnsmasq's hosts), at most 253 bytes in all.
/// One final dot is allowed and dropped.
pub fn dns_name(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let fits = !text.is_empty() && text.len() <= NAME_MAX;
    let labels_ok = text.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= LABEL_MAX
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    (fits && labels_ok).then(|| text.to_ascii_lowercase())
}

/// One container's names and addresses on a network: its name, its aliases (a service name
/// several containers may share) and every address it has there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

impl Entry {
    /// Why this entry is none the plugin would write: names already canonical (see
    /// [`dns_name`]), at least one address. The name may be empty: a container whose name
    /// is no DNS name is registered by its aliases only.
    pub fn check(&self) -> Result<(), String> {
        let name = Some(("name", &self.name)).filter(|(_, name)| !name.is_empty());
        for (field, name) in name
            .into_iter()
            .chain(self.aliases.iter().map(|alias| ("aliases", alias)))
        {
            if dns_name(name).as_ref() != Some(name) {
                return Err(format!("{field}: {name:?} is no lower-case DNS name"));
            }
        }
        if self.addresses.is_empty() {
            return Err("addresses: none".to_string());
        }
        Ok(())
    }

    /// The name and the aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// A local container's registration, the file the `dnsname` plugin writes on ADD and
/// removes on DEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The attachment's text form, `<network>:<containerID>:<ifname>`.
    pub attachment: String,
    #[serde(flatten)]
    pub entry: Entry,
}

impl Registration {
    pub fn new(id: &AttachmentId, entry: Entry) -> Self {
        Registration {
            attachment: id.to_string(),
            entry,
        }
    }
}

impl Record for Registration {
    fn check(&self) -> Result<(), String> {
        self.attachment
            .parse::<AttachmentId>()
            .map_err(|e| format!("attachment: {e}"))?;
        self.entry.check()
    }
}

/// A name another node published (the overlay agent hands them over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEntry {
    pub node: String,
    #[serde(flatten)]
    pub entry: Entry,
}

/// Every other node's names on one network: `remote.json` in the network's directory,
/// replaced whole by the agent on each change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    pub names: Vec<RemoteEntry>,
}

impl Record for RemoteFile {
    fn check(&self) -> Result<(), String> {
        self.names.iter().enumerate().try_for_each(|(i, remote)| {
            remote
                .entry
                .check()
                .map_err(|reason| format!("names[{i}].{reason}"))
        })
    }
}

/// How a network's server runs: `server.json`, written by the plugin before it starts the
/// server or asks it to reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// The network's domain (`domainName`): `name.domain` resolves as `name` does, and the
    /// server answers for nothing else under it. Empty for none.
    #[serde(default)]
    pub domain: String,
    /// The gateway addresses it listens on, port 53, UDP and TCP.
    pub listen: Vec<IpAddr>,
    /// Where other queries go; empty for the host's resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<SocketAddr>,
    /// Keep running when the last container has left.
    #[serde(default)]
    pub keep: bool,
}

impl Record for ServerConfig {
    fn check(&self) -> Result<(), String> {
        if !self.domain.is_empty() && dns_name(&self.domain).as_ref() != Some(&self.domain) {
            return Err(format!(
                "domain: {:?} is no lower-case DNS name",
                self.domain
            ));
        }
        if self.listen.is_empty() {
            return Err("listen: no address".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_lower_cased() {
        assert_eq!(dns_name("Web").as_deref(), Some("web"));
        assert_eq!(
            dns_name("my_db-1.dns.podman.").as_deref(),
            Some("my_db-1.dns.podman")
        );
        for bad in ["", ".", "a..b", "a b", "é", "a/b", ".a", "a.."] {
            assert_eq!(dns_name(bad), None, "{bad:?}");
        }
        assert!(dns_name(&"a".repeat(63)).is_some());
        assert!(dns_name(&"a".repeat(64)).is_none());
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(dns_name(&long).is_some());
        assert!(dns_name(&format!("{long}e")).is_none());
    }

    #[test]
    fn records_read_back_are_checked() {
        let entry = Entry {
            name: "web".to_string(),
            aliases: vec!["svc".to_string()],
            addresses: vec!["10.88.0.2".parse().expect("ip")],
        };
        let id = AttachmentId::new("net", "abc", "eth0");
        let good = Registration::new(&id, entry.clone());
        assert_eq!(good.check(), Ok(()));
        let text = serde_json::to_string(&good).expect("encodes");
        assert_eq!(
            text,
            r#"{"attachment":"net:abc:eth0","name":"web","aliases":["svc"],"addresses":["10.88.0.2"]}"#
        );
        let mut upper = good.clone();
        upper.entry.aliases = vec!["Svc".to_string()];
        assert!(upper.check().expect_err("upper case").contains("aliases"));
        let mut empty = good.clone();
        empty.entry.addresses.clear();
        assert!(empty.check().is_err());
        let mut stray = good;
        stray.attachment = "../x".to_string();
        assert!(stray
            .check()
            .expect_err("no attachment")
            .contains("attachment"));
        let remote = RemoteFile {
            names: vec![RemoteEntry {
                node: "n2".to_string(),
                entry: Entry {
                    name: "a b".to_string(),
                    ..entry
                },
            }],
        };
        assert!(remote
            .check()
            .expect_err("bad name")
            .starts_with("names[0].name"));
    }

    #[test]
    fn a_server_config_needs_an_address_and_a_plain_domain() {
        let config: ServerConfig =
            serde_json::from_str(r#"{"domain": "dns.podman", "listen": ["10.88.0.1"]}"#)
                .expect("decodes");
        assert_eq!(config.check(), Ok(()));
        assert!(config.upstreams.is_empty() && !config.keep);
        let none = ServerConfig {
            listen: Vec::new(),
            ..config.clone()
        };
        assert!(none.check().is_err());
        let odd = ServerConfig {
            domain: "DNS.podman".to_string(),
            ..config
        };
        assert!(odd.check().is_err());
    }
}
