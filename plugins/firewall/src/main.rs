//! firewall: lets a container's traffic (its own, replies to it, and connections to its
//! published ports) through the host's forwarding even where the host's policy drops
//! forwarded packets, and optionally isolates bridges from each other.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use firewall::Backend;
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
    backend: Backend,
    admin_chain: String,
    /// `ingressPolicy: same-bridge`: containers of other isolated bridges cannot get in.
    isolate: bool,
}

impl Conf {
    /// iptables is the default, as in the reference without firewalld: only rules in the
    /// host's own FORWARD chain can override a drop policy set there.
    fn load(request: &Request) -> Result<Conf> {
        let raw: Raw = request.plugin_config()?;
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
            None => Backend::select(Some("iptables")).or_else(|_| Backend::select(None))?,
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
        Ok(Conf {
            backend,
            admin_chain,
            isolate,
        })
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
        let addresses = addresses(&previous);
        let mut undo = Undo::new();
        conf.backend
            .allow_forward(owner, &addresses, &conf.admin_chain)?;
        undo.push("the forwarding rules", || {
            Ok(conf.backend.del_forward(owner, &addresses)?)
        });
        if let Some(bridge) = bridge {
            conf.backend.isolate_bridge(&bridge.name)?;
        }
        undo.commit();
        Ok(previous)
    }

    /// Isolation stays: it belongs to the bridge, which outlives its containers.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        let previous = request.prev_result().ok().flatten().unwrap_or_default();
        Ok(conf
            .backend
            .del_forward(&attachment.id, &addresses(&previous))?)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        if !conf
            .backend
            .has_forward(&attachment.id, &addresses(&previous))?
        {
            return Err(Failure::Check("forwarding rules are missing".to_string()).into());
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        Ok(Conf::load(request)?.backend.gc_forward(valid)?)
    }

    /// Needs no daemon and allocates nothing.
    fn status(&self, _request: &Request) -> Result<()> {
        Ok(())
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&Firewall)
}
