//! The CNI protocol and the plugin skeleton, the bottom layer of ferrocni: versions,
//! configs, results, errors and the codes they carry ([`Coded`]), `CNI_ARGS`, the identity of
//! an attachment ([`AttachmentId`]); the skeleton between a runtime's exec and a plugin's
//! logic ([`skel`]), delegation to other plugins ([`invoke`]) and the undo stack of an ADD
//! ([`undo`]). Nothing here calls the kernel: every crate above builds on it.

pub mod args;
pub mod config;
pub mod error;
pub mod id;
pub mod invoke;
pub mod json;
pub mod result;
pub mod skel;
pub mod undo;
pub mod version;

pub use args::CniArgs;
pub use config::{NetConf, NetConfList};
pub use error::{CniError, Coded, Error, ErrorCode, Failure, IfNameFault, ProtocolError, Result};
pub use id::{AttachmentId, ValidAttachments};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::Version;
