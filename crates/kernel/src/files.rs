//! Files and directories the binaries keep state in, made with exact modes and never
//! written through a symbolic link.
//!
//! A runtime or a service manager may start a plugin or a daemon under any umask, `000`
//! included; mkdir(2) and open(2) take the umask's bits off the mode they are given, so the
//! mode is set again on what was just made, and only then is it exact. A link planted where
//! a file of ours belongs would make root write wherever it points: every open here says
//! O_NOFOLLOW, a temporary is created with O_EXCL, and rename(2) replaces a link instead of
//! following it.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories of state only root reads: records, leases, caches, the dhcp daemon's socket.
pub const PRIVATE_DIR: u32 = 0o700;
/// Files only root reads.
pub const PRIVATE_FILE: u32 = 0o600;

/// Makes `dir` and whatever of its ancestors is missing, each with exactly `mode`, as Go's
/// `os.MkdirAll` (which the reference plugins call) gives them all the one mode. An
/// existing directory is left as it is.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match create_one(dir, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                Some(parent) => create_dir(parent, mode)?,
                None => return Err(e),
            }
            create_one(dir, mode)
        }
        other => other,
    }
}

/// mkdir(2), then the mode set on the directory made (opened without following a link, in
/// case someone swapped one in meanwhile).
fn create_one(dir: &Path, mode: u32) -> io::Result<()> {
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)?
            .set_permissions(Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with a file of `mode` holding `bytes`, so that readers see the old file
/// or the new one, never half of one: a temporary beside it, then a rename. The directory
/// is made (`dir_mode`, see [`create_dir`]) when it is missing.
pub fn replace(path: &Path, bytes: &[u8], mode: u32, dir_mode: u32) -> io::Result<()> {
    let temp = temporary(path);
    let mut file = match create_new(&temp, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                create_dir(dir, dir_mode)?;
            }
            create_new(&temp, mode)?
        }
        // Left by a killed process that had this pid, or planted: unlink(2) removes a link
        // itself, never what it points at.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&temp)?;
            create_new(&temp, mode)?
        }
        other => other?,
    };
    let written = file.write_all(bytes).and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// `path` with `.tmp<pid>` appended: beside it, and named by no reader as a file of its own.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(name)
}

/// A new file of exactly `mode`; fails if anything, a link included, has the name.
fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

/// The content of `path`, which must be a file itself, not a link to one elsewhere.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrocni-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("metadata").mode() & 0o7777
    }

    #[test]
    fn replace_makes_the_directories_and_never_writes_through_a_link() {
        let root = scratch("replace");
        let path = root.join("a").join("record.json");
        replace(&path, b"one", PRIVATE_FILE, PRIVATE_DIR).expect("written");
        assert_eq!(fs::read(&path).expect("read"), b"one");
        assert_eq!(
            (mode(&root), mode(&root.join("a")), mode(&path)),
            (0o700, 0o700, 0o600)
        );
        // Links at the temporary's name and at the file's own: neither target changes.
        let outside = root.join("outside");
        fs::write(&outside, "precious").expect("write");
        std::os::unix::fs::symlink(&outside, temporary(&path)).expect("symlink");
        fs::remove_file(&path).expect("unlink");
        std::os::unix::fs::symlink(&outside, &path).expect("symlink");
        replace(&path, b"two", 0o644, PRIVATE_DIR).expect("written");
        assert_eq!(fs::read_to_string(&outside).expect("read"), "precious");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(mode(&path), 0o644);
        assert!(!temporary(&path).exists());
        // Reading refuses a link.
        fs::remove_file(&path).expect("unlink");
        std::os::unix::fs::symlink(&outside, &path).expect("symlink");
        assert_eq!(
            read(&path).map_err(|e| e.raw_os_error()),
            Err(Some(libc::ELOOP))
        );
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn create_dir_leaves_an_existing_directory_as_it_is() {
        let root = scratch("existing");
        fs::create_dir(&root).expect("mkdir");
        fs::set_permissions(&root, Permissions::from_mode(0o750)).expect("chmod");
        create_dir(&root, PRIVATE_DIR).expect("exists");
        create_dir(&root.join("x").join("y"), 0o755).expect("made");
        assert_eq!(
            (mode(&root), mode(&root.join("x")), mode(&root.join("x/y"))),
            (0o750, 0o755, 0o755)
        );
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
