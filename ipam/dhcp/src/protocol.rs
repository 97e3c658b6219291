//! What the plugin and the daemon say to each other over the daemon's Unix socket: one JSON
//! request, written and half-closed, then one JSON reply. Both ends are this binary, so the
//! format is ours (the reference speaks Go's net/rpc here).

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use netlib::cni::{AttachmentKey, CniError, CniResult};

/// Which lease: the reference's client identifier is made of the same three.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseKey {
    pub container_id: String,
    pub network: String,
    pub ifname: String,
}

impl LeaseKey {
    /// `containerID/network/ifname`, cut to the 254 bytes an option can carry... less the
    /// type byte that precedes it.
    pub fn client_id(&self) -> Vec<u8> {
        let mut id = format!("{}/{}/{}", self.container_id, self.network, self.ifname).into_bytes();
        id.truncate(254);
        id
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Lease an address for the interface, or return the lease it already has.
    Allocate {
        lease: LeaseKey,
        netns: PathBuf,
        request: Vec<u8>,
        provide: Vec<(u8, Vec<u8>)>,
        priority: Option<u32>,
    },
    /// Give the lease back and stop renewing it; unknown leases are fine.
    Release {
        lease: LeaseKey,
    },
    /// The lease the daemon holds, for CHECK.
    Lookup {
        lease: LeaseKey,
    },
    /// Release every lease of `network` whose attachment is not in `keep`.
    Gc {
        network: String,
        keep: Vec<AttachmentKey>,
    },
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    Done { result: Option<CniResult> },
    Failed(CniError),
}

#[derive(Debug)]
pub enum CallError {
    /// No daemon answers on the socket.
    Unreachable(std::io::Error),
    /// It answered, then broke off or said something that is not a reply.
    Broken(String),
}

/// Sends `request` to the daemon at `socket` and waits for its reply, however long the
/// DHCP exchange behind it takes (the daemon bounds it with its own timeout).
pub fn call(socket: &Path, request: &Request) -> Result<Reply, CallError> {
    let mut stream = UnixStream::connect(socket).map_err(CallError::Unreachable)?;
    let broken = |e: &dyn std::fmt::Display| CallError::Broken(e.to_string());
    let text = serde_json::to_vec(request).map_err(|e| broken(&e))?;
    stream.write_all(&text).map_err(|e| broken(&e))?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| broken(&e))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| broken(&e))?;
    serde_json::from_slice(&answer)
        .map_err(|e| broken(&format!("{e}: {:?}", String::from_utf8_lossy(&answer))))
}
