//! The etcd-backed store: the connection, the view of every record kept by one watch, the
//! node's own records checked after each change, and the session calls of [`LeaseStore`].

mod claim;

use ipnetwork::Ipv4Network;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper,
    Txn, TxnOp, WatchOptions, WatchStream,
};
use overlay::ClusterConfig;
use tracing::{error, info, warn};

use super::{bounded, describe, Access, LeaseStore, Leases, StoreError, CALL_LIMIT};
use crate::records::{short, Entry, Key, Layout, LeaseId, Liveness, Me, Ownership, View, Wanted};

/// Creating a record can lose a race to another node; choose again.
const CLAIM_ATTEMPTS: usize = 32;

/// Whether `error` is etcd (or the TLS handshake) refusing this client's credentials, as
/// opposed to etcd being unreachable: the one retries cannot fix. Told by the words of the
/// cause, the only place rustls' and etcd's reasons show through etcd-client.
fn refusal(error: &etcd_client::Error) -> Option<String> {
    let text = describe(error);
    let lower = text.to_ascii_lowercase();
    let credentials = [
        "certificate",
        "alert",
        "authentication",
        "auth token",
        "permission denied",
        "user name",
    ];
    let refused = matches!(
        error,
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_)
    ) || credentials.iter().any(|c| lower.contains(c));
    refused.then_some(text)
}

/// Whether `error` is a connection that was made and then closed by the server (not
/// refused, not timed out).
fn closed_after_connecting(error: &etcd_client::Error) -> bool {
    let text = describe(error).to_ascii_lowercase();
    [
        "broken pipe",
        "connection reset",
        "connection closed",
        "unexpected eof",
    ]
    .iter()
    .any(|c| text.contains(c))
}

/// How many closed TLS connections in a row at start mean etcd refuses the client.
const CLOSED_PROBES: usize = 3;

/// The etcd-backed store.
pub struct EtcdStore {
    access: Access,
    /// Made on first use: etcd may be down when the agent starts.
    client: Option<Client>,
    layout: Layout,
    liveness_ttl: i64,
    ownership_ttl: i64,
    /// How long a lapsed subnet must stay untouched, with etcd answering throughout, before
    /// another node takes it: longer than a live owner takes to notice and re-assert.
    grace: Duration,
    /// Take over this node's name from another identity, once.
    take_over: bool,
    held: Option<Held>,
    /// An ownership lease granted for a claim that lost its race: the next claim uses it,
    /// rather than leaving hours-long leases behind.
    spare: Option<LeaseId>,
    view: View,
    watch: Option<WatchStream>,
}

/// A lease being kept alive.
struct Kept {
    id: LeaseId,
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

/// The node's records as it wrote them, and their leases.
struct Held {
    me: Me,
    subnet: Ipv4Network,
    liveness: Kept,
    ownership: Kept,
    liveness_value: Vec<u8>,
    ownership_value: Vec<u8>,
}

/// Settings of an [`EtcdStore`].
pub struct Terms {
    pub prefix: String,
    pub liveness_ttl: Duration,
    pub ownership_ttl: Duration,
    pub grace: Duration,
    pub take_over: bool,
}

fn seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Checks the access settings and files now, so a wrong path fails the start.
    pub fn new(access: Access, terms: Terms) -> Result<EtcdStore, StoreError> {
        access.options()?;
        Ok(EtcdStore {
            access,
            client: None,
            layout: Layout::new(&terms.prefix),
            liveness_ttl: seconds(terms.liveness_ttl),
            ownership_ttl: seconds(terms.ownership_ttl),
            grace: terms.grace,
            take_over: terms.take_over,
            held: None,
            spare: None,
            view: View::default(),
            watch: None,
        })
    }

