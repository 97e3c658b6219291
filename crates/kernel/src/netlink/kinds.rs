//! Creating links, typed: a [`LinkBuilder`] holds what every link may be given (name, MTU,
//! MAC, namespace, controller, up) and its kind's own settings ([`Bridge`], [`Veth`] and its
//! [`Peer`], [`Vxlan`], [`MacVlan`], [`Ifb`]). What a link should be (a pinned MAC, learning
//! off, a port of which bridge) is the caller's choice; this module only says it to the
//! kernel. Bridges and VXLAN devices are shared by many attachments, so they are ensured
//! rather than created: reused when there, and the kernel's refusal of a twin tolerated.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoMacVlan, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::link::{by_index, get_without_counters, Link, MacAddr};
use super::{Netlink, NetlinkError};
use crate::netns::Netns;

/// A link to create: the settings every kind takes, then `kind`'s own (the shape of
/// rtnetlink's `LinkMessageBuilder`).
#[derive(Debug, Clone)]
pub struct LinkBuilder<'a, K> {
    name: String,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    netns: Option<BorrowedFd<'a>>,
    master: Option<u32>,
    up: bool,
    kind: K,
}

impl<'a, K> LinkBuilder<'a, K> {
    pub fn new(name: impl Into<String>, kind: K) -> Self {
        LinkBuilder {
            name: name.into(),
            mtu: None,
            mac: None,
            netns: None,
            master: None,
            up: false,
            kind,
        }
    }

    /// The MTU; none leaves the kernel's default for the kind.
    pub fn mtu(mut self, mtu: impl Into<Option<u32>>) -> Self {
        self.mtu = mtu.into();
        self
    }

    /// The MAC; none lets the kernel choose one.
    pub fn mac(mut self, mac: impl Into<Option<MacAddr>>) -> Self {
        self.mac = mac.into();
        self
    }

    /// The namespace the link is created in (none: the socket's own), so that its name only
    /// has to be free there and it never appears anywhere else.
    pub fn netns(mut self, netns: impl Into<Option<&'a Netns>>) -> Self {
        self.netns = netns.into().map(AsFd::as_fd);
        self
    }

    /// The bridge (or other controller) the link is a port of from the start.
    pub fn master(mut self, index: impl Into<Option<u32>>) -> Self {
        self.master = index.into();
        self
    }

    /// Up from the start.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings every kind takes, as a link message.
    fn common(&self) -> LinkMessage {
        let mut message = LinkMessage::default();
        let attributes = &mut message.attributes;
        attributes.push(LinkAttribute::IfName(self.name.clone()));
        if let Some(mtu) = self.mtu {
            attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = self.mac {
            attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(netns) = self.netns {
            attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        }
        if let Some(master) = self.master {
            attributes.push(LinkAttribute::Controller(master));
        }
        if self.up {
            message.header.flags = LinkFlags::Up;
            message.header.change_mask = LinkFlags::Up;
        }
        message
    }
}

impl<K: Kind> LinkBuilder<'_, K> {
    /// The creation request.
    fn message(&self) -> LinkMessage {
        let mut message = self.common();
        self.kind.encode(&mut message);
        message
    }
}

/// A kind of link ferrocni creates.
pub trait Kind {
    /// What a failed creation says it did.
    const CREATE: &'static str;
    /// The kind's attributes: its IFLA_LINKINFO, and what else it needs.
    fn encode(&self, message: &mut LinkMessage);
}

fn info(message: &mut LinkMessage, info: Vec<LinkInfo>) {
    message.attributes.push(LinkAttribute::LinkInfo(info));
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bridge {
    pub vlan_filtering: bool,
}

impl Bridge {
    fn info(self) -> Vec<LinkInfo> {
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if self.vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        info
    }
}

impl Kind for Bridge {
    const CREATE: &'static str = "create bridge";

    fn encode(&self, message: &mut LinkMessage) {
        info(message, self.info());
    }
}

/// A veth pair, created from its first end; the other end is `peer`.
#[derive(Debug, Clone)]
pub struct Veth<'a> {
    pub peer: LinkBuilder<'a, Peer>,
}

/// The other end of a veth pair: the settings every link takes, and no kind of its own.
#[derive(Debug, Clone, Copy)]
pub struct Peer;

impl Kind for Veth<'_> {
    const CREATE: &'static str = "create veth";

