//! Giving a container interface what IPAM returned: sysctls, addresses, routes, link up, and
//! a gratuitous ARP, the way the reference's `ipam.ConfigureIface` does, plus the checks CHECK
//! needs. Shared by every plugin that creates an interface.

use ipnetwork::IpNetwork;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cni::{CniResult, Coded, ErrorCode, Failure, Result, Route};
use kernel::netlink::{Link, Netlink, RouteSpec};
use kernel::netns::Netns;
use kernel::sysctl;

/// A file of the kernel's under /proc that must be there could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct ProcError {
    path: &'static str,
    #[source]
    source: std::io::Error,
}

impl Coded for ProcError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Io
    }
}

/// The gateway of the first address of each family on interface `index` of the result.
fn gateways(result: &CniResult, index: usize) -> (Option<IpAddr>, Option<IpAddr>) {
    let of_family = |v4: bool| {
        result
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(index) && ip.address.is_ipv4() == v4)
            .find_map(|ip| ip.gateway)
    };
    (of_family(true), of_family(false))
}

/// A result route as the kernel takes it: without a gateway it goes via the interface's
/// gateway of the same family, as the reference does.
pub fn route_spec(
    route: &Route,
    link: u32,
    gateways: (Option<IpAddr>, Option<IpAddr>),
) -> RouteSpec {
    let fallback = if route.dst.is_ipv4() {
        gateways.0
    } else {
        gateways.1
    };
    RouteSpec {
        dst: Some(route.dst),
        gateway: route.gw.or(fallback),
        oif: Some(link),
        scope: route.scope,
        table: route.table,
        priority: route.priority,
        mtu: route.mtu,
        advmss: route.advmss,
        ..RouteSpec::default()
    }
}

/// Sets an IPv6 setting of `ifname`; a missing key (IPv6 disabled in the namespace) is skipped.
fn set_ipv6_if_present(ifname: &str, setting: &str, value: &str) -> Result<()> {
    match sysctl::set(&sysctl::interface_key("ipv6", ifname, setting), value) {
        Err(sysctl::SysctlError::Missing(_)) => Ok(()),
        other => Ok(other?),
    }
}

/// Turns off IPv6 duplicate address detection on a link of the calling thread's namespace.
/// While a new link's link-local address is tentative, neighbour solicitations from it
/// leave without a usable source and go unanswered for a second or more.
pub fn disable_dad(ifname: &str) -> Result<()> {
    set_ipv6_if_present(ifname, "accept_dad", "0")
}

/// Configures `link` (inside `netns`, reached through `netlink`) with the addresses and routes
/// of `result` that point at interface `index`. IPv6 duplicate address detection is off
/// unless `enable_dad`: it delays every container by seconds for no gain on a private bridge.
pub fn configure(
    netns: &Netns,
    netlink: &mut Netlink,
    link: &Link,
    result: &CniResult,
    index: usize,
    enable_dad: bool,
) -> Result<()> {
    let addresses: Vec<IpNetwork> = result
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| ip.address)
        .collect();
    let has_v6 = addresses.iter().any(IpNetwork::is_ipv6);
    if has_v6 {
        // The kernel takes no IPv6 device settings over netlink: these go through /proc.
        let name = &link.name;
        netns.run(|| -> Result<()> {
            set_ipv6_if_present(name, "disable_ipv6", "0")?;
            // Unsolicited neighbour advertisements: IPv6's gratuitous ARP.
            set_ipv6_if_present(name, "ndisc_notify", "1")?;
            if enable_dad {
                set_ipv6_if_present(name, "enhanced_dad", "1")?;
                set_ipv6_if_present(name, "accept_dad", "1")?;
            } else {
                set_ipv6_if_present(name, "accept_dad", "0")?;
            }
            Ok(())
        })??;
    }
    for address in &addresses {
        netlink.add_address(link.index, *address, !enable_dad)?;
    }
    netlink.set_up_notifying(link.index, addresses.iter().any(IpNetwork::is_ipv4))?;
    if enable_dad && has_v6 {
        settle_dad(netlink, link.index)?;
    }
    let gateways = gateways(result, index);
    for route in &result.routes {
        match netlink.add_route(&route_spec(route, link.index, gateways)) {
            // The same route from two IPAM entries (or a kernel-made one) is already there.
            Err(e) if e.already_exists() => {}
            other => other?,
        }
    }
    if has_v6 {
        netns.run(|| await_solicited_node_groups(link.index, &addresses))??;
    }
    Ok(())
}

