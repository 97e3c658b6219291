//! Network configurations as libcni loads them: every `.conf`, `.conflist` and `.json` file
//! of a directory, in name order; a single-plugin `.conf` becomes a one-plugin list.

use cni::{json, NetConfList, Version};
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::CtlError;

/// One network: its list and the bytes it was read from (libcni caches those).
#[derive(Debug, Clone)]
pub struct Network {
    pub list: NetConfList,
    pub version: Version,
    pub bytes: Vec<u8>,
}

impl Network {
    pub fn name(&self) -> &str {
        &self.list.name
    }

    fn from_file(file: &Path) -> Result<Network, CtlError> {
        let bytes =
            std::fs::read(file).map_err(|e| CtlError::Config(file.to_path_buf(), e.to_string()))?;
        let mut value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| CtlError::Config(file.to_path_buf(), e.to_string()))?;
        let mut bytes = bytes;
        if value.get("plugins").is_none() {
            // A single plugin: the list is that plugin under the same name and version, and
            // its bytes are that list's (a list's own are the file's, as libcni keeps them).
            value = serde_json::json!({
                "cniVersion": value.get("cniVersion").cloned().unwrap_or(Value::from("0.1.0")),
                "name": value.get("name").cloned().unwrap_or_default(),
                "plugins": [value.clone()],
            });
            bytes = serde_json::to_vec(&value).unwrap_or(bytes);
        }
        let list: NetConfList = json::from_value(value)
            .map_err(|e| CtlError::Config(file.to_path_buf(), e.to_string()))?;
        let version = choose_version(&list).ok_or_else(|| {
            CtlError::Config(
                file.to_path_buf(),
                format!(
                    "no spec version we speak in {:?} / {:?}",
                    list.cni_version, list.cni_versions
                ),
            )
        })?;
        if list.name.is_empty() || list.plugins.is_empty() {
            return Err(CtlError::Config(
                file.to_path_buf(),
                "a network needs a name and at least one plugin".into(),
            ));
        }
        Ok(Network {
            list,
            version,
            bytes,
        })
    }
}

/// Spec 1.1: the highest of `cniVersions` we speak, else `cniVersion`.
fn choose_version(list: &NetConfList) -> Option<Version> {
    list.cni_versions
        .iter()
        .filter_map(|v| Version::parse(v))
        .max()
        .or_else(|| Version::parse(&list.cni_version))
}

/// Every network in `dir`, in file-name order; unreadable files are reported, not fatal.
pub fn load_all(dir: &Path) -> Result<Vec<Network>, CtlError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CtlError::Config(dir.to_path_buf(), e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    let mut networks = Vec::new();
    for file in files {
        match Network::from_file(&file) {
            Ok(network) => networks.push(network),
            Err(e) => eprintln!("cnictl: skipping {}: {e}", file.display()),
        }
    }
    Ok(networks)
}

/// The network called `name` (the first file that defines it, as libcni).
pub fn load(dir: &Path, name: &str) -> Result<Network, CtlError> {
    load_all(dir)?
        .into_iter()
        .find(|n| n.name() == name)
        .ok_or_else(|| CtlError::NoNetwork(name.to_string(), dir.to_path_buf()))
}
