//! The WireGuard backend's model: L3, one WireGuard interface per node, every other live
//! node a peer whose allowed IPs are its pod subnet and whose endpoint is its underlay
//! address and the cluster's port, and a route to each remote subnet through the interface.
//!
//! Reconciliation has the VXLAN backend's shape: [`Tunnels::desired`] from the live nodes,
//! what the node holds (its peers, read from the WireGuard device, and its routes, read
//! over netlink), and [`plan`], a pure function from the two to the operations that close
//! the gap. The device itself is behind [`Device`]: the agent's userspace WireGuard speaks
//! the cross-platform configuration protocol (UAPI).

use base64::Engine as _;
use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use kernel::netlink::{Netlink, RouteSpec};

use crate::Peer;

/// A WireGuard public key (Curve25519, 32 bytes). Its text is base64, as `wg` prints it;
/// the configuration protocol writes it in hex ([`PublicKey::hex`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From the 64 hex digits of the configuration protocol.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
        }
        Some(PublicKey(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;

    fn from_str(text: &str) -> Result<PublicKey, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("public key {text:?} is not base64: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("public key {text:?} is not 32 bytes"))?;
        if !canonical(&key) {
            return Err(format!(
                "public key {text:?} is not a Curve25519 public key as WireGuard writes one \
                 (its top bit set, or a coordinate past the field's prime)"
            ));
        }
        Ok(PublicKey(key))
    }
}

/// Whether `key` is a Curve25519 coordinate written the one way key generators write it:
/// below 2^255 - 19, little-endian. WireGuard takes other bytes for the same key (it
/// ignores the top bit and reduces modulo the prime), so two such texts could be one peer
/// to the device while looking like two here, and boringtun stops its device when told to
/// add a peer it already has.
fn canonical(key: &[u8; 32]) -> bool {
    let (first, middle, last) = (key[0], &key[1..31], key[31]);
    let at_least_prime = first >= 0xed && middle.iter().all(|b| *b == 0xff) && last == 0x7f;
    last & 0x80 == 0 && !at_least_prime
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A peer as a WireGuard device holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WgPeer {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: BTreeSet<IpNetwork>,
}

/// What a node holds for the overlay: the device's peers, and the routes through it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tunnels {
    pub peers: BTreeMap<PublicKey, WgPeer>,
    pub routes: BTreeSet<Ipv4Network>,
}

impl Tunnels {
    /// What `peers` require, each reached at its underlay address on `port`. A node that
    /// published no key (an agent of the VXLAN backend, or one that has not started yet) is
    /// left out. When two peers claim one subnet or one key (a store gone wrong, a disk
    /// copied to a second machine), the first in order wins, so every node resolves the
    /// conflict the same way.
    pub fn desired(peers: &[Peer], port: u16) -> Tunnels {
        let mut sorted: Vec<&Peer> = peers.iter().collect();
        sorted.sort();
        let mut desired = Tunnels::default();
        for peer in sorted {
            let Some(key) = peer.lease.public_key else {
                continue;
            };
            if desired.routes.contains(&peer.subnet) || desired.peers.contains_key(&key) {
                continue;
            }
            desired.routes.insert(peer.subnet);
            desired.peers.insert(
                key,
                WgPeer {
                    public_key: key,
                    endpoint: Some(SocketAddr::new(peer.lease.vtep, port)),
                    allowed_ips: [IpNetwork::V4(peer.subnet)].into_iter().collect(),
                },
            );
        }
        desired
    }
}

/// One change to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    DeleteRoute(Ipv4Network),
    RemovePeer(PublicKey),
    AddPeer(WgPeer),
    AddRoute(Ipv4Network),
}

/// The operations that turn `actual` into `desired`: routes of departed subnets first, then
/// peers that are gone or differ (a re-keyed node is a new key: its old one goes), then the
/// new peers, then their routes, so no packet is routed to a device without its peer. A
/// peer that differs is removed and added again rather than changed in place: userspace
/// implementations do not all support changing a peer.
pub fn plan(desired: &Tunnels, actual: &Tunnels) -> Vec<Operation> {
    let mut operations: Vec<Operation> = actual
        .routes
        .difference(&desired.routes)
        .map(|subnet| Operation::DeleteRoute(*subnet))
        .collect();
    let differs = |peer: &WgPeer, other: &BTreeMap<PublicKey, WgPeer>| {
        other.get(&peer.public_key) != Some(peer)
    };
    operations.extend(
        actual
            .peers
            .values()
            .filter(|peer| differs(peer, &desired.peers))
            .map(|peer| Operation::RemovePeer(peer.public_key)),
    );
    operations.extend(
        desired
            .peers
            .values()
            .filter(|peer| differs(peer, &actual.peers))
            .map(|peer| Operation::AddPeer(peer.clone())),
    );
    operations.extend(
        desired
            .routes
            .difference(&actual.routes)
            .map(|subnet| Operation::AddRoute(*subnet)),
    );
    operations
}

