//! portmap: publishes container ports on the host (DNAT from outside and from the host
//! itself, hairpin and localhost SNAT), chained after a main plugin whose prevResult names
//! the container's addresses. Rules live in the firewall crate.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use firewall::{
    conntrack, Backend, Entry, Feature, Iptables, MasqueradeMark, PortMap, PortMapping, Protocol,
    Snat,
};
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
    snat: Snat,
    conditions_v4: Vec<String>,
    conditions_v6: Vec<String>,
    /// With the iptables backend, how connections are marked for masquerading.
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

/// Conditions and the mark chain reach nft's or iptables-restore's input as tool syntax (an
/// admin's, by design), one token each: a token holding a line break, or for nft a `;` or a
/// `#`, would end the rule and start a command of its own, so it is refused.
fn check_tokens(raw: &Raw) -> Result<()> {
    let chain = raw.external_set_mark_chain.iter();
    let chain = chain.map(|token| ("externalSetMarkChain".to_string(), token, false));
    let mut tokens: Vec<(String, &String, bool)> = chain.collect();
    for (field, conditions) in [
        ("conditionsV4", &raw.conditions_v4),
        ("conditionsV6", &raw.conditions_v6),
    ] {
        let nft = iptables_syntax(conditions) == Some(false);
        for (i, token) in conditions.iter().flatten().enumerate() {
            tokens.push((format!("{field}[{i}]"), token, nft));
        }
    }
    for (field, token, nft) in tokens {
        if token
            .chars()
            .any(|c| c.is_control() || (nft && (c == ';' || c == '#')))
        {
            return Err(ProtocolError::config(
                field,
                format!("{token:?} holds a character that would end the rule"),
            )
            .into());
        }
    }
    Ok(())
}

/// The first of the keys that only one backend reads, with its syntax (true for iptables).
fn backend_keys(raw: &Raw) -> (Option<&'static str>, Option<&'static str>) {
    let mut iptables = Vec::new();
    let mut nftables = Vec::new();
    if raw.mark_masq_bit.is_some() {
        iptables.push("markMasqBit");
    }
    if raw.external_set_mark_chain.is_some() {
        iptables.push("externalSetMarkChain");
    }
    for (field, conditions) in [
        ("conditionsV4", &raw.conditions_v4),
        ("conditionsV6", &raw.conditions_v6),
    ] {
        match iptables_syntax(conditions) {
            Some(true) => iptables.push(field),
            Some(false) => nftables.push(field),
            None => {}
        }
    }
    (iptables.first().copied(), nftables.first().copied())
}

impl Conf {
    fn load(request: &Request) -> Result<Conf> {
        Conf::from_raw(request.plugin_config()?)
    }

    fn from_raw(raw: Raw) -> Result<Conf> {
        check_tokens(&raw)?;
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
        let mark = match raw.external_set_mark_chain.clone() {
            Some(_) if raw.mark_masq_bit.is_some() => {
                return Err(ProtocolError::config(
                    "markMasqBit",
                    "cannot be used together with externalSetMarkChain",
                )
                .into())
            }
            Some(chain) => MasqueradeMark::Chain(chain),
            None => MasqueradeMark::Bit(mark_bit),
        };
        let (iptables_only, nftables_only) = backend_keys(&raw);
        if let (Some(_), Some(field)) = (iptables_only, nftables_only) {
            return Err(ProtocolError::config(
                field,
                "mixes options of the iptables and nftables backends",
            )
            .into());
        }
        let backend = match raw.backend.as_deref() {
            Some(_) => Backend::select(raw.backend.as_deref())?,
            None if iptables_only.is_some() => Backend::Iptables(Iptables::default()),
            None if nftables_only.is_some() => Backend::Nftables,
            None => Backend::select(None)?,
        };
        // A key for the other backend is refused, naming it, rather than silently unused.
        // The reference accepts markMasqBit with nftables and ignores it; here the nftables
        // table marks hairpin traffic itself, with the default bit, which another bit asked
        // for would not change.
        let backend = match backend {
            Backend::Nftables => match iptables_only {
                Some(field) => {
                    return Err(ProtocolError::config(
                        field,
                        "is an option of the iptables backend, not of nftables",
                    )
                    .into())
                }
                None => Backend::Nftables,
            },
            Backend::Iptables(_) => match nftables_only {
                Some(field) => {
                    return Err(ProtocolError::config(
                        field,
                        "nft-style conditions need the nftables backend",
                    )
                    .into())
                }
                None => Backend::Iptables(Iptables {
                    masquerade_mark: mark,
                    ..Iptables::default()
                }),
            },
        };
        let snat = match (raw.snat.unwrap_or(true), raw.masq_all) {
            (false, _) => Snat::Off,
            (true, false) => Snat::Local,
            (true, true) => Snat::All,
        };
        Ok(Conf {
            mappings,
            snat,
            conditions_v4: raw.conditions_v4.unwrap_or_default(),
            conditions_v6: raw.conditions_v6.unwrap_or_default(),
            backend,
        })
    }

    /// What the firewall is asked for: each mapping toward each target of its host IP's
    /// family (any family without one), mapping by mapping.
    fn entries(&self, targets: &[IpNetwork]) -> Vec<Entry> {
        let mut entries = Vec::new();
        for mapping in &self.mappings {
            let of_family = |t: &&IpNetwork| {
                mapping
                    .host_ip
                    .is_none_or(|host| host.is_ipv4() == t.is_ipv4())
            };
            for target in targets.iter().filter(of_family) {
                let conditions = match target.is_ipv4() {
                    true => &self.conditions_v4,
                    false => &self.conditions_v6,
                };
                entries.push(Entry::PortMap(PortMap {
                    mapping: mapping.clone(),
                    target: *target,
                    snat: self.snat,
                    conditions: conditions.clone(),
                }));
            }
        }
        entries
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

/// Says why a conntrack flush failed, on stderr (see `add`).
fn flushed(outcome: std::result::Result<(), firewall::FirewallError>) {
    if let Err(e) = outcome {
        eprintln!("portmap: stale UDP flows were not flushed: {e}");
    }
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
            .firewall()
            .add(&attachment.id, &conf.entries(&targets))?;
        // A flush is an optimisation (stale UDP flows would otherwise miss the mapping until
        // they end): its failure is said, and fails neither ADD nor DEL.
        for mapping in conf.mappings.iter().filter(|m| m.protocol == Protocol::Udp) {
            flushed(conntrack::flush_udp_to_host_port(
                mapping.host_port,
                mapping.host_ip,
            ));
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
        let known = conf.entries(&targets);
        conf.backend
            .firewall()
            .del(&attachment.id, Feature::PortMap, &known)?;
        for target in &targets {
            for mapping in conf.mappings.iter().filter(|m| m.protocol == Protocol::Udp) {
                flushed(conntrack::flush_udp_to_container(
                    target.ip(),
                    mapping.container_port,
                ));
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
            .firewall()
            .check(&attachment.id, &conf.entries(&targets))?
        {
            return Err(Failure::Check("port mapping rules are missing".to_string()).into());
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let conf = Conf::load(request)?;
        Ok(conf.backend.firewall().gc(Feature::PortMap, valid)?)
    }

    /// Needs no daemon and allocates nothing that could run out.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&Portmap)
}
