//! The bridge plugin: each container gets a veth pair whose host end is a port of a Linux
//! bridge on the host, addresses from the IPAM plugin, and optionally a gateway and
//! masquerading. The `bridge` binary runs it; the `vxlan` plugin runs it on the overlay's
//! node bridge.

use ipnetwork::IpNetwork;

use crate::config::BridgeConf;
use cni::skel::{Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Coded, ErrorCode, Failure, ProtocolError, Result, Route, ValidAttachments};
use firewall::{Backend, Entry, Feature, Firewall, Nftables};
use kernel::netlink::{Bridge, Link, LinkBuilder, MacAddr, Netlink, NetlinkError, Peer, Veth};
use kernel::netns::Netns;
use netlib::bridge;
use netlib::{attachment, iface, veth};

/// The kernel numbers bridge ports in 10 bits and answers the 1024th with a bare EXFULL,
/// which musl cannot even name.
#[derive(Debug, thiserror::Error)]
#[error("bridge {0:?} is full: a Linux bridge takes at most 1023 ports")]
pub struct BridgeFull(String);

impl Coded for BridgeFull {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// Result layout, as the reference: bridge, host veth, container veth.
const CONTAINER_INTERFACE: usize = 2;
/// How long to wait for the container's bridge port to come up before announcing anyway.
const PORT_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Points every IP at the container interface, fills in gateways when the bridge is the
/// gateway, adds default routes when asked, and returns the gateway addresses (with their
/// prefixes) the bridge must carry.
fn assign_gateways(conf: &BridgeConf, result: &mut CniResult) -> Vec<IpNetwork> {
    let mut gateways = Vec::new();
    for ip in &mut result.ips {
        ip.interface = Some(CONTAINER_INTERFACE);
        if !conf.is_gateway {
            continue;
        }
        let gateway = *ip
            .gateway
            .get_or_insert_with(|| ipam::range::default_gateway(&ip.address));
        if let Ok(network) = IpNetwork::new(gateway, ip.address.prefix()) {
            if !gateways.contains(&network) {
                gateways.push(network);
            }
        }
        let v4 = ip.address.is_ipv4();
        let has_default = result
            .routes
            .iter()
            .any(|r| r.dst.prefix() == 0 && r.dst.is_ipv4() == v4);
        if conf.is_default_gateway && !has_default {
            let any = if v4 { "0.0.0.0/0" } else { "::/0" };
            if let Ok(dst) = any.parse() {
                result.routes.push(Route::via(dst, Some(gateway)));
            }
        }
    }
    gateways
}

/// VLANs of the container's port: the default VLAN 1 goes unless preserved, then the
/// access VLAN (untagged, PVID) or the trunk (tagged).
fn configure_vlans(host: &mut Netlink, conf: &BridgeConf, port: u32) -> Result<()> {
    if !conf.vlan_filtering() {
        return Ok(());
    }
    if !conf.preserve_default_vlan {
        host.bridge_vlan_del(port, 1)?;
    }
    if conf.vlan != 0 {
        host.bridge_vlan_add(port, conf.vlan, true)?;
    }
    for &vid in &conf.vlan_trunk {
        host.bridge_vlan_add(port, vid, false)?;
    }
    Ok(())
}

/// With a VLAN the gateway cannot sit on the bridge itself: it goes on `<bridge>.<vlan>`, one
/// end of a veth pair whose other end is an access port of that VLAN (as the reference).
fn vlan_gateway_link(host: &mut Netlink, conf: &BridgeConf, bridge: &Link) -> Result<Link> {
    let name = format!("{}.{}", conf.bridge, conf.vlan);
    cni::config::validate_ifname(&name).map_err(|e| {
        ProtocolError::config("bridge", format!("gateway interface: {}", e.with_details()))
    })?;
    if let Some(existing) = host.link_by_name(&name)? {
        return Ok(existing);
    }
    let port_name = kernel::netlink::link::random_name("vgw");
    let pair = LinkBuilder::new(
        &name,
        Veth {
            peer: LinkBuilder::new(&port_name, Peer).mtu(conf.mtu),
        },
    )
    .mtu(conf.mtu);
    let gateway = match host.create_and_get(&pair) {
        Err(e) if e.already_exists() => return Ok(host.link(&name)?),
        other => other?,
    };
    let port = host.link(&port_name)?;
    host.set_master(port.index, bridge.index)?;
    if !conf.preserve_default_vlan {
        host.bridge_vlan_del(port.index, 1)?;
    }
    host.bridge_vlan_add(port.index, conf.vlan, true)?;
    host.set_link_up(port.index, true)?;
    host.set_link_up(gateway.index, true)?;
    Ok(gateway)
}

/// The MAC spoof check of the container's port on the bridge and the MAC of `ifname`, as
/// prevResult names them; none when it names neither.
fn spoofcheck_entries(conf: &BridgeConf, previous: &CniResult, ifname: &str) -> Vec<Entry> {
    let port = previous
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name != conf.bridge);
    let container = previous
        .interfaces
        .iter()
        .find(|i| !i.sandbox.is_empty() && i.name == ifname);
    let mac = container.and_then(|c| c.mac.parse::<MacAddr>().ok());
    match (port, mac) {
        (Some(port), Some(mac)) => vec![Entry::SpoofCheck {
            port: port.name.clone(),
            mac,
        }],
        _ => Vec::new(),
    }
}

