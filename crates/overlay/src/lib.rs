//! The overlay's shared model: the cluster network and its backend, what a node publishes in
//! its subnet lease, the file the node agent leaves for the `vxlan` plugin, and
//! reconciliation — a pure function from the peers a node should reach and what its kernel
//! holds to the operations that close the gap — plus applying those operations through
//! netlink. This module is the VXLAN backend's; [`wireguard`] is the WireGuard backend's.
//!
//! Each remote node costs three kernel entries on the local VXLAN device, as in flannel:
//! a route to its subnet via the subnet's first address (`onlink`), a permanent neighbour
//! entry giving that address the node's VTEP MAC, and a forwarding entry sending that MAC to
//! the node's underlay address. No ARP or multicast crosses the underlay.

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use cni::Result;
use kernel::netlink::{FdbEntry, MacAddr, Neighbour, Netlink, NetlinkError, RouteSpec};
use netlib::state::StateError;

pub mod wireguard;

pub use wireguard::PublicKey;

/// IANA's VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// WireGuard's customary port.
pub const DEFAULT_WIREGUARD_PORT: u16 = 51820;
/// Where the agent leaves the node's lease for the plugin unless told otherwise.
pub const DEFAULT_NODE_FILE: &str = "/run/ferrocni/vxlan.json";

/// How pod traffic crosses the underlay: the cluster's choice, the same on every node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// In clear VXLAN, as flannel's `vxlan` backend.
    #[default]
    Vxlan,
    /// Encrypted, over WireGuard (L3: one interface, a peer per node).
    WireGuard,
}

impl Backend {
    /// The names the config uses.
    const NAMES: [(&'static str, Backend); 2] =
        [("vxlan", Backend::Vxlan), ("wireguard", Backend::WireGuard)];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, backend)| *backend == self)
            .map_or("vxlan", |(name, _)| name)
    }

    /// The UDP port the backend listens on unless the config says otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Backend::Vxlan => DEFAULT_PORT,
            Backend::WireGuard => DEFAULT_WIREGUARD_PORT,
        }
    }

    /// The MTU inside the overlay: the underlay's less what the encapsulation adds, so the
    /// outer packets stay unfragmented. VXLAN adds 50 bytes over IPv4 (outer IP 20, UDP 8,
    /// VXLAN 8, inner Ethernet 14) and 70 over IPv6; WireGuard 60 (outer IP 20, UDP 8, its
    /// header 16, the authentication tag 16) and 80.
    pub fn mtu(self, underlay_mtu: u32, underlay: IpAddr) -> u32 {
        let overhead = match self {
            Backend::Vxlan => 50,
            Backend::WireGuard => 60,
        };
        underlay_mtu.saturating_sub(if underlay.is_ipv4() {
            overhead
        } else {
            overhead + 20
        })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Backend, String> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, backend)| *backend)
            .ok_or_else(|| format!("backend {text:?} is none of \"vxlan\", \"wireguard\""))
    }
}

