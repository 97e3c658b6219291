//! WireGuard in userspace: boringtun's device on a TUN interface, inside the agent's
//! process, configured over a private stream of the configuration protocol (a socket pair,
//! so no socket on disk lets anyone else reconfigure it).

use boringtun::device::{DeviceConfig, DeviceHandle};
use std::collections::BTreeMap;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kernel::netlink::Netlink;
use overlay::wireguard::{self, WgPeer};
use overlay::PublicKey;

use super::key::PrivateKey;
use super::uapi::{self, State, Uapi, UapiError};
use crate::AgentError;

/// How long the device may take to answer a request: it answers at once unless stuck.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// The configuration stream, shared with the read-only mirror served to `wg show`.
pub type Stream = Arc<Mutex<Uapi<UnixStream>>>;

/// A running userspace WireGuard device. Dropping it stops the device, and the TUN
/// interface goes with it.
pub struct Userspace {
    stream: Stream,
    pub index: u32,
    /// Last, so the stream closes first: boringtun stops when its stream ends.
    _device: DeviceHandle,
}

fn threads() -> usize {
    // One worker per core, up to four: each worker takes packets of either direction.
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

impl Userspace {
    /// Creates the TUN interface `name` with `mtu`, starts the device on it with `key`,
    /// listening on `port`, and brings the interface up.
    pub fn start(
        netlink: &mut Netlink,
        name: &str,
        mtu: u32,
        key: &PrivateKey,
        port: u16,
    ) -> Result<Userspace, AgentError> {
        let tun_error = |e: std::io::Error| {
            AgentError::Node(format!("cannot create the TUN interface {name}: {e}"))
        };
        // The interface is made here first, so that its MTU is set before boringtun opens
        // it: boringtun reads the MTU once, when it opens the interface, and reads packets
        // into buffers of that size.
        let first_queue = kernel::tun::open_queue(name).map_err(tun_error)?;
        let link = netlink.link(name)?;
        netlink.set_mtu(link.index, mtu)?;
        let (ours, theirs) = UnixStream::pair().map_err(tun_error)?;
        ours.set_read_timeout(Some(ANSWER_LIMIT))
            .map_err(tun_error)?;
        ours.set_write_timeout(Some(ANSWER_LIMIT))
            .map_err(tun_error)?;
        let device = DeviceHandle::new(
            name,
            DeviceConfig {
                n_threads: threads(),
                use_connected_socket: true,
                use_multi_queue: true,
                // boringtun owns this end from now on.
                uapi_fd: theirs.into_raw_fd(),
            },
        )
        .map_err(|e| AgentError::Node(format!("cannot start WireGuard on {name}: {e}")))?;
        // boringtun's queues hold the interface now; this one would only take packets
        // nobody reads.
        drop(first_queue);
        let userspace = Userspace {
            stream: Arc::new(Mutex::new(Uapi::new(ours))),
            index: link.index,
            _device: device,
        };
        userspace
            .uapi()
            .set("key and port", &uapi::interface(key, port))?;
        netlink.set_link_up(link.index, true)?;
        Ok(userspace)
    }

    fn uapi(&self) -> MutexGuard<'_, Uapi<UnixStream>> {
        // A panic while holding the lock would have stopped the agent (panic = abort in
        // release); a poisoned lock in a test build is still a working stream.
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stream(&self) -> Stream {
        Arc::clone(&self.stream)
    }

    pub fn state(&self) -> Result<State, UapiError> {
        self.uapi().get()
    }
}

impl wireguard::Device for Userspace {
    fn peers(&mut self) -> cni::Result<BTreeMap<PublicKey, WgPeer>> {
        Ok(self.state()?.peers)
    }

    fn add_peer(&mut self, peer: &WgPeer) -> cni::Result<()> {
        Ok(self.uapi().set("peer", &uapi::add_peer(peer))?)
    }

    fn remove_peer(&mut self, key: &PublicKey) -> cni::Result<()> {
        Ok(self.uapi().set("peer removal", &uapi::remove_peer(key))?)
    }
}
