//! ferrocni-agent: the overlay's node agent.
//!
//! It owns this node a subnet of the cluster network in etcd (or takes it from a static
//! config), publishes the node's VTEP (and, with the WireGuard backend, its public key)
//! while it is alive, sets up the tunnel device (VXLAN, or WireGuard) and the node bridge,
//! leaves the subnet and MTU in a file for the `vxlan` plugin, and keeps every other node's
//! entries (routes, and neighbour and forwarding entries or WireGuard peers) in line with
//! the records it watches.
//!
//! Ownership and liveness are apart (see `records`): a short outage, of the node or of etcd,
//! costs the node its peers' routes for a while, never its subnet. When etcd is unreachable
//! the agent keeps what it programmed and retries with backoff; once back, it re-asserts its
//! records, re-lists and re-watches. SIGTERM stops it without removing anything: a restart
//! keeps the subnet, and containers keep their addresses.

mod cli;
mod health;
mod identity;
mod log;
mod names;
mod node;
mod records;
mod store;
mod wg;

use clap::Parser;
use cli::{Args, Listen};
use ipnetwork::Ipv4Network;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

use kernel::netlink::Netlink;
use node::{NodeKernel, Settings, Underlay};
use overlay::{self, Backend, ClusterConfig, NodeFile, NodeLease, PublicKey};
use records::{Me, Wanted};
use store::{Access, EtcdStore, LeaseStore, Leases, StaticStore, StoreError, Terms};

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
    /// Its WireGuard public key, with the WireGuard backend.
    #[serde(default, rename = "publicKey")]
    public_key: Option<PublicKey>,
}

