//! Links: lookup, state, veth pairs, bridges and bridge ports (hairpin, isolation, VLANs).

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL};
pub use netlink_packet_route::link::MacVlanMode;
use netlink_packet_route::link::{
    AfSpecBridge, AfSpecInet, AfSpecUnspec, BridgeVlanInfo, BridgeVlanInfoFlags, InetDevConf,
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind,
    InfoVeth, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkLayerType,
    LinkMessage, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::str::FromStr;

use super::{Netlink, NetlinkError};
use crate::netns::Netns;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl MacAddr {
    /// A random locally administered unicast address, as the kernel gives a new bridge.
    pub fn random() -> MacAddr {
        let mut bytes: [u8; 6] = crate::random::bytes();
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        MacAddr(bytes)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2);
            *byte = part
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        if bytes[0] & 1 == 1 {
            return Err(format!("{text:?} is a multicast address"));
        }
        Ok(MacAddr(bytes))
    }
}

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

/// What the plugins need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// The bridge (or other controller) this link is a port of.
    pub master: Option<u32>,
    /// `bridge`, `veth`, `macvlan`... as the kernel names the link type.
    pub kind: Option<String>,
    pub promisc: bool,
    pub allmulti: bool,
    pub txqlen: u32,
    /// For a veth end: the other end's index, in the other end's namespace.
    pub peer: Option<u32>,
    /// The other end lives in another namespace (IFLA_LINK_NETNSID); without it `peer` is an
    /// index of this link's own namespace.
    pub peer_elsewhere: bool,
    /// IFLA_IFALIAS: a free-form label, used to record who made a link.
    pub alias: Option<String>,
    /// RFC 2863 operational state "up": carrier seen and processed by the kernel.
    pub oper_up: bool,
    /// An Ethernet device (ARPHRD_ETHER), the only kind macvlan can sit on.
    pub ethernet: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            up: msg.header.flags.contains(LinkFlags::Up),
            mac: None,
            mtu: 0,
            master: None,
            kind: None,
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
            allmulti: msg.header.flags.contains(LinkFlags::Allmulti),
            txqlen: 0,
            peer: None,
            peer_elsewhere: false,
            alias: None,
            oper_up: false,
            ethernet: msg.header.link_layer_type == LinkLayerType::Ether,
        };
        for attribute in &msg.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
                }
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::TxQueueLen(len) => link.txqlen = *len,
                LinkAttribute::Link(peer) => link.peer = Some(*peer),
                LinkAttribute::LinkNetNsId(_) => link.peer_elsewhere = true,
                LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
                LinkAttribute::OperState(state) => link.oper_up = *state == State::Up,
                LinkAttribute::Controller(master) => link.master = Some(*master),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn by_index(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
}

/// A fresh name like `veth1a2b3c4d` for the host end of a veth pair.
pub fn random_name(prefix: &str) -> String {
    // Only uniqueness matters here; the pid and the EEXIST retry cover a collision.
    format!("{prefix}{:08x}", crate::random::u32() ^ std::process::id())
}

/// A link lookup or listing without counters: the plugins never read them, and filling and
/// parsing them made up a good part of every lookup.
fn get_without_counters(mut message: LinkMessage) -> RouteNetlinkMessage {
    message
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(message)
}

