//! host-local IPAM: addresses from configured ranges, recorded on the node's disk in the
//! reference plugin's format.

use netlib::ipam::host_local::HostLocalPlugin;

netlib::identity!("host-local");

fn main() {
    netlib::skel::run(&HostLocalPlugin)
}
