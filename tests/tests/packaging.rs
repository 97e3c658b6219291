//! What ships: every binary of the workspace is in `packaging/binaries`; `scripts/release.sh`
//! makes a tarball and a Debian package of this build with their checksums; the tarball's
//! install.sh installs from it; the package installs into a scratch root beside Debian's
//! containernetworking-plugins (a stand-in with the same file names) without clobbering it,
//! its plugins run from there, and removing it gives the reference its files back. The
//! systemd units pass `systemd-analyze verify`; the man pages and completions are sound.

use ferrocni_tests::{
    our_bin_dir, profile_dir, require_root, require_tools, shipped, shipped_plugins,
    workspace_metadata, Call, NetnsGuard, TempDir,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A new binary in the workspace is shipped only once it is listed: this says so.
#[test]
fn every_binary_of_the_workspace_is_shipped() {
    let metadata = workspace_metadata();
    let mut binaries: Vec<String> = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        // The tests' own tools and the release chores are not shipped.
        if matches!(package["name"].as_str(), Some("ferrocni-tests" | "xtask")) {
            continue;
        }
        for target in package["targets"].as_array().expect("targets") {
            if target["kind"]
                .as_array()
                .is_some_and(|k| k.contains(&json!("bin")))
            {
                binaries.push(target["name"].as_str().expect("a name").to_string());
            }
        }
    }
    binaries.sort();
    let mut listed: Vec<String> = shipped().into_iter().map(|(name, _)| name).collect();
    listed.sort();
    assert_eq!(binaries, listed, "packaging/binaries lists every binary");
    for (name, kind) in shipped() {
        assert!(
            ["plugin", "server", "tool"].contains(&kind.as_str()),
            "{name}: kind {kind}"
        );
    }
}

/// The architecture name of this machine, as the artefacts spell it (Go's).
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no release for {other}"),
    }
}

/// The artefacts of this build, made by scripts/release.sh into `out`.
fn release(out: &Path) -> (PathBuf, PathBuf) {
    run(Command::new("bash")
        .arg(repo().join("scripts/release.sh"))
        .arg("--from")
        .arg(our_bin_dir())
        .args(["--arch", std::env::consts::ARCH, "--fast", "--out"])
        .arg(out)
        .env("XTASK", profile_dir().join("xtask")));
    let version = env!("CARGO_PKG_VERSION");
    (
        out.join(format!("ferrocni-linux-{}-v{version}.tgz", goarch())),
        out.join(format!("ferrocni_{version}_{}.deb", goarch())),
    )
}

/// What every artefact must hold besides the binaries, as paths below its root.
const DOCS: [&str; 8] = [
    "completions/bash/cnictl",
    "completions/zsh/_cnictl",
    "completions/fish/cnictl.fish",
    "completions/bash/ferrocni-agent",
    "completions/zsh/_ferrocni-agent",
    "completions/fish/ferrocni-agent.fish",
    "man/man1/cnictl.1",
    "man/man8/ferrocni-agent.8",
];
const UNITS: [&str; 3] = [
    "cni-dhcp.socket",
    "cni-dhcp.service",
    "ferrocni-agent.service",
];

/// The tarball and the package, with checksums that check, hold every binary, the units,
/// the completions and the man pages; the tarball's install.sh installs from beside itself.
#[test]
fn release_artefacts_hold_everything_with_their_checksums() {
    require_tools!(
        "dpkg-deb",
        "readelf",
        "sha256sum",
        "sha512sum",
        "tar",
        "gzip"
    );
    let out = TempDir::new("release");
    let (tarball, deb) = release(out.path());
    for artefact in [&tarball, &deb] {
        for (tool, suffix) in [("sha256sum", "sha256"), ("sha512sum", "sha512")] {
            let sums = artefact.with_extension(format!(
                "{}.{suffix}",
                artefact.extension().and_then(|e| e.to_str()).unwrap_or("")
            ));
            assert!(sums.is_file(), "{sums:?}");
            run(Command::new(tool)
                .arg("-c")
                .arg(&sums)
                .current_dir(out.path()));
        }
    }

    let listing = text(&run(Command::new("tar").arg("tzf").arg(&tarball)));
    let top = format!(
        "ferrocni-linux-{}-v{}/",
        goarch(),
        env!("CARGO_PKG_VERSION")
    );
    let mut wanted: Vec<String> = shipped()
        .into_iter()
        .map(|(name, _)| format!("bin/{name}"))
        .collect();
    wanted.extend(UNITS.iter().map(|u| format!("systemd/{u}")));
    wanted.extend(DOCS.iter().map(|d| d.to_string()));
    wanted.extend(["install.sh".to_string(), "binaries".to_string()]);
    for path in &wanted {
        assert!(
            listing.lines().any(|l| l == format!("{top}{path}")),
            "{path} in the tarball:\n{listing}"
        );
    }
    let unpacked = TempDir::new("untar");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(unpacked.path()));
    let root = TempDir::new("tarroot");
    run(Command::new("bash")
        .arg(unpacked.path().join(&top).join("install.sh"))
        .args(["--root", &root.path_str(), "--conflist", "none"]));
    for (name, kind) in shipped() {
        let dir = if kind != "tool" {
            "opt/cni/bin"
        } else {
            "usr/local/bin"
        };
        assert!(root.path().join(dir).join(&name).is_file(), "{name}");
    }

    let contents = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let mut wanted: Vec<String> = shipped()
        .into_iter()
        .map(|(name, kind)| match kind.as_str() {
            "tool" => format!("./usr/bin/{name}"),
            _ => format!("./usr/lib/cni/{name}"),
        })
        .collect();
    wanted.extend(UNITS.iter().map(|u| format!("./lib/systemd/system/{u}")));
    wanted.extend([
        "./usr/share/man/man1/cnictl.1.gz".to_string(),
        "./usr/share/man/man8/ferrocni-agent.8.gz".to_string(),
        "./usr/share/bash-completion/completions/ferrocni-agent".to_string(),
        "./usr/share/zsh/vendor-completions/_cnictl".to_string(),
        "./usr/share/fish/vendor_completions.d/cnictl.fish".to_string(),
    ]);
    for path in &wanted {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} in the package:\n{contents}"
        );
    }
    let control = text(&run(Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .args(["Package", "Architecture", "Depends"])));
    assert!(control.contains("Package: ferrocni\n"), "{control}");
    assert!(control.contains("Depends: libc6 (>= 2."), "{control}");
}

