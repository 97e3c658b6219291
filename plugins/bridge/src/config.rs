//! The bridge plugin's configuration: every key of the reference, decoded and validated
//! before anything is touched.

use cni::skel::Request;
use cni::{ProtocolError, Result};
use firewall::Backend;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    bridge: String,
    #[serde(rename = "isGateway")]
    is_gateway: bool,
    #[serde(rename = "isDefaultGateway")]
    is_default_gateway: bool,
    #[serde(rename = "forceAddress")]
    force_address: bool,
    #[serde(rename = "ipMasq")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    mtu: Option<u32>,
    #[serde(rename = "hairpinMode")]
    hairpin_mode: bool,
    #[serde(rename = "promiscMode")]
    promisc_mode: bool,
    vlan: i64,
    #[serde(rename = "vlanTrunk")]
    vlan_trunk: Vec<RawTrunk>,
    #[serde(rename = "preserveDefaultVlan")]
    preserve_default_vlan: bool,
    macspoofchk: bool,
    enabledad: bool,
    #[serde(rename = "disableContainerInterface")]
    disable_container_interface: bool,
    #[serde(rename = "portIsolation")]
    port_isolation: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTrunk {
    id: Option<i64>,
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
}

/// A validated bridge configuration.
#[derive(Debug)]
pub struct BridgeConf {
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    /// The firewall backend for `ipMasq`, or `None` without masquerading.
    pub masquerade: Option<Backend>,
    pub mtu: Option<u32>,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
    /// The access VLAN of the container's port; 0 means none.
    pub vlan: u16,
    pub vlan_trunk: Vec<u16>,
    pub preserve_default_vlan: bool,
    /// Drop frames from the container whose source MAC is not its own.
    pub macspoofchk: bool,
    pub enable_dad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    pub ipam: Option<String>,
}

fn vlan_id(value: i64, field: &str) -> Result<u16, ProtocolError> {
    u16::try_from(value)
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| ProtocolError::config(field, format!("{value} is not a VLAN ID (1-4094)")))
}

impl BridgeConf {
    pub fn load(request: &Request) -> Result<BridgeConf> {
        let raw: Raw = request.plugin_config()?;
        let bridge = if raw.bridge.is_empty() {
            "cni0".to_string()
        } else {
            raw.bridge
        };
        cni::config::validate_ifname(&bridge)
            .map_err(|e| ProtocolError::config("bridge", e.with_details()))?;
        let vlan = match raw.vlan {
            0 => 0,
            value => vlan_id(value, "vlan")?,
        };
        let mut vlan_trunk = Vec::new();
        for (i, trunk) in raw.vlan_trunk.iter().enumerate() {
            let field = format!("vlanTrunk[{i}]");
            match (trunk.id, trunk.min_id, trunk.max_id) {
                (Some(id), None, None) => vlan_trunk.push(vlan_id(id, &format!("{field}.id"))?),
                (None, Some(min), Some(max)) => {
                    let min = vlan_id(min, &format!("{field}.minID"))?;
                    let max = vlan_id(max, &format!("{field}.maxID"))?;
                    if min > max {
                        return Err(
                            ProtocolError::config(field, "minID is greater than maxID").into()
                        );
                    }
                    vlan_trunk.extend(min..=max);
                }
                _ => {
                    return Err(ProtocolError::config(
                        field,
                        "give either id, or both minID and maxID",
                    )
                    .into())
                }
            }
        }
        vlan_trunk.sort_unstable();
        vlan_trunk.dedup();
        if vlan != 0 && !vlan_trunk.is_empty() {
            return Err(
                ProtocolError::config("vlanTrunk", "cannot be used together with vlan").into(),
            );
        }
        if raw.hairpin_mode && raw.promisc_mode {
            return Err(ProtocolError::config(
                "promiscMode",
                "cannot set hairpin mode and promiscuous mode at the same time",
            )
            .into());
        }
        let ipam = request
            .conf
            .ipam
            .as_ref()
            .map(|i| i.plugin_type.clone())
            .filter(|t| !t.is_empty());
        if raw.disable_container_interface && ipam.is_some() {
            return Err(ProtocolError::config(
                "disableContainerInterface",
                "cannot be used with IPAM: the container interface stays down",
            )
            .into());
        }
        let mtu = cni::config::link_mtu("mtu", raw.mtu)?;
        let masquerade = match raw.ip_masq {
            true => Some(Backend::select(raw.ip_masq_backend.as_deref())?),
            false => None,
        };
        Ok(BridgeConf {
            bridge,
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            masquerade,
            mtu,
            hairpin_mode: raw.hairpin_mode,
            promisc_mode: raw.promisc_mode,
            vlan,
            vlan_trunk,
            preserve_default_vlan: raw.preserve_default_vlan,
            macspoofchk: raw.macspoofchk,
            enable_dad: raw.enabledad,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            ipam,
        })
    }

    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || !self.vlan_trunk.is_empty()
    }
}
