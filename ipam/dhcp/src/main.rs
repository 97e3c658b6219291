//! dhcp IPAM: an address from a DHCP server on the container's network. As with the
//! reference, the same binary is the plugin and, as `dhcp daemon`, the long-lived client
//! that holds and renews leases: the plugin only asks the daemon over its socket.
//!
//! No arena allocator here, unlike the other plugins: the daemon runs for months.

mod daemon;
mod dhcp4;
mod protocol;

use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

use crate::dhcp4::option;
use cni::invoke::InvokeError;
use cni::skel::{self, Attachment, Command, Plugin, Request};
use cni::{CniArgs, CniResult, Error, Failure, ProtocolError, Result, ValidAttachments};

use protocol::{CallError, Reply};

cni::identity!("dhcp");

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    ipam: Option<IpamSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct IpamSection {
    request: Vec<RequestedOption>,
    provide: Vec<ProvidedOption>,
    /// The metric of the routes the lease brings.
    priority: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RequestedOption {
    skip_default: bool,
    option: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProvidedOption {
    option: Value,
    value: Option<String>,
    from_arg: Option<String>,
}

/// Only where the daemon listens: DEL, CHECK, GC and STATUS read nothing else, so a config
/// the reference took (and ADD would now refuse) can still be torn down.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SocketOnly {
    ipam: Option<SocketSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SocketSection {
    daemon_socket_path: Option<PathBuf>,
}

/// The daemon the config names.
struct DaemonSocket(PathBuf);

/// The config of ADD, checked before anything is asked of the daemon.
struct DhcpConf {
    daemon: DaemonSocket,
    request: Vec<u8>,
    provide: Vec<(u8, Vec<u8>)>,
    priority: Option<u32>,
}

/// An option by number (`12`, `"12"`) or by name (`"host-name"`).
fn option_code(value: &Value, field: &str) -> Result<u8, ProtocolError> {
    let code = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => s
            .trim()
            .parse::<u8>()
            .ok()
            .or_else(|| option::by_name(s.trim())),
        _ => None,
    };
    // The message type is the client's own to say.
    code.filter(|c| !matches!(*c, option::PAD | option::END | option::MESSAGE_TYPE))
        .ok_or_else(|| {
            ProtocolError::config(
                field,
                format!(
                    "{value} is not a DHCP option number (1-254, not 53) or a known option name"
                ),
            )
        })
}

impl DhcpConf {
    fn load(request: &Request, args: &CniArgs) -> Result<DhcpConf> {
        let conf: Conf = request.plugin_config()?;
        let ipam = conf
            .ipam
            .ok_or_else(|| ProtocolError::config("ipam", "IPAM config missing 'ipam' key"))?;
        let skip_default = ipam.request.iter().any(|r| r.skip_default);
        let mut wanted: Vec<u8> = if skip_default {
            Vec::new()
        } else {
            option::DEFAULT_REQUEST.to_vec()
        };
        for (i, requested) in ipam.request.iter().enumerate() {
            if requested.option.is_null() {
                continue;
            }
            let code = option_code(&requested.option, &format!("ipam.request[{i}].option"))?;
            if !wanted.contains(&code) {
                wanted.push(code);
            }
        }
        let mut provide = Vec::new();
        for (i, provided) in ipam.provide.iter().enumerate() {
            let field = format!("ipam.provide[{i}]");
            let code = option_code(&provided.option, &format!("{field}.option"))?;
            // The runtime's argument wins when it passes one, as in the reference; `value`
            // is the fallback. A runtime that passes no such argument (K8S_POD_NAME outside
            // Kubernetes) and no fallback provides nothing.
            if provided.value.is_none() && provided.from_arg.is_none() {
                return Err(ProtocolError::config(field, "needs a value or fromArg").into());
            }
            let from_arg = provided.from_arg.as_ref().and_then(|arg| args.get(arg));
            let value = from_arg
                .map(str::to_string)
                .or_else(|| provided.value.clone());
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                provide.push((code, value.into_bytes()));
            }
        }
        Ok(DhcpConf {
            daemon: DaemonSocket::of(request)?,
            request: wanted,
            provide,
            priority: ipam.priority,
        })
    }
}

