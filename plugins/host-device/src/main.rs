//! host-device: moves an existing host link (a NIC, an SR-IOV VF, a tunnel end) into the
//! container and renames it; DEL brings it back under its original name with its original
//! state, addresses included (moving a link between namespaces drops its addresses).

use cni::skel::{self, Attachment, Command, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Error, Failure, ProtocolError, Result, ValidAttachments};
use ipnetwork::IpNetwork;
use kernel::netlink::{Link, MacAddr, Netlink};
use kernel::netns::{Netns, NetnsError};
use netlib::state::Store;
use netlib::{attachment, iface};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const DEFAULT_DATA_DIR: &str = "/run/cni/host-device";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Raw {
    device: Option<String>,
    hwaddr: Option<String>,
    kernelpath: Option<String>,
    #[serde(rename = "pciBusID")]
    pci_bus_id: Option<String>,
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
}

/// How to find the device on the host.
enum Selector {
    Name(String),
    Mac(MacAddr),
    /// A sysfs directory whose `net/` holds the link (kernelpath, or a PCI device).
    Sysfs(String),
}

/// The device as it was on the host, to put back on DEL.
#[derive(Debug, Serialize, Deserialize)]
struct Original {
    name: String,
    mac: Option<String>,
    up: bool,
    mtu: u32,
    addresses: Vec<IpNetwork>,
    /// The kernel's kind of link (none for a physical device): links stacked on a device
    /// share its MAC, and only the kind tells a VLAN from its parent. Older records lack it.
    #[serde(default)]
    kind: Option<String>,
}

/// DEL renames, readdresses and moves whatever link a record names: one whose name, kind or
/// MAC no link could have is refused whole.
impl netlib::state::Record for Original {
    fn check(&self) -> std::result::Result<(), String> {
        cni::config::validate_ifname(&self.name).map_err(|e| format!("name: {e}"))?;
        if let Some(mac) = &self.mac {
            mac.parse::<MacAddr>()
                .map_err(|e| format!("mac {mac:?}: {e}"))?;
        }
        // The kernel's kinds are short words: "veth", "vlan", "ip6_vti".
        if let Some(kind) = &self.kind {
            let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if kind.is_empty() || kind.len() > 32 || !kind.chars().all(word) {
                return Err(format!("kind {kind:?} is no kind of link"));
            }
        }
        Ok(())
    }
}

impl Original {
    /// Whether `link` can be this device: same kind, and the same MAC when it has one.
    fn is(&self, link: &Link) -> bool {
        link.kind == self.kind && link.mac.map(|m| m.to_string()) == self.mac
    }
}

/// Kinds of link that sit on another and share its MAC.
const STACKED: [&str; 10] = [
    "vlan",
    "macvlan",
    "macvtap",
    "ipvlan",
    "ipvtap",
    "macsec",
    "bond",
    "bridge",
    "team",
    "openvswitch",
];

/// Host links with `mac`, those stacked on another last.
fn links_with_mac(host: &mut Netlink, mac: MacAddr) -> Result<Vec<Link>> {
    let mut found: Vec<Link> = host
        .links()?
        .into_iter()
        .filter(|l| l.mac == Some(mac))
        .collect();
    found.sort_by_key(|l| l.kind.as_deref().is_some_and(|k| STACKED.contains(&k)));
    Ok(found)
}

fn load(request: &Request) -> Result<(Selector, Store)> {
    let raw: Raw = request.plugin_config()?;
    let mut given: Vec<Selector> = Vec::new();
    if let Some(device) = raw.device.filter(|d| !d.is_empty()) {
        given.push(Selector::Name(device));
    }
    if let Some(hwaddr) = raw.hwaddr.filter(|h| !h.is_empty()) {
        given.push(Selector::Mac(
            hwaddr
                .parse()
                .map_err(|e| ProtocolError::config("hwaddr", e))?,
        ));
    }
    if let Some(path) = raw.kernelpath.filter(|k| !k.is_empty()) {
        given.push(Selector::Sysfs(path));
    }
    for pci in [raw.pci_bus_id, raw.runtime_config.device_id]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
    {
        if pci.contains('/') {
            return Err(
                ProtocolError::config("pciBusID", format!("{pci:?} is not a PCI address")).into(),
            );
        }
        given.push(Selector::Sysfs(format!("/sys/bus/pci/devices/{pci}")));
    }
    if given.len() != 1 {
        return Err(ProtocolError::config(
            "device",
            "give exactly one of device, hwaddr, kernelpath, pciBusID or runtimeConfig.deviceID",
        )
        .into());
    }
    Ok((
        given.remove(0),
        Store::configured(raw.data_dir, DEFAULT_DATA_DIR)?,
    ))
}