impl Serialize for Backend {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Backend, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The cluster-wide network: every node agrees on it (it lives in the store, or in each
/// node's file in static mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "ClusterText")]
pub struct ClusterConfig {
    /// The cluster CIDR that node subnets are carved from.
    pub network: Ipv4Network,
    /// Prefix length of each node's subnet.
    pub subnet_len: u8,
    /// VXLAN's network identifier (unused by WireGuard).
    pub vni: u32,
    /// The backend's UDP port on every node.
    pub port: u16,
    pub backend: Backend,
}

/// The cluster config as written: the port's default depends on the backend.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterText {
    network: Ipv4Network,
    #[serde(default = "default_subnet_len")]
    subnet_len: u8,
    #[serde(default = "default_vni")]
    vni: u32,
    port: Option<u16>,
    #[serde(default)]
    backend: Backend,
}

impl From<ClusterText> for ClusterConfig {
    fn from(text: ClusterText) -> ClusterConfig {
        ClusterConfig {
            network: text.network,
            subnet_len: text.subnet_len,
            vni: text.vni,
            port: text.port.unwrap_or(text.backend.default_port()),
            backend: text.backend,
        }
    }
}

fn default_subnet_len() -> u8 {
    24
}
fn default_vni() -> u32 {
    1
}

impl ClusterConfig {
    /// Refuses a config no node could work with, naming the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.subnet_len < self.network.prefix() || self.subnet_len > 30 {
            return Err(format!(
                "subnetLen {} must be between the network's prefix ({}) and 30",
                self.subnet_len,
                self.network.prefix()
            ));
        }
        if self.vni == 0 || self.vni >= 1 << 24 {
            return Err(format!("vni {} must be between 1 and 16777215", self.vni));
        }
        if self.port == 0 {
            return Err("port must not be 0".to_string());
        }
        Ok(())
    }

    /// Whether `subnet` is one this network hands out.
    pub fn owns(&self, subnet: Ipv4Network) -> bool {
        subnet.prefix() == self.subnet_len && self.network.contains(subnet.network())
    }

    /// The first subnet of this network not in `taken`, `preferred` first when it is free.
    pub fn free_subnet(
        &self,
        taken: &BTreeSet<Ipv4Network>,
        preferred: Option<Ipv4Network>,
    ) -> Option<Ipv4Network> {
        if let Some(subnet) = preferred.filter(|s| self.owns(*s) && !taken.contains(s)) {
            return Some(subnet);
        }
        let count = 1u64 << (self.subnet_len - self.network.prefix());
        let step = 1u64 << (32 - u32::from(self.subnet_len));
        let base = u64::from(u32::from(self.network.network()));
        (0..count)
            .filter_map(|i| u32::try_from(base + i * step).ok())
            .filter_map(|start| Ipv4Network::new(start.into(), self.subnet_len).ok())
            .find(|subnet| !taken.contains(subnet))
    }
}

/// What a node publishes under its subnet's key: how to reach its VTEP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeLease {
    pub node: String,
    /// The node's underlay address.
    pub vtep: IpAddr,
    /// The MAC of the node's VXLAN device.
    #[serde(with = "mac_text")]
    pub mac: MacAddr,
    /// The node's WireGuard public key (WireGuard backend only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKey>,
}

/// A MAC as its text (`02:00:5e:00:53:01`) in serde: `#[serde(with = "mac_text")]`.
pub mod mac_text {
    use super::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &MacAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(mac)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A remote node as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub subnet: Ipv4Network,
    pub lease: NodeLease,
}

/// The VTEP MAC of `node`: derived from its name, so a rebooted node comes back with the
/// same MAC and the entries other nodes hold for it stay right. Locally administered unicast.
pub fn node_mac(node: &str) -> MacAddr {
    let digest = Sha256::digest(format!("ferrocni vtep {node}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    MacAddr(mac)
}

/// The address a node's subnet is routed via on the other nodes: the subnet's first
/// address, which no container gets (the bridge gateway is the second).
pub fn tunnel_gateway(subnet: Ipv4Network) -> IpAddr {
    IpAddr::V4(subnet.network())
}

/// What the agent leaves under `/run` for the `vxlan` plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFile {
    /// The cluster CIDR: traffic to it is not masqueraded.
    pub network: Ipv4Network,
    /// This node's subnet, which containers take addresses from.
    pub subnet: Ipv4Network,
    /// MTU for container interfaces: the underlay's less the backend's overhead.
    pub mtu: u32,
    /// The node bridge containers attach to.
    pub bridge: String,
}

impl NodeFile {
    /// The file, or `None` while the agent has not written it (no lease yet).
    pub fn load(path: &Path) -> Result<Option<NodeFile>> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io(e.into()).into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e).into()),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(netlib::state::write_json(path, self)?)
    }
}

