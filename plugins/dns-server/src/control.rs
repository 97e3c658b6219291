//! The server's names, kept in step with the network's directory: every local
//! registration, the remote names the agent left, the config. A request on the control
//! socket names what changed; the table queries read is rebuilt and swapped in before the
//! reply goes out, so a name is answered for as soon as the plugin's ADD returns.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use cni::AttachmentId;
use names::control::{Reply, Request, LINE_MAX};
use names::{Entry, NetworkDir, OpenDir, Registration, RemoteFile, ServerConfig};

use crate::table::{Lookup, Table};
use crate::{listen, log, Shared};

/// How long a control client may take to send its line.
const REQUEST_LIMIT: Duration = Duration::from_secs(2);

pub struct Names {
    dir: NetworkDir,
    config: ServerConfig,
    /// Local registrations by attachment.
    local: BTreeMap<String, Entry>,
    remote: RemoteFile,
    /// The addresses served so far; a new config may add some, never take any away.
    listening: Vec<IpAddr>,
}

fn describe(error: impl std::error::Error) -> String {
    cni::error::causes(&error)
}

impl Names {
    /// Everything in `dir`. A registration that cannot be read is set aside (see
    /// `netlib::state::read_record`) and logged; the rest are served.
    pub fn load(dir: NetworkDir) -> Result<Names, String> {
        let config = read_config(&dir)?;
        let mut names = Names {
            dir,
            config,
            local: BTreeMap::new(),
            remote: RemoteFile::default(),
            listening: Vec::new(),
        };
        names.read_all()?;
        Ok(names)
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn read_all(&mut self) -> Result<(), String> {
        let store = self.dir.registrations();
        self.local.clear();
        for id in store.ids() {
            match store.load::<Registration>(&id) {
                Ok(Some(found)) => {
                    self.local.insert(found.attachment, found.entry);
                }
                Ok(None) => {}
                Err(e) => log(&describe(e)),
            }
        }
        self.remote = match self.dir.remote() {
            Ok(remote) => remote,
            Err(e) => {
                log(&describe(e));
                RemoteFile::default()
            }
        };
        Ok(())
    }

    /// One registration read again, and the table changed by what changed in it.
    fn sync(&mut self, id: &AttachmentId, shared: &Shared) -> Result<(), String> {
        let found: Option<Registration> = self.dir.registrations().load(id).map_err(describe)?;
        let before = match found {
            Some(registration) => self.local.insert(id.to_string(), registration.entry),
            None => self.local.remove(&id.to_string()),
        };
        let mut table = shared.table_mut();
        if let Some(before) = &before {
            table.remove(before);
        }
        if let Some(now) = self.local.get(&id.to_string()) {
            table.insert(now);
        }
        Ok(())
    }

    pub fn table(&self) -> Table {
        let remote = self.remote.names.iter().map(|r| &r.entry);
        Table::build(&self.config.domain, self.local.values().chain(remote))
    }

    /// Serves every configured address not served yet.
    pub fn listen(&mut self, shared: &Arc<Shared>) -> Result<(), String> {
        for address in self.config.listen.clone() {
            if self.listening.contains(&address) {
                continue;
            }
            listen::serve(address, shared)
                .map_err(|e| format!("cannot serve DNS on {address}:53: {e}"))?;
            self.listening.push(address);
        }
        shared
            .forwarder
            .configure(self.config.upstreams.clone(), self.listening.clone());
        Ok(())
    }

    fn handle(&mut self, request: &Request, shared: &Arc<Shared>) -> Reply {
        let done = match request {
            Request::Sync(id) => self.sync(id, shared).and_then(|()| self.configure(shared)),
            Request::Reload => self.read_all().and_then(|()| {
                self.configure(shared)?;
                *shared.table_mut() = self.table();
                Ok(())
            }),
            Request::Lookup(name) => {
                return match shared.table().lookup(name) {
                    Lookup::Found(addresses) => Reply::Addresses(addresses),
                    _ => Reply::Addresses(Vec::new()),
                }
            }
            Request::Ping => return self.serving(),
        };
        match done {
            Ok(()) => self.serving(),
            Err(reason) => Reply::Failed(reason),
        }
    }

    /// The config read again: new addresses served, and the table rebuilt if the domain
    /// changed.
    fn configure(&mut self, shared: &Arc<Shared>) -> Result<(), String> {
        let config = read_config(&self.dir)?;
        if config == self.config {
            return Ok(());
        }
        let domain_changed = config.domain != self.config.domain;
        self.config = config;
        if domain_changed {
            *shared.table_mut() = self.table();
        }
        self.listen(shared)
    }

    fn serving(&self) -> Reply {
        if self.local.is_empty() && !self.config.keep {
            Reply::Stopping
        } else {
            Reply::Serving {
                local: self.local.len(),
            }
        }
    }
}

fn read_config(dir: &NetworkDir) -> Result<ServerConfig, String> {
    dir.config()
        .map_err(describe)?
        .ok_or_else(|| format!("no server config in {:?}", dir.path()))
}

/// The control socket, made afresh (a dead server's file may be in its place), mode 0600.
pub fn bind(open: &OpenDir) -> std::io::Result<UnixListener> {
    let path = open.control_socket();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers control requests one at a time until one leaves nothing to serve; then removes
/// the socket and returns (the server exits).
pub fn serve(listener: &UnixListener, open: &OpenDir, names: &mut Names, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            continue;
        };
        let reply = match read_request(&stream) {
            Ok(request) => names.handle(&request, shared),
            Err(reason) => Reply::Failed(reason),
        };
        if reply == Reply::Stopping {
            // No client may reach this server once the reply is out: the next ADD starts a
            // new one.
            let _ = std::fs::remove_file(open.control_socket());
        }
        let _ = stream.write_all(format!("{}\n", reply.line()).as_bytes());
        if reply == Reply::Stopping {
            log("no container is left on the network: stopping");
            return;
        }
    }
}

fn read_request(stream: &UnixStream) -> Result<Request, String> {
    stream
        .set_read_timeout(Some(REQUEST_LIMIT))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .take(LINE_MAX as u64)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    Request::parse(line.trim_end_matches('\n'))
}
