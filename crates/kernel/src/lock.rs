//! Advisory file locks for state shared between plugin processes.

use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

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

    /// Creates the file `name` in the directory `dir` if needed (never through a link) and
    /// blocks until the lock is ours.
    pub fn exclusive_in(dir: BorrowedFd, name: &str) -> io::Result<Self> {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        let held =
            Flock::lock(File::from(fd), FlockArg::LockExclusive).map_err(|(_, errno)| errno)?;
        Ok(FileLock { _held: held })
    }
}