impl DaemonSocket {
    fn of(request: &Request) -> Result<DaemonSocket> {
        let conf: SocketOnly = request.plugin_config()?;
        let configured = conf.ipam.and_then(|ipam| ipam.daemon_socket_path);
        Ok(DaemonSocket(
            configured.unwrap_or_else(|| PathBuf::from(daemon::DEFAULT_SOCKET)),
        ))
    }

    /// Asks the daemon; the inner error says why no daemon could be reached.
    fn ask(
        &self,
        request: &protocol::Request,
    ) -> Result<std::result::Result<Option<CniResult>, std::io::Error>> {
        match protocol::call(&self.0, request) {
            Ok(Reply::Done { result }) => Ok(Ok(result)),
            Ok(Reply::Failed(error)) => Err(InvokeError::Plugin(error).into()),
            Err(CallError::Unreachable(reason)) => Ok(Err(reason)),
            Err(CallError::Broken(text)) => Err(Failure::Unavailable(format!(
                "the dhcp daemon at {} broke off: {text}",
                self.0.display()
            ))
            .into()),
        }
    }

    /// ADD and CHECK may succeed once the daemon is (re)started: try again later. STATUS
    /// says the network cannot take ADDs now.
    fn not_running(&self, command: Command, reason: &std::io::Error) -> Error {
        let text = format!(
            "no dhcp daemon answers at {} ({reason}; start one with `dhcp daemon`)",
            self.0.display()
        );
        match command {
            Command::Status => Failure::Unavailable(text).into(),
            _ => Failure::NotReadyYet(text).into(),
        }
    }
}

struct DhcpPlugin;

impl Plugin for DhcpPlugin {
    fn about(&self) -> &'static str {
        "CNI dhcp IPAM plugin (ferrocni): addresses leased from a DHCP server, kept by `dhcp daemon`"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        // Read as the reference's dhcp reads them: what is no pair is skipped.
        let conf = DhcpConf::load(request, &CniArgs::parse_loose(attachment.raw_args()))?;
        // The daemon runs elsewhere: a relative path would mean its working directory.
        let netns = attachment.required_netns()?;
        let netns = std::path::absolute(netns).unwrap_or_else(|_| netns.to_path_buf());
        let allocate = protocol::Request::Allocate {
            lease: attachment.id.clone(),
            netns,
            request: conf.request,
            provide: conf.provide,
            priority: conf.priority,
        };
        let daemon = conf.daemon;
        daemon
            .ask(&allocate)?
            .map_err(|e| daemon.not_running(Command::Add, &e))?
            .ok_or_else(|| {
                Failure::Unavailable("the dhcp daemon returned no lease".to_string()).into()
            })
    }

    /// A daemon that is not running holds no lease to give back (the reference's DEL fails
    /// here, and its users' DELs pile up: their issue #235).
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let release = protocol::Request::Release {
            lease: attachment.id.clone(),
        };
        DaemonSocket::of(request)?.ask(&release).map(drop)
    }

    /// The daemon must still hold the lease, for the address the previous result names.
    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let daemon = DaemonSocket::of(request)?;
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let lookup = protocol::Request::Lookup {
            lease: attachment.id.clone(),
        };
        let held = daemon
            .ask(&lookup)?
            .map_err(|e| daemon.not_running(Command::Check, &e))?
            .unwrap_or_default();
        for ip in &held.ips {
            if !previous
                .ips
                .iter()
                .any(|p| p.address.ip() == ip.address.ip())
            {
                return Err(Failure::Check(format!(
                    "the dhcp lease is for {}, which the previous result does not have",
                    ip.address
                ))
                .into());
            }
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let gc = protocol::Request::Gc {
            valid: valid.clone(),
        };
        DaemonSocket::of(request)?.ask(&gc).map(drop)
    }

    fn status(&self, request: &Request) -> Result<()> {
        let daemon = DaemonSocket::of(request)?;
        daemon
            .ask(&protocol::Request::Status)?
            .map(drop)
            .map_err(|e| daemon.not_running(Command::Status, &e))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("daemon") {
        std::process::exit(daemon::main(&args[1..]));
    }
    skel::run(&DhcpPlugin)
}
