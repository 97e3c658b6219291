//! bridge: each container gets a veth pair whose host end is a port of a Linux bridge on the
//! host, addresses from the IPAM plugin, and optionally a gateway and masquerading.

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    cni::skel::run_with(&bridge::BridgePlugin, &[ipam::HOST_LOCAL, ipam::STATIC])
}
