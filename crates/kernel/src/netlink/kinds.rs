//! Creating the links ferrocni makes, one kind after another: bridges (and their ports'
//! hairpin, isolation and VLANs), veth pairs, VXLAN devices, macvlans and ifbs.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData,
    InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::os::fd::{AsFd, AsRawFd};

use super::link::{by_index, get_without_counters, Link, MacAddr};
use super::{Netlink, NetlinkError};
use crate::netns::Netns;

/// A VXLAN device as an overlay node wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    /// UDP destination port (4789 is IANA's; the kernel's own default is Linux's old 8472).
    pub port: u16,
    /// The node's underlay address, the tunnel's source.
    pub local: std::net::IpAddr,
    /// The underlay link, if pinned.
    pub underlay: Option<u32>,
    pub mtu: u32,
    pub mac: MacAddr,
}

/// What makes a VXLAN device the one a spec asks for; MTU and MAC can change in place.
#[derive(Debug, Default, PartialEq, Eq)]
struct VxlanIdentity {
    vni: u32,
    port: u16,
    local: Option<std::net::IpAddr>,
    underlay: Option<u32>,
}

impl VxlanIdentity {
    fn of(spec: &VxlanSpec) -> Self {
        VxlanIdentity {
            vni: spec.vni,
            port: spec.port,
            local: Some(spec.local),
            underlay: spec.underlay,
        }
    }
}

