//! `dhcp daemon`: holds each container interface's lease, renews it in the background and
//! gives it back on DEL. A plugin process lives milliseconds; a lease lives for hours, so
//! someone has to stay.
//!
//! Leases are also written under `-leasedir`, so a restarted daemon (an upgrade, a crash)
//! takes up renewing them where its predecessor stopped. The reference's forgets them: its
//! containers keep addresses that nobody renews, which the server then hands out again.

mod listener;
mod settings;
mod slots;

pub use settings::DEFAULT_SOCKET;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::dhcp4::{Client, ClientOptions, DhcpError, Patience};
use cni::error::causes;
use cni::{AttachmentId, CniError, CniResult, Coded, ErrorCode};
use kernel::netns::Netns;
use netlib::state::Store;

use crate::protocol::{self, Reply, Request};
use settings::Settings;
use slots::{Leased, Slots, Taken};

/// Logs a line to stderr. eprintln! panics when stderr is gone (a journald restart closes
/// the pipe), and a keeper that panics stops renewing its lease.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "dhcp daemon: {}", format_args!($($arg)*));
    }};
}

// After `log!`, which they use.
mod held;
mod keeper;

use held::{container_gone, prepare_link, Held, Record, Stop};

/// A plugin that connects and says nothing is not waited for longer than this.
const REQUEST_READ_LIMIT: Duration = Duration::from_secs(10);
/// Requests are a few hundred bytes.
const REQUEST_SIZE_LIMIT: u64 = 64 * 1024;
/// The first resend of an acquisition, and of a renewal.
const FIRST_RESEND: Duration = Duration::from_millis(250);
const FIRST_RENEWAL_RESEND: Duration = Duration::from_secs(1);

struct Daemon {
    settings: Settings,
    store: Store,
    leases: Slots<Held>,
}

/// A poisoned lock only means another request panicked; the data itself stays sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn failure(code: ErrorCode, msg: String) -> Reply {
    Reply::Failed(CniError {
        cni_version: String::new(),
        code: code.number(),
        msg,
        details: String::new(),
    })
}
impl Daemon {
    fn handle(self: &Arc<Self>, request: Request) -> Reply {
        match request {
            Request::Allocate {
                lease,
                netns,
                request,
                provide,
                priority,
            } => {
                let options = ClientOptions {
                    client_id: protocol::client_id(&lease),
                    request,
                    provide,
                };
                let allocated = self.allocate(&lease, &netns, options, priority);
                self.leases.drop_if_unused(&lease);
                match allocated {
                    Ok(result) => Reply::Done {
                        result: Some(result),
                    },
                    Err(e) => failure(e.code(), causes(&e)),
                }
            }
            Request::Release { lease } => {
                self.release(&lease);
                Reply::Done { result: None }
            }
            Request::Lookup { lease } => match self.leases.kept(&lease) {
                Some(held) => Reply::Done {
                    result: Some(held.result()),
                },
                None => failure(
                    ErrorCode::Internal,
                    format!("the dhcp daemon holds no lease for {}", key_text(&lease)),
                ),
            },
            Request::Gc { valid } => {
                for key in self.leases.stale(&valid) {
                    self.release(&key);
                }
                Reply::Done { result: None }
            }
            Request::Status => Reply::Done { result: None },
        }
    }

    /// The lease the interface already has, or a new one. A key reused for another
    /// namespace or interface (a runtime that reuses container IDs) gives the old lease back
    /// first.
    fn allocate(
        self: &Arc<Self>,
        key: &AttachmentId,
        netns_path: &Path,
        options: ClientOptions,
        priority: Option<u32>,
    ) -> Result<CniResult, DhcpError> {
        let slot = self.leases.slot(key);
        let mut held = lock(&slot);
        let netns_path = self.settings.on_host(netns_path);
        let netns = Netns::open(&netns_path)?;
        let mac = prepare_link(&netns, &key.ifname)?;
        if let Some(existing) = held.as_ref().filter(|existing| !existing.is_lost()) {
            let same = {
                let record = lock(&existing.record);
                record.netns == netns_path && record.mac == mac
            };
            if same {
                return Ok(existing.result());
            }
        }
        self.drop_taken(Slots::take(&mut held));
        let client = Client::open(&netns, &key.ifname, mac, options.clone())?;
        let (asked, asked_at) = (Instant::now(), SystemTime::now());
        let lease = client.acquire(Patience {
            total: self.settings.timeout,
            first_resend: FIRST_RESEND,
            max_resend: self.settings.resend_max,
        })?;
        log!(
            "leased {} from {} to {} for {} s",
            lease.address,
            lease.server,
            key_text(key),
            lease.lease_time.as_secs()
        );
        let record = Record {
            netns: netns_path,
            mac,
            options,
            priority,
            lease,
            granted_at: asked_at,
        };
        let new = self.start(&mut held, key.clone(), record, asked);
        Ok(new.result())
    }

