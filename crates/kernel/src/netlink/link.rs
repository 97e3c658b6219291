//! Links: what the plugins know of one (`Link`, `MacAddr`), lookup and listing, state and
//! settings, moving and deleting. Creating each kind of link is `kinds`'s.

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
pub use netlink_packet_route::link::MacVlanMode;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo,
    LinkLayerType, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;
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
    pub(super) fn from_message(msg: &LinkMessage) -> Self {
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

pub(super) fn by_index(index: u32) -> LinkMessage {
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
pub(super) fn get_without_counters(mut message: LinkMessage) -> RouteNetlinkMessage {
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

    pub(super) fn set_link(
        &mut self,
        op: &'static str,
        message: LinkMessage,
    ) -> Result<(), NetlinkError> {
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

    /// Labels a link (IFLA_IFALIAS), which is how its owner finds it again.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<(), NetlinkError> {
        let mut label = by_index(index);
        label
            .attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.set_link("set alias", label)
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
