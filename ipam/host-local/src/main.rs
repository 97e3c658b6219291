//! host-local IPAM: addresses from configured ranges, recorded on the node's disk in the
//! reference plugin's format.

use netlib::ipam::host_local::HostLocalPlugin;

netlib::identity!("host-local");

/// A process that lives milliseconds never needs to free (see `netlib::arena`).
#[global_allocator]
static ALLOCATOR: netlib::arena::ShortLived = netlib::arena::ShortLived;

fn main() {
    netlib::skel::run(&HostLocalPlugin)
}
