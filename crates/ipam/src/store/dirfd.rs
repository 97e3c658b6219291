//! Files of the store reached relative to a directory descriptor, never through a link:
//! opening and making directories, reading, writing in place, blanking and placing files,
//! listing.

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};

use super::{FILE_MODE, SPARE_SIZE_LIMIT};

/// Flags every open in the store has: never through a link, never blocking on a FIFO
/// someone named as a file of ours.
pub(super) fn no_follow() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC
}

/// A directory in `parent`, opened without following a link.
pub(super) fn open_dir(parent: BorrowedFd, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | no_follow(),
        Mode::empty(),
    )?)
}

/// A directory in `parent`, made with exactly `mode` if missing (mkdir(2) applies the
/// umask), and opened.
pub(super) fn make_dir(parent: BorrowedFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
    match open_dir(parent, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    mkdirat(parent, name, Mode::from_bits_truncate(mode))?;
    let fd = open_dir(parent, name)?;
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(fd)
}

/// A small file in `dir`, read with as few syscalls as a file that fits one buffer allows.
pub(super) fn read_small(dir: BorrowedFd, name: &str) -> io::Result<String> {
    let fd = openat(dir, name, OFlag::O_RDONLY | no_follow(), Mode::empty())?;
    let mut file = std::fs::File::from(fd);
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

/// What open(2) with O_NOFOLLOW says of a link (ELOOP), a directory (EISDIR) or a device
/// without a driver (ENXIO): something other than a file of ours is there.
pub(super) fn is_no_file(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ELOOP | libc::EISDIR | libc::ENXIO)
    )
}

/// Replaces a small file's content in place: open without truncating, write, shrink to
/// length only when the old content was longer. Truncating to zero, or renaming a new file
/// over the old, makes ext4 flush the data to disk on close (its `auto_da_alloc` safeguard),
/// and ext4 runs a journalled truncate even when the size does not change, both costs on
/// every ADD. A write torn by a crash is harmless for the files written
/// so: hints and caches that are checked.
/// A link (or a FIFO) where the file belongs is removed and the file made anew.
pub(super) fn overwrite(dir: BorrowedFd, name: &str, content: &[u8]) -> io::Result<()> {
    let open = || {
        openat(
            dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | no_follow(),
            Mode::from_bits_truncate(FILE_MODE),
        )
    };
    let fd = match open() {
        Err(Errno::ELOOP | Errno::ENXIO) => {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
            open()?
        }
        other => other?,
    };
    let mut file = std::fs::File::from(fd);
    let old_length = file.metadata()?.len();
    file.write_all(content)?;
    let length = content.len() as u64;
    if old_length > length {
        file.set_len(length)?;
    }
    Ok(())
}

/// Overwrites a file kept as a spare with blanks, in place for the reason [`overwrite`]
/// gives: what it said must not outlive its release (a container's ID, its addresses).
pub(super) fn blank(dir: BorrowedFd, name: &str) -> io::Result<()> {
    let fd = openat(dir, name, OFlag::O_WRONLY | no_follow(), Mode::empty())?;
    let mut file = std::fs::File::from(fd);
    let length = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if length > SPARE_SIZE_LIMIT {
        return Err(io::ErrorKind::FileTooLarge.into());
    }
    file.write_all(&[b' '; SPARE_SIZE_LIMIT][..length])
}

/// Moves `from` (in `from_dir`) to `to` (in `to_dir`) unless `to` exists, atomically
/// (renameat2(2) with RENAME_NOREPLACE). A filesystem that cannot do that gets a hard link
/// and the removal of `from`, which claims `to` as atomically.
pub(super) fn place(
    from_dir: BorrowedFd,
    from: &str,
    to_dir: BorrowedFd,
    to: &str,
) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    let c_name =
        |name: &str| CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let (c_from, c_to) = (c_name(from)?, c_name(to)?);
    // A raw system call: nix wraps renameat2 for glibc only, and plugins link musl.
    // SAFETY: both descriptors are open directories and both pointers NUL-terminated
    // strings that outlive the call; the kernel only reads them.
    let done = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            from_dir.as_raw_fd(),
            c_from.as_ptr(),
            to_dir.as_raw_fd(),
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
            nix::unistd::linkat(from_dir, from, to_dir, to, nix::fcntl::AtFlags::empty())?;
            let _ = unlinkat(from_dir, from, UnlinkatFlags::NoRemoveDir);
            Ok(())
        }
        _ => Err(error),
    }
}

/// The names in a directory with their types, `.` and `..` left out.
pub(super) fn entries(dir: &mut Dir) -> Vec<(String, Option<Type>)> {
    dir.iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str().ok()?.to_string();
            (name != "." && name != "..").then_some((name, entry.file_type()))
        })
        .collect()
}

/// A listing of the directory `fd` opens (through a descriptor of its own).
pub(super) fn list(fd: BorrowedFd) -> io::Result<Vec<(String, Option<Type>)>> {
    let mut dir = Dir::openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(entries(&mut dir))
}
