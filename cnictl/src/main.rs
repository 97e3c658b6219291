//! cnictl: attach network namespaces to CNI networks the way a container runtime does, for
//! experiments, scripts and debugging. `cnictl demo` shows the whole thing in one go.

mod cli;
mod conf;
mod demo;
mod runtime;

use clap::Parser;
use cli::{Cli, Cmd, NetnsCmd, RuntimeArgs, Target};
use kernel::netns::{Netns, NetnsError, NETNS_DIR};
use serde_json::{json, Map, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runtime::{Attachment, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}: {1}")]
    Config(PathBuf, String),
    #[error("no network named {0:?} in {1}")]
    NoNetwork(String, PathBuf),
    #[error("{plugin} {command} failed: {error}")]
    Plugin {
        plugin: String,
        command: String,
        error: Box<cni::invoke::InvokeError>,
    },
    #[error("{0} printed something that is not a result: {1}")]
    Garbled(String, String),
    #[error("{0} is not attached to {1} (no cached result)")]
    NotAttached(String, String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Lib(#[from] cni::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Usage(String),
}

impl CtlError {
    fn plugin(plugin: &str, command: &str, error: cni::invoke::InvokeError) -> Self {
        CtlError::Plugin {
            plugin: plugin.to_string(),
            command: command.to_string(),
            error: Box::new(error),
        }
    }
}

impl RuntimeArgs {
    fn capability_args(&self) -> Result<Map<String, Value>, CtlError> {
        let mut args = Map::new();
        let mut mappings = Vec::new();
        for port in &self.ports {
            let (ports, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
            let parsed = ports
                .split_once(':')
                .and_then(|(h, c)| Some((h.parse::<u16>().ok()?, c.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    CtlError::Usage(format!("--port {port:?}: expected HOST:CONTAINER[/PROTO]"))
                })?;
            mappings.push(
                json!({"hostPort": parsed.0, "containerPort": parsed.1, "protocol": protocol}),
            );
        }
        if !mappings.is_empty() {
            args.insert("portMappings".into(), Value::Array(mappings));
        }
        if !self.ips.is_empty() {
            args.insert("ips".into(), json!(self.ips));
        }
        if let Some(mac) = &self.mac {
            args.insert("mac".into(), json!(mac));
        }
        if let Some(rate) = self.bandwidth {
            let burst = rate.max(8 * 1500);
            args.insert(
                "bandwidth".into(),
                json!({"ingressRate": rate, "ingressBurst": burst, "egressRate": rate, "egressBurst": burst}),
            );
        }
        Ok(args)
    }

    fn cni_args(&self) -> Result<Vec<(String, String)>, CtlError> {
        let mut pairs = vec![("IgnoreUnknown".to_string(), "1".to_string())];
        for arg in &self.args {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| CtlError::Usage(format!("--arg {arg:?}: expected K=V")))?;
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(pairs)
    }
}

/// A namespace argument: a name under /run/netns, or a path.
fn netns_path(netns: &str) -> String {
    if netns.contains('/') {
        netns.to_string()
    } else {
        Path::new(NETNS_DIR).join(netns).display().to_string()
    }
}

fn attachment(target: &Target, runtime: &RuntimeArgs) -> Result<Attachment, CtlError> {
    let path = netns_path(&target.netns);
    let default_id = Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Attachment {
        container_id: target.id.clone().unwrap_or(default_id),
        netns: path,
        ifname: target.ifname.clone(),
        cni_args: runtime.cni_args()?,
        capability_args: runtime.capability_args()?,
    })
}

fn plugin_path(cli_path: &Option<String>) -> Vec<PathBuf> {
    let text = cli_path
        .clone()
        .or_else(|| std::env::var("CNI_PATH").ok())
        .unwrap_or_else(|| "/opt/cni/bin".to_string());
    cni::invoke::split_path(&text)
}

/// The addresses of a result, for humans.
fn addresses(result: &Value) -> String {
    let mut ips: Vec<String> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str().map(str::to_string))
        .collect();
    for legacy in ["ip4", "ip6"] {
        if let Some(ip) = result[legacy]["ip"].as_str() {
            ips.push(ip.to_string());
        }
    }
    ips.join(", ")
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn networks_named(cli: &Cli, name: &Option<String>) -> Result<Vec<conf::Network>, CtlError> {
    match name {
        Some(name) => Ok(vec![conf::load(&cli.conf_dir, name)?]),
        None => conf::load_all(&cli.conf_dir),
    }
}

/// Runs `command` inside `netns` with the terminal attached; returns its exit code.
fn run_inside(netns: &Netns, command: &[String]) -> Result<i32, CtlError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CtlError::Usage("no command to run".into()))?;
    let mut child = netns
        .command(program)
        .map_err(|e| CtlError::Io(netns.path().to_path_buf(), e))?;
    child.args(args);
    // SAFETY: runs between fork and exec, after the namespace switch; signal(2) is
    // async-signal-safe. The child gets Ctrl-C back while we ignore it below.
    unsafe {
        child.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    // Ctrl-C goes to the command; we stay to clean up after it.
    // SAFETY: setting a signal's disposition to "ignore" involves no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = child
        .status()
        .map_err(|e| CtlError::Io(PathBuf::from(program), e))?;
    Ok(status.code().unwrap_or(130))
}

fn execute(cli: &Cli) -> Result<i32, CtlError> {
    let runtime = Runtime {
        cni_path: plugin_path(&cli.path),
        cache_dir: cli.cache_dir.clone(),
        host: None,
    };
    match &cli.command {
        Cmd::Add {
            target,
            runtime: args,
        } => {
            let network = conf::load(&cli.conf_dir, &target.network)?;
            let result = runtime.add(&network, &attachment(target, args)?)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
            } else {
                println!(
                    "attached {} to {}: {}",
                    target.netns,
                    target.network,
                    addresses(&result)
                );
            }
        }
        Cmd::Check { target } => {
            let network = conf::load(&cli.conf_dir, &target.network)?;
            runtime.check(&network, &attachment(target, &RuntimeArgs::default())?)?;
            println!("{} on {}: ok", target.netns, target.network);
        }
        Cmd::Del { target } => {
            let network = conf::load(&cli.conf_dir, &target.network)?;
            runtime.del(&network, &attachment(target, &RuntimeArgs::default())?)?;
            println!("detached {} from {}", target.netns, target.network);
        }
        Cmd::Gc { network } => {
            for network in networks_named(cli, network)? {
                let removed = runtime.gc(&network)?;
                println!(
                    "{}: collected {} stale attachment(s)",
                    network.name(),
                    removed.len()
                );
            }
        }
        Cmd::Status { network } => {
            let mut rows = Vec::new();
            let mut failed = false;
            for network in networks_named(cli, network)? {
                let state = match runtime.status(&network) {
                    Ok(()) => "ready".to_string(),
                    Err(e) => {
                        failed = true;
                        format!("not ready: {e}")
                    }
                };
                rows.push(vec![
                    network.name().to_string(),
                    network.version.to_string(),
                    state,
                ]);
            }
            if cli.json {
                let items: Vec<Value> = rows
                    .iter()
                    .map(|r| json!({"network": r[0], "cniVersion": r[1], "status": r[2]}))
                    .collect();
                println!("{}", Value::Array(items));
            } else {
                print_table(&["NETWORK", "VERSION", "STATUS"], &rows);
            }
            return Ok(i32::from(failed));
        }
        Cmd::Ls => {
            let entries = runtime.attachments();
            if cli.json {
                let items: Vec<Value> = entries
                    .iter()
                    .map(|e| json!({"network": e.network, "containerID": e.container_id, "ifname": e.ifname, "netns": e.netns, "result": e.result}))
                    .collect();
                println!("{}", Value::Array(items));
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.network.clone(),
                            e.container_id.clone(),
                            e.ifname.clone(),
                            e.netns.clone(),
                            addresses(&e.result),
                        ]
                    })
                    .collect();
                print_table(
                    &["NETWORK", "CONTAINER", "IFNAME", "NETNS", "ADDRESSES"],
                    &rows,
                );
            }
        }
        Cmd::Netns { action } => match action {
            NetnsCmd::Add { name } => {
                Netns::create(name)?;
                println!("created {}", netns_path(name));
            }
            NetnsCmd::Del { name } => {
                Netns::delete(name)?;
                println!("deleted {name}");
            }
            NetnsCmd::Ls => {
                let names = Netns::list();
                if cli.json {
                    println!("{}", json!(names));
                } else {
                    names.iter().for_each(|n| println!("{n}"));
                }
            }
        },
        Cmd::Run {
            networks,
            runtime: args,
            command,
        } => {
            let name = format!("cnictl-run-{}", std::process::id());
            let netns = Netns::create(&name)?;
            let target = |network: &str| Target {
                network: network.to_string(),
                netns: name.clone(),
                ifname: String::new(),
                id: None,
            };
            let mut attached: Vec<(conf::Network, Attachment)> = Vec::new();
            let mut outcome = Ok(0);
            for (i, network) in networks.iter().enumerate() {
                let mut t = target(network);
                t.ifname = format!("eth{i}");
                let step = conf::load(&cli.conf_dir, network).and_then(|n| {
                    let a = attachment(&t, args)?;
                    let result = runtime.add(&n, &a)?;
                    eprintln!("cnictl: {network}: {}", addresses(&result));
                    attached.push((n, a));
                    Ok(())
                });
                if let Err(e) = step {
                    outcome = Err(e);
                    break;
                }
            }
            if outcome.is_ok() {
                outcome = run_inside(&netns, command);
            }
            for (network, a) in attached.iter().rev() {
                if let Err(e) = runtime.del(network, a) {
                    eprintln!("cnictl: detaching {}: {e}", network.name());
                }
            }
            drop(netns);
            Netns::delete(&name)?;
            return outcome;
        }
        Cmd::Demo => demo::run()?,
        Cmd::ServeHttp { port, body } => demo::serve_http(*port, body)?,
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(&cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("cnictl: {e}");
            ExitCode::from(1)
        }
    }
}
