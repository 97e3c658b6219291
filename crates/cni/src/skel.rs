//! The plugin skeleton: everything between a runtime's exec and a plugin's logic.
//!
//! It reads and validates the `CNI_*` environment and the config for the verb at hand,
//! checks versions, calls the plugin, prints the result in the version the config asked for,
//! and turns every failure, a panic included, into the spec's error JSON on stdout.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{validate_container_id, validate_ifname, validate_network_name};
use crate::invoke;
use crate::version::numbers;
use crate::{
    json, AttachmentId, CniArgs, CniResult, Coded, Error, ErrorCode, IfNameFault, NetConf,
    ProtocolError, Result, ValidAttachments, Version,
};

/// The verbs of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Which variables the spec requires for this verb (`CNI_NETNS` is optional on DEL).
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Gc => &["CNI_PATH"],
            Command::Status | Command::Version => &[],
        }
    }

    /// The first spec version that has this verb.
    fn minimum_version(self) -> Version {
        match self {
            Command::Check => Version::V0_4_0,
            Command::Gc | Command::Status => Version::V1_1_0,
            _ => Version::V0_1_0,
        }
    }
}

/// One request: the config on stdin and the environment that applies to every verb.
#[derive(Debug)]
pub struct Request {
    /// The version the config asked for; results are printed in it.
    pub version: Version,
    pub conf: NetConf,
    /// The whole config as received, for plugin-specific keys and for delegation.
    pub config: Value,
    pub stdin: Vec<u8>,
    pub cni_path: Vec<PathBuf>,
    /// The plugins this binary can run in place of a delegate's binary.
    delegates: &'static [Delegate],
}

/// A plugin a binary also carries (an IPAM plugin in a main plugin's binary), run in-process
/// in place of the delegate's binary on `CNI_PATH` when that binary is ferrocni's own of the
/// same name and version ([`invoke::is_ferrocni`]): a fork+exec and the child's start-up cost
/// more than host-local's whole work.
#[derive(Clone, Copy)]
pub struct Delegate {
    /// The plugin type a config names it by, which is also its binary's name.
    pub plugin_type: &'static str,
    pub plugin: &'static dyn Plugin,
}

impl std::fmt::Debug for Delegate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.plugin_type)
    }
}

