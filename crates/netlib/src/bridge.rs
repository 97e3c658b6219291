//! The gateway addresses on a bridge (the host side of a container network) that the bridge
//! plugin and the overlay agent share, and the forwarding sysctls that ptp needs too.

use ipnetwork::IpNetwork;

use crate::iface;
use cni::{Failure, Result};
use kernel::netlink::Netlink;
use kernel::sysctl;

/// Puts `gateway` (with its prefix) on the bridge. An IPv4 bridge keeps one address: a
/// different one is an error unless `force` replaces it. IPv6 bridges may hold several.
/// Another plugin adding the same address concurrently is fine.
pub fn ensure_gateway_address(
    netlink: &mut Netlink,
    bridge: u32,
    bridge_name: &str,
    gateway: IpNetwork,
    force: bool,
) -> Result<()> {
    let existing = netlink.addresses(bridge)?;
    if existing.contains(&gateway) {
        return Ok(());
    }
    if gateway.is_ipv4() {
        for other in existing.iter().filter(|a| a.is_ipv4()) {
            if !force {
                return Err(Failure::AlreadyExists(format!(
                    "{bridge_name:?} already has an IP address different from {gateway}: {other} (set forceAddress to replace it)"
                )).into());
            }
            netlink.delete_address(bridge, *other)?;
        }
    }
    match netlink.add_address(bridge, gateway, true) {
        Err(e) if e.already_exists() => Ok(()),
        other => {
            other?;
            iface::await_solicited_node_groups(bridge, &[gateway])
        }
    }
}

/// Turns on forwarding for the families the gateways use, in the calling thread's namespace.
pub fn enable_forwarding(gateways: &[IpNetwork]) -> Result<()> {
    if gateways.iter().any(IpNetwork::is_ipv4) {
        turn_on("net.ipv4.ip_forward")?;
    }
    if gateways.iter().any(IpNetwork::is_ipv6) {
        turn_on("net.ipv6.conf.all.forwarding")?;
    }
    Ok(())
}

/// Sets `key` to 1 unless it is 1 already: a container that is not privileged (the overlay
/// agent's DaemonSet) sees /proc/sys read-only, and a Kubernetes node has forwarding on.
fn turn_on(key: &str) -> Result<()> {
    if sysctl::get(key).is_ok_and(|value| value == "1") {
        return Ok(());
    }
    Ok(sysctl::set(key, "1")?)
}
