//! Names across hosts: the `dnsname` registrations of this node's pods, published in etcd
//! on the node's liveness lease, and every other node's, handed to this node's DNS
//! servers.
//!
//! Keys: `<prefix>/dns/<node>/<network>/<attachment>`, value the registration's name,
//! aliases and the addresses it has in the cluster network (only those: a pod's other
//! addresses are not reachable from other nodes, and a registration with none is not
//! published). They are attached to the lease of the node's liveness record (the `lease`
//! of `<prefix>/nodes/<node>`), so etcd deletes a dead node's names when its liveness
//! expires. For each network, the other nodes' names go into `remote.json` of the
//! network's directory (see `names::dir`), replaced whole, and its server, if one runs, is
//! told to reload: the DNS server needs no etcd client.
//!
//! Local registrations are found by looking at each network's `names/` directory (its
//! modification time first, so an unchanged network costs one stat) every
//! [`SCAN`]; etcd's changes come through a watch. When etcd does not answer, the remote
//! names stay as they were and the session is retried with backoff.

use ipnetwork::Ipv4Network;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use names::control::{self, ControlError, Request};
use names::{Entry, NetworkDir, Registration, RemoteEntry, RemoteFile};
use tracing::{debug, info, warn};

use crate::store::{bounded, Access, StoreError};

/// How often the local registrations are looked at.
const SCAN: Duration = Duration::from_millis(100);
/// How old a directory's modification time must be to be trusted as unchanged since.
const SETTLED: Duration = Duration::from_secs(1);
/// Retry delays after a failed session.
const RETRY: Duration = Duration::from_secs(1);

pub struct Settings {
    pub root: PathBuf,
    pub prefix: String,
    pub node: String,
}

/// One published name: where it lives in etcd and what it says.
type Published = BTreeMap<String, Vec<u8>>;

/// A key of the names, split: node, network, attachment.
fn parse_key<'a>(dns_prefix: &str, key: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
    let mut parts = key.strip_prefix(dns_prefix)?.splitn(3, '/');
    let (node, network, attachment) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = !node.is_empty()
        && cni::config::validate_network_name(network).is_ok()
        && attachment.parse::<cni::AttachmentId>().is_ok();
    valid.then_some((node, network, attachment))
}

/// What this node publishes: each registration of `local` (network, registrations) with its
/// addresses cut to the cluster network, under the node's keys.
fn to_publish(
    dns_prefix: &str,
    node: &str,
    cluster: Ipv4Network,
    local: &BTreeMap<String, Vec<Registration>>,
) -> Published {
    let mut published = Published::new();
    for (network, registrations) in local {
        for registration in registrations {
            let addresses: Vec<IpAddr> = registration
                .entry
                .addresses
                .iter()
                .copied()
                .filter(|a| matches!(a, IpAddr::V4(v4) if cluster.contains(*v4)))
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let entry = Entry {
                addresses,
                ..registration.entry.clone()
            };
            if let Ok(value) = serde_json::to_vec(&entry) {
                let key = format!("{dns_prefix}{node}/{network}/{}", registration.attachment);
                published.insert(key, value);
            }
        }
    }
    published
}

/// The other nodes' names per network, from every name key's value.
fn remote_files(
    dns_prefix: &str,
    node: &str,
    seen: &BTreeMap<String, Vec<u8>>,
) -> BTreeMap<String, RemoteFile> {
    let mut files: BTreeMap<String, RemoteFile> = BTreeMap::new();
    for (key, value) in seen {
        let Some((owner, network, _)) = parse_key(dns_prefix, key) else {
            continue;
        };
        if owner == node {
            continue;
        }
        let entry = serde_json::from_slice::<Entry>(value)
            .ok()
            .filter(|e| e.check().is_ok());
        let Some(entry) = entry else {
            warn!("skipping the name at {key}: it is malformed");
            continue;
        };
        files
            .entry(network.to_string())
            .or_default()
            .names
            .push(RemoteEntry {
                node: owner.to_string(),
                entry,
            });
    }
    files
}

