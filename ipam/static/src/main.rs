//! static IPAM: exactly the addresses the config or the runtime names; no state.

use netlib::ipam::static_ipam::StaticPlugin;

netlib::identity!("static");

/// A process that lives milliseconds never needs to free (see `netlib::arena`).
#[global_allocator]
static ALLOCATOR: netlib::arena::ShortLived = netlib::arena::ShortLived;

fn main() {
    netlib::skel::run(&StaticPlugin)
}
