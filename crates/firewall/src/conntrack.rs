//! Flushing UDP conntrack entries around port mappings. A UDP "flow" lives in conntrack for
//! as long as packets keep coming, so an entry made before a mapping existed (no DNAT), or
//! one still pointing at a removed container, blackholes the port (the reference's issue
//! #123 and pain point 7). There is no conntrack netlink client in the tree, so this uses
//! the `conntrack` tool, one call per UDP mapping and only where UDP mappings exist.

use std::net::IpAddr;

use super::FirewallError;
use kernel::tool::{self, ToolError};

/// Deletes entries matching `filter`. conntrack exits 1 when nothing matched, which is fine;
/// a missing tool is reported on stderr and skipped, as a flush is an optimisation.
fn delete(filter: &[String]) -> Result<(), FirewallError> {
    let mut args = vec!["-D"];
    args.extend(filter.iter().map(String::as_str));
    match tool::run("conntrack", &args, None) {
        Err(e) if e.is_missing() => {
            eprintln!("ferrocni: conntrack not installed; stale UDP flows are not flushed");
            Ok(())
        }
        Err(ToolError::Failed { code: Some(1), .. }) => Ok(()),
        other => Ok(other.map(drop)?),
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    }
}

/// After ADD: UDP flows to the host port that predate the mapping.
pub fn flush_udp_to_host_port(port: u16, host_ip: Option<IpAddr>) -> Result<(), FirewallError> {
    let mut filter: Vec<String> = ["-p", "udp", "--orig-port-dst"].map(String::from).to_vec();
    filter.push(port.to_string());
    if let Some(ip) = host_ip {
        filter.extend([
            "-f".to_string(),
            family(ip).to_string(),
            "--orig-dst".to_string(),
            ip.to_string(),
        ]);
    }
    delete(&filter)
}

/// After DEL: UDP flows still DNATed to the removed container's port.
pub fn flush_udp_to_container(ip: IpAddr, port: u16) -> Result<(), FirewallError> {
    let filter = [
        "-f".to_string(),
        family(ip).to_string(),
        "-p".to_string(),
        "udp".to_string(),
        "--reply-src".to_string(),
        ip.to_string(),
        "--reply-port-src".to_string(),
        port.to_string(),
    ];
    delete(&filter)
}
