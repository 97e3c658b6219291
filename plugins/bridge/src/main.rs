//! bridge: each container gets a veth pair whose host end is a port of a Linux bridge on the
//! host, addresses from the IPAM plugin, and optionally a gateway and masquerading.

/// A process that lives milliseconds never needs to free (see `netlib::arena`).
#[global_allocator]
static ALLOCATOR: netlib::arena::ShortLived = netlib::arena::ShortLived;

fn main() {
    netlib::skel::run_with(
        &netlib::bridge::BridgePlugin,
        &[netlib::ipam::HOST_LOCAL, netlib::ipam::STATIC],
    )
}
