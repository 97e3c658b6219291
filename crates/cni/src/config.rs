//! Network configuration as a runtime hands it over: the keys every plugin shares, and the
//! conflist a runtime loads. Plugin-specific keys are decoded by each plugin from the same
//! JSON, so nothing a plugin does not know is lost.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{IfNameFault, ProtocolError};
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

/// The alphabet of network names and container IDs, as the reference's `utils` writes it.
pub const NAME_RULE: &str = "it must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$";

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
        return Err(ProtocolError::InvalidContainerId {
            id: id.to_string(),
            reason: NAME_RULE,
        });
    }
    Ok(())
}

/// Whether `name`, joined to a directory, names an entry of that directory and nothing
/// outside it: not empty, no '/', not "." or "..". For names that become paths (a plugin in
/// `CNI_PATH`, a namespace under /run/netns, a network's store under dataDir).
pub fn is_plain_file_name(name: &str) -> bool {
    !(name.is_empty() || name.contains('/') || name == "." || name == "..")
}

/// The longest link name the kernel takes (IFNAMSIZ less the NUL), in bytes.
pub const IFNAME_MAX: usize = 15;

/// The kernel's rules for a link name (IFNAMSIZ and `dev_valid_name`).
pub fn validate_ifname(name: &str) -> Result<(), ProtocolError> {
    let fault = if name.is_empty() {
        IfNameFault::Empty
    } else if name.len() > IFNAME_MAX {
        IfNameFault::TooLong
    } else if name == "." || name == ".." {
        IfNameFault::Dots
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        IfNameFault::Separator
    } else {
        return Ok(());
    };
    Err(ProtocolError::InvalidIfName {
        name: name.to_string(),
        fault,
    })
}

/// A plugin's state directory from its config (`field`, e.g. `dataDir`), or `default` when
/// unset or empty. A relative path would be relative to whatever directory the runtime runs
/// plugins in, and a DEL run from another would look in another store and leak what ADD made.
pub fn data_dir(
    field: &str,
    configured: Option<PathBuf>,
    default: &str,
) -> Result<PathBuf, ProtocolError> {
    let dir = configured
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(default));
    if dir.is_relative() {
        return Err(ProtocolError::config(
            field,
            format!("{dir:?} is relative: give an absolute path"),
        ));
    }
    Ok(dir)
}

/// An `mtu` key of a plugin's config. 0 means unset (the link keeps the kernel's default),
/// as in the reference, whose field is a plain int; any other value must be one every link
/// type takes: from IPv4's minimum to the largest an Ethernet-like link carries.
pub fn link_mtu(field: &str, value: Option<u32>) -> Result<Option<u32>, ProtocolError> {
    match value {
        None | Some(0) => Ok(None),
        Some(mtu) if (68..=65535).contains(&mtu) => Ok(Some(mtu)),
        Some(mtu) => Err(ProtocolError::config(
            field,
            format!("{mtu} is outside 68-65535 (0 leaves the default)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_plain_file_name_stays_in_its_directory() {
        for plain in ["bridge", "net-1", "...", ".hidden", "a b"] {
            assert!(is_plain_file_name(plain), "{plain:?}");
        }
        for escaping in ["", ".", "..", "../etc", "a/b", "/", "/abs"] {
            assert!(!is_plain_file_name(escaping), "{escaping:?}");
        }
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
    fn ifname_faults_carry_the_references_sentences() {
        let fault = |name| match validate_ifname(name) {
            Err(ProtocolError::InvalidIfName { fault, .. }) => Some(fault),
            _ => None,
        };
        assert_eq!(fault(""), Some(IfNameFault::Empty));
        assert_eq!(fault("a234567890123456"), Some(IfNameFault::TooLong));
        assert_eq!(fault(".."), Some(IfNameFault::Dots));
        assert_eq!(fault("a b"), Some(IfNameFault::Separator));
        assert_eq!(fault("eth0"), None);
        let error = validate_ifname("eth0:1").expect_err("a colon");
        assert_eq!(
            error.to_string(),
            "interface name contains / or : or whitespace characters"
        );
        assert_eq!(error.details().as_deref(), Some("\"eth0:1\""));
    }

    #[test]
    fn mtu_zero_is_unset_and_the_rest_is_checked() {
        assert_eq!(link_mtu("mtu", None).expect("absent"), None);
        assert_eq!(link_mtu("mtu", Some(0)).expect("zero"), None);
        assert_eq!(link_mtu("mtu", Some(68)).expect("least"), Some(68));
        assert_eq!(link_mtu("mtu", Some(65535)).expect("most"), Some(65535));
        for bad in [1, 67, 65536, u32::MAX] {
            let error = link_mtu("args.cni.mtu", Some(bad)).expect_err("out of range");
            assert!(error.to_string().contains("args.cni.mtu"), "{error}");
        }
    }
}
