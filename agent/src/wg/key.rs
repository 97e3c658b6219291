//! The node's WireGuard private key: generated on the first start of the WireGuard backend,
//! kept in a file only root reads (mode 0600, written atomically and made durable), and
//! reused across restarts. Only its public half leaves the node (in the liveness record).
//!
//! The key is never written anywhere else: not in a log line, an error, a metric or etcd.
//! Its `Debug` says nothing of it, errors about its file name the file and never quote it,
//! and the configuration text that carries it to the device is wiped after use.

use base64::Engine as _;
use boringtun::x25519::{PublicKey as Curve25519Public, StaticSecret};
use std::io;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use overlay::PublicKey;

use crate::identity;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the WireGuard key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the WireGuard key {path} is not a key (one line of base64, 32 bytes, as `wg genkey` writes); delete it to have a new one generated")]
    Malformed { path: PathBuf },
    #[error("cannot write the WireGuard key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A Curve25519 private key. Wiped from memory when dropped (x25519-dalek's own zeroize).
pub struct PrivateKey(StaticSecret);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    pub fn public(&self) -> PublicKey {
        PublicKey(Curve25519Public::from(&self.0).to_bytes())
    }

    /// The key in hex, as the configuration protocol takes it; wiped when dropped.
    pub fn hex(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        let mut text = Zeroizing::new(String::with_capacity(64));
        for byte in bytes.iter() {
            text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            text.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        text
    }
}

/// The key kept at `path`, generated and written there on the first call. A file that is
/// there but unreadable or malformed is an error naming it: a new key would silently cut
/// the node off until every peer had reconciled.
pub fn load_or_create(path: &Path) -> Result<(PrivateKey, bool), KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let malformed = || KeyError::Malformed {
                path: path.to_path_buf(),
            };
            let text = std::str::from_utf8(&bytes).map_err(|_| malformed())?;
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| malformed())?,
            );
            let key: [u8; 32] = decoded.as_slice().try_into().map_err(|_| malformed())?;
            Ok((PrivateKey(StaticSecret::from(key)), false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let write = |source| KeyError::Write {
                path: path.to_path_buf(),
                source,
            };
            let key = PrivateKey(StaticSecret::from(
                identity::random_bytes::<32>().map_err(write)?,
            ));
            let mut text =
                Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.0.to_bytes()));
            text.push('\n');
            identity::write_private(path, text.as_bytes()).map_err(write)?;
            Ok((key, true))
        }
        Err(source) => Err(KeyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ferrocni-wgkey-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_once_root_only_and_kept() {
        let dir = scratch("kept");
        let path = dir.join("sub").join("wireguard.key");
        let (first, created) = load_or_create(&path).expect("created");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(again.public(), first.public());
        assert_eq!(*again.hex(), *first.hex());
        // The file is what `wg genkey` writes: base64 of the key, one line.
        let text = std::fs::read_to_string(&path).expect("read");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text.trim_end())
            .expect("base64");
        assert_eq!(decoded.len(), 32);
        assert!(!format!("{first:?}").contains(text.trim_end()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_file_is_an_error_that_does_not_quote_it() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("wireguard.key");
        // Almost a key: 31 bytes.
        let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        std::fs::write(&path, &secret).expect("write");
        let error = load_or_create(&path).expect_err("refused").to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!error.contains(&secret), "{error}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), secret);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_public_key_is_curve25519s() {
        // RFC 7748, 6.1: Alice's private and public keys.
        let private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let bytes: [u8; 32] = std::array::from_fn(|i| {
            u8::from_str_radix(&private[i * 2..i * 2 + 2], 16).expect("hex")
        });
        let key = PrivateKey(StaticSecret::from(bytes));
        assert_eq!(key.public().hex(), public);
        assert_eq!(*key.hex(), private);
    }
}
