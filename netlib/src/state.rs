//! State a plugin keeps between ADD and DEL (what to restore), one file per attachment
//! under a directory, mode 0600, written atomically.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::cni::AttachmentKey;
use crate::error::{Error, Result};

/// Which attachment a record belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

pub struct Store {
    dir: PathBuf,
}

/// A plugin's state directory from its config (`field`, e.g. `dataDir`), or `default` when
/// unset or empty. A relative path would be relative to whatever directory the runtime runs
/// plugins in, and a DEL run from another would look in another store and leak what ADD made.
pub fn data_dir(field: &str, configured: Option<PathBuf>, default: &str) -> Result<PathBuf> {
    let dir = configured
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(default));
    if dir.is_relative() {
        return Err(crate::cni::ProtocolError::config(
            field,
            format!("{dir:?} is relative: give an absolute path"),
        )
        .into());
    }
    Ok(dir)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::State {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` as JSON to `path` (creating its directory) so that readers see the old
/// file or the new one, never half of one: a temporary file, then a rename. Mode 0600.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let text = serde_json::to_vec(value).map_err(|e| io(path)(e.into()))?;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(&text))
        .and_then(|()| fs::rename(&temp, path))
        .map_err(io(path))
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The store a meta plugin's `dataDir` key names (see [`data_dir`]).
    pub fn configured(data_dir_key: Option<PathBuf>, default: &str) -> Result<Self> {
        Ok(Store::new(data_dir("dataDir", data_dir_key, default)?))
    }

    fn path(&self, key: Key) -> PathBuf {
        // ':' can appear in none of the three (validated names), so the name is unambiguous.
        self.dir.join(format!(
            "{}:{}:{}.json",
            key.network, key.container_id, key.ifname
        ))
    }

    pub fn save<T: Serialize>(&self, key: Key, value: &T) -> Result<()> {
        write_json(&self.path(key), value)
    }

    pub fn load<T: DeserializeOwned>(&self, key: Key) -> Result<Option<T>> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(|e| io(&path)(e.into()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn remove(&self, key: Key) -> Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The (network, container ID, ifname) of every record.
    pub fn keys(&self) -> Vec<(String, String, String)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let mut parts = name.strip_suffix(".json")?.splitn(3, ':');
                let (network, container_id, ifname) = (parts.next()?, parts.next()?, parts.next()?);
                Some((
                    network.to_string(),
                    container_id.to_string(),
                    ifname.to_string(),
                ))
            })
            .collect()
    }

    /// The (container ID, ifname) of every record of `network` not in `valid`.
    pub fn stale(&self, network: &str, valid: &[AttachmentKey]) -> Vec<(String, String)> {
        self.keys()
            .into_iter()
            .filter(|(n, _, _)| n == network)
            .map(|(_, container_id, ifname)| (container_id, ifname))
            .filter(|(c, i)| !valid.iter().any(|k| k.container_id == *c && k.ifname == *i))
            .collect()
    }

    /// Removes the records of `network`'s attachments not in `valid`.
    pub fn gc(&self, network: &str, valid: &[AttachmentKey]) -> Result<()> {
        for (container_id, ifname) in self.stale(network, valid) {
            self.remove(Key {
                network,
                container_id: &container_id,
                ifname: &ifname,
            })?;
        }
        Ok(())
    }
}
