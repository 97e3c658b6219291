//! The toolkit of the interface plugins (bridge, ptp, macvlan, host-device, vxlan, tuning):
//! what more than one of them does the same way. Result links, the masquerade step,
//! teardown, GC and STATUS, and CHECK of the container side ([`attachment`]); a container
//! interface from an IPAM result ([`iface`]); veth pairs ([`veth`]); per-attachment records
//! kept between ADD and DEL ([`state`]); gateway addresses on a bridge and forwarding
//! ([`bridge`]).
//!
//! Built on `cni` (the protocol and skeleton), `kernel` (every system call) and `firewall`;
//! code that one plugin alone uses lives in that plugin.

pub mod attachment;
pub mod bridge;
pub mod iface;
pub mod state;
pub mod veth;
