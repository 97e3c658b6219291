//! The node's identity: random, generated on the first start and kept on the node's disk, so
//! that two machines given the same node name by mistake are told apart (the second refuses
//! to start) while the same machine restarting is recognised.
//!
//! It is no credential: it is written in the clear into etcd, where every client can read it.
//! Who may write the overlay's keys is etcd's business (TLS client certificates, users).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kernel::files::{self, PRIVATE_DIR, PRIVATE_FILE};

/// 128 random bits as hex.
const BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read the node identity {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the node identity {path} is not {} hex digits; if this machine is the node it names, restore the file; else delete it and start with --take-over", BYTES * 2)]
    Malformed { path: PathBuf },
    #[error("cannot write the node identity {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The identity kept at `path`, generated and written there (mode 0600, atomically) on the
/// first start. A file that is there but unreadable or malformed is an error, not a reason to
/// generate another: a new identity would make the node a stranger to its own records.
pub fn load_or_create(path: &Path) -> Result<(String, bool), IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let identity = text.trim();
            let valid =
                identity.len() == BYTES * 2 && identity.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(IdentityError::Malformed {
                    path: path.to_path_buf(),
                });
            }
            Ok((identity.to_ascii_lowercase(), false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let write = |source| IdentityError::Write {
                path: path.to_path_buf(),
                source,
            };
            let identity: String = random_bytes::<BYTES>()
                .map_err(write)?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            write_private(path, format!("{identity}\n").as_bytes()).map_err(write)?;
            Ok((identity, true))
        }
        Err(source) => Err(IdentityError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `N` random bytes from the kernel's generator, or the error: never a weaker fallback, as
/// they become a node's identity or its WireGuard key.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Writes a file of the node's that only root reads (mode 0600, its directory 0700),
/// atomically, and makes it durable.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    files::replace(path, bytes, PRIVATE_FILE, PRIVATE_DIR)?;
    durable(path)
}

/// On disk, and its name in its directory: a power cut right after the first start must not
/// leave an empty file that the next start refuses.
fn durable(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()?;
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ferrocni-identity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_once_private_and_kept() {
        let dir = scratch("kept");
        let path = dir.join("sub").join("identity");
        let (first, created) = load_or_create(&path).expect("created");
        assert!(created);
        assert_eq!(first.len(), 32);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(again, first);
        let other = scratch("other").join("identity");
        assert_ne!(load_or_create(&other).expect("created").0, first);
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(other.parent().expect("dir"));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_not_a_new_identity() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("identity");
        std::fs::write(&path, "").expect("write");
        let error = load_or_create(&path).expect_err("refused").to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("--take-over"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "");
        let _ = std::fs::remove_dir_all(dir);
    }
}
