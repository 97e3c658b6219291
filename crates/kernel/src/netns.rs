//! Network namespaces: open one by path, make sure it really is one, and run code inside it.
//!
//! Code runs in a namespace on the calling thread, which enters it and is brought back by a
//! guard before `run` returns, panics included; a thread that cannot get back aborts the
//! process rather than go on in the wrong namespace (the classic Go plugin bug the reference
//! works around with `LockOSThread`). A throwaway thread per visit did the same more simply,
//! but cost a bridge ADD two thread starts (clone, a malloc arena, a join), a sizeable
//! share of its time. Kernel sockets keep the namespace they were created in, so the usual
//! pattern is to open a netlink socket inside once and use it from the calling thread.

use nix::sched::{setns, CloneFlags};
use nix::sys::stat::fstat;
use nix::sys::statfs::{fstatfs, FsType, PROC_SUPER_MAGIC};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use cni::{Coded, ErrorCode};

/// The magic of nsfs, where `/run/netns/*` bind mounts and `/proc/*/ns/net` point.
const NSFS_MAGIC: FsType = FsType(0x6e73_6673);

/// Where named namespaces live, shared with `ip netns`.
pub const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {0:?} already exists")]
    Exists(PathBuf),
    #[error("cannot create network namespace {path:?}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot delete network namespace {path:?}")]
    Delete {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A name is joined to /run/netns: "../x" would create, or delete, a file elsewhere.
    #[error("{0:?} is not a namespace name: use a plain file name (no '/', not '.' or '..')")]
    BadName(String),
    #[error("network namespace {0:?} does not exist")]
    NotFound(PathBuf),
    #[error("{path:?} is not a network namespace: {what}")]
    NotANetns { path: PathBuf, what: &'static str },
    #[error("cannot open network namespace {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter network namespace {path:?}")]
    Enter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Coded for NetnsError {
    fn code(&self) -> ErrorCode {
        match self {
            NetnsError::NotFound(_)
            | NetnsError::NotANetns { .. }
            | NetnsError::Exists(_)
            | NetnsError::BadName(_) => ErrorCode::InvalidNetns,
            NetnsError::Open { .. }
            | NetnsError::Enter { .. }
            | NetnsError::Create { .. }
            | NetnsError::Delete { .. } => ErrorCode::Io,
        }
    }
}

/// What a namespace file is when it is not a network namespace, as the kernel says
/// (NS_GET_NSTYPE); `None` for a network namespace, or when the kernel (before 4.11) cannot say.
fn other_kind(file: &File) -> Option<&'static str> {
    /// `_IO(NSIO, 0x3)`, from linux/nsfs.h.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value; the descriptor is
    // open for the duration of the call.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    Some(match kind {
        libc::CLONE_NEWNS => "it is a mount namespace",
        libc::CLONE_NEWUTS => "it is a UTS namespace",
        libc::CLONE_NEWIPC => "it is an IPC namespace",
        libc::CLONE_NEWUSER => "it is a user namespace",
        libc::CLONE_NEWPID => "it is a PID namespace",
        libc::CLONE_NEWCGROUP => "it is a cgroup namespace",
        libc::CLONE_NEWTIME => "it is a time namespace",
        _ => return None,
    })
}

/// `name` if it stays inside /run/netns when joined to it, as `ip netns` requires.
fn plain_name(name: &str) -> Result<&str, NetnsError> {
    if !cni::config::is_plain_file_name(name) {
        return Err(NetnsError::BadName(name.to_string()));
    }
    Ok(name)
}

/// An open handle on a network namespace; holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl AsFd for Netns {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Netns {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound(path.clone()),
            _ => NetnsError::Open {
                path: path.clone(),
                source,
            },
        })?;
        let fs = fstatfs(file.as_fd()).map_err(|errno| NetnsError::Open {
            path: path.clone(),
            source: errno.into(),
        })?;
        // Old kernels expose /proc/<pid>/ns/net on procfs rather than nsfs.
        if fs.filesystem_type() != NSFS_MAGIC && fs.filesystem_type() != PROC_SUPER_MAGIC {
            return Err(NetnsError::NotANetns {
                path,
                what: "it is no namespace at all (not on nsfs)",
            });
        }
        // Every kind of namespace lives on nsfs: a mount namespace would open, and only
        // setns(2) would refuse it, with a bare EINVAL.
        if let Some(other) = other_kind(&file) {
            return Err(NetnsError::NotANetns { path, what: other });
        }
        Ok(Netns { file, path })
    }

    /// Creates a named namespace at `/run/netns/<name>`, as `ip netns add` does: a fresh
    /// namespace from a throwaway thread, bind-mounted onto a file so it outlives the thread.
    pub fn create(name: &str) -> Result<Netns, NetnsError> {
        let dir = Path::new(NETNS_DIR);
        let path = dir.join(plain_name(name)?);
        let failed = |source: io::Error| NetnsError::Create {
            path: path.clone(),
            source,
        };
        // As `ip netns add` makes them: the directory 0755, the mount point mode 0 (the
        // namespace mounted on it shows its own mode).
        crate::files::create_dir(dir, 0o755).map_err(failed)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
        {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::Exists(path))
            }
            other => drop(other.map_err(failed)?),
        }
        let mounted = std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<()> {
                    nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
                    nix::mount::mount(
                        Some("/proc/thread-self/ns/net"),
                        &path,
                        None::<&str>,
                        nix::mount::MsFlags::MS_BIND,
                        None::<&str>,
                    )?;
                    Ok(())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        });
        if let Err(e) = mounted {
            let _ = std::fs::remove_file(&path);
            return Err(failed(e));
        }
        Netns::open(&path)
    }

    /// Removes a named namespace; processes still inside keep it alive until they exit.
    pub fn delete(name: &str) -> Result<(), NetnsError> {
        let path = Path::new(NETNS_DIR).join(plain_name(name)?);
        if !path.exists() {
            return Err(NetnsError::NotFound(path));
        }
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        std::fs::remove_file(&path).map_err(|source| NetnsError::Delete { path, source })
    }

    /// Names of the namespaces in `/run/netns`.
    pub fn list() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The namespace the calling thread is in.
    pub fn current() -> Result<Self, NetnsError> {
        Netns::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &Netns) -> Result<bool, NetnsError> {
        let stat = |ns: &Netns| {
            fstat(ns.file.as_fd()).map_err(|errno| NetnsError::Open {
                path: ns.path.clone(),
                source: errno.into(),
            })
        };
        let (a, b) = (stat(self)?, stat(other)?);
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    /// A command whose process starts inside this namespace (network only: mounts are left
    /// alone, unlike `ip netns exec`), as a runtime runs plugins from the host it serves.
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> io::Result<std::process::Command> {
        use std::os::unix::process::CommandExt;
        let fd = self.file.as_fd().try_clone_to_owned()?;
        let mut command = std::process::Command::new(program);
        // SAFETY: between fork and exec the closure only makes the setns(2) system call on a
        // descriptor opened before the fork; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || setns(&fd, CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
        }
        Ok(command)
    }

    /// Runs `f` inside this namespace, on the calling thread, and returns its value.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let home = Netns::current()?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Enter {
            path: self.path.clone(),
            source: errno.into(),
        })?;
        let _return = Return(home);
        Ok(f())
    }
}

/// Brings the thread back to its namespace when dropped, even while unwinding.
struct Return(Netns);

impl Drop for Return {
    fn drop(&mut self) {
        if let Err(errno) = setns(self.0.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "cannot return to network namespace {:?}: {errno}",
                self.0.path
            );
            std::process::abort();
        }
    }
}
