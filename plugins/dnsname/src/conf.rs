//! The config, as containers/dnsname reads it (`domainName`, `runtimeConfig.aliases` keyed
//! by network name as Podman sends them, the container's name in `CNI_ARGS` `K8S_POD_NAME`),
//! with optional keys of ours; and what one attachment registers, taken from `prevResult`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use cni::config::data_dir;
use cni::id::head;
use cni::skel::{Attachment, Request};
use cni::{CniResult, ProtocolError, Result};
use kernel::netlink::Netlink;
use names::{dns_name, Entry, NetworkDir, ServerConfig, DEFAULT_ROOT};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    #[serde(rename = "domainName")]
    domain_name: String,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
    /// Ours: where the networks' directories are (tests and labs keep theirs apart).
    #[serde(rename = "runtimeDir")]
    runtime_dir: Option<PathBuf>,
    /// Ours: resolvers for names that are not the network's, instead of the host's.
    upstreams: Vec<String>,
    /// Ours: keep the server running when the last container has left.
    #[serde(rename = "keepServer")]
    keep_server: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    aliases: BTreeMap<String, Vec<String>>,
}

pub struct Conf {
    pub domain: String,
    pub dir: NetworkDir,
    upstreams: Vec<SocketAddr>,
    keep: bool,
    /// This network's entry of `runtimeConfig.aliases`, as given.
    aliases: Vec<String>,
}

/// The port resolvers listen on.
const DNS_PORT: u16 = 53;

/// Docker's short form of a container ID: its name when it has no other.
const SHORT_ID: usize = 12;

fn upstream(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DNS_PORT))
    })
}