/// Which attachment an ADD, DEL or CHECK is about.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The config's network, `CNI_CONTAINERID` and `CNI_IFNAME`.
    pub id: AttachmentId,
    /// Optional on DEL: the runtime may have lost the namespace already (or handed over one
    /// that turned out to be the plugin's own, which DEL must not touch).
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS` as the runtime passed it, parsed only by the plugins that read it.
    raw_args: OsString,
}

impl Attachment {
    /// The container's namespace path, which the skeleton guarantees for ADD and CHECK.
    pub fn required_netns(&self) -> Result<&Path> {
        self.netns
            .as_deref()
            .ok_or_else(|| ProtocolError::MissingEnv(vec!["CNI_NETNS"]).into())
    }

    /// `CNI_ARGS` as `K=V` pairs, refusing text that is none, as the reference's typed
    /// arguments do. Only a plugin that reads a key calls this: text that a plugin ignores
    /// cannot fail it.
    pub fn args(&self) -> Result<CniArgs, ProtocolError> {
        CniArgs::parse_os(&self.raw_args)
    }

    /// `CNI_ARGS` as the runtime passed it.
    pub fn raw_args(&self) -> &OsStr {
        &self.raw_args
    }
}

impl Request {
    /// Decodes the plugin's own view of the config (Go-compatible key matching).
    pub fn plugin_config<T: DeserializeOwned>(&self) -> Result<T> {
        json::from_ref(&self.config).map_err(|source| {
            Error::from(ProtocolError::Decode {
                what: "network config",
                error: source,
            })
        })
    }

    /// The previous plugin's result, in any version.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        match self.config.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(value) => Ok(Some(CniResult::from_json(value.clone(), self.version)?)),
        }
    }

    /// The request another plugin would get for `config` (which this plugin built) with the
    /// same environment, for running that plugin's code in this process.
    pub fn derive(&self, config: Value) -> Result<Request> {
        let decode = |error| ProtocolError::Decode {
            what: "derived network config",
            error,
        };
        let conf: NetConf = json::from_ref(&config).map_err(decode)?;
        let stdin = serde_json::to_vec(&config).map_err(|e| decode(e.into()))?;
        Ok(Request {
            version: self.version,
            conf,
            config,
            stdin,
            cni_path: self.cni_path.clone(),
            delegates: self.delegates,
        })
    }

    /// Runs the delegate `plugin` for `command` with this request's config and environment.
    /// Returns its result for ADD.
    pub fn delegate(&self, plugin: &str, command: Command) -> Result<Option<CniResult>> {
        let path = invoke::find(plugin, &self.cni_path)?;
        let in_process = self
            .delegates
            .iter()
            .find(|d| d.plugin_type == plugin)
            .filter(|_| invoke::is_ferrocni(&path, plugin));
        let stdout = match in_process {
            Some(delegate) => run_in_process(delegate.plugin, &self.stdin, command)?,
            None => invoke::exec(&path, &self.stdin, &[("CNI_COMMAND", command.as_str())])?,
        };
        if command != Command::Add {
            return Ok(None);
        }
        let value: Value =
            serde_json::from_slice(&stdout).map_err(|source| ProtocolError::Decode {
                what: "delegated plugin result",
                error: source.into(),
            })?;
        Ok(Some(CniResult::from_json(value, self.version)?))
    }

    /// Delegated ADD, whose result is required.
    pub fn delegate_add(&self, plugin: &str) -> Result<CniResult> {
        Ok(self.delegate(plugin, Command::Add)?.unwrap_or_default())
    }
}

/// What a plugin implements. Every verb is required: a plugin that keeps no state says so
/// in its GC, rather than inheriting a silent default.
pub trait Plugin {
    /// One line for humans who run the binary by hand.
    fn about(&self) -> &'static str;

    fn supported_versions(&self) -> &'static [Version] {
        &Version::ALL
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult>;
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()>;
    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()>;
    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()>;
    fn status(&self, request: &Request) -> Result<()>;
}

/// Runs a plugin as a runtime expects and exits the process.
pub fn run(plugin: &dyn Plugin) -> ! {
    run_with(plugin, &[])
}

/// [`run`], with the plugins this binary carries to run in place of its delegates' binaries.
pub fn run_with(plugin: &dyn Plugin, delegates: &'static [Delegate]) -> ! {
    install_panic_hook();
    let mut stdout = std::io::stdout().lock();
    let outcome = dispatch(
        plugin,
        delegates,
        &process_env,
        &mut std::io::stdin().lock(),
    );
    let (text, code) = printed(outcome);
    if !text.is_empty() {
        // Nothing sensible is left to do if stdout is gone.
        let _ = writeln!(stdout, "{text}");
    }
    let _ = stdout.flush();
    std::process::exit(code)
}

/// What the process prints on stdout for `outcome`, and its exit code: a result, nothing,
/// or the spec's error object in the config's version.
fn printed(outcome: std::result::Result<Option<String>, VersionedError>) -> (String, i32) {
    match outcome {
        Ok(text) => (text.unwrap_or_default(), 0),
        Err((error, version)) => (
            serde_json::to_string(&error.to_cni(version)).unwrap_or_default(),
            1,
        ),
    }
}

/// A variable of the process environment, as bytes; empty counts as unset, as in the
/// reference.
fn process_env(key: &str) -> Option<OsString> {
    std::env::var_os(key).filter(|value| !value.is_empty())
}

/// Runs `plugin` as its own binary would run with `stdin` and this process's environment
/// plus `CNI_COMMAND`, through the same skeleton, and returns what it would print.
fn run_in_process(plugin: &dyn Plugin, stdin: &[u8], command: Command) -> Result<Vec<u8>> {
    let env = |key: &str| match key {
        "CNI_COMMAND" => Some(OsString::from(command.as_str())),
        _ => process_env(key),
    };
    match dispatch(plugin, &[], &env, &mut &stdin[..]) {
        Ok(printed) => Ok(printed.unwrap_or_default().into_bytes()),
        Err((error, version)) => Err(invoke::InvokeError::Plugin(error.to_cni(version)).into()),
    }
}

/// A panic is a bug, but the runtime still gets an error object rather than a stack trace.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let error = json!({
            "code": crate::ErrorCode::Internal.number(),
            "msg": format!("internal error: {info}"),
        });
        println!("{error}");
        eprintln!("ferrocni plugin panicked: {info}");
    }));
}

/// An error, and the version of the config it answers (none before the config was read).
type VersionedError = (Error, Option<Version>);

/// The skeleton's logic, apart from process I/O so tests can drive it.
pub fn dispatch(
    plugin: &dyn Plugin,
    delegates: &'static [Delegate],
    env: &dyn Fn(&str) -> Option<OsString>,
    stdin: &mut dyn Read,
) -> std::result::Result<Option<String>, VersionedError> {
    let fail = |error: Error| (error, None);
    let Some(command_text) = env("CNI_COMMAND") else {
        eprintln!("{}", plugin.about());
        // Which release, as the reference prints its own: every binary is built from the
        // one workspace version this crate has too.
        eprintln!("ferrocni v{}", env!("CARGO_PKG_VERSION"));
        eprintln!(
            "CNI protocol versions supported: {}",
            version_list(plugin.supported_versions())
        );
        // Someone ran the binary by hand: the text above is the answer, as with the reference.
        return Ok(None);
    };
    let command = command_text
        .to_str()
        .and_then(Command::parse)
        .ok_or_else(|| {
            let text = command_text.to_string_lossy().into_owned();
            fail(ProtocolError::UnknownCommand(text).into())
        })?;

    let mut stdin_bytes = Vec::new();
    stdin
        .read_to_end(&mut stdin_bytes)
        .map_err(|e| fail(ProtocolError::ReadStdin(e).into()))?;

    if command == Command::Version {
        return Ok(Some(version_answer(plugin, &stdin_bytes)));
    }

    let missing: Vec<&'static str> = command
        .required_env()
        .iter()
        .copied()
        .filter(|key| env(key).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(fail(ProtocolError::MissingEnv(missing).into()));
    }

    let request = parse_request(plugin, delegates, command, &stdin_bytes, env).map_err(fail)?;
    let version = Some(request.version);
    let with_version = |error: Error| (error, version);

    match command {
        Command::Add | Command::Del | Command::Check => {
            let attachment = parse_attachment(&request, command, env).map_err(with_version)?;
            match command {
                Command::Add => {
                    let result = plugin.add(&request, &attachment).map_err(with_version)?;
                    let printed = result
                        .to_json(request.version)
                        .map_err(|e| with_version(e.into()))?;
                    Ok(Some(printed.to_string()))
                }
                Command::Del => plugin
                    .del(&request, &attachment)
                    .map(|()| None)
                    .map_err(with_version),
                _ => plugin
                    .check(&request, &attachment)
                    .map(|()| None)
                    .map_err(with_version),
            }
        }
        Command::Gc => {
            let valid = ValidAttachments::of_request(&request.config, &request.conf.name)
                .map_err(|e| with_version(e.into()))?;
            plugin
                .gc(&request, &valid)
                .map(|()| None)
                .map_err(with_version)
        }
        Command::Status => plugin.status(&request).map(|()| None).map_err(with_version),
        Command::Version => unreachable!("answered above"),
    }
}

fn version_list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// VERSION echoes the version the caller asked about when we speak it, else our latest.
fn version_answer(plugin: &dyn Plugin, stdin: &[u8]) -> String {
    let supported = plugin.supported_versions();
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .and_then(|text| Version::parse(&text))
        .filter(|v| supported.contains(v));
    let latest = supported.iter().max().copied().unwrap_or(Version::LATEST);
    json!({
        "cniVersion": asked.unwrap_or(latest).as_str(),
        "supportedVersions": supported.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
    .to_string()
}

fn parse_request(
    plugin: &dyn Plugin,
    delegates: &'static [Delegate],
    command: Command,
    stdin: &[u8],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Request> {
    let decode = |source| ProtocolError::Decode {
        what: "network config",
        error: source,
    };
    let config: Value = serde_json::from_slice(stdin).map_err(|e| decode(e.into()))?;
    if !config.is_object() {
        return Err(ProtocolError::config(
            "(top level)",
            "the network config must be a JSON object",
        )
        .into());
    }
    let conf: NetConf = json::from_ref(&config).map_err(decode)?;
    validate_network_name(&conf.name)?;
    let supported = plugin.supported_versions();
    verb_allowed(command, &conf.cni_version, supported)?;
    let version = Version::parse(&conf.cni_version)
        .filter(|v| supported.contains(v))
        .ok_or_else(|| ProtocolError::IncompatibleVersion {
            config: conf.cni_version.clone(),
            supported: supported.to_vec(),
        })?;
    Ok(Request {
        version,
        conf,
        config,
        stdin: stdin.to_vec(),
        cni_path: invoke::split_path(env("CNI_PATH").unwrap_or_default()),
        delegates,
    })
}

/// For a verb newer than the spec's first version, the reference's checks in its order:
/// the config's version must be recent enough for the verb, and the plugin must speak one at
/// least as recent. A version that is no number is left to the general check.
fn verb_allowed(command: Command, config: &str, supported: &[Version]) -> Result<()> {
    let minimum = command.minimum_version();
    if minimum == Version::V0_1_0 {
        return Ok(());
    }
    let Some(asked) = numbers(config) else {
        return Ok(());
    };
    // An empty version is 0.1.0, and says so.
    let config = match Version::parse(config) {
        Some(known) => known.as_str().to_string(),
        None => config.to_string(),
    };
    if asked < minimum.numbers() {
        return Err(ProtocolError::VerbNotAllowed {
            verb: command.as_str(),
            config,
            minimum,
        }
        .into());
    }
    let latest = supported.iter().max().copied().unwrap_or(Version::LATEST);
    if asked > latest.numbers() {
        return Err(ProtocolError::VerbNotSupported {
            verb: command.as_str(),
            config,
            latest,
        }
        .into());
    }
    Ok(())
}

fn parse_attachment(
    request: &Request,
    command: Command,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Attachment> {
    let container_id = env("CNI_CONTAINERID")
        .unwrap_or_default()
        .into_string()
        .map_err(|raw| ProtocolError::InvalidContainerId {
            id: raw.to_string_lossy().into_owned(),
            reason: "not valid UTF-8",
        })?;
    validate_container_id(&container_id)?;
    let ifname = env("CNI_IFNAME")
        .unwrap_or_default()
        .into_string()
        .map_err(|raw| ProtocolError::InvalidIfName {
            name: raw.to_string_lossy().into_owned(),
            fault: IfNameFault::NotUtf8,
        })?;
    validate_ifname(&ifname)?;
    let mut netns = env("CNI_NETNS").map(PathBuf::from);
    let overridden =
        env("CNI_NETNS_OVERRIDE").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if let (Some(path), false) = (&netns, overridden) {
        if is_own_netns(path)? {
            if command != Command::Del {
                return Err(ProtocolError::SameNetns(path.display().to_string()).into());
            }
            // The runtime lost the container's namespace and the path now names ours: what
            // the attachment holds elsewhere (its address, its rules) is still released,
            // and nothing in this namespace is touched.
            eprintln!(
                "CNI_NETNS {} is the plugin's own namespace: DEL goes on as without one",
                path.display()
            );
            netns = None;
        }
    }
    Ok(Attachment {
        id: AttachmentId::new(&*request.conf.name, container_id, ifname),
        netns,
        raw_args: env("CNI_ARGS").unwrap_or_default(),
    })
}

/// Whether a `CNI_NETNS` resolves to the plugin's own namespace (the same nsfs inode):
/// configuring it would configure the host (the reference's issue #714). A path that is
/// missing, or no namespace at all, is left to the plugin, which knows whether it needs the
/// namespace and says what is wrong with it (`Netns::open`).
fn is_own_netns(path: &Path) -> Result<bool> {
    let Ok(target) = std::fs::metadata(path) else {
        return Ok(false);
    };
    let own = std::fs::metadata(OWN_NETNS).map_err(OwnNetnsUnknown)?;
    Ok(target.dev() == own.dev() && target.ino() == own.ino())
}

const OWN_NETNS: &str = "/proc/self/ns/net";

/// Without its own namespace to compare, the skeleton cannot tell whether `CNI_NETNS` is the
/// host's.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the plugin's own network namespace {OWN_NETNS}")]
pub struct OwnNetnsUnknown(#[source] std::io::Error);

impl Coded for OwnNetnsUnknown {
    fn code(&self) -> ErrorCode {
        ErrorCode::Io
    }
}

#[cfg(test)]
mod tests;
