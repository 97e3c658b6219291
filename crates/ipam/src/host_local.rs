//! host-local: allocates addresses from configured ranges, recording them in the on-disk
//! [`Store`] under its lock for the whole operation.

use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use super::range::{range_sets, RangeConfig, RangeSet};
use super::store::{Reservation, Store};
use super::{parse_requested_ips, resolv, ArgsSection, IpamError};
use cni::skel::{self, Attachment, Request};
use cni::Result;
use cni::{
    AttachmentId, CniArgs, CniResult, IpConfig, ProtocolError, Route, ValidAttachments, Version,
};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    ipam: Option<IpamSection>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
    args: ArgsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpamSection {
    routes: Vec<Route>,
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
    #[serde(rename = "resolvConf")]
    resolv_conf: Option<PathBuf>,
    ranges: Vec<Vec<RangeConfig>>,
    // The older single-range form, with its keys directly under `ipam`.
    subnet: Option<IpNetwork>,
    #[serde(rename = "rangeStart")]
    range_start: Option<IpAddr>,
    #[serde(rename = "rangeEnd")]
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    ips: Vec<String>,
    #[serde(rename = "ipRanges")]
    ip_ranges: Vec<Vec<RangeConfig>>,
}

/// A validated host-local configuration.
#[derive(Debug)]
pub struct HostLocal {
    network: String,
    data_dir: PathBuf,
    sets: Vec<RangeSet>,
    routes: Vec<Route>,
    resolv_conf: Option<PathBuf>,
    /// Addresses the runtime asked for (CNI_ARGS `IP`, `args.cni.ips`, `runtimeConfig.ips`).
    requested: Vec<IpAddr>,
}

impl HostLocal {
    /// Reads and validates the config. Range sets come in the reference's order:
    /// `runtimeConfig.ipRanges`, then the legacy `ipam.subnet` range, then `ipam.ranges`.
    pub fn load(request: &Request, cni_args: Option<&CniArgs>) -> Result<HostLocal> {
        let conf: Conf = request.plugin_config()?;
        let ipam = conf
            .ipam
            .ok_or_else(|| ProtocolError::config("ipam", "IPAM config missing 'ipam' key"))?;

        let legacy = ipam.subnet.map(|subnet| {
            [RangeConfig {
                subnet: Some(subnet),
                range_start: ipam.range_start,
                range_end: ipam.range_end,
                gateway: ipam.gateway,
            }]
        });
        let mut labelled: Vec<(String, &[RangeConfig])> = Vec::new();
        for (i, set) in conf.runtime_config.ip_ranges.iter().enumerate() {
            labelled.push((format!("runtimeConfig.ipRanges[{i}]"), set));
        }
        if let Some(legacy) = &legacy {
            labelled.push(("ipam".to_string(), legacy));
        }
        for (i, set) in ipam.ranges.iter().enumerate() {
            labelled.push((format!("ipam.ranges[{i}]"), set));
        }
        if labelled.is_empty() {
            return Err(ProtocolError::config("ipam.ranges", "no IP ranges specified").into());
        }
        let sets = range_sets(&labelled)?;

        let v4_sets = sets.iter().filter(|s| s.is_ipv4()).count();
        if (v4_sets > 1 || sets.len() - v4_sets > 1) && request.version < Version::V0_3_0 {
            return Err(ProtocolError::OneAddressPerFamily {
                version: request.version,
                field: "ipam.ranges",
            }
            .into());
        }

        let mut requested = Vec::new();
        // An empty `IP=` requests nothing, as in the reference.
        if let Some(value) = cni_args
            .and_then(|args| args.get("IP"))
            .filter(|v| !v.is_empty())
        {
            let items: Vec<String> = value.split(',').map(str::to_string).collect();
            requested.extend(parse_requested_ips(&items, "CNI_ARGS IP")?);
        }
        requested.extend(parse_requested_ips(&conf.args.cni.ips, "args.cni.ips")?);
        requested.extend(parse_requested_ips(
            &conf.runtime_config.ips,
            "runtimeConfig.ips",
        )?);
        let mut seen = HashSet::new();
        requested.retain(|ip| seen.insert(*ip));

        let data_dir = cni::config::data_dir("ipam.dataDir", ipam.data_dir, DEFAULT_DATA_DIR)?;

        Ok(HostLocal {
            network: request.conf.name.clone(),
            data_dir,
            sets,
            routes: ipam.routes,
            resolv_conf: ipam.resolv_conf.filter(|path| !path.as_os_str().is_empty()),
            requested,
        })
    }

    fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.data_dir, &self.network)?)
    }

    /// Allocates one address per range set. On any failure every address claimed by this
    /// call is released again.
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<CniResult> {
        let dns = match &self.resolv_conf {
            Some(path) => resolv::load(path)?,
            None => Default::default(),
        };
        let store = self.store()?;
        let held = store.held_by(container_id, ifname)?;
        let mut claimed = Vec::new();
        let outcome = self.allocate_locked(&store, &held, container_id, ifname, &mut claimed);
        match outcome {
            Ok(ips) => Ok(CniResult {
                ips,
                routes: self.routes.clone(),
                dns,
                ..CniResult::default()
            }),
            Err(error) => {
                for ip in claimed {
                    // Best effort: the original failure is what the caller needs to see.
                    let _ = store.release(&Reservation {
                        ip,
                        container_id: container_id.to_string(),
                        ifname: Some(ifname.to_string()),
                    });
                }
                Err(error)
            }
        }
    }

    fn allocate_locked(
        &self,
        store: &Store,
        held: &[Reservation],
        container_id: &str,
        ifname: &str,
        claimed: &mut Vec<IpAddr>,
    ) -> Result<Vec<IpConfig>> {
        let mut unfulfilled = self.requested.clone();
        let mut ips = Vec::with_capacity(self.sets.len());
        for (index, set) in self.sets.iter().enumerate() {
            let requested = unfulfilled
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|at| unfulfilled.remove(at));
            let (ip, range) = match requested {
                Some(ip) => {
                    let range = set.range_for(ip).ok_or(IpamError::RequestedNotInRange {
                        ip,
                        field: "ipam.ranges",
                    })?;
                    if ip == range.gateway {
                        return Err(IpamError::RequestedIsGateway(ip).into());
                    }
                    if !store.reserve(ip, container_id, ifname)? {
                        return Err(IpamError::RequestedTaken {
                            ip,
                            range_set: set.to_string(),
                        }
                        .into());
                    }
                    (ip, range)
                }
                None => {
                    if let Some(held) = held.iter().find(|r| set.contains(r.ip)) {
                        return Err(IpamError::Duplicate {
                            ip: held.ip,
                            container_id: container_id.to_string(),
                        }
                        .into());
                    }
                    let candidates = set.candidates(store.last_reserved(index));
                    store
                        .reserve_first(candidates, container_id, ifname)?
                        .ok_or_else(|| IpamError::Exhausted {
                            range_set: set.to_string(),
                        })?
                }
            };
            claimed.push(ip);
            store.set_last_reserved(index, ip)?;
            let address = IpNetwork::new(ip, range.subnet.prefix())
                .map_err(|e| ProtocolError::config("ipam.ranges", e.to_string()))?;
            ips.push(IpConfig {
                interface: None,
                address,
                gateway: Some(range.gateway),
            });
        }
        if !unfulfilled.is_empty() {
            return Err(IpamError::Unfulfilled(unfulfilled).into());
        }
        Ok(ips)
    }

    /// Releases every address of the attachment; releasing nothing is not an error.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<()> {
        let store = self.store()?;
        for reservation in store.held_by(container_id, ifname)? {
            store.release(&reservation)?;
        }
        Ok(())
    }

    pub fn check(&self, container_id: &str, ifname: &str) -> Result<()> {
        if self.store()?.held_by(container_id, ifname)?.is_empty() {
            return Err(IpamError::NotReserved {
                container_id: container_id.to_string(),
                ifname: ifname.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// Releases every reservation whose attachment is not in `valid`, continuing past
    /// failures and reporting the first. Legacy reservations (no ifname) stay while any
    /// valid attachment has their container ID.
    pub fn gc(&self, valid: &ValidAttachments) -> Result<()> {
        let store = self.store()?;
        let mut first_error = None;
        for reservation in store.reservations()? {
            let keep = match &reservation.ifname {
                Some(ifname) => valid.contains(&AttachmentId::new(
                    &*self.network,
                    &*reservation.container_id,
                    &**ifname,
                )),
                None => valid.has_container(&reservation.container_id),
            };
            if !keep {
                if let Err(e) = store.release(&reservation) {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Err(e) = store.remove_stale_temporaries() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Fails with "not available" when some range set has no free address left.
    pub fn status(&self) -> Result<()> {
        let store = self.store()?;
        let reservations = store.reservations()?;
        for set in &self.sets {
            let capacity: u128 = set.0.iter().map(|r| r.capacity()).sum();
            let used = reservations
                .iter()
                .filter(|r| {
                    set.range_for(r.ip)
                        .is_some_and(|range| range.gateway != r.ip)
                })
                .count();
            if u128::try_from(used).unwrap_or(u128::MAX) >= capacity {
                return Err(IpamError::NoFreeAddress {
                    range_set: set.to_string(),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// The host-local plugin: what the `host-local` binary runs, and what ferrocni's plugins run
/// in-process when the `host-local` on `CNI_PATH` is ferrocni's own (see [`cni::invoke`]).
pub struct HostLocalPlugin;

impl skel::Plugin for HostLocalPlugin {
    fn about(&self) -> &'static str {
        "CNI host-local IPAM plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        HostLocal::load(request, Some(&attachment.args()?))?
            .allocate(&attachment.id.container_id, &attachment.id.ifname)
    }

    /// Releases by container and interface: the requested addresses of CNI_ARGS play no
    /// part, so their text cannot fail a DEL.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        HostLocal::load(request, None)?.release(&attachment.id.container_id, &attachment.id.ifname)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        HostLocal::load(request, None)?.check(&attachment.id.container_id, &attachment.id.ifname)
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        HostLocal::load(request, None)?.gc(valid)
    }

    fn status(&self, request: &Request) -> Result<()> {
        HostLocal::load(request, None)?.status()
    }
}
