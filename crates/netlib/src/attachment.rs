//! What every interface-creating plugin does the same way: report links in a result, and tear down, collect garbage and report status. DEL and GC keep
//! going past failures and report the first; a vanished namespace is not a failure.

use ipnetwork::IpNetwork;

use cni::skel::{Attachment, Command, Request};
use cni::undo::Undo;
use cni::{CniResult, Error, Failure, Interface, ProtocolError, Result, ValidAttachments};
use firewall::{Entry, Feature, Firewall};
use kernel::netlink::{Link, MacAddr, Netlink};
use kernel::netns::{Netns, NetnsError};

/// A link as a result lists it; `sandbox` is empty for host-side links.
pub fn interface(link: &Link, sandbox: &str) -> Interface {
    Interface {
        name: link.name.clone(),
        mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
        sandbox: sandbox.to_string(),
        ..Interface::default()
    }
}

/// ADD's masquerade step: rules for every address of `result`, undone if ADD fails later.
pub fn masquerade<'a>(
    attachment: &'a Attachment,
    firewall: &'a dyn Firewall,
    result: &CniResult,
    undo: &mut Undo<'a>,
) -> Result<()> {
    let entries = Entry::masquerade(&addresses(result));
    let owner = &attachment.id;
    firewall.add(owner, &entries)?;
    undo.push("the masquerade rules", move || {
        Ok(firewall.del(owner, Feature::Masquerade, &entries)?)
    });
    Ok(())
}

/// The addresses of a result.
fn addresses(result: &CniResult) -> Vec<IpNetwork> {
    result.ips.iter().map(|ip| ip.address).collect()
}

/// ADD's IPAM step: the delegate's result (empty without `ipam`), released again if ADD
/// fails later.
pub fn ipam_add<'a>(request: &'a Request, undo: &mut Undo<'a>) -> Result<CniResult> {
    let Some(ipam) = ipam_type(request) else {
        return Ok(CniResult::default());
    };
    let allocated = request.delegate_add(ipam)?;
    undo.push("the IPAM reservation", move || {
        request.delegate(ipam, Command::Del).map(drop)
    });
    Ok(allocated)
}

/// The end of ADD for a plugin whose only interface is `link` in the container (macvlan,
/// host-device): addresses and routes on it, the announcement, and the result naming it.
pub fn finish_single(
    request: &Request,
    netns: &Netns,
    container: &mut Netlink,
    link: &Link,
    mut result: CniResult,
) -> Result<CniResult> {
    for ip in &mut result.ips {
        ip.interface = Some(0);
    }
    crate::iface::configure(netns, container, link, &result, 0, false)?;
    crate::iface::announce(container, link, &result, 0);
    result.interfaces = vec![interface(link, &netns.path().display().to_string())];
    apply_dns(request, &mut result);
    Ok(result)
}

