//! A lease as a server granted it: the CNI result it makes, and when it must be renewed,
//! rebound or given up (RFC 2131 §4.4.5), as pure functions of the clock.

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::message::{option, Message};
use super::DhcpError;
use cni::{CniResult, Dns, IpConfig, Route};

/// A server that names no lease time (RFC 2131 says it must) gets an hour, as the
/// reference assumes, rather than a lease that is never renewed.
const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
/// Shorter leases are taken to be this long: a zero lease would renew in a tight loop.
const SHORTEST_LEASE: Duration = Duration::from_secs(2);
/// After a failed renewal, never try again sooner than this (RFC 2131 §4.4.5), unless the
/// next deadline comes first.
const RETRY_AT_LEAST: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Network,
    pub server: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Option 121 routes, else option 33 routes (classful host routes).
    pub routes: Vec<(Ipv4Network, Option<Ipv4Addr>)>,
    pub classless: bool,
    pub lease_time: Duration,
    pub renew_after: Duration,
    pub rebind_after: Duration,
}

/// What a lease's keeper does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until then.
    Wait(Instant),
    /// Ask to extend the lease: unicast to its server while renewing (before T2), broadcast
    /// to any server while rebinding. This attempt gives up at `until`.
    Extend { rebinding: bool, until: Instant },
    /// The lease ran out: its address must no longer be used.
    Expired,
}

impl Lease {
    pub fn from_ack(ack: &Message) -> Result<Lease, DhcpError> {
        let server = ack
            .address_option(option::SERVER_ID)
            .ok_or(DhcpError::Malformed("an ACK without a server identifier"))?;
        if ack.yiaddr.is_unspecified() || ack.yiaddr.is_broadcast() {
            return Err(DhcpError::Malformed("an ACK without an address"));
        }
        let mask = ack
            .address_option(option::SUBNET_MASK)
            .unwrap_or_else(|| classful_mask(ack.yiaddr));
        let address = Ipv4Network::new(ack.yiaddr, prefix_of(mask))
            .map_err(|_| DhcpError::Malformed("an ACK with an invalid subnet mask"))?;
        let lease_time = ack
            .seconds_option(option::LEASE_TIME)
            .unwrap_or(DEFAULT_LEASE)
            .max(SHORTEST_LEASE);
        let (mut renew_after, mut rebind_after) = (
            ack.seconds_option(option::RENEWAL_TIME)
                .unwrap_or(lease_time / 2),
            ack.seconds_option(option::REBINDING_TIME)
                .unwrap_or(lease_time * 7 / 8),
        );
        // T1 < T2 < lease time, or the keeper would renew in a loop or sleep past expiry.
        if renew_after.is_zero() || renew_after >= rebind_after || rebind_after >= lease_time {
            (renew_after, rebind_after) = (lease_time / 2, lease_time * 7 / 8);
        }
        let dns = ack
            .option(option::DNS_SERVERS)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        let domain = ack
            .option(option::DOMAIN_NAME)
            .map(|d| {
                String::from_utf8_lossy(d)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .filter(|d| !d.is_empty());
        let classless = ack
            .option(option::CLASSLESS_ROUTES)
            .and_then(classless_routes)
            .filter(|routes| !routes.is_empty());
        let routes = match &classless {
            Some(routes) => routes.clone(),
            None => ack
                .option(option::STATIC_ROUTES)
                .unwrap_or_default()
                .chunks_exact(8)
                .filter_map(|c| {
                    let dst = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                    let network = network(dst, prefix_of(classful_mask(dst)))?;
                    Some((network, Some(Ipv4Addr::new(c[4], c[5], c[6], c[7]))))
                })
                .collect(),
        };
        Ok(Lease {
            address,
            server,
            router: ack.address_option(option::ROUTER),
            dns,
            domain,
            routes,
            classless: classless.is_some(),
            lease_time,
            renew_after,
            rebind_after,
        })
    }

    /// The CNI result the reference gives: the address with the router as gateway; option
    /// 121 routes alone when there are any (RFC 3442: they replace the router and option 33),
    /// else option 33 routes plus a default route via the router. Routes without a gateway
    /// are on-link. `priority` is the config's route metric.
    pub fn result(&self, priority: Option<u32>) -> CniResult {
        let mut routes: Vec<Route> = self
            .routes
            .iter()
            .map(|(dst, gw)| {
                let gw = gw.filter(|g| !g.is_unspecified()).map(IpAddr::V4);
                Route {
                    scope: gw.is_none().then_some(kernel::netlink::SCOPE_LINK),
                    priority,
                    ..Route::via(IpNetwork::V4(*dst), gw)
                }
            })
            .collect();
        if let (Some(router), false) = (self.router, self.classless) {
            let default = Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is a prefix");
            routes.push(Route {
                priority,
                ..Route::via(IpNetwork::V4(default), Some(IpAddr::V4(router)))
            });
        }
        CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: IpNetwork::V4(self.address),
                gateway: self.router.map(IpAddr::V4),
            }],
            routes,
            dns: Dns {
                nameservers: self.dns.iter().map(ToString::to_string).collect(),
                domain: self.domain.clone().unwrap_or_default(),
                ..Dns::default()
            },
            ..CniResult::default()
        }
    }

    /// What to do at `now` for this lease, granted at `granted`, when the last attempt to
    /// extend it failed, an attempt begun at `failed`: wait until T1, renew until T2, rebind
    /// until expiry. After a failure, wait half the time the failed attempt had left to the
    /// deadline of its state, at least a minute, but never past that deadline: an attempt
    /// that ran out at T2 is followed at once by rebinding.
    pub fn next(&self, granted: Instant, now: Instant, failed: Option<Instant>) -> Next {
        let renew_at = granted + self.renew_after;
        let rebind_at = granted + self.rebind_after;
        let expires_at = granted + self.lease_time;
        let deadline_at = |at: Instant| {
            if at < rebind_at {
                rebind_at
            } else {
                expires_at
            }
        };
        if now >= expires_at {
            return Next::Expired;
        }
        if now < renew_at {
            return Next::Wait(renew_at);
        }
        if let Some(failed) = failed {
            let deadline = deadline_at(failed);
            let pause = (deadline.saturating_duration_since(failed) / 2).max(RETRY_AT_LEAST);
            let retry_at = (failed + pause).min(deadline);
            if now < retry_at {
                return Next::Wait(retry_at);
            }
        }
        Next::Extend {
            rebinding: now >= rebind_at,
            until: deadline_at(now),
        }
    }
}

