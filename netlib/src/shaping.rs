//! Rate limits with token bucket filters, as the reference's bandwidth plugin sets them:
//! traffic to the container is shaped on the host veth's egress; traffic from it is
//! redirected from the host veth's ingress to an ifb device and shaped there.
//!
//! netlink-packet-route has no TBF qdisc, so the qdiscs and the redirect filter are written
//! with one `tc -batch` process for the whole set.

use std::io::Write;
use std::process::{Command, Stdio};

/// The reference's fixed queueing latency, from which tc derives the queue limit.
const LATENCY: &str = "25ms";

#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    #[error("cannot run tc")]
    Spawn(#[source] std::io::Error),
    #[error("tc failed: {0}")]
    Failed(String),
}

/// A rate in bits per second and a burst in bits, as the config gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: u64,
    pub burst: u64,
}

impl Limit {
    fn tbf(&self) -> String {
        let burst_bytes = (self.burst / 8).max(1);
        format!(
            "tbf rate {}bit burst {burst_bytes}b latency {LATENCY}",
            self.rate
        )
    }
}

fn batch(commands: &str, force: bool) -> Result<(), ShapingError> {
    let mut args = vec!["-batch", "-"];
    if force {
        args.insert(0, "-force");
    }
    let mut child = Command::new("tc")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ShapingError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .map_err(ShapingError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(ShapingError::Spawn)?;
    if !output.status.success() && !force {
        return Err(ShapingError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Shapes traffic into the container on `host_veth` (`ingress`), and out of it through
/// `ifb` (`egress`), in one batch. Everything is replaced, with the filter's priority and
/// handle fixed, so a repeated ADD (a runtime's retry) ends with one set and not two.
pub fn apply(
    host_veth: &str,
    ingress: Option<Limit>,
    egress: Option<(Limit, &str)>,
) -> Result<(), ShapingError> {
    let mut commands = String::new();
    if let Some(limit) = ingress {
        commands.push_str(&format!(
            "qdisc replace dev {host_veth} root handle 1: {}\n",
            limit.tbf()
        ));
    }
    if let Some((limit, ifb)) = egress {
        commands.push_str(&format!(
            "qdisc replace dev {host_veth} handle ffff: ingress\n\
             filter replace dev {host_veth} parent ffff: protocol all pref 1 handle 800::1 u32 match u32 0 0 action mirred egress redirect dev {ifb}\n\
             qdisc replace dev {ifb} root handle 1: {}\n",
            limit.tbf()
        ));
    }
    batch(&commands, false)
}

/// Removes what [`apply`] put on `host_veth` (the ifb goes with its device); what is not
/// there is skipped.
pub fn clear(host_veth: &str) -> Result<(), ShapingError> {
    batch(
        &format!("qdisc del dev {host_veth} root\nqdisc del dev {host_veth} ingress\n"),
        true,
    )
}

/// The TBF rate (bits/s) at the root of `device`, if there is one.
pub fn root_rate(device: &str) -> Result<Option<u64>, ShapingError> {
    let output = Command::new("tc")
        .args(["-j", "qdisc", "show", "dev", device])
        .output()
        .map_err(ShapingError::Spawn)?;
    let qdiscs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    Ok(qdiscs.as_array().into_iter().flatten().find_map(|q| {
        (q["kind"] == "tbf" && q["root"] == true)
            .then(|| q["options"]["rate"].as_u64().map(|bytes| bytes * 8))
            .flatten()
    }))
}
