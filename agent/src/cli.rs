//! The agent's command line: every option, its `FERROCNI_*` variable and its help. Apart
//! from `main` so that `xtask` generates the man page and shell completions from these very
//! definitions.

use clap::Parser;
use overlay::DEFAULT_NODE_FILE;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

const AFTER_HELP: &str = "\
Every option can also be given in the environment variable shown with it.

HTTP on --metrics-address: /healthz (200 while the agent runs), /readyz (200 when the node
holds its lease and its kernel is programmed, else 503 and why), /metrics (Prometheus).

Exit status: 0 after SIGTERM or SIGINT; 1 when the agent cannot start or must stop: bad
settings, credentials etcd refuses, the node's name or subnet held by another machine; 2 for
options that do not parse.";

#[derive(Debug, Parser)]
#[command(
    name = "ferrocni-agent",
    version,
    about = "Overlay node agent (VXLAN or WireGuard): subnet ownership in etcd, routes to every live node",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// This node's name (default: the host name).
    #[arg(long, env = "FERROCNI_NODE")]
    pub node: Option<String>,
    /// Where this machine's identity is kept (generated on the first start, mode 0600). A
    /// second machine started with the same --node has another identity and is refused.
    #[arg(
        long,
        env = "FERROCNI_IDENTITY_FILE",
        default_value = "/var/lib/ferrocni/identity"
    )]
    pub identity_file: PathBuf,
    /// Take this node's name (and its subnet) over from another machine that held it: for
    /// a node replaced or reinstalled. An agent still running there stops.
    #[arg(long, env = "FERROCNI_TAKE_OVER")]
    pub take_over: bool,
    /// etcd client URLs; without them the agent runs in static mode from --config.
    #[arg(long, env = "FERROCNI_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// The CA certificate (PEM) that signed etcd's server certificate; needed with https://
    /// endpoints.
    #[arg(long, env = "FERROCNI_ETCD_CAFILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// A client certificate (PEM) for etcd's --client-cert-auth, with --etcd-keyfile.
    #[arg(long, env = "FERROCNI_ETCD_CERTFILE")]
    pub etcd_certfile: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "FERROCNI_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<PathBuf>,
    /// An etcd user, with --etcd-password.
    #[arg(long, env = "FERROCNI_ETCD_USERNAME", requires = "etcd_password")]
    pub etcd_username: Option<String>,
    /// The etcd user's password; better given in the environment than on the command line,
    /// where every local user can read it.
    #[arg(
        long,
        env = "FERROCNI_ETCD_PASSWORD",
        hide_env_values = true,
        requires = "etcd_username"
    )]
    pub etcd_password: Option<String>,
    /// Key prefix of this overlay in etcd.
    #[arg(long, env = "FERROCNI_PREFIX", default_value = "/ferrocni/network")]
    pub prefix: String,
    /// The cluster network (published to etcd if it has none), or in static mode the
    /// node's subnet and its peers.
    #[arg(long, env = "FERROCNI_CONFIG")]
    pub config: Option<PathBuf>,
    /// The underlay link (default: the default route's).
    #[arg(long, env = "FERROCNI_UNDERLAY_INTERFACE")]
    pub underlay_interface: Option<String>,
    /// The underlay address (default: the underlay link's first).
    #[arg(long, env = "FERROCNI_UNDERLAY_IP")]
    pub underlay_ip: Option<IpAddr>,
    /// The node bridge containers attach to.
    #[arg(long, env = "FERROCNI_BRIDGE", default_value = "ferrocni0")]
    pub bridge: String,
    /// The VXLAN device.
    #[arg(long, env = "FERROCNI_VXLAN_DEVICE", default_value = "ferrocni.vx")]
    pub vxlan_device: String,
    /// The WireGuard interface (WireGuard backend).
    #[arg(long, env = "FERROCNI_WIREGUARD_DEVICE", default_value = "ferrocni.wg")]
    pub wireguard_device: String,
    /// The node's WireGuard private key (WireGuard backend): generated on the first start,
    /// mode 0600; only its public key is published.
    #[arg(
        long,
        env = "FERROCNI_WIREGUARD_KEY_FILE",
        default_value = "/var/lib/ferrocni/wireguard.key"
    )]
    pub wireguard_key_file: PathBuf,
    /// Where the WireGuard device's state is served read-only, for `wg show` (default:
    /// /var/run/wireguard/<device>.sock, where `wg` looks), or "off".
    #[arg(long, env = "FERROCNI_WIREGUARD_SOCKET")]
    pub wireguard_socket: Option<PathBuf>,
    /// Where the node's subnet and MTU are written for the vxlan plugin.
    #[arg(long, env = "FERROCNI_NODE_FILE", default_value = DEFAULT_NODE_FILE)]
    pub node_file: PathBuf,
    /// Seconds of liveness: a node that has not renewed for this long is dropped from its
    /// peers' routes (its subnet stays its own; see --subnet-ttl).
    #[arg(long, env = "FERROCNI_LEASE_TTL", default_value_t = 20)]
    pub lease_ttl: u64,
    /// Seconds of subnet ownership: a node down for longer loses its subnet to the next node
    /// that needs one (not before its owner had a grace period to come back, counted while
    /// etcd answers). At least twice --lease-ttl.
    #[arg(long, env = "FERROCNI_SUBNET_TTL", default_value_t = 24 * 3600)]
    pub subnet_ttl: u64,
    /// Seconds between full reconciliations (repairing entries someone else changed).
    #[arg(long, env = "FERROCNI_RESYNC", default_value_t = 30)]
    pub resync: u64,
    /// Where /healthz, /readyz and /metrics are served (address:port), or "off".
    #[arg(
        long,
        env = "FERROCNI_METRICS_ADDRESS",
        default_value = "127.0.0.1:9471"
    )]
    pub metrics_address: Listen,
    /// Where the dnsname plugin keeps each network's names (its `runtimeDir`): this node's
    /// pods' names are published in etcd from there, and the other nodes' written there.
    #[arg(long, env = "FERROCNI_DNS_DIR", default_value = ::names::DEFAULT_ROOT)]
    pub dns_dir: PathBuf,
    /// A level (error, warn, info, debug, trace) for the agent, its libraries staying at
    /// warn; or a filter by module, e.g. "info,ferrocni_agent::store=debug,h2=warn".
    #[arg(long, env = "FERROCNI_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `--metrics-address`: an address to listen on, or none.
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<SocketAddr>);

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "off" {
            return Ok(Listen(None));
        }
        text.parse()
            .map(|address| Listen(Some(address)))
            .map_err(|e| format!("{text:?} is no address:port ({e}), nor \"off\""))
    }
}
