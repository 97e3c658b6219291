//! State a plugin keeps between ADD and DEL (what to restore), one file per attachment
//! under a directory only root reads (see [`kernel::files`]), written atomically. What is
//! read back is checked like any input ([`Record::check`]) before anything acts on it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

use cni::{config::data_dir, AttachmentId, Coded, ErrorCode, ValidAttachments};
use kernel::files::{self, PRIVATE_DIR, PRIVATE_FILE};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// State a plugin keeps on disk between ADD and DEL.
    #[error("plugin state {path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record read back from disk that no ADD of the plugin would have written (someone
    /// else wrote or replaced it): nothing is done with it, and it is set aside for an admin.
    #[error("plugin state {path:?} is no record this plugin wrote: {reason}")]
    Record { path: PathBuf, reason: String },
}

impl Coded for StateError {
    fn code(&self) -> ErrorCode {
        match self {
            StateError::Io { .. } => ErrorCode::Io,
            StateError::Record { .. } => ErrorCode::Decode,
        }
    }
}

type Result<T, E = StateError> = std::result::Result<T, E>;

/// What a plugin records. A record read back is input like any other, chosen by whoever
/// could write the directory: `check` says why it is not one the plugin's ADD would have
/// written (naming the field), and then DEL acts on none of it.
pub trait Record: Serialize + DeserializeOwned {
    fn check(&self) -> std::result::Result<(), String>;
}

/// A plugin config kept for DEL (vxlan's bridge config): it goes through the same decoding
/// and validation as a runtime's config when it is used.
impl Record for serde_json::Value {
    fn check(&self) -> std::result::Result<(), String> {
        if self.is_object() {
            Ok(())
        } else {
            Err("the recorded config is not a JSON object".to_string())
        }
    }
}

pub struct Store {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` as JSON to `path`, mode 0600 in a directory made 0700 if missing, so that
/// readers see the old file or the new one, never half of one (see [`files::replace`]).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec(value).map_err(|e| io(path)(e.into()))?;
    files::replace(path, &text, PRIVATE_FILE, PRIVATE_DIR).map_err(io(path))
}

/// The record at `path`, if there is one; a link in its place is refused, not followed.
///
/// A record that does not decode or fails its check is refused once: it is set aside as
/// `<name>.rejected` for an admin to read, and the error names it. The runtime's retry
/// then finds no record and goes on without it, so one bad file cannot make every DEL
/// of the attachment fail for good (which would block the rest of the chain's DELs).
pub fn read_record<T: Record>(path: &Path) -> Result<Option<T>> {
    let bytes = match files::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let refusal = match serde_json::from_slice::<T>(&bytes) {
        Ok(record) => match record.check() {
            Ok(()) => return Ok(Some(record)),
            Err(reason) => reason,
        },
        Err(e) => format!("it is not a record of this plugin: {e}"),
    };
    let aside = path.with_extension("json.rejected");
    let reason = match fs::rename(path, &aside) {
        Ok(()) => format!("{refusal} (set aside as {aside:?}; nothing was restored from it)"),
        Err(e) => format!("{refusal} (and it could not be set aside: {e})"),
    };
    Err(StateError::Record {
        path: path.to_path_buf(),
        reason,
    })
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The store a meta plugin's `dataDir` key names (see [`data_dir`](cni::config::data_dir)).
    pub fn configured(
        data_dir_key: Option<PathBuf>,
        default: &str,
    ) -> Result<Self, cni::ProtocolError> {
        Ok(Store::new(data_dir("dataDir", data_dir_key, default)?))
    }

    /// `<network>:<containerID>:<ifname>.json`, the attachment's text form.
    fn path(&self, id: &AttachmentId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save<T: Record>(&self, id: &AttachmentId, value: &T) -> Result<()> {
        write_json(&self.path(id), value)
    }

    /// The record of `id`, if there is one (see [`read_record`]).
    pub fn load<T: Record>(&self, id: &AttachmentId) -> Result<Option<T>> {
        read_record(&self.path(id))
    }

    pub fn remove(&self, id: &AttachmentId) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The attachment of every record.
    pub fn ids(&self) -> Vec<AttachmentId> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                name.to_str()?.strip_suffix(".json")?.parse().ok()
            })
            .collect()
    }

    /// The attachments of `valid`'s network whose records it does not list.
    pub fn stale(&self, valid: &ValidAttachments) -> Vec<AttachmentId> {
        self.ids()
            .into_iter()
            .filter(|id| id.network == valid.network() && !valid.contains(id))
            .collect()
    }

    /// Removes the records of the attachments of `valid`'s network that it does not list.
    pub fn gc(&self, valid: &ValidAttachments) -> Result<()> {
        for id in self.stale(valid) {
            self.remove(&id)?;
        }
        Ok(())
    }
}
