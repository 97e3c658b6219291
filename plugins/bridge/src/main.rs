//! bridge: each container gets a veth pair whose host end is a port of a Linux bridge on the
//! host, addresses from the IPAM plugin, and optionally a gateway and masquerading.

fn main() {
    netlib::skel::run(&netlib::bridge::BridgePlugin)
}
