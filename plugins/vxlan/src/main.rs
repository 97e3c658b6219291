//! vxlan: attaches a container to its node's overlay bridge, with an address from the subnet
//! the node agent (`ferrocni-agent`) leased, the overlay's MTU, a default route via the node
//! gateway, and optionally masquerading for traffic that leaves the cluster network.
//!
//! The bridge plugin's code does the attaching, in this process, on a config derived from
//! the agent's node file (as flannel's plugin delegates to bridge). The derived config is
//! kept per attachment, so DEL and CHECK work the same after the agent moved on or went away.

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

use bridge::BridgePlugin;
use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{AttachmentId, CniResult, Error, Failure, Result, ValidAttachments};
use firewall::{Backend, Feature};
use netlib::attachment;
use netlib::state::Store;
use overlay::{NodeFile, DEFAULT_NODE_FILE};

const DEFAULT_STATE_DIR: &str = "/var/lib/cni/ferrocni-vxlan";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    /// The agent's node file.
    #[serde(rename = "subnetFile")]
    subnet_file: Option<PathBuf>,
    #[serde(rename = "ipMasq")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    /// host-local's store.
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
    /// Where the derived bridge config of each attachment is kept.
    #[serde(rename = "stateDir")]
    state_dir: Option<PathBuf>,
    #[serde(rename = "hairpinMode")]
    hairpin_mode: bool,
}

struct Vxlan {
    conf: Conf,
    masquerade: Option<Backend>,
    records: Store,
}

impl Vxlan {
    fn load(request: &Request) -> Result<Vxlan> {
        let conf: Conf = request.plugin_config()?;
        let masquerade = if conf.ip_masq {
            Some(Backend::select(conf.ip_masq_backend.as_deref())?)
        } else {
            None
        };
        let records = Store::new(cni::config::data_dir(
            "stateDir",
            conf.state_dir.clone(),
            DEFAULT_STATE_DIR,
        )?);
        Ok(Vxlan {
            conf,
            masquerade,
            records,
        })
    }

    fn node_file_path(&self) -> PathBuf {
        self.conf
            .subnet_file
            .clone()
            .unwrap_or_else(|| DEFAULT_NODE_FILE.into())
    }

    fn node_file(&self) -> Result<Option<NodeFile>> {
        NodeFile::load(&self.node_file_path())
    }

    /// The bridge plugin's config for this node: the node bridge as the containers' gateway
    /// and default route, host-local over the node's subnet, the overlay MTU.
    fn bridge_config(&self, request: &Request, node: &NodeFile) -> Value {
        let mut ipam = json!({
            "type": "host-local",
            "ranges": [[{"subnet": node.subnet.to_string()}]],
        });
        if let Some(dir) = &self.conf.data_dir {
            ipam["dataDir"] = json!(dir);
        }
        json!({
            "cniVersion": request.conf.cni_version,
            "name": request.conf.name,
            "type": "bridge",
            "bridge": node.bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "mtu": node.mtu,
            "hairpinMode": self.conf.hairpin_mode,
            "ipam": ipam,
            // Masquerading is done here: bridge's would also hide pod-to-pod traffic.
            "ipMasq": false,
            "clusterNetwork": node.network.to_string(),
        })
    }

    /// The bridge request for `config`, with what the runtime passes per call (prevResult,
    /// runtimeConfig, args, GC's valid attachments).
    fn bridge_request(&self, request: &Request, mut config: Value) -> Result<Request> {
        for key in [
            "prevResult",
            "runtimeConfig",
            "args",
            "cni.dev/valid-attachments",
        ] {
            if let Some(value) = request.config.get(key) {
                config[key] = value.clone();
            }
        }
        request.derive(config)
    }

    /// The recorded config, or (no record: ADD never finished, or the state was lost) the one
    /// the node file gives now, or none at all.
    fn recorded_config(&self, request: &Request, key: &AttachmentId) -> Result<Option<Value>> {
        if let Some(config) = self.records.load::<Value>(key)? {
            return Ok(Some(config));
        }
        Ok(self
            .node_file()?
            .map(|node| self.bridge_config(request, &node)))
    }

    /// `result` with each address given the cluster network's prefix: masquerade rules
    /// exempt a container's own network, and here that is the whole cluster.
    fn masquerade_view(result: &CniResult, cluster: Option<IpNetwork>) -> CniResult {
        let mut view = result.clone();
        for ip in &mut view.ips {
            if let Some(network) = cluster.filter(|n| n.contains(ip.address.ip())) {
                ip.address =
                    IpNetwork::new(ip.address.ip(), network.prefix()).unwrap_or(ip.address);
            }
        }
        view
    }
}

