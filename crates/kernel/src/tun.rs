//! TUN devices: a network interface whose packets a process reads and writes, for a tunnel
//! run in userspace (the overlay agent's WireGuard).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

/// `struct ifreq` on Linux: the name, then a union of which TUNSETIFF reads the flags.
const IFREQ_SIZE: usize = 40;

/// Creates the multi-queue TUN device `name` (packet information off: raw IP packets), or
/// attaches to it when it exists, and returns one queue of it. The device lives while any
/// of its queues is open: a caller may make the device, set it up over netlink, let its
/// tunnel attach its own queues by name, then close this one.
pub fn open_queue(name: &str) -> io::Result<File> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is no interface name (1 to 15 bytes)"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut request = [0u8; IFREQ_SIZE];
    request[..bytes.len()].copy_from_slice(bytes);
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
    request[libc::IFNAMSIZ..libc::IFNAMSIZ + 2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `request` is one, alive and
    // exclusively borrowed for the call.
    let done = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, request.as_mut_ptr()) };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
