//! The overlay's records in etcd, and the decisions made over them that need no etcd: which
//! nodes peers route to, whose name is held by whom, and which subnet a node may take.
//!
//! Two records per node, because "this subnet is mine" must outlive an outage that "this node
//! is up" must not:
//! - `<prefix>/subnets/<address>-<length>`: an [`Ownership`]. It is attached to no etcd lease,
//!   so etcd never deletes it; it names the owner's *ownership lease* (long: hours), and the
//!   subnet lapses when etcd no longer has that lease. A lapsed record stays as a tombstone,
//!   so a node that wants the subnet can see it was owned and give its owner time to
//!   re-assert (see [`choose`]).
//! - `<prefix>/nodes/<name>`: a [`Liveness`], attached to the node's *liveness lease*
//!   (seconds). Peers route to a node while this record exists and names a subnet the node
//!   owns. Anything else bound to a node's liveness (DNS names, a WireGuard key) belongs in
//!   this record or in keys on the same lease.

use ipnetwork::Ipv4Network;
use kernel::netlink::MacAddr;
use overlay::{ClusterConfig, NodeLease, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::store::Leases;

/// An etcd lease ID, written in hex as etcdctl prints it (`etcdctl lease timetolive <id>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl Serialize for LeaseId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LeaseId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16)
            .map(|id| LeaseId(id as i64))
            .map_err(|_| serde::de::Error::custom(format!("lease {text:?} is not a hex ID")))
    }
}

/// Who owns a subnet. Unknown fields are kept out of the way, not refused: a newer agent may
/// add some, and an older one in the same cluster must still read the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    pub node: String,
    pub identity: String,
    /// The owner's underlay address when it last wrote the record: for messages to operators.
    pub vtep: IpAddr,
    /// The ownership lease: while etcd has it, the subnet is the owner's.
    pub lease: LeaseId,
}

/// A live node: what peers need to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    pub identity: String,
    pub subnet: Ipv4Network,
    /// The node's underlay address.
    pub vtep: IpAddr,
    /// The MAC of the node's VXLAN device.
    #[serde(with = "overlay::mac_text")]
    pub mac: MacAddr,
    /// The node's WireGuard public key, with the WireGuard backend: bound to the node's
    /// liveness, so a re-keyed node is picked up by its peers as its record changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKey>,
}

/// This node as the records describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub node: String,
    pub identity: String,
    pub vtep: IpAddr,
    pub mac: MacAddr,
    pub public_key: Option<PublicKey>,
}

impl Me {
    pub fn ownership(&self, lease: LeaseId) -> Ownership {
        Ownership {
            node: self.node.clone(),
            identity: self.identity.clone(),
            vtep: self.vtep,
            lease,
        }
    }

    pub fn liveness(&self, subnet: Ipv4Network) -> Liveness {
        Liveness {
            identity: self.identity.clone(),
            subnet,
            vtep: self.vtep,
            mac: self.mac,
            public_key: self.public_key,
        }
    }
}

/// The first characters of an identity: enough to tell two apart in a message.
pub fn short(identity: &str) -> &str {
    identity.get(..8).unwrap_or(identity)
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Config,
    Subnet(Ipv4Network),
    Node(String),
    /// Not the overlay's (another feature's, or a stray one): ignored.
    Other,
}

/// The keys of one overlay in etcd.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Everything of this overlay: one listing and one watch cover both kinds of record.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub fn subnet(&self, subnet: Ipv4Network) -> String {
        format!(
            "{}/subnets/{}-{}",
            self.prefix,
            subnet.network(),
            subnet.prefix()
        )
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}/nodes/{name}", self.prefix)
    }

    /// What `key` is; `None` for a key under `subnets/` or `nodes/` that names no subnet or
    /// node (worth a warning: someone wrote it by hand).
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(&self.prefix))
            .and_then(|k| k.strip_prefix('/'))
        else {
            return Some(Key::Other);
        };
        if rest == "config" {
            return Some(Key::Config);
        }
        if let Some(subnet) = rest.strip_prefix("subnets/") {
            let (address, length) = subnet.split_once('-')?;
            let subnet = Ipv4Network::new(address.parse().ok()?, length.parse().ok()?).ok()?;
            return (subnet.network() == subnet.ip()).then_some(Key::Subnet(subnet));
        }
        if let Some(name) = rest.strip_prefix("nodes/") {
            return (!name.is_empty() && !name.contains('/')).then(|| Key::Node(name.to_string()));
        }
        Some(Key::Other)
    }
}

