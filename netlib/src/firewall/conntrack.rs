//! Flushing UDP conntrack entries around port mappings. A UDP "flow" lives in conntrack for
//! as long as packets keep coming, so an entry made before a mapping existed (no DNAT), or
//! one still pointing at a removed container, blackholes the port (the reference's issue
//! #123 and pain point 7). There is no conntrack netlink client in the tree, so this uses
//! the `conntrack` tool, one call per UDP mapping and only where UDP mappings exist.

use std::net::IpAddr;
use std::process::{Command, Stdio};

use super::FirewallError;

/// Deletes entries matching `filter`. conntrack exits 1 when nothing matched, which is fine;
/// a missing tool is reported on stderr and skipped, as a flush is an optimisation.
fn delete(filter: &[String]) -> Result<(), FirewallError> {
    let output = Command::new("conntrack")
        .arg("-D")
        .args(filter)
        .stdin(Stdio::null())
        .output();
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("ferrocni: conntrack not installed; stale UDP flows are not flushed");
            Ok(())
        }
        Err(source) => Err(FirewallError::Spawn {
            tool: "conntrack",
            source,
        }),
        Ok(out) if out.status.success() || out.status.code() == Some(1) => Ok(()),
        Ok(out) => Err(FirewallError::Failed {
            tool: "conntrack",
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
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
