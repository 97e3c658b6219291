//! `dhcp daemon`: holds each container interface's lease, renews it in the background and
//! gives it back on DEL. A plugin process lives milliseconds; a lease lives for hours, so
//! someone has to stay. Leases live in memory, as the reference's do: a restarted daemon
//! holds none, and DEL of a lease it does not know succeeds.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use netlib::cni::{CniError, CniResult, ErrorCode};
use netlib::ipam::dhcp::{Client, ClientOptions, DhcpError, Lease, Patience};
use netlib::netlink::Netlink;
use netlib::netns::{Netns, NetnsError};

use crate::protocol::{LeaseKey, Reply, Request};

pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";

/// The reference daemon's flags, spelled as Go spells them (`-name value` or `-name=value`).
#[derive(Debug)]
struct Settings {
    socket: PathBuf,
    pidfile: Option<PathBuf>,
    /// Where the host's root is mounted when the daemon runs in a container of its own.
    host_prefix: PathBuf,
    /// How long one acquisition may take.
    timeout: Duration,
    /// The longest pause between two resends.
    resend_max: Duration,
    /// How long one renewal keeps resending before it waits and tries again.
    resend_timeout: Duration,
}

impl Settings {
    fn parse(args: &[String]) -> Result<Settings, String> {
        let mut settings = Settings {
            socket: PathBuf::from(DEFAULT_SOCKET),
            pidfile: None,
            host_prefix: PathBuf::new(),
            timeout: Duration::from_secs(10),
            resend_max: Duration::from_secs(62),
            resend_timeout: Duration::from_secs(208),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let flag = arg.trim_start_matches('-');
            if flag.len() == arg.len() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag, None),
            };
            // Every server we know of honours the broadcast flag, so the client always sets
            // it while it has no address: the flag changes nothing.
            if name == "broadcast" {
                continue;
            }
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag -{name} needs a value"))?,
            };
            match name {
                "socketpath" => settings.socket = PathBuf::from(value),
                "pidfile" => settings.pidfile = Some(PathBuf::from(value)),
                "hostprefix" => settings.host_prefix = PathBuf::from(value),
                "timeout" => settings.timeout = parse_duration(&value)?,
                "resendmax" => settings.resend_max = parse_duration(&value)?,
                "resendtimeout" => settings.resend_timeout = parse_duration(&value)?,
                _ => return Err(format!("unknown flag -{name}")),
            }
        }
        Ok(settings)
    }

    /// The namespace path as this daemon sees it.
    fn netns_path(&self, netns: &Path) -> PathBuf {
        if self.host_prefix.as_os_str().is_empty() {
            return netns.to_path_buf();
        }
        self.host_prefix
            .join(netns.strip_prefix("/").unwrap_or(netns))
    }
}