    fn encode(&self, message: &mut LinkMessage) {
        info(
            message,
            vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(self.peer.common()))),
            ],
        );
    }
}

/// A VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    /// UDP destination port (4789 is IANA's; the kernel's own default is Linux's old 8472).
    pub port: u16,
    /// The tunnel's source: the node's underlay address.
    pub local: IpAddr,
    /// The underlay link, if pinned.
    pub underlay: Option<u32>,
    /// Whether the device learns where a MAC lives from the frames it receives.
    pub learning: bool,
}

impl Kind for Vxlan {
    const CREATE: &'static str = "create vxlan";

    fn encode(&self, message: &mut LinkMessage) {
        let mut settings = vec![
            InfoVxlan::Id(self.vni),
            InfoVxlan::Port(self.port),
            InfoVxlan::Learning(self.learning),
            match self.local {
                IpAddr::V4(v4) => InfoVxlan::Local(v4),
                IpAddr::V6(v6) => InfoVxlan::Local6(v6),
            },
        ];
        if let Some(underlay) = self.underlay {
            settings.push(InfoVxlan::Link(underlay));
        }
        info(
            message,
            vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(settings)),
            ],
        );
    }
}

/// What makes a VXLAN device the one asked for; MTU and MAC can change in place.
#[derive(Debug, Default, PartialEq, Eq)]
struct VxlanIdentity {
    vni: u32,
    port: u16,
    local: Option<IpAddr>,
    underlay: Option<u32>,
}

impl VxlanIdentity {
    fn of(vxlan: &Vxlan) -> Self {
        VxlanIdentity {
            vni: vxlan.vni,
            port: vxlan.port,
            local: Some(vxlan.local),
            underlay: vxlan.underlay,
        }
    }
}

/// A macvlan on `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacVlan {
    pub parent: u32,
    pub mode: MacVlanMode,
}

impl Kind for MacVlan {
    const CREATE: &'static str = "create macvlan";

    fn encode(&self, message: &mut LinkMessage) {
        message.attributes.push(LinkAttribute::Link(self.parent));
        info(
            message,
            vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(self.mode)])),
            ],
        );
    }
}

/// An intermediate functional block, where redirected ingress traffic can be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ifb;

impl Kind for Ifb {
    const CREATE: &'static str = "create ifb";

    fn encode(&self, message: &mut LinkMessage) {
        info(message, vec![LinkInfo::Kind(InfoKind::Ifb)]);
    }
}

/// The kernel refuses bridge VLAN filtering when it was built without it.
fn no_vlan_filtering(e: NetlinkError) -> NetlinkError {
    if e.errno() == Some(libc::EOPNOTSUPP) {
        NetlinkError::KernelLacks("bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)")
    } else {
        e
    }
}

impl Netlink {
    /// Creates `link`; EEXIST when its name is taken.
    pub fn create<K: Kind>(&mut self, link: &LinkBuilder<'_, K>) -> Result<(), NetlinkError> {
        self.request(
            K::CREATE,
            RouteNetlinkMessage::NewLink(link.message()),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Creates `link` in this socket's namespace and returns it as the kernel made it. Kernels
    /// from 6.2 echo the new link back (NLM_F_ECHO), saving a lookup; older ones ignore the
    /// flag and get asked.
    pub fn create_and_get<K: Kind>(
        &mut self,
        link: &LinkBuilder<'_, K>,
    ) -> Result<Link, NetlinkError> {
        let answers = self.request(
            K::CREATE,
            RouteNetlinkMessage::NewLink(link.message()),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )?;
        let echoed = answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(new) => Some(Link::from_message(new)),
            _ => None,
        });
        match echoed {
            Some(created) if created.name == link.name => Ok(created),
            _ => self.link(&link.name),
        }
    }