/// RFC 3442: each route is a prefix length, the significant octets of the destination, and
/// a router (0.0.0.0 for on-link). Host bits a server leaves in the destination are cleared:
/// the kernel refuses such a route.
fn classless_routes(value: &[u8]) -> Option<Vec<(Ipv4Network, Option<Ipv4Addr>)>> {
    let mut routes = Vec::new();
    let mut rest = value;
    while let [prefix, tail @ ..] = rest {
        if *prefix > 32 {
            return None;
        }
        let significant = usize::from(prefix.div_ceil(8));
        let destination = tail.get(..significant)?;
        let router = tail.get(significant..significant + 4)?;
        let mut octets = [0u8; 4];
        octets[..significant].copy_from_slice(destination);
        let network = network(Ipv4Addr::from(octets), *prefix)?;
        let router = Ipv4Addr::new(router[0], router[1], router[2], router[3]);
        routes.push((network, (!router.is_unspecified()).then_some(router)));
        rest = &tail[significant + 4..];
    }
    Some(routes)
}

/// The network of `address` with `prefix` bits, host bits cleared.
fn network(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Network> {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Network::new(Ipv4Addr::from(u32::from(address) & mask), prefix).ok()
}

fn prefix_of(mask: Ipv4Addr) -> u8 {
    u32::from(mask).leading_ones() as u8
}

fn classful_mask(address: Ipv4Addr) -> Ipv4Addr {
    match address.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp4::message::tests::ack;

    #[test]
    fn a_lease_becomes_the_reference_result() {
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::SUBNET_MASK, vec![255, 255, 255, 0]),
            (option::ROUTER, vec![10, 9, 0, 1]),
            (option::DNS_SERVERS, vec![10, 9, 0, 53, 10, 9, 0, 54]),
            (option::DOMAIN_NAME, b"lab.example".to_vec()),
            (option::LEASE_TIME, 600u32.to_be_bytes().to_vec()),
        ]))
        .expect("lease");
        assert_eq!(lease.renew_after, Duration::from_secs(300));
        assert_eq!(lease.rebind_after, Duration::from_secs(525));
        let result = serde_json::to_value(lease.result(Some(5))).expect("json");
        assert_eq!(result["ips"][0]["address"], "10.9.0.23/24");
        assert_eq!(result["ips"][0]["gateway"], "10.9.0.1");
        assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(result["routes"][0]["gw"], "10.9.0.1");
        assert_eq!(result["routes"][0]["priority"], 5);
        assert_eq!(result["dns"]["nameservers"][1], "10.9.0.54");
        assert_eq!(result["dns"]["domain"], "lab.example");
    }

    #[test]
    fn classless_routes_replace_the_router_and_static_routes() {
        // 10.20.0.0/16 via 10.9.0.2, 192.168.7.0/24 on-link.
        let classless = vec![16, 10, 20, 10, 9, 0, 2, 24, 192, 168, 7, 0, 0, 0, 0];
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::ROUTER, vec![10, 9, 0, 1]),
            (option::STATIC_ROUTES, vec![10, 30, 0, 0, 10, 9, 0, 3]),
            (option::CLASSLESS_ROUTES, classless),
        ]))
        .expect("lease");
        let result = serde_json::to_value(lease.result(None)).expect("json");
        let routes = result["routes"].as_array().expect("routes");
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert_eq!(routes[0]["dst"], "10.20.0.0/16");
        assert_eq!(routes[0]["gw"], "10.9.0.2");
        assert_eq!(routes[1]["dst"], "192.168.7.0/24");
        assert!(routes[1]["gw"].is_null());
        assert_eq!(routes[1]["scope"], 253);
        // The address still takes a classful mask without option 1.
        assert_eq!(result["ips"][0]["address"], "10.9.0.23/8");
    }

    #[test]
    fn static_routes_come_with_a_default_route() {
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::ROUTER, vec![10, 9, 0, 1]),
            (option::STATIC_ROUTES, vec![172, 16, 4, 0, 10, 9, 0, 3]),
        ]))
        .expect("lease");
        let result = serde_json::to_value(lease.result(None)).expect("json");
        assert_eq!(result["routes"][0]["dst"], "172.16.0.0/16");
        assert_eq!(result["routes"][1]["dst"], "0.0.0.0/0");
    }

    #[test]
    fn host_bits_of_classless_routes_are_cleared() {
        // 10.20.0.0/12 sent as 10.20 (host bits set in the second octet).
        let lease = Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::CLASSLESS_ROUTES, vec![12, 10, 20, 10, 9, 0, 2]),
        ]))
        .expect("lease");
        assert_eq!(lease.routes[0].0.to_string(), "10.16.0.0/12");
    }

    fn timed(lease: u32, renew: u32, rebind: u32) -> Lease {
        Lease::from_ack(&ack(vec![
            (option::SERVER_ID, vec![10, 9, 0, 1]),
            (option::LEASE_TIME, lease.to_be_bytes().to_vec()),
            (option::RENEWAL_TIME, renew.to_be_bytes().to_vec()),
            (option::REBINDING_TIME, rebind.to_be_bytes().to_vec()),
        ]))
        .expect("lease")
    }

    #[test]
    fn times_out_of_order_fall_back_to_the_rfc_defaults() {
        for (renew, rebind) in [(0, 500), (600, 500), (300, 600), (300, 700)] {
            let lease = timed(600, renew, rebind);
            assert_eq!(
                lease.renew_after,
                Duration::from_secs(300),
                "{renew} {rebind}"
            );
            assert_eq!(
                lease.rebind_after,
                Duration::from_secs(525),
                "{renew} {rebind}"
            );
        }
        let lease = timed(0, 0, 0);
        assert_eq!(lease.lease_time, SHORTEST_LEASE);
        assert!(lease.renew_after > Duration::ZERO);
        let lease =
            Lease::from_ack(&ack(vec![(option::SERVER_ID, vec![10, 9, 0, 1])])).expect("lease");
        assert_eq!(lease.lease_time, DEFAULT_LEASE);
    }

    #[test]
    fn renews_then_rebinds_then_expires() {
        let lease = timed(600, 300, 525);
        let granted = Instant::now();
        let at = |secs: u64| granted + Duration::from_secs(secs);
        assert_eq!(lease.next(granted, at(10), None), Next::Wait(at(300)));
        assert_eq!(
            lease.next(granted, at(300), None),
            Next::Extend {
                rebinding: false,
                until: at(525)
            }
        );
        assert_eq!(
            lease.next(granted, at(530), None),
            Next::Extend {
                rebinding: true,
                until: at(600)
            }
        );
        assert_eq!(lease.next(granted, at(600), None), Next::Expired);
    }

    /// A renewal begun at 300 s that failed (its server is down) is tried again halfway to
    /// T2, and one begun then that runs out at T2 is followed at once by a broadcast (a client
    /// that renewed by unicast until expiry would never ask another server).
    #[test]
    fn a_failed_renewal_waits_for_the_next_state_and_at_least_a_minute() {
        let lease = timed(600, 300, 525);
        let granted = Instant::now();
        let at = |secs: u64| granted + Duration::from_secs(secs);
        assert_eq!(
            lease.next(granted, at(400), Some(at(300))),
            Next::Wait(at(412) + Duration::from_millis(500))
        );
        assert_eq!(
            lease.next(granted, at(508), Some(at(300))),
            Next::Extend {
                rebinding: false,
                until: at(525)
            }
        );
        assert_eq!(
            lease.next(granted, at(525), Some(at(508))),
            Next::Extend {
                rebinding: true,
                until: at(600)
            }
        );
        // Early in renewing: half the time left to T2.
        assert_eq!(
            lease.next(granted, at(301), Some(at(301))),
            Next::Wait(at(413))
        );
        // Late in rebinding: a minute would pass expiry, so expiry it is.
        assert_eq!(
            lease.next(granted, at(580), Some(at(580))),
            Next::Wait(at(600))
        );
        assert_eq!(lease.next(granted, at(600), Some(at(580))), Next::Expired);
        // A long lease: at least a minute between attempts.
        let long = timed(100_000, 1_000, 90_000);
        assert_eq!(
            long.next(granted, at(89_990), Some(at(89_990))),
            Next::Wait(at(90_000))
        );
        assert_eq!(
            long.next(granted, at(89_900), Some(at(89_900))),
            Next::Wait(at(89_960))
        );
    }
}
