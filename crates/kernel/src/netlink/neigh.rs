//! Neighbour (ARP/NDP) and forwarding-database entries: what an overlay programs on its VXLAN
//! device for each remote node (the remote gateway's MAC, and where that MAC lives).

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

use super::{MacAddr, Netlink, NetlinkError};

/// A permanent neighbour: `ip` is reached at `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// A VXLAN forwarding entry: frames for `mac` go to the underlay address `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub remote: IpAddr,
}

/// NDA_DST decodes by the header's family; in a bridge-family dump it arrives as raw bytes.
fn ip_of(address: &NeighbourAddress) -> Option<IpAddr> {
    match address {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

fn mac_of(attributes: &[NeighbourAttribute]) -> Option<MacAddr> {
    attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(bytes) => {
            <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
        }
        _ => None,
    })
}

fn destination_of(attributes: &[NeighbourAttribute]) -> Option<IpAddr> {
    attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(address) => ip_of(address),
        _ => None,
    })
}

fn message(family: AddressFamily, index: u32) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message
}

fn ip_family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

impl Netlink {
    fn dump_neighbours(
        &mut self,
        family: AddressFamily,
        index: u32,
    ) -> Result<Vec<NeighbourMessage>, NetlinkError> {
        let answers = self.request(
            "list neighbours",
            RouteNetlinkMessage::GetNeighbour(message(family, 0)),
            NLM_F_DUMP,
        )?;
        // The kernel filters a dump by device only under strict checking: filter here.
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => Some(n),
                _ => None,
            })
            .collect())
    }

    /// The permanent neighbours on link `index`; learned ones are the kernel's business.
    pub fn permanent_neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>, NetlinkError> {
        let mut found = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for n in self.dump_neighbours(family, index)? {
                if n.header.state != NeighbourState::Permanent {
                    continue;
                }
                if let (Some(ip), Some(mac)) =
                    (destination_of(&n.attributes), mac_of(&n.attributes))
                {
                    found.push(Neighbour { ip, mac });
                }
            }
        }
        Ok(found)
    }

    /// Adds or replaces the permanent neighbour `ip` → `mac` on link `index`.
    pub fn set_neighbour(&mut self, index: u32, neighbour: Neighbour) -> Result<(), NetlinkError> {
        let mut request = message(ip_family(neighbour.ip), index);
        request.header.state = NeighbourState::Permanent;
        request.header.kind = RouteType::Unicast;
        request.attributes = vec![
            NeighbourAttribute::Destination(neighbour_address(neighbour.ip)),
            NeighbourAttribute::LinkLayerAddress(neighbour.mac.0.to_vec()),
        ];
        self.request(
            "set neighbour",
            RouteNetlinkMessage::NewNeighbour(request),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes the neighbour `ip` on link `index`; one already gone counts as deleted.
    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<(), NetlinkError> {
        let mut request = message(ip_family(ip), index);
        request.attributes = vec![NeighbourAttribute::Destination(neighbour_address(ip))];
        match self.request(
            "delete neighbour",
            RouteNetlinkMessage::DelNeighbour(request),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The device's own forwarding entries with a remote (NTF_SELF), not a bridge's.
    pub fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>, NetlinkError> {
        Ok(self
            .dump_neighbours(AddressFamily::Bridge, index)?
            .into_iter()
            .filter(|n| n.header.flags.contains(NeighbourFlags::Own))
            .filter_map(|n| {
                Some(FdbEntry {
                    mac: mac_of(&n.attributes)?,
                    remote: destination_of(&n.attributes)?,
                })
            })
            .collect())
    }

    fn fdb_message(index: u32, entry: FdbEntry) -> NeighbourMessage {
        let mut request = message(AddressFamily::Bridge, index);
        request.header.state = NeighbourState::Permanent;
        request.header.flags = NeighbourFlags::Own;
        request.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(entry.mac.0.to_vec()),
            NeighbourAttribute::Destination(neighbour_address(entry.remote)),
        ];
        request
    }

    /// Adds or replaces (the MAC moved to another node) a forwarding entry on link `index`.
    pub fn set_fdb_entry(&mut self, index: u32, entry: FdbEntry) -> Result<(), NetlinkError> {
        self.request(
            "set forwarding entry",
            RouteNetlinkMessage::NewNeighbour(Self::fdb_message(index, entry)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes a forwarding entry; one already gone counts as deleted.
    pub fn delete_fdb_entry(&mut self, index: u32, entry: FdbEntry) -> Result<(), NetlinkError> {
        match self.request(
            "delete forwarding entry",
            RouteNetlinkMessage::DelNeighbour(Self::fdb_message(index, entry)),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            other => other.map(drop),
        }
    }
}
