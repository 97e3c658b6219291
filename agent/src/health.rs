//! `/healthz`, `/readyz` and Prometheus `/metrics` on a local address.
//!
//! A minimal HTTP/1.x responder on tokio rather than a server crate: three fixed GET routes,
//! one short response each, the connection closed after it. hyper is in the tree (under
//! tonic) but only its client side; its server, a router and a metrics crate would add more
//! code than this whole module for nothing these routes use.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnetwork::Ipv4Network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// Upper bounds (seconds) of the reconcile duration histogram: a pass is a netlink dump and
/// a few changes, milliseconds; the top buckets catch a kernel that stalls.
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
/// A client gets this long to send its request line and headers.
const REQUEST_LIMIT: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed at once (a local endpoint, but bounded).
const CONNECTION_LIMIT: usize = 16;

/// What the agent reports about itself.
#[derive(Debug, Default)]
pub struct Status {
    /// The liveness lease's TTL: a renewal older than this no longer holds.
    pub lease_ttl: Duration,
    /// When etcd (or static mode) last confirmed the node's lease.
    pub renewed: Option<Instant>,
    pub subnet: Option<Ipv4Network>,
    /// The last reconciliation left the kernel as the leases say (no failed operation).
    pub programmed: bool,
    pub peers_programmed: usize,
    pub reconciles: u64,
    pub reconcile_buckets: [u64; BUCKETS.len()],
    pub reconcile_seconds: f64,
    pub kernel_errors: u64,
    pub etcd_errors: u64,
    pub reasserts: u64,
}

impl Status {
    fn leased(&self, now: Instant) -> bool {
        self.renewed
            .is_some_and(|at| now.duration_since(at) < self.lease_ttl)
    }

    /// Why the node is not ready, or `None` when it is.
    pub fn unready(&self, now: Instant) -> Option<String> {
        let mut reasons = Vec::new();
        if !self.leased(now) {
            reasons.push(match self.renewed {
                None => "no lease yet".to_string(),
                Some(at) => format!(
                    "the lease was last renewed {:.0} s ago (TTL {} s)",
                    now.duration_since(at).as_secs_f64(),
                    self.lease_ttl.as_secs()
                ),
            });
        }
        if !self.programmed {
            reasons.push("the kernel is not programmed as the leases say".to_string());
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    pub fn record_reconcile(&mut self, took: Duration, peers: usize, failures: usize) {
        let seconds = took.as_secs_f64();
        self.reconciles += 1;
        self.reconcile_seconds += seconds;
        for (count, bound) in self.reconcile_buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        self.peers_programmed = peers;
        self.kernel_errors += failures as u64;
        self.programmed = failures == 0;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn metrics(&self, now: Instant) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let age = self
            .renewed
            .map_or(f64::NAN, |at| now.duration_since(at).as_secs_f64());
        metric(
            "ferrocni_agent_lease_age_seconds",
            "gauge",
            "Seconds since etcd last confirmed this node's liveness lease (NaN: never).",
            format!("{age}"),
        );
        metric(
            "ferrocni_agent_lease_ttl_seconds",
            "gauge",
            "The liveness lease's TTL: peers drop this node when the lease age passes it.",
            self.lease_ttl.as_secs().to_string(),
        );
        metric(
            "ferrocni_agent_ready",
            "gauge",
            "1 when leased and programmed (as /readyz), else 0.",
            u8::from(self.unready(now).is_none()).to_string(),
        );
        metric(
            "ferrocni_agent_peers_programmed",
            "gauge",
            "Remote nodes the kernel routes to after the last reconciliation.",
            self.peers_programmed.to_string(),
        );
        metric(
            "ferrocni_agent_kernel_errors_total",
            "counter",
            "Kernel operations of reconciliations that failed (each is retried).",
            self.kernel_errors.to_string(),
        );
        metric(
            "ferrocni_agent_etcd_errors_total",
            "counter",
            "Sessions with etcd that failed: unreachable, a call timed out, the watch ended.",
            self.etcd_errors.to_string(),
        );
        metric(
            "ferrocni_agent_reasserts_total",
            "counter",
            "Times the node's records were re-asserted after a lease was lost or a record deleted or rewritten by someone else.",
            self.reasserts.to_string(),
        );
        let name = "ferrocni_agent_reconcile_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Reconciliations of the kernel with the leases, and their duration.\n# TYPE {name} histogram"
        );
        for (count, bound) in self.reconcile_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.reconciles, self.reconcile_seconds, self.reconciles
        );
        out
    }
}

/// The status, shared between the agent's loop and the responder.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Status>>);

