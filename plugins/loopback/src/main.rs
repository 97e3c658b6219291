//! loopback: sets `lo` up inside the container's namespace (ADD) and down again (DEL).

use cni::skel::{self, Attachment, Plugin, Request};
use cni::{CniResult, Failure, Interface, IpConfig, Result, ValidAttachments};
use kernel::netlink::Netlink;
use kernel::netns::{Netns, NetnsError};

struct Loopback;

impl Plugin for Loopback {
    fn about(&self) -> &'static str {
        "CNI loopback plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let netns = Netns::open(attachment.required_netns()?)?;
        let mut netlink = Netlink::open_in(&netns)?;
        let lo = netlink.link("lo")?;
        netlink.set_link_up(lo.index, true)?;
        // Chained after another plugin, loopback passes its result on unchanged.
        if let Some(previous) = request.prev_result()? {
            return Ok(previous);
        }
        let ips = netlink
            .addresses(lo.index)?
            .into_iter()
            .filter(|address| address.ip().is_loopback())
            .map(|address| IpConfig {
                interface: Some(0),
                address,
                gateway: None,
            })
            .collect();
        Ok(CniResult {
            interfaces: vec![Interface {
                // The reference reports `lo` whatever CNI_IFNAME says; so do we.
                name: "lo".to_string(),
                mac: "00:00:00:00:00:00".to_string(),
                sandbox: netns.path().display().to_string(),
                ..Interface::default()
            }],
            ips,
            ..CniResult::default()
        })
    }

    fn del(&self, _request: &Request, attachment: &Attachment) -> Result<()> {
        let Some(path) = &attachment.netns else {
            return Ok(());
        };
        let netns = match Netns::open(path) {
            Err(NetnsError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let mut netlink = Netlink::open_in(&netns)?;
        if let Some(lo) = netlink.link_by_name("lo")? {
            netlink.set_link_up(lo.index, false)?;
        }
        Ok(())
    }

    fn check(&self, _request: &Request, attachment: &Attachment) -> Result<()> {
        let netns = Netns::open(attachment.required_netns()?)?;
        let lo = Netlink::open_in(&netns)?.link("lo")?;
        if !lo.up {
            return Err(Failure::Check("loopback interface is down".to_string()).into());
        }
        Ok(())
    }

    /// Nothing to collect: everything loopback touches lives and dies with the namespace.
    fn gc(&self, _request: &Request, _valid: &ValidAttachments) -> Result<()> {
        Ok(())
    }

    /// Needs no daemon and no addresses, so it can always serve ADD.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&Loopback)
}