fn cluster_of(config: &Value) -> Option<IpNetwork> {
    config
        .get("clusterNetwork")
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
}

struct VxlanPlugin;

impl Plugin for VxlanPlugin {
    fn about(&self) -> &'static str {
        "CNI vxlan overlay plugin (ferrocni): a node bridge on ferrocni-agent's subnet"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let vxlan = Vxlan::load(request)?;
        let node = vxlan.node_file()?.ok_or_else(|| {
            Failure::NotReadyYet(format!(
                "the overlay agent has not leased a subnet for this node yet ({} is missing)",
                vxlan.node_file_path().display()
            ))
        })?;
        let config = vxlan.bridge_config(request, &node);
        let inner = vxlan.bridge_request(request, config.clone())?;
        let mut undo = Undo::new();
        vxlan.records.save(&attachment.id, &config)?;
        undo.push("the attachment record", || {
            Ok(vxlan.records.remove(&attachment.id)?)
        });
        let result = BridgePlugin.add(&inner, attachment)?;
        undo.push("the bridge attachment", || {
            BridgePlugin.del(&inner, attachment)
        });
        if let Some(backend) = &vxlan.masquerade {
            let exempt = Vxlan::masquerade_view(&result, Some(node.network.into()));
            attachment::masquerade(attachment, backend.firewall(), &exempt, &mut undo)?;
        }
        undo.commit();
        Ok(result)
    }

    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let vxlan = Vxlan::load(request)?;
        let key = &attachment.id;
        let mut failures = Vec::new();
        if let Some(config) = vxlan.recorded_config(request, key)? {
            let inner = vxlan.bridge_request(request, config)?;
            failures.extend(BridgePlugin.del(&inner, attachment).err());
        } else {
            // Nothing says which bridge or subnet: still remove the container's interface.
            failures.extend(attachment::teardown(request, attachment, None).err());
        }
        if let Some(backend) = &vxlan.masquerade {
            let removed = backend
                .firewall()
                .del(&attachment.id, Feature::Masquerade, &[]);
            failures.extend(removed.err().map(Error::from));
        }
        if failures.is_empty() {
            vxlan.records.remove(key)?;
        }
        failures.into_iter().next().map_or(Ok(()), Err)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let vxlan = Vxlan::load(request)?;
        let config = vxlan
            .records
            .load::<Value>(&attachment.id)?
            .ok_or_else(|| Failure::Check("no record of this attachment".to_string()))?;
        let cluster = cluster_of(&config);
        let inner = vxlan.bridge_request(request, config)?;
        BridgePlugin.check(&inner, attachment)?;
        if let Some(backend) = &vxlan.masquerade {
            let previous = request.prev_result()?.unwrap_or_default();
            let view = Vxlan::masquerade_view(&previous, cluster);
            let addresses: Vec<IpNetwork> = view.ips.iter().map(|ip| ip.address).collect();
            attachment::check_masquerade(attachment, backend.firewall(), &addresses)?;
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let vxlan = Vxlan::load(request)?;
        let mut failures = Vec::new();
        if let Some(node) = vxlan.node_file()? {
            let inner = vxlan.bridge_request(request, vxlan.bridge_config(request, &node))?;
            failures.extend(BridgePlugin.gc(&inner, valid).err());
        }
        if let Some(backend) = &vxlan.masquerade {
            let collected = backend.firewall().gc(Feature::Masquerade, valid);
            failures.extend(collected.err().map(Error::from));
        }
        failures.extend(vxlan.records.gc(valid).err().map(Error::from));
        failures.into_iter().next().map_or(Ok(()), Err)
    }

    fn status(&self, request: &Request) -> Result<()> {
        let vxlan = Vxlan::load(request)?;
        let node = vxlan.node_file()?.ok_or_else(|| {
            Failure::Unavailable(format!(
                "the overlay agent has not leased a subnet for this node ({} is missing)",
                vxlan.node_file_path().display()
            ))
        })?;
        let inner = vxlan.bridge_request(request, vxlan.bridge_config(request, &node))?;
        BridgePlugin.status(&inner)
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run_with(&VxlanPlugin, &[ipam::HOST_LOCAL, ipam::STATIC])
}
