//! The node's side of the overlay: the tunnel device (VXLAN, or WireGuard), the node bridge
//! with the subnet's gateway, the file the `vxlan` plugin reads, and reconciliation of the
//! entries for the other nodes. All of it through the kernel layer and netlib.

use ipnetwork::{IpNetwork, Ipv4Network};
use std::net::IpAddr;
use std::path::PathBuf;

use kernel::netlink::{Bridge, LinkBuilder, MacAddr, Netlink, Vxlan};
use netlib::bridge;
use overlay::wireguard::{self, Tunnels};
use overlay::{self, Backend, ClusterConfig, NodeFile, NodeLease, Peer, Programmed};

use crate::wg::key::PrivateKey;
use crate::wg::userspace::Userspace;
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
    pub wireguard_device: String,
    pub node_file: PathBuf,
}

/// The device pod traffic to other nodes goes through.
enum Tunnel {
    /// The VXLAN device's index.
    Vxlan(u32),
    WireGuard {
        device: Userspace,
        /// The node's pod gateway: the source of the node's own packets to remote pods.
        source: IpAddr,
    },
}

/// The node's overlay in its kernel, once set up for a subnet.
pub struct NodeKernel {
    netlink: Netlink,
    node: String,
    tunnel: Tunnel,
    pub subnet: Ipv4Network,
    pub config: ClusterConfig,
}

impl NodeKernel {
    /// Creates (or adopts) the tunnel device and the node bridge with `subnet`'s gateway,
    /// and writes the node file: from then on the `vxlan` plugin can attach containers.
    /// `key` is the node's WireGuard key, which the WireGuard backend needs.
    pub fn set_up(
        settings: &Settings,
        config: &ClusterConfig,
        subnet: Ipv4Network,
        underlay: &Underlay,
        key: Option<&PrivateKey>,
    ) -> Result<NodeKernel> {
        let mut netlink = Netlink::open()?;
        let mtu = config.backend.mtu(underlay.mtu, underlay.ip);
        let gateway = IpNetwork::new(
            ipam::range::default_gateway(&IpNetwork::V4(subnet)),
            subnet.prefix(),
        )
        .map_err(|e| AgentError::Node(format!("gateway of {subnet}: {e}")))?;
        let tunnel = match (config.backend, key) {
            (Backend::Vxlan, _) => {
                let vxlan = netlink.ensure_vxlan(
                    &LinkBuilder::new(
                        &settings.vxlan_device,
                        Vxlan {
                            vni: config.vni,
                            port: config.port,
                            local: underlay.ip,
                            underlay: Some(underlay.index),
                            // Peers are programmed from the store; learning would let forged
                            // frames in.
                            learning: false,
                        },
                    )
                    .mtu(mtu)
                    .mac(overlay::node_mac(&settings.node)),
                )?;
                Tunnel::Vxlan(vxlan.index)
            }
            (Backend::WireGuard, Some(key)) => Tunnel::WireGuard {
                device: Userspace::start(
                    &mut netlink,
                    &settings.wireguard_device,
                    mtu,
                    key,
                    config.port,
                )?,
                source: gateway.ip(),
            },
            (Backend::WireGuard, None) => {
                return Err(AgentError::Node(
                    "the WireGuard backend needs the node's key".to_string(),
                ))
            }
        };
        // A MAC given at creation keeps the gateway's MAC as ports come and go (see the
        // bridge plugin, which makes the same bridge when it comes first).
        let node_bridge = netlink.ensure_bridge(
            &LinkBuilder::new(&settings.bridge, Bridge::default())
                .mtu(mtu)
                .mac(MacAddr::random()),
        )?;
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
            tunnel,
            subnet,
            config: config.clone(),
        })
    }

    /// The userspace WireGuard device, if this node runs one.
    pub fn wireguard(&self) -> Option<&Userspace> {
        match &self.tunnel {
            Tunnel::WireGuard { device, .. } => Some(device),
            Tunnel::Vxlan(_) => None,
        }
    }

    /// Brings the kernel's entries in line with `leases` (every node but this one). Failures
    /// of single entries are logged and retried on the next pass.
    pub fn reconcile(&mut self, leases: &Leases) -> Result<Pass> {
        let index = match &self.tunnel {
            Tunnel::Vxlan(index) => *index,
            Tunnel::WireGuard { device, .. } => device.index,
        };
        if self.netlink.link_by_index(index)?.is_none() {
            return Err(AgentError::Node(
                "the tunnel device is gone; setting the node up again".to_string(),
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
        match &mut self.tunnel {
            Tunnel::Vxlan(vxlan) => {
                let desired = Programmed::desired(&peers);
                let actual = overlay::programmed(&mut self.netlink, *vxlan)?;
                let operations = overlay::plan(&desired, &actual);
                let failures = overlay::apply(&mut self.netlink, *vxlan, &operations);
                Ok(pass(&operations, &failures, desired.routes.len()))
            }
            Tunnel::WireGuard { device, source } => {
                let desired = Tunnels::desired(&peers, self.config.port);
                let actual = wireguard::programmed(&mut self.netlink, index, device)?;
                let operations = wireguard::plan(&desired, &actual);
                let failures =
                    wireguard::apply(&mut self.netlink, index, *source, device, &operations);
                for operation in &operations {
                    if let wireguard::Operation::AddPeer(peer) = operation {
                        crate::wg::greet(peer);
                    }
                }
                Ok(pass(&operations, &failures, desired.routes.len()))
            }
        }
    }
}

/// Logs a reconciliation's operations (debug) and failures (warnings), and counts them.
fn pass<O: std::fmt::Debug, E: std::error::Error>(
    operations: &[O],
    failures: &[(O, E)],
    peers: usize,
) -> Pass {
    for operation in operations {
        debug!("{operation:?}");
    }
    for (operation, error) in failures {
        warn!("{operation:?} failed: {}", cni::error::causes(error));
    }
    Pass {
        changed: operations.len() - failures.len(),
        failed: failures.len(),
        peers,
    }
}
