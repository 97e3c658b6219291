//! Socket options for the sockets no library configures for us: netlink's receive timeout
//! and buffer sizes, the DHCP client's packet filter and interface binding.

use std::io;
use std::os::fd::AsRawFd;

/// setsockopt(2) with `value` (an integer, a name, a struct) as the option's bytes.
pub fn set_option<T: ?Sized>(
    socket: &impl AsRawFd,
    level: i32,
    name: i32,
    value: &T,
) -> io::Result<()> {
    let length = libc::socklen_t::try_from(std::mem::size_of_val(value))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: setsockopt reads exactly `length` bytes from `value`, which is valid for reads
    // of its size and lives across the call; the descriptor belongs to `socket`.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            length,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
