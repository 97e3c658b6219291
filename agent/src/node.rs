//! The node's side of the overlay in its kernel: the VXLAN device, the node bridge with the
//! subnet's gateway, the file the `vxlan` plugin reads, and reconciliation of the entries for
//! the other nodes. All of it through the kernel layer and netlib.

use ipnetwork::{IpNetwork, Ipv4Network};
use std::net::IpAddr;
use std::path::PathBuf;

use kernel::netlink::{Bridge, LinkBuilder, MacAddr, Netlink, Vxlan};
use netlib::bridge;
use overlay::{self, ClusterConfig, NodeFile, NodeLease, Peer, Programmed};

use crate::AgentError;

type Result<T> = std::result::Result<T, AgentError>;

use crate::store::Leases;
use tracing::{debug, warn};

/// Where the tunnels leave from.
#[derive(Debug, Clone, Copy)]
pub struct Underlay {
    pub ip: IpAddr,
    pub index: u32,
    pub mtu: u32,
}

impl Underlay {
    /// The given address (and the link holding it), else the given link's first address
    /// (IPv4 first), else the default route's link's.
    pub fn find(
        netlink: &mut Netlink,
        interface: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Underlay> {
        let not_found = |what: String| AgentError::Node(format!("underlay: {what}"));
        if let Some(ip) = ip {
            for link in netlink.links()? {
                if netlink.addresses(link.index)?.iter().any(|a| a.ip() == ip) {
                    return Ok(Underlay {
                        ip,
                        index: link.index,
                        mtu: link.mtu,
                    });
                }
            }
            return Err(not_found(format!("no link has address {ip}")));
        }
        let link = match interface {
            Some(name) => netlink.link(name)?,
            None => {
                let index = netlink.default_route_link()?.ok_or_else(|| {
                    not_found("no default route; give --underlay-interface".into())
                })?;
                netlink
                    .link_by_index(index)?
                    .ok_or_else(|| not_found(format!("link {index} vanished")))?
            }
        };
        let mut addresses = netlink.addresses(link.index)?;
        addresses.retain(|a| !a.ip().is_loopback() && !is_link_local(a.ip()));
        addresses.sort_by_key(|a| !a.is_ipv4());
        let ip = addresses
            .first()
            .map(IpNetwork::ip)
            .ok_or_else(|| not_found(format!("{} has no usable address", link.name)))?;
        Ok(Underlay {
            ip,
            index: link.index,
            mtu: link.mtu,
        })
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// What one reconciliation did.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    pub changed: usize,
    pub failed: usize,
    /// Remote nodes routed to, as desired.
    pub peers: usize,
}

/// What the node is told at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub bridge: String,
    pub vxlan_device: String,
    pub node_file: PathBuf,
}

/// The node's overlay in its kernel, once set up for a subnet.
pub struct NodeKernel {
    netlink: Netlink,
    node: String,
    vxlan: u32,
    pub subnet: Ipv4Network,
    pub config: ClusterConfig,
}

impl NodeKernel {
    /// Creates (or adopts) the VXLAN device and the node bridge with `subnet`'s gateway, and
    /// writes the node file: from then on the `vxlan` plugin can attach containers.
    pub fn set_up(
        settings: &Settings,
        config: &ClusterConfig,
        subnet: Ipv4Network,
        underlay: &Underlay,
    ) -> Result<NodeKernel> {
        let mut netlink = Netlink::open()?;
        let mtu = overlay::overlay_mtu(underlay.mtu, underlay.ip);
        let vxlan = netlink.ensure_vxlan(
            &LinkBuilder::new(
                &settings.vxlan_device,
                Vxlan {
                    vni: config.vni,
                    port: config.port,
                    local: underlay.ip,
                    underlay: Some(underlay.index),
                    // Peers are programmed from the store; learning would let forged frames in.
                    learning: false,
                },
            )
            .mtu(mtu)
            .mac(overlay::node_mac(&settings.node)),
        )?;
        // A MAC given at creation keeps the gateway's MAC as ports come and go (see the
        // bridge plugin, which makes the same bridge when it comes first).
        let node_bridge = netlink.ensure_bridge(
            &LinkBuilder::new(&settings.bridge, Bridge::default())
                .mtu(mtu)
                .mac(MacAddr::random()),
        )?;
        let gateway = IpNetwork::new(
            ipam::range::default_gateway(&IpNetwork::V4(subnet)),
            subnet.prefix(),
        )
        .map_err(|e| AgentError::Node(format!("gateway of {subnet}: {e}")))?;
        // A node that had to take a new subnet replaces the old gateway.
        bridge::ensure_gateway_address(
            &mut netlink,
            node_bridge.index,
            &node_bridge.name,
            gateway,
            true,
        )?;
        bridge::enable_forwarding(&[gateway])?;
        NodeFile {
            network: config.network,
            subnet,
            mtu,
            bridge: settings.bridge.clone(),
        }
        .save(&settings.node_file)?;
        Ok(NodeKernel {
            netlink,
            node: settings.node.clone(),
            vxlan: vxlan.index,
            subnet,
            config: config.clone(),
        })
    }

    /// Brings the kernel's entries in line with `leases` (every node but this one). Failures
    /// of single entries are logged and retried on the next pass.
    pub fn reconcile(&mut self, leases: &Leases) -> Result<Pass> {
        if self.netlink.link_by_index(self.vxlan)?.is_none() {
            return Err(AgentError::Node(
                "the VXLAN device is gone; setting the node up again".to_string(),
            ));
        }
        let peers: Vec<Peer> = leases
            .iter()
            .filter(|(subnet, lease)| lease.node != self.node && **subnet != self.subnet)
            .filter(|(subnet, _)| self.config.owns(**subnet))
            .map(|(subnet, lease): (&Ipv4Network, &NodeLease)| Peer {
                subnet: *subnet,
                lease: lease.clone(),
            })
            .collect();
        let desired = Programmed::desired(&peers);
        let actual = overlay::programmed(&mut self.netlink, self.vxlan)?;
        let operations = overlay::plan(&desired, &actual);
        for operation in &operations {
            debug!("{operation:?}");
        }
        let failures = overlay::apply(&mut self.netlink, self.vxlan, &operations);
        for (operation, error) in &failures {
            warn!("{operation:?} failed: {}", cni::error::causes(error));
        }
        Ok(Pass {
            changed: operations.len() - failures.len(),
            failed: failures.len(),
            peers: desired.routes.len(),
        })
    }
}
