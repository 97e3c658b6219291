//! Running a network's plugin chain the way libcni does: ADD in order, each result the next
//! plugin's prevResult; CHECK in order and DEL in reverse with the cached final result;
//! GC and STATUS for spec 1.1 lists. Results are cached in libcni's layout
//! (`<cache>/results/<network>-<containerID>-<ifname>`), so other CNI tools can read them.

use base64::Engine;
use cni::invoke;
use cni::Version;
use kernel::files;
use kernel::netns::Netns;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use crate::conf::Network;
use crate::CtlError;

/// One attachment: which container, namespace and interface, with the runtime's arguments.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: Vec<(String, String)>,
    /// Values for capabilities (`portMappings`, `ips`, `mac`, `bandwidth`...).
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    /// This attachment with the runtime arguments its ADD was given (the cache entry's),
    /// for its CHECK and DEL, where the caller gives none of a kind: a port mapping is
    /// removed as it was published, and a name registered from `K8S_POD_NAME` is the name
    /// checked, as the runtime that made the attachment (cnictl, or Podman's libcni) passed
    /// them.
    fn with_args_of(&self, entry: &CacheEntry) -> Attachment {
        let mut attachment = self.clone();
        if attachment.capability_args.is_empty() {
            attachment.capability_args = entry.capability_args.clone();
        }
        let given = attachment
            .cni_args
            .iter()
            .any(|(key, _)| key != "IgnoreUnknown");
        if !given && !entry.cni_args.is_empty() {
            attachment.cni_args = entry.cni_args.clone();
        }
        attachment
    }
}

/// The kind libcni gives its cache entries (its `CNICacheV1`), and reads back: an entry of
/// any other kind it takes for a bare result of its oldest versions.
const CACHE_KIND: &str = "cniCacheV1";

/// The kind cnictl wrote before it matched libcni's, still read so that attachments made
/// then can be checked and detached.
const EARLIER_CACHE_KIND: &str = "cni-cacheV1";

/// A cache entry, field for field, in libcni's order, as libcni writes it (its
/// `cachedInfo`): the fields Go marks `omitempty` are left out when empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network list's bytes in base64, as Go encodes a `[]byte`.
    pub config: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(rename = "networkName")]
    pub network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
}

impl CacheEntry {
    /// An entry as libcni lists them (`GetCachedAttachments`): of its kind (or cnictl's
    /// earlier spelling), naming an interface and a network.
    fn parse(bytes: &[u8]) -> Option<CacheEntry> {
        serde_json::from_slice::<CacheEntry>(bytes)
            .ok()
            .filter(|e| {
                (e.kind == CACHE_KIND || e.kind == EARLIER_CACHE_KIND)
                    && !e.ifname.is_empty()
                    && !e.network.is_empty()
            })
    }
}

pub struct Runtime {
    pub cni_path: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// Plugins run inside this namespace instead of the caller's (the demo's sandbox host).
    pub host: Option<Netns>,
}

