//! The network's server, as the plugin sees it: told about a change over its control
//! socket, started when none runs, waited for when it stops. Every function here is called
//! with the network's lock held, so one server runs per network even under concurrent ADDs.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cni::{Coded, ErrorCode};
use names::control::{self, ControlError, Reply, Request};
use names::{NetworkDir, OpenDir};

/// How long a starting server may take to load its names and bind its sockets.
const START_LIMIT: Duration = Duration::from_secs(5);
/// How long a stopping server may take to exit.
const STOP_LIMIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start the DNS server {binary:?}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the DNS server {binary:?} did not start: {reason}")]
    Failed { binary: PathBuf, reason: String },
    #[error("a DNS server of {dir:?} holds its lock but does not answer")]
    Hung { dir: PathBuf },
    #[error("name discovery directory {dir:?}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Coded for ServerError {
    fn code(&self) -> ErrorCode {
        match self {
            ServerError::Spawn { .. } | ServerError::Dir { .. } => ErrorCode::Io,
            ServerError::Failed { .. } => ErrorCode::Internal,
            ServerError::Hung { .. } => ErrorCode::TryAgainLater,
        }
    }
}

/// Tells the server about `request`'s change, starting it (it then reads everything) when
/// none runs.
pub fn apply(
    dir: &NetworkDir,
    open: &OpenDir,
    request: &Request,
    binary: &Path,
) -> cni::Result<()> {
    match control::call(open, request) {
        Ok(Reply::Stopping) => wait_stopped(dir, open),
        Ok(_) => Ok(()),
        Err(ControlError::NotRunning) => start(dir, open, binary),
        Err(e) => Err(e.into()),
    }
}

/// Tells a running server about a change that may leave it nothing to serve; none running
/// is fine (the next ADD starts one that reads everything).
pub fn tell(dir: &NetworkDir, open: &OpenDir, request: &Request) -> cni::Result<()> {
    match control::call(open, request) {
        Ok(Reply::Stopping) => wait_stopped(dir, open),
        Ok(_) | Err(ControlError::NotRunning) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits for a server that said it stops to release its lock, so that an ADD that follows
/// (under the same network lock) starts a new one rather than talk to a dying one.
fn wait_stopped(dir: &NetworkDir, open: &OpenDir) -> cni::Result<()> {
    let started = Instant::now();
    loop {
        if server_lock_free(dir, open)? {
            return Ok(());
        }
        if started.elapsed() > STOP_LIMIT {
            return Err(ServerError::Hung {
                dir: dir.path().to_path_buf(),
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn server_lock_free(dir: &NetworkDir, open: &OpenDir) -> Result<bool, ServerError> {
    open.server_lock()
        .map(|lock| lock.is_some())
        .map_err(|source| ServerError::Dir {
            dir: dir.path().to_path_buf(),
            source,
        })
}

/// Starts the server for `dir`, detached (its own session, stdio on its log) so that it
/// outlives this process and a runtime that kills it, and waits until it serves.
fn start(dir: &NetworkDir, open: &OpenDir, binary: &Path) -> cni::Result<()> {
    // A server that still holds the lock but no longer answers is exiting (a DEL that did
    // not wait, killed) or hung: give it the time a stop takes.
    wait_stopped(dir, open)?;
    let spawn_error = |source| ServerError::Spawn {
        binary: binary.to_path_buf(),
        source,
    };
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.log_file())
        .map_err(|source| ServerError::Dir {
            dir: dir.path().to_path_buf(),
            source,
        })?;
    let (ready, ready_writer) = pipe().map_err(spawn_error)?;
    let writer = ready_writer.as_raw_fd();
    let mut command = Command::new(binary);
    command
        .arg("--dir")
        .arg(dir.path())
        .args(["--ready-fd", &READY_FD.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(spawn_error)?)
        .stderr(log);
    // SAFETY: between fork and exec the closure makes system calls that allocate nothing
    // and take no lock: setsid(2), and dup2(2) of a descriptor this process owns (which
    // clears close-on-exec on the copy, so only it reaches the server), or fcntl(2) to clear
    // it when the pipe already has that number.
    unsafe {
        command.pre_exec(move || {
            let handed = if writer == READY_FD {
                libc::fcntl(writer, libc::F_SETFD, 0)
            } else {
                libc::dup2(writer, READY_FD)
            };
            if libc::setsid() < 0 || handed < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // A server that said ready is never waited for: it outlives this process, and init
    // reaps it. One that did not is stopped, so that no late server serves a failed ADD.
    let mut child = command.spawn().map_err(spawn_error)?;
    drop(ready_writer);
    let said = read_ready(ready, START_LIMIT);
    if !matches!(&said, Ok(text) if text.trim() == "ready") {
        let _ = child.kill();
        let _ = child.wait();
    }
    match said {
        Ok(text) if text.trim() == "ready" => Ok(()),
        Ok(text) => Err(ServerError::Failed {
            binary: binary.to_path_buf(),
            reason: match text.trim() {
                "" => format!("it exited without a word (see {:?})", dir.log_file()),
                words => words.to_string(),
            },
        }
        .into()),
        Err(e) => Err(ServerError::Failed {
            binary: binary.to_path_buf(),
            reason: format!("no word within {START_LIMIT:?} ({e})"),
        }
        .into()),
    }
}

/// The descriptor on which the server says `ready` (or why not) and closes.
const READY_FD: i32 = 3;

fn pipe() -> std::io::Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills both descriptors, which are then owned here.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and belong to nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the server wrote before closing its end, waiting at most `limit`.
fn read_ready(mut pipe: File, limit: Duration) -> std::io::Result<String> {
    let deadline = Instant::now() + limit;
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, owned for the call.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if ready == 0 {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let mut chunk = [0u8; 512];
        match pipe.read(&mut chunk)? {
            0 => return Ok(String::from_utf8_lossy(&said).into_owned()),
            n => said.extend_from_slice(&chunk[..n]),
        }
    }
}