    /// The bridge `bridge` names, created when missing (another plugin may be creating it
    /// at the same moment), with VLAN filtering when asked for, and up. An existing bridge
    /// keeps its MTU and MAC.
    pub fn ensure_bridge(
        &mut self,
        bridge: &LinkBuilder<'_, Bridge>,
    ) -> Result<Link, NetlinkError> {
        let name = bridge.name();
        // Look first: a lookup needs no RTNL lock, a refused creation holds it, and all but
        // the first ADD on a node find the bridge there.
        let found = match self.link_by_name(name)? {
            Some(existing) => existing,
            None => {
                match self.create_and_get(bridge) {
                    Ok(created) => created,
                    // Another plugin made it in between.
                    Err(e) if e.already_exists() => self.link(name)?,
                    Err(e) if bridge.kind.vlan_filtering => return Err(no_vlan_filtering(e)),
                    Err(e) => return Err(e),
                }
            }
        };
        if found.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongKind {
                name: name.to_string(),
                expected: "bridge",
            });
        }
        if bridge.kind.vlan_filtering {
            // An existing bridge keeps its settings unless told otherwise.
            let mut change = by_index(found.index);
            info(&mut change, bridge.kind.info());
            self.request(
                "enable vlan filtering",
                RouteNetlinkMessage::NewLink(change),
                NLM_F_ACK,
            )
            .map_err(no_vlan_filtering)?;
        }
        if !found.up {
            self.set_link_up(found.index, true)?;
        }
        Ok(found)
    }

    /// The VXLAN device `vxlan` names: the existing one when its identity (VNI, port, local
    /// address, underlay link) matches, else a new one in its place, as a node whose
    /// underlay address changed must not keep tunnelling from the old one. Then MTU and MAC
    /// as asked (they change in place), and up.
    pub fn ensure_vxlan(&mut self, vxlan: &LinkBuilder<'_, Vxlan>) -> Result<Link, NetlinkError> {
        let name = vxlan.name();
        if let Some(existing) = self.vxlan_identity(name)? {
            if existing == VxlanIdentity::of(&vxlan.kind) {
                return self.settle(vxlan);
            }
            let stale = self.link(name)?;
            self.delete_link(stale.index)?;
        }
        self.create(vxlan)?;
        self.settle(vxlan)
    }

    /// Sets what `link` asks for of MTU, MAC and state where the existing link differs.
    fn settle<K>(&mut self, link: &LinkBuilder<'_, K>) -> Result<Link, NetlinkError> {
        let found = self.link(&link.name)?;
        if let Some(mtu) = link.mtu.filter(|mtu| *mtu != found.mtu) {
            self.set_mtu(found.index, mtu)?;
        }
        if let Some(mac) = link.mac.filter(|mac| found.mac != Some(*mac)) {
            self.set_mac(found.index, mac)?;
        }
        if !found.up {
            self.set_link_up(found.index, true)?;
        }
        self.link(&link.name)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::exchange::Raw;
    use crate::netlink::fake::{Fake, Reply, Sent};
    use netlink_packet_core::NLM_F_REQUEST;

    const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    const MAC: MacAddr = MacAddr([0x0a, 0x58, 0, 0, 0, 1]);

    fn decoded(sent: &Sent) -> RouteNetlinkMessage {
        sent.message.decode().expect("a routing message")
    }

    /// What the kernel says of a link `kind` named `name`.
    fn described(index: u32, name: &str, kind: InfoKind, up: bool) -> Raw {
        let mut message = by_index(index);
        if up {
            message.header.flags = LinkFlags::Up;
        }
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]),
        ];
        Raw::of(&RouteNetlinkMessage::NewLink(message))
    }

    fn created(sent: &Sent) -> LinkMessage {
        match decoded(sent) {
            RouteNetlinkMessage::NewLink(message) => message,
            other => panic!("not a creation: {other:?}"),
        }
    }

    fn lookup(name: &str) -> RouteNetlinkMessage {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        get_without_counters(message)
    }

    #[test]
    fn a_veth_pair_is_one_request_naming_both_ends_and_the_peers_namespace() {
        let netns = Netns::current().expect("the own namespace");
        let fake = Fake::new();
        fake.then(Reply::Answer(vec![described(
            7,
            "veth1",
            InfoKind::Veth,
            true,
        )]));
        let mut netlink = Netlink::over(fake.clone());
        let peer = LinkBuilder::new("eth0", Peer)
            .netns(&netns)
            .mtu(1400)
            .mac(MAC);
        let pair = LinkBuilder::new("veth1", Veth { peer })
            .mtu(1400)
            .master(3)
            .up();
        let host = netlink.create_and_get(&pair).expect("created");
        assert_eq!((host.index, host.name.as_str()), (7, "veth1"));

        let sent = fake.requests();
        assert_eq!(sent.len(), 1, "the echo saves the lookup");
        assert_eq!(sent[0].flags, CREATE | NLM_F_ECHO);
        let message = created(&sent[0]);
        assert_eq!(message.header.flags, LinkFlags::Up);
        assert_eq!(message.header.change_mask, LinkFlags::Up);
        let mut container = LinkMessage::default();
        container.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Address(MAC.0.to_vec()),
            LinkAttribute::NetNsFd(netns.as_fd().as_raw_fd()),
        ];
        assert_eq!(
            message.attributes,
            [
                LinkAttribute::IfName("veth1".into()),
                LinkAttribute::Mtu(1400),
                LinkAttribute::Controller(3),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(container))),
                ]),
            ]
        );
    }

    #[test]
    fn a_kernel_that_echoes_nothing_is_asked_for_the_new_link() {
        let fake = Fake::new();
        fake.then(Reply::Ack).then(Reply::Answer(vec![described(
            9,
            "ifb0",
            InfoKind::Ifb,
            false,
        )]));
        let mut netlink = Netlink::over(fake.clone());
        let ifb = netlink
            .create_and_get(&LinkBuilder::new("ifb0", Ifb).mtu(1500))
            .expect("created");
        assert_eq!(ifb.index, 9);
        let sent = fake.requests();
        assert_eq!(
            created(&sent[0]).attributes,
            [
                LinkAttribute::IfName("ifb0".into()),
                LinkAttribute::Mtu(1500),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]),
            ]
        );
        assert_eq!(decoded(&sent[1]), lookup("ifb0"));
    }

    #[test]
    fn a_macvlan_is_made_inside_the_namespace_it_is_for() {
        let netns = Netns::current().expect("the own namespace");
        let fake = Fake::new();
        fake.then(Reply::Ack).then(Reply::Refuse {
            errno: libc::EEXIST,
            message: None,
        });
        let mut netlink = Netlink::over(fake.clone());
        let macvlan = LinkBuilder::new(
            "eth0",
            MacVlan {
                parent: 2,
                mode: MacVlanMode::Bridge,
            },
        )
        .netns(&netns);
        netlink.create(&macvlan).expect("created");
        let taken = netlink.create(&macvlan).expect_err("taken");
        assert_eq!(taken.to_string(), "netlink create macvlan failed");
        assert!(taken.already_exists());
        let sent = fake.requests();
        assert_eq!(sent[0].flags, CREATE);
        assert_eq!(
            created(&sent[0]).attributes,
            [
                LinkAttribute::IfName("eth0".into()),
                LinkAttribute::NetNsFd(netns.as_fd().as_raw_fd()),
                LinkAttribute::Link(2),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::MacVlan),
                    LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                        MacVlanMode::Bridge
                    )])),
                ]),
            ]
        );
    }

    #[test]
    fn a_missing_bridge_is_created_as_asked_then_brought_up() {
        let fake = Fake::new();
        fake.then(Reply::Refuse {
            errno: libc::ENODEV,
            message: None,
        })
        .then(Reply::Answer(vec![described(
            4,
            "br0",
            InfoKind::Bridge,
            false,
        )]))
        .then(Reply::Ack)
        .then(Reply::Ack);
        let mut netlink = Netlink::over(fake.clone());
        let bridge = LinkBuilder::new(
            "br0",
            Bridge {
                vlan_filtering: true,
            },
        )
        .mtu(9000)
        .mac(MAC);
        assert_eq!(netlink.ensure_bridge(&bridge).expect("ensured").index, 4);
        let sent = fake.requests();
        assert_eq!(decoded(&sent[0]), lookup("br0"));
        let vlan_filtering = LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)])),
        ]);
        assert_eq!(
            created(&sent[1]).attributes,
            [
                LinkAttribute::IfName("br0".into()),
                LinkAttribute::Mtu(9000),
                LinkAttribute::Address(MAC.0.to_vec()),
                vlan_filtering.clone(),
            ]
        );
        let change = created(&sent[2]);
        assert_eq!(
            (change.header.index, change.attributes),
            (4, vec![vlan_filtering])
        );
        let RouteNetlinkMessage::SetLink(up) = decoded(&sent[3]) else {
            panic!("brought up last");
        };
        assert_eq!((up.header.index, up.header.flags), (4, LinkFlags::Up));
        assert!(fake.finished());
    }

    #[test]
    fn an_existing_bridge_is_used_as_it_is_and_another_kind_refused() {
        let fake = Fake::new();
        fake.then(Reply::Answer(vec![described(
            4,
            "br0",
            InfoKind::Bridge,
            true,
        )]))
        .then(Reply::Answer(vec![described(
            5,
            "br1",
            InfoKind::Dummy,
            true,
        )]));
        let mut netlink = Netlink::over(fake.clone());
        let bridge = |name: &str| LinkBuilder::new(name, Bridge::default()).mac(MAC);
        netlink.ensure_bridge(&bridge("br0")).expect("found");
        assert_eq!(fake.requests().len(), 1, "nothing to create or change");
        let refused = netlink.ensure_bridge(&bridge("br1")).expect_err("a dummy");
        assert_eq!(
            refused.to_string(),
            "\"br1\" already exists and is not a bridge"
        );
    }

    #[test]
    fn a_bridge_another_plugin_made_first_is_taken_and_a_kernel_without_vlans_named() {
        let fake = Fake::new();
        let enodev = || Reply::Refuse {
            errno: libc::ENODEV,
            message: None,
        };
        fake.then(enodev())
            .then(Reply::Refuse {
                errno: libc::EEXIST,
                message: None,
            })
            .then(Reply::Answer(vec![described(
                4,
                "br0",
                InfoKind::Bridge,
                true,
            )]))
            .then(enodev())
            .then(Reply::Refuse {
                errno: libc::EOPNOTSUPP,
                message: None,
            });
        let mut netlink = Netlink::over(fake);
        let plain = LinkBuilder::new("br0", Bridge::default());
        assert_eq!(netlink.ensure_bridge(&plain).expect("raced").index, 4);
        let vlans = LinkBuilder::new(
            "br0",
            Bridge {
                vlan_filtering: true,
            },
        );
        let lacking = netlink.ensure_bridge(&vlans).expect_err("no VLAN support");
        assert!(matches!(lacking, NetlinkError::KernelLacks(_)), "{lacking}");
    }

    fn vxlan(local: &str, learning: bool) -> Vxlan {
        Vxlan {
            vni: 42,
            port: 4789,
            local: local.parse().expect("an address"),
            underlay: Some(2),
            learning,
        }
    }

    /// What the kernel says of the VXLAN device `vxlan0` with `settings`.
    fn vxlan_described(settings: Vxlan, mtu: u32, mac: MacAddr) -> Raw {
        let mut message = by_index(6);
        message.header.flags = LinkFlags::Up;
        let mut encoded = LinkMessage::default();
        settings.encode(&mut encoded);
        message.attributes = vec![
            LinkAttribute::IfName("vxlan0".into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(mac.0.to_vec()),
        ];
        message.attributes.extend(encoded.attributes);
        Raw::of(&RouteNetlinkMessage::NewLink(message))
    }

    #[test]
    fn a_vxlan_device_is_created_with_learning_as_asked() {
        for learning in [false, true] {
            let fake = Fake::new();
            let settings = vxlan("192.0.2.1", learning);
            fake.then(Reply::Refuse {
                errno: libc::ENODEV,
                message: None,
            })
            .then(Reply::Ack)
            .then(Reply::Answer(vec![vxlan_described(settings, 1450, MAC)]))
            .then(Reply::Answer(vec![vxlan_described(settings, 1450, MAC)]));
            let mut netlink = Netlink::over(fake.clone());
            let device = LinkBuilder::new("vxlan0", settings).mtu(1450).mac(MAC);
            assert_eq!(netlink.ensure_vxlan(&device).expect("made").index, 6);
            let sent = fake.requests();
            assert_eq!(sent.len(), 4, "nothing to settle: {sent:?}");
            assert_eq!(
                created(&sent[1]).attributes,
                [
                    LinkAttribute::IfName("vxlan0".into()),
                    LinkAttribute::Mtu(1450),
                    LinkAttribute::Address(MAC.0.to_vec()),
                    LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::Vxlan),
                        LinkInfo::Data(InfoData::Vxlan(vec![
                            InfoVxlan::Id(42),
                            InfoVxlan::Port(4789),
                            InfoVxlan::Learning(learning),
                            InfoVxlan::Local("192.0.2.1".parse().expect("an address")),
                            InfoVxlan::Link(2),
                        ])),
                    ]),
                ]
            );
        }
    }

    #[test]
    fn a_vxlan_device_of_another_identity_is_replaced_and_one_of_the_same_settled() {
        let fake = Fake::new();
        let moved = vxlan("192.0.2.1", false);
        fake.then(Reply::Answer(vec![vxlan_described(
            vxlan("192.0.2.9", false),
            1450,
            MAC,
        )]))
        .then(Reply::Answer(vec![described(
            6,
            "vxlan0",
            InfoKind::Vxlan,
            true,
        )]))
        .then(Reply::Ack)
        .then(Reply::Ack)
        .then(Reply::Answer(vec![vxlan_described(moved, 1450, MAC)]))
        .then(Reply::Answer(vec![vxlan_described(moved, 1450, MAC)]));
        let mut netlink = Netlink::over(fake.clone());
        let device = LinkBuilder::new("vxlan0", moved).mtu(1450).mac(MAC);
        netlink.ensure_vxlan(&device).expect("replaced");
        let sent = fake.requests();
        assert!(matches!(decoded(&sent[2]), RouteNetlinkMessage::DelLink(_)));
        assert!(matches!(decoded(&sent[3]), RouteNetlinkMessage::NewLink(_)));
        assert!(fake.finished());

        // Same identity, other MTU and MAC (learning is no part of it): changed in place.
        let other_mac = MacAddr([0x0a, 0x58, 0, 0, 0, 2]);
        fake.then(Reply::Answer(vec![vxlan_described(
            vxlan("192.0.2.1", true),
            1500,
            other_mac,
        )]))
        .then(Reply::Answer(vec![vxlan_described(moved, 1500, other_mac)]))
        .then(Reply::Ack)
        .then(Reply::Ack)
        .then(Reply::Answer(vec![vxlan_described(moved, 1450, MAC)]));
        netlink.ensure_vxlan(&device).expect("settled");
        let settled: Vec<RouteNetlinkMessage> = fake.requests()[6..].iter().map(decoded).collect();
        let set = |attribute| {
            let mut message = by_index(6);
            message.attributes.push(attribute);
            RouteNetlinkMessage::SetLink(message)
        };
        assert_eq!(settled[2], set(LinkAttribute::Mtu(1450)));
        assert_eq!(settled[3], set(LinkAttribute::Address(MAC.0.to_vec())));
        assert!(fake.finished());
    }
}
