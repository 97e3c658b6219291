//! Gratuitous ARP: tells the neighbours (and the bridge's FDB) which MAC now owns an address,
//! so a reused address does not stay unreachable until stale ARP caches expire.

use std::io;
use std::net::Ipv4Addr;

use super::MacAddr;

const ETH_P_ARP: u16 = 0x0806;

/// The frame: broadcast Ethernet header, then an ARP request for our own address.
fn frame(mac: MacAddr, ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac.0);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // hardware Ethernet, protocol IPv4, address lengths 6 and 4, operation request
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac.0);
    frame[28..32].copy_from_slice(&ip.octets());
    // target hardware address stays zero; target protocol address is our own
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// Sends one gratuitous ARP for `ip` out of link `index`. Must be called from a thread in
/// the link's namespace (packet sockets bind to the caller's namespace).
pub fn send_gratuitous(index: u32, mac: MacAddr, ip: Ipv4Addr) -> io::Result<()> {
    let protocol = ETH_P_ARP.to_be();
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = i32::try_from(index).unwrap_or(0);
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let packet = frame(mac, ip);
    // SAFETY: `packet` and `address` outlive the call and their lengths are passed exactly.
    let sent = unsafe {
        libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::addr_of!(address).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    let result = if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: `fd` is the socket opened above and closed exactly once.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_layout() {
        let frame = super::frame(
            super::MacAddr([2, 0, 0, 0, 0, 1]),
            "10.0.0.5".parse().expect("ip"),
        );
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[28..32], &[10, 0, 0, 5]);
        assert_eq!(&frame[38..42], &[10, 0, 0, 5]);
        assert_eq!(&frame[32..38], &[0; 6]);
    }
}