/// A record as read, with what etcd says about its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<T> {
    pub record: T,
    pub mod_revision: i64,
    /// The etcd lease the key is attached to (0: none).
    pub attached: i64,
    /// The value as stored, to tell a rewrite from the writer's own put.
    pub value: Vec<u8>,
}

/// Every record of the overlay, as listed and then followed through the watch.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub owners: BTreeMap<Ipv4Network, Entry<Ownership>>,
    pub nodes: BTreeMap<String, Entry<Liveness>>,
    /// Subnet keys whose value is no ownership record (written by hand, or by an agent
    /// of the earlier one-lease layout), with their revision: taken, but nobody's.
    pub unreadable: BTreeMap<Ipv4Network, i64>,
}

impl View {
    /// The nodes peers route to: each live node whose subnet it owns (same name and
    /// identity), as the kernel's reconciliation takes them.
    pub fn peers(&self) -> Leases {
        self.nodes
            .iter()
            .filter_map(|(name, live)| {
                let owner = self.owners.get(&live.record.subnet)?;
                let owned =
                    owner.record.node == *name && owner.record.identity == live.record.identity;
                owned.then(|| {
                    let lease = NodeLease {
                        node: name.clone(),
                        vtep: live.record.vtep,
                        mac: live.record.mac,
                        public_key: live.record.public_key,
                    };
                    (live.record.subnet, lease)
                })
            })
            .collect()
    }

    /// Every subnet with a record, readable or not: none of them is free.
    pub fn recorded(&self) -> BTreeSet<Ipv4Network> {
        self.owners
            .keys()
            .chain(self.unreadable.keys())
            .copied()
            .collect()
    }

    /// The ownership leases whose liveness [`choose`] and [`View::name_holder`] may need:
    /// those of records under `me`'s name, and when `config` has no subnet that was never
    /// owned, all of them (lapsed ones are the only subnets left).
    pub fn leases_to_check(&self, config: &ClusterConfig, me: &Me) -> BTreeSet<LeaseId> {
        let full = config.free_subnet(&self.recorded(), None).is_none();
        self.owners
            .values()
            .map(|e| &e.record)
            .filter(|o| full || o.node == me.node)
            .map(|o| o.lease)
            .collect()
    }

    /// Who holds `me`'s name with another identity: its live record, else an ownership
    /// record under that name whose lease etcd still has (a node down for less than its
    /// ownership TTL). `None` when the name is free or held by `me` itself.
    pub fn name_holder(&self, me: &Me, live_leases: &BTreeSet<LeaseId>) -> Option<Holder> {
        if let Some(live) = self.nodes.get(&me.node) {
            if live.record.identity != me.identity {
                return Some(Holder {
                    identity: live.record.identity.clone(),
                    address: live.record.vtep,
                    live: true,
                });
            }
        }
        self.owners
            .values()
            .map(|e| &e.record)
            .find(|o| {
                o.node == me.node && o.identity != me.identity && live_leases.contains(&o.lease)
            })
            .map(|o| Holder {
                identity: o.identity.clone(),
                address: o.vtep,
                live: false,
            })
    }
}

/// Another machine holding this node's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub identity: String,
    pub address: IpAddr,
    /// Up now (a liveness record), or only owning a subnet under the name.
    pub live: bool,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "the machine at {} (identity {}…, {})",
            self.address,
            short(&self.identity),
            if self.live {
                "up now"
            } else {
                "down, but its subnet's ownership has not lapsed"
            }
        )
    }
}

/// What a node asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Its kernel is set up for this subnet: re-assert it or fail, never move.
    Held(Ipv4Network),
    /// Starting: any subnet, this one (from the node file) first.
    Any(Option<Ipv4Network>),
}

/// Which subnet to take, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The node's own record (same name and identity, or `take_over` of its name): rewrite it
    /// if it is still at `revision`.
    Mine { subnet: Ipv4Network, revision: i64 },
    /// No record: create one.
    Free(Ipv4Network),
    /// Another node's lapsed record at `revision`: take it only after the grace period, and
    /// only if nobody rewrote it meanwhile.
    Lapsed { subnet: Ipv4Network, revision: i64 },
}

/// Why no subnet can be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The held subnet belongs to another node now.
    HeldTaken {
        subnet: Ipv4Network,
        by: Ownership,
    },
    Exhausted,
}

