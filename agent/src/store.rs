//! Where nodes own their subnets and find each other: etcd, or (for standalone experiments)
//! a static list. The agent sees only [`LeaseStore`], so a Kubernetes-API store (node
//! `podCIDR`s) can be added beside these.
//!
//! The records and the choices over them are in [`crate::records`]; this module talks to
//! etcd: it claims a subnet in one transaction, keeps the two leases alive, follows every
//! record through one watch, and notices when its own records are deleted or rewritten by
//! someone else.

use ipnetwork::Ipv4Network;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use overlay::{ClusterConfig, NodeLease};
use tracing::{debug, error, info, warn};

use crate::records::{
    choose, short, Choice, Entry, Key, Layout, LeaseId, Liveness, Me, Ownership, Refusal, View,
    Wanted,
};

/// Every store call is bounded: an unreachable store must not stall the agent.
pub const CALL_LIMIT: Duration = Duration::from_secs(5);
/// Creating a record can lose a race to another node; choose again.
const CLAIM_ATTEMPTS: usize = 32;
/// How often a node waiting out a lapsed subnet checks that nobody re-asserted it.
const GRACE_POLL: Duration = Duration::from_secs(1);

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

/// The nodes peers route to, as a map from subnet to node.
pub type Leases = BTreeMap<Ipv4Network, NodeLease>;

pub trait LeaseStore {
    /// The cluster network: the store's, or `local` published there when it has none.
    fn cluster_config(
        &mut self,
        local: Option<&ClusterConfig>,
    ) -> impl Future<Output = Result<ClusterConfig, StoreError>>;

    /// Owns a subnet for `me` and publishes it live: the one it owns already (a restart),
    /// else as [`choose`] decides. Fails with [`StoreError::Conflict`] when another machine
    /// holds `me`'s name, or the subnet `wanted` holds.
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

/// How to reach etcd and prove who this agent is, as flannel's `--etcd-*` flags say it.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<(String, String)>,
}

