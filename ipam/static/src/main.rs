//! static IPAM: exactly the addresses the config or the runtime names; no state.

use netlib::ipam::static_ipam::StaticPlugin;

netlib::identity!("static");

fn main() {
    netlib::skel::run(&StaticPlugin)
}
