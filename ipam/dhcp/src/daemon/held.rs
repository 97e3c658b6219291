//! A lease the daemon holds: what it records (enough to take the lease up again after a
//! restart), the signal that stops its keeper, and the container interface it is for.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::lock;
use super::slots::Leased;
use crate::dhcp4::{Client, ClientOptions, DhcpError, Lease};
use cni::{AttachmentId, CniResult};
use kernel::netlink::{Link, Netlink};
use kernel::netns::{Netns, NetnsError};
use netlib::state;

/// What survives a restart of the daemon: enough to renew, release or report the lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    /// As this daemon sees it (under `-hostprefix`).
    pub(super) netns: PathBuf,
    pub(super) mac: [u8; 6],
    pub(super) options: ClientOptions,
    pub(super) priority: Option<u32>,
    pub(super) lease: Lease,
    /// When the request the server granted was sent, by the wall clock: instants do not
    /// survive a restart.
    pub(super) granted_at: SystemTime,
}

/// The daemon opens the namespace a record names and brings the interface up there: the
/// plugin sends it as an absolute path, so a record with any other names no namespace it sent.
impl state::Record for Record {
    fn check(&self) -> Result<(), String> {
        if self.netns.is_relative() {
            return Err(format!("netns {:?} is not an absolute path", self.netns));
        }
        Ok(())
    }
}

impl Record {
    /// The container's interface `ifname`, if it is still the one the lease is for (same
    /// MAC in the same namespace path): a path or a name may have been reused since.
    pub(super) fn link(&self, ifname: &str) -> Result<(Netns, Netlink, Link), DhcpError> {
        let netns = Netns::open(&self.netns)?;
        let (netlink, link) = container_link(&netns, ifname)?;
        if link.mac.map(|m| m.0) != Some(self.mac) {
            return Err(DhcpError::Gone(ifname.to_string()));
        }
        Ok((netns, netlink, link))
    }
}

/// Tells a lease's keeper to stop, and wakes it from its sleep.
#[derive(Default)]
pub(super) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub(super) fn stop(&self) {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    pub(super) fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps until `when`; false when told to stop first.
    pub(super) fn sleep_until(&self, when: Instant) -> bool {
        let mut stopped = lock(&self.stopped);
        loop {
            if *stopped {
                return false;
            }
            let now = Instant::now();
            if now >= when {
                return true;
            }
            stopped = match self.wake.wait_timeout(stopped, when - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A lease the daemon holds, and the thread that keeps it.
pub(super) struct Held {
    pub(super) key: AttachmentId,
    pub(super) record: Mutex<Record>,
    pub(super) stop: Stop,
    pub(super) keeper: Mutex<Option<JoinHandle<()>>>,
    /// See [`Leased::is_lost`].
    pub(super) lost: AtomicBool,
}

impl Leased for Held {
    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl Held {
    pub(super) fn result(&self) -> CniResult {
        let record = lock(&self.record);
        record.lease.result(record.priority)
    }

    pub(super) fn link(&self) -> Result<(Netns, Netlink, Link), DhcpError> {
        lock(&self.record).link(&self.key.ifname)
    }

    pub(super) fn client(&self) -> Result<Client, DhcpError> {
        let (netns, _, _) = self.link()?;
        let record = lock(&self.record).clone();
        Client::open(&netns, &self.key.ifname, record.mac, record.options)
    }

    /// An address nobody leases any more must not stay in use: the interface goes down,
    /// as the reference does it.
    pub(super) fn take_down(&self) -> Result<(), DhcpError> {
        let (_, mut netlink, link) = self.link()?;
        netlink
            .set_link_up(link.index, false)
            .map_err(|e| link_error(&self.key.ifname, e.to_string()))
    }
}

/// The interface `ifname` in `netns`, with a netlink socket there.
pub(super) fn container_link(netns: &Netns, ifname: &str) -> Result<(Netlink, Link), DhcpError> {
    let mut netlink = Netlink::open_in(netns).map_err(|e| link_error(ifname, e.to_string()))?;
    let link = netlink
        .link_by_name(ifname)
        .map_err(|e| link_error(ifname, e.to_string()))?
        .ok_or_else(|| DhcpError::Gone(ifname.to_string()))?;
    Ok((netlink, link))
}

pub(super) fn link_error(ifname: &str, reason: String) -> DhcpError {
    DhcpError::Link {
        ifname: ifname.to_string(),
        reason,
    }
}

/// The interface must be up to send, as the reference's daemon ensures; returns its MAC.
pub(super) fn prepare_link(netns: &Netns, ifname: &str) -> Result<[u8; 6], DhcpError> {
    let (mut netlink, link) = container_link(netns, ifname)?;
    let mac = link
        .mac
        .ok_or_else(|| link_error(ifname, "the interface has no MAC address".to_string()))?;
    if !link.up {
        netlink
            .set_link_up(link.index, true)
            .map_err(|e| link_error(ifname, e.to_string()))?;
    }
    // A bridge forwards from a new port only once linkwatch has seen its carrier; asking
    // before that loses the first DISCOVER. Resends cover it if this runs out.
    let _ = netlink.wait_oper_up(link.index, Duration::from_secs(1));
    Ok(mac.0)
}

pub(super) fn container_gone(error: &DhcpError) -> bool {
    match error {
        DhcpError::Netns(NetnsError::NotFound(_) | NetnsError::NotANetns { .. }) => true,
        DhcpError::Gone(_) => true,
        DhcpError::Socket { source, .. } => source.raw_os_error() == Some(libc::ENODEV),
        _ => false,
    }
}
