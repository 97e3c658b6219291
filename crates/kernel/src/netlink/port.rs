//! A bridge port's settings: hairpin, isolation and VLANs.

use netlink_packet_core::NLM_F_ACK;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridgePort, InfoPortData, InfoPortKind,
    LinkAttribute, LinkInfo,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::link::by_index;
use super::{Netlink, NetlinkError};

impl Netlink {
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
