//! portmap: publishes container ports on the host (DNAT from outside and from the host
//! itself, hairpin and localhost SNAT), chained after a main plugin whose prevResult names
//! the container's addresses. Rules live in the firewall crate.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use firewall::{conntrack, Backend, PortMapping, PortmapRules, Protocol};
use ipnetwork::IpNetwork;
use kernel::netlink::Netlink;
use kernel::sysctl;
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    snat: Option<bool>,
    #[serde(rename = "masqAll")]
    masq_all: bool,
    #[serde(rename = "markMasqBit")]
    mark_masq_bit: Option<i64>,
    #[serde(rename = "externalSetMarkChain")]
    external_set_mark_chain: Option<String>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    backend: Option<String>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    #[serde(rename = "portMappings")]
    port_mappings: Vec<RawMapping>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMapping {
    #[serde(rename = "hostPort")]
    host_port: i64,
    #[serde(rename = "containerPort")]
    container_port: i64,
    protocol: String,
    #[serde(rename = "hostIP")]
    host_ip: String,
}

/// A validated portmap configuration.
struct Conf {
    mappings: Vec<PortMapping>,
    snat: bool,
    masq_all: bool,
    mark_bit: u8,
    external_mark_chain: Option<String>,
    conditions_v4: Vec<String>,
    conditions_v6: Vec<String>,
    backend: Backend,
}

fn port(value: i64, field: String) -> Result<u16, ProtocolError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ProtocolError::config(field, format!("{value} is not a port (1-65535)")))
}

/// Conditions in iptables syntax start with an option; anything else is nft syntax.
fn iptables_syntax(conditions: &Option<Vec<String>>) -> Option<bool> {
    conditions
        .as_ref()
        .and_then(|c| c.first())
        .map(|first| first.starts_with('-') || first.starts_with('!'))
}

impl Conf {
    fn load(request: &Request) -> Result<Conf> {
        let raw: Raw = request.plugin_config()?;
        let mut mappings = Vec::new();
        for (i, m) in raw.runtime_config.port_mappings.iter().enumerate() {
            let field = |key: &str| format!("runtimeConfig.portMappings[{i}].{key}");
            let protocol = match m.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                other => {
                    return Err(ProtocolError::config(
                        field("protocol"),
                        format!("unknown protocol {other:?}: use tcp, udp or sctp"),
                    )
                    .into())
                }
            };
            let host_ip = match m.host_ip.as_str() {
                "" => None,
                text => Some(text.parse::<IpAddr>().map_err(|_| {
                    ProtocolError::config(field("hostIP"), format!("{text:?} is not an IP address"))
                })?),
            };
            mappings.push(PortMapping {
                host_port: port(m.host_port, field("hostPort"))?,
                container_port: port(m.container_port, field("containerPort"))?,
                protocol,
                host_ip,
            });
        }
        let mark_bit = match raw.mark_masq_bit {
            None => 13,
            Some(bit) => u8::try_from(bit).ok().filter(|b| *b <= 31).ok_or_else(|| {
                ProtocolError::config("markMasqBit", format!("{bit} is not a bit number (0-31)"))
            })?,
        };
        if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
            return Err(ProtocolError::config(
                "markMasqBit",
                "cannot be used together with externalSetMarkChain",
            )
            .into());
        }
        let iptables_only = raw.mark_masq_bit.is_some()
            || raw.external_set_mark_chain.is_some()
            || iptables_syntax(&raw.conditions_v4) == Some(true)
            || iptables_syntax(&raw.conditions_v6) == Some(true);
        let nftables_only = iptables_syntax(&raw.conditions_v4) == Some(false)
            || iptables_syntax(&raw.conditions_v6) == Some(false);
        if iptables_only && nftables_only {
            return Err(ProtocolError::config(
                "conditionsV4",
                "mixes options of the iptables and nftables backends",
            )
            .into());
        }
        let backend = match raw.backend.as_deref() {
            Some(_) => Backend::select(raw.backend.as_deref())?,
            None if iptables_only => Backend::Iptables,
            None if nftables_only => Backend::Nftables,
            None => Backend::select(None)?,
        };
        if backend == Backend::Nftables && iptables_only {
            return Err(ProtocolError::config("backend", "markMasqBit, externalSetMarkChain and iptables-style conditions need the iptables backend").into());
        }
        if backend == Backend::Iptables && nftables_only {
            return Err(ProtocolError::config(
                "backend",
                "nftables-style conditions need the nftables backend",
            )
            .into());
        }
        Ok(Conf {
            mappings,
            snat: raw.snat.unwrap_or(true),
            masq_all: raw.masq_all,
            mark_bit,
            external_mark_chain: raw.external_set_mark_chain,
            conditions_v4: raw.conditions_v4.unwrap_or_default(),
            conditions_v6: raw.conditions_v6.unwrap_or_default(),
            backend,
        })
    }

    fn rules<'a>(&'a self, targets: &'a [IpNetwork]) -> PortmapRules<'a> {
        PortmapRules {
            mappings: &self.mappings,
            targets,
            snat: self.snat,
            masq_all: self.masq_all,
            conditions_v4: &self.conditions_v4,
            conditions_v6: &self.conditions_v6,
            mark_bit: self.mark_bit,
            external_mark_chain: self.external_mark_chain.as_deref(),
        }
    }
}

