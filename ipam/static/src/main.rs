//! static IPAM: exactly the addresses the config or the runtime names; no state.

use ipam::static_ipam::StaticPlugin;

cni::identity!("static");

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    cni::skel::run(&StaticPlugin)
}