/// The overlay entries a node's kernel holds on its VXLAN device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programmed {
    pub neighbours: BTreeSet<Neighbour>,
    pub forwarding: BTreeSet<FdbEntry>,
    /// Route destination → gateway.
    pub routes: BTreeMap<Ipv4Network, IpAddr>,
}

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    DeleteRoute { subnet: Ipv4Network, via: IpAddr },
    DeleteNeighbour(Neighbour),
    DeleteForwarding(FdbEntry),
    SetForwarding(FdbEntry),
    SetNeighbour(Neighbour),
    AddRoute { subnet: Ipv4Network, via: IpAddr },
}

impl Programmed {
    /// What `peers` require. When two peers claim one subnet or one MAC (a store gone wrong),
    /// the first in order wins, so every node resolves the conflict the same way.
    pub fn desired(peers: &[Peer]) -> Programmed {
        let mut sorted: Vec<&Peer> = peers.iter().collect();
        sorted.sort();
        let mut desired = Programmed::default();
        let mut macs = BTreeSet::new();
        for peer in sorted {
            let via = tunnel_gateway(peer.subnet);
            if desired.routes.contains_key(&peer.subnet) || !macs.insert(peer.lease.mac) {
                continue;
            }
            desired.routes.insert(peer.subnet, via);
            desired.neighbours.insert(Neighbour {
                ip: via,
                mac: peer.lease.mac,
            });
            desired.forwarding.insert(FdbEntry {
                mac: peer.lease.mac,
                remote: peer.lease.vtep,
            });
        }
        desired
    }
}

/// The operations that turn `actual` into `desired`: removals first (routes before the
/// entries they use), then additions (forwarding and neighbour before the route that needs
/// them), so no packet is sent through a half-programmed path.
pub fn plan(desired: &Programmed, actual: &Programmed) -> Vec<Operation> {
    let mut operations = Vec::new();
    for (subnet, via) in &actual.routes {
        if desired.routes.get(subnet) != Some(via) {
            operations.push(Operation::DeleteRoute {
                subnet: *subnet,
                via: *via,
            });
        }
    }
    let desired_ips: BTreeSet<IpAddr> = desired.neighbours.iter().map(|n| n.ip).collect();
    for neighbour in actual.neighbours.difference(&desired.neighbours) {
        // One that merely changed MAC is replaced in place below.
        if !desired_ips.contains(&neighbour.ip) {
            operations.push(Operation::DeleteNeighbour(*neighbour));
        }
    }
    for entry in actual.forwarding.difference(&desired.forwarding) {
        operations.push(Operation::DeleteForwarding(*entry));
    }
    for entry in desired.forwarding.difference(&actual.forwarding) {
        operations.push(Operation::SetForwarding(*entry));
    }
    for neighbour in desired.neighbours.difference(&actual.neighbours) {
        operations.push(Operation::SetNeighbour(*neighbour));
    }
    for (subnet, via) in &desired.routes {
        if actual.routes.get(subnet) != Some(via) {
            operations.push(Operation::AddRoute {
                subnet: *subnet,
                via: *via,
            });
        }
    }
    operations
}

fn route(device: u32, subnet: Ipv4Network, via: IpAddr) -> RouteSpec {
    RouteSpec {
        dst: Some(subnet.into()),
        gateway: Some(via),
        oif: Some(device),
        onlink: true,
        ..RouteSpec::default()
    }
}

/// The main table's IPv4 routes out of `device`: destination and gateway, if any.
pub(crate) fn device_routes(
    netlink: &mut Netlink,
    device: u32,
) -> Result<Vec<(Ipv4Network, Option<IpAddr>)>, NetlinkError> {
    let main = u32::from(netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN);
    Ok(netlink
        .routes(true)?
        .into_iter()
        .filter(|r| r.oif == Some(device) && r.table == Some(main))
        .filter_map(|r| match r.dst {
            Some(ipnetwork::IpNetwork::V4(dst)) => Some((dst, r.gateway)),
            _ => None,
        })
        .collect())
}

