//! VERSION of every binary, and the skeleton's behaviour when run by hand.

use ferrocni_tests::{require_root, shipped_plugins, Call, Impl, NetnsGuard, VERSIONS};
use serde_json::json;

const BINARIES: [&str; 3] = ["loopback", "host-local", "static"];

#[test]
fn every_binary_reports_every_spec_version() {
    require_root!();
    let host = NetnsGuard::new("fver");
    for binary in BINARIES {
        let answer = Call::new(Impl::Ours, binary, "VERSION")
            .run_in(&host)
            .success();
        assert_eq!(answer["supportedVersions"], json!(VERSIONS), "{binary}");
        assert_eq!(answer["cniVersion"], "1.1.0", "{binary}");
        for version in VERSIONS {
            let echoed = Call::new(Impl::Ours, binary, "VERSION")
                .stdin(json!({"cniVersion": version}))
                .run_in(&host)
                .success();
            assert_eq!(
                echoed["cniVersion"], version,
                "{binary} echoes the asked version"
            );
        }
    }
}

/// Run by hand, every plugin says what it is, which release of ferrocni, and which spec
/// versions it speaks (the reference prints its own version there too).
#[test]
fn without_a_command_the_binary_describes_itself() {
    require_root!();
    let host = NetnsGuard::new("fver");
    let release = format!("ferrocni v{}", env!("CARGO_PKG_VERSION"));
    for binary in shipped_plugins() {
        let outcome = Call::new(Impl::Ours, &binary, "VERSION")
            .without_env("CNI_COMMAND")
            .run_in(&host);
        assert_eq!(outcome.code, 0, "{binary}");
        assert!(outcome.stdout.is_empty(), "{binary}");
        let mut lines = outcome.stderr.lines();
        assert!(
            lines.next().is_some_and(|about| about.starts_with("CNI ")),
            "{binary}: {}",
            outcome.stderr
        );
        assert_eq!(lines.next(), Some(release.as_str()), "{binary}");
        assert!(
            lines
                .next()
                .is_some_and(|l| l.starts_with("CNI protocol versions supported: ")),
            "{binary}: {}",
            outcome.stderr
        );
    }
}
