//! What the plugin and the daemon say to each other over the daemon's Unix socket: one JSON
//! request, written and half-closed, then one JSON reply. Both ends are this binary, so the
//! format is ours (the reference speaks Go's net/rpc here).

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use cni::{AttachmentId, CniError, CniResult, ValidAttachments};

/// The client identifier of a lease, as the reference makes it: `containerID/network/ifname`,
/// cut to the 254 bytes an option can carry... less the type byte that precedes it.
pub fn client_id(lease: &AttachmentId) -> Vec<u8> {
    let mut id = format!("{}/{}/{}", lease.container_id, lease.network, lease.ifname).into_bytes();
    id.truncate(254);
    id
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Lease an address for the interface, or return the lease it already has.
    Allocate {
        lease: AttachmentId,
        netns: PathBuf,
        request: Vec<u8>,
        provide: Vec<(u8, Vec<u8>)>,
        priority: Option<u32>,
    },
    /// Give the lease back and stop renewing it; unknown leases are fine.
    Release {
        lease: AttachmentId,
    },
    /// The lease the daemon holds, for CHECK.
    Lookup {
        lease: AttachmentId,
    },
    /// Release every lease of the network whose attachment is not valid.
    Gc {
        #[serde(flatten)]
        valid: ValidAttachments,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A daemon started by an earlier version keeps serving the plugins of this one (and the
    /// other way round) until it is restarted: the requests keep their wire form.
    #[test]
    fn requests_keep_the_wire_form_of_earlier_versions() {
        let lease = AttachmentId::new("net", "abc", "eth0");
        let release = Request::Release {
            lease: lease.clone(),
        };
        assert_eq!(
            serde_json::to_value(&release).expect("serializes"),
            json!({"op": "release",
                   "lease": {"container_id": "abc", "network": "net", "ifname": "eth0"}})
        );
        let earlier = json!({"op": "gc", "network": "net",
                             "keep": [{"containerID": "abc", "ifname": "eth0"}]});
        let Request::Gc { valid } = serde_json::from_value(earlier.clone()).expect("reads") else {
            panic!("not a GC request");
        };
        assert!(valid.contains(&lease));
        let sent = serde_json::to_value(Request::Gc { valid }).expect("serializes");
        assert_eq!(sent, earlier);
    }

    #[test]
    fn client_ids_are_the_references() {
        let lease = AttachmentId::new("net", "abc", "eth0");
        assert_eq!(client_id(&lease), b"abc/net/eth0");
        let long = AttachmentId::new("net", "c".repeat(300), "eth0");
        assert_eq!(client_id(&long).len(), 254);
    }
}
