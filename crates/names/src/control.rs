//! The control protocol: one request line and one reply line per connection on the
//! network's `control.sock`, from the plugin (a registration changed; does the server
//! answer for a name) and from the overlay agent (the remote names changed).
//!
//! A reply is sent once the change is in the table the server answers from, so a name is
//! resolvable as soon as the plugin's ADD returns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use cni::{AttachmentId, Coded, ErrorCode};

use crate::dir::OpenDir;

/// How long a caller waits for the server: it answers from memory, after reading a file or
/// two; only a server that hangs takes longer.
pub const REPLY_LIMIT: Duration = Duration::from_secs(5);

/// The longest request or reply line read.
pub const LINE_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read this attachment's registration again: added, changed, or gone.
    Sync(AttachmentId),
    /// Read everything again: registrations, remote names, the server's config.
    Reload,
    /// The addresses the server answers with for this name.
    Lookup(String),
    Ping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done; the server goes on with this many local registrations.
    Serving {
        local: usize,
    },
    /// Done; no local registration is left and the server exits (unless kept).
    Stopping,
    Addresses(Vec<IpAddr>),
    Failed(String),
}

impl Request {
    pub fn line(&self) -> String {
        match self {
            Request::Sync(id) => format!("sync {id}"),
            Request::Reload => "reload".to_string(),
            Request::Lookup(name) => format!("lookup {name}"),
            Request::Ping => "ping".to_string(),
        }
    }

    pub fn parse(line: &str) -> Result<Request, String> {
        let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
        match (verb, argument) {
            ("sync", id) => id.parse().map(Request::Sync).map_err(|e| e.to_string()),
            ("reload", "") => Ok(Request::Reload),
            ("lookup", name) if !name.is_empty() => Ok(Request::Lookup(name.to_string())),
            ("ping", "") => Ok(Request::Ping),
            _ => Err(format!("unknown request {line:?}")),
        }
    }
}

impl Reply {
    pub fn line(&self) -> String {
        match self {
            Reply::Serving { local } => format!("serving {local}"),
            Reply::Stopping => "stopping".to_string(),
            Reply::Addresses(addresses) => {
                let mut line = "addresses".to_string();
                for address in addresses {
                    line.push(' ');
                    line.push_str(&address.to_string());
                }
                line
            }
            Reply::Failed(reason) => format!("error {}", reason.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Option<Reply> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match verb {
            "serving" => Reply::Serving {
                local: rest.parse().ok()?,
            },
            "stopping" if rest.is_empty() => Reply::Stopping,
            "addresses" => Reply::Addresses(
                rest.split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            ),
            "error" => Reply::Failed(rest.to_string()),
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No server listens (none started, or it died and left its socket file).
    #[error("no DNS server runs for this network")]
    NotRunning,
    #[error("the DNS server does not answer")]
    Silent(#[source] std::io::Error),
    #[error("the DNS server answered {0:?}, which is no reply of this protocol")]
    Garbled(String),
    #[error("the DNS server refused: {0}")]
    Refused(String),
}

impl Coded for ControlError {
    fn code(&self) -> ErrorCode {
        match self {
            ControlError::NotRunning | ControlError::Silent(_) => ErrorCode::TryAgainLater,
            ControlError::Garbled(_) | ControlError::Refused(_) => ErrorCode::Internal,
        }
    }
}

/// Sends `request` to the server of the open directory `dir` and returns its reply.
pub fn call(dir: &OpenDir, request: &Request) -> Result<Reply, ControlError> {
    call_at(&dir.control_socket(), request)
}

fn call_at(socket: &Path, request: &Request) -> Result<Reply, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NotRunning
        }
        _ => ControlError::Silent(e),
    })?;
    let mut exchange = || -> std::io::Result<String> {
        stream.set_read_timeout(Some(REPLY_LIMIT))?;
        stream.set_write_timeout(Some(REPLY_LIMIT))?;
        stream.write_all(format!("{}\n", request.line()).as_bytes())?;
        let mut line = String::new();
        BufReader::new(&stream)
            .take(LINE_MAX as u64)
            .read_line(&mut line)?;
        Ok(line)
    };
    let line = exchange().map_err(ControlError::Silent)?;
    let line = line.trim_end_matches('\n');
    match Reply::parse(line) {
        Some(Reply::Failed(reason)) => Err(ControlError::Refused(reason)),
        Some(reply) => Ok(reply),
        None => Err(ControlError::Garbled(line.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_read_back() {
        let id = AttachmentId::new("net", "abc", "eth0");
        for request in [
            Request::Sync(id),
            Request::Reload,
            Request::Lookup("web.dns.podman".to_string()),
            Request::Ping,
        ] {
            assert_eq!(Request::parse(&request.line()), Ok(request));
        }
        for bad in ["", "sync", "sync a:b", "reload now", "lookup", "halt"] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        for reply in [
            Reply::Serving { local: 3 },
            Reply::Stopping,
            Reply::Addresses(vec![]),
            Reply::Addresses(vec![
                "10.0.0.2".parse().expect("ip"),
                "fd00::2".parse().expect("ip"),
            ]),
            Reply::Failed("cannot read x".to_string()),
        ] {
            assert_eq!(Reply::parse(&reply.line()), Some(reply));
        }
        for bad in [
            "",
            "serving",
            "serving x",
            "addresses 1.2.3",
            "stopping now",
        ] {
            assert_eq!(Reply::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn no_socket_is_no_server() {
        let missing = std::env::temp_dir().join(format!("ferrocni-none-{}", std::process::id()));
        assert!(matches!(
            call_at(&missing, &Request::Ping),
            Err(ControlError::NotRunning)
        ));
    }
}
