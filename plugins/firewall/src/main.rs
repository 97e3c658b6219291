//! firewall: lets a container's traffic (its own, replies to it, and connections to its
//! published ports) through the host's forwarding even where the host's policy drops
//! forwarded packets, and optionally isolates bridges from each other.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use firewall::{Backend, Entry, Feature, Iptables};
use ipnetwork::IpNetwork;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    backend: Option<String>,
    #[serde(rename = "iptablesAdminChainName")]
    iptables_admin_chain_name: Option<String>,
    #[serde(rename = "ingressPolicy")]
    ingress_policy: Option<String>,
}

struct Conf {
    /// With iptables, the admin chain `CNI-FORWARD` jumps to first.
    backend: Backend,
    /// `ingressPolicy: same-bridge`: containers of other isolated bridges cannot get in.
    isolate: bool,
}

impl Conf {
    /// iptables is the default, as in the reference without firewalld: only rules in the
    /// host's own FORWARD chain can override a drop policy set there.
    fn load(request: &Request) -> Result<Conf> {
        Conf::from_raw(request.plugin_config()?)
    }

    fn from_raw(raw: Raw) -> Result<Conf> {
        // Podman writes `"backend": ""`: empty means the default, as absent does.
        let backend = match raw.backend.as_deref().filter(|b| !b.is_empty()) {
            Some("firewalld") => {
                return Err(ProtocolError::config(
                    "backend",
                    "firewalld is not supported: use iptables or nftables",
                )
                .into())
            }
            Some(chosen) => Backend::select(Some(chosen))?,
            None => Backend::select(Some("iptables"))?,
        };
        let isolate = match raw.ingress_policy.as_deref() {
            None | Some("") | Some("open") => false,
            Some("same-bridge") => true,
            Some(other) => {
                return Err(ProtocolError::config(
                    "ingressPolicy",
                    format!("{other:?} is not open or same-bridge"),
                )
                .into())
            }
        };
        let admin_chain = raw
            .iptables_admin_chain_name
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "CNI-ADMIN".to_string());
        if admin_chain.len() > 28 || admin_chain.contains(char::is_whitespace) {
            return Err(ProtocolError::config(
                "iptablesAdminChainName",
                "must be a chain name of at most 28 characters",
            )
            .into());
        }
        // The nftables backend accepts the key and has no use for it, as the reference's
        // firewalld backend: an admin's nftables chain on the forward hook runs whatever ours
        // accepts, and its drop wins, with no jump of ours to it.
        let backend = match backend {
            Backend::Iptables(iptables) => Backend::Iptables(Iptables {
                admin_chain,
                ..iptables
            }),
            Backend::Nftables => Backend::Nftables,
        };
        Ok(Conf { backend, isolate })
    }
}

fn addresses(previous: &CniResult) -> Vec<IpNetwork> {
    previous.ips.iter().map(|ip| ip.address).collect()
}

struct Firewall;

impl Plugin for Firewall {
    fn about(&self) -> &'static str {
        "CNI firewall plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let conf = Conf::load(request)?;
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        // The main plugin lists the bridge first among the host-side interfaces.
        let bridge = match conf.isolate {
            true => Some(
                previous
                    .interfaces
                    .iter()
                    .find(|i| i.sandbox.is_empty())
                    .ok_or_else(|| {
                        ProtocolError::config(
                            "ingressPolicy",
                            "same-bridge needs a bridge in prevResult",
                        )
                    })?,
            ),
            false => None,
        };
        let owner = &attachment.id;
        let entries = Entry::forward(&addresses(&previous));
        let firewall = conf.backend.firewall();
        let mut undo = Undo::new();
        firewall.add(owner, &entries)?;
        undo.push("the forwarding rules", || {
            Ok(firewall.del(owner, Feature::Forward, &entries)?)
        });
        if let Some(bridge) = bridge {
            firewall.isolate_bridge(&bridge.name)?;
        }
        undo.commit();
        Ok(previous)
    }

    /// Isolation stays: it belongs to the bridge, which outlives its containers.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        let previous = request.prev_result().ok().flatten().unwrap_or_default();
        let known = Entry::forward(&addresses(&previous));
        Ok(conf
            .backend
            .firewall()
            .del(&attachment.id, Feature::Forward, &known)?)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let expected = Entry::forward(&addresses(&previous));
        if !conf.backend.firewall().check(&attachment.id, &expected)? {
            return Err(Failure::Check("forwarding rules are missing".to_string()).into());
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let conf = Conf::load(request)?;
        Ok(conf.backend.firewall().gc(Feature::Forward, valid)?)
    }

    /// Needs no daemon and allocates nothing.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backend(config: serde_json::Value) -> Backend {
        let raw = serde_json::from_value(config).expect("a config the plugin decodes");
        Conf::from_raw(raw).expect("valid").backend
    }

    #[test]
    fn the_admin_chain_is_an_option_of_the_iptables_backend() {
        assert_eq!(
            backend(json!({"backend": "iptables", "iptablesAdminChainName": "MINE"})),
            Backend::Iptables(Iptables {
                admin_chain: "MINE".to_string(),
                ..Iptables::default()
            })
        );
        assert_eq!(
            backend(json!({"backend": "iptables"})),
            Backend::Iptables(Iptables::default())
        );
        // Accepted, and of no use to nftables (see `Conf::from_raw`).
        assert_eq!(
            backend(json!({"backend": "nftables", "iptablesAdminChainName": "MINE"})),
            Backend::Nftables
        );
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&Firewall)
}
