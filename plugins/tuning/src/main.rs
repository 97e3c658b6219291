//! tuning: changes sysctls and link settings of a container interface made by an earlier
//! plugin in the chain, recording the originals so DEL restores them.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use kernel::netlink::{Link, Netlink, NetlinkError};
use kernel::netns::{Netns, NetnsError};
use netlib::attachment;
use netlib::state::Store;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tuning::{sysctl_key, Record, Settings};

const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";

/// The tunable keys, at the top level of the config and under `args.cni`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tunables {
    sysctl: BTreeMap<String, String>,
    mac: Option<String>,
    mtu: Option<u32>,
    promisc: Option<bool>,
    allmulti: Option<bool>,
    #[serde(rename = "txQLen")]
    txqlen: Option<u32>,
    #[serde(rename = "ifName")]
    ifname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: MacOnly,
    args: ArgsHolder,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MacOnly {
    mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ArgsHolder {
    cni: Tunables,
}

/// Reads the config into what to change and where records live. `args.cni` overrides the
/// config's own keys; the MAC comes from runtimeConfig, args, CNI_ARGS, then the config.
fn load(request: &Request, attachment: &Attachment) -> Result<(Settings, Store)> {
    let top: Tunables = request.plugin_config()?;
    let raw: Raw = request.plugin_config()?;
    let args = raw.args.cni;
    // `args.cni.mtu` wins even when 0, which then leaves the MTU alone, as in the reference.
    let (mtu, mtu_field) = match args.mtu {
        Some(mtu) => (Some(mtu), "args.cni.mtu"),
        None => (top.mtu, "mtu"),
    };
    let mut settings = Settings {
        mtu: cni::config::link_mtu(mtu_field, mtu)?,
        promisc: args.promisc.or(top.promisc),
        allmulti: args.allmulti.or(top.allmulti),
        txqlen: args.txqlen.or(top.txqlen),
        ..Settings::default()
    };
    for (key, value) in top.sysctl.iter().chain(args.sysctl.iter()) {
        let key = sysctl_key(key, &attachment.id.ifname)?;
        settings.sysctls.insert(key, value.clone());
    }
    if let Some(mac) = attachment::requested_mac(request, attachment, top.mac)? {
        settings.mac = Some(mac.to_string());
    }
    if let Some(name) = args.ifname.or(top.ifname) {
        cni::config::validate_ifname(&name)
            .map_err(|e| ProtocolError::config("ifName", e.with_details()))?;
        settings.name = Some(name);
    }
    Ok((settings, records(request)?))
}

/// Where the records live: all that DEL and GC read of the config, so that nothing they do
/// not use (CNI_ARGS, the settings to apply) can fail them.
fn records(request: &Request) -> Result<Store> {
    let raw: Raw = request.plugin_config()?;
    Ok(Store::configured(raw.data_dir, DEFAULT_DATA_DIR)?)
}

/// The interface ADD tuned: under the name its record gives, or still under `ifname` when
/// an ADD died before its rename (the rename comes last).
fn tuned_link(
    netlink: &mut Netlink,
    record: Option<&Record>,
    ifname: &str,
) -> Result<Option<Link>> {
    if let Some(record) = record {
        if let Some(link) = netlink.link_by_name(&record.current_name)? {
            return Ok(Some(link));
        }
    }
    Ok(netlink.link_by_name(ifname)?)
}

struct Tuning;

impl Plugin for Tuning {
    fn about(&self) -> &'static str {
        "CNI tuning plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let (wanted, records) = load(request, attachment)?;
        let mut result = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let netns = Netns::open(attachment.required_netns()?)?;
        let mut netlink = Netlink::open_in(&netns)?;
        let key = &attachment.id;
        // A repeated ADD (a runtime's retry) keeps the values from before the first: taking
        // the tuned ones for originals would leave DEL nothing to restore.
        let earlier: Option<Record> = records.load(key)?;
        let mut link = tuned_link(&mut netlink, earlier.as_ref(), &attachment.id.ifname)?
            .ok_or_else(|| NetlinkError::LinkNotFound(attachment.id.ifname.clone()))?;
        if link.name != attachment.id.ifname {
            // The first ADD got as far as its rename: take the runtime's name back, so the
            // sysctl keys (which name the interface by it) and the rest apply as the first time.
            netlink.rename(&link, &attachment.id.ifname)?;
            link = netlink.link(&attachment.id.ifname)?;
        }
        let current = Settings::current(&netns, &link, &wanted)?;
        let original = match earlier {
            Some(earlier) => earlier.original.or(current),
            None => current,
        };
        let record = Record {
            current_name: wanted
                .name
                .clone()
                .unwrap_or_else(|| attachment.id.ifname.clone()),
            original: original.clone(),
        };
        // Recorded before anything changes, so a DEL can restore even after a crash here.
        records.save(key, &record)?;
        let mut undo = Undo::new();
        undo.push("the tuning", || {
            let mut netlink = Netlink::open_in(&netns)?;
            if let Some(now) = netlink.link_by_index(link.index)? {
                original.restore(&netns, &mut netlink, &now, &attachment.id.ifname)?;
            }
            Ok(records.remove(key)?)
        });
        // A rename takes the link down on the way: it ends as it was before the first ADD.
        let applied = Settings {
            up: original.up,
            ..wanted.clone()
        };
        applied.apply(&netns, &mut netlink, &link, &attachment.id.ifname)?;
        undo.commit();
        for interface in result
            .interfaces
            .iter_mut()
            .filter(|i| i.name == attachment.id.ifname && !i.sandbox.is_empty())
        {
            if let Some(mac) = &wanted.mac {
                interface.mac.clone_from(mac);
            }
            if let Some(name) = &wanted.name {
                interface.name.clone_from(name);
            }
        }
        Ok(result)
    }

    /// Puts the recorded originals back. With the namespace gone there is nothing to restore,
    /// only the record to forget.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let records = records(request)?;
        let key = &attachment.id;
        let Some(record) = records.load::<Record>(key)? else {
            return Ok(());
        };
        let mut restored = Ok(());
        if let Some(path) = &attachment.netns {
            match Netns::open(path) {
                Err(NetnsError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
                Ok(netns) => {
                    let mut netlink = Netlink::open_in(&netns)?;
                    if let Some(link) =
                        tuned_link(&mut netlink, Some(&record), &attachment.id.ifname)?
                    {
                        restored = record.original.restore(
                            &netns,
                            &mut netlink,
                            &link,
                            &attachment.id.ifname,
                        );
                    }
                }
            }
        }
        // Every value has had its try: one the kernel refuses now it would refuse on every
        // retry, and a DEL that keeps failing keeps the chain's later DELs (the interface,
        // its address) from ever running. So the record goes, and the failure is reported
        // once.
        records.remove(key)?;
        restored
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let (wanted, _) = load(request, attachment)?;
        request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let netns = Netns::open(attachment.required_netns()?)?;
        let name = wanted
            .name
            .clone()
            .unwrap_or_else(|| attachment.id.ifname.clone());
        let link = Netlink::open_in(&netns)?.link(&name)?;
        let differences = wanted.differences(&netns, &link, &attachment.id.ifname)?;
        if !differences.is_empty() {
            return Err(Failure::Check(differences.join("; ")).into());
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        Ok(records(request)?.gc(valid)?)
    }

    /// Needs no daemon and allocates nothing.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&Tuning)
}
