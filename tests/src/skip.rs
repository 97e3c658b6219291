//! Tests that cannot run say so, and are counted as skipped, never as passed.
//!
//! libtest has no run-time skip: a test that returns early is reported "ok". A skip is
//! therefore recorded beside libtest's report: [`skip`] appends `binary<TAB>test<TAB>reason`
//! to the file `FERROCNI_TEST_SKIPS` names, and `scripts/test.sh` (which sets it) moves every
//! test with a record from "passed" to "skipped" and lists the reasons. Without that variable
//! (a bare `cargo test`) the line goes straight to stderr, which libtest does not capture.
//!
//! Why not `#[ignore = "needs root"]` with `--include-ignored` as root: most of what a test
//! can lack is known only at run time (a reference plugin, a tool, a kernel feature), so the
//! record is needed anyway; and ignoring would make a root `cargo test` that forgot
//! `--include-ignored` leave the kernel tests out without a word. One mechanism covers both.
//!
//! Hard to misuse: every check that can find something missing records the skip itself
//! ([`is_root`], [`tools_installed`], [`crate::Impl::available`]), so no test can look and
//! forget to say; and the harness refuses to run a tool that is not installed
//! ([`assert_installed`]), so an oracle nobody checked for fails the test instead of
//! answering "nothing there" and letting it pass.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable naming the file skips are appended to.
pub const SKIPS_FILE: &str = "FERROCNI_TEST_SKIPS";

/// What nearly every kernel test runs through the harness (namespaces and links, the firewall
/// listings [`crate::Sandbox::assert_clean`] reads, busybox's ping, httpd and udhcpd), and the
/// firewall tools the plugins run. Checked by [`require_root!`](crate::require_root) rather
/// than declared by each test.
pub const SANDBOX_TOOLS: [&str; 6] = [
    "ip",
    "nft",
    "iptables",
    "iptables-save",
    "ip6tables-save",
    "busybox",
];

/// Records that the calling test did not run, or not all of it, and why. The caller then
/// returns (or leaves out the part that cannot run): the test is reported as skipped even
/// if what did run passed, because what it claims was not shown.
///
/// Must be called from the test's own thread: libtest names it after the test, and that
/// name is how `scripts/test.sh` finds the test in libtest's report.
pub fn skip(reason: &str) {
    let current = std::thread::current();
    let test = current
        .name()
        .filter(|name| *name != "main")
        .unwrap_or_else(|| panic!("skip({reason:?}) called outside a test's own thread"));
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // One record a line, three fields: a reason never carries a line break or a tab.
    let reason = reason.replace(['\n', '\t'], " ");
    match std::env::var_os(SKIPS_FILE) {
        Some(path) => {
            let line = format!("{binary}\t{test}\t{reason}\n");
            // One write(2) on an O_APPEND file: lines from tests running in parallel never
            // interleave.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .unwrap_or_else(|e| panic!("cannot record a skip in {path:?}: {e}"));
        }
        None => {
            // Not through eprintln!, which libtest captures and shows only for failures.
            let _ = writeln!(std::io::stderr(), "!!!! SKIPPED {test}: {reason}");
        }
    }
}

/// Whether the test runs as root (needed for namespaces); records a skip when not.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip("needs root to create network namespaces");
    }
    root
}

/// Whether every one of `tools` (a name looked up in `PATH`, or a path) is installed;
/// records a skip naming the missing ones when not.
pub fn tools_installed(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| find(tool).is_none())
        .collect();
    if !missing.is_empty() {
        skip(&format!(
            "needs {}: not installed (scripts/test.sh installs what the tests use, as root)",
            missing.join(", ")
        ));
    }
    missing.is_empty()
}

/// Panics unless `program` is installed. Every tool the harness runs passes here, so a test
/// that did not declare a tool it needs fails where the tool is missing (an empty listing or
/// a failed probe would otherwise read as "nothing there" and pass).
pub fn assert_installed(program: &Path) {
    let name = program.to_string_lossy();
    assert!(
        find(&name).is_some(),
        "{name} is not installed: a test that needs it says so first (require_tools!, or \
         require_reference! or Impl::Reference.available for a reference plugin), so that it is \
         skipped where it is missing (scripts/test.sh installs it)"
    );
}

/// Where `tool` is: itself when it holds a `/`, else the first executable of that name in
/// `PATH` (the one `ip netns exec` and `Command` would run).
fn find(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        let path = PathBuf::from(tool);
        return executable(&path).then_some(path);
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(tool))
        .find(|path| executable(path))
}

/// Skips the calling test (returns) unless it can run kernel tests: root, and the tools of
/// [`SANDBOX_TOOLS`].
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::skip::is_root() || !$crate::skip::tools_installed(&$crate::skip::SANDBOX_TOOLS)
        {
            return;
        }
    };
}

/// Skips the calling test (returns) unless every tool named is installed: for the tools a
/// test needs beyond [`SANDBOX_TOOLS`] (curl, python3, etcd, podman, ...).
#[macro_export]
macro_rules! require_tools {
    ($($tool:expr),+ $(,)?) => {
        if !$crate::skip::tools_installed(&[$($tool),+]) {
            return;
        }
    };
}

/// `require_root!`, and strace to inject faults with.
#[macro_export]
macro_rules! require_fault_injection {
    () => {
        $crate::require_root!();
        $crate::require_tools!($crate::STRACE);
    };
}

/// Skips the calling test (returns) unless the reference `plugin` is installed: for a test
/// that is a comparison and nothing else.
#[macro_export]
macro_rules! require_reference {
    ($plugin:expr) => {
        if !$crate::Impl::Reference.available($plugin) {
            return;
        }
    };
}