impl Netlink {
    /// Creates the bridge `name`, or reuses it when it already exists (another plugin may
    /// be creating it at the same moment), and brings it up.
    pub fn ensure_bridge(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> Result<Link, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        // A bridge takes the lowest MAC of its ports unless one was set, so a MAC given at
        // creation keeps the gateway's MAC the same as containers come and go. Given there,
        // the kernel also makes it the bridge ID (STP's identity, which tools show) and drops
        // the carrier until a port forwards, so the operstate goes DOWN, then UP. Setting the
        // bridge's own MAC afterwards does neither: the ID stays zero and the operstate is
        // never computed (UNKNOWN); setting another flushes the neighbour table.
        message
            .attributes
            .push(LinkAttribute::Address(MacAddr::random().0.to_vec()));
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        message
            .attributes
            .push(LinkAttribute::LinkInfo(info.clone()));
        // Look first: a lookup needs no RTNL lock, a refused creation holds it, and all but
        // the first ADD on a node find the bridge there.
        let bridge = match self.link_by_name(name)? {
            Some(existing) => existing,
            None => {
                match self.request(
                    "create bridge",
                    RouteNetlinkMessage::NewLink(message),
                    NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                ) {
                    // Another plugin made it in between.
                    Err(e) if e.already_exists() => {}
                    Err(e) if vlan_filtering && e.errno() == Some(libc::EOPNOTSUPP) => {
                        return Err(NetlinkError::KernelLacks(
                            "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
                        ))
                    }
                    other => {
                        other?;
                    }
                }
                self.link(name)?
            }
        };
        if bridge.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongKind {
                name: name.to_string(),
                expected: "bridge",
            });
        }
        if vlan_filtering {
            // An existing bridge keeps its settings unless told otherwise.
            let mut change = by_index(bridge.index);
            change.attributes.push(LinkAttribute::LinkInfo(info));
            match self.request(
                "enable vlan filtering",
                RouteNetlinkMessage::NewLink(change),
                NLM_F_ACK,
            ) {
                Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
                    return Err(NetlinkError::KernelLacks(
                        "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
                    ))
                }
                other => other?,
            };
        }
        if !bridge.up {
            self.set_link_up(bridge.index, true)?;
        }
        Ok(bridge)
    }

    /// Creates a veth pair: `host` here, `peer` directly inside `peer_netns` (so the
    /// container end never appears on the host), both with `mtu`. Returns the host end.
    /// With `host_master`, the host end is made a port of that bridge and brought up in the
    /// same request: each request takes the RTNL lock and notifies every listener once.
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: &Netns,
        mtu: Option<u32>,
        peer_mac: Option<MacAddr>,
        host_master: Option<u32>,
    ) -> Result<Link, NetlinkError> {
        let mut peer_message = LinkMessage::default();
        peer_message
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_message
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_fd().as_raw_fd()));
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(host.to_string()));
        if let Some(mtu) = mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
            peer_message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = peer_mac {
            peer_message
                .attributes
                .push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(master) = host_master {
            message.attributes.push(LinkAttribute::Controller(master));
            message.header.flags = LinkFlags::Up;
            message.header.change_mask = LinkFlags::Up;
        }
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        // Kernels from 6.2 echo the new link back (NLM_F_ECHO), saving a lookup; older
        // ones ignore the flag and get asked.
        let answers = self.request(
            "create veth",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )?;
        let echoed = answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
            _ => None,
        });
        match echoed {
            Some(link) if link.name == host => Ok(link),
            _ => self.link(host),
        }
    }

    /// Creates the VXLAN device of `spec`, or keeps the existing one when its identity (VNI,
    /// port, local address, underlay link) matches; a mismatching one is replaced, as a node
    /// whose underlay address changed must not keep tunnelling from the old one. Then sets
    /// MTU and MAC (derived per node, so peers' entries stay valid across reboots) and up.
    pub fn ensure_vxlan(&mut self, spec: &VxlanSpec) -> Result<Link, NetlinkError> {
        let mut identity = vec![
            InfoVxlan::Id(spec.vni),
            InfoVxlan::Port(spec.port),
            // Peers are programmed from the store; learning would let forged frames in.
            InfoVxlan::Learning(false),
        ];
        identity.push(match spec.local {
            std::net::IpAddr::V4(v4) => InfoVxlan::Local(v4),
            std::net::IpAddr::V6(v6) => InfoVxlan::Local6(v6),
        });
        if let Some(underlay) = spec.underlay {
            identity.push(InfoVxlan::Link(underlay));
        }
        if let Some(existing) = self.vxlan_identity(&spec.name)? {
            if existing == VxlanIdentity::of(spec) {
                return self.settle_vxlan(spec);
            }
            let stale = self.link(&spec.name)?;
            self.delete_link(stale.index)?;
        }
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(spec.name.clone()));
        message.attributes.push(LinkAttribute::Mtu(spec.mtu));
        message
            .attributes
            .push(LinkAttribute::Address(spec.mac.0.to_vec()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(identity)),
        ]));
        self.request(
            "create vxlan",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.settle_vxlan(spec)
    }

    fn settle_vxlan(&mut self, spec: &VxlanSpec) -> Result<Link, NetlinkError> {
        let link = self.link(&spec.name)?;
        if link.mtu != spec.mtu {
            self.set_mtu(link.index, spec.mtu)?;
        }
        if link.mac != Some(spec.mac) {
            self.set_mac(link.index, spec.mac)?;
        }
        if !link.up {
            self.set_link_up(link.index, true)?;
        }
        self.link(&spec.name)
    }

    /// The identity of the VXLAN device `name`; `None` when there is no such link. Any
    /// other kind of link by that name is an error.
    fn vxlan_identity(&mut self, name: &str) -> Result<Option<VxlanIdentity>, NetlinkError> {
        let mut request = LinkMessage::default();
        request
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let answers = match self.request("get link", get_without_counters(request), NLM_F_ACK) {
            Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(None),
            other => other?,
        };
        let infos = answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos.clone()),
                _ => None,
            }),
            _ => None,
        });
        let settings = infos
            .unwrap_or_default()
            .into_iter()
            .find_map(|info| match info {
                LinkInfo::Data(InfoData::Vxlan(settings)) => Some(settings),
                _ => None,
            });
        let Some(settings) = settings else {
            return Err(NetlinkError::WrongKind {
                name: name.to_string(),
                expected: "vxlan",
            });
        };
        let mut identity = VxlanIdentity::default();
        for setting in settings {
            match setting {
                InfoVxlan::Id(vni) => identity.vni = vni,
                InfoVxlan::Port(port) => identity.port = port,
                InfoVxlan::Local(v4) => identity.local = Some(v4.into()),
                InfoVxlan::Local6(v6) => identity.local = Some(v6.into()),
                InfoVxlan::Link(index) => identity.underlay = Some(index),
                _ => {}
            }
        }
        Ok(Some(identity))
    }

    /// Creates a macvlan of `master` named `name` directly inside `netns` (so the name only
    /// has to be free there), or in this socket's namespace when `netns` is `None`.
    pub fn create_macvlan(
        &mut self,
        name: &str,
        master: u32,
        mode: MacVlanMode,
        mtu: Option<u32>,
        mac: Option<MacAddr>,
        netns: Option<&Netns>,
    ) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message.attributes.push(LinkAttribute::Link(master));
        if let Some(mtu) = mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = mac {
            message
                .attributes
                .push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(netns) = netns {
            message
                .attributes
                .push(LinkAttribute::NetNsFd(netns.as_fd().as_raw_fd()));
        }
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)])),
        ]));
        self.request(
            "create macvlan",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Creates an ifb device (where redirected ingress traffic can be shaped), labelled with
    /// `alias` so its owner can be found later.
    pub fn create_ifb(&mut self, name: &str, mtu: u32, alias: &str) -> Result<Link, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message.attributes.push(LinkAttribute::Mtu(mtu));
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
        self.request(
            "create ifb",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        let ifb = self.link(name)?;
        // The kernel ignores IFLA_IFALIAS when creating a link; set it afterwards.
        self.set_alias(ifb.index, alias)?;
        Ok(ifb)
    }

    /// Sets a bridge port's hairpin mode (traffic may leave by the port it came in on) and
    /// isolation (isolated ports cannot talk to each other, only to non-isolated ones).
    pub fn set_bridge_port(
        &mut self,
        index: u32,
        hairpin: bool,
        isolated: bool,
    ) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(hairpin),
                InfoBridgePort::Isolated(isolated),
            ])),
        ]));
        self.request(
            "set bridge port",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    fn bridge_vlan(
        &mut self,
        index: u32,
        vid: u16,
        flags: BridgeVlanInfoFlags,
        add: bool,
    ) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.header.interface_family = AddressFamily::Bridge;
        let info = BridgeVlanInfo { flags, vid };
        message
            .attributes
            .push(LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(
                info,
            )]));
        if add {
            self.set_link("add bridge vlan", message)
        } else {
            match self.request(
                "delete bridge vlan",
                RouteNetlinkMessage::DelLink(message),
                NLM_F_ACK,
            ) {
                Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
                other => other.map(drop),
            }
        }
    }

    /// Adds VLAN `vid` to a bridge port; `pvid` makes it the port's untagged native VLAN.
    pub fn bridge_vlan_add(
        &mut self,
        index: u32,
        vid: u16,
        pvid: bool,
    ) -> Result<(), NetlinkError> {
        let flags = if pvid {
            BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
        } else {
            BridgeVlanInfoFlags::empty()
        };
        self.bridge_vlan(index, vid, flags, true)
    }

    pub fn bridge_vlan_del(&mut self, index: u32, vid: u16) -> Result<(), NetlinkError> {
        self.bridge_vlan(index, vid, BridgeVlanInfoFlags::empty(), false)
    }
}