/// An empty dpkg database at `root`.
fn scratch_root(root: &Path) {
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).expect("dpkg dirs");
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).expect("dpkg dirs");
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
}

/// `dpkg --root ROOT ARGS`, running the maintainer scripts without chroot (they honour
/// DPKG_ROOT); dependencies are not installed in a scratch root.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--log=/dev/null",
            "--force-script-chrootless",
            "--force-depends",
        ])
        .args(args))
}

/// A stand-in for Debian's containernetworking-plugins: a bridge and an ipvlan of its own,
/// and its cni-dhcp.service, at the reference's paths.
fn reference_package(dir: &Path) -> PathBuf {
    let stage = dir.join("stage");
    let cni = stage.join("usr/lib/cni");
    let units = stage.join("lib/systemd/system");
    for d in [&cni, &units, &stage.join("DEBIAN")] {
        std::fs::create_dir_all(d).expect("stage dirs");
    }
    for plugin in ["bridge", "ipvlan"] {
        let path = cni.join(plugin);
        std::fs::write(&path, format!("#!/bin/sh\necho reference {plugin}\n")).expect("write");
        run(Command::new("chmod").arg("0755").arg(&path));
    }
    std::fs::write(units.join("cni-dhcp.service"), "[Unit]\n").expect("write");
    std::fs::write(
        stage.join("DEBIAN/control"),
        "Package: containernetworking-plugins\nVersion: 1.1.1+ds1-3\nArchitecture: all\n\
         Maintainer: ferrocni tests <tests@invalid>\nDescription: a stand-in\n",
    )
    .expect("control");
    let deb = dir.join("reference.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&stage)
        .arg(&deb));
    deb
}

