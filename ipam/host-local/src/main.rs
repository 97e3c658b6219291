//! host-local IPAM: addresses from configured ranges, recorded on the node's disk in the
//! reference plugin's format.

use ipam::host_local::HostLocalPlugin;

cni::identity!("host-local");

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    cni::skel::run(&HostLocalPlugin)
}