/// The container's first IPv4 and first IPv6 address on `ifname`, as the reference picks
/// them; results whose IPs name no interface fall back to the first of each family.
fn targets(previous: &CniResult, ifname: &str) -> Vec<IpNetwork> {
    let on_ifname = |index: Option<usize>| {
        index
            .and_then(|i| previous.interfaces.get(i))
            .is_some_and(|i| i.name == ifname && !i.sandbox.is_empty())
    };
    let mut chosen = Vec::new();
    for v4 in [true, false] {
        let family = || {
            previous
                .ips
                .iter()
                .filter(move |ip| ip.address.is_ipv4() == v4)
        };
        if let Some(ip) = family()
            .find(|ip| on_ifname(ip.interface))
            .or_else(|| family().next())
        {
            chosen.push(ip.address);
        }
    }
    chosen
}

/// DNAT from 127.0.0.1 only routes out of an interface that accepts local sources: find
/// the link toward each container address (prevResult may list no interfaces at all).
fn allow_localnet(targets: &[IpNetwork]) -> Result<()> {
    let mut netlink = Netlink::open()?;
    for target in targets.iter().filter(|t| t.is_ipv4()) {
        let Some(index) = netlink.output_link(target.ip())? else {
            continue;
        };
        if let Some(link) = netlink.link_by_index(index)? {
            // Slashes: a link's name may hold dots (`cni.0`, `eth0.100`).
            sysctl::set(
                &sysctl::interface_key("ipv4", &link.name, "route_localnet"),
                "1",
            )?;
        }
    }
    Ok(())
}

struct Portmap;

impl Plugin for Portmap {
    fn about(&self) -> &'static str {
        "CNI portmap plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let conf = Conf::load(request)?;
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        if conf.mappings.is_empty() {
            return Ok(previous);
        }
        let targets = targets(&previous, &attachment.id.ifname);
        for (i, mapping) in conf.mappings.iter().enumerate() {
            if let Some(host) = mapping.host_ip {
                if !targets.iter().any(|t| t.is_ipv4() == host.is_ipv4()) {
                    return Err(ProtocolError::config(
                        format!("runtimeConfig.portMappings[{i}].hostIP"),
                        format!("{host} is of a family the container has no address of"),
                    )
                    .into());
                }
            }
        }
        if targets.is_empty() {
            return Err(ProtocolError::config(
                "prevResult",
                "names no container address to forward to",
            )
            .into());
        }
        allow_localnet(&targets)?;
        conf.backend
            .add_portmap(&attachment.id, &conf.rules(&targets))?;
        for mapping in conf.mappings.iter().filter(|m| m.protocol == Protocol::Udp) {
            conntrack::flush_udp_to_host_port(mapping.host_port, mapping.host_ip)?;
        }
        Ok(previous)
    }

    /// With no mappings there is nothing to do (and nothing to read): the reference's DEL
    /// cost with iptables was its users' worst complaint.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        if conf.mappings.is_empty() {
            return Ok(());
        }
        let previous = request.prev_result().ok().flatten().unwrap_or_default();
        let targets = targets(&previous, &attachment.id.ifname);
        let rules = (!targets.is_empty()).then(|| conf.rules(&targets));
        conf.backend.del_portmap(&attachment.id, rules.as_ref())?;
        for target in &targets {
            for mapping in conf.mappings.iter().filter(|m| m.protocol == Protocol::Udp) {
                conntrack::flush_udp_to_container(target.ip(), mapping.container_port)?;
            }
        }
        Ok(())
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        if conf.mappings.is_empty() {
            return Ok(());
        }
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let targets = targets(&previous, &attachment.id.ifname);
        if !conf
            .backend
            .has_portmap(&attachment.id, &conf.rules(&targets))?
        {
            return Err(Failure::Check("port mapping rules are missing".to_string()).into());
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        Ok(Conf::load(request)?.backend.gc_portmap(valid)?)
    }

    /// Needs no daemon and allocates nothing that could run out.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&Portmap)
}
