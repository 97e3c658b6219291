//! The kernel layer: every system call ferrocni makes on a plugin's behalf. Network
//! namespaces ([`netns`]), rtnetlink and nf_tables over netlink ([`netlink`]), sysctls
//! ([`sysctl`]), socket options ([`socket`]), state files written atomically and never
//! through a link ([`files`]), locks compatible with the reference's ([`lock`]), TUN devices
//! ([`tun`]), external tools where no kernel client exists here ([`tool`]), random bytes
//! ([`random`]), the plugins' allocator ([`arena`]) and the daemons' readiness notice to
//! systemd ([`systemd`]).
//!
//! It knows no plugin and no CNI verb: it depends on `cni` only to give each error its CNI
//! code ([`cni::Coded`]) beside its definition.

pub mod arena;
pub mod files;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod random;
pub mod socket;
pub mod sysctl;
pub mod systemd;
pub mod tool;
pub mod tun;