fn find(host: &mut Netlink, selector: &Selector) -> Result<Link> {
    let missing = |what: String| {
        Error::from(ProtocolError::config(
            "device",
            format!(
                "{what} is not in the host namespace (missing, or attached to another container)"
            ),
        ))
    };
    match selector {
        Selector::Name(name) => host
            .link_by_name(name)?
            .ok_or_else(|| missing(format!("device {name:?}"))),
        Selector::Mac(mac) => links_with_mac(host, *mac)?
            .into_iter()
            .next()
            .ok_or_else(|| missing(format!("a device with MAC {mac}"))),
        Selector::Sysfs(path) => {
            let name = std::fs::read_dir(Path::new(path).join("net"))
                .ok()
                .and_then(|mut entries| entries.next())
                .and_then(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .ok_or_else(|| missing(format!("the network device of {path}")))?;
            host.link_by_name(&name)?
                .ok_or_else(|| missing(format!("device {name:?}")))
        }
    }
}

/// Puts a device that is back in the host namespace (`link`) into its original state.
fn restore_on_host(host: &mut Netlink, link: &Link, original: &Original) -> Result<()> {
    if link.name != original.name {
        host.rename(link, &original.name)?;
    }
    if link.mtu != original.mtu {
        host.set_mtu(link.index, original.mtu)?;
    }
    for address in &original.addresses {
        match host.add_address(link.index, *address, true) {
            Err(e) if e.already_exists() => {}
            other => other?,
        }
    }
    host.set_link_up(link.index, original.up)?;
    Ok(())
}

/// The name a device comes back under before it gets its own again (which may be taken on
/// the host, as its container name may be): fixed per device, so a DEL that died in
/// between finds it by name, MAC or not.
fn returning_name(original: &Original) -> String {
    const PREFIX: &str = "hd";
    let mut name = String::from(PREFIX);
    for c in original.name.chars() {
        if name.len() + c.len_utf8() > cni::config::IFNAME_MAX {
            break;
        }
        name.push(c);
    }
    name
}

/// Brings the device back from the container under its returning name, in the same request
/// as the move, then restores it; `false` when it is not in the container.
fn bring_back(netns: &Netns, ifname: &str, original: &Original) -> Result<bool> {
    let mut container = Netlink::open_in(netns)?;
    let link = match container.link_by_name(ifname)? {
        Some(link) => link,
        // A move whose rename failed leaves it under its host name; kind and MAC tell it
        // from a link of the container's own (without a MAC nothing does: leave it).
        None => match container
            .link_by_name(&original.name)?
            .filter(|l| original.mac.is_some() && original.is(l))
        {
            Some(link) => link,
            None => return Ok(false),
        },
    };
    container.set_link_up(link.index, false)?;
    let returning = returning_name(original);
    container.move_to(link.index, &Netns::current()?, &returning)?;
    let mut host = Netlink::open()?;
    let back = host.link(&returning)?;
    restore_on_host(&mut host, &back, original)?;
    Ok(true)
}

/// The device on the host, when it is not in the container: an ADD that died before the
/// move left it under its own name, a DEL that died after the move under its returning
/// name, and a deleted namespace returns a physical device under any name, found then by
/// its MAC. Only a physical device with a real MAC is taken under any name: links stacked on
/// another share its MAC, and they are destroyed with their namespace anyway.
fn restore_found_on_host(original: &Original) -> Result<()> {
    let mut host = Netlink::open()?;
    let mut found = None;
    for name in [original.name.clone(), returning_name(original)] {
        found = host.link_by_name(&name)?.filter(|l| original.is(l));
        if found.is_some() {
            break;
        }
    }
    let physical_mac = original
        .mac
        .as_deref()
        .and_then(|m| m.parse::<MacAddr>().ok())
        .filter(|mac| original.kind.is_none() && mac.0 != [0; 6]);
    if let (None, Some(mac)) = (&found, physical_mac) {
        found = links_with_mac(&mut host, mac)?
            .into_iter()
            .find(|l| original.is(l));
    }
    match found {
        Some(link) => restore_on_host(&mut host, &link, original),
        None => Ok(()),
    }
}

/// Puts the device back as it was, wherever an ADD or DEL, finished or not, left it.
fn return_device(netns: Option<&Netns>, ifname: &str, original: &Original) -> Result<()> {
    if let Some(netns) = netns {
        if bring_back(netns, ifname, original)? {
            return Ok(());
        }
    }
    restore_found_on_host(original)
}

struct HostDevice;

impl Plugin for HostDevice {
    fn about(&self) -> &'static str {
        "CNI host-device plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let (selector, store) = load(request)?;
        let netns = Netns::open(attachment.required_netns()?)?;
        let mut container = Netlink::open_in(&netns)?;
        if container.link_by_name(&attachment.id.ifname)?.is_some() {
            return Err(Failure::AlreadyExists(format!(
                "container interface {:?} already exists",
                attachment.id.ifname
            ))
            .into());
        }
        let mut host = Netlink::open()?;
        let device = find(&mut host, &selector)?;
        let key = &attachment.id;
        // A retry of an ADD that died before the move keeps the first record: the device
        // is down by now, which is not how it was.
        let original = match store.load::<Original>(key)? {
            Some(earlier) if earlier.name == device.name && earlier.is(&device) => earlier,
            earlier => {
                // A record of another device (the retry selected a different one): put that
                // one back as it was before recording this one.
                if let Some(other) = earlier {
                    restore_found_on_host(&other)?;
                }
                Original {
                    name: device.name.clone(),
                    mac: device.mac.map(|m| m.to_string()),
                    up: device.up,
                    mtu: device.mtu,
                    addresses: host
                        .addresses(device.index)?
                        .into_iter()
                        .filter(|a| !(a.is_ipv6() && a.ip().to_string().starts_with("fe80")))
                        .collect(),
                    kind: device.kind.clone(),
                }
            }
        };
        // Recorded before the device changes, so DEL can restore even after a crash. The
        // record goes only once the device is back: a failed return leaves it for DEL.
        store.save(key, &original)?;
        let mut undo = Undo::new();
        undo.push("the device", || {
            return_device(Some(&netns), &attachment.id.ifname, &original)?;
            Ok(store.remove(key)?)
        });
        host.set_link_up(device.index, false)?;
        host.move_to(device.index, &netns, &attachment.id.ifname)?;
        let link = container.link(&attachment.id.ifname)?;
        let allocated = attachment::ipam_add(request, &mut undo)?;
        let result = attachment::finish_single(request, &netns, &mut container, &link, allocated)?;
        undo.commit();
        Ok(result)
    }

    /// Releases the reservation in every case (the reference skips it without a namespace
    /// and leaks the address), and brings the device back to the host. When it is not in the
    /// container (the namespace is gone, or an ADD or DEL died half-way) it is looked for on
    /// the host by its MAC and restored there.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let (_, store) = load(request)?;
        let mut failures: Vec<Error> = Vec::new();
        if let Some(ipam) = attachment::ipam_type(request) {
            failures.extend(request.delegate(ipam, Command::Del).err());
        }
        let key = &attachment.id;
        if let Some(original) = store.load::<Original>(key)? {
            let netns = attachment.netns.as_ref().map(Netns::open);
            let restored = match netns {
                Some(Ok(netns)) => return_device(Some(&netns), &attachment.id.ifname, &original),
                Some(Err(NetnsError::NotFound(_))) | None => {
                    return_device(None, &attachment.id.ifname, &original)
                }
                Some(Err(e)) => Err(e.into()),
            };
            match restored {
                Ok(()) => store.remove(key)?,
                Err(e) => failures.push(e),
            }
        }
        failures.into_iter().next().map_or(Ok(()), Err)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        load(request)?;
        let mut checked =
            attachment::check_start(request, attachment, attachment::ipam_type(request))?;
        let link = &checked.link;
        iface::verify(
            &mut checked.container,
            link,
            &checked.previous,
            checked.index,
        )
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let (_, store) = load(request)?;
        let records = store.gc(valid);
        attachment::collect(request, valid, None)?;
        Ok(records?)
    }

    fn status(&self, request: &Request) -> Result<()> {
        attachment::status(request)
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run_with(&HostDevice, &[ipam::HOST_LOCAL, ipam::STATIC])
}
