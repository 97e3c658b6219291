//! ptp: a veth pair per container and no bridge. The host end carries the gateway address
//! (/32 or /128) and a host route to the container; the container reaches its whole subnet
//! through the gateway, so containers talk to each other only through the host's routing.

use cni::skel::{self, Attachment, Plugin, Request};
use cni::undo::Undo;
use cni::{CniResult, Failure, ProtocolError, Result, ValidAttachments};
use firewall::Backend;
use ipnetwork::IpNetwork;
use kernel::netlink::{Netlink, RouteSpec, SCOPE_LINK};
use kernel::netns::Netns;
use netlib::{attachment, bridge, iface, veth};
use serde::Deserialize;

/// Result layout, as the reference: host veth, container veth.
const CONTAINER_INTERFACE: usize = 1;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PtpConf {
    #[serde(rename = "ipMasq")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    mtu: Option<u32>,
}

impl PtpConf {
    fn load(request: &Request) -> Result<(PtpConf, String, Option<Backend>)> {
        let mut conf: PtpConf = request.plugin_config()?;
        let ipam = attachment::ipam_type(request)
            .ok_or_else(|| ProtocolError::config("ipam", "ptp needs an IPAM plugin"))?
            .to_string();
        conf.mtu = cni::config::link_mtu("mtu", conf.mtu)?;
        let masquerade = match conf.ip_masq {
            true => Some(Backend::select(conf.ip_masq_backend.as_deref())?),
            false => None,
        };
        Ok((conf, ipam, masquerade))
    }
}

fn host_prefix(address: &IpNetwork) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

/// Container routes: the gateway on-link, and the subnet through the gateway instead of
/// on-link, so even same-subnet traffic goes to the host.
fn route_through_gateway(
    container: &mut Netlink,
    link: u32,
    address: IpNetwork,
    gateway: std::net::IpAddr,
) -> Result<()> {
    let gateway_host = IpNetwork::new(gateway, host_prefix(&address))
        .map_err(|e| ProtocolError::config("ipam", e.to_string()))?;
    let subnet = IpNetwork::new(address.network(), address.prefix())
        .map_err(|e| ProtocolError::config("ipam", e.to_string()))?;
    container.add_route(&RouteSpec {
        dst: Some(gateway_host),
        oif: Some(link),
        scope: Some(SCOPE_LINK),
        source: Some(address.ip()),
        ..RouteSpec::default()
    })?;
    container.delete_route(&RouteSpec {
        dst: Some(subnet),
        oif: Some(link),
        ..RouteSpec::default()
    })?;
    match container.add_route(&RouteSpec {
        dst: Some(subnet),
        gateway: Some(gateway),
        oif: Some(link),
        source: Some(address.ip()),
        ..RouteSpec::default()
    }) {
        Err(e) if e.already_exists() => Ok(()),
        other => Ok(other?),
    }
}

struct Ptp;

impl Plugin for Ptp {
    fn about(&self) -> &'static str {
        "CNI ptp plugin (ferrocni)"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let (conf, _, masquerade) = PtpConf::load(request)?;
        let netns = Netns::open(attachment.required_netns()?)?;
        let mut host = Netlink::open()?;
        let mut container = Netlink::open_in(&netns)?;
        let mut undo = Undo::new();

        let (host_veth, container_veth) = veth::create_pair(
            &mut undo,
            &mut host,
            &mut container,
            &netns,
            &veth::PairSpec {
                ifname: &attachment.id.ifname,
                mtu: conf.mtu,
                mac: None,
                bridge: None,
            },
        )?;
        let mut result = attachment::ipam_add(request, &mut undo)?;

        let mut gateways = Vec::new();
        for ip in &mut result.ips {
            ip.interface = Some(CONTAINER_INTERFACE);
            let gateway = *ip
                .gateway
                .get_or_insert_with(|| ipam::range::default_gateway(&ip.address));
            gateways.push((ip.address, gateway));
        }
        iface::configure(
            &netns,
            &mut container,
            &container_veth,
            &result,
            CONTAINER_INTERFACE,
            false,
        )?;
        for &(address, gateway) in &gateways {
            route_through_gateway(&mut container, container_veth.index, address, gateway)?;
        }

        iface::disable_dad(&host_veth.name)?;
        host.set_link_up(host_veth.index, true)?;
        let mut gateway_hosts = Vec::new();
        for &(address, gateway) in &gateways {
            let gateway_host = IpNetwork::new(gateway, host_prefix(&address))
                .map_err(|e| ProtocolError::config("ipam", e.to_string()))?;
            match host.add_address(host_veth.index, gateway_host, true) {
                Err(e) if e.already_exists() => {}
                other => other?,
            }
            host.add_route(&RouteSpec {
                dst: IpNetwork::new(address.ip(), host_prefix(&address)).ok(),
                oif: Some(host_veth.index),
                scope: Some(SCOPE_LINK),
                ..RouteSpec::default()
            })?;
            gateway_hosts.push(gateway_host);
        }
        bridge::enable_forwarding(&gateway_hosts)?;
        iface::await_solicited_node_groups(host_veth.index, &gateway_hosts)?;
        iface::announce(
            &mut container,
            &container_veth,
            &result,
            CONTAINER_INTERFACE,
        );
        if let Some(backend) = &masquerade {
            attachment::masquerade(attachment, backend.firewall(), &result, &mut undo)?;
        }
        result.interfaces = vec![
            attachment::interface(&host_veth, ""),
            attachment::interface(&container_veth, &netns.path().display().to_string()),
        ];
        attachment::apply_dns(request, &mut result);
        undo.commit();
        Ok(result)
    }

    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let (_, _, masquerade) = PtpConf::load(request)?;
        attachment::teardown(
            request,
            attachment,
            masquerade.as_ref().map(Backend::firewall),
        )
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let (_, ipam, masquerade) = PtpConf::load(request)?;
        let attachment::Checked {
            previous,
            mut container,
            link,
            index,
        } = attachment::check_start(request, attachment, Some(&ipam))?;
        iface::verify(&mut container, &link, &previous, index)?;
        let host_side = previous
            .interfaces
            .iter()
            .find(|i| i.sandbox.is_empty())
            .ok_or_else(|| Failure::Check("prevResult has no host-side interface".to_string()))?;
        if Netlink::open()?.link_by_name(&host_side.name)?.is_none() {
            return Err(
                Failure::Check(format!("host interface {} is missing", host_side.name)).into(),
            );
        }
        if let Some(backend) = &masquerade {
            let addresses: Vec<IpNetwork> = previous.ips.iter().map(|ip| ip.address).collect();
            attachment::check_masquerade(attachment, backend.firewall(), &addresses)?;
        }
        Ok(())
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let (_, _, masquerade) = PtpConf::load(request)?;
        attachment::collect(request, valid, masquerade.as_ref().map(Backend::firewall))
    }

    fn status(&self, request: &Request) -> Result<()> {
        attachment::status(request)
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run_with(&Ptp, &[ipam::HOST_LOCAL, ipam::STATIC])
}