/// The MAC a runtime asks for, highest priority first: `runtimeConfig.mac` (capability
/// `mac`), `args.cni.mac`, CNI_ARGS `MAC`, then the plugin's own `mac` key if it has one.
pub fn requested_mac(
    request: &Request,
    attachment: &Attachment,
    own: Option<String>,
) -> Result<Option<MacAddr>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Mac {
        mac: Option<String>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Args {
        cni: Mac,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Sources {
        #[serde(rename = "runtimeConfig")]
        runtime_config: Mac,
        args: Args,
    }
    let sources: Sources = request.plugin_config()?;
    let found = [
        (sources.runtime_config.mac, "runtimeConfig.mac"),
        (sources.args.cni.mac, "args.cni.mac"),
        (
            attachment.args()?.get("MAC").map(str::to_string),
            "CNI_ARGS MAC",
        ),
        (own, "mac"),
    ]
    .into_iter()
    .find_map(|(mac, field)| mac.filter(|m| !m.is_empty()).map(|m| (m, field)));
    match found {
        Some((text, field)) => {
            Ok(Some(text.parse().map_err(|e: String| {
                cni::ProtocolError::config(field, e)
            })?))
        }
        None => Ok(None),
    }
}

/// The config's own `dns` wins over what IPAM returned, when it says anything.
pub fn apply_dns(request: &Request, result: &mut CniResult) {
    if !request.conf.dns.is_empty() {
        result.dns = request.conf.dns.clone();
    }
}

/// The IPAM plugin named in the config, if any.
pub fn ipam_type(request: &Request) -> Option<&str> {
    request
        .conf
        .ipam
        .as_ref()
        .map(|ipam| ipam.plugin_type.as_str())
        .filter(|t| !t.is_empty())
}

/// DEL for a plugin whose container interface is one end of a veth pair: remove the
/// masquerade, release the reservation, delete the link (the pair and any host routes on it
/// go along). Works without `CNI_NETNS` and without prevResult. IPAM goes before the link,
/// as in the reference: dhcp sends its RELEASE from the container's interface.
pub fn teardown(
    request: &Request,
    attachment: &Attachment,
    masquerade: Option<&dyn Firewall>,
) -> Result<()> {
    let previous = request.prev_result().ok().flatten().unwrap_or_default();
    let mut failures: Vec<Error> = Vec::new();
    // Rules first: the kernel frees them after a grace period, which then passes while the
    // link's deletion waits for its own (see `netlink::nftables`).
    if let Some(firewall) = masquerade {
        let known = Entry::masquerade(&addresses(&previous));
        let removed = firewall.del(&attachment.id, Feature::Masquerade, &known);
        failures.extend(removed.err().map(Error::from));
    }
    if let Some(ipam) = ipam_type(request) {
        failures.extend(request.delegate(ipam, Command::Del).err());
    }
    if let Some(path) = &attachment.netns {
        let removed = match Netns::open(path) {
            Err(NetnsError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(netns) => remove_link(&netns, &attachment.id.ifname),
        };
        failures.extend(removed.err());
    }
    failures.into_iter().next().map_or(Ok(()), Err)
}

fn remove_link(netns: &Netns, ifname: &str) -> Result<()> {
    let mut container = Netlink::open_in(netns)?;
    if let Some(link) = container.link_by_name(ifname)? {
        container.delete_link(link.index)?;
    }
    Ok(())
}

/// GC: masquerade rules of attachments not in `valid`, then the IPAM plugin's GC.
pub fn collect(
    request: &Request,
    valid: &ValidAttachments,
    masquerade: Option<&dyn Firewall>,
) -> Result<()> {
    let mut failures: Vec<Error> = Vec::new();
    if let Some(firewall) = masquerade {
        let collected = firewall.gc(Feature::Masquerade, valid);
        failures.extend(collected.err().map(Error::from));
    }
    if let Some(ipam) = ipam_type(request) {
        failures.extend(request.delegate(ipam, Command::Gc).err());
    }
    failures.into_iter().next().map_or(Ok(()), Err)
}

/// STATUS: an interface plugin can serve ADD when its IPAM plugin can.
pub fn status(request: &Request) -> Result<()> {
    match ipam_type(request) {
        Some(ipam) => request.delegate(ipam, Command::Status).map(drop),
        None => Ok(()),
    }
}

/// CHECK of the masquerade rules for the addresses in prevResult.
pub fn check_masquerade(
    attachment: &Attachment,
    firewall: &dyn Firewall,
    addresses: &[IpNetwork],
) -> Result<()> {
    if !firewall.check(&attachment.id, &Entry::masquerade(addresses))? {
        return Err(Failure::Check("masquerade rules are missing".to_string()).into());
    }
    Ok(())
}

/// Where CHECK of a plugin with one interface in the container goes on from.
pub struct Checked {
    /// prevResult, which CHECK requires.
    pub previous: CniResult,
    /// A socket into the container's namespace.
    pub container: Netlink,
    /// The container's interface, as prevResult names it.
    pub link: Link,
    /// The interface's index in prevResult's interfaces.
    pub index: usize,
}

/// The start of CHECK for a plugin that puts one interface in the container: prevResult is
/// required, the IPAM plugin `ipam` (if any) checks its own part, and the interface
/// prevResult names is in the namespace with the MAC prevResult gives it.
pub fn check_start(
    request: &Request,
    attachment: &Attachment,
    ipam: Option<&str>,
) -> Result<Checked> {
    let previous = request
        .prev_result()?
        .ok_or(ProtocolError::MissingPrevResult)?;
    if let Some(ipam) = ipam {
        request.delegate(ipam, Command::Check)?;
    }
    let (container, link, index) = container_link(attachment, &previous)?;
    Ok(Checked {
        previous,
        container,
        link,
        index,
    })
}

/// The container side of [`check_start`]: a socket into the namespace, the link, and the
/// link's index in prevResult's interfaces.
fn container_link(attachment: &Attachment, previous: &CniResult) -> Result<(Netlink, Link, usize)> {
    let index = previous
        .interfaces
        .iter()
        .position(|i| i.name == attachment.id.ifname && !i.sandbox.is_empty())
        .ok_or_else(|| {
            Failure::Check(format!(
                "prevResult has no interface {:?} in a sandbox",
                attachment.id.ifname
            ))
        })?;
    let netns = Netns::open(attachment.required_netns()?)?;
    let mut container = Netlink::open_in(&netns)?;
    let link = container
        .link_by_name(&attachment.id.ifname)?
        .ok_or_else(|| {
            Failure::Check(format!("interface {:?} is missing", attachment.id.ifname))
        })?;
    let expected = &previous.interfaces[index].mac;
    let actual = link.mac.map(|m| m.to_string()).unwrap_or_default();
    if !expected.is_empty() && actual != *expected {
        return Err(Failure::Check(format!(
            "{} has MAC {actual}, prevResult says {expected}",
            link.name
        ))
        .into());
    }
    Ok((container, link, index))
}
