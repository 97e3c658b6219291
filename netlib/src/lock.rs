//! Advisory file locks for state shared between plugin processes.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An exclusive `flock` held until dropped. flock (not fcntl locks) because the reference's
/// go-filemutex uses flock on the same files, so ours and theirs exclude each other.
pub struct FileLock {
    _held: Flock<File>,
}

impl FileLock {
    /// Exclusive among the processes working in the calling thread's network namespace:
    /// a lock on the namespace's own file, which nsfs gives one inode for every opener, so
    /// there is no lock file to outlive the namespace.
    pub fn this_netns() -> io::Result<Self> {
        let file = File::open("/proc/thread-self/ns/net")?;
        let held = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno)?;
        Ok(FileLock { _held: held })
    }

    /// Creates `path` if needed and blocks until the lock is ours.
    pub fn exclusive(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let held = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno)?;
        Ok(FileLock { _held: held })
    }
}
