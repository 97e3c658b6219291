//! macvlan: the container gets its own MAC on the host's link (`master`), so it appears on
//! that LAN directly. IPAM is optional: without it the link has no address.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use kernel::netlink::link::MacVlanMode;
use kernel::netlink::{LinkBuilder, MacVlan, Netlink};
use kernel::netns::Netns;
use netlib::{attachment, iface};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    master: String,
    mode: String,
    mtu: Option<u32>,
    #[serde(rename = "linkInContainer")]
    link_in_container: bool,
    mac: Option<String>,
}

struct Conf {
    /// Empty: the link of the default route.
    master: String,
    mode: MacVlanMode,
    mtu: Option<u32>,
    link_in_container: bool,
    /// The config's own `mac`; ADD weighs it against the runtime's (CNI_ARGS among them,
    /// which only ADD reads).
    mac: Option<String>,
}

impl Conf {
    fn load(request: &Request) -> Result<Conf> {
        let raw: Raw = request.plugin_config()?;
        let mode = match raw.mode.as_str() {
            "" | "bridge" => MacVlanMode::Bridge,
            "private" => MacVlanMode::Private,
            "vepa" => MacVlanMode::Vepa,
            "passthru" => MacVlanMode::Passthrough,
            other => {
                return Err(ProtocolError::config(
                    "mode",
                    format!(
                        "unknown macvlan mode {other:?}: use bridge, private, vepa or passthru"
                    ),
                )
                .into())
            }
        };
        Ok(Conf {
            master: raw.master,
            mode,
            mtu: raw.mtu.filter(|m| *m != 0),
            link_in_container: raw.link_in_container,
            mac: raw.mac,
        })
    }
}

struct Macvlan;

impl Plugin for Macvlan {
    fn about(&self) -> &'static str {
        "CNI macvlan plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let conf = Conf::load(request)?;
        let mac = attachment::requested_mac(request, attachment, conf.mac.clone())?;
        let netns = Netns::open(attachment.required_netns()?)?;
        let mut container = Netlink::open_in(&netns)?;
        let mut host = Netlink::open()?;
        // The master is looked up where it lives: the host, or the container itself.
        let master_side = if conf.link_in_container {
            &mut container
        } else {
            &mut host
        };
        let master = match conf.master.as_str() {
            "" => {
                let index = master_side.default_route_link()?.ok_or_else(|| {
                    ProtocolError::config(
                        "master",
                        "not given, and there is no default route to take it from",
                    )
                })?;
                master_side.link_by_index(index)?.ok_or_else(|| {
                    ProtocolError::config("master", "the default route's link vanished")
                })?
            }
            name => master_side.link_by_name(name)?.ok_or_else(|| {
                ProtocolError::config("master", format!("no link named {name:?}"))
            })?,
        };
        if !master.ethernet {
            // The kernel would only say "Invalid argument".
            return Err(ProtocolError::config(
                "master",
                format!("{:?} is not an Ethernet device", master.name),
            )
            .into());
        }
        if let Some(mtu) = conf.mtu {
            if mtu < 68 || mtu > master.mtu {
                return Err(ProtocolError::config(
                    "mtu",
                    format!(
                        "{mtu} must be between 68 and the master's MTU {}",
                        master.mtu
                    ),
                )
                .into());
            }
        }
        if container.link_by_name(&attachment.id.ifname)?.is_some() {
            return Err(Failure::AlreadyExists(format!(
                "container interface {:?} already exists",
                attachment.id.ifname
            ))
            .into());
        }
        let target = if conf.link_in_container {
            None
        } else {
            Some(&netns)
        };
        let creator = if conf.link_in_container {
            &mut container
        } else {
            &mut host
        };
        creator.create(
            &LinkBuilder::new(
                &attachment.id.ifname,
                MacVlan {
                    parent: master.index,
                    mode: conf.mode,
                },
            )
            .mtu(conf.mtu)
            .mac(mac)
            .netns(target),
        )?;
        let link = container.link(&attachment.id.ifname)?;
        let mut undo = Undo::new();
        undo.push("the macvlan", || {
            Ok(Netlink::open_in(&netns)?.delete_link(link.index)?)
        });
        let allocated = attachment::ipam_add(request, &mut undo)?;
        let result = attachment::finish_single(request, &netns, &mut container, &link, allocated)?;
        undo.commit();
        Ok(result)
    }

    /// Deleting the macvlan in the container is all there is on the host side; IPAM releases
    /// even when the namespace is gone.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        Conf::load(request)?;
        attachment::teardown(request, attachment, None)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        Conf::load(request)?;
        let mut checked =
            attachment::check_start(request, attachment, attachment::ipam_type(request))?;
        let link = &checked.link;
        if link.kind.as_deref() != Some("macvlan") {
            return Err(Failure::Check(format!("{} is not a macvlan", link.name)).into());
        }
        iface::verify(
            &mut checked.container,
            link,
            &checked.previous,
            checked.index,
        )
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        attachment::collect(request, valid, None)
    }

    fn status(&self, request: &Request) -> Result<()> {
        attachment::status(request)
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run_with(&Macvlan, &[ipam::HOST_LOCAL, ipam::STATIC])
}