    /// Puts a lease into `slot`, records it, and starts its keeper.
    fn start(
        self: &Arc<Self>,
        slot: &mut Option<Arc<Held>>,
        key: AttachmentId,
        record: Record,
        granted: Instant,
    ) -> Arc<Held> {
        let held = Arc::new(Held {
            key,
            record: Mutex::new(record),
            stop: Stop::default(),
            keeper: Mutex::new(None),
            lost: AtomicBool::new(false),
        });
        self.persist(&held);
        *slot = Some(Arc::clone(&held));
        let daemon = Arc::clone(self);
        let kept = Arc::clone(&held);
        let keeper = std::thread::spawn(move || daemon.keep(&kept, granted));
        *lock(&held.keeper) = Some(keeper);
        held
    }

    fn release(&self, key: &AttachmentId) {
        let Some(slot) = self.leases.existing(key) else {
            return;
        };
        // Waits for an ADD of the same key that is under way, and keeps the next one out
        // until the RELEASE is sent (keepers only try the slot, so holding it is safe).
        let mut held = lock(&slot);
        self.drop_taken(Slots::take(&mut held));
        drop(held);
        drop(slot);
        self.leases.drop_if_unused(key);
    }

    /// What a request took out of a slot it holds: a lost lease's record is removed, a kept
    /// lease given back.
    fn drop_taken(&self, taken: Taken<Held>) {
        match taken {
            Taken::Lost(lost) => self.unpersist(&lost.key),
            Taken::Kept(kept) => self.give_back(&kept),
            Taken::Nothing => {}
        }
    }

    /// Stops the keeper (waiting for it, so no renewal of its races the RELEASE), sends the
    /// RELEASE, and drops the record.
    fn give_back(&self, held: &Held) {
        held.stop.stop();
        let keeper = lock(&held.keeper).take();
        if let Some(keeper) = keeper {
            let _ = keeper.join();
        }
        let lease = lock(&held.record).lease.clone();
        // The namespace may be gone already; the server then lets the lease run out.
        match held.client().and_then(|client| client.release(&lease)) {
            Ok(()) => log!("released {} of {}", lease.address, key_text(&held.key)),
            Err(e) => log!(
                "could not release {} of {}: {}",
                lease.address,
                key_text(&held.key),
                causes(&e)
            ),
        }
        self.unpersist(&held.key);
    }

    fn persist(&self, held: &Held) {
        let record = lock(&held.record).clone();
        if let Err(e) = self.store.save(&held.key, &record) {
            log!(
                "cannot record the lease of {} (a restart will forget it): {}",
                key_text(&held.key),
                causes(&e)
            );
        }
    }

    fn unpersist(&self, key: &AttachmentId) {
        if let Err(e) = self.store.remove(key) {
            log!("{}", causes(&e));
        }
    }

    /// Takes up the leases a previous daemon recorded whose interfaces are still there.
    fn restore(self: &Arc<Self>) {
        for key in self.store.ids() {
            // An unreadable or refused record is set aside (`.rejected`) by the store.
            let record = match self.store.load::<Record>(&key) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) => {
                    log!("cannot take up a lease record: {}", causes(&e));
                    continue;
                }
            };
            match record.link(&key.ifname) {
                Err(e) if container_gone(&e) => {
                    log!("forgetting the lease of {}: {}", key_text(&key), causes(&e));
                    self.unpersist(&key);
                    continue;
                }
                // Not known to be gone: the keeper looks again before each renewal.
                Err(e) => log!("cannot check {} now: {}", key_text(&key), causes(&e)),
                Ok(_) => {}
            }
            // A lease that ran out while no daemon ran gets its rebinding window again: its
            // container kept using the address all along, and a server that still knows
            // the client answers a broadcast REQUEST. Only then does the keeper give up.
            let elapsed = SystemTime::now()
                .duration_since(record.granted_at)
                .unwrap_or_default();
            let elapsed = if elapsed >= record.lease.lease_time {
                record.lease.rebind_after
            } else {
                elapsed
            };
            let Some(granted) = Instant::now().checked_sub(elapsed) else {
                self.unpersist(&key);
                continue;
            };
            log!(
                "took up the lease {} of {}",
                record.lease.address,
                key_text(&key)
            );
            let slot = self.leases.slot(&key);
            let mut held = lock(&slot);
            self.start(&mut held, key, record, granted);
        }
    }
}

