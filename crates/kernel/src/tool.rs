//! Running an external tool (nft, iptables-restore, tc, conntrack) where the kernel
//! interface it speaks has no client here: input on stdin, its output back, and a failure
//! that names the tool and what it said.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use cni::{Coded, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Failed {
        tool: &'static str,
        /// The exit code; none when a signal ended it.
        code: Option<i32>,
        stderr: String,
    },
}

impl Coded for ToolError {
    fn code(&self) -> ErrorCode {
        match self {
            ToolError::Spawn { .. } => ErrorCode::Io,
            ToolError::Failed { .. } => ErrorCode::Internal,
        }
    }
}

impl ToolError {
    /// The tool is not installed.
    pub fn is_missing(&self) -> bool {
        matches!(self, ToolError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Runs `tool` with `args` and `input` on stdin (none: stdin is empty), and returns its
/// stdout when it succeeds.
pub fn run(tool: &'static str, args: &[&str], input: Option<&[u8]>) -> Result<String, ToolError> {
    let spawn = |source| ToolError::Spawn { tool, source };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin.write_all(input).map_err(spawn)?;
    }
    let output = child.wait_with_output().map_err(spawn)?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
        // A tool killed (the OOM killer, a runtime's timeout) says nothing: say how it ended.
        let stderr = if said.is_empty() {
            format!("{} and no message", output.status)
        } else {
            said
        };
        return Err(ToolError::Failed {
            tool,
            code: output.status.code(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tool_that_dies_silently_is_reported_by_how_it_ended() {
        let failed = super::run("sh", &["-c", "kill -9 $$"], None).expect_err("killed");
        assert!(
            failed.to_string().contains("signal: 9"),
            "names the signal: {failed}"
        );
        let failed =
            super::run("sh", &["-c", "echo refused >&2; exit 3"], None).expect_err("fails");
        assert_eq!(failed.to_string(), "sh failed: refused");
    }

    #[test]
    fn input_goes_to_stdin_and_output_comes_back() {
        let said = super::run("cat", &[], Some(b"text")).expect("cat runs");
        assert_eq!(said, "text");
        let missing = super::run("/nonexistent/tool", &[], None).expect_err("no such tool");
        assert!(missing.is_missing(), "{missing}");
    }
}
