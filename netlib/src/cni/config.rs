//! Network configuration as a runtime hands it over: the keys every plugin shares, and the
//! conflist a runtime loads. Plugin-specific keys are decoded by each plugin from the same
//! JSON, so nothing a plugin does not know is lost.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use super::error::ProtocolError;
use super::result::Dns;

/// The keys the spec defines for every plugin object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub ipam: Option<IpamRef>,
    pub dns: Dns,
}

/// The `ipam` section as far as the main plugin needs it: which plugin to delegate to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IpamRef {
    #[serde(rename = "type")]
    pub plugin_type: String,
}

/// A `.conflist`: a named chain of plugins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetConfList {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Spec 1.1: the versions this list is valid for; the runtime picks the highest it speaks.
    #[serde(rename = "cniVersions")]
    pub cni_versions: Vec<String>,
    pub name: String,
    #[serde(rename = "disableCheck")]
    pub disable_check: bool,
    #[serde(rename = "disableGC")]
    pub disable_gc: bool,
    #[serde(rename = "loadOnlyInlinedPlugins")]
    pub load_only_inlined_plugins: bool,
    pub plugins: Vec<Value>,
}

/// One attachment named in a GC request's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttachmentKey {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Reads the attachments a GC request says are still valid. Spec 1.1 renamed the key
/// after its release; libcni sends both, older runtimes only the first.
pub fn valid_attachments(config: &Value) -> Result<Vec<AttachmentKey>, ProtocolError> {
    let list = config
        .get("cni.dev/valid-attachments")
        .or_else(|| config.get("cni.dev/attachments"));
    match list {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(list) => super::json::from_ref(list).map_err(|source| ProtocolError::Decode {
            what: "cni.dev/valid-attachments",
            error: source,
        }),
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Network names become directory names (host-local's store), hence the strict alphabet.
pub fn validate_network_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::MissingNetworkName);
    }
    if !is_valid_name(name) {
        return Err(ProtocolError::InvalidNetworkName(name.to_string()));
    }
    Ok(())
}

pub fn validate_container_id(id: &str) -> Result<(), ProtocolError> {
    if id.is_empty() {
        return Err(ProtocolError::MissingContainerId);
    }
    if !is_valid_name(id) {
        return Err(ProtocolError::InvalidContainerId(id.to_string()));
    }
    Ok(())
}

/// The longest link name the kernel takes (IFNAMSIZ less the NUL), in bytes.
pub const IFNAME_MAX: usize = 15;

/// The kernel's rules for a link name (IFNAMSIZ and `dev_valid_name`).
pub fn validate_ifname(name: &str) -> Result<(), ProtocolError> {
    let reason = if name.is_empty() {
        Some("interface name is empty")
    } else if name.len() > IFNAME_MAX {
        Some("interface name is too long: at most 15 bytes")
    } else if name == "." || name == ".." {
        Some("interface name is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("interface name contains / or : or whitespace characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ProtocolError::InvalidIfName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_spec_alphabet() {
        assert!(validate_network_name("my-net_1.v2").is_ok());
        assert!(validate_network_name("../etc").is_err());
        assert!(validate_network_name("a/b").is_err());
        assert!(validate_network_name("-net").is_err());
        assert!(matches!(
            validate_container_id(""),
            Err(ProtocolError::MissingContainerId)
        ));
        assert!(validate_container_id("abc def").is_err());
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a234567890123456").is_err());
        assert!(validate_ifname("123456789012345").is_ok());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn gc_reads_both_attachment_keys() {
        let new = json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]});
        let old = json!({"cni.dev/attachments": [{"containerID": "b", "ifname": "eth1"}]});
        assert_eq!(valid_attachments(&new).expect("ok")[0].container_id, "a");
        assert_eq!(valid_attachments(&old).expect("ok")[0].ifname, "eth1");
        assert!(valid_attachments(&json!({})).expect("ok").is_empty());
    }
}