/// Adds `spec`; a route to its destination by another path is replaced with it.
pub(crate) fn add_route_replacing(
    netlink: &mut Netlink,
    spec: &RouteSpec,
) -> Result<(), NetlinkError> {
    match netlink.add_route(spec) {
        Err(e) if e.already_exists() => netlink
            .delete_route(&RouteSpec {
                dst: spec.dst,
                ..RouteSpec::default()
            })
            .and_then(|()| netlink.add_route(spec)),
        other => other,
    }
}

/// What the kernel holds on VXLAN device `device` (main table routes out of it, permanent
/// neighbours, forwarding entries with a remote).
pub fn programmed(netlink: &mut Netlink, device: u32) -> Result<Programmed, NetlinkError> {
    let routes = device_routes(netlink, device)?
        .into_iter()
        .filter_map(|(dst, via)| Some((dst, via?)))
        .collect();
    Ok(Programmed {
        neighbours: netlink.permanent_neighbours(device)?.into_iter().collect(),
        forwarding: netlink
            .fdb_entries(device)?
            .into_iter()
            .filter(|e| e.mac != MacAddr([0; 6]))
            .collect(),
        routes,
    })
}

/// Applies `operations` on `device`, each on its own: one failure does not stop the rest.
/// Returns the failures, for the caller to log and retry on its next pass.
pub fn apply(
    netlink: &mut Netlink,
    device: u32,
    operations: &[Operation],
) -> Vec<(Operation, NetlinkError)> {
    let mut failures = Vec::new();
    for operation in operations {
        let done = match *operation {
            Operation::DeleteRoute { subnet, via } => {
                netlink.delete_route(&route(device, subnet, via))
            }
            Operation::DeleteNeighbour(neighbour) => netlink.delete_neighbour(device, neighbour.ip),
            Operation::DeleteForwarding(entry) => netlink.delete_fdb_entry(device, entry),
            Operation::SetForwarding(entry) => netlink.set_fdb_entry(device, entry),
            Operation::SetNeighbour(neighbour) => netlink.set_neighbour(device, neighbour),
            Operation::AddRoute { subnet, via } => {
                add_route_replacing(netlink, &route(device, subnet, via))
            }
        };
        if let Err(error) = done {
            failures.push((operation.clone(), error));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Network {
        text.parse().expect("network")
    }

    fn peer(node: &str, subnet: &str, vtep: &str) -> Peer {
        Peer {
            subnet: net(subnet),
            lease: NodeLease {
                node: node.to_string(),
                vtep: vtep.parse().expect("ip"),
                mac: node_mac(node),
                public_key: None,
            },
        }
    }

    fn cluster() -> ClusterConfig {
        ClusterConfig {
            network: net("10.244.0.0/16"),
            subnet_len: 24,
            vni: 1,
            port: DEFAULT_PORT,
            backend: Backend::Vxlan,
        }
    }

    #[test]
    fn a_new_peer_gets_forwarding_then_neighbour_then_route() {
        let peers = [peer("n2", "10.244.2.0/24", "198.18.0.2")];
        let operations = plan(&Programmed::desired(&peers), &Programmed::default());
        let mac = node_mac("n2");
        assert_eq!(
            operations,
            [
                Operation::SetForwarding(FdbEntry {
                    mac,
                    remote: "198.18.0.2".parse().expect("ip")
                }),
                Operation::SetNeighbour(Neighbour {
                    ip: "10.244.2.0".parse().expect("ip"),
                    mac
                }),
                Operation::AddRoute {
                    subnet: net("10.244.2.0/24"),
                    via: "10.244.2.0".parse().expect("ip")
                },
            ]
        );
    }

    #[test]
    fn a_converged_node_needs_nothing() {
        let peers = [
            peer("n2", "10.244.2.0/24", "198.18.0.2"),
            peer("n3", "10.244.3.0/24", "198.18.0.3"),
        ];
        let desired = Programmed::desired(&peers);
        assert!(plan(&desired, &desired.clone()).is_empty());
    }

    #[test]
    fn a_departed_peer_loses_route_first_then_its_entries() {
        let actual = Programmed::desired(&[
            peer("n2", "10.244.2.0/24", "198.18.0.2"),
            peer("n3", "10.244.3.0/24", "198.18.0.3"),
        ]);
        let desired = Programmed::desired(&[peer("n2", "10.244.2.0/24", "198.18.0.2")]);
        let operations = plan(&desired, &actual);
        assert_eq!(operations.len(), 3, "{operations:?}");
        assert!(
            matches!(operations[0], Operation::DeleteRoute { subnet, .. } if subnet == net("10.244.3.0/24"))
        );
        assert!(matches!(operations[1], Operation::DeleteNeighbour(n) if n.mac == node_mac("n3")));
        assert!(matches!(operations[2], Operation::DeleteForwarding(e) if e.mac == node_mac("n3")));
    }

    #[test]
    fn a_peer_with_a_new_underlay_address_is_moved_not_duplicated() {
        let actual = Programmed::desired(&[peer("n2", "10.244.2.0/24", "198.18.0.2")]);
        let desired = Programmed::desired(&[peer("n2", "10.244.2.0/24", "198.18.0.9")]);
        let operations = plan(&desired, &actual);
        let mac = node_mac("n2");
        assert_eq!(
            operations,
            [
                Operation::DeleteForwarding(FdbEntry {
                    mac,
                    remote: "198.18.0.2".parse().expect("ip")
                }),
                Operation::SetForwarding(FdbEntry {
                    mac,
                    remote: "198.18.0.9".parse().expect("ip")
                }),
            ]
        );
    }

    #[test]
    fn a_subnet_taken_over_by_another_node_changes_the_neighbour_in_place() {
        let actual = Programmed::desired(&[peer("n2", "10.244.2.0/24", "198.18.0.2")]);
        let desired = Programmed::desired(&[peer("n7", "10.244.2.0/24", "198.18.0.7")]);
        let operations = plan(&desired, &actual);
        assert!(!operations.iter().any(|o| matches!(
            o,
            Operation::DeleteNeighbour(_) | Operation::DeleteRoute { .. }
        )));
        assert!(operations.contains(&Operation::SetNeighbour(Neighbour {
            ip: "10.244.2.0".parse().expect("ip"),
            mac: node_mac("n7")
        })));
    }

    #[test]
    fn conflicting_claims_resolve_the_same_way_on_every_node() {
        let a = peer("n2", "10.244.2.0/24", "198.18.0.2");
        let b = peer("n9", "10.244.2.0/24", "198.18.0.9");
        let one = Programmed::desired(&[a.clone(), b.clone()]);
        let other = Programmed::desired(&[b, a]);
        assert_eq!(one, other);
        assert_eq!(one.routes.len(), 1);
        assert_eq!(one.forwarding.len(), 1);
    }

    #[test]
    fn stray_entries_the_agent_did_not_make_are_removed() {
        let mut actual = Programmed::default();
        let stray = Neighbour {
            ip: "10.244.77.0".parse().expect("ip"),
            mac: node_mac("gone"),
        };
        actual.neighbours.insert(stray);
        assert_eq!(
            plan(&Programmed::default(), &actual),
            [Operation::DeleteNeighbour(stray)]
        );
    }

    #[test]
    fn node_macs_are_stable_unicast_and_local() {
        assert_eq!(node_mac("n1"), node_mac("n1"));
        assert_ne!(node_mac("n1"), node_mac("n2"));
        let first = node_mac("n1").0[0];
        assert_eq!(first & 1, 0, "unicast");
        assert_eq!(first & 2, 2, "locally administered");
    }

    #[test]
    fn free_subnets_prefer_the_old_one_then_go_in_order() {
        let config = cluster();
        let taken: BTreeSet<Ipv4Network> = [net("10.244.0.0/24"), net("10.244.1.0/24")]
            .into_iter()
            .collect();
        assert_eq!(config.free_subnet(&taken, None), Some(net("10.244.2.0/24")));
        assert_eq!(
            config.free_subnet(&taken, Some(net("10.244.9.0/24"))),
            Some(net("10.244.9.0/24"))
        );
        // A taken or foreign preference is ignored.
        assert_eq!(
            config.free_subnet(&taken, Some(net("10.244.1.0/24"))),
            Some(net("10.244.2.0/24"))
        );
        assert_eq!(
            config.free_subnet(&taken, Some(net("10.9.0.0/24"))),
            Some(net("10.244.2.0/24"))
        );
        let small = ClusterConfig {
            network: net("10.0.0.0/23"),
            ..cluster()
        };
        let full: BTreeSet<Ipv4Network> = [net("10.0.0.0/24"), net("10.0.1.0/24")]
            .into_iter()
            .collect();
        assert_eq!(small.free_subnet(&full, None), None);
    }

    #[test]
    fn bad_cluster_configs_are_refused_by_field() {
        let bad_len = ClusterConfig {
            subnet_len: 8,
            ..cluster()
        };
        assert!(bad_len
            .validate()
            .expect_err("refused")
            .contains("subnetLen"));
        let bad_vni = ClusterConfig {
            vni: 1 << 24,
            ..cluster()
        };
        assert!(bad_vni.validate().expect_err("refused").contains("vni"));
        assert!(cluster().validate().is_ok());
    }

    #[test]
    fn mtu_leaves_room_for_the_encapsulation() {
        let (v4, v6) = (
            "198.18.0.1".parse().expect("ip"),
            "fd00::1".parse().expect("ip"),
        );
        assert_eq!(Backend::Vxlan.mtu(1500, v4), 1450);
        assert_eq!(Backend::Vxlan.mtu(1500, v6), 1430);
        assert_eq!(Backend::WireGuard.mtu(1500, v4), 1440);
        assert_eq!(Backend::WireGuard.mtu(1500, v6), 1420);
        assert_eq!(Backend::WireGuard.mtu(9000, v4), 8940);
    }

    #[test]
    fn the_backend_is_vxlan_unless_chosen_and_sets_the_default_port() {
        let parse = |text: &str| serde_json::from_str::<ClusterConfig>(text);
        let plain = parse(r#"{"network": "10.244.0.0/16"}"#).expect("parse");
        assert_eq!((plain.backend, plain.port), (Backend::Vxlan, 4789));
        let wg = parse(r#"{"network": "10.244.0.0/16", "backend": "wireguard"}"#).expect("parse");
        assert_eq!((wg.backend, wg.port), (Backend::WireGuard, 51820));
        let own = parse(r#"{"network": "10.244.0.0/16", "backend": "wireguard", "port": 7000}"#)
            .expect("parse");
        assert_eq!(own.port, 7000);
        // What the agent publishes reads back the same, backend and port included.
        let text = serde_json::to_string(&wg).expect("json");
        assert_eq!(parse(&text).expect("parse"), wg);
        let error = parse(r#"{"network": "10.244.0.0/16", "backend": "ipsec"}"#)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("backend \"ipsec\""), "{error}");
        assert!(error.contains("wireguard"), "{error}");
    }

    #[test]
    fn leases_round_trip_and_malformed_ones_are_refused() {
        let lease = peer("n2", "10.244.2.0/24", "198.18.0.2").lease;
        let text = serde_json::to_string(&lease).expect("json");
        assert_eq!(
            serde_json::from_str::<NodeLease>(&text).expect("parse"),
            lease
        );
        for bad in [
            "garbage",
            r#"{"node":"n2"}"#,
            r#"{"node":"n2","vtep":"x","mac":"02:00:00:00:00:01"}"#,
            r#"{"node":"n2","vtep":"198.18.0.2","mac":"01:00:00:00:00:01"}"#,
        ] {
            assert!(serde_json::from_str::<NodeLease>(bad).is_err(), "{bad}");
        }
    }
}
