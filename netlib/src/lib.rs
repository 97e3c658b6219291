//! ferrocni's shared library. Plugins are thin binaries over it; every protocol rule lives
//! in [`cni`] and [`skel`], every kernel call in [`netlink`], [`netns`] and [`sysctl`].
//! Dependencies point one way: plugins use netlib, netlib's modules use the kernel.

pub mod arena;
pub mod attachment;
pub mod bridge;
pub mod cni;
pub mod files;
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
pub mod tool;
pub mod tuning;
pub mod undo;
pub mod veth;

pub use cni::{Error, Result};

/// Random bytes from getrandom(2), for names, marks and addresses that need to be unique,
/// not secret. One syscall, where opening /dev/urandom takes four. Zeros if the kernel
/// refuses, which callers survive (a retry on EEXIST, a rebuilt index, a MAC that is still
/// a valid one).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // SAFETY: the kernel writes at most `bytes.len()` bytes into `bytes`, which outlives the call.
    let _ = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    bytes
}

/// Four random bytes (see [`random_bytes`]) as a number.
pub(crate) fn random_u32() -> u32 {
    u32::from_ne_bytes(random_bytes())
}