impl Netlink {
    /// Looks a link up by name; `None` when there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.get_link(message)
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        self.get_link(by_index(index))
    }

    fn get_link(&mut self, message: LinkMessage) -> Result<Option<Link>, NetlinkError> {
        match self.request("get link", get_without_counters(message), NLM_F_ACK) {
            Ok(answers) => Ok(answers.iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`Netlink::link_by_name`], but a missing link is an error.
    pub fn link(&mut self, name: &str) -> Result<Link, NetlinkError> {
        self.link_by_name(name)?
            .ok_or_else(|| NetlinkError::LinkNotFound(name.to_string()))
    }

    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let answers = self.request(
            "list links",
            get_without_counters(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })
            .collect())
    }

    fn set_link(&mut self, op: &'static str, message: LinkMessage) -> Result<(), NetlinkError> {
        self.request(op, RouteNetlinkMessage::SetLink(message), NLM_F_ACK)?;
        Ok(())
    }

    fn set_flag(&mut self, index: u32, flag: LinkFlags, on: bool) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.header.change_mask = flag;
        if on {
            message.header.flags = flag;
        }
        self.set_link("set link flags", message)
    }

    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        self.set_flag(index, LinkFlags::Up, up)
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<(), NetlinkError> {
        self.set_flag(index, LinkFlags::Promisc, on)
    }

    pub fn set_allmulti(&mut self, index: u32, on: bool) -> Result<(), NetlinkError> {
        self.set_flag(index, LinkFlags::Allmulti, on)
    }

    pub fn set_txqlen(&mut self, index: u32, len: u32) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.attributes.push(LinkAttribute::TxQueueLen(len));
        self.set_link("set txqueuelen", message)
    }

    /// Renames a link. The kernel refuses to rename a link that is up, so it is taken down
    /// for the rename and brought back up if it was.
    pub fn rename(&mut self, link: &Link, name: &str) -> Result<(), NetlinkError> {
        if link.up {
            self.set_link_up(link.index, false)?;
        }
        let mut message = by_index(link.index);
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.set_link("rename link", message)?;
        if link.up {
            self.set_link_up(link.index, true)?;
        }
        Ok(())
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link("set mtu", message)
    }

    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message
            .attributes
            .push(LinkAttribute::Address(mac.0.to_vec()));
        self.set_link("set mac", message)
    }

    /// Brings the link up and, with `arp_notify`, turns on its `arp_notify` (gratuitous ARP
    /// when it changes MAC), in one request. Through netlink rather than
    /// `/proc/sys/net/ipv4/conf/<name>/arp_notify`: the kernel keeps one sysctl dentry per
    /// namespace for a name like `eth0`, and a path lookup walks them all, so with 1000
    /// containers each open cost more than the whole request. Whether coming up announces
    /// too does not matter: a bridge port drops it anyway until it forwards, which is why
    /// the interface toolkit announces a new address once the path is open (`netlib::iface`).
    pub fn set_up_notifying(&mut self, index: u32, arp_notify: bool) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        if arp_notify {
            let mut conf = InetDevConf::default();
            conf.arp_notify = 1;
            message
                .attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                    AfSpecInet::DevConfRequest(conf),
                ])]));
        }
        self.set_link("set link up", message)
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message.attributes.push(LinkAttribute::Controller(master));
        self.set_link("set master", message)
    }

    /// Deletes a link; one that is already gone counts as deleted.
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        match self.request(
            "delete link",
            RouteNetlinkMessage::DelLink(by_index(index)),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

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

    /// Waits (at most `limit`) until the link is operationally up, i.e. until the kernel's
    /// linkwatch has processed its carrier; a bridge enables a port only then.
    pub fn wait_oper_up(
        &mut self,
        index: u32,
        limit: std::time::Duration,
    ) -> Result<bool, NetlinkError> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.link_by_index(index)?.is_some_and(|l| l.oper_up) {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
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

    /// Moves a link into `netns` (it loses its addresses on the way, as the kernel does),
    /// named `name` there, in the same request: a process killed between a move and a
    /// rename would leave the link in the other namespace under a name nobody looks for.
    pub fn move_to(&mut self, index: u32, netns: &Netns, name: &str) -> Result<(), NetlinkError> {
        let mut message = by_index(index);
        message
            .attributes
            .push(LinkAttribute::NetNsFd(netns.as_fd().as_raw_fd()));
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.set_link("move link", message)
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

    /// Labels a link (IFLA_IFALIAS), which is how its owner finds it again.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<(), NetlinkError> {
        let mut label = by_index(index);
        label
            .attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.set_link("set alias", label)
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

#[cfg(test)]
mod tests {
    use super::MacAddr;

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "0a:58:0A:01:02:03".parse().expect("valid");
        assert_eq!(mac.to_string(), "0a:58:0a:01:02:03");
        assert!("0a:58:0a:01:02".parse::<MacAddr>().is_err());
        assert!("0a:58:0a:01:02:03:04".parse::<MacAddr>().is_err());
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().is_err(), "multicast");
        assert!("zz:58:0a:01:02:03".parse::<MacAddr>().is_err());
    }
}
