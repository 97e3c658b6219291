//! Where nodes lease their subnets and find each other: etcd, or (for standalone
//! experiments) a static list. The agent sees only [`LeaseStore`], so a Kubernetes-API store
//! (node `podCIDR`s) can be added beside these.
//!
//! etcd layout under a prefix (default `/ferrocni/network`):
//! - `<prefix>/config`: the [`ClusterConfig`], published by the first agent given one;
//! - `<prefix>/subnets/<address>-<length>`: a [`NodeLease`], attached to the node's etcd
//!   lease, so it disappears when the node stops renewing it.

use ipnetwork::Ipv4Network;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use overlay::{ClusterConfig, NodeLease};

use crate::log::{debug, info, warning};

/// Every store call is bounded: an unreachable store must not stall the agent.
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// Creating a subnet key can lose a race to another node; try the next free one.
const CLAIM_ATTEMPTS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the lease on {0} is gone (it expired while etcd was unreachable?)")]
    LeaseLost(Ipv4Network),
    #[error("the watch on the subnet leases ended: {0}")]
    WatchEnded(String),
    #[error("no free subnet left in {0}")]
    Exhausted(Ipv4Network),
    #[error("{0}")]
    Config(String),
}

/// A change to the set of leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(Ipv4Network, NodeLease),
    Delete(Ipv4Network),
}

/// The leases as a map from subnet to holder.
pub type Leases = BTreeMap<Ipv4Network, NodeLease>;

pub trait LeaseStore {
    /// The cluster network: the store's, or `local` published there when it has none.
    fn cluster_config(
        &mut self,
        local: Option<&ClusterConfig>,
    ) -> impl Future<Output = Result<ClusterConfig, StoreError>>;

    /// Leases a subnet for `me`: the one it already holds if any (a restart), else
    /// `preferred` if free (its subnet before the lease expired), else the first free one.
    fn acquire(
        &mut self,
        config: &ClusterConfig,
        me: &NodeLease,
        preferred: Option<Ipv4Network>,
    ) -> impl Future<Output = Result<Ipv4Network, StoreError>>;

    /// Renews the lease; an error means it is lost or the store is unreachable.
    fn keep_alive(&mut self) -> impl Future<Output = Result<(), StoreError>>;

    /// Every lease now, and from then on [`LeaseStore::next_changes`] reports changes.
    fn list(&mut self) -> impl Future<Output = Result<Leases, StoreError>>;

    /// Waits for the next changes after the last list.
    fn next_changes(&mut self) -> impl Future<Output = Result<Vec<Change>, StoreError>>;

    /// Called after a failed session, before the next: drop whatever state the failure may
    /// have left broken.
    fn recover(&mut self) -> impl Future<Output = Result<(), StoreError>>;
}

async fn bounded<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(StoreError::Timeout(CALL_LIMIT)),
    }
}

/// The etcd-backed store.
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    prefix: String,
    ttl: i64,
    held: Option<HeldLease>,
    watch: Option<WatchStream>,
}

