//! The bridge plugin: each container gets a veth pair whose host end is a port of a Linux
//! bridge on the host. A library as well as the `bridge` binary: the `vxlan` plugin runs it
//! on the overlay's node bridge, and the fuzz checks read its config.

mod config;
mod plugin;

pub use config::BridgeConf;
pub use plugin::BridgePlugin;
