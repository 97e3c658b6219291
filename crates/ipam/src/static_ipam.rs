//! static IPAM: hands out exactly the addresses the config or the runtime names.

use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::net::IpAddr;

use super::ArgsSection;
use cni::skel::{self, Attachment, Request};
use cni::{
    CniArgs, CniResult, Dns, Failure, IpConfig, ProtocolError, Result, Route, ValidAttachments,
    Version,
};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    ipam: Option<IpamSection>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
    args: ArgsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpamSection {
    addresses: Vec<AddressConfig>,
    routes: Vec<Route>,
    dns: Dns,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AddressConfig {
    address: String,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    ips: Vec<String>,
}

#[derive(Debug)]
pub struct Static {
    addresses: Vec<(IpNetwork, Option<IpAddr>)>,
    routes: Vec<Route>,
    dns: Dns,
}

/// Static addresses must say their prefix: `10.1.2.3/24`, never a bare address.
fn parse_cidr(text: &str, field: &str) -> Result<IpNetwork, ProtocolError> {
    let text = text.trim();
    if !text.contains('/') {
        return Err(ProtocolError::config(
            field,
            format!("{text:?} is not in CIDR notation (address/prefix)"),
        ));
    }
    text.parse()
        .map_err(|e| ProtocolError::config(field, format!("invalid CIDR {text:?}: {e}")))
}

impl Static {
    /// Addresses come from the first source present of `runtimeConfig.ips`, `args.cni.ips`,
    /// then the config's `addresses` plus CNI_ARGS `IP` (with `GATEWAY`), as the reference.
    pub fn load(request: &Request, cni_args: Option<&CniArgs>) -> Result<Static> {
        let conf: Conf = request.plugin_config()?;
        let ipam = conf
            .ipam
            .ok_or_else(|| ProtocolError::config("ipam", "IPAM config missing 'ipam' key"))?;

        let mut addresses = Vec::new();
        for (i, address) in ipam.addresses.iter().enumerate() {
            let network = parse_cidr(&address.address, &format!("ipam.addresses[{i}].address"))?;
            addresses.push((network, address.gateway));
        }
        // Empty values request nothing, as in the reference.
        let arg = |key| {
            cni_args
                .and_then(|args| args.get(key))
                .filter(|v| !v.is_empty())
        };
        if let Some(ips) = arg("IP") {
            for item in ips.split(',') {
                addresses.push((parse_cidr(item, "CNI_ARGS IP")?, None));
            }
        }
        if let Some(gateways) = arg("GATEWAY") {
            for item in gateways.split(',') {
                let gateway: IpAddr = item.trim().parse().map_err(|_| {
                    ProtocolError::config(
                        "CNI_ARGS GATEWAY",
                        format!("invalid gateway address {item:?}"),
                    )
                })?;
                for (network, slot) in &mut addresses {
                    if network.contains(gateway) {
                        *slot = Some(gateway);
                    }
                }
            }
        }
        for (source, field) in [
            (&conf.args.cni.ips, "args.cni.ips"),
            (&conf.runtime_config.ips, "runtimeConfig.ips"),
        ] {
            if !source.is_empty() {
                addresses = source
                    .iter()
                    .enumerate()
                    .map(|(i, text)| Ok((parse_cidr(text, &format!("{field}[{i}]"))?, None)))
                    .collect::<Result<_, ProtocolError>>()?;
            }
        }

        let v4 = addresses.iter().filter(|(n, _)| n.is_ipv4()).count();
        if (v4 > 1 || addresses.len() - v4 > 1) && request.version < Version::V0_3_0 {
            return Err(ProtocolError::OneAddressPerFamily {
                version: request.version,
                field: "ipam.addresses",
            }
            .into());
        }
        Ok(Static {
            addresses,
            routes: ipam.routes,
            dns: ipam.dns,
        })
    }

    pub fn result(&self) -> CniResult {
        CniResult {
            ips: self
                .addresses
                .iter()
                .map(|(address, gateway)| IpConfig {
                    interface: None,
                    address: *address,
                    gateway: *gateway,
                })
                .collect(),
            routes: self.routes.clone(),
            dns: self.dns.clone(),
            ..CniResult::default()
        }
    }

    /// Every configured address, with its gateway, must be in the previous result.
    pub fn check(&self, previous: &CniResult) -> Result<()> {
        for (address, gateway) in &self.addresses {
            let found = previous
                .ips
                .iter()
                .any(|ip| ip.address == *address && ip.gateway == *gateway);
            if !found {
                return Err(Failure::Check(format!(
                    "static: address {address} (gateway {}) is not in prevResult",
                    gateway.map_or("none".to_string(), |g| g.to_string())
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// The static plugin: what the `static` binary runs, and what ferrocni's plugins run
/// in-process when the `static` on `CNI_PATH` is ferrocni's own.
pub struct StaticPlugin;

impl skel::Plugin for StaticPlugin {
    fn about(&self) -> &'static str {
        "CNI static IPAM plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        Ok(Static::load(request, Some(&attachment.args()?))?.result())
    }

    /// Nothing was reserved, but a config that could never have worked is still reported
    /// (CNI_ARGS aside: a DEL reads none).
    fn del(&self, request: &Request, _attachment: &Attachment) -> Result<()> {
        Static::load(request, None).map(drop)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        Static::load(request, Some(&attachment.args()?))?.check(&previous)
    }

    /// Nothing to collect: static keeps no state between calls.
    fn gc(&self, _request: &Request, _valid: &ValidAttachments) -> Result<()> {
        Ok(())
    }

    /// Always available: it allocates nothing that could run out.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}
