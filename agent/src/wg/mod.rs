//! The WireGuard backend's node side: the node's key ([`key`]), the configuration protocol
//! ([`uapi`]), the userspace device ([`userspace`]), and a read-only copy of its
//! configuration stream on a socket where `wg show` looks for userspace devices.
//!
//! Only the userspace implementation (boringtun) is driven, on every kernel: the kernel's
//! own WireGuard, configured over generic netlink, cannot be exercised on the machines this
//! is built and tested on (their kernels have no `wireguard` device type), and code that
//! cannot be tested is not shipped. The agent says at start which kernel it found.

pub mod key;
pub mod uapi;
pub mod userspace;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use userspace::Stream;

/// Whether the running kernel has WireGuard (its module loaded, or built in).
pub fn kernel_has_wireguard() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

/// Logs which implementation runs the device, and why.
pub fn log_implementation(device: &str) {
    if kernel_has_wireguard() {
        info!(
            "the kernel has WireGuard, but this agent drives only the userspace implementation: \
             running boringtun on the TUN interface {device}"
        );
    } else {
        info!(
            "the kernel has no WireGuard: running the userspace implementation (boringtun) on \
             the TUN interface {device}"
        );
    }
}

/// Sends one datagram through the tunnel to `peer`'s pod gateway (the discard port), so
/// that the device starts a handshake with it now rather than when traffic first needs one.
/// A peer that restarted has lost its sessions, and one that still sends on an old session
/// to it starts a new handshake only after 15 s of getting no answer (WireGuard's
/// keepalive and rekey timeouts): a handshake from this side ends that wait at once.
pub fn greet(peer: &overlay::wireguard::WgPeer) {
    for network in &peer.allowed_ips {
        let ipnetwork::IpNetwork::V4(subnet) = network else {
            continue;
        };
        let gateway = ipam::range::default_gateway(network);
        let sent = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|socket| socket.send_to(b"ferrocni", (gateway, 9)));
        if let Err(e) = sent {
            debug!("cannot greet the peer of {subnet}: {e}");
        }
    }
}

/// Where `wg show DEVICE` looks for a userspace device's socket.
pub fn default_socket(device: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{device}.sock"))
}

/// Serves `get=1` on `path` from the device's stream, so that `wg show` (and the tests)
/// can read the device's peers; `set=1` is refused (EPERM): the agent alone configures it.
pub async fn mirror(path: PathBuf, stream: Stream) {
    let _ = std::fs::remove_file(&path);
    let listener = match path
        .parent()
        .map_or(Ok(()), |dir| kernel::files::create_dir(dir, 0o755))
        .and_then(|()| UnixListener::bind(&path))
        .and_then(|listener| {
            // bind(2) gave the socket the umask's mode: the peers' keys and endpoints are
            // root's to read, as for the kernel's WireGuard.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map(|()| listener)
        }) {
        Ok(listener) => listener,
        Err(e) => {
            warn!(
                "cannot serve the WireGuard device's state on {}: {e}",
                path.display()
            );
            return;
        }
    };
    debug!(
        "the WireGuard device's state is served on {}",
        path.display()
    );
    loop {
        let Ok((connection, _)) = listener.accept().await else {
            continue;
        };
        let stream = std::sync::Arc::clone(&stream);
        tokio::spawn(async move {
            if let Err(e) = answer(connection, stream).await {
                debug!("a reader of the WireGuard state went away: {e}");
            }
        });
    }
}

async fn answer(connection: UnixStream, stream: Stream) -> std::io::Result<()> {
    let (read, mut write) = connection.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match line.as_str() {
            "get=1" => {
                // The device answers at once; the lock is held only for that.
                let text = stream.lock().unwrap_or_else(|p| p.into_inner()).get_text();
                text.unwrap_or_else(|_| "errno=5\n\n".to_string())
            }
            "" => continue,
            _ => "errno=1\n\n".to_string(),
        };
        write.write_all(reply.as_bytes()).await?;
        // A set request's lines are skipped up to its blank line: nothing of it is applied.
        if line != "get=1" {
            while let Some(rest) = lines.next_line().await? {
                if rest.is_empty() {
                    break;
                }
            }
        }
    }
    Ok(())
}
