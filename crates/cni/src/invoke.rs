//! Running another plugin (an IPAM plugin, or any delegate) the way libcni's `invoke`
//! package does: found on `CNI_PATH`, same environment with `CNI_COMMAND` set, the config on
//! stdin, its stderr passed through, its stdout parsed as a result or an error.
//!
//! A delegate that is ferrocni's own binary of the same version (it names itself in an ELF
//! section, see [`identity!`](crate::identity)) may instead be run in-process by the caller:
//! a fork+exec and the child's start-up cost more than host-local's whole work.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::{CniError, Coded, ErrorCode};

/// libcni retries an exec that hits ETXTBSY (a binary still being written by an installer).
const TEXT_BUSY_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("failed to find plugin {plugin:?} in path {paths:?}")]
    NotFound { plugin: String, paths: Vec<PathBuf> },
    #[error("plugin type {0:?} is not a plain binary name")]
    BadName(String),
    #[error("cannot run plugin {path:?}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The delegate failed and said why in spec form; passed on unchanged.
    #[error(transparent)]
    Plugin(CniError),
    #[error("plugin {path:?} failed ({status}) without an error object: {output}")]
    Garbled {
        path: PathBuf,
        status: String,
        output: String,
    },
}

impl Coded for InvokeError {
    fn code(&self) -> ErrorCode {
        match self {
            InvokeError::NotFound { .. } | InvokeError::BadName(_) => ErrorCode::InvalidConfig,
            InvokeError::Spawn { .. } => ErrorCode::Io,
            InvokeError::Plugin(_) | InvokeError::Garbled { .. } => ErrorCode::Internal,
        }
    }
}

/// Finds `plugin` in the directories of `CNI_PATH`, first match wins.
pub fn find(plugin: &str, paths: &[PathBuf]) -> Result<PathBuf, InvokeError> {
    if !crate::config::is_plain_file_name(plugin) {
        return Err(InvokeError::BadName(plugin.to_string()));
    }
    paths
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| InvokeError::NotFound {
            plugin: plugin.to_string(),
            paths: paths.to_vec(),
        })
}

/// Splits a `CNI_PATH` value, whose directories need not be UTF-8, into directories.
pub fn split_path(value: impl AsRef<std::ffi::OsStr>) -> Vec<PathBuf> {
    std::env::split_paths(&value)
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect()
}

/// Runs the plugin at `path` with `stdin`, the caller's environment plus `env`, and returns
/// its stdout on success.
pub fn exec(path: &Path, stdin: &[u8], env: &[(&str, &str)]) -> Result<Vec<u8>, InvokeError> {
    let spawn_error = |source| InvokeError::Spawn {
        path: path.to_path_buf(),
        source,
    };
    let mut attempt = 0;
    let mut child = loop {
        attempt += 1;
        let spawned = Command::new(path)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_ATTEMPTS => {
                thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
            }
            other => break other.map_err(spawn_error)?,
        }
    };
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin may exit without reading stdin (VERSION does): EPIPE is not our error.
        if let Err(e) = pipe.write_all(stdin) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(spawn_error(e));
            }
        }
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    match serde_json::from_slice::<CniError>(&output.stdout) {
        Ok(error) => Err(InvokeError::Plugin(error)),
        Err(_) => Err(InvokeError::Garbled {
            path: path.to_path_buf(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        }),
    }
}

/// The ELF section in which a ferrocni binary names itself.
pub const IDENTITY_SECTION: &str = ".ferrocni";

/// Declares the binary as ferrocni's `plugin`, in [`IDENTITY_SECTION`], so that ferrocni's
/// plugins finding it on `CNI_PATH` know they may run the same code in-process.
#[macro_export]
macro_rules! identity {
    ($plugin:literal) => {
        const FERROCNI_IDENTITY_TEXT: &str =
            concat!("ferrocni ", $plugin, " ", env!("CARGO_PKG_VERSION"));
        #[used]
        #[link_section = ".ferrocni"]
        static FERROCNI_IDENTITY: [u8; FERROCNI_IDENTITY_TEXT.len()] =
            $crate::invoke::identity_bytes(FERROCNI_IDENTITY_TEXT);
    };
}

/// What [`identity!`] stores, as an array (a `&str` static would store only a pointer).
pub const fn identity_bytes<const N: usize>(text: &str) -> [u8; N] {
    let mut bytes = [0u8; N];
    let mut i = 0;
    while i < N {
        bytes[i] = text.as_bytes()[i];
        i += 1;
    }
    bytes
}

/// Whether the binary at `path` is ferrocni's `plugin` of this very version. Reads the ELF
/// header and section table only, a few kilobytes, never the whole binary.
pub fn is_ferrocni(path: &Path, plugin: &str) -> bool {
    let expected = format!("ferrocni {plugin} {}", env!("CARGO_PKG_VERSION"));
    matches!(identity_of(path), Ok(Some(found)) if found == expected.as_bytes())
}

/// The contents of [`IDENTITY_SECTION`] of a native-endian 64-bit ELF file, if it has one.
fn identity_of(path: &Path) -> io::Result<Option<Vec<u8>>> {
    const NATIVE_ENDIAN: u8 = if cfg!(target_endian = "little") { 1 } else { 2 };
    let file = File::open(path)?;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0)?;
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != NATIVE_ENDIAN {
        return Ok(None);
    }
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed ELF header");
    let table_offset = field(&header, 0x28, 8).ok_or_else(malformed)?;
    let entry_size = field(&header, 0x3a, 2).ok_or_else(malformed)? as usize;
    let count = field(&header, 0x3c, 2).ok_or_else(malformed)? as usize;
    let names_index = field(&header, 0x3e, 2).ok_or_else(malformed)? as usize;
    if entry_size < 0x28 || names_index >= count {
        return Ok(None);
    }
    let mut table = vec![0u8; entry_size * count];
    file.read_exact_at(&mut table, table_offset)?;
    let entries: Vec<&[u8]> = table.chunks_exact(entry_size).collect();
    // Section contents by their header: offset at 0x18, size at 0x20.
    let contents = |entry: &[u8]| -> io::Result<Vec<u8>> {
        let offset = field(entry, 0x18, 8).ok_or_else(malformed)?;
        let size = field(entry, 0x20, 8).ok_or_else(malformed)?;
        if size > 1 << 16 {
            return Err(malformed());
        }
        let mut bytes = vec![0u8; size as usize];
        file.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    };
    let names = contents(entries[names_index])?;
    for entry in &entries {
        let name_at = field(entry, 0, 4).ok_or_else(malformed)? as usize;
        let name = names.get(name_at..).unwrap_or_default();
        let name = name.split(|&byte| byte == 0).next().unwrap_or_default();
        if name == IDENTITY_SECTION.as_bytes() {
            return contents(entry).map(Some);
        }
    }
    Ok(None)
}

/// The native-endian unsigned field of `width` bytes at `at`, if `bytes` holds it.
fn field(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let raw = bytes.get(at..at + width)?;
    let mut buffer = [0u8; 8];
    if cfg!(target_endian = "little") {
        buffer[..width].copy_from_slice(raw);
    } else {
        buffer[8 - width..].copy_from_slice(raw);
    }
    Some(u64::from_ne_bytes(buffer))
}