/// A WireGuard device's peers, however it is configured.
pub trait Device {
    fn peers(&mut self) -> cni::Result<BTreeMap<PublicKey, WgPeer>>;
    fn add_peer(&mut self, peer: &WgPeer) -> cni::Result<()>;
    fn remove_peer(&mut self, key: &PublicKey) -> cni::Result<()>;
}

/// The route to `subnet` through the interface `index`, from `source`: the node's own pod
/// gateway, so that the node's own packets to remote pods leave with an address the peer
/// accepts (one of this node's allowed IPs there), not the underlay's.
fn route(index: u32, subnet: Ipv4Network, source: IpAddr) -> RouteSpec {
    RouteSpec {
        dst: Some(subnet.into()),
        oif: Some(index),
        source: Some(source),
        ..RouteSpec::default()
    }
}

/// What the node holds: `device`'s peers and the main table's IPv4 routes through `index`.
pub fn programmed(
    netlink: &mut Netlink,
    index: u32,
    device: &mut impl Device,
) -> cni::Result<Tunnels> {
    Ok(Tunnels {
        peers: device.peers()?,
        routes: crate::device_routes(netlink, index)?
            .into_iter()
            .map(|(dst, _)| dst)
            .collect(),
    })
}

/// Applies `operations`, each on its own: one failure does not stop the rest. Returns the
/// failures, for the caller to log and retry on its next pass.
pub fn apply(
    netlink: &mut Netlink,
    index: u32,
    source: IpAddr,
    device: &mut impl Device,
    operations: &[Operation],
) -> Vec<(Operation, cni::Error)> {
    let mut failures = Vec::new();
    for operation in operations {
        let done = match operation {
            Operation::DeleteRoute(subnet) => netlink
                .delete_route(&route(index, *subnet, source))
                .map_err(cni::Error::from),
            Operation::RemovePeer(key) => device.remove_peer(key),
            Operation::AddPeer(peer) => device.add_peer(peer),
            Operation::AddRoute(subnet) => {
                crate::add_route_replacing(netlink, &route(index, *subnet, source))
                    .map_err(cni::Error::from)
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
    use crate::{node_mac, NodeLease};

    fn key(byte: u8) -> PublicKey {
        PublicKey([byte; 32])
    }

    fn peer(node: &str, subnet: &str, vtep: &str, public_key: Option<PublicKey>) -> Peer {
        Peer {
            subnet: subnet.parse().expect("subnet"),
            lease: NodeLease {
                node: node.to_string(),
                vtep: vtep.parse().expect("ip"),
                mac: node_mac(node),
                public_key,
            },
        }
    }

    fn wg(public_key: PublicKey, endpoint: &str, subnet: &str) -> WgPeer {
        WgPeer {
            public_key,
            endpoint: Some(endpoint.parse().expect("endpoint")),
            allowed_ips: [subnet.parse().expect("subnet")].into_iter().collect(),
        }
    }

    fn net(text: &str) -> Ipv4Network {
        text.parse().expect("network")
    }

    #[test]
    fn a_new_node_gets_its_peer_then_its_route() {
        let desired = Tunnels::desired(
            &[peer("n2", "10.244.2.0/24", "198.18.0.2", Some(key(2)))],
            51820,
        );
        assert_eq!(
            plan(&desired, &Tunnels::default()),
            [
                Operation::AddPeer(wg(key(2), "198.18.0.2:51820", "10.244.2.0/24")),
                Operation::AddRoute(net("10.244.2.0/24")),
            ]
        );
        assert!(plan(&desired, &desired.clone()).is_empty());
    }

    #[test]
    fn a_departed_node_loses_its_route_then_its_peer() {
        let actual = Tunnels::desired(
            &[
                peer("n2", "10.244.2.0/24", "198.18.0.2", Some(key(2))),
                peer("n3", "10.244.3.0/24", "198.18.0.3", Some(key(3))),
            ],
            51820,
        );
        let desired = Tunnels::desired(
            &[peer("n2", "10.244.2.0/24", "198.18.0.2", Some(key(2)))],
            51820,
        );
        assert_eq!(
            plan(&desired, &actual),
            [
                Operation::DeleteRoute(net("10.244.3.0/24")),
                Operation::RemovePeer(key(3)),
            ]
        );
    }

    #[test]
    fn a_rekeyed_node_is_swapped_and_keeps_its_route() {
        let port = 51820;
        let actual = Tunnels::desired(
            &[peer("n2", "10.244.2.0/24", "198.18.0.2", Some(key(2)))],
            port,
        );
        let desired = Tunnels::desired(
            &[peer("n2", "10.244.2.0/24", "198.18.0.2", Some(key(9)))],
            port,
        );
        assert_eq!(
            plan(&desired, &actual),
            [
                Operation::RemovePeer(key(2)),
                Operation::AddPeer(wg(key(9), "198.18.0.2:51820", "10.244.2.0/24")),
            ]
        );
    }

    #[test]
    fn a_peer_that_differs_is_removed_and_added_again() {
        let desired = Tunnels::desired(
            &[peer("n2", "10.244.2.0/24", "198.18.0.9", Some(key(2)))],
            51820,
        );
        let mut actual = desired.clone();
        actual
            .peers
            .insert(key(2), wg(key(2), "198.18.0.2:51820", "10.244.2.0/24"));
        assert_eq!(
            plan(&desired, &actual),
            [
                Operation::RemovePeer(key(2)),
                Operation::AddPeer(wg(key(2), "198.18.0.9:51820", "10.244.2.0/24")),
            ]
        );
        // Allowed IPs someone widened by hand are taken back too.
        let mut widened = desired.clone();
        let mut wide = wg(key(2), "198.18.0.9:51820", "10.244.2.0/24");
        wide.allowed_ips.insert("0.0.0.0/0".parse().expect("net"));
        widened.peers.insert(key(2), wide);
        assert_eq!(plan(&desired, &widened).len(), 2);
    }

    #[test]
    fn nodes_without_keys_and_conflicting_claims_resolve_the_same_everywhere() {
        let a = peer("n2", "10.244.2.0/24", "198.18.0.2", Some(key(2)));
        let same_subnet = peer("n9", "10.244.2.0/24", "198.18.0.9", Some(key(9)));
        let same_key = peer("n5", "10.244.5.0/24", "198.18.0.5", Some(key(2)));
        let keyless = peer("n7", "10.244.7.0/24", "198.18.0.7", None);
        let one = Tunnels::desired(
            &[
                a.clone(),
                same_subnet.clone(),
                same_key.clone(),
                keyless.clone(),
            ],
            51820,
        );
        let other = Tunnels::desired(&[keyless, same_key, same_subnet, a], 51820);
        assert_eq!(one, other);
        assert_eq!(one.peers.len(), 1);
        assert_eq!(one.routes.len(), 1);
    }

    #[test]
    fn keys_read_and_write_as_wg_does() {
        // `wg pubkey` of the all-zero private key's clamped form is not needed here: any 32
        // bytes round-trip through both texts.
        let k = PublicKey(std::array::from_fn(|i| i as u8));
        let text = k.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>(), Ok(k));
        assert_eq!(PublicKey::from_hex(&k.hex()), Some(k));
        assert_eq!(PublicKey::from_hex("zz"), None);
        assert!("AAAA".parse::<PublicKey>().is_err());
        // The same key to WireGuard in other bytes: the top bit set, or at least the prime.
        let mut top = k;
        top.0[31] |= 0x80;
        let error = top.to_string().parse::<PublicKey>().expect_err("top bit");
        assert!(error.contains("not a Curve25519 public key"), "{error}");
        let mut prime = [0xff; 32];
        prime[0] = 0xed;
        prime[31] = 0x7f;
        assert!(PublicKey(prime).to_string().parse::<PublicKey>().is_err());
        prime[0] = 0xec;
        assert_eq!(PublicKey(prime).to_string().parse(), Ok(PublicKey(prime)));
        assert!("not base64!".parse::<PublicKey>().is_err());
        let json = serde_json::to_string(&k).expect("json");
        assert_eq!(serde_json::from_str::<PublicKey>(&json).expect("parse"), k);
    }
}
