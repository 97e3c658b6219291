//! Sysctls through `/proc/sys`. The network ones are per namespace: the value read or written
//! is the calling thread's namespace's, so call these inside [`crate::netns::Netns::run`].

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("sysctl {key}")]
pub struct SysctlError {
    key: String,
    #[source]
    source: io::Error,
}

fn path_of(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Reads a sysctl given as `net.ipv4.ip_forward` or `net/ipv4/ip_forward`.
pub fn get(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path_of(key))
        .map(|value| value.trim().to_string())
        .map_err(|source| SysctlError {
            key: key.to_string(),
            source,
        })
}

/// Writes a sysctl given as `net.ipv4.ip_forward` or `net/ipv4/ip_forward`.
pub fn set(key: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path_of(key), value).map_err(|source| SysctlError {
        key: key.to_string(),
        source,
    })
}
