//! bandwidth: caps a container's traffic in each direction with token bucket filters on
//! the host end of its veth (see [`shaping`]), chained after a veth-based main plugin.

mod shaping;

use cni::id::digest;
use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{
    AttachmentId, CniResult, Failure, Interface, ProtocolError, Result, ValidAttachments, Version,
};
use kernel::netlink::{Ifb, Link, LinkBuilder, Netlink};
use kernel::netns::Netns;
use serde::Deserialize;
use shaping::Limit;

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(default)]
struct Rates {
    #[serde(rename = "ingressRate")]
    ingress_rate: u64,
    #[serde(rename = "ingressBurst")]
    ingress_burst: u64,
    #[serde(rename = "egressRate")]
    egress_rate: u64,
    #[serde(rename = "egressBurst")]
    egress_burst: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    bandwidth: Option<Rates>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
}

/// One direction's limit: rate and burst come together, and TBF must be able to hold them.
fn limit(rate: u64, burst: u64, direction: &str) -> Result<Option<Limit>, ProtocolError> {
    match (rate, burst) {
        (0, 0) => Ok(None),
        (0, _) => Err(ProtocolError::config(
            format!("{direction}Rate"),
            "a burst needs a rate",
        )),
        (_, 0) => Err(ProtocolError::config(
            format!("{direction}Burst"),
            "a rate needs a burst",
        )),
        (rate, burst) => Limit::new(rate, burst).map(Some).map_err(|why| {
            ProtocolError::config(format!("{direction}{}", why.field()), why.to_string())
        }),
    }
}

/// The limits to apply: the config's own keys win over runtimeConfig, as the reference.
fn load(request: &Request) -> Result<(Option<Limit>, Option<Limit>)> {
    let own: Rates = request.plugin_config()?;
    let raw: Raw = request.plugin_config()?;
    let configured = own.ingress_rate | own.ingress_burst | own.egress_rate | own.egress_burst != 0;
    let rates = match (configured, raw.runtime_config.bandwidth) {
        (false, Some(runtime)) => runtime,
        _ => own,
    };
    Ok((
        limit(rates.ingress_rate, rates.ingress_burst, "ingress")?,
        limit(rates.egress_rate, rates.egress_burst, "egress")?,
    ))
}

/// The ifb's name: stable per attachment, short enough for a link name.
fn ifb_name(id: &AttachmentId) -> String {
    let whole = format!("{}{}{}", id.network, id.container_id, id.ifname);
    format!("bwp{}", digest(&whole, 12))
}

/// What starts the alias of the ifb devices this plugin makes; the attachment follows.
const ALIAS_PREFIX: &str = "ferrocni-bandwidth ";

/// The ifb's alias: whose it is, so that GC finds the ifbs of attachments that are gone.
fn owner_label(id: &AttachmentId) -> String {
    format!("{ALIAS_PREFIX}{id}")
}

/// The attachment an ifb's alias names, as this version or an earlier one wrote it.
fn owner_of(alias: &str) -> Option<AttachmentId> {
    AttachmentId::read(alias.strip_prefix(ALIAS_PREFIX)?)
}

/// The host end of the container's veth, through the container end's peer index.
fn host_veth(attachment: &Attachment, host: &mut Netlink) -> Result<Link> {
    let netns = Netns::open(attachment.required_netns()?)?;
    let container = Netlink::open_in(&netns)?.link(&attachment.id.ifname)?;
    let peer = container
        .peer
        .filter(|_| container.kind.as_deref() == Some("veth"))
        .ok_or_else(|| {
            ProtocolError::config(
                "type",
                format!(
                    "{} is not a veth: bandwidth needs a veth-based main plugin",
                    attachment.id.ifname
                ),
            )
        })?;
    // A config error like the one above, in ADD as in CHECK: the chain's main plugin put
    // the pair elsewhere, and no retry will find it.
    let elsewhere = || {
        ProtocolError::config(
            "type",
            format!(
                "the host end of {}'s veth is not in this namespace: bandwidth needs a main \
                 plugin that leaves it on the host",
                attachment.id.ifname
            ),
        )
    };
    // The index is the peer's in its own namespace: the host's only if the pair crosses
    // namespaces, and then the host link by that index must point back at the container end
    // (every container's eth0 has a low index, so numbers alone collide).
    if !container.peer_elsewhere {
        return Err(elsewhere().into());
    }
    let host_end = host
        .link_by_index(peer)?
        .filter(|link| {
            link.kind.as_deref() == Some("veth")
                && link.peer_elsewhere
                && link.peer == Some(container.index)
        })
        .ok_or_else(elsewhere)?;
    Ok(host_end)
}

struct Bandwidth;

