//! Running another plugin (an IPAM plugin, or any delegate) the way libcni's `invoke`
//! package does: found on `CNI_PATH`, same environment with `CNI_COMMAND` set, the config on
//! stdin, its stderr passed through, its stdout parsed as a result or an error.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::cni::CniError;

/// libcni retries an exec that hits ETXTBSY (a binary still being written by an installer).
const TEXT_BUSY_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("failed to find plugin {plugin:?} in path {paths:?}")]
    NotFound { plugin: String, paths: Vec<PathBuf> },
    #[error("plugin type {0:?} is not a plain binary name")]
    BadName(String),
    #[error("cannot run plugin {path:?}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The delegate failed and said why in spec form; passed on unchanged.
    #[error(transparent)]
    Plugin(CniError),
    #[error("plugin {path:?} failed ({status}) without an error object: {output}")]
    Garbled {
        path: PathBuf,
        status: String,
        output: String,
    },
}

/// Finds `plugin` in the directories of `CNI_PATH`, first match wins.
pub fn find(plugin: &str, paths: &[PathBuf]) -> Result<PathBuf, InvokeError> {
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(InvokeError::BadName(plugin.to_string()));
    }
    paths
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| InvokeError::NotFound {
            plugin: plugin.to_string(),
            paths: paths.to_vec(),
        })
}

/// Splits a `CNI_PATH` value into directories.
pub fn split_path(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Runs the plugin at `path` with `stdin`, the caller's environment plus `env`, and returns
/// its stdout on success.
pub fn exec(path: &Path, stdin: &[u8], env: &[(&str, &str)]) -> Result<Vec<u8>, InvokeError> {
    let spawn_error = |source| InvokeError::Spawn {
        path: path.to_path_buf(),
        source,
    };
    let mut attempt = 0;
    let mut child = loop {
        attempt += 1;
        let spawned = Command::new(path)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_ATTEMPTS => {
                thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
            }
            other => break other.map_err(spawn_error)?,
        }
    };
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin may exit without reading stdin (VERSION does): EPIPE is not our error.
        if let Err(e) = pipe.write_all(stdin) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(spawn_error(e));
            }
        }
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    match serde_json::from_slice::<CniError>(&output.stdout) {
        Ok(error) => Err(InvokeError::Plugin(error)),
        Err(_) => Err(InvokeError::Garbled {
            path: path.to_path_buf(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        }),
    }
}