impl Access {
    /// The options for a client, the files read now: certificates renewed on disk are used
    /// from the next connection on.
    pub fn options(&self) -> Result<ConnectOptions, StoreError> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                StoreError::Config(format!("cannot read {flag} {}: {e}", path.display()))
            })
        };
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        let tls_files =
            self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if tls_files && self.endpoints.iter().any(|e| !e.starts_with("https://")) {
            return Err(StoreError::Config(
                "--etcd-cafile, --etcd-certfile and --etcd-keyfile need https:// endpoints in --etcd-endpoints".into(),
            ));
        }
        // HTTP/2 pings find a connection that went silent (etcd frozen, a path dropped) in
        // seconds, where TCP alone could wait for minutes.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(CALL_LIMIT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if https {
            let ca = self.ca_file.as_ref().ok_or_else(|| {
                StoreError::Config(
                    "https:// endpoints need --etcd-cafile: the CA that signed etcd's certificate"
                        .into(),
                )
            })?;
            let mut tls =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read("--etcd-cafile", ca)?));
            match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read("--etcd-certfile", cert)?,
                        read("--etcd-keyfile", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Config(
                        "--etcd-certfile and --etcd-keyfile go together".into(),
                    ))
                }
            }
            options = options.with_tls(tls);
        }
        if let Some((name, password)) = &self.user {
            // Tokens expire (etcd's --auth-token-ttl, 5 min): renew them, not fail on them.
            options = options
                .with_user(name, password)
                .with_auto_token_refresh(true);
        }
        Ok(options)
    }
}

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

    /// Which of `ids` etcd still has: an ownership record whose lease is gone has lapsed.
    /// Asked lease by lease, not by listing every lease: an etcd shared with other systems
    /// may hold far more leases than the overlay's.
    async fn live_among(
        client: &mut Client,
        ids: BTreeSet<LeaseId>,
    ) -> Result<BTreeSet<LeaseId>, StoreError> {
        let mut live = BTreeSet::new();
        for id in ids {
            if bounded(client.lease_time_to_live(id.0, None)).await?.ttl() > 0 {
                live.insert(id);
            }
        }
        Ok(live)
    }

    async fn grant(client: &mut Client, ttl: i64) -> Result<LeaseId, StoreError> {
        Ok(LeaseId(bounded(client.lease_grant(ttl, None)).await?.id()))
    }

    async fn keep(client: &mut Client, id: LeaseId) -> Result<Kept, StoreError> {
        let (keeper, responses) = bounded(client.lease_keep_alive(id.0)).await?;
        Ok(Kept {
            id,
            keeper,
            responses,
        })
    }

    /// Waits out the grace period on `subnet`'s lapsed record at `revision`: true when it
    /// stayed untouched, its lease gone, and etcd answered at least every two polls
    /// throughout; false when someone (its owner, most likely) rewrote it. A stall restarts
    /// the wait: the owner could not re-assert while etcd did not answer.
    async fn wait_out(
        &self,
        client: &mut Client,
        subnet: Ipv4Network,
        revision: i64,
        record: &Ownership,
    ) -> Result<bool, StoreError> {
        info!(
            "subnet {subnet} of node {} lapsed (etcd no longer has its ownership lease {}); \
             giving its owner {:?} to re-assert it before taking it",
            record.node, record.lease, self.grace
        );
        let key = self.layout.subnet(subnet);
        let mut since = Instant::now();
        let mut answered = Instant::now();
        loop {
            tokio::time::sleep(GRACE_POLL).await;
            let found = bounded(client.get(key.as_str(), None)).await?;
            let untouched = found
                .kvs()
                .first()
                .is_some_and(|kv| kv.mod_revision() == revision);
            let alive = bounded(client.lease_time_to_live(record.lease.0, None))
                .await?
                .ttl()
                > 0;
            if !untouched || alive {
                info!("subnet {subnet} was re-asserted by its owner; not taking it");
                return Ok(false);
            }
            let now = Instant::now();
            if now.duration_since(answered) > GRACE_POLL * 2 {
                debug!("etcd was slow to answer; restarting the grace period on {subnet}");
                since = now;
            }
            answered = now;
            if now.duration_since(since) >= self.grace {
                return Ok(true);
            }
        }
    }

    /// One claim attempt: the subnet, or `None` when it lost a race (choose again).
    async fn claim(
        &mut self,
        client: &mut Client,
        config: &ClusterConfig,
        me: &Me,
        wanted: Wanted,
    ) -> Result<Option<Ipv4Network>, StoreError> {
        let (view, kvs, _) = self.read(client).await?;
        let live = Self::live_among(client, view.leases_to_check(config, me)).await?;
        if let Some(holder) = view.name_holder(me, &live) {
            if !self.take_over {
                return Err(StoreError::Conflict(format!(
                    "node name {:?} is held by {holder}; this machine has identity {}…. \
                     If that machine is gone for good, start this one with --take-over \
                     (FERROCNI_TAKE_OVER=true); else give this one another --node name",
                    me.node,
                    short(&me.identity)
                )));
            }
            warn!("taking over node name {:?} from {holder}", me.node);
        }
        let choice = match choose(config, &view, me, wanted, self.take_over, &live) {
            Ok(choice) => choice,
            Err(Refusal::Exhausted) => return Err(StoreError::Exhausted(config.network)),
            Err(Refusal::HeldTaken { subnet, by }) => {
                return Err(StoreError::Conflict(format!(
                "subnet {subnet}, which this node's kernel and pods use, now belongs to node {:?} \
                     at {} (identity {}…); stopping rather than moving this node's pods",
                by.node,
                by.vtep,
                short(&by.identity)
            )))
            }
        };
        let subnet_key = |s| self.layout.subnet(s);
        let (subnet, condition, reuse) = match choice {
            Choice::Mine { subnet, revision } => {
                let record = view.owners.get(&subnet).map(|e| &e.record);
                // Our ownership lease, if etcd still has it, goes on; else a new one.
                let reuse = record
                    .filter(|r| r.identity == me.identity && live.contains(&r.lease))
                    .map(|r| r.lease);
                (
                    subnet,
                    Compare::mod_revision(subnet_key(subnet), CompareOp::Equal, revision),
                    reuse,
                )
            }
            Choice::Free(subnet) => (
                subnet,
                Compare::create_revision(subnet_key(subnet), CompareOp::Equal, 0),
                None,
            ),
            Choice::Lapsed { subnet, revision } => {
                let Some(entry) = view.owners.get(&subnet) else {
                    return Ok(None);
                };
                if !self
                    .wait_out(client, subnet, revision, &entry.record)
                    .await?
                {
                    return Ok(None);
                }
                (
                    subnet,
                    Compare::mod_revision(subnet_key(subnet), CompareOp::Equal, revision),
                    None,
                )
            }
        };
        let ownership = match reuse.or(self.spare.take()) {
            Some(id) => id,
            None => Self::grant(client, self.ownership_ttl).await?,
        };
        // Granted now, not before a wait for a lapsed subnet that may outlast it. One left
        // by a lost race holds no key and expires by itself within its short TTL.
        let liveness = Self::grant(client, self.liveness_ttl).await?;
        // The node's own record, whatever it holds now (a value written over it by hand
        // included): compared by revision, so a racing writer makes this attempt fail.
        let node_key = self.layout.node(&me.node);
        let node_revision = kvs
            .iter()
            .find(|kv| kv.key() == node_key.as_bytes())
            .map(KeyValue::mod_revision);
        let node_condition = match node_revision {
            Some(revision) => Compare::mod_revision(node_key.as_str(), CompareOp::Equal, revision),
            None => Compare::create_revision(node_key.as_str(), CompareOp::Equal, 0),
        };
        let encode =
            |e: serde_json::Error| StoreError::Config(format!("cannot encode a record: {e}"));
        let ownership_value = serde_json::to_vec(&me.ownership(ownership)).map_err(encode)?;
        let liveness_value = serde_json::to_vec(&me.liveness(subnet)).map_err(encode)?;
        let txn = Txn::new()
            .when(vec![condition, node_condition])
            .and_then(vec![
                TxnOp::put(subnet_key(subnet), ownership_value.clone(), None),
                TxnOp::put(
                    node_key.as_str(),
                    liveness_value.clone(),
                    Some(PutOptions::new().with_lease(liveness.0)),
                ),
            ]);
        if !bounded(client.txn(txn)).await?.succeeded() {
            if reuse.is_none() {
                self.spare = Some(ownership);
            }
            debug!("lost the race for {subnet}; choosing again");
            return Ok(None);
        }
        let mut own_client = client.clone();
        self.held = Some(Held {
            me: me.clone(),
            subnet,
            liveness: Self::keep(&mut own_client, liveness).await?,
            ownership: Self::keep(&mut own_client, ownership).await?,
            liveness_value,
            ownership_value,
        });
        self.take_over = false;
        info!(
            "node {} (identity {}…) owns {subnet}: ownership lease {ownership} ({} s), liveness lease {liveness} ({} s)",
            me.node,
            short(&me.identity),
            self.ownership_ttl,
            self.liveness_ttl
        );
        Ok(Some(subnet))
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
