//! VERSION of every binary, and the skeleton's behaviour when run by hand.

use ferrocni_tests::{require_root, shipped_plugins, Call, Impl, NetnsGuard, VERSIONS};
use serde_json::json;

const BINARIES: [&str; 3] = ["loopback", "host-local", "static"];

/// Every shipped plugin answers VERSION (what `scripts/demo.sh` asks each one first).
#[test]
fn every_shipped_plugin_answers_version() {
    require_root!();
    let host = NetnsGuard::new("fver");
    for binary in shipped_plugins() {
        let answer = Call::new(Impl::Ours, &binary, "VERSION")
            .run_in(&host)
            .success();
        assert_eq!(answer["cniVersion"], "1.1.0", "{binary}");
    }
}

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

/// The servers installed beside the plugins (the DNS server dnsname starts), though no
/// plugins, say what they are and which release on `--help`, and refuse to run without
/// their network's directory.
#[test]
fn the_dns_server_describes_itself() {
    let servers: Vec<String> = ferrocni_tests::shipped()
        .into_iter()
        .filter(|(_, kind)| kind == "server")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(servers, ["ferrocni-dns"]);
    let server = ferrocni_tests::our_bin_dir().join(&servers[0]);
    let help = std::process::Command::new(&server)
        .arg("--help")
        .output()
        .expect("ferrocni-dns runs");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    let release = format!("ferrocni v{}", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with("ferrocni-dns: "), "{text}");
    assert!(text.lines().any(|l| l == release), "{text}");
    let bare = std::process::Command::new(&server)
        .output()
        .expect("ferrocni-dns runs");
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--dir is required"));
}