impl Runtime {
    fn cache_file(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    fn exec(
        &self,
        plugin: &str,
        command: &str,
        config: &Value,
        attachment: Option<&Attachment>,
    ) -> Result<Vec<u8>, CtlError> {
        let path = invoke::find(plugin, &self.cni_path)
            .map_err(|e| CtlError::plugin(plugin, command, e))?;
        let cni_path = std::env::join_paths(&self.cni_path)
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let args = attachment
            .map(|a| {
                a.cni_args
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .unwrap_or_default();
        let mut env = vec![("CNI_COMMAND", command), ("CNI_PATH", cni_path.as_str())];
        if let Some(a) = attachment {
            env.extend([
                ("CNI_CONTAINERID", a.container_id.as_str()),
                ("CNI_NETNS", a.netns.as_str()),
                ("CNI_IFNAME", a.ifname.as_str()),
                ("CNI_ARGS", args.as_str()),
            ]);
        }
        let stdin = serde_json::to_vec(config).unwrap_or_default();
        let run = || invoke::exec(&path, &stdin, &env);
        let output = match &self.host {
            // A child forked from a thread inside the namespace starts there.
            Some(host) => host.run(run).map_err(CtlError::Netns)?,
            None => run(),
        };
        output.map_err(|e| CtlError::plugin(plugin, command, e))
    }

    /// A plugin's request config: its object plus the list's version and name, the
    /// runtimeConfig for the capabilities it declares, and prevResult.
    fn plugin_config(
        network: &Network,
        plugin: &Value,
        attachment: &Attachment,
        previous: Option<&Value>,
    ) -> Value {
        let mut config = plugin.clone();
        config["cniVersion"] = Value::from(network.version.as_str());
        config["name"] = Value::from(network.name());
        let mut runtime = Map::new();
        if let Some(capabilities) = plugin.get("capabilities").and_then(Value::as_object) {
            for (capability, enabled) in capabilities {
                if enabled.as_bool() == Some(true) {
                    if let Some(value) = attachment.capability_args.get(capability) {
                        runtime.insert(capability.clone(), value.clone());
                    }
                }
            }
        }
        if !runtime.is_empty() {
            config["runtimeConfig"] = Value::Object(runtime);
        }
        if let Some(previous) = previous {
            config["prevResult"] = previous.clone();
        }
        config
    }

    fn plugin_type(plugin: &Value) -> &str {
        plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn add(&self, network: &Network, attachment: &Attachment) -> Result<Value, CtlError> {
        let mut previous: Option<Value> = None;
        for plugin in &network.list.plugins {
            let config = Self::plugin_config(network, plugin, attachment, previous.as_ref());
            let output = self.exec(Self::plugin_type(plugin), "ADD", &config, Some(attachment));
            match output.and_then(|out| {
                serde_json::from_slice(&out).map_err(|e| {
                    CtlError::Garbled(Self::plugin_type(plugin).to_string(), e.to_string())
                })
            }) {
                Ok(result) => previous = Some(result),
                Err(e) => {
                    // As a runtime must: DEL the whole list after a failed ADD.
                    let _ = self.run_del(network, attachment, previous.as_ref());
                    return Err(e);
                }
            }
        }
        let result = previous.unwrap_or_default();
        let entry = CacheEntry {
            kind: CACHE_KIND.to_string(),
            container_id: attachment.container_id.clone(),
            config: base64::engine::general_purpose::STANDARD.encode(&network.bytes),
            ifname: attachment.ifname.clone(),
            network: network.name().to_string(),
            netns: attachment.netns.clone(),
            cni_args: attachment.cni_args.clone(),
            capability_args: attachment.capability_args.clone(),
            result: result.clone(),
        };
        let file = self.cache_file(network.name(), &attachment.container_id, &attachment.ifname);
        write_private(&file, &serde_json::to_vec(&entry).unwrap_or_default())?;
        Ok(result)
    }

    pub fn cached(&self, network: &str, container_id: &str, ifname: &str) -> Option<CacheEntry> {
        CacheEntry::parse(&files::read(&self.cache_file(network, container_id, ifname)).ok()?)
    }

    fn run_del(
        &self,
        network: &Network,
        attachment: &Attachment,
        previous: Option<&Value>,
    ) -> Result<(), CtlError> {
        // Before 0.4.0 DEL carried no prevResult.
        let previous = previous.filter(|_| network.version >= Version::V0_4_0);
        let mut first_error = None;
        for plugin in network.list.plugins.iter().rev() {
            let config = Self::plugin_config(network, plugin, attachment, previous);
            if let Err(e) = self.exec(Self::plugin_type(plugin), "DEL", &config, Some(attachment)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn del(&self, network: &Network, attachment: &Attachment) -> Result<(), CtlError> {
        let cached = self.cached(network.name(), &attachment.container_id, &attachment.ifname);
        let attachment = match &cached {
            Some(entry) => attachment.with_args_of(entry),
            None => attachment.clone(),
        };
        self.run_del(network, &attachment, cached.as_ref().map(|c| &c.result))?;
        let _ = std::fs::remove_file(self.cache_file(
            network.name(),
            &attachment.container_id,
            &attachment.ifname,
        ));
        Ok(())
    }

    pub fn check(&self, network: &Network, attachment: &Attachment) -> Result<(), CtlError> {
        if network.version < Version::V0_4_0 || network.list.disable_check {
            return Ok(());
        }
        let entry = self
            .cached(network.name(), &attachment.container_id, &attachment.ifname)
            .ok_or_else(|| {
                CtlError::NotAttached(network.name().to_string(), attachment.container_id.clone())
            })?;
        let attachment = attachment.with_args_of(&entry);
        for plugin in &network.list.plugins {
            let config = Self::plugin_config(network, plugin, &attachment, Some(&entry.result));
            self.exec(
                Self::plugin_type(plugin),
                "CHECK",
                &config,
                Some(&attachment),
            )?;
        }
        Ok(())
    }

    /// Every cached attachment, of every network.
    pub fn attachments(&self) -> Vec<CacheEntry> {
        let mut entries: Vec<CacheEntry> = std::fs::read_dir(self.cache_dir.join("results"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| files::read(&e.path()).ok())
                    .filter_map(|b| CacheEntry::parse(&b))
                    .collect()
            })
            .unwrap_or_default();
        entries.sort_by(|a: &CacheEntry, b| {
            (&a.network, &a.container_id).cmp(&(&b.network, &b.container_id))
        });
        entries
    }

    /// libcni's GC: DEL every cached attachment whose namespace is gone, then plugin GC
    /// (spec 1.1 lists) with the attachments that remain.
    pub fn gc(&self, network: &Network) -> Result<Vec<String>, CtlError> {
        if network.list.disable_gc {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        // The spec's list of the attachments that remain.
        let mut valid: Vec<Value> = Vec::new();
        for entry in self
            .attachments()
            .into_iter()
            .filter(|e| e.network == network.name())
        {
            let gone = !entry.netns.is_empty() && !Path::new(&entry.netns).exists();
            let attachment = Attachment {
                container_id: entry.container_id.clone(),
                netns: String::new(),
                ifname: entry.ifname.clone(),
                cni_args: entry.cni_args.clone(),
                capability_args: entry.capability_args.clone(),
            };
            if gone {
                self.del(network, &attachment)?;
                removed.push(entry.container_id.clone());
            } else {
                valid.push(serde_json::json!({
                    "containerID": entry.container_id,
                    "ifname": entry.ifname,
                }));
            }
        }
        if network.version >= Version::V1_1_0 {
            for plugin in &network.list.plugins {
                let mut config = Self::plugin_config(network, plugin, &Attachment::default(), None);
                config["cni.dev/valid-attachments"] = Value::Array(valid.clone());
                config["cni.dev/attachments"] = Value::Array(valid.clone());
                self.exec(Self::plugin_type(plugin), "GC", &config, None)?;
            }
        }
        Ok(removed)
    }

    /// STATUS of every plugin of a spec 1.1 list; older lists have no STATUS.
    pub fn status(&self, network: &Network) -> Result<(), CtlError> {
        if network.version < Version::V1_1_0 {
            return Ok(());
        }
        for plugin in &network.list.plugins {
            let config = Self::plugin_config(network, plugin, &Attachment::default(), None);
            self.exec(Self::plugin_type(plugin), "STATUS", &config, None)?;
        }
        Ok(())
    }
}

/// A cache entry as libcni writes one: mode 0600 in directories made 0700.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CtlError> {
    files::replace(path, bytes, files::PRIVATE_FILE, files::PRIVATE_DIR)
        .map_err(|e| CtlError::Io(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::{CacheEntry, CACHE_KIND};
    use serde_json::{json, Map, Value};

    /// An entry that libcni wrote (Podman 4.3's): read field for field, and written back
    /// byte for byte.
    #[test]
    fn a_libcni_entry_is_read_and_written_back_unchanged() {
        let golden = include_bytes!("testdata/libcni-cache-entry.json");
        let entry = CacheEntry::parse(golden).expect("libcni's entry is read");
        assert_eq!(
            (entry.network.as_str(), entry.ifname.as_str()),
            ("ctlpod", "eth0")
        );
        assert_eq!(entry.cni_args[1], ("K8S_POD_NAME".into(), "c1".into()));
        assert_eq!(entry.result["ips"][0]["address"], "10.171.0.2/24");
        assert!(entry.netns.is_empty(), "libcni 1.1 records no netns");
        assert_eq!(
            serde_json::to_vec(&entry).expect("serializes"),
            golden.to_vec()
        );
    }

    /// What Go's `omitempty` leaves out, and the kinds that are not libcni's.
    #[test]
    fn empty_fields_are_left_out_and_other_kinds_ignored() {
        let entry = CacheEntry {
            kind: CACHE_KIND.into(),
            container_id: "c".into(),
            config: "e30=".into(),
            ifname: "eth0".into(),
            network: "n".into(),
            netns: String::new(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: json!({"cniVersion": "1.0.0"}),
        };
        let written = serde_json::to_value(&entry).expect("serializes");
        let keys: Vec<&str> = written
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "kind",
                "containerId",
                "config",
                "ifName",
                "networkName",
                "result"
            ]
        );
        let with_kind = |kind: &str| {
            let mut value = written.clone();
            value["kind"] = Value::from(kind);
            CacheEntry::parse(value.to_string().as_bytes())
        };
        assert!(
            with_kind("cni-cacheV1").is_some(),
            "cnictl's earlier entries"
        );
        assert!(with_kind("somethingElse").is_none());
        let mut nameless = written.clone();
        nameless["ifName"] = Value::from("");
        assert!(CacheEntry::parse(nameless.to_string().as_bytes()).is_none());
    }
}
