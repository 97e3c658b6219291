//! The CNI protocol: versions, configs, results, errors and `CNI_ARGS`. Pure data and
//! conversions; nothing here touches the kernel or the environment.

pub mod args;
pub mod config;
pub mod error;
pub mod id;
pub mod json;
pub mod result;
pub mod version;

pub use args::CniArgs;
pub use config::{NetConf, NetConfList};
pub use error::{CniError, Coded, Error, ErrorCode, Failure, IfNameFault, ProtocolError, Result};
pub use id::{AttachmentId, ValidAttachments};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::Version;
