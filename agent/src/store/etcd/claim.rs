//! Claiming a subnet: one transaction per attempt, a lapsed subnet taken only after its
//! owner had the grace period to re-assert it, and the leases the claim is kept by.

use ipnetwork::Ipv4Network;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp};
use overlay::ClusterConfig;
use tracing::{debug, info, warn};

use super::{EtcdStore, Held, Kept};
use crate::records::{choose, short, Choice, LeaseId, Me, Ownership, Refusal, Wanted};
use crate::store::{bounded, StoreError};

/// How often a node waiting out a lapsed subnet checks that nobody re-asserted it.
const GRACE_POLL: Duration = Duration::from_secs(1);

impl EtcdStore {
    /// Which of `ids` etcd still has: an ownership record whose lease is gone has lapsed.
    /// Asked lease by lease, not by listing every lease: an etcd shared with other systems
    /// may hold far more leases than the overlay's.
    pub(super) async fn live_among(
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

    pub(super) async fn grant(client: &mut Client, ttl: i64) -> Result<LeaseId, StoreError> {
        Ok(LeaseId(bounded(client.lease_grant(ttl, None)).await?.id()))
    }

    pub(super) async fn keep(client: &mut Client, id: LeaseId) -> Result<Kept, StoreError> {
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
    pub(super) async fn wait_out(
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
    pub(super) async fn claim(
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
}
