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
//! `SPARE_LIMIT`) and renamed into place by the next ADD: ext4 makes a new file
//! (an `open(O_CREAT)`, which allocates and journals an inode) at many times the cost of a
//! rename, and an ADD would make two. A spare's name is no address, so the
//! reference, which reads every file under the directory, never takes one for a reservation;
//! and a spare is blanked when it is kept, so no released container's ID stays on disk.
//!
//! Root writes here on behalf of whoever wrote the config, so nothing is trusted that the
//! store's owner did not make: the store directory must be the caller's own, writable by
//! nobody else and no symbolic link (modes as the reference makes them: directories 0755,
//! the index 0700, files 0600, whatever the umask); the store and index directories are
//! opened once without following a link, and every file in them is reached relative to
//! those descriptors, opened with O_NOFOLLOW and created with O_EXCL or claimed with
//! RENAME_NOREPLACE. A link planted in the store is never followed: it is no reservation,
//! no spare and no index file, and GC or the next rebuild removes it.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::IpamError;
use dirfd::*;
use kernel::lock::FileLock;

mod dirfd;
mod index;

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
/// The store directory, as the reference makes it.
const STORE_MODE: u32 = 0o755;
/// The index and spare directories: nobody else has any business there.
const INDEX_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// Larger files are no spares of ours: removed, not blanked.
const SPARE_SIZE_LIMIT: usize = 4096;

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

    /// An entry named as an address that is no file (a link, say): it blocks the address
    /// and belongs to nobody, so no DEL finds it and GC releases it.
    fn nobody(ip: IpAddr) -> Reservation {
        Reservation {
            ip,
            container_id: String::new(),
            ifname: None,
        }
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
    cni::id::digest(&owner, 32)
}