/// A Go duration: `10s`, `1m30s`, `500ms`, `2h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (write it as 10s, 500ms, 1m30s)");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A lease the daemon holds, and what it needs to renew it.
struct Held {
    key: LeaseKey,
    netns: PathBuf,
    mac: [u8; 6],
    options: ClientOptions,
    priority: Option<u32>,
    lease: Mutex<Lease>,
    /// Dropping it stops the renewal thread.
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl Held {
    fn result(&self) -> CniResult {
        lock(&self.lease).result(self.priority)
    }

    fn client(&self) -> Result<Client, DhcpError> {
        let netns = Netns::open(&self.netns)?;
        Client::open(&netns, &self.key.ifname, self.mac, self.options.clone())
    }

    fn stop(&self) {
        lock(&self.stop).take();
    }
}

/// One slot per lease key: held while a lease is acquired or released, so two requests for
/// the same interface never run two exchanges.
type Slot = Arc<Mutex<Option<Arc<Held>>>>;

struct Daemon {
    settings: Settings,
    leases: Mutex<HashMap<LeaseKey, Slot>>,
}

/// A poisoned lock only means another request panicked; the map itself stays sound.
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
    fn slot(&self, key: &LeaseKey) -> Slot {
        lock(&self.leases).entry(key.clone()).or_default().clone()
    }

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
                    client_id: lease.client_id(),
                    request,
                    provide,
                };
                match self.allocate(lease.clone(), &netns, options, priority) {
                    Ok(result) => Reply::Done {
                        result: Some(result),
                    },
                    Err(e) => {
                        self.drop_if_empty(&lease);
                        failure(code_of(&e), error_text(&e))
                    }
                }
            }
            Request::Release { lease } => {
                self.release(&lease);
                Reply::Done { result: None }
            }
            Request::Lookup { lease } => {
                let slot = lock(&self.leases).get(&lease).cloned();
                let held = slot.and_then(|slot| lock(&slot).clone());
                match held {
                    Some(held) => Reply::Done {
                        result: Some(held.result()),
                    },
                    None => failure(
                        ErrorCode::Internal,
                        format!("the dhcp daemon holds no lease for {}", key_text(&lease)),
                    ),
                }
            }
            Request::Gc { network, keep } => {
                let stale: Vec<LeaseKey> = lock(&self.leases)
                    .keys()
                    .filter(|k| {
                        k.network == network
                            && !keep
                                .iter()
                                .any(|(id, ifname)| *id == k.container_id && *ifname == k.ifname)
                    })
                    .cloned()
                    .collect();
                for key in stale {
                    self.release(&key);
                }
                Reply::Done { result: None }
            }
            Request::Status => Reply::Done { result: None },
        }
    }

    fn allocate(
        self: &Arc<Self>,
        key: LeaseKey,
        netns_path: &Path,
        options: ClientOptions,
        priority: Option<u32>,
    ) -> Result<CniResult, DhcpError> {
        let slot = self.slot(&key);
        let mut held = lock(&slot);
        if let Some(existing) = held.as_ref() {
            return Ok(existing.result());
        }
        let netns_path = self.settings.netns_path(netns_path);
        let netns = Netns::open(&netns_path)?;
        let mac = prepare_link(&netns, &key.ifname)?;
        let client = Client::open(&netns, &key.ifname, mac, options.clone())?;
        let lease = client.acquire(Patience {
            total: self.settings.timeout,
            first_resend: Duration::from_millis(250),
            max_resend: self.settings.resend_max,
        })?;
        eprintln!(
            "dhcp daemon: leased {} from {} to {} for {} s",
            lease.address,
            lease.server,
            key_text(&key),
            lease.lease_time.as_secs()
        );
        let (stop, stopped) = mpsc::channel();
        let new = Arc::new(Held {
            key,
            netns: netns_path,
            mac,
            options,
            priority,
            lease: Mutex::new(lease),
            stop: Mutex::new(Some(stop)),
        });
        let result = new.result();
        let daemon = Arc::clone(self);
        let renewed = Arc::clone(&new);
        std::thread::spawn(move || daemon.keep(&renewed, &stopped));
        *held = Some(new);
        Ok(result)
    }

    fn release(&self, key: &LeaseKey) {
        let slot = lock(&self.leases).remove(key);
        let Some(held) = slot.and_then(|slot| lock(&slot).take()) else {
            return;
        };
        held.stop();
        let lease = lock(&held.lease).clone();
        // The namespace may be gone already; the server then lets the lease run out.
        match held.client().and_then(|client| client.release(&lease)) {
            Ok(()) => eprintln!(
                "dhcp daemon: released {} of {}",
                lease.address,
                key_text(key)
            ),
            Err(e) => eprintln!(
                "dhcp daemon: could not release {} of {}: {}",
                lease.address,
                key_text(key),
                error_text(&e)
            ),
        }
    }

    /// Renews `held` at T1 (unicast to its server), rebinds at T2 (broadcast to any), and at
    /// expiry takes the interface down, as the reference does: an address nobody leases any
    /// more must not stay in use. Stops when told to, or when the container is gone.
    fn keep(&self, held: &Held, stopped: &mpsc::Receiver<()>) {
        let mut granted_at = Instant::now();
        loop {
            let lease = lock(&held.lease).clone();
            let renew_at = granted_at + lease.renew_after;
            let rebind_at = granted_at + lease.rebind_after;
            let expires_at = granted_at + lease.lease_time;
            if !sleep_until(stopped, renew_at) {
                return;
            }
            loop {
                let now = Instant::now();
                if now >= expires_at {
                    eprintln!(
                        "dhcp daemon: lease {} of {} expired; taking the interface down",
                        lease.address,
                        key_text(&held.key)
                    );
                    self.forget(held);
                    let _ = take_down(&held.netns, &held.key.ifname);
                    return;
                }
                let rebinding = now >= rebind_at;
                let patience = Patience {
                    total: self.settings.resend_timeout.min(expires_at - now),
                    first_resend: Duration::from_secs(1),
                    max_resend: self.settings.resend_max,
                };
                match held
                    .client()
                    .and_then(|client| client.extend(&lease, rebinding, patience))
                {
                    Ok(renewed) => {
                        eprintln!(
                            "dhcp daemon: renewed {} of {} for {} s",
                            renewed.address,
                            key_text(&held.key),
                            renewed.lease_time.as_secs()
                        );
                        *lock(&held.lease) = renewed;
                        granted_at = now;
                        break;
                    }
                    Err(e) if container_gone(&e) => {
                        eprintln!(
                            "dhcp daemon: {} is gone; forgetting its lease",
                            key_text(&held.key)
                        );
                        self.forget(held);
                        return;
                    }
                    Err(e) => {
                        eprintln!(
                            "dhcp daemon: renewing {} of {} failed: {}",
                            lease.address,
                            key_text(&held.key),
                            error_text(&e)
                        );
                        let retry_at = now + (expires_at - now) / 2;
                        if !sleep_until(stopped, retry_at.max(now + Duration::from_secs(1))) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Drops the slot of `key` if it holds no lease (an acquisition failed), so failures
    /// leave nothing behind in a daemon that runs for months. A slot in use by another
    /// request is left to it: waiting for it here would stall every request.
    fn drop_if_empty(&self, key: &LeaseKey) {
        let mut leases = lock(&self.leases);
        let unused = |slot: &Slot| matches!(slot.try_lock().as_deref(), Ok(None));
        if leases.get(key).is_some_and(unused) {
            leases.remove(key);
        }
    }

    /// Drops `held` from the map unless a newer lease took its place.
    fn forget(&self, held: &Held) {
        let mut leases = lock(&self.leases);
        let Some(slot) = leases.get(&held.key).cloned() else {
            return;
        };
        let mut current = lock(&slot);
        if current
            .as_ref()
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), held))
        {
            *current = None;
            leases.remove(&held.key);
        }
    }
}

/// Waits until `when`; false when told to stop first.
fn sleep_until(stopped: &mpsc::Receiver<()>, when: Instant) -> bool {
    matches!(
        stopped.recv_timeout(when.saturating_duration_since(Instant::now())),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

/// The interface must be up to send, as the reference's daemon ensures; returns its MAC.
fn prepare_link(netns: &Netns, ifname: &str) -> Result<[u8; 6], DhcpError> {
    let link_error = |reason: String| DhcpError::Link {
        ifname: ifname.to_string(),
        reason,
    };
    let mut netlink = Netlink::open_in(netns).map_err(|e| link_error(e.to_string()))?;
    let link = netlink
        .link_by_name(ifname)
        .map_err(|e| link_error(e.to_string()))?
        .ok_or_else(|| link_error("no such interface in the container".to_string()))?;
    let mac = link
        .mac
        .ok_or_else(|| link_error("the interface has no MAC address".to_string()))?;
    if !link.up {
        netlink
            .set_link_up(link.index, true)
            .map_err(|e| link_error(e.to_string()))?;
    }
    // A bridge forwards from a new port only once linkwatch has seen its carrier; asking
    // before that loses the first DISCOVER. Resends cover it if this runs out.
    let _ = netlink.wait_oper_up(link.index, Duration::from_secs(1));
    Ok(mac.0)
}

fn take_down(netns: &Path, ifname: &str) -> Result<(), String> {
    let netns = Netns::open(netns).map_err(|e| e.to_string())?;
    let mut netlink = Netlink::open_in(&netns).map_err(|e| e.to_string())?;
    if let Some(link) = netlink.link_by_name(ifname).map_err(|e| e.to_string())? {
        netlink
            .set_link_up(link.index, false)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn container_gone(error: &DhcpError) -> bool {
    match error {
        DhcpError::Netns(NetnsError::NotFound(_)) => true,
        DhcpError::Socket { source, .. } => source.raw_os_error() == Some(libc::ENODEV),
        _ => false,
    }
}

fn code_of(error: &DhcpError) -> ErrorCode {
    match error {
        DhcpError::Netns(NetnsError::NotFound(_) | NetnsError::NotANetns(_)) => {
            ErrorCode::InvalidNetns
        }
        DhcpError::Timeout { .. } => ErrorCode::TryAgainLater,
        _ => ErrorCode::Internal,
    }
}

/// The error with its causes, as one line.
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn key_text(key: &LeaseKey) -> String {
    format!(
        "{} of container {} on network {}",
        key.ifname, key.container_id, key.network
    )
}

fn serve(daemon: &Arc<Daemon>, mut stream: UnixStream) {
    let mut text = Vec::new();
    let reply = match stream.read_to_end(&mut text) {
        Err(e) => failure(ErrorCode::Io, format!("reading the request: {e}")),
        Ok(_) => match serde_json::from_slice::<Request>(&text) {
            Ok(request) => daemon.handle(request),
            Err(e) => failure(ErrorCode::Decode, format!("a garbled request: {e}")),
        },
    };
    if let Ok(text) = serde_json::to_vec(&reply) {
        // The plugin may have been killed meanwhile; nobody is left to tell.
        let _ = stream.write_all(&text);
    }
}

/// The socket systemd passed (socket activation, as the reference supports): descriptor 3,
/// when `LISTEN_PID` names this process and `LISTEN_FDS` is at least one.
fn activated_listener() -> Result<Option<UnixListener>, String> {
    const SD_LISTEN_FDS_START: i32 = 3;
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    if var("LISTEN_PID") != Some(std::process::id()) || var("LISTEN_FDS").unwrap_or(0) == 0 {
        return Ok(None);
    }
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `kind`, which is that large.
    let is_socket = unsafe {
        libc::getsockopt(
            SD_LISTEN_FDS_START,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            std::ptr::from_mut(&mut kind).cast(),
            &mut len,
        )
    } == 0;
    if !is_socket || kind != libc::SOCK_STREAM {
        return Err(
            "LISTEN_FDS says a socket was passed, but descriptor 3 is no stream socket".to_string(),
        );
    }
    // SAFETY: descriptor 3 is an open stream socket that systemd handed to this process, and
    // nothing else in it owns the descriptor.
    Ok(Some(unsafe {
        <UnixListener as std::os::fd::FromRawFd>::from_raw_fd(SD_LISTEN_FDS_START)
    }))
}

/// Binds the socket; a leftover socket file nobody answers on is replaced, a live daemon's
/// is not.
fn listen(socket: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if UnixStream::connect(socket).is_ok() {
        return Err(format!(
            "another dhcp daemon already listens on {}",
            socket.display()
        ));
    }
    let _ = std::fs::remove_file(socket);
    UnixListener::bind(socket).map_err(|e| format!("listening on {}: {e}", socket.display()))
}

/// Removes the socket and pid files on SIGTERM or SIGINT, then exits.
fn exit_on_signal(socket: Option<PathBuf>, pidfile: Option<PathBuf>) -> Result<(), String> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; blocking these in the main thread before any other
    // thread starts makes every thread inherit the mask, so only sigwait sees them.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err("cannot block SIGTERM".to_string());
        }
    }
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: `set` is initialised above and `signal` is a valid out pointer.
        unsafe { libc::sigwait(&set, &mut signal) };
        for file in socket.iter().chain(pidfile.iter()) {
            let _ = std::fs::remove_file(file);
        }
        std::process::exit(0);
    });
    Ok(())
}

