//! host-local's on-disk store, in the reference plugin's own format so a node can switch
//! between the reference and ferrocni without losing a reservation:
//!
//! `<dataDir>/<network>/<ip>` holds `<containerID>\r\n<ifname>` (older reference versions
//! wrote the container ID alone), `last_reserved_ip.<rangeSetIndex>` holds the last address
//! handed out, and `lock` is flocked by whoever changes the directory.
//!
//! Unlike the reference, a reservation is written to a temporary file and hard-linked into
//! place, which is atomic and fails if the address is taken: a process killed half-way can
//! never leave a half-written reservation, only a stray temporary that GC removes. There is
//! no fsync: after a power loss every reservation is stale anyway, and GC is the remedy.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::IpamError;
use crate::lock::FileLock;

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const TEMP_PREFIX: &str = ".tmp-";

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub ip: IpAddr,
    pub container_id: String,
    /// `None` for files written by reference versions that recorded no interface.
    pub ifname: Option<String>,
}

impl Reservation {
    pub fn held_by(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname.as_deref() == Some(ifname)
    }

    pub(crate) fn held_by_legacy(&self, container_id: &str) -> bool {
        self.ifname.is_none() && self.container_id == container_id
    }
}

/// One network's store, locked for as long as the value lives.
pub struct Store {
    dir: PathBuf,
    _lock: FileLock,
}

/// A small file in `dir`, read with as few syscalls as a file that fits one buffer allows.
fn read_small(dir: &fs::File, name: &std::ffi::OsStr) -> io::Result<String> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(io::Error::from)?;
    let mut file = fs::File::from(fd);
    let mut buffer = [0u8; 512];
    let mut content = Vec::new();
    loop {
        let read = io::Read::read(&mut file, &mut buffer)?;
        content.extend_from_slice(&buffer[..read]);
        // A regular file returns all it has; a short read means the end.
        if read < buffer.len() {
            break;
        }
    }
    String::from_utf8(content).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> IpamError + '_ {
    move |source| IpamError::Store {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (creating it if needed) and locks the store of `network` under `data_dir`.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, IpamError> {
        // The skeleton already refuses such names; the store never trusts a caller with paths.
        if network.is_empty() || network.contains('/') || network == "." || network == ".." {
            return Err(IpamError::Store {
                path: data_dir.join(network),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "network name would escape dataDir",
                ),
            });
        }
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let lock_path = dir.join("lock");
        let lock = FileLock::exclusive(&lock_path).map_err(io_error(&lock_path))?;
        Ok(Store { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every reservation in the store. Files that are not addresses are ignored.
    pub fn reservations(&self) -> Result<Vec<Reservation>, IpamError> {
        let mut found = Vec::new();
        // Every ADD reads every reservation (as the reference does, to find the attachment's
        // own): open them relative to the directory, with one read each, so a thousand cost
        // 2 syscalls apiece instead of a path walk, a stat and two reads.
        let dir = fs::File::open(&self.dir).map_err(io_error(&self.dir))?;
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let content = match read_small(&dir, &entry.file_name()) {
                Ok(content) => content,
                // Released by nobody else (we hold the lock), but be tolerant as the reference is.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&entry.path())(e)),
            };
            let content = content.trim();
            let (container_id, ifname) = match content.split_once("\r\n") {
                Some((id, ifname)) => (id.trim().to_string(), Some(ifname.trim().to_string())),
                None => (content.to_string(), None),
            };
            found.push(Reservation {
                ip,
                container_id,
                ifname,
            });
        }
        Ok(found)
    }

    /// The reservations of one attachment; legacy files (no ifname) count when no file
    /// names the interface, as the reference matches them.
    pub fn held_by(&self, container_id: &str, ifname: &str) -> Result<Vec<Reservation>, IpamError> {
        let all = self.reservations()?;
        let exact: Vec<Reservation> = all
            .iter()
            .filter(|r| r.held_by(container_id, ifname))
            .cloned()
            .collect();
        if !exact.is_empty() {
            return Ok(exact);
        }
        Ok(all
            .into_iter()
            .filter(|r| r.held_by_legacy(container_id))
            .collect())
    }

    /// Claims `ip` for the attachment; `false` when someone already holds it.
    pub fn reserve(&self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool, IpamError> {
        let target = self.dir.join(ip.to_string());
        let temp = self.write_temp(
            &ip.to_string(),
            format!("{}\r\n{ifname}", container_id.trim()).as_bytes(),
        )?;
        let linked = fs::hard_link(&temp, &target);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error(&target)(e)),
        }
    }

    pub fn release(&self, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Where round-robin allocation in range set `index` resumes. Unreadable means "start over".
    pub fn last_reserved(&self, index: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("{LAST_RESERVED_PREFIX}{index}")))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// Overwrites the hint in place rather than renaming a new file over it: ext4 flushes
    /// a file's data to disk when it replaces another by rename (its `auto_da_alloc`
    /// safeguard), a cost paid on every ADD. A torn hint after a crash is harmless: an
    /// unreadable one means "start over" (see [`Store::last_reserved`]).
    pub fn set_last_reserved(&self, index: usize, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{index}"));
        let text = ip.to_string();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                // Shrinking to a non-zero length: ext4 flushes on close after a truncation
                // to zero only.
                file.set_len(text.len() as u64)
            })
            .map_err(io_error(&path))
    }

    /// Removes temporaries a crashed process left behind.
    pub fn remove_stale_temporaries(&self) -> Result<(), IpamError> {
        for entry in fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn write_temp(&self, name: &str, content: &[u8]) -> Result<PathBuf, IpamError> {
        let path = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{name}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(content));
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(io_error(&path)(e));
        }
        Ok(path)
    }
}