fn key_text(key: &AttachmentId) -> String {
    format!(
        "{} of container {} on network {}",
        key.ifname, key.container_id, key.network
    )
}

fn serve(daemon: &Arc<Daemon>, mut stream: UnixStream) {
    let refusal = listener::refusal(&stream);
    let mut text = Vec::new();
    let read = stream
        .set_read_timeout(Some(REQUEST_READ_LIMIT))
        .and_then(|()| {
            (&mut stream)
                .take(REQUEST_SIZE_LIMIT)
                .read_to_end(&mut text)
        });
    // The request is read even from a peer that is refused, so it gets the reply rather
    // than a broken pipe.
    let reply = match (read, refusal) {
        (_, Some(refusal)) => {
            log!("refused a request: {refusal}");
            failure(ErrorCode::Internal, refusal)
        }
        (Err(e), None) => failure(ErrorCode::Io, format!("reading the request: {e}")),
        (Ok(_), None) => match serde_json::from_slice::<Request>(&text) {
            Ok(request) => daemon.handle(request),
            Err(e) => failure(ErrorCode::Decode, format!("a garbled request: {e}")),
        },
    };
    if let Ok(text) = serde_json::to_vec(&reply) {
        // The plugin may have been killed meanwhile; nobody is left to tell.
        let _ = stream.write_all(&text);
    }
}

/// Runs the daemon until a signal stops it; returns the process exit code on failure.
pub fn main(args: &[String]) -> i32 {
    let settings = match Settings::parse(args) {
        Ok(settings) => settings,
        Err(e) => {
            log!("{e}");
            return 2;
        }
    };
    let activated = match listener::activated() {
        Ok(activated) => activated,
        Err(e) => {
            log!("{e}");
            return 1;
        }
    };
    let how = if activated.is_some() {
        " (socket activation)"
    } else {
        ""
    };
    // systemd owns an activated socket's file: it stays when the daemon exits.
    let own_socket = activated.is_none().then(|| settings.socket.clone());
    let started = listener::exit_on_signal(own_socket, settings.pidfile.clone())
        .and_then(|()| activated.map_or_else(|| listener::bind(&settings.socket), Ok))
        .and_then(|listener| {
            if let Some(pidfile) = &settings.pidfile {
                // Readable by all, as the reference writes it; never writable by others.
                kernel::files::replace(
                    pidfile,
                    format!("{}\n", std::process::id()).as_bytes(),
                    0o644,
                    0o755,
                )
                .map_err(|e| format!("writing {}: {e}", pidfile.display()))?;
            }
            Ok(listener)
        });
    let listener = match started {
        Ok(listener) => listener,
        Err(e) => {
            log!("{e}");
            return 1;
        }
    };
    log!("listening on {}{how}", settings.socket.display());
    let daemon = Arc::new(Daemon {
        store: Store::new(settings.lease_dir.clone()),
        settings,
        leases: Slots::new(),
    });
    daemon.restore();
    // Ready only now (Type=notify): a plugin asking earlier would find its lease unknown.
    if let Err(e) = kernel::systemd::notify("READY=1") {
        log!("cannot tell systemd the daemon is ready: {e}");
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let daemon = Arc::clone(&daemon);
                std::thread::spawn(move || serve(&daemon, stream));
            }
            // Out of descriptors or memory, or a client gone before it was accepted: the
            // next accept may work. Anything else (a socket that is no socket) never will.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                        | Some(libc::ECONNABORTED | libc::EINTR)
                ) =>
            {
                log!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                log!("cannot accept on {}: {e}", daemon.settings.socket.display());
                return 1;
            }
        }
    }
    0
}