/// Ours: a binary, where the stand-in's are scripts.
fn is_elf(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x7fELF"))
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The package installed into a scratch root after the reference: the reference's files of
/// the same names are diverted, not overwritten, its other plugins stay; plugins run from
/// the root (bridge delegating to its host-local); removal gives the reference its files
/// back. Installed before the reference, the reference's files land beside ours.
#[test]
fn the_package_installs_beside_the_reference_and_its_plugins_run_from_there() {
    require_root!();
    require_tools!("dpkg", "dpkg-deb", "dpkg-divert", "readelf", "tar", "gzip");
    let out = TempDir::new("release");
    let (_, deb) = release(out.path());
    let deb = deb.display().to_string();
    let reference = reference_package(out.path());
    let reference = reference.display().to_string();

    let root = TempDir::new("dpkgroot");
    scratch_root(root.path());
    dpkg(root.path(), &["-i", &reference]);
    dpkg(root.path(), &["-i", &deb]);
    let cni = root.path().join("usr/lib/cni");
    for plugin in shipped_plugins() {
        assert!(cni.join(&plugin).is_file(), "{plugin} installed");
    }
    assert_eq!(
        read(&cni.join("bridge.containernetworking-plugins")),
        "#!/bin/sh\necho reference bridge\n"
    );
    assert!(read(&cni.join("ipvlan")).contains("reference ipvlan"));
    assert!(is_elf(&cni.join("bridge")), "ours in place");
    let units = root.path().join("lib/systemd/system");
    assert!(units
        .join("cni-dhcp.service.containernetworking-plugins")
        .is_file());
    assert!(read(&units.join("cni-dhcp.service")).contains("ExecStart=/usr/lib/cni/dhcp daemon"));
    assert!(
        read(&units.join("ferrocni-agent.service")).contains("ExecStart=/usr/bin/ferrocni-agent")
    );
    let diversions = text(&run(Command::new("dpkg-divert")
        .arg("--root")
        .arg(root.path())
        .arg("--list")));
    assert!(
        diversions.contains(
            "diversion of /usr/lib/cni/bridge to /usr/lib/cni/bridge.containernetworking-plugins by ferrocni"
        ),
        "{diversions}"
    );

    // Run from the root, as a runtime configured with /usr/lib/cni would.
    let host = NetnsGuard::new("fpkg");
    let container = NetnsGuard::new("fpkc");
    let loopback = Call::binary(&cni.join("loopback"), "ADD")
        .attachment("pkg1", &container.path_str(), "lo")
        .stdin(json!({"cniVersion": "1.1.0", "name": "lo", "type": "loopback"}))
        .run_in(&host)
        .success();
    assert_eq!(loopback["interfaces"][0]["name"], "lo");
    let store = TempDir::new("pkgipam");
    let conf = json!({"cniVersion": "1.1.0", "name": "pkgnet", "type": "bridge",
        "bridge": "pkgbr0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.161.0.0/24",
                 "dataDir": store.path_str()}});
    let added = Call::binary(&cni.join("bridge"), "ADD")
        .env("CNI_PATH", &cni.display().to_string())
        .attachment("pkg2", &container.path_str(), "eth0")
        .stdin(&conf)
        .run_in(&host)
        .success();
    assert_eq!(added["ips"][0]["address"], "10.161.0.2/24");
    Call::binary(&cni.join("bridge"), "DEL")
        .env("CNI_PATH", &cni.display().to_string())
        .attachment("pkg2", &container.path_str(), "eth0")
        .stdin(&conf)
        .run_in(&host)
        .success();
    let version = run(Command::new(root.path().join("usr/bin/cnictl")).arg("--version"));
    assert_eq!(
        text(&version),
        format!("cnictl {}\n", env!("CARGO_PKG_VERSION"))
    );

    dpkg(root.path(), &["-r", "ferrocni"]);
    assert_eq!(
        read(&cni.join("bridge")),
        "#!/bin/sh\necho reference bridge\n"
    );
    assert!(!cni.join("bridge.containernetworking-plugins").exists());
    assert!(!cni.join("vxlan").exists());
    assert!(units.join("cni-dhcp.service").is_file());
    let left = text(&run(Command::new("dpkg-divert")
        .arg("--root")
        .arg(root.path())
        .arg("--list")));
    assert_eq!(left, "", "diversions left");

    // The other order: ours stays in place, the reference's goes beside it.
    let other = TempDir::new("dpkgroot");
    scratch_root(other.path());
    dpkg(other.path(), &["-i", &deb]);
    dpkg(other.path(), &["-i", &reference]);
    let cni = other.path().join("usr/lib/cni");
    assert!(is_elf(&cni.join("bridge")), "ours in place");
    assert!(read(&cni.join("bridge.containernetworking-plugins")).contains("reference bridge"));
}

/// The units as systemd reads them (systemd-analyze verify, with ExecStart pointing at this
/// build's binaries): no unknown key, no bad value.
#[test]
fn the_units_pass_systemd_analyze_verify() {
    require_tools!("systemd-analyze");
    let dir = TempDir::new("units");
    let bin = our_bin_dir().display().to_string();
    let mut paths = Vec::new();
    for unit in UNITS {
        let text =
            std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).expect("unit");
        let text = text
            .replace("/opt/cni/bin/", &format!("{bin}/"))
            .replace("/usr/local/bin/", &format!("{bin}/"));
        let path = dir.path().join(unit);
        std::fs::write(&path, text).expect("write");
        paths.push(path);
    }
    let verified = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(verified.status.success() && said.is_empty(), "{said}");
}

/// The man pages render without a warning and the bash completions parse.
#[test]
fn man_pages_and_completions_are_sound() {
    require_tools!("groff", "bash");
    let dir = TempDir::new("docs");
    run(Command::new(profile_dir().join("xtask"))
        .arg("docs")
        .arg(dir.path()));
    for page in ["man/man1/cnictl.1", "man/man8/ferrocni-agent.8"] {
        let linted = run(Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(dir.path().join(page)));
        assert!(
            linted.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&linted.stderr)
        );
    }
    for completion in ["completions/bash/cnictl", "completions/bash/ferrocni-agent"] {
        run(Command::new("bash")
            .arg("-n")
            .arg(dir.path().join(completion)));
    }
}