/// The local registrations, re-read only for networks whose `names/` changed.
#[derive(Default)]
struct Local {
    by_network: BTreeMap<String, Vec<Registration>>,
    seen: BTreeMap<String, Option<SystemTime>>,
}

impl Local {
    /// Looks again; true when something changed.
    fn scan(&mut self, root: &Path) -> bool {
        let mut changed = false;
        let networks: BTreeSet<String> = names::dir::networks(root).into_iter().collect();
        let before = self.by_network.len();
        self.by_network.retain(|n, _| networks.contains(n));
        self.seen.retain(|n, _| networks.contains(n));
        changed |= before != self.by_network.len();
        for network in networks {
            let dir = NetworkDir::new(root, &network);
            let names = dir.path().join("names");
            let modified = std::fs::metadata(&names).and_then(|m| m.modified()).ok();
            if modified.is_some() && self.seen.get(&network) == Some(&modified) {
                continue;
            }
            // A directory's time moves in clock ticks: two changes within one tick (a file
            // made, then renamed into place) leave the same time. Until its time is a
            // second old, the directory is read again on every scan.
            let settled = modified
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age >= SETTLED);
            self.seen
                .insert(network.clone(), if settled { modified } else { None });
            let store = dir.registrations();
            let registrations: Vec<Registration> = store
                .ids()
                .iter()
                .filter_map(|id| store.load::<Registration>(id).ok().flatten())
                .collect();
            if self.by_network.get(&network) != Some(&registrations) {
                self.by_network.insert(network, registrations);
                changed = true;
            }
        }
        changed
    }
}

/// Publishing and following the names, session after session, for the agent's life.
pub async fn run(access: Access, settings: Settings) {
    let mut state = State {
        dns_prefix: format!("{}/dns/", settings.prefix.trim_end_matches('/')),
        settings,
        local: Local::default(),
        written: BTreeMap::new(),
    };
    loop {
        match state.session(&access).await {
            Ok(never) => match never {},
            Err(e) => warn!(
                "names: {}; the other nodes' names stay as they were, retrying in {RETRY:?}",
                cni::error::causes(&e)
            ),
        }
        tokio::time::sleep(RETRY).await;
    }
}

struct State {
    settings: Settings,
    dns_prefix: String,
    local: Local,
    /// The remote names last written, per network.
    written: BTreeMap<String, RemoteFile>,
}

impl State {
    async fn session(&mut self, access: &Access) -> Result<std::convert::Infallible, StoreError> {
        let mut client =
            bounded(Client::connect(&access.endpoints, Some(access.options()?))).await?;
        let prefix = self.settings.prefix.trim_end_matches('/').to_string();
        let config_key = format!("{prefix}/config");
        let node_key = format!("{prefix}/nodes/{}", self.settings.node);
        let config = bounded(client.get(config_key.as_str(), None)).await?;
        let cluster: overlay::ClusterConfig = config
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
            .ok_or_else(|| StoreError::Config(format!("no cluster config at {config_key}")))?;
        let mut lease = self.node_lease(&mut client, &node_key).await?;
        let listing = bounded(client.get(
            self.dns_prefix.as_str(),
            Some(GetOptions::new().with_prefix()),
        ))
        .await?;
        let revision = listing.header().map_or(0, |h| h.revision());
        let mut seen: BTreeMap<String, Vec<u8>> = listing
            .kvs()
            .iter()
            .filter_map(|kv| Some((kv.key_str().ok()?.to_string(), kv.value().to_vec())))
            .collect();
        let mut leases: BTreeMap<String, i64> = listing
            .kvs()
            .iter()
            .filter_map(|kv| Some((kv.key_str().ok()?.to_string(), kv.lease())))
            .collect();
        self.hand_over(&seen).await;
        let mut names_watch = bounded(
            client.watch(
                self.dns_prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            ),
        )
        .await?;
        let mut node_watch = bounded(client.watch(node_key.as_str(), None)).await?;
        self.local.scan(&self.settings.root);
        let mut scan = tokio::time::interval(SCAN);
        let mut republish = true;
        info!("names: publishing this node's names on lease {lease:x}");
        loop {
            if republish {
                self.publish(&mut client, cluster.network, lease, &seen, &leases)
                    .await?;
                republish = false;
            }
            tokio::select! {
                answer = names_watch.message() => {
                    let answer = answer?.ok_or_else(|| StoreError::WatchEnded("names: closed by etcd".into()))?;
                    if answer.canceled() {
                        return Err(StoreError::WatchEnded(format!("names: {}", answer.cancel_reason())));
                    }
                    for event in answer.events() {
                        let Some(kv) = event.kv() else { continue };
                        let Ok(key) = kv.key_str() else { continue };
                        match event.event_type() {
                            EventType::Put => {
                                seen.insert(key.to_string(), kv.value().to_vec());
                                leases.insert(key.to_string(), kv.lease());
                            }
                            EventType::Delete => {
                                seen.remove(key);
                                leases.remove(key);
                                // One of ours gone (its lease expired, or someone deleted
                                // it): put it back.
                                republish |= self.is_own(key);
                            }
                        }
                    }
                    self.hand_over(&seen).await;
                }
                answer = node_watch.message() => {
                    answer?.ok_or_else(|| StoreError::WatchEnded("names: the node's record watch closed".into()))?;
                    let now = self.node_lease(&mut client, &node_key).await?;
                    if now != lease {
                        info!("names: the node's liveness lease is now {now:x}; publishing again");
                        lease = now;
                        republish = true;
                    }
                }
                _ = scan.tick() => {
                    republish |= self.local.scan(&self.settings.root);
                }
            }
        }
    }