/// Waits until interface `index` of the calling thread's namespace listens on the
/// solicited-node group of each IPv6 address in `addresses`, where neighbours ask for it.
/// A `nodad` address sends at once, but the kernel joins its group later, in a work item
/// that waits for the RTNL lock; until then solicitations for the address go unanswered,
/// and a neighbour asks again only a second later. Under load (many namespaces coming and
/// going) the work can lag by more than that. The reference waits out the same work item
/// when it waits for tentative addresses to settle.
pub fn await_solicited_node_groups(index: u32, addresses: &[IpNetwork]) -> Result<()> {
    const GROUPS: &str = "/proc/thread-self/net/igmp6";
    let wanted: Vec<String> = addresses
        .iter()
        .filter_map(|address| match address.ip() {
            IpAddr::V6(v6) => Some(solicited_node_group(v6)),
            IpAddr::V4(_) => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + SETTLE_WITHIN;
    let mut pause = Duration::from_micros(100);
    loop {
        let joined = std::fs::read_to_string(GROUPS).map_err(|source| ProcError {
            path: GROUPS,
            source,
        })?;
        if wanted.iter().all(|group| has_joined(&joined, index, group)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::NotReadyYet(format!(
                "the kernel did not join the IPv6 solicited-node groups of interface {index} within {} s",
                SETTLE_WITHIN.as_secs()
            )).into());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// ff02::1:ffXX:XXXX for the low 24 bits of `address`, written as /proc/net/igmp6 does.
fn solicited_node_group(address: std::net::Ipv6Addr) -> String {
    let [.., a, b, c] = address.octets();
    format!("ff0200000000000000000001ff{a:02x}{b:02x}{c:02x}")
}

/// Whether a line of `igmp6` (index, name, group, users, flags, timer) lists `group` on
/// interface `index`.
fn has_joined(igmp6: &str, index: u32, group: &str) -> bool {
    igmp6.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.next().and_then(|i| i.parse::<u32>().ok()) == Some(index)
            && fields.nth(1) == Some(group)
    })
}

/// Has the kernel announce the addresses of `result` on interface `index` (gratuitous ARP for
/// IPv4, unsolicited neighbour advertisements for IPv6), so neighbours and a bridge's FDB
/// learn the new owner of a possibly reused address. Setting the link's MAC to itself raises
/// NETDEV_CHANGEADDR, which with the `arp_notify`/`ndisc_notify` sysctls that `configure`
/// set makes the kernel send them. A packet socket would do the same, but closing one waits
/// for an RCU grace period (`synchronize_net`), longer than all the rest of an ADD. Call it once the path is
/// open: a bridge drops frames from a port it enables only after linkwatch saw its carrier.
pub fn announce(container: &mut Netlink, link: &Link, result: &CniResult, index: usize) {
    let has_address = result.ips.iter().any(|ip| ip.interface == Some(index));
    if let (Some(mac), true) = (link.mac, has_address) {
        // Best effort, as the reference's gratuitous ARP: neighbours learn on first traffic
        // anyway, and a driver that refuses MAC writes while up (some NICs host-device
        // moves) must not fail the ADD.
        let _ = container.set_mac(link.index, mac);
    }
}

/// How long ADD waits for the kernel to make new IPv6 addresses usable.
const SETTLE_WITHIN: Duration = Duration::from_secs(5);

/// With DAD on, an address is unusable (and routes via it fail) until DAD is done: wait for
/// it, at most 5 s as the reference does.
fn settle_dad(netlink: &mut Netlink, index: u32) -> Result<()> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    while netlink.has_tentative_address(index)? {
        if Instant::now() > deadline {
            return Err(Failure::NotReadyYet(format!(
                "IPv6 duplicate address detection did not finish within {} s",
                SETTLE_WITHIN.as_secs()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// CHECK: the link carries every address of `result` for interface `index`, and the routes.
pub fn verify(netlink: &mut Netlink, link: &Link, result: &CniResult, index: usize) -> Result<()> {
    let present = netlink.addresses(link.index)?;
    for ip in result.ips.iter().filter(|ip| ip.interface == Some(index)) {
        if !present.contains(&ip.address) {
            return Err(Failure::Check(format!(
                "{} does not have address {}",
                link.name, ip.address
            ))
            .into());
        }
    }
    let gateways = gateways(result, index);
    for v4 in [true, false] {
        let routes: Vec<&Route> = result
            .routes
            .iter()
            .filter(|r| r.dst.is_ipv4() == v4)
            .collect();
        if routes.is_empty() {
            continue;
        }
        let kernel = netlink.routes(v4)?;
        for route in routes {
            let want = route_spec(route, link.index, gateways);
            let found = kernel.iter().any(|k| {
                k.dst.map(|d| (d.network(), d.prefix()))
                    == want.dst.map(|d| (d.network(), d.prefix()))
                    && k.gateway == want.gateway
                    && k.oif == want.oif
            });
            if !found {
                return Err(Failure::Check(format!(
                    "route to {} on {} is missing",
                    route.dst, link.name
                ))
                .into());
            }
        }
    }
    Ok(())
}
