//! The owner index (`.ferrocni-owners/<digest>` per attachment, and the stamp that says it
//! is complete) and the spare files released reservations leave for the next ADD; see the
//! store's own documentation for why both exist.

use nix::dir::Dir;
use std::cell::RefMut;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use super::dirfd::*;
use super::*;

impl Store {
    pub(super) fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_DIR)
    }

    /// The index directory, made if `create` and missing; an error when it cannot be had
    /// (missing, or something that is no directory of ours has its name). One that others
    /// could write (made under a careless umask by an older ferrocni) is no index to trust:
    /// the store then works as the reference's does, from full reads.
    pub(super) fn index(&self, create: bool) -> io::Result<BorrowedFd<'_>> {
        if self.index.get().is_none() {
            let opened = if create {
                make_dir(self.fd.as_fd(), INDEX_DIR, INDEX_MODE)
            } else {
                open_dir(self.fd.as_fd(), INDEX_DIR)
            }?;
            private(&opened).map_err(unsafe_store)?;
            let _ = self.index.set(opened);
        }
        self.index
            .get()
            .map(AsFd::as_fd)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    /// The spare directory, made if `create` and missing.
    pub(super) fn spares(&self, create: bool) -> Option<RefMut<'_, Dir>> {
        let mut spares = self.spares.borrow_mut();
        if spares.is_none() {
            let index = self.index(create).ok()?;
            let opened = if create {
                make_dir(index, SPARE_DIR, INDEX_MODE)
            } else {
                open_dir(index, SPARE_DIR)
            };
            *spares = Some(Dir::from_fd(opened.ok()?).ok()?);
        }
        RefMut::filter_map(spares, Option::as_mut).ok()
    }

    /// The directory's modification time, as the stamp records it.
    pub(super) fn directory_state(&self) -> io::Result<String> {
        let status = fstat(&self.fd)?;
        Ok(format!("{}.{:09}", status.st_mtime, status.st_mtime_nsec))
    }

    /// Whether the index describes every reservation: nobody but ferrocni, and ferrocni
    /// only to the end, changed the directory since the stamp was written.
    pub(super) fn index_is_complete(&self) -> bool {
        let Ok(index) = self.index(false) else {
            return false;
        };
        match (read_small(index, STAMP), self.directory_state()) {
            (Ok(stamp), Ok(state)) => stamp == state,
            _ => false,
        }
    }

    /// Marks the directory with a modification time of its own, a random nanosecond within
    /// the current second, and records it. Any later entry made or removed by anyone sets
    /// the kernel's clock time instead, which is the mark by a one in a billion chance. The
    /// clock itself would not do: where it ticks every few milliseconds (kernels before
    /// 6.13's multigrain timestamps), a change right after ours would keep our time.
    pub(super) fn write_stamp(&self) -> io::Result<()> {
        use nix::sys::stat::futimens;
        use nix::sys::time::TimeSpec;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mark = TimeSpec::new(
            now.as_secs().try_into().unwrap_or_default(),
            (kernel::random::u32() % 1_000_000_000).into(),
        );
        futimens(&self.fd, &TimeSpec::UTIME_OMIT, &mark)?;
        let state = self.directory_state()?;
        overwrite(self.index(true)?, STAMP, state.as_bytes())
    }

    /// The reservations an index file lists that `owns` still holds.
    pub(super) fn indexed(
        &self,
        key: &str,
        owns: impl Fn(&Reservation) -> bool,
    ) -> Result<Vec<Reservation>, IpamError> {
        let mut held = Vec::new();
        for ip in self.owner_entries(key)?.unwrap_or_default() {
            let reservation = read_reservation(self.fd.as_fd(), ip)
                .map_err(|e| io_error(&self.dir.join(ip.to_string()))(e))?;
            if let Some(reservation) = reservation.filter(&owns) {
                held.push(reservation);
            }
        }
        Ok(held)
    }

    /// The addresses an index file lists; `None` when there is no such file.
    pub(super) fn owner_entries(&self, key: &str) -> Result<Option<Vec<IpAddr>>, IpamError> {
        let Ok(index) = self.index(false) else {
            return Ok(None);
        };
        match read_small(index, key) {
            Ok(text) => Ok(Some(text.lines().filter_map(|l| l.parse().ok()).collect())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&self.index_path().join(key))(e)),
        }
    }

    /// Rewrites one index file through `change`; an empty list removes it. The index is a
    /// cache: failing to update it fails nothing but the stamp.
    pub(super) fn update_owner(&self, key: &str, change: impl FnOnce(&mut Vec<IpAddr>)) {
        let updated = self.owner_entries(key).and_then(|entries| {
            let exists = entries.is_some();
            let mut ips = entries.unwrap_or_default();
            change(&mut ips);
            self.write_owner(key, &ips, exists)
        });
        self.index_failed
            .set(self.index_failed.get() || updated.is_err());
    }

    /// Writes the index file `key` (which `exists` or not yet), reusing a spare for a new one.
    pub(super) fn write_owner(
        &self,
        key: &str,
        ips: &[IpAddr],
        exists: bool,
    ) -> Result<(), IpamError> {
        let path = self.index_path().join(key);
        let failed = io_error(&path);
        let index = self.index(true).map_err(&failed)?;
        if ips.is_empty() {
            return match self.retire(index, key, &format!("{SPARE_OWNER}{key}")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(failed(e)),
                _ => Ok(()),
            };
        }
        if !exists {
            if let Some((spares, name)) = self.spare_of(SPARE_OWNER) {
                // Best effort: without it the file is simply made anew below.
                let _ = place(spares.as_fd(), &name, index, key);
            }
        }
        let text: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        overwrite(index, key, text.as_bytes()).map_err(failed)
    }

    /// Replaces the index with one made from `all`, the store's every reservation.
    pub(super) fn rebuild_index(&self, all: &[Reservation]) {
        self.changed.set(true);
        let rebuilt = self.write_index(all);
        self.index_failed
            .set(self.index_failed.get() || rebuilt.is_err());
    }

    /// Removes every file of the index (the stamp, the owner lists, whatever else was put
    /// there: unlinkat(2) removes a link, not what it points at), keeps the spares, and
    /// writes an owner list per attachment of `all`.
    pub(super) fn write_index(&self, all: &[Reservation]) -> Result<(), IpamError> {
        let path = self.index_path();
        let failed = io_error(&path);
        let index = self.index(true).map_err(&failed)?;
        for (name, kind) in list(index).map_err(&failed)? {
            if kind != Some(Type::Directory) {
                match unlinkat(index, name.as_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT | Errno::EISDIR) => {}
                    Err(e) => return Err(failed(e.into())),
                }
            }
        }
        let mut owners: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for reservation in all {
            owners
                .entry(reservation.owner_key())
                .or_default()
                .push(reservation.ip);
        }
        for (key, ips) in &owners {
            self.write_owner(key, ips, false)?;
        }
        Ok(())
    }

    /// A spare of one kind (its name starts with `kind`), if there is one: the spare
    /// directory and the name in it.
    pub(super) fn spare_of(&self, kind: &str) -> Option<(RefMut<'_, Dir>, String)> {
        let mut spares = self.spares(false)?;
        // The first will do: no need to read the directory to its end.
        let name = spares.iter().flatten().find_map(|entry| {
            let name = entry.file_name().to_str().ok()?;
            (name.starts_with(kind) && entry.file_type() != Some(Type::Directory))
                .then(|| name.to_string())
        })?;
        Some((spares, name))
    }

    /// A spare of one kind, overwritten with `content`; one that cannot be (a link, say) is
    /// removed, and a new file will do instead.
    pub(super) fn reused_spare(
        &self,
        kind: &str,
        content: &[u8],
    ) -> Option<(RefMut<'_, Dir>, String)> {
        let (spares, name) = self.spare_of(kind)?;
        if overwrite(spares.as_fd(), &name, content).is_err() {
            let _ = unlinkat(spares.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir);
            return None;
        }
        Some((spares, name))
    }

    /// Takes `name` (in `dir`) out of use: among the spares as `spare` (replacing an older
    /// spare of that name), blanked; or removed when there are enough spares already, or
    /// it cannot be kept or blanked (it is no file of ours).
    pub(super) fn retire(&self, dir: BorrowedFd, name: &str, spare: &str) -> io::Result<()> {
        let remove = || Ok(unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?);
        let Some(mut spares) = self.spares(true) else {
            return remove();
        };
        if entries(&mut spares).len() >= SPARE_LIMIT
            || nix::fcntl::renameat(dir, name, spares.as_fd(), spare).is_err()
        {
            return remove();
        }
        if blank(spares.as_fd(), spare).is_err() {
            unlinkat(spares.as_fd(), spare, UnlinkatFlags::NoRemoveDir)?;
        }
        Ok(())
    }

    /// A new temporary file in the store holding `content`, by name.
    pub(super) fn write_temp(&self, name: &str, content: &[u8]) -> Result<String, IpamError> {
        let temp = format!("{TEMP_PREFIX}{}-{name}", std::process::id());
        let create = || {
            openat(
                self.fd.as_fd(),
                temp.as_str(),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | no_follow(),
                Mode::from_bits_truncate(FILE_MODE),
            )
        };
        let written = match create() {
            // Left by a killed process that had this pid, or planted.
            Err(Errno::EEXIST) => {
                let _ = unlinkat(self.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
                create()
            }
            other => other,
        }
        .map_err(io::Error::from)
        .and_then(|fd| std::fs::File::from(fd).write_all(content));
        if let Err(e) = written {
            let _ = unlinkat(self.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(io_error(&self.dir.join(&temp))(e));
        }
        Ok(temp)
    }
}
