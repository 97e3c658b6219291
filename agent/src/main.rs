//! ferrocni-agent: the VXLAN overlay's node agent.
//!
//! It leases this node a subnet of the cluster network from etcd (or takes it from a static
//! config), publishes the node's VTEP in the lease, sets up the VXLAN device and the node
//! bridge, leaves the subnet and MTU in a file for the `vxlan` plugin, and keeps every other
//! node's route, neighbour and forwarding entries in line with the leases it watches.
//!
//! When etcd is unreachable it keeps what it programmed and retries with backoff; once back,
//! it re-lists and re-watches. SIGTERM stops it without revoking the lease: a restart within
//! the TTL keeps the subnet, and containers keep their addresses.

mod log;
mod node;
mod store;

use clap::Parser;
use ipnetwork::Ipv4Network;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

use kernel::netlink::Netlink;
use log::{error, info, warning, Level};
use node::{NodeKernel, Settings, Underlay};
use overlay::{self, ClusterConfig, NodeFile, NodeLease, DEFAULT_NODE_FILE};
use store::{Change, EtcdStore, LeaseStore, Leases, StaticStore, StoreError};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "VXLAN overlay node agent: subnet leases in etcd, routes to every node"
)]
struct Args {
    /// This node's name (default: the host name).
    #[arg(long, env = "FERROCNI_NODE")]
    node: Option<String>,
    /// etcd client URLs; without them the agent runs in static mode from --config.
    #[arg(long, env = "FERROCNI_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Key prefix of this overlay in etcd.
    #[arg(long, default_value = "/ferrocni/network")]
    prefix: String,
    /// The cluster network (published to etcd if it has none), or in static mode the
    /// node's subnet and its peers.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The underlay link (default: the default route's).
    #[arg(long)]
    underlay_interface: Option<String>,
    /// The underlay address (default: the underlay link's first).
    #[arg(long)]
    underlay_ip: Option<IpAddr>,
    /// The node bridge containers attach to.
    #[arg(long, default_value = "ferrocni0")]
    bridge: String,
    /// The VXLAN device.
    #[arg(long, default_value = "ferrocni.vx")]
    vxlan_device: String,
    /// Where the node's subnet and MTU are written for the vxlan plugin.
    #[arg(long, default_value = DEFAULT_NODE_FILE)]
    node_file: PathBuf,
    /// Seconds without renewal after which other nodes forget this one.
    #[arg(long, default_value_t = 20)]
    lease_ttl: u64,
    /// Seconds between full reconciliations (repairing entries someone else changed).
    #[arg(long, default_value_t = 30)]
    resync: u64,
    #[arg(long, value_enum, default_value = "info")]
    log_level: Level,
}

/// The `--config` file: the cluster network, and for static mode this node's subnet and peers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(flatten)]
    cluster: ClusterConfig,
    subnet: Option<Ipv4Network>,
    #[serde(default)]
    peers: Vec<StaticPeer>,
}

#[derive(Debug, Deserialize)]
struct StaticPeer {
    node: String,
    subnet: Ipv4Network,
    vtep: IpAddr,
}

#[derive(Debug, thiserror::Error)]
enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Netlib(#[from] cni::Error),
    #[error("{0}")]
    Usage(String),
    /// The node's own network is not as the agent needs it.
    #[error("{0}")]
    Node(String),
}

impl From<kernel::netlink::NetlinkError> for AgentError {
    fn from(error: kernel::netlink::NetlinkError) -> Self {
        AgentError::Netlib(error.into())
    }
}

/// How long a session may take to get its config and lease.
const SESSION_START_LIMIT: Duration = Duration::from_secs(15);

/// Retry delays: 200 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const LAST: Duration = Duration::from_secs(5);

    fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Self::LAST);
        delay
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// Everything that outlives one store session.
struct Agent {
    settings: Settings,
    local_config: Option<ClusterConfig>,
    me: NodeLease,
    underlay: Underlay,
    lease_ttl: Duration,
    resync: Duration,
    kernel: Option<NodeKernel>,
    /// The subnet held before (from this run or the node file): tried first on re-lease.
    previous_subnet: Option<Ipv4Network>,
    backoff: Backoff,
}

impl Agent {
    /// One session: lease, set up, list, then follow changes until the store fails.
    async fn session<S: LeaseStore>(&mut self, store: &mut S) -> Result<Infallible, AgentError> {
        // Each store call is bounded; the start as a whole is too, so a session that stalls
        // anywhere before it has a lease is abandoned and retried rather than waited on.
        let start = async {
            let config = store.cluster_config(self.local_config.as_ref()).await?;
            let subnet = store
                .acquire(&config, &self.me, self.previous_subnet)
                .await?;
            Ok::<_, AgentError>((config, subnet))
        };
        let (config, subnet) = tokio::time::timeout(SESSION_START_LIMIT, start)
            .await
            .map_err(|_| StoreError::Timeout(SESSION_START_LIMIT))??;
        let stale = self
            .kernel
            .as_ref()
            .is_none_or(|k| k.subnet != subnet || k.config != config);
        if stale {
            if self.previous_subnet.is_some_and(|s| s != subnet) {
                warning!(
                    "the subnet changed to {subnet}: containers on the old one must be re-created"
                );
            }
            self.kernel = Some(NodeKernel::set_up(
                &self.settings,
                &config,
                subnet,
                &self.underlay,
            )?);
            info!(
                "node {} is on {subnet} via {}",
                self.me.node, self.underlay.ip
            );
        }
        self.previous_subnet = Some(subnet);
        let mut leases = store.list().await?;
        self.reconcile(&leases)?;
        self.backoff.reset();

        let mut renew = tokio::time::interval(self.lease_ttl / 3);
        let mut resync = tokio::time::interval(self.resync);
        loop {
            tokio::select! {
                changes = store.next_changes() => {
                    for change in changes? {
                        match change {
                            Change::Put(subnet, lease) => leases.insert(subnet, lease),
                            Change::Delete(subnet) => leases.remove(&subnet),
                        };
                    }
                    self.reconcile(&leases)?;
                }
                _ = renew.tick() => store.keep_alive().await?,
                _ = resync.tick() => {
                    self.reconcile(&leases)?;
                }
            }
        }
    }