impl Plugin for Bandwidth {
    fn about(&self) -> &'static str {
        "CNI bandwidth plugin (ferrocni)"
    }

    fn supported_versions(&self) -> &'static [Version] {
        &Version::ALL[2..]
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let (ingress, egress) = load(request)?;
        let mut result = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        if ingress.is_none() && egress.is_none() {
            return Ok(result);
        }
        let mut host = Netlink::open()?;
        let veth = host_veth(attachment, &mut host)?;
        let mut undo = Undo::new();
        let ifb = match egress {
            Some(_) => {
                let (name, label) = (ifb_name(&attachment.id), owner_label(&attachment.id));
                let ifb = match host.create_and_get(&LinkBuilder::new(&name, Ifb).mtu(veth.mtu)) {
                    // A repeated ADD (a runtime's retry) finds the first one's ifb: keep it,
                    // as the qdiscs below are replaced rather than added twice. One killed
                    // between creating it and labelling it left it without a label.
                    Err(e) if e.already_exists() => {
                        let ifb = host
                            .link_by_name(&name)?
                            .filter(|ifb| {
                                ifb.kind.as_deref() == Some("ifb")
                                    && ifb.alias.as_deref().is_none_or(|alias| {
                                        owner_of(alias).as_ref() == Some(&attachment.id)
                                    })
                            })
                            .ok_or(e)?;
                        if ifb.alias.is_none() {
                            host.set_alias(ifb.index, &label)?;
                        }
                        ifb
                    }
                    created => {
                        let ifb = created?;
                        let index = ifb.index;
                        undo.push("the ifb device", move || {
                            Ok(Netlink::open()?.delete_link(index)?)
                        });
                        // The kernel ignores IFLA_IFALIAS when creating a link.
                        host.set_alias(index, &label)?;
                        ifb
                    }
                };
                host.set_link_up(ifb.index, true)?;
                Some(ifb)
            }
            None => None,
        };
        let veth_name = veth.name.clone();
        undo.push("the qdiscs", move || Ok(shaping::clear(&veth_name)?));
        shaping::apply(
            &veth.name,
            ingress,
            egress.zip(ifb.as_ref().map(|i| i.name.as_str())),
        )?;
        undo.commit();
        if let Some(ifb) = ifb {
            result.interfaces.push(Interface {
                name: ifb.name.clone(),
                mac: ifb.mac.map(|m| m.to_string()).unwrap_or_default(),
                ..Interface::default()
            });
        }
        Ok(result)
    }

    /// The ifb goes; the qdiscs on the host veth go with the veth when the main plugin
    /// deletes it.
    fn del(&self, _request: &Request, attachment: &Attachment) -> Result<()> {
        let mut host = Netlink::open()?;
        if let Some(ifb) = host.link_by_name(&ifb_name(&attachment.id))? {
            host.delete_link(ifb.index)?;
        }
        Ok(())
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let (ingress, egress) = load(request)?;
        let mut host = Netlink::open()?;
        let veth = host_veth(attachment, &mut host)?;
        if let Some(limit) = ingress {
            if shaping::root_rate(&veth.name)? != Some(limit.rate_bytes()) {
                return Err(Failure::Check(format!(
                    "{} is not shaped to {} bit/s",
                    veth.name,
                    limit.rate()
                ))
                .into());
            }
        }
        if let Some(limit) = egress {
            let ifb = ifb_name(&attachment.id);
            if shaping::root_rate(&ifb)? != Some(limit.rate_bytes()) {
                return Err(Failure::Check(format!(
                    "{ifb} is not shaped to {} bit/s",
                    limit.rate()
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Removes the ifb devices of this network's attachments that are no longer valid.
    fn gc(&self, _request: &Request, valid: &ValidAttachments) -> Result<()> {
        let mut host = Netlink::open()?;
        for link in host.links()? {
            let Some(owner) = link.alias.as_deref().and_then(owner_of) else {
                continue;
            };
            if owner.network == valid.network() && !valid.contains(&owner) {
                host.delete_link(link.index)?;
            }
        }
        Ok(())
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
    skel::run(&Bandwidth)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ifb made by an earlier version (its alias `ferrocni-bandwidth net/cid/if`) is still
    /// its attachment's: a repeated ADD keeps it, GC and DEL find it.
    #[test]
    fn aliases_name_their_owner_in_either_form() {
        let id = AttachmentId::new("net", "abc", "eth0");
        assert_eq!(owner_label(&id), "ferrocni-bandwidth net:abc:eth0");
        assert_eq!(owner_of(&owner_label(&id)), Some(id.clone()));
        assert_eq!(owner_of("ferrocni-bandwidth net/abc/eth0"), Some(id));
        assert_eq!(owner_of("net:abc:eth0"), None, "not ours");
        assert_eq!(owner_of("ferrocni-bandwidth net:abc"), None);
    }

    #[test]
    fn ifb_names_stay_what_earlier_versions_made() {
        let id = AttachmentId::new("net", "abc", "eth0");
        // bwp and the head of sha512("netabceth0"), as earlier versions named it.
        assert_eq!(ifb_name(&id), "bwp8b4028313b48");
    }

    #[test]
    fn rate_and_burst_come_together() {
        assert!(super::limit(0, 0, "ingress").expect("none").is_none());
        assert!(super::limit(1000, 0, "ingress").is_err());
        assert!(super::limit(0, 1000, "egress").is_err());
        assert!(super::limit(1000, 8 * u64::from(u32::MAX), "egress").is_err());
        assert!(super::limit(1000, 8000, "egress").expect("valid").is_some());
    }
}
