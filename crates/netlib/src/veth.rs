//! veth pairs for container interfaces: the host end on the host, the container end created
//! directly inside the container's namespace under its final name.

use cni::undo::Undo;
use cni::{Failure, Result};
use kernel::netlink::{link::random_name, Link, LinkBuilder, MacAddr, Netlink, Peer, Veth};
use kernel::netns::Netns;

/// How often a colliding random host-side name is drawn again.
const NAME_ATTEMPTS: usize = 5;

/// What the pair looks like.
pub struct PairSpec<'a> {
    /// The container end's name.
    pub ifname: &'a str,
    pub mtu: Option<u32>,
    /// The container end's MAC, if the runtime asked for one.
    pub mac: Option<MacAddr>,
    /// A bridge the host end becomes an (up) port of as it is created.
    pub bridge: Option<u32>,
}

/// Creates the pair and returns (host end, container end); `undo` deletes it again if ADD
/// fails later. Fails if `spec.ifname` already exists in the container, as the spec
/// requires. No lookup first: the kernel refuses a taken name anyway, and only then is it
/// worth asking which of the two names collided.
pub fn create_pair(
    undo: &mut Undo,
    host: &mut Netlink,
    container: &mut Netlink,
    netns: &Netns,
    spec: &PairSpec,
) -> Result<(Link, Link)> {
    let ifname = spec.ifname;
    let mut attempt = 0;
    let host_end = loop {
        attempt += 1;
        // The container end is made where it lives, under its final name; the host end
        // joins the bridge and comes up in the same request, as each request takes the
        // RTNL lock and notifies every listener once.
        let peer = LinkBuilder::new(ifname, Peer)
            .netns(netns)
            .mtu(spec.mtu)
            .mac(spec.mac);
        let mut pair = LinkBuilder::new(random_name("veth"), Veth { peer }).mtu(spec.mtu);
        if let Some(bridge) = spec.bridge {
            pair = pair.master(bridge).up();
        }
        let created = host.create_and_get(&pair);
        match created {
            Err(e) if e.already_exists() => {
                if container.link_by_name(ifname)?.is_some() {
                    return Err(Failure::AlreadyExists(format!(
                        "container interface {ifname:?} already exists in {}",
                        netns.path().display()
                    ))
                    .into());
                }
                if attempt == NAME_ATTEMPTS {
                    return Err(e.into());
                }
            }
            other => break other?,
        }
    };
    let index = host_end.index;
    undo.push("the veth pair", move || {
        Ok(Netlink::open()?.delete_link(index)?)
    });
    let container_end = container.link(ifname)?;
    Ok((host_end, container_end))
}
