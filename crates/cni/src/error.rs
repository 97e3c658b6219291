//! The spec's error codes, the error object on the wire, and errors of the protocol itself
//! (environment, config, versions).

use serde::{Deserialize, Serialize};
use std::fmt;

use super::version::Version;
use crate::invoke::InvokeError;

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

impl Coded for ProtocolError {
    fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::MissingEnv(_)
            | ProtocolError::UnknownCommand(_)
            | ProtocolError::InvalidContainerId { .. }
            | ProtocolError::InvalidIfName { .. }
            | ProtocolError::InvalidArgs(_) => ErrorCode::InvalidEnvironment,
            ProtocolError::MissingContainerId => ErrorCode::UnknownContainer,
            ProtocolError::MissingNetworkName
            | ProtocolError::InvalidNetworkName(_)
            | ProtocolError::InvalidConfig { .. }
            | ProtocolError::OneAddressPerFamily { .. }
            | ProtocolError::MissingPrevResult => ErrorCode::InvalidConfig,
            ProtocolError::ReadStdin(_) => ErrorCode::Io,
            ProtocolError::Decode { .. } => ErrorCode::Decode,
            ProtocolError::IncompatibleVersion { .. }
            | ProtocolError::VerbNotAllowed { .. }
            | ProtocolError::VerbNotSupported { .. }
            | ProtocolError::Conversion { .. } => ErrorCode::IncompatibleVersion,
            ProtocolError::SameNetns(_) => ErrorCode::InvalidNetns,
        }
    }
}

/// An error that knows its CNI code. Every error type of ferrocni implements it once,
/// beside its definition, so that the code of a new variant is decided where it is added.
pub trait Coded: std::error::Error + Send + Sync + 'static {
    fn code(&self) -> ErrorCode;
}

/// What a verb can fail with, whatever failed: any [`Coded`] error (`?` converts it), kept
/// whole with its code, until the skeleton prints it as the spec's error object.
pub struct Error {
    code: ErrorCode,
    inner: Box<dyn std::error::Error + Send + Sync>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl<E: Coded> From<E> for Error {
    fn from(error: E) -> Self {
        Error {
            code: error.code(),
            inner: Box::new(error),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// The error it holds, whose sentence and causes it reports as its own.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The error it holds, if it is a `T`: for the few callers that treat one specially.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref()
    }

    /// The spec's error object: `msg` is this error's sentence, `details` what a fixed
    /// sentence leaves out, then its causes. A delegate's own error object passes unchanged.
    pub fn to_cni(&self, version: Option<Version>) -> CniError {
        if let Some(InvokeError::Plugin(delegated)) = self.downcast_ref() {
            return delegated.clone();
        }
        let msg = self.to_string();
        let mut causes: Vec<String> = chain(self).skip(1).map(ToString::to_string).collect();
        // An error that wraps another transparently reports it as its first cause too.
        if causes.first() == Some(&msg) {
            causes.remove(0);
        }
        if let Some(details) = self.downcast_ref().and_then(ProtocolError::details) {
            causes.insert(0, details);
        }
        CniError {
            cni_version: version.map(|v| v.to_string()).unwrap_or_default(),
            code: self.code.number(),
            msg,
            details: causes.join(": "),
        }
    }
}

/// The generic outcomes of a verb that no module's error names: each is a sentence of the
/// plugin's, with the code the spec gives that outcome.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// ADD found the interface it must create already there (the spec says ADD must fail).
    #[error("{0}")]
    AlreadyExists(String),
    /// CHECK found the attachment differs from what ADD made.
    #[error("check failed: {0}")]
    Check(String),
    /// Something the plugin depends on is not ready yet (an overlay agent without a lease):
    /// the runtime should retry ADD later.
    #[error("{0}")]
    NotReadyYet(String),
    /// STATUS: the network cannot take ADDs now.
    #[error("{0}")]
    Unavailable(String),
}

impl Coded for Failure {
    fn code(&self) -> ErrorCode {
        match self {
            Failure::AlreadyExists(_) | Failure::Check(_) => ErrorCode::Internal,
            Failure::NotReadyYet(_) => ErrorCode::TryAgainLater,
            Failure::Unavailable(_) => ErrorCode::NotAvailable,
        }
    }
}

/// `error` and its causes, outermost first: the one walk down a cause chain.
pub fn chain<'a>(
    error: &'a (dyn std::error::Error + 'a),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'a)> {
    std::iter::successors(Some(error), |e| e.source().map(|s| s as _))
}

/// An error and its causes on one line: "netlink add route failed: Network is unreachable".
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    for cause in chain(error) {
        let next = cause.to_string();
        if text.is_empty() {
            text = next;
        } else if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as a module's error wraps the kernel's.
    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot do it")]
        Caused(#[source] std::io::Error),
        #[error(transparent)]
        Through(ProtocolError),
    }

    impl Coded for Outer {
        fn code(&self) -> ErrorCode {
            match self {
                Outer::Caused(_) => ErrorCode::Io,
                Outer::Through(e) => e.code(),
            }
        }
    }

    fn fails(error: Outer) -> Result<()> {
        Err(error)?;
        Ok(())
    }

    #[test]
    fn the_object_holds_the_sentence_its_code_and_its_causes() {
        let error = fails(Outer::Caused(std::io::Error::other("disk gone"))).expect_err("fails");
        assert_eq!(error.code(), ErrorCode::Io);
        let object = error.to_cni(Some(Version::V1_0_0));
        assert_eq!(
            (object.code, &*object.msg, &*object.details),
            (5, "cannot do it", "disk gone")
        );
        assert_eq!(object.cni_version, "1.0.0");
        assert!(error.downcast_ref::<Outer>().is_some());
        assert!(error.downcast_ref::<ProtocolError>().is_none());
    }

    #[test]
    fn protocol_details_come_first_and_delegates_pass_unchanged() {
        let error = Error::from(ProtocolError::InvalidNetworkName("a/b".to_string()));
        let object = error.to_cni(None);
        assert_eq!(object.code, 7);
        assert_eq!(object.msg, "invalid characters found in network name");
        assert!(
            object.details.starts_with("\"a/b\": it must match"),
            "{object:?}"
        );
        let wrapped = fails(Outer::Through(ProtocolError::MissingPrevResult)).expect_err("fails");
        assert_eq!(
            wrapped.to_cni(None).details,
            "",
            "no cause repeats the sentence"
        );

        let delegated = CniError {
            cni_version: "0.4.0".to_string(),
            code: 117,
            msg: "its own".to_string(),
            details: "words".to_string(),
        };
        let error = Error::from(InvokeError::Plugin(delegated.clone()));
        assert_eq!(error.to_cni(Some(Version::V1_1_0)), delegated);
    }

    #[test]
    fn causes_read_as_one_line_without_repeats() {
        let error = Outer::Caused(std::io::Error::other("disk gone"));
        assert_eq!(causes(&error), "cannot do it: disk gone");
        let through = Outer::Through(ProtocolError::MissingPrevResult);
        assert_eq!(causes(&through), "required prevResult missing");
    }
}