    fn reconcile(&mut self, leases: &Leases) -> Result<(), AgentError> {
        let Some(kernel) = self.kernel.as_mut() else {
            return Ok(());
        };
        match kernel.reconcile(leases) {
            Ok(0) => Ok(()),
            Ok(changed) => {
                info!(
                    "{changed} kernel entries changed; {} nodes known",
                    leases.len()
                );
                Ok(())
            }
            Err(e) => {
                // The next session sets the node up from scratch.
                self.kernel = None;
                Err(e)
            }
        }
    }

    /// Sessions until SIGTERM or SIGINT; between failed ones, backoff.
    async fn run<S: LeaseStore>(&mut self, store: &mut S) -> Result<(), AgentError> {
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| AgentError::Usage(format!("cannot handle SIGTERM: {e}")))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| AgentError::Usage(format!("cannot handle SIGINT: {e}")))?;
        loop {
            let delay = tokio::select! {
                outcome = self.session(store) => {
                    let Err(failure) = outcome;
                    let delay = match failure {
                        // A store that holds a bad config will not fix itself quickly.
                        AgentError::Store(StoreError::Config(_)) => Backoff::LAST,
                        _ => self.backoff.next(),
                    };
                    warning!("{}; keeping the kernel as it is, retrying in {delay:?}", cni::error::causes(&failure));
                    delay
                }
                _ = stopped(&mut terminate, &mut interrupt) => break,
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut terminate, &mut interrupt) => break,
            }
            if let Err(e) = store.recover().await {
                // The next session fails on the same cause and backs off further.
                warning!("{}", cni::error::causes(&e));
            }
        }
        info!("stopping; the lease and the kernel entries stay until the lease expires");
        Ok(())
    }
}

async fn stopped(terminate: &mut Signal, interrupt: &mut Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
}

fn load_config(path: &PathBuf) -> Result<ConfigFile, AgentError> {
    let text = std::fs::read(path)
        .map_err(|e| AgentError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let file: ConfigFile = serde_json::from_slice(&text)
        .map_err(|e| AgentError::Usage(format!("{}: {e}", path.display())))?;
    file.cluster
        .validate()
        .map_err(|e| AgentError::Usage(format!("{}: {e}", path.display())))?;
    Ok(file)
}

async fn start(args: Args) -> Result<(), AgentError> {
    let node = args
        .node
        .clone()
        .or_else(host_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AgentError::Usage("give --node: the host name is unknown".into()))?;
    let file = args.config.as_ref().map(load_config).transpose()?;
    let mut netlink = Netlink::open()?;
    let underlay = Underlay::find(
        &mut netlink,
        args.underlay_interface.as_deref(),
        args.underlay_ip,
    )?;
    let previous_subnet = NodeFile::load(&args.node_file)
        .ok()
        .flatten()
        .map(|f| f.subnet);
    let mut agent = Agent {
        settings: Settings {
            node: node.clone(),
            bridge: args.bridge.clone(),
            vxlan_device: args.vxlan_device.clone(),
            node_file: args.node_file.clone(),
        },
        local_config: file.as_ref().map(|f| f.cluster.clone()),
        me: NodeLease {
            node: node.clone(),
            vtep: underlay.ip,
            mac: overlay::node_mac(&node),
        },
        underlay,
        lease_ttl: Duration::from_secs(args.lease_ttl.max(3)),
        resync: Duration::from_secs(args.resync.max(1)),
        kernel: None,
        previous_subnet,
        backoff: Backoff(Backoff::FIRST),
    };
    if args.etcd_endpoints.is_empty() {
        let file = file.ok_or_else(|| {
            AgentError::Usage("give --etcd-endpoints, or --config with a static subnet".into())
        })?;
        let subnet = file.subnet.ok_or_else(|| {
            AgentError::Usage(
                "static mode (no --etcd-endpoints) needs \"subnet\" in --config".into(),
            )
        })?;
        let peers = file
            .peers
            .iter()
            .map(|p| {
                let lease = NodeLease {
                    node: p.node.clone(),
                    vtep: p.vtep,
                    mac: overlay::node_mac(&p.node),
                };
                (p.subnet, lease)
            })
            .collect();
        info!("static mode: {subnet} with {} peers", file.peers.len());
        let mut store = StaticStore {
            config: file.cluster,
            subnet,
            peers,
        };
        return agent.run(&mut store).await;
    }
    let mut store = EtcdStore::connect(&args.etcd_endpoints, &args.prefix, agent.lease_ttl).await?;
    agent.run(&mut store).await
}

fn main() {
    let args = Args::parse();
    log::set_level(args.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(start(args)) {
        error!("{}", cni::error::causes(&e));
        std::process::exit(1);
    }
}
