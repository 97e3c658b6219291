//! The spec's error codes, the error object on the wire, and errors of the protocol itself
//! (environment, config, versions).

use serde::{Deserialize, Serialize};
use std::fmt;

use super::version::Version;

/// Error codes of the spec (0-99), plus the two libcni adds (8 and 999).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    IncompatibleVersion,
    UnsupportedField,
    UnknownContainer,
    InvalidEnvironment,
    Io,
    Decode,
    InvalidConfig,
    InvalidNetns,
    TryAgainLater,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable,
    /// STATUS: cannot serve ADD, and existing attachments may be degraded.
    NotAvailableDegraded,
    /// A failure with no better code; libcni gives plain Go errors this code too.
    Internal,
}

impl ErrorCode {
    pub fn number(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidConfig => 7,
            ErrorCode::InvalidNetns => 8,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::NotAvailable => 50,
            ErrorCode::NotAvailableDegraded => 51,
            ErrorCode::Internal => 999,
        }
    }
}

/// The error object a plugin prints on stdout (spec section 5), and what a delegated
/// plugin's failure decodes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            f.write_str(&self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for CniError {}

/// Everything the protocol itself can reject before a plugin acts.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("required env variables [{}] missing", .0.join(","))]
    MissingEnv(Vec<&'static str>),
    #[error("unknown CNI_COMMAND: {0}")]
    UnknownCommand(String),
    #[error("missing containerID")]
    MissingContainerId,
    #[error("invalid characters in containerID {0:?}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]
    InvalidContainerId(String),
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfName { name: String, reason: &'static str },
    #[error("invalid CNI_ARGS: {0}")]
    InvalidArgs(String),
    #[error("missing network name")]
    MissingNetworkName,
    #[error("invalid characters found in network name {0:?}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]
    InvalidNetworkName(String),
    #[error("error reading the network config from stdin")]
    ReadStdin(#[source] std::io::Error),
    /// The cause is part of the message, not a source: it names the offending field.
    #[error("error decoding {what}: {error}")]
    Decode {
        what: &'static str,
        error: super::json::JsonError,
    },
    #[error("incompatible CNI versions: config is {config:?}, plugin supports [{}]", supported_list(.supported))]
    IncompatibleVersion {
        config: String,
        supported: Vec<Version>,
    },
    #[error("config version {version} does not allow {verb} (needs {minimum} or later)")]
    VerbNotAllowed {
        verb: &'static str,
        version: Version,
        minimum: Version,
    },
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("required prevResult missing")]
    MissingPrevResult,
    #[error("cannot convert result to version {version}: {reason}")]
    Conversion {
        version: Version,
        reason: &'static str,
    },
    #[error("plugin's netns and netns from CNI_NETNS should not be the same: refusing to configure the plugin's own namespace {0:?} (set CNI_NETNS_OVERRIDE=1 if this is intended)")]
    SameNetns(String),
}

fn supported_list(versions: &[Version]) -> String {
    let names: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
    names.join(", ")
}

impl ProtocolError {
    /// An invalid config value, naming the field as a user writes it (`ipam.ranges[0][1].subnet`).
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ProtocolError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
