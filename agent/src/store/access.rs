//! How the agent reaches etcd: endpoints, TLS files and a user, read into a client's options.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::{StoreError, CALL_LIMIT};

/// How to reach etcd and prove who this agent is, as flannel's `--etcd-*` flags say it.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<(String, String)>,
}

impl Access {
    /// The options for a client, the files read now: certificates renewed on disk are used
    /// from the next connection on.
    pub fn options(&self) -> Result<ConnectOptions, StoreError> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                StoreError::Config(format!("cannot read {flag} {}: {e}", path.display()))
            })
        };
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        let tls_files =
            self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if tls_files && self.endpoints.iter().any(|e| !e.starts_with("https://")) {
            return Err(StoreError::Config(
                "--etcd-cafile, --etcd-certfile and --etcd-keyfile need https:// endpoints in --etcd-endpoints".into(),
            ));
        }
        // HTTP/2 pings find a connection that went silent (etcd frozen, a path dropped) in
        // seconds, where TCP alone could wait for minutes.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(CALL_LIMIT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if https {
            let ca = self.ca_file.as_ref().ok_or_else(|| {
                StoreError::Config(
                    "https:// endpoints need --etcd-cafile: the CA that signed etcd's certificate"
                        .into(),
                )
            })?;
            let mut tls =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read("--etcd-cafile", ca)?));
            match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read("--etcd-certfile", cert)?,
                        read("--etcd-keyfile", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Config(
                        "--etcd-certfile and --etcd-keyfile go together".into(),
                    ))
                }
            }
            options = options.with_tls(tls);
        }
        if let Some((name, password)) = &self.user {
            // Tokens expire (etcd's --auth-token-ttl, 5 min): renew them, not fail on them.
            options = options
                .with_user(name, password)
                .with_auto_token_refresh(true);
        }
        Ok(options)
    }
}