/// One network's store, locked for as long as the value lives.
pub struct Store {
    dir: PathBuf,
    /// The store directory, opened without following a link.
    fd: OwnedFd,
    /// The index directory once opened; not cached while it is missing or unusable.
    index: OnceCell<OwnedFd>,
    /// The spare directory once opened, for listing as well as for `*at` calls.
    spares: RefCell<Option<Dir>>,
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

/// A reservation file read: a link or anything else that is no file is nobody's.
fn read_reservation(dir: BorrowedFd, ip: IpAddr) -> io::Result<Option<Reservation>> {
    match read_small(dir, &ip.to_string()) {
        Ok(content) => Ok(Some(parse_reservation(ip, &content))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if is_no_file(&e) => Ok(Some(Reservation::nobody(ip))),
        Err(e) => Err(e),
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> IpamError + '_ {
    move |source| IpamError::Store {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the store directory `dir`, making it (and the data directory) if missing, and
/// refuses one that is a link, not the caller's own, or writable by others: whoever could
/// write there could plant reservations, or links that root would follow.
fn open_store_dir(dir: &Path) -> io::Result<OwnedFd> {
    let open = || -> io::Result<OwnedFd> {
        Ok(nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | no_follow(),
            Mode::empty(),
        )?)
    };
    let fd = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            kernel::files::create_dir(dir, STORE_MODE)?;
            open()?
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            let link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            return Err(unsafe_store(if link {
                "is a symbolic link: give the real directory as dataDir".to_string()
            } else {
                "is not a directory".to_string()
            }));
        }
        other => other?,
    };
    private(&fd).map_err(unsafe_store)?;
    Ok(fd)
}

/// Why the directory `fd` opens is not private to this process's user, if it is not: owned
/// by another user, or writable by group or others.
fn private(fd: &OwnedFd) -> Result<(), String> {
    let status = fstat(fd).map_err(|e| format!("cannot stat it: {e}"))?;
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let own = unsafe { libc::geteuid() };
    if status.st_uid != own {
        return Err(format!(
            "is owned by user {}, not by this plugin's user {own}",
            status.st_uid
        ));
    }
    if status.st_mode & 0o022 != 0 {
        return Err(format!(
            "is writable by others (mode {:o}): make it 0755",
            status.st_mode & 0o7777
        ));
    }
    Ok(())
}

fn unsafe_store(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, reason)
}

impl Store {
    /// Opens (creating it if needed) and locks the store of `network` under `data_dir`.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, IpamError> {
        // The skeleton already refuses such names; the store never trusts a caller with paths.
        if !cni::config::is_plain_file_name(network) {
            return Err(IpamError::Store {
                path: data_dir.join(network),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "network name would escape dataDir",
                ),
            });
        }
        let dir = data_dir.join(network);
        let fd = open_store_dir(&dir).map_err(io_error(&dir))?;
        let lock = FileLock::exclusive_in(fd.as_fd(), "lock")
            .map_err(|e| io_error(&dir.join("lock"))(e))?;
        Ok(Store {
            dir,
            fd,
            index: OnceCell::new(),
            spares: RefCell::new(None),
            changed: Cell::new(false),
            index_failed: Cell::new(false),
            _lock: lock,
        })
    }

    /// Every reservation in the store. Files that are not addresses are ignored.
    pub fn reservations(&self) -> Result<Vec<Reservation>, IpamError> {
        // GC, STATUS and rebuilding the owner index read every reservation: open them
        // relative to the directory, with one read each, so a thousand cost 2 syscalls
        // apiece instead of a path walk, a stat and two reads.
        let mut found = Vec::new();
        for (name, kind) in list(self.fd.as_fd()).map_err(io_error(&self.dir))? {
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            let reservation = match kind {
                Some(Type::Directory) => None,
                Some(Type::File) | None => read_reservation(self.fd.as_fd(), ip)
                    .map_err(|e| io_error(&self.dir.join(&name))(e))?,
                Some(_) => Some(Reservation::nobody(ip)),
            };
            found.extend(reservation);
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
        let spares = self.reused_spare(SPARE_RESERVATION, content.as_bytes());
        let (from_dir, from) = match &spares {
            Some((spares, name)) => (spares.as_fd(), name.clone()),
            None => (
                self.fd.as_fd(),
                self.write_temp("reservation", content.as_bytes())?,
            ),
        };
        let mut claimed = None;
        let mut failure = None;
        for (ip, with) in candidates {
            let target = ip.to_string();
            match place(from_dir, &from, self.fd.as_fd(), &target) {
                Ok(()) => {
                    claimed = Some((ip, with));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    failure = Some(io_error(&self.dir.join(target))(e));
                    break;
                }
            }
        }
        // A spare nobody claimed stays one (blanked again); a new temporary goes.
        if claimed.is_none() {
            let _ = match &spares {
                Some(_) => blank(from_dir, &from),
                None => unlinkat(from_dir, from.as_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(io::Error::from),
            };
        }
        drop(spares);
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
        let name = reservation.ip.to_string();
        self.changed.set(true);
        let spare_name = format!("{SPARE_RESERVATION}{}", reservation.ip);
        match self.retire(self.fd.as_fd(), &name, &spare_name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(&self.dir.join(name))(e))
            }
            _ => {}
        }
        self.update_owner(&reservation.owner_key(), |ips| {
            ips.retain(|ip| *ip != reservation.ip)
        });
        Ok(())
    }

    /// Where round-robin allocation in range set `index` resumes. Unreadable means "start over".
    pub fn last_reserved(&self, index: usize) -> Option<IpAddr> {
        read_small(self.fd.as_fd(), &format!("{LAST_RESERVED_PREFIX}{index}"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// The hint is overwritten in place (see `overwrite`); an unreadable one means "start
    /// over" (see [`Store::last_reserved`]).
    pub fn set_last_reserved(&self, index: usize, ip: IpAddr) -> Result<(), IpamError> {
        // Creating the file changes the directory.
        self.changed.set(true);
        let name = format!("{LAST_RESERVED_PREFIX}{index}");
        overwrite(self.fd.as_fd(), &name, ip.to_string().as_bytes())
            .map_err(|e| io_error(&self.dir.join(name))(e))
    }

    /// Removes temporaries a crashed process left behind.
    pub fn remove_stale_temporaries(&self) -> Result<(), IpamError> {
        for (name, _) in list(self.fd.as_fd()).map_err(io_error(&self.dir))? {
            if name.starts_with(TEMP_PREFIX) {
                let _ = unlinkat(self.fd.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl Store {
    fn spare_dir(&self) -> PathBuf {
        self.index_path().join(SPARE_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

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
    fn an_index_others_could_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let temp = TempStore::new("careless");
        {
            let store = temp.open();
            assert!(store
                .reserve(ip("10.0.0.2"), "alpha", "eth0")
                .expect("reserve"));
            let alpha = store.held_by("alpha", "eth0").expect("held");
            store.release(&alpha[0]).expect("release");
        }
        // As an older ferrocni under umask 000 left it; whoever could write there planted a
        // spare of their own.
        let index = temp.0.join("net").join(INDEX_DIR);
        for dir in [index.clone(), index.join(SPARE_DIR)] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let planted = index.join(SPARE_DIR).join("rplanted");
        fs::write(&planted, "theirs").expect("plant");
        let listing = || {
            let mut names: Vec<_> = fs::read_dir(&index)
                .expect("index")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            names
        };
        let before = listing();
        let store = temp.open();
        assert!(!store.index_is_complete());
        assert!(store
            .reserve(ip("10.0.0.3"), "beta", "eth0")
            .expect("reserve"));
        assert_eq!(
            ips(&store.held_by("beta", "eth0").expect("held")),
            [ip("10.0.0.3")]
        );
        drop(store);
        assert_eq!(fs::read_to_string(&planted).expect("planted"), "theirs");
        assert_eq!(listing(), before, "nothing was written into that index");
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
        let store = temp.open();
        for content in ["10.0.0.100", "10.0.0.9", "10.0.0.8", "10.0.0.10"] {
            overwrite(store.fd.as_fd(), "hint", content.as_bytes()).expect("written");
            assert_eq!(
                fs::read_to_string(temp.0.join("net").join("hint")).expect("read"),
                content
            );
        }
    }
}
