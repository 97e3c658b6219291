//! dnsname: containers on a network find each other by name. A chained meta plugin,
//! config-compatible with containers/dnsname: ADD registers the container's addresses (from
//! prevResult) under its name and aliases and puts the network's DNS server into the
//! result; DEL unregisters; CHECK asks the server for the name; GC drops the names of
//! attachments no longer listed; STATUS says whether the server answers.
//!
//! The server (`ferrocni-dns`, one per network, found on `CNI_PATH`) is started by the
//! first ADD and stops when the last container leaves. The plugin links no DNS code: it
//! writes a file and asks the server over a unix socket to take it, and returns once the
//! server has, so the name resolves as soon as ADD returns.

mod conf;
mod server;

use cni::skel::{self, Attachment, Plugin, Request};
use cni::{invoke, CniResult, Failure, ProtocolError, Result, ValidAttachments};
use names::control::{self, ControlError, Reply, Request as Control};
use names::{Registration, SERVER_BINARY};
use netlib::state::StateError;

use conf::Conf;

/// The network's directory, opened and locked: every change to its names happens under
/// the lock.
struct Locked {
    open: names::OpenDir,
    _lock: kernel::lock::FileLock,
}

fn dir_error(conf: &Conf) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: conf.dir.path().to_path_buf(),
        source,
    }
}

impl Conf {
    /// The directory made if missing, opened and locked.
    fn lock_creating(&self) -> Result<Locked> {
        self.dir.create().map_err(dir_error(self))?;
        self.lock_existing()?
            .ok_or_else(|| dir_error(self)(std::io::ErrorKind::NotFound.into()).into())
    }

    /// The directory opened and locked, if it exists.
    fn lock_existing(&self) -> Result<Option<Locked>> {
        let Some(open) = self.dir.open().map_err(dir_error(self))? else {
            return Ok(None);
        };
        let lock = open.lock().map_err(dir_error(self))?;
        Ok(Some(Locked { open, _lock: lock }))
    }
}

struct DnsName;

impl Plugin for DnsName {
    fn about(&self) -> &'static str {
        "CNI dnsname plugin (ferrocni): containers resolve each other by name"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        let conf = Conf::load(request)?;
        let mut result = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let entry = conf.entry(attachment, &result)?;
        let listen = conf::listen_addresses(&result)?;
        let binary = invoke::find(SERVER_BINARY, &request.cni_path)?;
        let locked = conf.lock_creating()?;
        let mut config = conf.server(listen.clone());
        // A running server keeps the addresses it listens on: a network given a new gateway
        // adds one, and none goes while containers may still use it.
        let saved = conf.dir.config()?;
        for address in saved.iter().flat_map(|s| &s.listen) {
            if !config.listen.contains(address) {
                config.listen.push(*address);
            }
        }
        if saved.as_ref() != Some(&config) {
            conf.dir.save_config(&config)?;
        }
        let names = conf.dir.registrations();
        names.save(&attachment.id, &Registration::new(&attachment.id, entry))?;
        let sync = Control::Sync(attachment.id.clone());
        if let Err(failure) = server::apply(&conf.dir, &locked.open, &sync, &binary) {
            // Nothing of this ADD stays: no name that no server answers for.
            let _ = names.remove(&attachment.id);
            let _ = server::tell(&conf.dir, &locked.open, &sync);
            return Err(failure);
        }
        let nameservers: Vec<String> = listen.iter().map(ToString::to_string).collect();
        result.dns.nameservers.retain(|n| !nameservers.contains(n));
        result.dns.nameservers.splice(0..0, nameservers);
        if !conf.domain.is_empty() && !result.dns.search.contains(&conf.domain) {
            result.dns.search.push(conf.domain.clone());
        }
        Ok(result)
    }

    /// Needs no prevResult: the registration is found by the attachment.
    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        let Some(locked) = conf.lock_existing()? else {
            return Ok(());
        };
        conf.dir.registrations().remove(&attachment.id)?;
        let sync = Control::Sync(attachment.id.clone());
        server::tell(&conf.dir, &locked.open, &sync)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        let conf = Conf::load(request)?;
        let previous = request
            .prev_result()?
            .ok_or(ProtocolError::MissingPrevResult)?;
        let expected = conf.entry(attachment, &previous)?;
        let check = |what: String| -> Result<()> { Err(Failure::Check(what).into()) };
        let Some(locked) = conf.lock_existing()? else {
            return check(format!("no names are registered in {:?}", conf.dir.path()));
        };
        let recorded: Option<Registration> = conf.dir.registrations().load(&attachment.id)?;
        match recorded {
            None => return check(format!("{} is not registered", attachment.id)),
            Some(found) if found.entry != expected => {
                return check(format!(
                    "{} is registered as {:?}, not as {:?}",
                    attachment.id, found.entry, expected
                ))
            }
            Some(_) => {}
        }
        let Some(name) = expected.names().find(|n| !n.is_empty()) else {
            return match control::call(&locked.open, &Control::Ping) {
                Ok(_) => Ok(()),
                Err(e) => check(format!("the network's DNS server: {e}")),
            };
        };
        match control::call(&locked.open, &Control::Lookup(name.to_string())) {
            Ok(Reply::Addresses(answered))
                if expected.addresses.iter().all(|a| answered.contains(a)) =>
            {
                Ok(())
            }
            Ok(reply) => check(format!(
                "the DNS server answers {name:?} with {}, not with {:?}",
                reply.line(),
                expected.addresses
            )),
            Err(e) => check(format!("the network's DNS server: {e}")),
        }
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let conf = Conf::load(request)?;
        let Some(locked) = conf.lock_existing()? else {
            return Ok(());
        };
        let names = conf.dir.registrations();
        let stale = names.stale(valid);
        if stale.is_empty() {
            return Ok(());
        }
        for id in &stale {
            names.remove(id)?;
        }
        server::tell(&conf.dir, &locked.open, &Control::Reload)
    }

    /// Ready when the server can be started, and answers if it runs.
    fn status(&self, request: &Request) -> Result<()> {
        let conf = Conf::load(request)?;
        invoke::find(SERVER_BINARY, &request.cni_path)
            .map_err(|e| Failure::Unavailable(format!("the DNS server cannot be started: {e}")))?;
        let Some(open) = conf.dir.open().map_err(dir_error(&conf))? else {
            return Ok(());
        };
        match control::call(&open, &Control::Ping) {
            Ok(_) | Err(ControlError::NotRunning) => Ok(()),
            Err(e) => Err(Failure::Unavailable(format!("the network's DNS server: {e}")).into()),
        }
    }
}

/// A process that lives milliseconds never needs to free (see `kernel::arena`).
#[global_allocator]
static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;

fn main() {
    skel::run(&DnsName)
}