struct HeldLease {
    subnet: Ipv4Network,
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

impl EtcdStore {
    /// Prepares a client; etcd-client connects lazily, so an unreachable etcd shows up as an
    /// error of the first call, not here.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        ttl: Duration,
    ) -> Result<EtcdStore, StoreError> {
        Ok(EtcdStore {
            client: Self::client(endpoints).await?,
            endpoints: endpoints.to_vec(),
            prefix: prefix.trim_end_matches('/').to_string(),
            ttl: i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX),
            held: None,
            watch: None,
        })
    }

    /// HTTP/2 pings find a connection that went silent (etcd frozen, a path dropped) in
    /// seconds, where TCP alone could wait for minutes.
    async fn client(endpoints: &[String]) -> Result<Client, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(CALL_LIMIT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        bounded(Client::connect(endpoints, Some(options))).await
    }

    fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    fn subnet_key(&self, subnet: Ipv4Network) -> String {
        format!(
            "{}{}-{}",
            self.subnets_prefix(),
            subnet.network(),
            subnet.prefix()
        )
    }

    fn subnet_of(&self, key: &[u8]) -> Option<Ipv4Network> {
        let key = std::str::from_utf8(key).ok()?;
        let (address, length) = key.strip_prefix(&self.subnets_prefix())?.split_once('-')?;
        let subnet = Ipv4Network::new(address.parse().ok()?, length.parse().ok()?).ok()?;
        (subnet.network() == subnet.ip()).then_some(subnet)
    }

    /// A lease entry, or `None` (logged) when the key or value is not one: a malformed
    /// entry must not take the agent down.
    fn parse_entry(&self, key: &[u8], value: &[u8]) -> Option<(Ipv4Network, NodeLease)> {
        let Some(subnet) = self.subnet_of(key) else {
            warning!(
                "skipping {:?}: not a subnet key",
                String::from_utf8_lossy(key)
            );
            return None;
        };
        match serde_json::from_slice::<NodeLease>(value) {
            Ok(lease) => Some((subnet, lease)),
            Err(e) => {
                warning!("skipping the lease of {subnet}: malformed value ({e})");
                None
            }
        }
    }

    async fn claim(
        &mut self,
        key: String,
        value: &str,
        lease: i64,
        condition: Compare,
    ) -> Result<bool, StoreError> {
        let txn = Txn::new().when(vec![condition]).and_then(vec![TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
        Ok(bounded(self.client.txn(txn)).await?.succeeded())
    }
}

impl LeaseStore for EtcdStore {
    async fn cluster_config(
        &mut self,
        local: Option<&ClusterConfig>,
    ) -> Result<ClusterConfig, StoreError> {
        let key = self.config_key();
        for _ in 0..2 {
            let found = bounded(self.client.get(key.as_str(), None)).await?;
            if let Some(kv) = found.kvs().first() {
                let config: ClusterConfig = serde_json::from_slice(kv.value()).map_err(|e| {
                    StoreError::Config(format!("the cluster config at {key} is malformed: {e}"))
                })?;
                config
                    .validate()
                    .map_err(|e| StoreError::Config(format!("the cluster config at {key}: {e}")))?;
                if local.is_some_and(|l| *l != config) {
                    warning!("the cluster config in etcd differs from the local one; etcd's wins");
                }
                return Ok(config);
            }
            let Some(local) = local else {
                return Err(StoreError::Config(format!(
                    "no cluster config in etcd at {key}, and none given with --config"
                )));
            };
            let text = serde_json::to_string(local)
                .map_err(|e| StoreError::Config(format!("cannot encode the config: {e}")))?;
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(key.as_str(), text, None)]);
            if bounded(self.client.txn(txn)).await?.succeeded() {
                info!("published the cluster config at {key}");
                return Ok(local.clone());
            }
            // Another agent published first: read theirs.
        }
        Err(StoreError::Config(format!(
            "the cluster config at {key} keeps changing"
        )))
    }

    async fn acquire(
        &mut self,
        config: &ClusterConfig,
        me: &NodeLease,
        preferred: Option<Ipv4Network>,
    ) -> Result<Ipv4Network, StoreError> {
        self.held = None;
        let lease = bounded(self.client.lease_grant(self.ttl, None)).await?.id();
        let value = serde_json::to_string(me)
            .map_err(|e| StoreError::Config(format!("cannot encode the lease: {e}")))?;
        for _ in 0..CLAIM_ATTEMPTS {
            let listing = bounded(
                self.client
                    .get(self.subnets_prefix(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
            let mut taken = BTreeSet::new();
            let mut own = None;
            for kv in listing.kvs() {
                let Some(subnet) = self.subnet_of(kv.key()) else {
                    continue;
                };
                taken.insert(subnet);
                let holder = serde_json::from_slice::<NodeLease>(kv.value()).ok();
                if holder.is_some_and(|h| h.node == me.node) && config.owns(subnet) {
                    own = Some((subnet, kv.mod_revision()));
                }
            }
            let (subnet, condition) = match own {
                // Ours from before a restart: re-attach it to the new lease, unless it changed.
                Some((subnet, revision)) => (
                    subnet,
                    Compare::mod_revision(self.subnet_key(subnet), CompareOp::Equal, revision),
                ),
                None => {
                    let subnet = config
                        .free_subnet(&taken, preferred)
                        .ok_or(StoreError::Exhausted(config.network))?;
                    (
                        subnet,
                        Compare::create_revision(self.subnet_key(subnet), CompareOp::Equal, 0),
                    )
                }
            };
            if self
                .claim(self.subnet_key(subnet), &value, lease, condition)
                .await?
            {
                let (keeper, responses) = bounded(self.client.lease_keep_alive(lease)).await?;
                self.held = Some(HeldLease {
                    subnet,
                    keeper,
                    responses,
                });
                info!(
                    "leased {subnet} for node {} (etcd lease {lease:x}, ttl {} s)",
                    me.node, self.ttl
                );
                return Ok(subnet);
            }
            debug!("lost the race for {subnet}; trying again");
        }
        Err(StoreError::Config(format!(
            "could not claim a subnet in {CLAIM_ATTEMPTS} attempts"
        )))
    }

    async fn keep_alive(&mut self) -> Result<(), StoreError> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        let subnet = held.subnet;
        bounded(held.keeper.keep_alive()).await?;
        match bounded(held.responses.message()).await? {
            Some(answer) if answer.ttl() > 0 => Ok(()),
            _ => {
                self.held = None;
                Err(StoreError::LeaseLost(subnet))
            }
        }
    }

    async fn list(&mut self) -> Result<Leases, StoreError> {
        let listing = bounded(
            self.client
                .get(self.subnets_prefix(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = listing.header().map_or(0, |h| h.revision());
        let leases = listing
            .kvs()
            .iter()
            .filter_map(|kv| self.parse_entry(kv.key(), kv.value()))
            .collect();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        self.watch = Some(bounded(self.client.watch(self.subnets_prefix(), Some(options))).await?);
        Ok(leases)
    }

    async fn next_changes(&mut self) -> Result<Vec<Change>, StoreError> {
        loop {
            let Some(watch) = self.watch.as_mut() else {
                return Err(StoreError::WatchEnded("not started".to_string()));
            };
            let Some(answer) = watch.message().await? else {
                self.watch = None;
                return Err(StoreError::WatchEnded("closed by etcd".to_string()));
            };
            if answer.canceled() {
                self.watch = None;
                return Err(StoreError::WatchEnded(format!(
                    "cancelled: {} (compacted at {})",
                    answer.cancel_reason(),
                    answer.compact_revision()
                )));
            }
            let mut changes = Vec::new();
            for event in answer.events() {
                let Some(kv) = event.kv() else {
                    continue;
                };
                match event.event_type() {
                    EventType::Put => match self.parse_entry(kv.key(), kv.value()) {
                        Some((subnet, lease)) => changes.push(Change::Put(subnet, lease)),
                        // A valid lease overwritten with garbage no longer says where to go.
                        None => changes.extend(self.subnet_of(kv.key()).map(Change::Delete)),
                    },
                    EventType::Delete => {
                        changes.extend(self.subnet_of(kv.key()).map(Change::Delete));
                    }
                }
            }
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
    }

    /// A new client: a call that timed out may have left the old connection stuck, and a
    /// stuck connection would fail every retry the same way. The held lease stays in etcd
    /// until its TTL, so the next session re-attaches the node's key to a new one.
    async fn recover(&mut self) -> Result<(), StoreError> {
        self.watch = None;
        self.held = None;
        self.client = Self::client(&self.endpoints).await?;
        Ok(())
    }
}

/// Static mode: the node's subnet and its peers come from the config file; nothing changes.
pub struct StaticStore {
    pub config: ClusterConfig,
    pub subnet: Ipv4Network,
    pub peers: Leases,
}

impl LeaseStore for StaticStore {
    async fn cluster_config(
        &mut self,
        _local: Option<&ClusterConfig>,
    ) -> Result<ClusterConfig, StoreError> {
        Ok(self.config.clone())
    }

    async fn acquire(
        &mut self,
        _config: &ClusterConfig,
        _me: &NodeLease,
        _preferred: Option<Ipv4Network>,
    ) -> Result<Ipv4Network, StoreError> {
        Ok(self.subnet)
    }

    async fn keep_alive(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn list(&mut self) -> Result<Leases, StoreError> {
        Ok(self.peers.clone())
    }

    async fn next_changes(&mut self) -> Result<Vec<Change>, StoreError> {
        std::future::pending().await
    }

    async fn recover(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