#[derive(Debug, thiserror::Error)]
enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Netlib(#[from] cni::Error),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Key(#[from] wg::key::KeyError),
    #[error(transparent)]
    WireGuard(#[from] wg::uapi::UapiError),
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

/// How long a session may take to get its config and lease, besides waiting out a lapsed
/// subnet.
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
    me: Me,
    underlay: Underlay,
    lease_ttl: Duration,
    resync: Duration,
    kernel: Option<NodeKernel>,
    /// The subnet this run set the node up for: re-asserted, never traded for another.
    running: Option<Ipv4Network>,
    /// The subnet in the node file from an earlier run: asked for first.
    previous_subnet: Option<Ipv4Network>,
    backoff: Backoff,
    status: health::Shared,
    /// systemd was told the node is ready (once: `Type=notify` knows no going back).
    announced: bool,
    /// The node's WireGuard key, loaded when the cluster's backend first needs it.
    wireguard_key: Option<wg::key::PrivateKey>,
    wireguard_key_file: PathBuf,
    wireguard_socket: Option<PathBuf>,
    /// The task serving the WireGuard device's state, replaced with the device.
    mirror: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Makes ready what `config`'s backend needs before the node's records are written:
    /// with WireGuard, the node's key (its public half goes into the liveness record).
    fn prepare(&mut self, config: &ClusterConfig) -> Result<(), AgentError> {
        if config.backend != Backend::WireGuard {
            self.me.public_key = None;
            return Ok(());
        }
        if self.wireguard_key.is_none() {
            let path = &self.wireguard_key_file;
            let (key, created) = wg::key::load_or_create(path)?;
            let how = if created { "generated" } else { "loaded" };
            info!(
                "{how} the node's WireGuard key ({}): public key {}",
                path.display(),
                key.public()
            );
            wg::log_implementation(&self.settings.wireguard_device);
            self.wireguard_key = Some(key);
        }
        self.me.public_key = self.wireguard_key.as_ref().map(wg::key::PrivateKey::public);
        Ok(())
    }

    /// Serves the state of the node's WireGuard device, if it has one, for `wg show`.
    fn serve_wireguard_state(&mut self) {
        if let Some(task) = self.mirror.take() {
            task.abort();
        }
        let device = self.kernel.as_ref().and_then(NodeKernel::wireguard);
        if let (Some(device), Some(path)) = (device, &self.wireguard_socket) {
            self.mirror = Some(tokio::spawn(wg::mirror(path.clone(), device.stream())));
        }
    }

    /// One session: own a subnet, set up, list, then follow changes until the store fails.
    async fn session<S: LeaseStore>(&mut self, store: &mut S) -> Result<Infallible, AgentError> {
        // Each store call is bounded; the start as a whole is too, so a session that stalls
        // anywhere before it has a lease is abandoned and retried rather than waited on.
        let wanted = match self.running {
            Some(subnet) => Wanted::Held(subnet),
            None => Wanted::Any(self.previous_subnet),
        };
        let limit = SESSION_START_LIMIT + store.claim_wait();
        let deadline = tokio::time::Instant::now() + limit;
        let config =
            tokio::time::timeout_at(deadline, store.cluster_config(self.local_config.as_ref()))
                .await
                .map_err(|_| StoreError::Timeout(limit))??;
        self.prepare(&config)?;
        let subnet = tokio::time::timeout_at(deadline, store.acquire(&config, &self.me, wanted))
            .await
            .map_err(|_| StoreError::Timeout(limit))??;
        self.status.lock().renewed = Some(Instant::now());
        let stale = self
            .kernel
            .as_ref()
            .is_none_or(|k| k.subnet != subnet || k.config != config);
        if stale {
            if self.previous_subnet.is_some_and(|s| s != subnet) {
                warn!(
                    "the subnet changed to {subnet}: containers on the old one must be re-created"
                );
            }
            // The old device goes first: a WireGuard device holds its port and interface.
            self.kernel = None;
            self.kernel = Some(NodeKernel::set_up(
                &self.settings,
                &config,
                subnet,
                &self.underlay,
                self.wireguard_key.as_ref(),
            )?);
            self.serve_wireguard_state();
            info!(
                "node {} is on {subnet} via {} ({})",
                self.me.node, self.underlay.ip, config.backend
            );
        }
        self.running = Some(subnet);
        self.previous_subnet = Some(subnet);
        self.status.lock().subnet = Some(subnet);
        let mut leases = store.list().await?;
        self.reconcile(&leases)?;
        self.backoff.reset();

        let mut renew = tokio::time::interval(self.lease_ttl / 3);
        let mut resync = tokio::time::interval(self.resync);
        loop {
            tokio::select! {
                changes = store.next_changes() => {
                    leases = changes?;
                    self.reconcile(&leases)?;
                }
                _ = renew.tick() => {
                    store.keep_alive().await?;
                    self.status.lock().renewed = Some(Instant::now());
                }
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
        let started = Instant::now();
        match kernel.reconcile(leases) {
            Ok(pass) => {
                self.status
                    .lock()
                    .record_reconcile(started.elapsed(), pass.peers, pass.failed);
                if pass.changed > 0 {
                    info!(
                        "{} kernel entries changed; {} nodes routed",
                        pass.changed, pass.peers
                    );
                }
                self.announce_ready();
                Ok(())
            }
            Err(e) => {
                // The next session sets the node up from scratch.
                self.kernel = None;
                self.status.lock().programmed = false;
                Err(e)
            }
        }
    }

    /// Tells systemd the agent is ready the first time it is: leased and programmed, as
    /// /readyz says; units ordered after it (a runtime that attaches pods) start then.
    fn announce_ready(&mut self) {
        if self.announced {
            return;
        }
        let state = {
            let status = self.status.lock();
            if status.unready(Instant::now()).is_some() {
                return;
            }
            let subnet = status.subnet.map(|s| s.to_string()).unwrap_or_default();
            format!(
                "READY=1\nSTATUS=node {} on {subnet}, {} nodes routed",
                self.me.node, status.peers_programmed
            )
        };
        self.announced = true;
        if let Err(e) = kernel::systemd::notify(&state) {
            warn!("cannot tell systemd the agent is ready: {e}");
        }
    }

    /// Sessions until SIGTERM or SIGINT, or a failure no retry can fix; between failed
    /// sessions, backoff.
    async fn run<S: LeaseStore>(&mut self, store: &mut S) -> Result<(), AgentError> {
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| AgentError::Usage(format!("cannot handle SIGTERM: {e}")))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| AgentError::Usage(format!("cannot handle SIGINT: {e}")))?;
        loop {
            let delay = tokio::select! {
                outcome = self.session(store) => {
                    let Err(failure) = outcome;
                    match &failure {
                        AgentError::Store(StoreError::Conflict(_) | StoreError::Refused(_)) => {
                            return Err(failure)
                        }
                        AgentError::Store(StoreError::Etcd(_) | StoreError::Timeout(_) | StoreError::WatchEnded(_)) => {
                            self.status.lock().etcd_errors += 1;
                        }
                        AgentError::Store(StoreError::LeaseLost { .. } | StoreError::Rewritten { .. }) => {
                            self.status.lock().reasserts += 1;
                        }
                        _ => {}
                    }
                    let delay = match failure {
                        // A store that holds a bad config will not fix itself quickly.
                        AgentError::Store(StoreError::Config(_)) => Backoff::LAST,
                        // Re-assert at once: peers are not routing to this node meanwhile.
                        AgentError::Store(StoreError::LeaseLost { .. } | StoreError::Rewritten { .. }) => {
                            self.backoff.reset();
                            self.backoff.next()
                        }
                        _ => self.backoff.next(),
                    };
                    warn!("{}; keeping the kernel as it is, retrying in {delay:?}", cni::error::causes(&failure));
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
                warn!("{}", cni::error::causes(&e));
            }
        }
        info!("stopping; the records and the kernel entries stay (peers drop this node when its liveness lease expires)");
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

/// The static-mode store from `--config`.
fn static_store(file: Option<ConfigFile>) -> Result<StaticStore, AgentError> {
    let file = file.ok_or_else(|| {
        AgentError::Usage("give --etcd-endpoints, or --config with a static subnet".into())
    })?;
    let subnet = file.subnet.ok_or_else(|| {
        AgentError::Usage("static mode (no --etcd-endpoints) needs \"subnet\" in --config".into())
    })?;
    let peers = file
        .peers
        .iter()
        .map(|p| {
            let lease = NodeLease {
                node: p.node.clone(),
                vtep: p.vtep,
                mac: overlay::node_mac(&p.node),
                public_key: p.public_key,
            };
            (p.subnet, lease)
        })
        .collect();
    info!("static mode: {subnet} with {} peers", file.peers.len());
    Ok(StaticStore {
        config: file.cluster,
        subnet,
        peers,
    })
}

async fn start(args: Args) -> Result<(), AgentError> {
    let node = args
        .node
        .clone()
        .or_else(host_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AgentError::Usage("give --node: the host name is unknown".into()))?;
    if node.contains('/') {
        return Err(AgentError::Usage(format!(
            "--node {node:?}: a node name cannot contain '/'"
        )));
    }
    let lease_ttl = Duration::from_secs(args.lease_ttl.max(3));
    let subnet_ttl = Duration::from_secs(args.subnet_ttl);
    if subnet_ttl < lease_ttl * 2 {
        return Err(AgentError::Usage(format!(
            "--subnet-ttl {} must be at least twice --lease-ttl ({} s)",
            args.subnet_ttl,
            lease_ttl.as_secs()
        )));
    }
    let file = args.config.as_ref().map(load_config).transpose()?;
    let mut netlink = Netlink::open()?;
    let underlay = Underlay::find(
        &mut netlink,
        args.underlay_interface.as_deref(),
        args.underlay_ip,
    )?;
    let status = health::Shared::default();
    status.lock().lease_ttl = lease_ttl;
    if let Listen(Some(address)) = args.metrics_address {
        let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
            AgentError::Usage(format!("cannot serve --metrics-address {address}: {e}"))
        })?;
        tokio::spawn(health::serve(listener, status.clone()));
    }
    let previous_subnet = NodeFile::load(&args.node_file)
        .ok()
        .flatten()
        .map(|f| f.subnet);
    let etcd = !args.etcd_endpoints.is_empty();
    // Static mode has no records to tell machines apart by, and needs no identity on disk.
    let identity = if etcd {
        let (identity, created) = identity::load_or_create(&args.identity_file)?;
        if created {
            info!(
                "generated this machine's identity {}… in {}",
                records::short(&identity),
                args.identity_file.display()
            );
        }
        identity
    } else {
        String::new()
    };
    let mut agent = Agent {
        settings: Settings {
            node: node.clone(),
            bridge: args.bridge.clone(),
            vxlan_device: args.vxlan_device.clone(),
            wireguard_device: args.wireguard_device.clone(),
            node_file: args.node_file.clone(),
        },
        local_config: file.as_ref().map(|f| f.cluster.clone()),
        me: Me {
            node: node.clone(),
            identity,
            vtep: underlay.ip,
            mac: overlay::node_mac(&node),
            public_key: None,
        },
        underlay,
        lease_ttl,
        resync: Duration::from_secs(args.resync.max(1)),
        kernel: None,
        running: None,
        previous_subnet,
        backoff: Backoff(Backoff::FIRST),
        status,
        announced: false,
        wireguard_key: None,
        wireguard_key_file: args.wireguard_key_file.clone(),
        wireguard_socket: match &args.wireguard_socket {
            Some(path) if path.as_os_str() == "off" => None,
            Some(path) => Some(path.clone()),
            None => Some(wg::default_socket(&args.wireguard_device)),
        },
        mirror: None,
    };
    if !etcd {
        let mut store = static_store(file)?;
        return agent.run(&mut store).await;
    }
    let access = Access {
        endpoints: args.etcd_endpoints.clone(),
        ca_file: args.etcd_cafile.clone(),
        cert_file: args.etcd_certfile.clone(),
        key_file: args.etcd_keyfile.clone(),
        user: args.etcd_username.clone().zip(args.etcd_password.clone()),
    };
    let terms = Terms {
        prefix: args.prefix.clone(),
        liveness_ttl: lease_ttl,
        ownership_ttl: subnet_ttl,
        // A live owner whose ownership lapsed (an etcd stall longer than --subnet-ttl)
        // notices within a renewal (a third of the liveness TTL) or a call's time limit,
        // sleeps at most the longest backoff, then re-asserts: the grace covers all three.
        grace: lease_ttl + store::CALL_LIMIT + Backoff::LAST,
        take_over: args.take_over,
    };
    let mut store = EtcdStore::new(access.clone(), terms)?;
    store.probe().await?;
    let names = names::Settings {
        root: args.dns_dir.clone(),
        prefix: args.prefix.clone(),
        node: node.clone(),
    };
    tokio::spawn(names::run(access, names));
    agent.run(&mut store).await
}

fn main() {
    let args = Args::parse();
    match log::filter(&args.log_level) {
        Ok(filter) => log::init(filter),
        Err(e) => {
            // Before logging is set up: say it once, and never panic on a closed stderr.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "ferrocni-agent: {e}");
            std::process::exit(2);
        }
    }
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
