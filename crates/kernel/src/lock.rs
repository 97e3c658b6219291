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
        let held = Flock::lock(open_in(dir, name)?, FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)?;
        Ok(FileLock { _held: held })
    }

    /// As [`FileLock::exclusive_in`], without waiting: `None` while someone else holds it.
    pub fn try_exclusive_in(dir: BorrowedFd, name: &str) -> io::Result<Option<Self>> {
        match Flock::lock(open_in(dir, name)?, FlockArg::LockExclusiveNonblock) {
            Ok(held) => Ok(Some(FileLock { _held: held })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(errno.into()),
        }
    }
}

/// The lock file `name` in `dir`, created if needed, never through a link.
fn open_in(dir: BorrowedFd, name: &str) -> io::Result<File> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}