/// Runs the daemon until a signal stops it; returns the process exit code on failure.
pub fn main(args: &[String]) -> i32 {
    let settings = match Settings::parse(args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("dhcp daemon: {e}");
            return 2;
        }
    };
    let activated = match activated_listener() {
        Ok(activated) => activated,
        Err(e) => {
            eprintln!("dhcp daemon: {e}");
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
    let started = exit_on_signal(own_socket, settings.pidfile.clone())
        .and_then(|()| activated.map_or_else(|| listen(&settings.socket), Ok))
        .and_then(|listener| {
            if let Some(pidfile) = &settings.pidfile {
                std::fs::write(pidfile, format!("{}\n", std::process::id()))
                    .map_err(|e| format!("writing {}: {e}", pidfile.display()))?;
            }
            Ok(listener)
        });
    let listener = match started {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("dhcp daemon: {e}");
            return 1;
        }
    };
    eprintln!(
        "dhcp daemon: listening on {}{how}",
        settings.socket.display()
    );
    let daemon = Arc::new(Daemon {
        settings,
        leases: Mutex::new(HashMap::new()),
    });
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
                eprintln!("dhcp daemon: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                eprintln!(
                    "dhcp daemon: cannot accept on {}: {e}",
                    daemon.settings.socket.display()
                );
                return 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn go_style_flags_are_understood() {
        let settings = Settings::parse(&args(
            "-socketpath /tmp/d.sock -timeout=2s --resendmax 1m30s -broadcast -hostprefix /host",
        ))
        .expect("parses");
        assert_eq!(settings.socket, PathBuf::from("/tmp/d.sock"));
        assert_eq!(settings.timeout, Duration::from_secs(2));
        assert_eq!(settings.resend_max, Duration::from_secs(90));
        assert_eq!(
            settings.netns_path(Path::new("/run/netns/c1")),
            PathBuf::from("/host/run/netns/c1")
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let error = Settings::parse(&args("-timeout 10")).expect_err("no unit");
        assert!(error.contains("\"10\""), "{error}");
        let error = Settings::parse(&args("-frobnicate 1")).expect_err("unknown");
        assert!(error.contains("-frobnicate"), "{error}");
        let error = Settings::parse(&args("-socketpath")).expect_err("no value");
        assert!(error.contains("-socketpath"), "{error}");
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h1m"), Ok(Duration::from_secs(7260)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }
}