    /// The client, connected if it is not yet (etcd-client connects lazily without a user,
    /// at once with one, to authenticate).
    async fn client(&mut self) -> Result<Client, StoreError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let options = self.access.options()?;
        let client = bounded(Client::connect(&self.access.endpoints, Some(options))).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// A first call to etcd at start: credentials etcd refuses (a wrong CA, no client
    /// certificate, a wrong password) stop the agent at once with the reason; an etcd that
    /// does not answer is only warned about, since the agent retries until it does.
    pub async fn probe(&mut self) -> Result<(), StoreError> {
        let tls = self
            .access
            .endpoints
            .iter()
            .any(|e| e.starts_with("https://"));
        let mut closed = 0;
        loop {
            let key = self.layout.config();
            let outcome = match self.client().await {
                Ok(mut client) => bounded(client.get(key, None)).await.map(drop),
                Err(e) => Err(e),
            };
            let error = match outcome {
                Err(StoreError::Etcd(e)) => e,
                Err(StoreError::Timeout(limit)) => {
                    warn!("etcd did not answer within {limit:?}; retrying");
                    self.client = None;
                    return Ok(());
                }
                other => return other,
            };
            self.client = None;
            if let Some(reason) = refusal(&error) {
                return Err(StoreError::Refused(reason));
            }
            // Under TLS 1.3 a server that wants a client certificate checks it after the
            // handshake and closes the connection; the client often sees the close before
            // the alert that says why. Again and again at start, that is the reason.
            if tls && closed_after_connecting(&error) {
                closed += 1;
                if closed < CLOSED_PROBES {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                return Err(StoreError::Refused(format!(
                    "etcd closed the TLS connection right after the handshake, {CLOSED_PROBES} times: \
                     it most likely wants a client certificate it trusts ({})",
                    describe(&error)
                )));
            }
            warn!("etcd does not answer yet ({}); retrying", describe(&error));
            return Ok(());
        }
    }

    /// Every record under the prefix, and the revision they were read at.
    async fn read(&self, client: &mut Client) -> Result<(View, Vec<KeyValue>, i64), StoreError> {
        let listing =
            bounded(client.get(self.layout.root(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = listing.header().map_or(0, |h| h.revision());
        let mut view = View::default();
        for kv in listing.kvs() {
            self.apply_put(&mut view, kv);
        }
        Ok((view, listing.kvs().to_vec(), revision))
    }

    /// A record put: into `view`, or (malformed) out of it with a warning. A malformed
    /// subnet record still occupies its subnet: it is nobody's to take.
    fn apply_put(&self, view: &mut View, kv: &KeyValue) {
        fn entry<T>(kv: &KeyValue, record: T) -> Entry<T> {
            Entry {
                record,
                mod_revision: kv.mod_revision(),
                attached: kv.lease(),
                value: kv.value().to_vec(),
            }
        }
        match self.layout.parse(kv.key()) {
            Some(Key::Subnet(subnet)) => match serde_json::from_slice::<Ownership>(kv.value()) {
                Ok(record) => {
                    view.unreadable.remove(&subnet);
                    view.owners.insert(subnet, entry(kv, record));
                }
                Err(e) => {
                    warn!("the record of {subnet} is malformed ({e}): its subnet stays taken");
                    view.owners.remove(&subnet);
                    view.unreadable.insert(subnet, kv.mod_revision());
                }
            },
            Some(Key::Node(name)) => match serde_json::from_slice::<Liveness>(kv.value()) {
                Ok(record) => {
                    view.nodes.insert(name, entry(kv, record));
                }
                Err(e) => {
                    warn!("skipping node {name}: its liveness record is malformed ({e})");
                    view.nodes.remove(&name);
                }
            },
            Some(Key::Config | Key::Other) => {}
            None => warn!(
                "skipping {:?}: not a subnet or node key",
                String::from_utf8_lossy(kv.key())
            ),
        }
    }

    fn apply_delete(&self, view: &mut View, key: &[u8]) {
        match self.layout.parse(key) {
            Some(Key::Subnet(subnet)) => {
                view.owners.remove(&subnet);
                view.unreadable.remove(&subnet);
            }
            Some(Key::Node(name)) => {
                view.nodes.remove(&name);
            }
            _ => {}
        }
    }

    /// After a batch of changes: whether the node's own records are still as it wrote them.
    fn check_own(&self) -> Result<(), StoreError> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let me = &held.me;
        let node_key = self.layout.node(&me.node);
        match self.view.nodes.get(&me.node) {
            None => {
                error!(
                    "this node's liveness record {node_key} is gone (deleted by someone else, or \
                     its lease revoked): peers stop routing to it; re-asserting"
                );
                return Err(StoreError::Rewritten {
                    key: node_key,
                    how: "deleted",
                });
            }
            Some(entry) if entry.record.identity != me.identity => {
                return Err(StoreError::Conflict(format!(
                    "node name {:?} was taken over by the machine at {} (identity {}…); this \
                     machine (identity {}…) stops",
                    me.node,
                    entry.record.vtep,
                    short(&entry.record.identity),
                    short(&me.identity)
                )));
            }
            Some(entry)
                if entry.value != held.liveness_value || entry.attached != held.liveness.id.0 =>
            {
                error!("this node's liveness record {node_key} was rewritten by someone else; re-asserting");
                return Err(StoreError::Rewritten {
                    key: node_key,
                    how: "rewritten",
                });
            }
            Some(_) => {}
        }
        let subnet_key = self.layout.subnet(held.subnet);
        match self.view.owners.get(&held.subnet) {
            None => {
                error!(
                    "this node's ownership record {subnet_key} was deleted by someone else; \
                     re-asserting"
                );
                Err(StoreError::Rewritten {
                    key: subnet_key,
                    how: "deleted",
                })
            }
            Some(entry) if entry.record.node != me.node || entry.record.identity != me.identity => {
                Err(StoreError::Conflict(format!(
                    "subnet {}, which this node's pods use, was taken by node {:?} at {} (identity {}…)",
                    held.subnet,
                    entry.record.node,
                    entry.record.vtep,
                    short(&entry.record.identity)
                )))
            }
            Some(entry) if entry.value != held.ownership_value => {
                error!("this node's ownership record {subnet_key} was rewritten by someone else; re-asserting");
                Err(StoreError::Rewritten {
                    key: subnet_key,
                    how: "rewritten",
                })
            }
            Some(_) => Ok(()),
        }
    }
}

impl LeaseStore for EtcdStore {
    async fn cluster_config(
        &mut self,
        local: Option<&ClusterConfig>,
    ) -> Result<ClusterConfig, StoreError> {
        let mut client = self.client().await?;
        let key = self.layout.config();
        for _ in 0..2 {
            let found = bounded(client.get(key.as_str(), None)).await?;
            if let Some(kv) = found.kvs().first() {
                let config: ClusterConfig = serde_json::from_slice(kv.value()).map_err(|e| {
                    StoreError::Config(format!("the cluster config at {key} is malformed: {e}"))
                })?;
                config
                    .validate()
                    .map_err(|e| StoreError::Config(format!("the cluster config at {key}: {e}")))?;
                if local.is_some_and(|l| *l != config) {
                    warn!("the cluster config in etcd differs from the local one; etcd's wins");
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
            if bounded(client.txn(txn)).await?.succeeded() {
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
        me: &Me,
        wanted: Wanted,
    ) -> Result<Ipv4Network, StoreError> {
        self.held = None;
        let mut client = self.client().await?;
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(subnet) = self.claim(&mut client, config, me, wanted).await? {
                return Ok(subnet);
            }
        }
        Err(StoreError::Config(format!(
            "could not claim a subnet in {CLAIM_ATTEMPTS} attempts"
        )))
    }

    fn claim_wait(&self) -> Duration {
        // The grace, and a poll or two more for a slow etcd restarting it.
        self.grace + CALL_LIMIT * 2
    }

    async fn keep_alive(&mut self) -> Result<(), StoreError> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        let mut lost = None;
        for (what, kept) in [
            ("liveness", &mut held.liveness),
            ("ownership", &mut held.ownership),
        ] {
            bounded(kept.keeper.keep_alive()).await?;
            match bounded(kept.responses.message()).await? {
                Some(answer) if answer.ttl() > 0 => {}
                _ => {
                    lost = Some((what, kept.id));
                    break;
                }
            }
        }
        let Some((what, lease)) = lost else {
            return Ok(());
        };
        error!(
            "etcd no longer has this node's {what} lease {lease} (expired while etcd was \
             unreachable, or revoked by someone); re-asserting"
        );
        self.held = None;
        Err(StoreError::LeaseLost { what, lease })
    }

    async fn list(&mut self) -> Result<Leases, StoreError> {
        let mut client = self.client().await?;
        let (view, _, revision) = self.read(&mut client).await?;
        self.view = view;
        self.check_own()?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        self.watch = Some(bounded(client.watch(self.layout.root(), Some(options))).await?);
        Ok(self.view.peers())
    }

    async fn next_changes(&mut self) -> Result<Leases, StoreError> {
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
            if answer.events().is_empty() {
                continue;
            }
            let mut view = std::mem::take(&mut self.view);
            for event in answer.events() {
                let Some(kv) = event.kv() else {
                    continue;
                };
                match event.event_type() {
                    EventType::Put => self.apply_put(&mut view, kv),
                    EventType::Delete => self.apply_delete(&mut view, kv.key()),
                }
            }
            self.view = view;
            self.check_own()?;
            return Ok(self.view.peers());
        }
    }

    /// A new client: a call that timed out may have left the old connection stuck, and a
    /// stuck connection would fail every retry the same way. The records stay in etcd; the
    /// next session re-asserts them on new leases.
    async fn recover(&mut self) -> Result<(), StoreError> {
        self.watch = None;
        self.held = None;
        self.client = None;
        Ok(())
    }
}
