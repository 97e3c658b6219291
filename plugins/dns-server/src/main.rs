//! ferrocni-dns: the DNS server of one network with the `dnsname` plugin.
//!
//!   ferrocni-dns --dir /run/ferrocni/dnsname/<network> [--ready-fd N]
//!
//! It answers A, AAAA and PTR queries for the network's containers (their names, under the
//! network's domain too, and their aliases; a name several containers share answers with
//! all their addresses, rotated), and forwards every other query to the upstream
//! resolvers. It listens on the network's gateway addresses only, port 53, UDP and TCP.
//! Its names are the files of its directory (see `names::dir`), read at start, so a
//! restarted server loses none; the plugin and the overlay agent tell it what changed over
//! its control socket. It holds the directory's `server.lock` for its whole life: one
//! server per network. The plugin starts it detached; it says `ready` (or why not) on the
//! descriptor `--ready-fd` names, and exits when the last local container has left.
//!
//! A long-lived process of its own, not the agent's: the agent's etcd client and runtime
//! would weigh on every network's server, and a network without the overlay needs neither.
//! Threads, not an async runtime: a few sockets, each served by a loop.

mod answer;
mod control;
mod forward;
mod listen;
mod table;

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kernel::files::{self, PRIVATE_DIR, PRIVATE_FILE};
use names::NetworkDir;

use control::Names;
use forward::Forwarder;
use table::Table;

/// What the serving threads share: the table they answer from (read under a lock held for
/// one lookup; changed in place, or replaced whole), the turn that rotates answers, the
/// forwarder.
pub struct Shared {
    table: RwLock<Table>,
    turn: AtomicUsize,
    forwarder: Forwarder,
}

impl Shared {
    fn table(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }
}

/// A line on stderr, which the plugin points at the directory's `server.log`.
pub fn log(message: &str) {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A log that cannot be written loses the line, never the server.
    let _ = writeln!(
        std::io::stderr(),
        "{seconds} ferrocni-dns[{}]: {message}",
        std::process::id()
    );
}

struct Args {
    dir: PathBuf,
    ready_fd: Option<i32>,
}

const USAGE: &str = "usage: ferrocni-dns --dir <network directory> [--ready-fd N]";

/// What `--help` prints: what the binary is, which release (as the plugins say it), how to
/// run it.
fn describe() -> String {
    format!(
        "ferrocni-dns: the DNS server of one network, started by the dnsname plugin (not a CNI plugin)\n\
         ferrocni v{}\n{USAGE}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The arguments, or `None` when only a description was asked for (`--help`, `--version`).
fn parse_args() -> Result<Option<Args>, String> {
    let mut dir = None;
    let mut ready_fd = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        if matches!(flag.to_str(), Some("--help" | "-h" | "--version")) {
            return Ok(None);
        }
        let value = args.next().ok_or(format!("{flag:?} needs a value"))?;
        match flag.to_str() {
            Some("--dir") => dir = Some(PathBuf::from(value)),
            Some("--ready-fd") => {
                let fd = value.to_str().and_then(|v| v.parse::<i32>().ok());
                ready_fd = Some(
                    fd.filter(|fd| *fd > 2)
                        .ok_or("--ready-fd: a descriptor above 2")?,
                );
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(Args {
        dir: dir.ok_or("--dir is required")?,
        ready_fd,
    }))
}

/// Says `word` to whoever started the server, and closes the descriptor.
fn say(ready_fd: Option<i32>, word: &str) {
    if let Some(fd) = ready_fd {
        // SAFETY: the descriptor was handed over by the starting plugin for this one use;
        // nothing else in this process knows it.
        let mut pipe = unsafe { File::from_raw_fd(fd) };
        let _ = writeln!(pipe, "{word}");
    }
}

fn run(args: &Args) -> Result<(), String> {
    let dir = NetworkDir::at(args.dir.clone());
    let open = dir
        .open()
        .map_err(|e| format!("cannot open {:?}: {e}", dir.path()))?
        .ok_or_else(|| format!("{:?} does not exist", dir.path()))?;
    // Held until the process exits.
    let _lock = open
        .server_lock()
        .map_err(|e| format!("cannot lock {:?}: {e}", dir.path()))?
        .ok_or_else(|| format!("another server runs for {:?}", dir.path()))?;
    let mut names = Names::load(dir.clone())?;
    let config = names.config();
    let forwarder = Forwarder::new(config.upstreams.clone(), config.listen.clone())
        .map_err(|e| format!("cannot make the forwarding sockets: {e}"))?;
    let shared = Arc::new(Shared {
        table: RwLock::new(names.table()),
        turn: AtomicUsize::new(0),
        forwarder,
    });
    names.listen(&shared)?;
    for v6 in [false, true] {
        let relay = Arc::clone(&shared);
        listen::spawn("relay", move || relay.forwarder.relay(v6))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    let listener = control::bind(&open)
        .map_err(|e| format!("cannot make the control socket in {:?}: {e}", dir.path()))?;
    let pid = format!("{}\n", std::process::id());
    if let Err(e) = files::replace(&dir.pid_file(), pid.as_bytes(), PRIVATE_FILE, PRIVATE_DIR) {
        log(&format!("cannot write {:?}: {e}", dir.pid_file()));
    }
    log(&format!(
        "serving {:?} on {:?}",
        dir.path(),
        names.config().listen
    ));
    say(args.ready_fd, "ready");
    control::serve(&listener, &open, &mut names, &shared);
    let _ = std::fs::remove_file(dir.pid_file());
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", describe());
            return;
        }
        Err(problem) => {
            log(&format!("{problem}\n{USAGE}"));
            std::process::exit(2);
        }
    };
    if let Err(reason) = run(&args) {
        log(&reason);
        say(args.ready_fd, &reason);
        std::process::exit(1);
    }
    // The serving threads never end: leave without waiting for them.
    std::process::exit(0);
}
