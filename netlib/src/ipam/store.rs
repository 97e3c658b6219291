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
//!
//! The reference finds an attachment's reservations by reading every reservation file, on
//! every ADD and DEL: a thousand opens on a node with a thousand containers, most of such
//! an ADD's time. ferrocni keeps an owner index beside them, `.ferrocni-owners/<digest of
//! container ID and ifname>`, listing the addresses of one attachment, and in
//! `.ferrocni-owners/stamp` a modification time it gave the directory after its own last
//! change. While the directory still has it, nobody else changed the store and the index is
//! complete; otherwise (the reference plugin or an admin was there, or ferrocni died
//! half-way) the index is rebuilt from a full read. Each listed address is checked against
//! its reservation file, so a stale entry can neither hide nor invent a reservation. The
//! reference ignores the directory: its names are no addresses and its contents no owners.
//!
//! Released files are not unlinked but kept in `.ferrocni-owners/spare/` (up to
//! `SPARE_LIMIT`) and renamed into place by the next ADD: creating a file costs ext4 0.2 ms
//! on the machines we measure on (an `open(O_CREAT)` in a fresh directory), two of them a
//! tenth of a bridge ADD, where a rename costs 0.02 ms. A spare's name is no address, so the
//! reference, which reads every file under the directory, never takes one for a reservation.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::IpamError;
use crate::lock::FileLock;

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const TEMP_PREFIX: &str = ".tmp-";
const INDEX_DIR: &str = ".ferrocni-owners";
const STAMP: &str = "stamp";
const SPARE_DIR: &str = "spare";
/// Released files kept for reuse; past this many they are removed.
const SPARE_LIMIT: usize = 64;
/// Spare name prefixes: a reservation file, an owner index file (reused for their own kind,
/// whose contents have about the same length, so rewriting one seldom shrinks it).
const SPARE_RESERVATION: &str = "r";
const SPARE_OWNER: &str = "o";

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

    /// The name of its owner's index file.
    fn owner_key(&self) -> String {
        owner_key(&self.container_id, self.ifname.as_deref())
    }
}

/// An attachment's index file name; `None` for legacy files that name no interface.
fn owner_key(container_id: &str, ifname: Option<&str>) -> String {
    let owner = match ifname {
        Some(ifname) => format!("{}\r\n{ifname}", container_id.trim()),
        None => container_id.trim().to_string(),
    };
    crate::firewall::digest(&owner, 32)
}

/// One network's store, locked for as long as the value lives.
pub struct Store {
    dir: PathBuf,
    /// Set by every change; the stamp is written when the store is dropped, still locked,
    /// unless updating the index failed: then the next caller rebuilds it.
    changed: Cell<bool>,
    index_failed: Cell<bool>,
    _lock: FileLock,
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.changed.get() && !self.index_failed.get() {
            // Best effort: a stamp that fails to match only costs the next caller a rebuild.
            let _ = self.write_stamp();
        }
    }
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

/// The reservations of one attachment among `all`: those naming it, or else legacy ones
/// (no ifname) of its container, as the reference matches them.
fn select_owner(all: Vec<Reservation>, container_id: &str, ifname: &str) -> Vec<Reservation> {
    let (exact, rest): (Vec<Reservation>, Vec<Reservation>) = all
        .into_iter()
        .partition(|r| r.held_by(container_id, ifname));
    if !exact.is_empty() {
        return exact;
    }
    rest.into_iter()
        .filter(|r| r.held_by_legacy(container_id))
        .collect()
}

/// A reservation file's content: `<containerID>\r\n<ifname>`, or the ID alone (legacy).
fn parse_reservation(ip: IpAddr, content: &str) -> Reservation {
    let content = content.trim();
    let (container_id, ifname) = match content.split_once("\r\n") {
        Some((id, ifname)) => (id.trim().to_string(), Some(ifname.trim().to_string())),
        None => (content.to_string(), None),
    };
    Reservation {
        ip,
        container_id,
        ifname,
    }
}

/// Replaces a small file's content in place: open without truncating, write, shrink to
/// length only when the old content was longer. Truncating to zero, or renaming a new file
/// over the old, makes ext4 flush the data to disk on close (its `auto_da_alloc` safeguard),
/// and ext4 runs a journalled truncate even when the size does not change (up to 0.2 ms
/// here), both costs on every ADD. A write torn by a crash is harmless for the files written
/// so: hints and caches that are checked.
fn overwrite(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let old_length = file.metadata()?.len();
    file.write_all(content)?;
    let length = content.len() as u64;
    if old_length > length {
        file.set_len(length)?;
    }
    Ok(())
}