impl Conf {
    pub fn load(request: &Request) -> Result<Conf> {
        let raw: Raw = request.plugin_config()?;
        let domain = match raw.domain_name.as_str() {
            "" => String::new(),
            text => dns_name(text).ok_or_else(|| {
                ProtocolError::config("domainName", format!("{text:?} is no DNS name"))
            })?,
        };
        let upstreams = raw
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, text)| {
                upstream(text).ok_or_else(|| {
                    ProtocolError::config(
                        format!("upstreams[{i}]"),
                        format!("{text:?} is no address, nor address:port"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let root = data_dir("runtimeDir", raw.runtime_dir, DEFAULT_ROOT)?;
        let mut aliases = raw.runtime_config.aliases;
        Ok(Conf {
            domain,
            dir: NetworkDir::new(&root, &request.conf.name),
            upstreams,
            keep: raw.keep_server,
            aliases: aliases.remove(&request.conf.name).unwrap_or_default(),
        })
    }

    /// What the attachment registers: its name, its aliases, its addresses in `previous`.
    /// A name or alias DNS cannot carry is left out with a warning, as dnsmasq skips such a
    /// line of its hosts file (the container still gets the network's server).
    pub fn entry(&self, attachment: &Attachment, previous: &CniResult) -> Result<Entry> {
        let addresses = container_addresses(previous);
        if addresses.is_empty() {
            return Err(ProtocolError::config("prevResult.ips", "no address to register").into());
        }
        let mut aliases: Vec<String> = Vec::new();
        for alias in &self.aliases {
            match dns_name(alias) {
                Some(alias) if !aliases.contains(&alias) => aliases.push(alias),
                Some(_) => {}
                None => eprintln!("dnsname: alias {alias:?} is no DNS name; left out"),
            }
        }
        Ok(Entry {
            name: container_name(attachment)?,
            aliases,
            addresses,
        })
    }

    /// The server's config for this network, listening on `listen`.
    pub fn server(&self, listen: Vec<IpAddr>) -> ServerConfig {
        ServerConfig {
            domain: self.domain.clone(),
            listen,
            upstreams: self.upstreams.clone(),
            keep: self.keep,
        }
    }
}

/// The name the runtime gave (`K8S_POD_NAME`, which Podman passes too), else the container
/// ID, or its first 12 characters where the whole is too long for a DNS label (Podman's
/// IDs are 64). Empty, with a warning, when none of them is a DNS name.
fn container_name(attachment: &Attachment) -> Result<String> {
    let args = attachment.args()?;
    let id = &attachment.id.container_id;
    let name = match args.get("K8S_POD_NAME").filter(|name| !name.is_empty()) {
        Some(given) => dns_name(given),
        None => dns_name(id).or_else(|| dns_name(head(id, SHORT_ID))),
    };
    Ok(name.unwrap_or_else(|| {
        eprintln!("dnsname: the container's name is no DNS name; only its aliases are registered");
        String::new()
    }))
}

/// The container's addresses, as containers/dnsname picks them: the only one, or those on
/// an interface inside the container; a result whose addresses name no interface gives all.
fn container_addresses(previous: &CniResult) -> Vec<IpAddr> {
    let in_container = |index: Option<usize>| {
        index
            .and_then(|i| previous.interfaces.get(i))
            .is_some_and(|interface| !interface.sandbox.is_empty())
    };
    let mut chosen: Vec<IpAddr> = previous
        .ips
        .iter()
        .filter(|ip| previous.ips.len() == 1 || in_container(ip.interface))
        .map(|ip| ip.address.ip())
        .collect();
    if chosen.is_empty() {
        chosen = previous.ips.iter().map(|ip| ip.address.ip()).collect();
    }
    chosen.dedup();
    chosen
}

/// Where the server listens: the gateways of the container's addresses (the bridge holds
/// them); without any, the addresses of the result's first host-side interface, which is
/// where containers/dnsname has dnsmasq listen.
pub fn listen_addresses(previous: &CniResult) -> Result<Vec<IpAddr>> {
    let mut gateways: Vec<IpAddr> = Vec::new();
    for gateway in previous.ips.iter().filter_map(|ip| ip.gateway) {
        if !gateways.contains(&gateway) {
            gateways.push(gateway);
        }
    }
    if !gateways.is_empty() {
        return Ok(gateways);
    }
    if let Some(host_side) = previous.interfaces.iter().find(|i| i.sandbox.is_empty()) {
        let mut netlink = Netlink::open()?;
        if let Some(link) = netlink.link_by_name(&host_side.name)? {
            gateways = netlink
                .addresses(link.index)?
                .into_iter()
                .map(|network| network.ip())
                .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
                .collect();
        }
    }
    if gateways.is_empty() {
        return Err(ProtocolError::config(
            "prevResult",
            "names no gateway, nor a host interface with an address, for the DNS server to \
             listen on (a bridge with isGateway has one)",
        )
        .into());
    }
    Ok(gateways)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni::Version;
    use serde_json::json;

    fn result(value: serde_json::Value) -> CniResult {
        CniResult::from_json(value, Version::V1_0_0).expect("a result")
    }

    #[test]
    fn upstreams_take_a_port_or_the_dns_port() {
        assert_eq!(
            upstream("10.0.0.53"),
            Some("10.0.0.53:53".parse().expect("addr"))
        );
        assert_eq!(
            upstream("10.0.0.53:5353"),
            Some("10.0.0.53:5353".parse().expect("addr"))
        );
        assert_eq!(
            upstream("fd00::53"),
            Some("[fd00::53]:53".parse().expect("addr"))
        );
        assert_eq!(
            upstream("[fd00::53]:54"),
            Some("[fd00::53]:54".parse().expect("addr"))
        );
        assert_eq!(upstream("resolver.example"), None);
    }

    #[test]
    fn addresses_are_the_containers_as_containers_dnsname_picks_them() {
        let bridge = result(json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/c"}],
            "ips": [{"interface": 2, "address": "10.88.0.5/24", "gateway": "10.88.0.1"},
                    {"interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"},
                    {"interface": 0, "address": "10.99.0.1/24"}]}));
        assert_eq!(
            container_addresses(&bridge),
            [
                "10.88.0.5".parse::<IpAddr>().expect("ip"),
                "fd00::5".parse().expect("ip")
            ]
        );
        assert_eq!(
            listen_addresses(&bridge).expect("gateways"),
            [
                "10.88.0.1".parse::<IpAddr>().expect("ip"),
                "fd00::1".parse().expect("ip")
            ]
        );
        let ipam_only = result(json!({"cniVersion": "1.0.0",
            "ips": [{"address": "10.88.0.5/24"}, {"address": "10.88.1.5/24"}]}));
        assert_eq!(container_addresses(&ipam_only).len(), 2);
        let one = result(
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.5/24", "interface": 7}]}),
        );
        assert_eq!(container_addresses(&one).len(), 1);
    }
}
