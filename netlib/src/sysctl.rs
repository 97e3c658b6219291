//! Sysctls through `/proc/sys`. The network ones are per namespace: the value read or written
//! is the calling thread's namespace's, so call these inside [`crate::netns::Netns::run`].

use std::io;
use std::path::PathBuf;

/// What went wrong, with the key and (for a write) the value: the kernel's errno alone
/// ("Invalid argument") does not say which of a config's sysctls it refused.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("no sysctl {0} in this namespace")]
    Missing(String),
    #[error("cannot read sysctl {key}")]
    Read {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set sysctl {key} to {value:?}")]
    Write {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
}

fn path_of(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Reads a sysctl given as `net.ipv4.ip_forward` or `net/ipv4/ip_forward`.
pub fn get(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path_of(key))
        .map(|value| value.trim().to_string())
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SysctlError::Missing(key.to_string()),
            _ => SysctlError::Read {
                key: key.to_string(),
                source,
            },
        })
}

/// Writes a sysctl given as `net.ipv4.ip_forward` or `net/ipv4/ip_forward`.
pub fn set(key: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path_of(key), value).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SysctlError::Missing(key.to_string()),
        _ => SysctlError::Write {
            key: key.to_string(),
            value: value.to_string(),
            source,
        },
    })
}
