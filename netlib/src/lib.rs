//! ferrocni's shared library. Plugins are thin binaries over it; every protocol rule lives
//! in [`cni`] and [`skel`], every kernel call in [`netlink`], [`netns`] and [`sysctl`].
//! Dependencies point one way: plugins use netlib, netlib's modules use the kernel.

pub mod arena;
pub mod attachment;
pub mod bridge;
pub mod cni;
pub mod error;
pub mod firewall;
pub mod iface;
pub mod invoke;
pub mod ipam;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod overlay;
pub mod shaping;
pub mod skel;
pub mod state;
pub mod sysctl;
pub mod tuning;
pub mod undo;
pub mod veth;

pub use error::{Error, Result};