/// Moves `from` to `to` unless `to` exists, atomically (rename(2) with RENAME_NOREPLACE).
/// A filesystem that cannot do that gets a hard link and the removal of `from`, which
/// claims `to` as atomically.
fn place(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = |path: &Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (c_from, c_to) = (c_path(from)?, c_path(to)?);
    // A raw system call: nix wraps renameat2 for glibc only, and plugins link musl.
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; the kernel
    // only reads them.
    let done = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        _ => Err(error),
    }
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
        Ok(Store {
            dir,
            changed: Cell::new(false),
            index_failed: Cell::new(false),
            _lock: lock,
        })
    }

    /// Every reservation in the store. Files that are not addresses are ignored.
    pub fn reservations(&self) -> Result<Vec<Reservation>, IpamError> {
        let mut found = Vec::new();
        // GC, STATUS and rebuilding the owner index read every reservation: open them
        // relative to the directory, with one read each, so a thousand cost 2 syscalls
        // apiece instead of a path walk, a stat and two reads.
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
            found.push(parse_reservation(ip, &content));
        }
        Ok(found)
    }

    /// The reservations of one attachment; legacy files (no ifname) count when no file
    /// names the interface, as the reference matches them. From the owner index when it is
    /// complete, else from a full read that rebuilds it.
    pub fn held_by(&self, container_id: &str, ifname: &str) -> Result<Vec<Reservation>, IpamError> {
        if !self.index_is_complete() {
            let all = self.reservations()?;
            self.rebuild_index(&all);
            if self.index_failed.get() {
                return Ok(select_owner(all, container_id, ifname));
            }
        }
        let exact = self.indexed(&owner_key(container_id, Some(ifname)), |r| {
            r.held_by(container_id, ifname)
        })?;
        if !exact.is_empty() {
            return Ok(exact);
        }
        self.indexed(&owner_key(container_id, None), |r| {
            r.held_by_legacy(container_id)
        })
    }

    /// Claims `ip` for the attachment; `false` when someone already holds it.
    pub fn reserve(&self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool, IpamError> {
        Ok(self
            .reserve_first([(ip, ())], container_id, ifname)?
            .is_some())
    }

    /// Claims the first free address of `candidates` (each with what the caller wants back
    /// with it) for the attachment; `None` when all are taken. One file, written before any
    /// attempt, serves them all: a taken address costs one rename(2) that refuses to replace.
    pub fn reserve_first<T>(
        &self,
        candidates: impl IntoIterator<Item = (IpAddr, T)>,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<(IpAddr, T)>, IpamError> {
        let content = format!("{}\r\n{ifname}", container_id.trim());
        let spare = self
            .take_spare(SPARE_RESERVATION)
            .filter(|spare| overwrite(spare, content.as_bytes()).is_ok());
        let temp = match &spare {
            Some(spare) => spare.clone(),
            None => self.write_temp("reservation", content.as_bytes())?,
        };
        let mut claimed = None;
        let mut failure = None;
        for (ip, with) in candidates {
            let target = self.dir.join(ip.to_string());
            match place(&temp, &target) {
                Ok(()) => {
                    claimed = Some((ip, with));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    failure = Some(io_error(&target)(e));
                    break;
                }
            }
        }
        // A spare nobody claimed stays one; a new temporary goes.
        if claimed.is_none() && spare.is_none() {
            let _ = fs::remove_file(&temp);
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        if let Some((ip, _)) = &claimed {
            self.changed.set(true);
            self.update_owner(&owner_key(container_id, Some(ifname)), |ips| ips.push(*ip));
        }
        Ok(claimed)
    }

    /// Releases a reservation (as read from the store or just made).
    pub fn release(&self, reservation: &Reservation) -> Result<(), IpamError> {
        let path = self.dir.join(reservation.ip.to_string());
        self.changed.set(true);
        let spare_name = format!("{SPARE_RESERVATION}{}", reservation.ip);
        match self.retire(&path, &spare_name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&path)(e)),
            _ => {}
        }
        self.update_owner(&reservation.owner_key(), |ips| {
            ips.retain(|ip| *ip != reservation.ip)
        });
        Ok(())
    }

    /// Where round-robin allocation in range set `index` resumes. Unreadable means "start over".
    pub fn last_reserved(&self, index: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("{LAST_RESERVED_PREFIX}{index}")))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// The hint is overwritten in place (see `overwrite`); an unreadable one means "start
    /// over" (see [`Store::last_reserved`]).
    pub fn set_last_reserved(&self, index: usize, ip: IpAddr) -> Result<(), IpamError> {
        // Creating the file changes the directory.
        self.changed.set(true);
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{index}"));
        overwrite(&path, ip.to_string().as_bytes()).map_err(io_error(&path))
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

    fn index_dir(&self) -> PathBuf {
        self.dir.join(INDEX_DIR)
    }

    /// The directory's modification time, as the stamp records it.
    fn directory_state(&self) -> io::Result<String> {
        let metadata = fs::metadata(&self.dir)?;
        Ok(format!("{}.{:09}", metadata.mtime(), metadata.mtime_nsec()))
    }

    /// Whether the index describes every reservation: nobody but ferrocni, and ferrocni
    /// only to the end, changed the directory since the stamp was written.
    fn index_is_complete(&self) -> bool {
        let stamp = fs::read_to_string(self.index_dir().join(STAMP));
        match (stamp, self.directory_state()) {
            (Ok(stamp), Ok(state)) => stamp == state,
            _ => false,
        }
    }

    /// Marks the directory with a modification time of its own, a random nanosecond within
    /// the current second, and records it. Any later entry made or removed by anyone sets
    /// the kernel's clock time instead, which is the mark by a one in a billion chance. The
    /// clock itself would not do: where it ticks every few milliseconds (kernels before
    /// 6.13's multigrain timestamps), a change right after ours would keep our time.
    fn write_stamp(&self) -> io::Result<()> {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mark = TimeSpec::new(
            now.as_secs().try_into().unwrap_or_default(),
            (crate::random_u32() % 1_000_000_000).into(),
        );
        utimensat(
            nix::fcntl::AT_FDCWD,
            &self.dir,
            &TimeSpec::UTIME_OMIT,
            &mark,
            UtimensatFlags::FollowSymlink,
        )?;
        let state = self.directory_state()?;
        self.write_in_index(STAMP, state.as_bytes())
    }

    /// Writes a file of the index (see [`overwrite`]), making the index directory only the
    /// first time: it is there for every change but the first.
    fn write_in_index(&self, name: &str, content: &[u8]) -> io::Result<()> {
        let path = self.index_dir().join(name);
        match overwrite(&path, content) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(self.index_dir())?;
                overwrite(&path, content)
            }
            other => other,
        }
    }

    /// The reservations an index file lists that `owns` still holds.
    fn indexed(
        &self,
        key: &str,
        owns: impl Fn(&Reservation) -> bool,
    ) -> Result<Vec<Reservation>, IpamError> {
        let mut held = Vec::new();
        for ip in self.owner_entries(key)? {
            if let Some(reservation) = self.reservation(ip)? {
                if owns(&reservation) {
                    held.push(reservation);
                }
            }
        }
        Ok(held)
    }

    fn owner_entries(&self, key: &str) -> Result<Vec<IpAddr>, IpamError> {
        let path = self.index_dir().join(key);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().filter_map(|l| l.parse().ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Rewrites one index file through `change`; an empty list removes it. The index is a
    /// cache: failing to update it fails nothing but the stamp.
    fn update_owner(&self, key: &str, change: impl FnOnce(&mut Vec<IpAddr>)) {
        let updated = self.owner_entries(key).and_then(|mut ips| {
            change(&mut ips);
            self.write_owner(key, &ips)
        });
        self.index_failed
            .set(self.index_failed.get() || updated.is_err());
    }

    fn write_owner(&self, key: &str, ips: &[IpAddr]) -> Result<(), IpamError> {
        let path = self.index_dir().join(key);
        if ips.is_empty() {
            return match self.retire(&path, &format!("{SPARE_OWNER}{key}")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(e)),
                _ => Ok(()),
            };
        }
        if !path.exists() {
            if let Some(spare) = self.take_spare(SPARE_OWNER) {
                // Best effort: without it the file is simply made anew below.
                let _ = fs::rename(spare, &path);
            }
        }
        let text: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        self.write_in_index(key, text.as_bytes())
            .map_err(io_error(&path))
    }

    /// Replaces the index with one made from `all`, the store's every reservation.
    fn rebuild_index(&self, all: &[Reservation]) {
        self.changed.set(true);
        let rebuilt = self.write_index(all);
        self.index_failed
            .set(self.index_failed.get() || rebuilt.is_err());
    }

    fn write_index(&self, all: &[Reservation]) -> Result<(), IpamError> {
        let dir = self.index_dir();
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&dir)(e)),
            _ => {}
        }
        let mut owners: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for reservation in all {
            owners
                .entry(reservation.owner_key())
                .or_default()
                .push(reservation.ip);
        }
        for (key, ips) in &owners {
            self.write_owner(key, ips)?;
        }
        Ok(())
    }

    /// The reservation of `ip`, if someone holds it.
    fn reservation(&self, ip: IpAddr) -> Result<Option<Reservation>, IpamError> {
        let path = self.dir.join(ip.to_string());
        match fs::read_to_string(&path) {
            Ok(content) => Ok(Some(parse_reservation(ip, &content))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn spare_dir(&self) -> PathBuf {
        self.index_dir().join(SPARE_DIR)
    }

    /// A released file of one kind (its name starts with `kind`) to reuse, if there is one.
    fn take_spare(&self, kind: &str) -> Option<PathBuf> {
        fs::read_dir(self.spare_dir())
            .ok()?
            .flatten()
            .find(|entry| entry.file_name().to_string_lossy().starts_with(kind))
            .map(|entry| entry.path())
    }

    /// Takes `path` out of use: among the spares as `name` (replacing an older spare of
    /// that name), or removed when there are enough spares already or they cannot be kept.
    fn retire(&self, path: &Path, name: &str) -> io::Result<()> {
        let dir = self.spare_dir();
        let keep = || -> io::Result<()> {
            if fs::read_dir(&dir).map_or(0, Iterator::count) >= SPARE_LIMIT {
                return Err(io::ErrorKind::StorageFull.into());
            }
            match fs::rename(path, dir.join(name)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
                    fs::create_dir_all(&dir)?;
                    fs::rename(path, dir.join(name))
                }
                other => other,
            }
        };
        keep().or_else(|_| fs::remove_file(path))
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

#[cfg(test)]
mod tests {
    use super::*;

    struct TempStore(PathBuf);

    impl TempStore {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "ferrocni-store-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            TempStore(dir)
        }

        fn open(&self) -> Store {
            Store::open(&self.0, "net").expect("store")
        }

        /// Writes a reservation the way the reference plugin does, behind ferrocni's back.
        fn foreign(&self, ip: &str, content: &str) {
            fs::write(self.0.join("net").join(ip), content).expect("write");
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn ips(reservations: &[Reservation]) -> Vec<IpAddr> {
        reservations.iter().map(|r| r.ip).collect()
    }

    #[test]
    fn the_index_finds_own_reservations_and_stays_complete() {
        let temp = TempStore::new("own");
        {
            let store = temp.open();
            assert!(store
                .reserve(ip("10.0.0.2"), "alpha", "eth0")
                .expect("store operation"));
            assert!(store
                .reserve(ip("10.0.0.3"), "beta", "eth0")
                .expect("store operation"));
            assert!(!store
                .reserve(ip("10.0.0.3"), "alpha", "eth1")
                .expect("store operation"));
        }
        let store = temp.open();
        assert!(store.index_is_complete(), "only ferrocni changed the store");
        assert_eq!(
            ips(&store.held_by("alpha", "eth0").expect("store operation")),
            [ip("10.0.0.2")]
        );
        let beta = store.held_by("beta", "eth0").expect("store operation");
        assert_eq!(ips(&beta), [ip("10.0.0.3")]);
        store.release(&beta[0]).expect("store operation");
        drop(store);
        let store = temp.open();
        assert!(store.index_is_complete());
        assert!(store
            .held_by("beta", "eth0")
            .expect("store operation")
            .is_empty());
    }

    #[test]
    fn a_foreign_change_is_seen_and_rebuilds_the_index() {
        let temp = TempStore::new("foreign");
        drop(temp.open().reserve(ip("10.0.0.2"), "alpha", "eth0"));
        temp.foreign("10.0.0.7", "gamma\r\neth0");
        temp.foreign("10.0.0.8", "legacy");
        let store = temp.open();
        assert!(!store.index_is_complete());
        assert_eq!(
            ips(&store.held_by("gamma", "eth0").expect("store operation")),
            [ip("10.0.0.7")]
        );
        drop(store);
        let store = temp.open();
        assert!(store.index_is_complete(), "rebuilt and stamped");
        assert_eq!(
            ips(&store.held_by("legacy", "eth0").expect("store operation")),
            [ip("10.0.0.8")]
        );
        assert_eq!(
            ips(&store.held_by("alpha", "eth0").expect("store operation")),
            [ip("10.0.0.2")]
        );
    }

    #[test]
    fn an_index_that_cannot_be_written_fails_nothing() {
        let temp = TempStore::new("unwritable");
        drop(temp.open());
        // A file where the index directory belongs.
        fs::write(temp.0.join("net").join(INDEX_DIR), "").expect("write");
        {
            let store = temp.open();
            assert!(store
                .reserve(ip("10.0.0.2"), "alpha", "eth0")
                .expect("store operation"));
        }
        let store = temp.open();
        assert!(!store.index_is_complete(), "no stamp without an index");
        assert_eq!(
            ips(&store.held_by("alpha", "eth0").expect("store operation")),
            [ip("10.0.0.2")]
        );
        let alpha = store.held_by("alpha", "eth0").expect("store operation");
        store.release(&alpha[0]).expect("store operation");
        assert!(store
            .held_by("alpha", "eth0")
            .expect("store operation")
            .is_empty());
    }

    #[test]
    fn a_stale_index_entry_does_not_invent_a_reservation() {
        let temp = TempStore::new("stale");
        {
            let store = temp.open();
            assert!(store
                .reserve(ip("10.0.0.2"), "alpha", "eth0")
                .expect("store operation"));
        }
        // Someone rewrote the file in place (the reference never does: it creates with
        // O_EXCL), which changes no entry of the directory.
        fs::write(temp.0.join("net").join("10.0.0.2"), "beta\r\neth0").expect("store operation");
        let store = temp.open();
        assert!(
            store.index_is_complete(),
            "an in-place rewrite changes no entry"
        );
        assert!(store
            .held_by("alpha", "eth0")
            .expect("store operation")
            .is_empty());
    }

    #[test]
    fn released_files_are_reused_instead_of_made() {
        let temp = TempStore::new("spares");
        let inode = |path: PathBuf| fs::metadata(path).expect("metadata").ino();
        let net = temp.0.join("net");
        // One store per step, as one plugin process per ADD and DEL.
        assert!(temp
            .open()
            .reserve(ip("10.0.0.2"), "alpha", "eth0")
            .expect("reserve"));
        let (reservation, index) = (
            inode(net.join("10.0.0.2")),
            inode(net.join(INDEX_DIR).join(owner_key("alpha", Some("eth0")))),
        );
        {
            let store = temp.open();
            let alpha = store.held_by("alpha", "eth0").expect("held");
            store.release(&alpha[0]).expect("release");
        }
        assert!(temp
            .open()
            .reserve(ip("10.0.0.3"), "beta", "eth0")
            .expect("reserve"));
        assert_eq!(inode(net.join("10.0.0.3")), reservation);
        assert_eq!(
            inode(net.join(INDEX_DIR).join(owner_key("beta", Some("eth0")))),
            index
        );
        // Reused, the files say only what they say now.
        let store = temp.open();
        assert!(store.index_is_complete());
        assert_eq!(
            store.held_by("beta", "eth0").expect("held"),
            [Reservation {
                ip: ip("10.0.0.3"),
                container_id: "beta".into(),
                ifname: Some("eth0".into()),
            }]
        );
        assert!(store.held_by("alpha", "eth0").expect("held").is_empty());
        // Taken, the address refuses a second claim.
        assert!(!store
            .reserve(ip("10.0.0.3"), "gamma", "eth0")
            .expect("reserve"));
        assert!(store.held_by("gamma", "eth0").expect("held").is_empty());
    }

    #[test]
    fn spares_are_capped_and_never_named_as_addresses() {
        let temp = TempStore::new("cap");
        let store = temp.open();
        let count = SPARE_LIMIT + 6;
        for n in 0..count {
            let address = ip(&format!("10.0.1.{}", n + 2));
            assert!(store
                .reserve(address, &format!("c{n}"), "eth0")
                .expect("reserve"));
        }
        for reservation in store.reservations().expect("all") {
            store.release(&reservation).expect("release");
        }
        let spares: Vec<String> = fs::read_dir(store.spare_dir())
            .expect("spares")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(spares.len(), SPARE_LIMIT);
        // The reference takes any file whose name is an address for a reservation.
        assert!(
            spares.iter().all(|name| name.parse::<IpAddr>().is_err()),
            "{spares:?}"
        );
        assert!(store.reservations().expect("all").is_empty());
    }

    #[test]
    fn overwrite_shrinks_only_what_was_longer() {
        let temp = TempStore::new("overwrite");
        fs::create_dir_all(&temp.0).expect("mkdir");
        let path = temp.0.join("hint");
        for content in ["10.0.0.100", "10.0.0.9", "10.0.0.8", "10.0.0.10"] {
            overwrite(&path, content.as_bytes()).expect("written");
            assert_eq!(fs::read_to_string(&path).expect("read"), content);
        }
    }
}