impl Shared {
    /// The status to read or update. A holder that panicked left numbers, not broken
    /// invariants: keep serving them.
    pub fn lock(&self) -> MutexGuard<'_, Status> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves until the runtime stops.
pub async fn serve(listener: TcpListener, status: Shared) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if open.fetch_add(1, Ordering::Relaxed) >= CONNECTION_LIMIT {
            open.fetch_sub(1, Ordering::Relaxed);
            debug!("closing a connection from {peer}: {CONNECTION_LIMIT} already open");
            continue;
        }
        let (status, open) = (status.clone(), open.clone());
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &status).await {
                debug!("health endpoint, client {peer}: {e}");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn respond(mut stream: TcpStream, status: &Shared) -> std::io::Result<()> {
    // A client too slow to send its request is dropped without an answer.
    let Ok(request) = tokio::time::timeout(REQUEST_LIMIT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let response = answer(&request?, status);
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request line and headers (the routes take no body), at most 8 KiB of them.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    Ok(request)
}

/// The whole response to one request.
fn answer(request: &[u8], status: &Shared) -> String {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or(path);
    let now = Instant::now();
    let (code, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET" | "HEAD", "/readyz") => match status.lock().unready(now) {
            None => (200, "text/plain", "ready\n".to_string()),
            Some(reasons) => (503, "text/plain", format!("not ready: {reasons}\n")),
        },
        ("GET" | "HEAD", "/metrics") => {
            (200, "text/plain; version=0.0.4", status.lock().metrics(now))
        }
        ("GET" | "HEAD", _) => (
            404,
            "text/plain",
            "not found: /healthz, /readyz, /metrics\n".to_string(),
        ),
        _ => (405, "text/plain", "only GET and HEAD\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(status: Status) -> Shared {
        Shared(Arc::new(Mutex::new(status)))
    }

    #[test]
    fn ready_only_when_leased_and_programmed() {
        let now = Instant::now();
        let mut status = Status {
            lease_ttl: Duration::from_secs(20),
            ..Status::default()
        };
        let reasons = status.unready(now).expect("not ready");
        assert!(
            reasons.contains("no lease") && reasons.contains("not programmed"),
            "{reasons}"
        );
        status.renewed = Some(now);
        status.record_reconcile(Duration::from_millis(2), 3, 0);
        assert_eq!(status.unready(now), None);
        let later = now + Duration::from_secs(21);
        assert!(status.unready(later).expect("expired").contains("21 s ago"));
        status.record_reconcile(Duration::from_millis(2), 3, 1);
        assert!(status.unready(now).expect("failed").contains("programmed"));
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let now = Instant::now();
        let mut status = Status {
            lease_ttl: Duration::from_secs(20),
            renewed: Some(now),
            etcd_errors: 2,
            reasserts: 1,
            ..Status::default()
        };
        status.record_reconcile(Duration::from_millis(3), 4, 0);
        status.record_reconcile(Duration::from_millis(70), 4, 0);
        let text = status.metrics(now);
        for line in [
            "ferrocni_agent_lease_age_seconds 0",
            "ferrocni_agent_peers_programmed 4",
            "ferrocni_agent_etcd_errors_total 2",
            "ferrocni_agent_reasserts_total 1",
            "ferrocni_agent_ready 1",
            "ferrocni_agent_reconcile_duration_seconds_bucket{le=\"0.005\"} 1",
            "ferrocni_agent_reconcile_duration_seconds_bucket{le=\"0.1\"} 2",
            "ferrocni_agent_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2",
            "ferrocni_agent_reconcile_duration_seconds_count 2",
            "# TYPE ferrocni_agent_reconcile_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Every sample line is `name value` or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("two fields");
            assert!(name.starts_with("ferrocni_agent_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn routes_answer_by_method_and_path() {
        let status = shared(Status::default());
        let get = |path: &str| answer(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(), &status);
        assert!(get("/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
        let ready = get("/readyz");
        assert!(ready.starts_with("HTTP/1.1 503 "), "{ready}");
        assert!(ready.ends_with(
            "not ready: no lease yet; the kernel is not programmed as the leases say\n"
        ));
        assert!(get("/metrics?x=1").contains("ferrocni_agent_ready 0"));
        assert!(get("/nothing").starts_with("HTTP/1.1 404 "));
        let post = answer(b"POST /readyz HTTP/1.1\r\n\r\n", &status);
        assert!(post.starts_with("HTTP/1.1 405 "));
        let head = answer(b"HEAD /healthz HTTP/1.1\r\n\r\n", &status);
        assert!(
            head.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        assert!(answer(b"", &status).starts_with("HTTP/1.1 405 "));
    }
}
