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
///
/// Where the reference answers with a fixed sentence, the message is that sentence word for
/// word (clients and the reference's own tests compare it), and what ours adds (the value,
/// the field, the versions) goes to the error object's `details`: see [`Self::details`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("required env variables [{}] missing", .0.join(","))]
    MissingEnv(Vec<&'static str>),
    #[error("unknown CNI_COMMAND: {0}")]
    UnknownCommand(String),
    #[error("missing containerID")]
    MissingContainerId,
    #[error("invalid characters in containerID")]
    InvalidContainerId { id: String, reason: &'static str },
    #[error("{}", .fault.sentence())]
    InvalidIfName { name: String, fault: IfNameFault },
    #[error("invalid CNI_ARGS: {0}")]
    InvalidArgs(String),
    #[error("missing network name")]
    MissingNetworkName,
    #[error("invalid characters found in network name")]
    InvalidNetworkName(String),
    #[error("error reading the network config from stdin")]
    ReadStdin(#[source] std::io::Error),
    /// The cause is part of the message, not a source: it names the offending field.
    #[error("error decoding {what}: {error}")]
    Decode {
        what: &'static str,
        error: super::json::JsonError,
    },
    #[error("incompatible CNI versions")]
    IncompatibleVersion {
        config: String,
        supported: Vec<Version>,
    },
    /// The config's version predates the verb.
    #[error("config version does not allow {verb}")]
    VerbNotAllowed {
        verb: &'static str,
        config: String,
        minimum: Version,
    },
    /// The config's version is newer than any this plugin speaks.
    #[error("plugin version does not allow {verb}")]
    VerbNotSupported {
        verb: &'static str,
        config: String,
        latest: Version,
    },
    #[error("CNI version {version} does not support more than 1 address per family")]
    OneAddressPerFamily {
        version: Version,
        field: &'static str,
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
    #[error("plugin's netns and netns from CNI_NETNS should not be the same")]
    SameNetns(String),
}

/// What is wrong with an interface name, each with the reference's sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfNameFault {
    Empty,
    TooLong,
    Dots,
    Separator,
    /// The kernel would take the bytes, but results and records name interfaces in JSON.
    NotUtf8,
}

impl IfNameFault {
    pub fn sentence(self) -> &'static str {
        match self {
            IfNameFault::Empty => "interface name is empty",
            IfNameFault::TooLong => "interface name is too long",
            IfNameFault::Dots => "interface name is . or ..",
            IfNameFault::Separator => "interface name contains / or : or whitespace characters",
            IfNameFault::NotUtf8 => "interface name is not valid UTF-8",
        }
    }
}

/// Versions as Go's `%q` prints a `[]string`, the form of the reference's details.
fn go_quoted(versions: &[Version]) -> String {
    let quoted: Vec<String> = versions
        .iter()
        .map(|v| format!("{:?}", v.as_str()))
        .collect();
    format!("[{}]", quoted.join(" "))
}

impl ProtocolError {
    /// An invalid config value, naming the field as a user writes it (`ipam.ranges[0][1].subnet`).
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ProtocolError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// What a fixed sentence leaves out, for the error object's `details`.
    pub fn details(&self) -> Option<String> {
        Some(match self {
            ProtocolError::InvalidContainerId { id, reason } => format!("{id:?}: {reason}"),
            ProtocolError::InvalidIfName { name, fault } => match fault {
                IfNameFault::TooLong => {
                    format!("{name:?}: at most {} bytes", super::config::IFNAME_MAX)
                }
                _ => format!("{name:?}"),
            },
            ProtocolError::InvalidNetworkName(name) => {
                format!("{name:?}: {}", super::config::NAME_RULE)
            }
            ProtocolError::IncompatibleVersion { config, supported } => format!(
                "config is {config:?}, plugin supports {}",
                go_quoted(supported)
            ),
            ProtocolError::VerbNotAllowed {
                verb,
                config,
                minimum,
            } => format!("the config's version is {config}; {verb} needs {minimum} or later"),
            ProtocolError::VerbNotSupported {
                verb,
                config,
                latest,
            } => format!(
                "the config's version is {config}; this plugin speaks {verb} up to {latest}"
            ),
            ProtocolError::OneAddressPerFamily { field, .. } => format!(
                "{field}: a result of this version holds one address of each family"
            ),
            ProtocolError::SameNetns(path) => format!(
                "CNI_NETNS {path:?} is the plugin's own namespace (set CNI_NETNS_OVERRIDE=1 if this is intended)"
            ),
            _ => return None,
        })
    }

    /// The sentence and its details on one line, for a message that quotes this error.
    pub fn with_details(&self) -> String {
        match self.details() {
            Some(details) => format!("{self}: {details}"),
            None => self.to_string(),
        }
    }
}
