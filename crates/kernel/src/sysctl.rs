//! Sysctls through `/proc/sys`. The network ones are per namespace: the value read or written
//! is the calling thread's namespace's, so call these inside [`crate::netns::Netns::run`].

use std::io;
use std::path::PathBuf;

use cni::{Coded, ErrorCode};

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

impl Coded for SysctlError {
    fn code(&self) -> ErrorCode {
        match self {
            SysctlError::Missing(_) | SysctlError::Read { .. } | SysctlError::Write { .. } => {
                ErrorCode::Internal
            }
        }
    }
}

/// Where a key lives, read as sysctl(8) and the reference read it: the first separator
/// decides. Dotted, `.` and `/` swap (`net.ipv4.conf.eth0/100.rp_filter`); with slashes,
/// the key is a path and a dot is part of a name (`net/ipv4/conf/eth0.100/rp_filter`),
/// which is how a key holding an interface name must be written.
fn path_of(key: &str) -> PathBuf {
    let dotted = key
        .find(['.', '/'])
        .is_some_and(|at| key[at..].starts_with('.'));
    let path: String = if dotted {
        key.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        key.to_string()
    };
    PathBuf::from("/proc/sys").join(path)
}

/// The key of a per-interface setting, `net/<family>/conf/<ifname>/<setting>`: written with
/// slashes, since a link name may hold a dot (`eth0.100`).
pub fn interface_key(family: &str, ifname: &str, setting: &str) -> String {
    format!("net/{family}/conf/{ifname}/{setting}")
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

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn the_first_separator_decides_how_a_key_reads() {
        let path = |key| path_of(key).display().to_string();
        assert_eq!(path("net.ipv4.ip_forward"), "/proc/sys/net/ipv4/ip_forward");
        assert_eq!(path("net/ipv4/ip_forward"), "/proc/sys/net/ipv4/ip_forward");
        assert_eq!(
            path("net/ipv4/conf/eth0.100/route_localnet"),
            "/proc/sys/net/ipv4/conf/eth0.100/route_localnet"
        );
        assert_eq!(
            path("net.ipv4.conf.eth0/100.rp_filter"),
            "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
        );
    }
}