/// The subnet `me` takes. Its own record first (a restart keeps its subnet); then a subnet
/// nobody ever owned, the preferred one first; a lapsed one only when no such subnet is left,
/// so reusing an address that pods elsewhere may still remember is the last resort.
pub fn choose(
    config: &ClusterConfig,
    view: &View,
    me: &Me,
    wanted: Wanted,
    take_over: bool,
    live_leases: &BTreeSet<LeaseId>,
) -> Result<Choice, Refusal> {
    let mine = |o: &Ownership| o.node == me.node && (o.identity == me.identity || take_over);
    let preferred = match wanted {
        Wanted::Held(subnet) => {
            if let Some(revision) = view.unreadable.get(&subnet) {
                // Overwritten with garbage: still this node's to write again.
                return Ok(Choice::Mine {
                    subnet,
                    revision: *revision,
                });
            }
            return match view.owners.get(&subnet) {
                None => Ok(Choice::Free(subnet)),
                Some(entry) if mine(&entry.record) => Ok(Choice::Mine {
                    subnet,
                    revision: entry.mod_revision,
                }),
                Some(entry) => Err(Refusal::HeldTaken {
                    subnet,
                    by: entry.record.clone(),
                }),
            };
        }
        Wanted::Any(preferred) => preferred,
    };
    // A node owning several subnets (records from an older agent, or written by hand) keeps
    // the preferred one, else the lowest.
    let own = view
        .owners
        .iter()
        .filter(|(s, e)| config.owns(**s) && mine(&e.record))
        .min_by_key(|(s, _)| Some(**s) != preferred);
    if let Some((subnet, entry)) = own {
        return Ok(Choice::Mine {
            subnet: *subnet,
            revision: entry.mod_revision,
        });
    }
    if let Some(subnet) = config.free_subnet(&view.recorded(), preferred) {
        return Ok(Choice::Free(subnet));
    }
    let lapsed = view.owners.iter().filter(|(s, e)| {
        config.owns(**s)
            && !live_leases.contains(&e.record.lease)
            && !view.nodes.contains_key(&e.record.node)
    });
    lapsed
        .min_by_key(|(s, _)| (Some(**s) != preferred, **s))
        .map(|(subnet, entry)| Choice::Lapsed {
            subnet: *subnet,
            revision: entry.mod_revision,
        })
        .ok_or(Refusal::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay::node_mac;

    fn net(text: &str) -> Ipv4Network {
        text.parse().expect("network")
    }

    fn me(node: &str, identity: &str) -> Me {
        Me {
            node: node.to_string(),
            identity: identity.to_string(),
            vtep: "198.18.0.1".parse().expect("ip"),
            mac: node_mac(node),
            public_key: None,
        }
    }

    fn cluster(network: &str) -> ClusterConfig {
        ClusterConfig {
            network: net(network),
            subnet_len: 24,
            vni: 1,
            port: 4789,
            backend: overlay::Backend::Vxlan,
        }
    }

    fn entry<T>(record: T, revision: i64) -> Entry<T> {
        Entry {
            record,
            mod_revision: revision,
            attached: 0,
            value: Vec::new(),
        }
    }

    fn owned(view: &mut View, subnet: &str, owner: &Me, lease: i64, revision: i64) {
        view.owners.insert(
            net(subnet),
            entry(owner.ownership(LeaseId(lease)), revision),
        );
    }

    fn live(view: &mut View, node: &Me, subnet: &str) {
        view.nodes
            .insert(node.node.clone(), entry(node.liveness(net(subnet)), 1));
    }

    fn leases(ids: &[i64]) -> BTreeSet<LeaseId> {
        ids.iter().copied().map(LeaseId).collect()
    }

    #[test]
    fn peers_are_live_nodes_on_subnets_they_own() {
        let (a, b, c) = (me("a", "ia"), me("b", "ib"), me("c", "ic"));
        let mut view = View::default();
        owned(&mut view, "10.244.0.0/24", &a, 1, 1);
        owned(&mut view, "10.244.1.0/24", &b, 2, 2);
        live(&mut view, &a, "10.244.0.0/24");
        // b owns its subnet but is not live: no route.
        // c is live but claims a subnet a owns: no route either.
        live(&mut view, &c, "10.244.0.0/24");
        let peers = view.peers();
        assert_eq!(peers.len(), 1);
        let routed = &peers[&net("10.244.0.0/24")];
        assert_eq!(
            (routed.node.as_str(), routed.vtep, routed.mac),
            ("a", a.vtep, a.mac)
        );
        // Same name, other identity (a duplicate's record): not routed.
        let impostor = me("a", "other");
        live(&mut view, &impostor, "10.244.0.0/24");
        assert!(view.peers().is_empty());
    }

    #[test]
    fn a_name_is_held_by_a_live_other_identity_or_an_unlapsed_ownership() {
        let mine = me("n1", "mine");
        let other = me("n1", "theirs");
        let mut view = View::default();
        assert_eq!(view.name_holder(&mine, &leases(&[])), None);
        owned(&mut view, "10.244.0.0/24", &other, 7, 1);
        // Its ownership lapsed (etcd has no lease 7): the name is free.
        assert_eq!(view.name_holder(&mine, &leases(&[])), None);
        let held = view.name_holder(&mine, &leases(&[7])).expect("held");
        assert!(!held.live);
        live(&mut view, &other, "10.244.0.0/24");
        let held = view.name_holder(&mine, &leases(&[])).expect("held");
        assert!(held.live);
        assert_eq!(held.address, other.vtep);
        assert!(held.to_string().contains("198.18.0.1"), "{held}");
        // Its own records never count.
        assert_eq!(view.name_holder(&other, &leases(&[7])), None);
    }

    #[test]
    fn a_node_keeps_its_own_subnet_and_never_moves_while_held() {
        let config = cluster("10.244.0.0/16");
        let (a, b) = (me("a", "ia"), me("b", "ib"));
        let mut view = View::default();
        owned(&mut view, "10.244.5.0/24", &a, 1, 40);
        let any = Wanted::Any(None);
        assert_eq!(
            choose(&config, &view, &a, any, false, &leases(&[])),
            Ok(Choice::Mine {
                subnet: net("10.244.5.0/24"),
                revision: 40
            })
        );
        // Held, deleted by hand: re-created in place.
        let held = Wanted::Held(net("10.244.9.0/24"));
        assert_eq!(
            choose(&config, &view, &a, held, false, &leases(&[])),
            Ok(Choice::Free(net("10.244.9.0/24")))
        );
        // Held, but another node's now: refused, never another subnet.
        owned(&mut view, "10.244.9.0/24", &b, 2, 41);
        assert!(matches!(
            choose(&config, &view, &a, held, false, &leases(&[])),
            Err(Refusal::HeldTaken { by, .. }) if by.node == "b"
        ));
    }

    #[test]
    fn never_owned_subnets_come_before_lapsed_ones_and_live_ones_are_never_taken() {
        let config = cluster("10.244.0.0/22");
        let (a, b, c, d) = (me("a", "ia"), me("b", "ib"), me("c", "ic"), me("d", "id"));
        let mut view = View::default();
        owned(&mut view, "10.244.0.0/24", &a, 1, 10);
        owned(&mut view, "10.244.1.0/24", &b, 2, 11);
        owned(&mut view, "10.244.2.0/24", &c, 3, 12);
        // Every ownership lapsed (an etcd stall outlasting them): the never-owned subnet.
        let none = leases(&[]);
        assert_eq!(
            choose(&config, &view, &d, Wanted::Any(None), false, &none),
            Ok(Choice::Free(net("10.244.3.0/24")))
        );
        owned(&mut view, "10.244.3.0/24", &d, 4, 13);
        // Full: a lapsed one, whose owner is not live, the lowest first.
        let e = me("e", "ie");
        live(&mut view, &a, "10.244.0.0/24");
        assert_eq!(
            choose(&config, &view, &e, Wanted::Any(None), false, &leases(&[2])),
            Ok(Choice::Lapsed {
                subnet: net("10.244.2.0/24"),
                revision: 12
            })
        );
        // The preferred lapsed one first.
        assert_eq!(
            choose(
                &config,
                &view,
                &e,
                Wanted::Any(Some(net("10.244.3.0/24"))),
                false,
                &none
            ),
            Ok(Choice::Lapsed {
                subnet: net("10.244.3.0/24"),
                revision: 13
            })
        );
        // Every ownership alive: nothing.
        assert_eq!(
            choose(
                &config,
                &view,
                &e,
                Wanted::Any(None),
                false,
                &leases(&[1, 2, 3, 4])
            ),
            Err(Refusal::Exhausted)
        );
    }

    #[test]
    fn only_the_leases_a_choice_depends_on_are_checked() {
        let config = cluster("10.244.0.0/23");
        let (a, b, c) = (me("a", "ia"), me("b", "ib"), me("c", "ic"));
        let mut view = View::default();
        owned(&mut view, "10.244.0.0/24", &a, 1, 1);
        // A free subnet left: only records under the asking node's name matter.
        assert_eq!(view.leases_to_check(&config, &c), leases(&[]));
        assert_eq!(view.leases_to_check(&config, &a), leases(&[1]));
        // Full: every record may be a lapsed one to take.
        owned(&mut view, "10.244.1.0/24", &b, 2, 2);
        assert_eq!(view.leases_to_check(&config, &c), leases(&[1, 2]));
    }

    #[test]
    fn taking_over_a_name_adopts_its_subnet() {
        let config = cluster("10.244.0.0/16");
        let (old, new) = (me("n1", "old"), me("n1", "new"));
        let mut view = View::default();
        owned(&mut view, "10.244.7.0/24", &old, 1, 5);
        let choice = choose(&config, &view, &new, Wanted::Any(None), true, &leases(&[1]));
        assert_eq!(
            choice,
            Ok(Choice::Mine {
                subnet: net("10.244.7.0/24"),
                revision: 5
            })
        );
        // Without take-over it is another node's: a fresh subnet.
        let choice = choose(
            &config,
            &view,
            &new,
            Wanted::Any(None),
            false,
            &leases(&[1]),
        );
        assert_eq!(choice, Ok(Choice::Free(net("10.244.0.0/24"))));
    }

    #[test]
    fn keys_parse_and_strays_are_told_apart() {
        let layout = Layout::new("/ferrocni/network/");
        assert_eq!(
            layout.subnet(net("10.244.3.0/24")),
            "/ferrocni/network/subnets/10.244.3.0-24"
        );
        assert_eq!(
            layout.parse(b"/ferrocni/network/subnets/10.244.3.0-24"),
            Some(Key::Subnet(net("10.244.3.0/24")))
        );
        assert_eq!(
            layout.parse(b"/ferrocni/network/nodes/n1"),
            Some(Key::Node("n1".to_string()))
        );
        assert_eq!(layout.parse(b"/ferrocni/network/config"), Some(Key::Config));
        assert_eq!(layout.parse(b"/ferrocni/network/dns/n1"), Some(Key::Other));
        assert_eq!(layout.parse(b"/ferrocni/network/subnets/nonsense"), None);
        assert_eq!(
            layout.parse(b"/ferrocni/network/subnets/10.244.3.1-24"),
            None
        );
        assert_eq!(layout.parse(b"/ferrocni/network/nodes/"), None);
    }

    #[test]
    fn records_round_trip_and_tolerate_fields_a_newer_agent_adds() {
        let a = me("a", "ia");
        let ownership = a.ownership(LeaseId(0x694d8d2a3c5e1f0b));
        let text = serde_json::to_string(&ownership).expect("json");
        assert!(text.contains("\"694d8d2a3c5e1f0b\""), "{text}");
        assert_eq!(
            serde_json::from_str::<Ownership>(&text).expect("parse"),
            ownership
        );
        let liveness = a.liveness(net("10.244.1.0/24"));
        let mut value = serde_json::to_value(&liveness).expect("json");
        // Without a key (VXLAN), the record is as before the WireGuard backend.
        assert!(value.get("publicKey").is_none(), "{value}");
        value["wireguardPort"] = serde_json::json!(51820);
        assert_eq!(
            serde_json::from_value::<Liveness>(value).expect("parse"),
            liveness
        );
        let keyed = Me {
            public_key: Some(PublicKey([3; 32])),
            ..a.clone()
        }
        .liveness(net("10.244.1.0/24"));
        let text = serde_json::to_string(&keyed).expect("json");
        assert!(
            text.contains(r#""publicKey":"AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=""#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<Liveness>(&text).expect("parse"),
            keyed
        );
        // A key that is not one makes the record malformed (skipped, with a warning).
        let mut bad = serde_json::to_value(&keyed).expect("json");
        bad["publicKey"] = serde_json::json!("a WireGuard key");
        assert!(serde_json::from_value::<Liveness>(bad).is_err());
        assert!(serde_json::from_str::<Ownership>(r#"{"node":"a"}"#).is_err());
        assert!(serde_json::from_str::<LeaseId>(r#""xyz""#).is_err());
    }
}
