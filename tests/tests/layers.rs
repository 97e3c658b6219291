//! The crates' layering, as the workspace's manifests declare it: every dependency between
//! the workspace's packages must be one this table allows. Cargo already refuses a circle;
//! this refuses an edge that points up or sideways (the kernel layer reaching for the
//! firewall, a plugin using another plugin's code), which would compile.

use std::collections::BTreeMap;

/// The library crates, bottom layer first, each with the crates it may use: only layers
/// below its own.
const LIBRARIES: [(&str, &[&str]); 7] = [
    ("ferrocni-cni", &[]),
    ("ferrocni-kernel", &["ferrocni-cni"]),
    ("ferrocni-firewall", &["ferrocni-cni", "ferrocni-kernel"]),
    ("ferrocni-ipam", &["ferrocni-cni", "ferrocni-kernel"]),
    (
        "netlib",
        &["ferrocni-cni", "ferrocni-kernel", "ferrocni-firewall"],
    ),
    (
        "ferrocni-overlay",
        &["ferrocni-cni", "ferrocni-kernel", "netlib"],
    ),
    (
        "ferrocni-names",
        &["ferrocni-cni", "ferrocni-kernel", "netlib"],
    ),
];

/// Binaries: each may use any library crate, and the plugins' own libraries only as listed
/// (vxlan runs the bridge plugin). xtask compiles cnictl's and the agent's command-line
/// definitions from their sources, not as crates.
const BINARIES: [(&str, &[&str]); 18] = [
    ("bandwidth", &[]),
    ("bridge", &[]),
    ("dnsname", &[]),
    ("ferrocni-dns", &[]),
    ("firewall", &[]),
    ("host-device", &[]),
    ("loopback", &[]),
    ("macvlan", &[]),
    ("portmap", &[]),
    ("ptp", &[]),
    ("tuning", &[]),
    ("vxlan", &["bridge"]),
    ("dhcp", &[]),
    ("host-local", &[]),
    ("static", &[]),
    ("cnictl", &[]),
    ("ferrocni-agent", &[]),
    ("xtask", &[]),
];

/// The black-box tests and the fuzz checks read the plugins' libraries too.
const TESTS: (&str, &[&str]) = ("ferrocni-tests", &["bridge", "tuning"]);

/// What each workspace package may depend on among the workspace's packages.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let libraries: Vec<&str> = LIBRARIES.iter().map(|(name, _)| *name).collect();
    let mut allowed: BTreeMap<&str, Vec<&str>> = LIBRARIES
        .iter()
        .map(|(name, below)| (*name, below.to_vec()))
        .collect();
    for (name, plugins) in BINARIES.iter().chain([&TESTS]) {
        let mut may = libraries.clone();
        may.extend_from_slice(plugins);
        allowed.insert(name, may);
    }
    allowed
}

/// Each workspace package and the workspace packages it depends on, from the manifests.
fn declared() -> BTreeMap<String, Vec<String>> {
    let metadata = ferrocni_tests::workspace_metadata();
    let packages = metadata["packages"].as_array().expect("a package list");
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("a name").to_string();
            let uses = package["dependencies"]
                .as_array()
                .expect("a dependency list")
                .iter()
                .filter_map(|d| d["name"].as_str())
                .filter(|d| ours.contains(d))
                .map(str::to_string)
                .collect();
            (name, uses)
        })
        .collect()
}

#[test]
fn every_dependency_between_the_crates_points_down() {
    let allowed = allowed();
    let mut wrong = Vec::new();
    for (package, uses) in declared() {
        let Some(may) = allowed.get(package.as_str()) else {
            wrong.push(format!(
                "{package} is in no layer: add it to tests/tests/layers.rs"
            ));
            continue;
        };
        for dependency in uses {
            if !may.contains(&dependency.as_str()) {
                wrong.push(format!("{package} must not depend on {dependency}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_library_layers_only_look_down() {
    for (layer, (name, below)) in LIBRARIES.iter().enumerate() {
        for dependency in *below {
            let at = LIBRARIES.iter().position(|(n, _)| n == dependency);
            assert!(
                at.is_some_and(|at| at < layer),
                "{name} may use {dependency}, which is no layer below it"
            );
        }
    }
}