pub struct BridgePlugin;

impl Plugin for BridgePlugin {
    fn about(&self) -> &'static str {
        "CNI bridge plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let conf = BridgeConf::load(request)?;
        let mac = attachment::requested_mac(request, attachment, None)?;
        let netns = Netns::open(attachment.required_netns()?)?;
        let mut host = Netlink::open()?;
        let mut container = Netlink::open_in(&netns)?;
        let mut undo = Undo::new();

        // The bridge is shared by every container on it and is never removed.
        // A bridge takes the lowest MAC of its ports unless one was set, so a MAC given at
        // creation keeps the gateway's MAC the same as containers come and go. Given there,
        // the kernel also makes it the bridge ID (STP's identity, which tools show) and
        // drops the carrier until a port forwards, so the operstate goes DOWN, then UP.
        // Setting the bridge's own MAC afterwards does neither: the ID stays zero and the
        // operstate is never computed (UNKNOWN); setting another flushes the neighbour table.
        let bridge = host.ensure_bridge(
            &LinkBuilder::new(
                &conf.bridge,
                Bridge {
                    vlan_filtering: conf.vlan_filtering(),
                },
            )
            .mtu(conf.mtu)
            .mac(MacAddr::random()),
        )?;
        if conf.promisc_mode && !bridge.promisc {
            host.set_promisc(bridge.index, true)?;
        }
        let (host_veth, container_veth) = veth::create_pair(
            &mut undo,
            &mut host,
            &mut container,
            &netns,
            &veth::PairSpec {
                ifname: &attachment.id.ifname,
                mtu: conf.mtu,
                mac,
                bridge: Some(bridge.index),
            },
        )
        .map_err(|e| match e.downcast_ref::<NetlinkError>() {
            Some(failed) if failed.errno() == Some(libc::EXFULL) => {
                BridgeFull(conf.bridge.clone()).into()
            }
            _ => e,
        })?;
        if conf.hairpin_mode || conf.port_isolation {
            host.set_bridge_port(host_veth.index, conf.hairpin_mode, conf.port_isolation)?;
        }
        configure_vlans(&mut host, &conf, host_veth.index)?;
        if conf.macspoofchk {
            let owner = &attachment.id;
            let mac = container_veth.mac.ok_or(NetlinkError::Decode {
                op: "get link",
                reason: "the container's veth has no MAC address".into(),
            })?;
            let spoofcheck = [Entry::SpoofCheck {
                port: host_veth.name.clone(),
                mac,
            }];
            Nftables.add(owner, &spoofcheck)?;
            undo.push("the MAC spoof check", move || {
                Ok(Nftables.del(owner, Feature::SpoofCheck, &spoofcheck)?)
            });
        }

