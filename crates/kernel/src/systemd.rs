//! The service manager's readiness protocol (`sd_notify(3)`), for the two daemons that run
//! as `Type=notify` units: one datagram of `KEY=VALUE` lines to the socket `NOTIFY_SOCKET`
//! names (a path, or `@name` in the abstract namespace). A process that no manager started
//! has no such variable, and then nothing is sent.
//!
//! A daemon says `READY=1` once, when what it promises is true (its socket bound and its
//! leases taken up; its node leased and programmed): systemd starts the units ordered after
//! it at that moment.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable the manager sets to its notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated assignments, e.g. `READY=1\nSTATUS=…`) to the manager.
/// `Ok(false)` when no manager asked for notifications.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET).filter(|t| !t.is_empty()) else {
        return Ok(false);
    };
    let address = match target.as_encoded_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&target)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The environment is process-wide: one test sets and reads it, in sequence.
    #[test]
    fn sends_to_a_path_or_an_abstract_name_and_nothing_without_a_manager() {
        let dir = std::env::temp_dir().join(format!("ferrocni-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let by_path = UnixDatagram::bind(&path).expect("bind");
        let name = format!("ferrocni-notify-{}", std::process::id());
        let by_name = UnixDatagram::bind_addr(
            &SocketAddr::from_abstract_name(name.as_bytes()).expect("name"),
        )
        .expect("bind abstract");
        let received = |socket: &UnixDatagram| {
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let mut buffer = [0u8; 256];
            let len = socket.recv(&mut buffer).expect("a datagram");
            String::from_utf8_lossy(&buffer[..len]).into_owned()
        };

        // No other test of this crate reads NOTIFY_SOCKET.
        std::env::set_var(NOTIFY_SOCKET, &path);
        assert!(notify("READY=1\nSTATUS=up").expect("sent"));
        assert_eq!(received(&by_path), "READY=1\nSTATUS=up");

        std::env::set_var(NOTIFY_SOCKET, format!("@{name}"));
        assert!(notify("READY=1").expect("sent"));
        assert_eq!(received(&by_name), "READY=1");

        std::env::remove_var(NOTIFY_SOCKET);
        assert!(!notify("READY=1").expect("nothing to do"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
