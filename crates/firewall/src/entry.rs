//! What the plugins ask of the firewall, in no backend's terms: the entries one attachment
//! owns, each of one feature.

use ipnetwork::IpNetwork;
use std::fmt;
use std::net::IpAddr;

use kernel::netlink::MacAddr;

/// What a backend keeps apart (nftables: a table each; iptables: chains each): DEL and GC
/// name the one they clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Masquerade,
    PortMap,
    Forward,
    SpoofCheck,
}

/// One thing an attachment owns in the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// What `address` sends beyond its own subnet leaves with the host's address, multicast
    /// excepted (the reference's `ipMasq`).
    Masquerade { address: IpNetwork },
    /// A published port toward one container address.
    PortMap(PortMap),
    /// What `address` sends, replies to it and connections DNATed to it pass the host's
    /// forwarding, even where its policy drops forwarded packets.
    Forward { address: IpNetwork },
    /// Frames entering the bridge from `port` (the container's host-side veth) whose source
    /// MAC is not `mac` are dropped.
    SpoofCheck { port: String, mac: MacAddr },
}

impl Entry {
    pub fn feature(&self) -> Feature {
        match self {
            Entry::Masquerade { .. } => Feature::Masquerade,
            Entry::PortMap(_) => Feature::PortMap,
            Entry::Forward { .. } => Feature::Forward,
            Entry::SpoofCheck { .. } => Feature::SpoofCheck,
        }
    }

    /// The masquerade of each of an attachment's addresses.
    pub fn masquerade(addresses: &[IpNetwork]) -> Vec<Entry> {
        addresses
            .iter()
            .map(|&address| Entry::Masquerade { address })
            .collect()
    }

    /// The forwarding of each of an attachment's addresses.
    pub fn forward(addresses: &[IpNetwork]) -> Vec<Entry> {
        addresses
            .iter()
            .map(|&address| Entry::Forward { address })
            .collect()
    }
}

/// Traffic to `mapping`'s host port goes to `target`'s address and the mapping's container
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub mapping: PortMapping,
    /// The container's address with its prefix: hairpin traffic comes from that subnet.
    pub target: IpNetwork,
    pub snat: Snat,
    /// An admin's extra match tokens for the target's family, in the backend's own syntax.
    pub conditions: Vec<String>,
}

/// One published port, as the runtime asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// Only traffic to this host address; any local address when absent.
    pub host_ip: Option<IpAddr>,
}

/// Which connections to a published port are masqueraded, so that their replies come back
/// through the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snat {
    /// None (`snat: false`).
    Off,
    /// From the container's own subnet (hairpin: to its own published port) and, for IPv4,
    /// from localhost: the reference's default.
    Local,
    /// From anywhere (`masqAll`).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// The port maps of `entries` (those of other features are not port maps).
pub(crate) fn port_maps<'a>(entries: &[&'a Entry]) -> Vec<&'a PortMap> {
    entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::PortMap(map) => Some(map),
            _ => None,
        })
        .collect()
}

/// The addresses of the masquerade and forwarding entries among `entries`.
pub(crate) fn addresses(entries: &[&Entry]) -> Vec<IpNetwork> {
    entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Masquerade { address } | Entry::Forward { address } => Some(*address),
            _ => None,
        })
        .collect()
}

/// `entries` by feature, each feature once, in the order it first appears.
pub(crate) fn by_feature(entries: &[Entry]) -> Vec<(Feature, Vec<&Entry>)> {
    let mut features: Vec<(Feature, Vec<&Entry>)> = Vec::new();
    for entry in entries {
        match features.iter_mut().find(|(f, _)| *f == entry.feature()) {
            Some((_, group)) => group.push(entry),
            None => features.push((entry.feature(), vec![entry])),
        }
    }
    features
}

/// The entries of `feature` among `entries`.
pub(crate) fn of_feature(entries: &[Entry], feature: Feature) -> Vec<&Entry> {
    entries.iter().filter(|e| e.feature() == feature).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNetwork {
        text.parse().expect("a valid literal")
    }

    #[test]
    fn addresses_give_an_entry_each_of_their_feature() {
        let ips = [net("10.88.0.5/16"), net("fd00::5/64")];
        let masquerade = Entry::masquerade(&ips);
        assert_eq!(
            masquerade,
            [
                Entry::Masquerade { address: ips[0] },
                Entry::Masquerade { address: ips[1] },
            ]
        );
        assert!(masquerade
            .iter()
            .all(|e| e.feature() == Feature::Masquerade));
        let forward = Entry::forward(&ips);
        assert_eq!(forward[1], Entry::Forward { address: ips[1] });
        assert!(forward.iter().all(|e| e.feature() == Feature::Forward));
        assert_eq!(addresses(&forward.iter().collect::<Vec<_>>()), ips);
    }

    #[test]
    fn entries_group_by_feature_in_the_order_they_come() {
        let spoof = Entry::SpoofCheck {
            port: "veth1".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
        };
        let mut entries = Entry::forward(&[net("10.0.0.2/24")]);
        entries.push(spoof.clone());
        entries.extend(Entry::forward(&[net("fd00::2/64")]));
        let groups = by_feature(&entries);
        let features: Vec<Feature> = groups.iter().map(|(f, _)| *f).collect();
        assert_eq!(features, [Feature::Forward, Feature::SpoofCheck]);
        assert_eq!(groups[0].1, [&entries[0], &entries[2]]);
        assert_eq!(of_feature(&entries, Feature::SpoofCheck), [&spoof]);
        assert!(port_maps(&groups[0].1).is_empty());
    }
}