        let mut result = attachment::ipam_add(request, &mut undo)?;
        let gateways = assign_gateways(&conf, &mut result);
        if !conf.disable_container_interface {
            iface::configure(
                &netns,
                &mut container,
                &container_veth,
                &result,
                CONTAINER_INTERFACE,
                conf.enable_dad,
            )?;
        }
        if conf.is_gateway && !gateways.is_empty() {
            let gateway_link = if conf.vlan != 0 {
                vlan_gateway_link(&mut host, &conf, &bridge)?
            } else {
                bridge.clone()
            };
            for gateway in &gateways {
                bridge::ensure_gateway_address(
                    &mut host,
                    gateway_link.index,
                    &gateway_link.name,
                    *gateway,
                    conf.force_address,
                )?;
            }
            bridge::enable_forwarding(&gateways)?;
        }
        if let Some(backend) = &conf.masquerade {
            attachment::masquerade(attachment, backend.firewall(), &result, &mut undo)?;
        }
        if !conf.disable_container_interface {
            // The bridge enables the port once the kernel has seen its carrier; announce then.
            host.wait_oper_up(host_veth.index, PORT_UP_LIMIT)?;
            iface::announce(
                &mut container,
                &container_veth,
                &result,
                CONTAINER_INTERFACE,
            );
        }
        let bridge = host.link(&conf.bridge)?;
        result.interfaces = vec![
            attachment::interface(&bridge, ""),
            attachment::interface(&host_veth, ""),
            attachment::interface(&container_veth, &netns.path().display().to_string()),
        ];
        attachment::apply_dns(request, &mut result);
        undo.commit();
        Ok(result)
    }

    /// Removes what ADD made; works without the namespace and without prevResult.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = BridgeConf::load(request)?;
        let masquerade = conf.masquerade.as_ref().map(Backend::firewall);
        let torn_down = attachment::teardown(request, attachment, masquerade);
        if conf.macspoofchk {
            let previous = request.prev_result().ok().flatten().unwrap_or_default();
            let known = spoofcheck_entries(&conf, &previous, &attachment.id.ifname);
            Nftables.del(&attachment.id, Feature::SpoofCheck, &known)?;
        }
        torn_down
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = BridgeConf::load(request)?;
        let attachment::Checked {
            previous,
            mut container,
            link,
            index,
        } = attachment::check_start(request, attachment, conf.ipam.as_deref())?;
        let mut host = Netlink::open()?;
        let bridge = host
            .link_by_name(&conf.bridge)?
            .filter(|l| l.kind.as_deref() == Some("bridge"))
            .ok_or_else(|| Failure::Check(format!("bridge {:?} is missing", conf.bridge)))?;
        for host_side in previous
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty() && i.name != conf.bridge)
        {
            let port = host.link_by_name(&host_side.name)?;
            if port.and_then(|p| p.master) != Some(bridge.index) {
                return Err(Failure::Check(format!(
                    "{} is not a port of {}",
                    host_side.name, conf.bridge
                ))
                .into());
            }
        }
        if !conf.disable_container_interface {
            iface::verify(&mut container, &link, &previous, index)?;
        }
        if conf.macspoofchk {
            let expected = spoofcheck_entries(&conf, &previous, &attachment.id.ifname);
            if expected.is_empty() || !Nftables.check(&attachment.id, &expected)? {
                let port = match expected.first() {
                    Some(Entry::SpoofCheck { port, .. }) => port.as_str(),
                    _ => "",
                };
                return Err(
                    Failure::Check(format!("MAC spoof check on {port:?} is missing")).into(),
                );
            }
        }
        if let Some(backend) = &conf.masquerade {
            let addresses: Vec<IpNetwork> = previous.ips.iter().map(|ip| ip.address).collect();
            attachment::check_masquerade(attachment, backend.firewall(), &addresses)?;
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let conf = BridgeConf::load(request)?;
        let masquerade = conf.masquerade.as_ref().map(Backend::firewall);
        let collected = attachment::collect(request, valid, masquerade);
        if conf.macspoofchk {
            Nftables.gc(Feature::SpoofCheck, valid)?;
        }
        collected
    }

    fn status(&self, request: &Request) -> Result<()> {
        attachment::status(request)
    }
}
