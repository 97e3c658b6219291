//! The bridge plugin ([`BridgePlugin`]), and the gateway addresses on a bridge (the host side
//! of a container network) that the bridge plugin and the overlay agent share.

mod config;
mod plugin;

pub use config::BridgeConf;
pub use plugin::BridgePlugin;

use ipnetwork::IpNetwork;
use std::net::IpAddr;

use crate::cni::{Failure, Result};
use crate::iface;
use crate::ipam::range::{from_bits, to_bits};
use crate::netlink::Netlink;
use crate::sysctl;

/// The first address of `address`'s subnet: the gateway when IPAM names none.
pub fn default_gateway(address: &IpNetwork) -> IpAddr {
    from_bits(to_bits(address.network()) + 1, address.ip())
}

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
        sysctl::set("net.ipv4.ip_forward", "1")?;
    }
    if gateways.iter().any(IpNetwork::is_ipv6) {
        sysctl::set("net.ipv6.conf.all.forwarding", "1")?;
    }
    Ok(())
}
