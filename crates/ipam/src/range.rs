//! Address ranges and range sets, as host-local configures them. Pure: no I/O.
//!
//! A range set is one address to allocate, from any of its (disjoint, same-family) ranges.

use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cni::ProtocolError;

/// A range as written in the config; every field but `subnet` is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RangeConfig {
    pub subnet: Option<IpNetwork>,
    #[serde(rename = "rangeStart")]
    pub range_start: Option<IpAddr>,
    #[serde(rename = "rangeEnd")]
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A validated range with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The network (host bits clear) and its prefix length.
    pub subnet: IpNetwork,
    pub start: IpAddr,
    pub end: IpAddr,
    /// Never handed out, even when inside `start..=end`.
    pub gateway: IpAddr,
}

pub(crate) fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `bits` in the family of `like`; `bits` must fit that family.
pub(crate) fn from_bits(bits: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// The first address of `address`'s subnet: the gateway when the config names none.
pub fn default_gateway(address: &IpNetwork) -> IpAddr {
    from_bits(to_bits(address.network()) + 1, address.ip())
}

impl Range {
    /// Validates `config` and fills in defaults as the reference does: gateway and start are
    /// network+1 (the allocator skips the gateway), end is the last address before the IPv4
    /// broadcast, or the last address of an IPv6 subnet. `field` names the range in errors.
    pub fn from_config(config: &RangeConfig, field: &str) -> Result<Range, ProtocolError> {
        let bad =
            |key: &str, reason: String| ProtocolError::config(format!("{field}.{key}"), reason);
        let given = config
            .subnet
            .ok_or_else(|| bad("subnet", "a subnet is required".into()))?;
        let subnet = IpNetwork::new(given.network(), given.prefix())
            .map_err(|e| bad("subnet", e.to_string()))?;
        if given.ip() != subnet.ip() {
            return Err(bad(
                "subnet",
                format!(
                    "{given} has host bits set: the network address of a /{} is {}",
                    given.prefix(),
                    subnet.ip()
                ),
            ));
        }
        let max_prefix = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix() > max_prefix - 2 {
            return Err(bad(
                "subnet",
                format!("network {subnet} is too small to allocate from"),
            ));
        }
        let network = to_bits(subnet.ip());
        let host_mask = match subnet {
            IpNetwork::V4(v4) => u128::from(!u32::from(v4.mask())),
            IpNetwork::V6(v6) => !u128::from(v6.mask()),
        };
        let first = default_gateway(&subnet);
        let last = if subnet.is_ipv4() {
            from_bits((network | host_mask) - 1, subnet.ip())
        } else {
            from_bits(network | host_mask, subnet.ip())
        };
        let in_subnet = |key: &str, ip: IpAddr| {
            if ip.is_ipv4() != subnet.is_ipv4() || !subnet.contains(ip) {
                Err(bad(key, format!("{ip} is not in network {subnet}")))
            } else {
                Ok(ip)
            }
        };
        let gateway = match config.gateway {
            Some(ip) => in_subnet("gateway", ip)?,
            None => first,
        };
        let start = match config.range_start {
            Some(ip) => in_subnet("rangeStart", ip)?,
            None => first,
        };
        let end = match config.range_end {
            Some(ip) => in_subnet("rangeEnd", ip)?,
            None => last,
        };
        if to_bits(end) < to_bits(start) {
            return Err(bad(
                "rangeEnd",
                format!("{end} is before rangeStart {start}"),
            ));
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && (to_bits(self.start)..=to_bits(self.end)).contains(&to_bits(ip))
    }

    /// How many addresses this range can hand out (the gateway excluded).
    pub fn capacity(&self) -> u128 {
        let size = (to_bits(self.end) - to_bits(self.start)).saturating_add(1);
        size - u128::from(self.contains(self.gateway))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Validates one set: not empty, one family, no overlapping ranges.
    pub fn from_config(configs: &[RangeConfig], field: &str) -> Result<RangeSet, ProtocolError> {
        if configs.is_empty() {
            return Err(ProtocolError::config(field, "empty range set"));
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(configs.len());
        let mut seen = Disjoint::default();
        for (i, config) in configs.iter().enumerate() {
            let range = Range::from_config(config, &format!("{field}[{i}]"))?;
            if let Some(first) = ranges.first() {
                if first.subnet.is_ipv4() != range.subnet.is_ipv4() {
                    return Err(ProtocolError::config(
                        field,
                        "mixed address families in one range set",
                    ));
                }
            }
            if let Some(j) = seen.first_overlap(&range) {
                return Err(ProtocolError::config(
                    field,
                    format!("subnets {} and {} overlap", ranges[j].subnet, range.subnet),
                ));
            }
            seen.insert(&range, i);
            ranges.push(range);
        }
        Ok(RangeSet(ranges))
    }

    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(|r| r.subnet.is_ipv4())
    }

    /// Candidate addresses in allocation order: round-robin from the address after
    /// `last_reserved` (when it is in this set), wrapping around once, gateways skipped.
    /// A crash-looping container thus walks the whole set before it sees an address again.
    pub fn candidates(
        &self,
        last_reserved: Option<IpAddr>,
    ) -> impl Iterator<Item = (IpAddr, &Range)> + '_ {
        let ranges = &self.0;
        let position = last_reserved.and_then(|ip| {
            ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|index| (index, to_bits(ip)))
        });
        // Start either just after the last reservation, or at the first range's start.
        let (start_index, start_bits) = match position {
            Some((index, bits)) if bits < to_bits(ranges[index].end) => (index, bits + 1),
            Some((index, _)) => (
                (index + 1) % ranges.len(),
                to_bits(ranges[(index + 1) % ranges.len()].start),
            ),
            None => (0, to_bits(ranges[0].start)),
        };
        // Walk every range once from the starting point, then the skipped head of the first.
        let order = (0..=ranges.len()).map(move |step| (start_index + step) % ranges.len());
        order.enumerate().flat_map(move |(step, index)| {
            let range = &ranges[index];
            let (from, to) = match step {
                0 => (start_bits, to_bits(range.end)),
                s if s == ranges.len() => (to_bits(range.start), start_bits.saturating_sub(1)),
                _ => (to_bits(range.start), to_bits(range.end)),
            };
            let wrapped_head_empty = step == ranges.len() && start_bits == to_bits(range.start);
            let span = if wrapped_head_empty || to < from {
                None
            } else {
                Some(from..=to)
            };
            span.into_iter()
                .flatten()
                .map(move |bits| (from_bits(bits, range.start), range))
                .filter(|(ip, range)| *ip != range.gateway)
        })
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Range::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Validates every set, each given with the config field it came from, and that no two
/// sets overlap.
pub fn range_sets(labelled: &[(String, &[RangeConfig])]) -> Result<Vec<RangeSet>, ProtocolError> {
    let mut sets: Vec<RangeSet> = Vec::with_capacity(labelled.len());
    let mut seen = Disjoint::default();
    for (index, (field, configs)) in labelled.iter().enumerate() {
        let set = RangeSet::from_config(configs, field)?;
        if let Some(j) = set.0.iter().filter_map(|r| seen.first_overlap(r)).min() {
            return Err(ProtocolError::config(
                field.as_str(),
                format!("overlaps with {}", labelled[j].0),
            ));
        }
        for range in &set.0 {
            seen.insert(range, index);
        }
        sets.push(set);
    }
    Ok(sets)
}

/// The ranges accepted so far, pairwise disjoint, by family and first address, each with
/// the index of the range or set it came from. A new range is checked against its
/// neighbours in O(log n), not against every range: a 10 MB config holds hundreds of
/// thousands.
#[derive(Default)]
struct Disjoint(BTreeMap<(bool, u128), (u128, usize)>);

impl Disjoint {
    /// The first origin (in config order) of an accepted range that overlaps `range`.
    fn first_overlap(&self, range: &Range) -> Option<usize> {
        let family = range.start.is_ipv4();
        let (start, end) = (to_bits(range.start), to_bits(range.end));
        // Disjoint ranges sorted by start also end in order: of those starting before
        // `range`, only the last can reach into it. Every one starting inside it overlaps.
        let before = self
            .0
            .range(..(family, start))
            .next_back()
            .filter(|((f, _), (last, _))| *f == family && *last >= start);
        let inside = self.0.range((family, start)..=(family, end));
        before
            .into_iter()
            .chain(inside)
            .map(|(_, (_, origin))| *origin)
            .min()
    }

    fn insert(&mut self, range: &Range, origin: usize) {
        let key = (range.start.is_ipv4(), to_bits(range.start));
        self.0.insert(key, (to_bits(range.end), origin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subnet: &str) -> RangeConfig {
        RangeConfig {
            subnet: Some(subnet.parse().expect("cidr")),
            ..RangeConfig::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn defaults_match_the_reference() {
        let v4 = Range::from_config(&config("10.1.2.0/24"), "r").expect("valid");
        assert_eq!(
            (v4.start, v4.end, v4.gateway),
            (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))
        );
        assert_eq!(v4.capacity(), 253);
        let v6 = Range::from_config(&config("fd00::/120"), "r").expect("valid");
        assert_eq!((v6.start, v6.end), (ip("fd00::1"), ip("fd00::ff")));
    }

    #[test]
    fn refuses_bad_ranges_naming_the_field() {
        let err =
            Range::from_config(&config("10.1.2.5/24"), "ipam.ranges[0][0]").expect_err("host bits");
        assert!(
            err.to_string().contains("ipam.ranges[0][0].subnet"),
            "{err}"
        );
        assert!(Range::from_config(&config("10.1.2.0/31"), "r").is_err());
        assert!(Range::from_config(&config("fd00::/127"), "r").is_err());
        let outside = RangeConfig {
            range_start: Some(ip("10.9.9.9")),
            ..config("10.1.2.0/24")
        };
        let err = Range::from_config(&outside, "r").expect_err("outside");
        assert!(err.to_string().contains("r.rangeStart"), "{err}");
        let mixed = [config("10.1.0.0/24"), config("fd00::/64")];
        assert!(RangeSet::from_config(&mixed, "s").is_err());
        let overlap = [config("10.1.0.0/16"), config("10.1.2.0/24")];
        assert!(RangeSet::from_config(&overlap, "s").is_err());
        let (wide, narrow) = ([config("10.1.0.0/16")], [config("10.1.2.0/24")]);
        let err = range_sets(&[
            ("ranges[0]".into(), &wide[..]),
            ("ranges[1]".into(), &narrow[..]),
        ])
        .expect_err("overlap");
        assert!(
            err.to_string()
                .contains("ranges[1]: overlaps with ranges[0]"),
            "{err}"
        );
    }

    #[test]
    fn an_overlap_names_the_first_range_it_overlaps_in_config_order() {
        let set = [
            config("10.1.0.0/24"),
            config("10.1.1.0/24"),
            config("10.1.0.0/23"),
        ];
        let err = RangeSet::from_config(&set, "s").expect_err("overlap");
        assert!(
            err.to_string()
                .contains("subnets 10.1.0.0/24 and 10.1.0.0/23 overlap"),
            "{err}"
        );
        let (a, b, both) = (
            [config("10.1.0.0/24")],
            [config("10.1.1.0/24")],
            [config("10.9.0.0/24"), config("10.1.0.0/23")],
        );
        let err = range_sets(&[
            ("ranges[0]".into(), &a[..]),
            ("ranges[1]".into(), &b[..]),
            ("ranges[2]".into(), &both[..]),
        ])
        .expect_err("overlap");
        assert!(
            err.to_string()
                .contains("ranges[2]: overlaps with ranges[0]"),
            "{err}"
        );
    }

    #[test]
    fn huge_range_lists_validate_quickly() {
        // A 10 MB config holds some 350,000 ranges: checking each against every other one
        // takes minutes, and a runtime's ADD times out long before.
        let subnet = |i: u32| config(&format!("10.{}.{}.0/24", i / 256, i % 256));
        let first: Vec<RangeConfig> = (0..30_000).map(subnet).collect();
        let second: Vec<RangeConfig> = (30_000..60_000).map(subnet).collect();
        let started = std::time::Instant::now();
        let sets = range_sets(&[
            ("ranges[0]".into(), &first[..]),
            ("ranges[1]".into(), &second[..]),
        ])
        .expect("disjoint");
        assert_eq!(sets.len(), 2);
        let overlapping = [config("10.200.0.0/16")];
        let err = range_sets(&[
            ("ranges[0]".into(), &first[..]),
            ("ranges[1]".into(), &second[..]),
            ("ranges[2]".into(), &overlapping[..]),
        ])
        .expect_err("overlap");
        assert!(err.to_string().contains("overlaps with ranges[1]"), "{err}");
        let elapsed = started.elapsed();
        assert!(
            elapsed < std::time::Duration::from_secs(10),
            "60,000 ranges took {elapsed:?}"
        );
    }

    #[test]
    fn candidates_round_robin_across_ranges_and_skip_gateways() {
        let narrow = |subnet: &str, start: &str, end: &str| RangeConfig {
            range_start: Some(ip(start)),
            range_end: Some(ip(end)),
            ..config(subnet)
        };
        let set = RangeSet::from_config(
            &[
                narrow("10.0.0.0/24", "10.0.0.1", "10.0.0.3"),
                narrow("10.0.1.0/24", "10.0.1.5", "10.0.1.6"),
            ],
            "s",
        )
        .expect("valid");
        let order = |last: Option<&str>| -> Vec<String> {
            set.candidates(last.map(ip))
                .map(|(a, _)| a.to_string())
                .collect()
        };
        assert_eq!(
            order(None),
            ["10.0.0.2", "10.0.0.3", "10.0.1.5", "10.0.1.6"]
        );
        assert_eq!(
            order(Some("10.0.0.2")),
            ["10.0.0.3", "10.0.1.5", "10.0.1.6", "10.0.0.2"]
        );
        assert_eq!(
            order(Some("10.0.1.6")),
            ["10.0.0.2", "10.0.0.3", "10.0.1.5", "10.0.1.6"]
        );
        assert_eq!(order(Some("192.168.0.1")), order(None));
    }
}
