//! veth pairs for container interfaces: the host end on the host, the container end created
//! directly inside the container's namespace under its final name.

use crate::error::{Error, Result};
use crate::netlink::{link::random_name, Link, MacAddr, Netlink};
use crate::netns::Netns;
use crate::undo::Undo;

/// How often a colliding random host-side name is drawn again.
const NAME_ATTEMPTS: usize = 5;

/// Creates the pair and returns (host end, container end); `undo` deletes it again if ADD
/// fails later. Fails if `ifname` already exists in the container, as the spec requires.
pub fn create_pair(
    undo: &mut Undo,
    host: &mut Netlink,
    container: &mut Netlink,
    netns: &Netns,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
) -> Result<(Link, Link)> {
    if container.link_by_name(ifname)?.is_some() {
        return Err(Error::AlreadyExists(format!(
            "container interface {ifname:?} already exists in {}",
            netns.path().display()
        )));
    }
    let mut attempt = 0;
    let host_end = loop {
        attempt += 1;
        match host.create_veth(&random_name("veth"), ifname, netns, mtu, mac) {
            Err(e) if e.already_exists() && attempt < NAME_ATTEMPTS => {
                // Either our random name or the container name collided; tell which.
                if container.link_by_name(ifname)?.is_some() {
                    return Err(Error::AlreadyExists(format!(
                        "container interface {ifname:?} already exists"
                    )));
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