    fn is_own(&self, key: &str) -> bool {
        parse_key(&self.dns_prefix, key).is_some_and(|(node, _, _)| node == self.settings.node)
    }

    /// The lease of the node's liveness record; waits for the record while the agent has
    /// not written it yet.
    async fn node_lease(&self, client: &mut Client, node_key: &str) -> Result<i64, StoreError> {
        loop {
            let found = bounded(client.get(node_key, None)).await?;
            if let Some(kv) = found.kvs().first().filter(|kv| kv.lease() != 0) {
                return Ok(kv.lease());
            }
            debug!("names: waiting for {node_key}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes etcd hold exactly this node's names, on `lease`.
    async fn publish(
        &mut self,
        client: &mut Client,
        cluster: Ipv4Network,
        lease: i64,
        seen: &BTreeMap<String, Vec<u8>>,
        leases: &BTreeMap<String, i64>,
    ) -> Result<(), StoreError> {
        let wanted = to_publish(
            &self.dns_prefix,
            &self.settings.node,
            cluster,
            &self.local.by_network,
        );
        for (key, value) in &wanted {
            if seen.get(key) == Some(value) && leases.get(key) == Some(&lease) {
                continue;
            }
            let options = PutOptions::new().with_lease(lease);
            bounded(client.put(key.as_str(), value.clone(), Some(options))).await?;
        }
        for key in seen
            .keys()
            .filter(|k| self.is_own(k) && !wanted.contains_key(*k))
        {
            bounded(client.delete(key.as_str(), None)).await?;
        }
        Ok(())
    }

    /// Writes each network's remote names where they changed and has its server reload.
    async fn hand_over(&mut self, seen: &BTreeMap<String, Vec<u8>>) {
        let mut files = remote_files(&self.dns_prefix, &self.settings.node, seen);
        // A network whose last remote name went gets an empty file.
        for network in self.written.keys() {
            files.entry(network.clone()).or_default();
        }
        for (network, file) in files {
            if self.written.get(&network) == Some(&file) {
                continue;
            }
            let dir = NetworkDir::new(&self.settings.root, &network);
            let saved = dir
                .create()
                .map_err(|e| e.to_string())
                .and_then(|()| dir.save_remote(&file).map_err(|e| cni::error::causes(&e)));
            if let Err(e) = saved {
                warn!("names: cannot write the remote names of {network}: {e}");
                continue;
            }
            debug!("names: {network} has {} remote names", file.names.len());
            self.written.insert(network.clone(), file);
            let reloaded = tokio::task::spawn_blocking(move || -> Result<(), ControlError> {
                match dir.open() {
                    Ok(Some(open)) => control::call(&open, &Request::Reload).map(drop),
                    _ => Ok(()),
                }
            })
            .await;
            match reloaded {
                Ok(Ok(()) | Err(ControlError::NotRunning)) => {}
                Ok(Err(e)) => warn!("names: the DNS server of {network}: {e}"),
                Err(e) => warn!("names: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/ferrocni/network/dns/";

    fn registration(network: &str, id: &str, name: &str, addresses: &[&str]) -> Registration {
        Registration::new(
            &cni::AttachmentId::new(network, id, "eth0"),
            Entry {
                name: name.to_string(),
                aliases: vec!["svc".to_string()],
                addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
            },
        )
    }

    #[test]
    fn only_addresses_in_the_cluster_network_are_published() {
        let local = BTreeMap::from([(
            "overlay".to_string(),
            vec![
                registration("overlay", "a", "web", &["10.244.1.5", "fd00::5"]),
                registration("overlay", "b", "lonely", &["192.168.9.9"]),
            ],
        )]);
        let cluster: Ipv4Network = "10.244.0.0/16".parse().expect("net");
        let published = to_publish(PREFIX, "n1", cluster, &local);
        assert_eq!(published.len(), 1, "{published:?}");
        let (key, value) = published.iter().next().expect("one");
        assert_eq!(key, "/ferrocni/network/dns/n1/overlay/overlay:a:eth0");
        let entry: Entry = serde_json::from_slice(value).expect("an entry");
        assert_eq!(
            entry.addresses,
            ["10.244.1.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(entry.aliases, ["svc"]);
    }

    #[test]
    fn remote_files_hold_other_nodes_names_per_network() {
        let value = |name: &str, ip: &str| {
            serde_json::to_vec(&Entry {
                name: name.to_string(),
                aliases: Vec::new(),
                addresses: vec![ip.parse().expect("ip")],
            })
            .expect("encodes")
        };
        let seen = BTreeMap::from([
            (
                format!("{PREFIX}n1/overlay/overlay:a:eth0"),
                value("mine", "10.244.1.5"),
            ),
            (
                format!("{PREFIX}n2/overlay/overlay:b:eth0"),
                value("web", "10.244.2.5"),
            ),
            (
                format!("{PREFIX}n3/other/other:c:eth0"),
                value("db", "10.244.3.5"),
            ),
            (
                format!("{PREFIX}n3/overlay/overlay:d:eth0"),
                b"{not json".to_vec(),
            ),
            (
                format!("{PREFIX}n3/../etc/x:d:eth0"),
                value("evil", "10.244.3.6"),
            ),
            (
                format!("{PREFIX}n3/overlay/overlay:e:eth0"),
                value("Bad Name", "10.244.3.7"),
            ),
        ]);
        let files = remote_files(PREFIX, "n1", &seen);
        assert_eq!(files.keys().collect::<Vec<_>>(), ["other", "overlay"]);
        let overlay = &files["overlay"].names;
        assert_eq!(overlay.len(), 1);
        assert_eq!(
            (overlay[0].node.as_str(), overlay[0].entry.name.as_str()),
            ("n2", "web")
        );
        assert_eq!(files["other"].names[0].entry.name, "db");
    }

    #[test]
    fn keys_name_a_node_a_network_and_an_attachment() {
        assert_eq!(
            parse_key(PREFIX, "/ferrocni/network/dns/n2/overlay/overlay:abc:eth0"),
            Some(("n2", "overlay", "overlay:abc:eth0"))
        );
        for bad in [
            "/ferrocni/network/dns/n2/overlay",
            "/ferrocni/network/dns//overlay/overlay:abc:eth0",
            "/ferrocni/network/dns/n2/../overlay:abc:eth0",
            "/ferrocni/network/nodes/n2",
        ] {
            assert_eq!(parse_key(PREFIX, bad), None, "{bad}");
        }
    }
}
