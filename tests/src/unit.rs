//! Running a daemon as its systemd unit (`packaging/systemd`) would, without systemd: the
//! unit's `ExecStart` with the built binary, under its `CapabilityBoundingSet` and
//! `NoNewPrivileges` (through `setpriv`, so a capability the daemon needs and the unit
//! forgot fails the test), with `NOTIFY_SOCKET` naming a datagram socket the test holds,
//! and, for a socket-activated unit, the listening socket passed as descriptor 3.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{our_bin_dir, NetnsGuard, TempDir};

/// Where the unit files are kept in the repository.
pub fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd")
        .to_path_buf()
}

/// A unit file's settings, in order: (section, key, value).
pub struct Unit {
    pub name: String,
    settings: Vec<(String, String, String)>,
}

impl Unit {
    /// `name` from [`unit_dir`].
    pub fn load(name: &str) -> Unit {
        let path = unit_dir().join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut section = String::new();
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: not KEY=VALUE: {line}"));
            settings.push((section.clone(), key.trim().into(), value.trim().into()));
        }
        Unit {
            name: name.to_string(),
            settings,
        }
    }

    /// The value of `key` in `section` (the last one, as systemd reads a repeated key).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    }

    /// `ExecStart`, split into words (the units quote nothing), its program replaced by the
    /// binary of that name that this build made.
    pub fn exec_start(&self) -> Vec<String> {
        let line = self
            .get("Service", "ExecStart")
            .unwrap_or_else(|| panic!("{} has no ExecStart", self.name));
        let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let program = Path::new(&words[0])
            .file_name()
            .expect("ExecStart names a program")
            .to_owned();
        words[0] = our_bin_dir().join(program).display().to_string();
        words
    }

    /// The bounding set as `setpriv --bounding-set` takes it: `-all,+net_admin,...`.
    fn bounding_set(&self) -> String {
        let listed = self
            .get("Service", "CapabilityBoundingSet")
            .unwrap_or_else(|| panic!("{} bounds no capabilities", self.name));
        let mut set = String::from("-all");
        for capability in listed.split_whitespace() {
            let name = capability
                .strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{capability} is no capability name"));
            set.push_str(",+");
            set.push_str(&name.to_ascii_lowercase());
        }
        set
    }

    /// The daemon as this unit starts it, inside `host`, with `extra` arguments after the
    /// unit's (the test's paths in place of the machine's), notifying `notify`, and given
    /// `activated` as systemd hands a socket over: descriptor 3, with `LISTEN_FDS=1` and
    /// `LISTEN_PID` the pid the daemon runs as (known only in the child: a shell sets it
    /// from `$$` and execs the rest, which keeps its pid). The caller checks that `setpriv`
    /// is installed (`require_tools!`).
    pub fn command(
        &self,
        host: &NetnsGuard,
        extra: &[&str],
        notify: &NotifySocket,
        activated: Option<&UnixListener>,
    ) -> Command {
        assert_eq!(
            self.get("Service", "Type"),
            Some("notify"),
            "{} tells systemd when it is ready",
            self.name
        );
        assert_eq!(self.get("Service", "NoNewPrivileges"), Some("yes"));
        crate::skip::assert_installed(Path::new("setpriv"));
        let mut command = match activated {
            Some(listener) => {
                let mut shell = host.command("sh");
                shell.args([
                    "-c",
                    "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"",
                    "sh",
                    "setpriv",
                ]);
                pass_as_descriptor_3(&mut shell, listener.as_raw_fd());
                shell
            }
            None => host.command("setpriv"),
        };
        command
            .arg("--no-new-privs")
            .args(["--bounding-set", &self.bounding_set()])
            .arg("--")
            .args(self.exec_start())
            .args(extra)
            .env(kernel::systemd::NOTIFY_SOCKET, notify.path());
        command
    }
}

/// Makes `fd` the child's descriptor 3, open across exec.
pub fn pass_as_descriptor_3(command: &mut Command, fd: RawFd) {
    // SAFETY: dup2 and fcntl are async-signal-safe; the descriptor is open in the parent.
    // It may be descriptor 3 already, where dup2 does nothing: clear close-on-exec either way.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, 3) != 3 || libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The socket a daemon's `sd_notify` messages arrive at, as systemd's would.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
}

impl Default for NotifySocket {
    fn default() -> Self {
        let dir = TempDir::new("notify");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }
}

impl NotifySocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message, if one comes within `limit`.
    pub fn receive(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit))
            .expect("a read timeout");
        let mut buffer = [0u8; 4096];
        let len = self.socket.recv(&mut buffer).ok()?;
        Some(String::from_utf8_lossy(&buffer[..len]).into_owned())
    }
}
