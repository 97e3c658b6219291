//! Addresses and routes.

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

use super::{Netlink, NetlinkError, SocketOption};

/// A route as the plugins configure and check it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSpec {
    pub dst: Option<IpNetwork>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Preferred source address.
    pub source: Option<IpAddr>,
    /// `RT_SCOPE_*`; by default universe with a gateway, link without.
    pub scope: Option<u8>,
    pub table: Option<u32>,
    pub priority: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// The gateway is on the link even though no address of the link covers it (an overlay
    /// routes a remote node's subnet via that subnet's own address on the VXLAN device).
    pub onlink: bool,
}

/// As `ip route` prints one, without the device (the error names the attachment anyway).
impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dst {
            Some(dst) => write!(f, "{dst}")?,
            None => f.write_str("default")?,
        }
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(table) = self.table {
            write!(f, " table {table}")?;
        }
        if let Some(metric) = self.priority {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn address_message(index: u32, address: IpNetwork) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family(address.ip());
    message.header.prefix_len = address.prefix();
    message.header.index = index;
    message
        .attributes
        .push(AddressAttribute::Local(address.ip()));
    message
        .attributes
        .push(AddressAttribute::Address(address.ip()));
    message
}

impl RouteSpec {
    fn is_ipv4(&self) -> bool {
        match (self.dst, self.gateway) {
            (Some(dst), _) => dst.is_ipv4(),
            (None, Some(gw)) => gw.is_ipv4(),
            (None, None) => true,
        }
    }

    /// The request for this route. Deletion matches any protocol and, unless a scope is
    /// given, any scope, so routes the kernel made (`proto kernel`) can be removed too.
    fn to_message(&self, deleting: bool) -> RouteMessage {
        let mut message = RouteMessage::default();
        let v4 = self.is_ipv4();
        message.header.address_family = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        message.header.protocol = if deleting {
            RouteProtocol::Unspec
        } else {
            RouteProtocol::Boot
        };
        message.header.kind = RouteType::Unicast;
        if self.onlink {
            message.header.flags |= RouteFlags::Onlink;
        }
        message.header.scope = match (self.scope, self.gateway) {
            (Some(scope), _) => RouteScope::from(scope),
            (None, _) if deleting => RouteScope::NoWhere,
            (None, Some(_)) => RouteScope::Universe,
            (None, None) => RouteScope::Link,
        };
        let table = self.table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN));
        message.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        message.attributes.push(RouteAttribute::Table(table));
        if let Some(dst) = self.dst {
            message.header.destination_prefix_length = dst.prefix();
            if dst.prefix() > 0 {
                message
                    .attributes
                    .push(RouteAttribute::Destination(route_address(dst.network())));
            }
        }
        if let Some(gw) = self.gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        if let Some(source) = self.source {
            message
                .attributes
                .push(RouteAttribute::PrefSource(route_address(source)));
        }
        if let Some(oif) = self.oif {
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(priority) = self.priority {
            message.attributes.push(RouteAttribute::Priority(priority));
        }
        let mut metrics = Vec::new();
        if let Some(mtu) = self.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(advmss) = self.advmss {
            metrics.push(RouteMetric::Advmss(advmss));
        }
        if !metrics.is_empty() {
            message.attributes.push(RouteAttribute::Metrics(metrics));
        }
        message
    }

    fn from_message(message: &RouteMessage) -> RouteSpec {
        let mut spec = RouteSpec {
            scope: Some(u8::from(message.header.scope)),
            table: Some(u32::from(message.header.table)),
            onlink: message.header.flags.contains(RouteFlags::Onlink),
            ..RouteSpec::default()
        };
        let mut dst = None;
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Destination(a) => dst = ip_of(a),
                RouteAttribute::Gateway(a) => spec.gateway = ip_of(a),
                RouteAttribute::PrefSource(a) => spec.source = ip_of(a),
                RouteAttribute::Oif(oif) => spec.oif = Some(*oif),
                RouteAttribute::Priority(p) => spec.priority = Some(*p),
                RouteAttribute::Table(t) => spec.table = Some(*t),
                _ => {}
            }
        }
        let any = if message.header.address_family == AddressFamily::Inet6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        };
        spec.dst =
            IpNetwork::new(dst.unwrap_or(any), message.header.destination_prefix_length).ok();
        spec
    }
}

