//! The daemon's socket: handed over by systemd, or bound here; who may use it; and its
//! removal on exit.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use kernel::files::{self, PRIVATE_DIR, PRIVATE_FILE};

/// The socket systemd passed (socket activation, as the reference supports): descriptor 3,
/// when `LISTEN_PID` names this process and `LISTEN_FDS` says one was passed.
pub fn activated() -> Result<Option<UnixListener>, String> {
    const SD_LISTEN_FDS_START: i32 = 3;
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    if var("LISTEN_PID") != Some(std::process::id()) {
        return Ok(None);
    }
    match var("LISTEN_FDS") {
        None | Some(0) => return Ok(None),
        Some(1) => {}
        Some(n) => return Err(format!("systemd passed {n} sockets; the daemon serves one")),
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

/// Binds the socket, in a directory made 0700 if missing (as the reference does) and with
/// mode 0600 itself, whatever the umask: the daemon acts as root on request. A leftover
/// socket file nobody answers on is replaced, a live daemon's is not.
pub fn bind(socket: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = socket.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        files::create_dir(dir, PRIVATE_DIR)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if UnixStream::connect(socket).is_ok() {
        return Err(format!(
            "another dhcp daemon already listens on {}",
            socket.display()
        ));
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .map_err(|e| format!("listening on {}: {e}", socket.display()))?;
    // bind(2) gave the file the umask's mode; whoever connects meanwhile meets `refusal`.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(PRIVATE_FILE))
        .map_err(|e| format!("making {} private: {e}", socket.display()))?;
    Ok(listener)
}

/// Why the process at the other end of `stream` may not use the daemon, if it may not:
/// only root and the daemon's own user (a rootless runtime's) may, whatever the socket's
/// mode (systemd's socket units default to 0666). SO_PEERCRED gives the credentials the
/// peer had when it connected.
pub fn refusal(stream: &UnixStream) -> Option<String> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `credentials`, which is that large.
    let asked = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut credentials).cast(),
            &mut len,
        )
    };
    if asked != 0 {
        return Some(format!(
            "cannot tell who is asking: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let own = unsafe { libc::geteuid() };
    (credentials.uid != 0 && credentials.uid != own).then(|| {
        format!(
            "the dhcp daemon serves root and its own user (uid {own}) only, not uid {}",
            credentials.uid
        )
    })
}

/// Removes the socket and pid files on SIGTERM or SIGINT, then exits.
pub fn exit_on_signal(socket: Option<PathBuf>, pidfile: Option<PathBuf>) -> Result<(), String> {
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
