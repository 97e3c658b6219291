//! Where nodes own their subnets and find each other: etcd, or (for standalone experiments)
//! a static list. The agent sees only [`LeaseStore`], so a Kubernetes-API store (node
//! `podCIDR`s) can be added beside these.
//!
//! The records and the choices over them are in [`crate::records`]; this module talks to
//! etcd: it claims a subnet in one transaction, keeps the two leases alive, follows every
//! record through one watch, and notices when its own records are deleted or rewritten by
//! someone else.

mod access;
mod etcd;

use ipnetwork::Ipv4Network;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use overlay::{ClusterConfig, NodeLease};

use crate::records::{LeaseId, Me, Wanted};

pub use access::Access;
pub use etcd::{EtcdStore, Terms};

/// Every store call is bounded: an unreachable store must not stall the agent.
pub const CALL_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {}", describe(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// etcd no longer has one of the node's leases (it expired while etcd was unreachable,
    /// or someone revoked it): the next session re-asserts the records.
    #[error("the {what} lease {lease} is gone")]
    LeaseLost { what: &'static str, lease: LeaseId },
    /// Someone deleted or rewrote one of the node's own records: re-asserted next session.
    #[error("{key} was {how} by someone else")]
    Rewritten { key: String, how: &'static str },
    /// Another machine holds this node's name or subnet: the agent stops (its supervisor
    /// restarting it finds the same and refuses, loudly) rather than fight over it.
    #[error("{0}")]
    Conflict(String),
    /// The TLS handshake or the login failed: retrying cannot help.
    #[error(
        "etcd and this agent do not accept each other's credentials, which retrying cannot fix \
         (see --etcd-cafile, --etcd-certfile with --etcd-keyfile, --etcd-username with \
         --etcd-password): {0}"
    )]
    Refused(String),
    #[error("the watch on the overlay's records ended: {0}")]
    WatchEnded(String),
    #[error("no free subnet left in {0}")]
    Exhausted(Ipv4Network),
    #[error("{0}")]
    Config(String),
}

/// An etcd error with what it hides: etcd-client's errors report no source, and tonic's
/// top level says only "transport error" where the cause says "invalid peer certificate".
fn describe(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::TransportError(e) => cni::error::causes(e),
        etcd_client::Error::GRpcStatus(status) => {
            let mut text = format!("{:?}: {}", status.code(), status.message());
            if let Some(source) = std::error::Error::source(status) {
                let causes = cni::error::causes(source);
                if !text.ends_with(&causes) {
                    text.push_str(": ");
                    text.push_str(&causes);
                }
            }
            text
        }
        other => other.to_string(),
    }
}

/// The nodes peers route to, as a map from subnet to node.
pub type Leases = BTreeMap<Ipv4Network, NodeLease>;

pub trait LeaseStore {
    /// The cluster network: the store's, or `local` published there when it has none.
    fn cluster_config(
        &mut self,
        local: Option<&ClusterConfig>,
    ) -> impl Future<Output = Result<ClusterConfig, StoreError>>;

    /// Owns a subnet for `me` and publishes it live: the one it owns already (a restart),
    /// else as [`crate::records::choose`] decides. Fails with [`StoreError::Conflict`] when
    /// another machine holds `me`'s name, or the subnet `wanted` holds.
    fn acquire(
        &mut self,
        config: &ClusterConfig,
        me: &Me,
        wanted: Wanted,
    ) -> impl Future<Output = Result<Ipv4Network, StoreError>>;

    /// The longest [`LeaseStore::acquire`] may wait out a lapsed subnet.
    fn claim_wait(&self) -> Duration;

    /// Renews the leases; an error means one is lost or the store is unreachable.
    fn keep_alive(&mut self) -> impl Future<Output = Result<(), StoreError>>;

    /// The nodes to route to now; from then on [`LeaseStore::next_changes`] follows them.
    fn list(&mut self) -> impl Future<Output = Result<Leases, StoreError>>;

    /// Waits for the next change after the last list, and returns the nodes to route to.
    fn next_changes(&mut self) -> impl Future<Output = Result<Leases, StoreError>>;

    /// Called after a failed session, before the next: drop whatever state the failure may
    /// have left broken.
    fn recover(&mut self) -> impl Future<Output = Result<(), StoreError>>;
}

pub async fn bounded<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(StoreError::Timeout(CALL_LIMIT)),
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
        _me: &Me,
        _wanted: Wanted,
    ) -> Result<Ipv4Network, StoreError> {
        Ok(self.subnet)
    }

    fn claim_wait(&self) -> Duration {
        Duration::ZERO
    }

    async fn keep_alive(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn list(&mut self) -> Result<Leases, StoreError> {
        Ok(self.peers.clone())
    }

    async fn next_changes(&mut self) -> Result<Leases, StoreError> {
        std::future::pending().await
    }

    async fn recover(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
