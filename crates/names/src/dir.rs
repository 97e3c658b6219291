//! A network's runtime directory, `<root>/<network>/`: everything its names and its server
//! need, private to root (0700, files 0600, never through a link).
//!
//! | entry | written by | what |
//! |---|---|---|
//! | `names/<attachment>.json` | the plugin (ADD, DEL, GC) | a [`Registration`](crate::Registration) per local container |
//! | `remote.json` | the overlay agent | the names other nodes published |
//! | `server.json` | the plugin | the server's [`ServerConfig`](crate::ServerConfig) |
//! | `lock` | plugins | held across one verb's changes: one server per network |
//! | `server.lock` | the server | held for its whole life |
//! | `control.sock` | the server | the control protocol ([`crate::control`]) |
//! | `server.pid`, `server.log` | the server, the plugin | for people |

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kernel::files::{self, PRIVATE_DIR};
use kernel::lock::FileLock;
use netlib::state::{self, StateError};

use crate::{RemoteFile, ServerConfig};

/// Where the networks' directories are unless a config says otherwise.
pub const DEFAULT_ROOT: &str = "/run/ferrocni/dnsname";

/// The binary of the server, found on `CNI_PATH` beside the plugins.
pub const SERVER_BINARY: &str = "ferrocni-dns";

const NAMES: &str = "names";
const REMOTE: &str = "remote.json";
const CONFIG: &str = "server.json";
const LOCK: &str = "lock";
const SERVER_LOCK: &str = "server.lock";
const CONTROL: &str = "control.sock";
const PID: &str = "server.pid";
const LOG: &str = "server.log";

#[derive(Debug, Clone)]
pub struct NetworkDir {
    path: PathBuf,
}

impl NetworkDir {
    pub fn new(root: &Path, network: &str) -> Self {
        NetworkDir {
            path: root.join(network),
        }
    }

    /// The directory itself (for a server given it on its command line).
    pub fn at(path: PathBuf) -> Self {
        NetworkDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The local registrations, one record per attachment.
    pub fn registrations(&self) -> state::Store {
        state::Store::new(self.path.join(NAMES))
    }

    pub fn log_file(&self) -> PathBuf {
        self.path.join(LOG)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.path.join(PID)
    }

    pub fn config(&self) -> Result<Option<ServerConfig>, StateError> {
        state::read_record(&self.path.join(CONFIG))
    }

    pub fn save_config(&self, config: &ServerConfig) -> Result<(), StateError> {
        state::write_json(&self.path.join(CONFIG), config)
    }

    /// The other nodes' names; none when the agent wrote none.
    pub fn remote(&self) -> Result<RemoteFile, StateError> {
        Ok(state::read_record(&self.path.join(REMOTE))?.unwrap_or_default())
    }

    pub fn save_remote(&self, remote: &RemoteFile) -> Result<(), StateError> {
        state::write_json(&self.path.join(REMOTE), remote)
    }

    /// Makes the directory (and the root) if missing, mode 0700.
    pub fn create(&self) -> io::Result<()> {
        files::create_dir(&self.path, PRIVATE_DIR)
    }

    /// The directory opened (never through a link), for its locks and its socket; `None`
    /// when it does not exist.
    pub fn open(&self) -> io::Result<Option<OpenDir>> {
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.path);
        match opened {
            Ok(file) => Ok(Some(OpenDir { file })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An open network directory.
pub struct OpenDir {
    file: File,
}

impl OpenDir {
    /// The lock plugins hold while they change the network's names and start its server.
    pub fn lock(&self) -> io::Result<FileLock> {
        FileLock::exclusive_in(self.file.as_fd(), LOCK)
    }

    /// The lock the server holds for its life: `None` while a server runs.
    pub fn server_lock(&self) -> io::Result<Option<FileLock>> {
        FileLock::try_exclusive_in(self.file.as_fd(), SERVER_LOCK)
    }

    /// The control socket's path through this descriptor: a socket address holds at most
    /// 107 bytes, less than a root and a network name may take.
    pub fn control_socket(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{CONTROL}", self.file.as_raw_fd()))
    }
}

/// The networks that have a directory under `root`.
pub fn networks(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| cni::config::validate_network_name(name).is_ok())
        .collect();
    found.sort();
    found
}