impl Netlink {
    /// Adds an address. IPv6 addresses get `nodad` unless duplicate detection is wanted:
    /// waiting for DAD costs seconds per container (the reference's issue #680).
    pub fn add_address(
        &mut self,
        index: u32,
        address: IpNetwork,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        let mut message = address_message(index, address);
        if nodad && address.is_ipv6() {
            message.header.flags = AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            "add address",
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Dumps the addresses of link `index` in `family` (`Unspec`: all).
    ///
    /// Under strict checking the kernel honours the filter, so asking for one bridge's
    /// addresses on a host with a thousand veths returns the bridge's, not a thousand
    /// link-local ones to parse and throw away on every ADD. Strict checking is on for this
    /// request only: it also rejects requests the lax parser takes, such as our route
    /// lookups. Kernels before 4.20 refuse the option and dump everything, so callers still
    /// check the index of every answer.
    fn addresses_of(
        &mut self,
        index: u32,
        family: AddressFamily,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut request = AddressMessage::default();
        request.header.index = index;
        request.header.family = family;
        let strict = self.set(SocketOption::StrictChecking(true)).is_ok();
        let answers = self.request(
            "list addresses",
            RouteNetlinkMessage::GetAddress(request),
            NLM_F_DUMP,
        );
        if strict {
            self.set(SocketOption::StrictChecking(false))?;
        }
        match answers {
            // A filtered dump of a link that is gone fails; unfiltered, it found nothing.
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(Vec::new()),
            other => other,
        }
    }

    pub fn delete_address(&mut self, index: u32, address: IpNetwork) -> Result<(), NetlinkError> {
        match self.request(
            "delete address",
            RouteNetlinkMessage::DelAddress(address_message(index, address)),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Whether an IPv6 address on the link is still in duplicate address detection.
    pub fn has_tentative_address(&mut self, index: u32) -> Result<bool, NetlinkError> {
        let answers = self.addresses_of(index, AddressFamily::Inet6)?;
        Ok(answers.iter().any(|answer| match answer {
            RouteNetlinkMessage::NewAddress(message) => {
                message.header.index == index
                    && message.header.family == AddressFamily::Inet6
                    && message.header.flags.contains(AddressHeaderFlags::Tentative)
            }
            _ => false,
        }))
    }

    /// The addresses on a link, each with its prefix length.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNetwork>, NetlinkError> {
        let answers = self.addresses_of(index, AddressFamily::Unspec)?;
        let mut addresses = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(message) = answer else {
                continue;
            };
            if message.header.index != index {
                continue;
            }
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = address {
                let network = IpNetwork::new(ip, message.header.prefix_len).map_err(|e| {
                    NetlinkError::Decode {
                        op: "list addresses",
                        reason: e.to_string(),
                    }
                })?;
                addresses.push(network);
            }
        }
        Ok(addresses)
    }

    /// Adds a route; EEXIST is returned to the caller, who knows whether a twin is fine.
    /// Fails naming the route: a config's routes are many, and the errno alone ("Network
    /// unreachable") does not say which gateway was wrong.
    pub fn add_route(&mut self, route: &RouteSpec) -> Result<(), NetlinkError> {
        self.request(
            "add route",
            RouteNetlinkMessage::NewRoute(route.to_message(false)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| NetlinkError::Route {
            route: route.to_string(),
            source: Box::new(e),
        })?;
        Ok(())
    }

    /// Deletes a route; one that is already gone counts as deleted.
    pub fn delete_route(&mut self, route: &RouteSpec) -> Result<(), NetlinkError> {
        match self.request(
            "delete route",
            RouteNetlinkMessage::DelRoute(route.to_message(true)),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno() == Some(libc::ESRCH) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The link the kernel would send a packet to `destination` out of (`ip route get`);
    /// `None` when it has no route there.
    pub fn output_link(&mut self, destination: IpAddr) -> Result<Option<u32>, NetlinkError> {
        let mut request = RouteSpec {
            dst: IpNetwork::new(destination, if destination.is_ipv4() { 32 } else { 128 }).ok(),
            ..RouteSpec::default()
        }
        .to_message(true);
        request.header.table = RouteHeader::RT_TABLE_UNSPEC;
        request
            .attributes
            .retain(|a| matches!(a, RouteAttribute::Destination(_)));
        let answers = match self.request(
            "get route",
            RouteNetlinkMessage::GetRoute(request),
            NLM_F_ACK,
        ) {
            // No route there: no link either, as for a route without one.
            Err(e) if matches!(e.errno(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
                return Ok(None)
            }
            other => other?,
        };
        Ok(answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewRoute(route) => RouteSpec::from_message(route).oif,
            _ => None,
        }))
    }

    /// The link of the IPv4 default route in the main table, if there is one.
    pub fn default_route_link(&mut self) -> Result<Option<u32>, NetlinkError> {
        Ok(self
            .routes(true)?
            .into_iter()
            .find(|r| {
                r.dst.is_some_and(|d| d.prefix() == 0)
                    && r.table == Some(u32::from(RouteHeader::RT_TABLE_MAIN))
            })
            .and_then(|r| r.oif))
    }

    /// The routes of every table for one address family.
    pub fn routes(&mut self, ipv4: bool) -> Result<Vec<RouteSpec>, NetlinkError> {
        let mut request = RouteMessage::default();
        request.header.address_family = if ipv4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let answers = self.request(
            "list routes",
            RouteNetlinkMessage::GetRoute(request),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(route) => Some(RouteSpec::from_message(route)),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::exchange::Raw;
    use crate::netlink::fake::{Fake, Reply, Sent};
    use netlink_packet_core::NLM_F_REQUEST;

    fn decoded(sent: &Sent) -> RouteNetlinkMessage {
        sent.message.decode().expect("a routing message")
    }

    fn net(text: &str) -> IpNetwork {
        text.parse().expect("a network")
    }

    #[test]
    fn addresses_are_added_without_duplicate_detection_for_ipv6_only() {
        let fake = Fake::new();
        fake.then(Reply::Ack).then(Reply::Ack).then(Reply::Ack);
        let mut netlink = Netlink::over(fake.clone());
        netlink
            .add_address(3, net("10.1.0.5/16"), true)
            .expect("v4");
        netlink.add_address(3, net("fd00::5/64"), true).expect("v6");
        netlink
            .add_address(3, net("fd00::6/64"), false)
            .expect("v6, dad");
        let sent = fake.requests();
        assert!(sent
            .iter()
            .all(|s| s.flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL));
        let added: Vec<AddressMessage> = sent
            .iter()
            .map(|s| match decoded(s) {
                RouteNetlinkMessage::NewAddress(message) => message,
                other => panic!("not an address: {other:?}"),
            })
            .collect();
        assert_eq!(added[0], address_message(3, net("10.1.0.5/16")));
        assert_eq!(
            (added[0].header.family, added[0].header.prefix_len),
            (AddressFamily::Inet, 16)
        );
        assert_eq!(added[1].header.flags, AddressHeaderFlags::Nodad);
        assert!(added[1]
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        assert_eq!(added[2], address_message(3, net("fd00::6/64")));
    }

    fn route_of(sent: &Sent) -> RouteMessage {
        match decoded(sent) {
            RouteNetlinkMessage::NewRoute(route) | RouteNetlinkMessage::DelRoute(route) => route,
            other => panic!("not a route: {other:?}"),
        }
    }

    #[test]
    fn a_route_is_asked_for_as_specified_and_its_failure_names_it() {
        let fake = Fake::new();
        fake.then(Reply::Ack).then(Reply::Refuse {
            errno: libc::ENETUNREACH,
            message: Some("Nexthop has invalid gateway".into()),
        });
        let mut netlink = Netlink::over(fake.clone());
        let route = RouteSpec {
            dst: Some(net("10.2.0.0/16")),
            gateway: Some("10.1.0.1".parse().expect("an address")),
            oif: Some(3),
            table: Some(100),
            priority: Some(20),
            mtu: Some(1400),
            onlink: true,
            ..RouteSpec::default()
        };
        netlink.add_route(&route).expect("added");
        let failed = netlink.add_route(&route).expect_err("refused");
        assert_eq!(failed.errno(), Some(libc::ENETUNREACH));
        assert_eq!(
            cni::error::causes(&failed),
            "cannot add route 10.2.0.0/16 via 10.1.0.1 table 100 metric 20: \
             netlink add route failed: Nexthop has invalid gateway: Network is unreachable (os error 101)"
        );
        let sent = route_of(&fake.requests()[0]);
        assert_eq!(sent.header.address_family, AddressFamily::Inet);
        assert_eq!(sent.header.destination_prefix_length, 16);
        assert_eq!(sent.header.protocol, RouteProtocol::Boot);
        assert_eq!(sent.header.scope, RouteScope::Universe);
        assert_eq!(sent.header.kind, RouteType::Unicast);
        assert_eq!(sent.header.flags, RouteFlags::Onlink);
        assert_eq!(sent.header.table, 100);
        assert_eq!(
            sent.attributes,
            [
                RouteAttribute::Table(100),
                RouteAttribute::Destination(RouteAddress::Inet("10.2.0.0".parse().expect("ip"))),
                RouteAttribute::Gateway(RouteAddress::Inet("10.1.0.1".parse().expect("ip"))),
                RouteAttribute::Oif(3),
                RouteAttribute::Priority(20),
                RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]),
            ]
        );
    }

    #[test]
    fn deleting_a_route_matches_any_protocol_and_scope_and_a_missing_one_is_gone() {
        let fake = Fake::new();
        fake.then(Reply::Refuse {
            errno: libc::ESRCH,
            message: None,
        });
        let mut netlink = Netlink::over(fake.clone());
        let route = RouteSpec {
            dst: Some(net("fd00:1::/64")),
            oif: Some(3),
            ..RouteSpec::default()
        };
        netlink.delete_route(&route).expect("already gone");
        let sent = route_of(&fake.requests()[0]);
        assert_eq!(sent.header.address_family, AddressFamily::Inet6);
        assert_eq!(sent.header.protocol, RouteProtocol::Unspec);
        assert_eq!(sent.header.scope, RouteScope::NoWhere);
        // Without a gateway a route is on the link, when added.
        assert_eq!(route.to_message(false).header.scope, RouteScope::Link);
    }

    fn address_answer(index: u32, address: &str) -> Raw {
        Raw::of(&RouteNetlinkMessage::NewAddress(address_message(
            index,
            net(address),
        )))
    }

    #[test]
    fn an_address_dump_is_strict_for_itself_only_and_keeps_the_links_own() {
        let fake = Fake::new();
        fake.then(Reply::Dump {
            datagrams: vec![
                vec![address_answer(3, "10.1.0.1/24")],
                // A kernel without strict checking dumps every link's.
                vec![
                    address_answer(4, "10.9.0.1/24"),
                    address_answer(3, "fd00::1/64"),
                ],
            ],
            interrupted: false,
        })
        .then(Reply::Refuse {
            errno: libc::ENODEV,
            message: None,
        });
        let mut netlink = Netlink::over(fake.clone());
        assert_eq!(
            netlink.addresses(3).expect("listed"),
            [net("10.1.0.1/24"), net("fd00::1/64")]
        );
        assert_eq!(
            fake.options(),
            [
                SocketOption::StrictChecking(true),
                SocketOption::StrictChecking(false)
            ]
        );
        let RouteNetlinkMessage::GetAddress(asked) = decoded(&fake.requests()[0]) else {
            panic!("an address dump");
        };
        assert_eq!(asked.header.index, 3);
        assert_eq!(fake.requests()[0].flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert!(netlink.addresses(3).expect("a gone link").is_empty());
    }
}
