//! The skeleton's side of the protocol: the reference's fixed sentences (clients and the
//! reference's own tests compare them), bytes that are not UTF-8, namespaces that are not
//! network namespaces, and a DEL pointed at the plugin's own namespace.

use ferrocni_tests::{
    require_root, reserved_ips, with_previous, Call, Impl, NetnsGuard, Outcome, Sandbox, TempDir,
};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The reference's list of versions as Go's `%q` prints a `[]string`.
fn go_quoted(versions: &[&str]) -> String {
    let quoted: Vec<String> = versions.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

fn loopback_conf(version: Option<&str>) -> Value {
    let mut config = json!({"name": "protonet", "type": "loopback"});
    if let Some(version) = version {
        config["cniVersion"] = json!(version);
    }
    config
}

/// What, verb, config, a variable to set, the reference's `msg`, code.
type Row = (
    &'static str,
    &'static str,
    Value,
    Option<(&'static str, &'static str)>,
    &'static str,
    u64,
);

/// One failing request, run through ours and, where the reference speaks it, the reference.
struct Case {
    what: &'static str,
    plugin: &'static str,
    command: &'static str,
    config: Value,
    env: Vec<(&'static str, String)>,
    /// The reference's exact `msg`.
    msg: String,
    code: u64,
    /// Debian's reference answers this request the same way (it predates GC and STATUS and
    /// speaks no 1.1.0, so it has nothing to say about those).
    differential: bool,
}

impl Case {
    fn run(&self, implementation: Impl, host: &NetnsGuard, container: &NetnsGuard) -> Outcome {
        let mut call = Call::new(implementation, self.plugin, self.command)
            .attachment("proto", &container.path_str(), "eth0")
            .stdin(&self.config);
        for (key, value) in &self.env {
            call = call.env(key, value);
        }
        call.run_in(host)
    }
}

#[test]
fn fixed_sentences_are_the_references() {
    require_root!();
    let host = NetnsGuard::new("fpro");
    let container = NetnsGuard::new("fprc");
    let store = TempDir::new("proto");
    let ours_supported = go_quoted(&ferrocni_tests::VERSIONS);
    let v = |version| loopback_conf(Some(version));
    let loopback: [Row; 16] = [
        (
            "CHECK under 0.3.1",
            "CHECK",
            v("0.3.1"),
            None,
            "config version does not allow CHECK",
            1,
        ),
        (
            "CHECK without a version",
            "CHECK",
            loopback_conf(None),
            None,
            "config version does not allow CHECK",
            1,
        ),
        (
            "CHECK newer than any",
            "CHECK",
            v("9.9.9"),
            None,
            "plugin version does not allow CHECK",
            1,
        ),
        (
            "CHECK unknown in range",
            "CHECK",
            v("0.4.5"),
            None,
            "incompatible CNI versions",
            1,
        ),
        (
            "ADD under an unknown version",
            "ADD",
            v("9.9.9"),
            None,
            "incompatible CNI versions",
            1,
        ),
        (
            "DEL under a malformed version",
            "DEL",
            v("1.0"),
            None,
            "incompatible CNI versions",
            1,
        ),
        (
            "an unknown verb",
            "FROB",
            v("1.0.0"),
            None,
            "unknown CNI_COMMAND: FROB",
            4,
        ),
        (
            "no network name",
            "ADD",
            json!({"cniVersion": "1.0.0"}),
            None,
            "missing network name",
            7,
        ),
        (
            "a slash in the network name",
            "ADD",
            json!({"cniVersion": "1.0.0", "name": "a/b"}),
            None,
            "invalid characters found in network name",
            7,
        ),
        (
            "a space in the container ID",
            "ADD",
            v("1.0.0"),
            Some(("CNI_CONTAINERID", "bad id")),
            "invalid characters in containerID",
            4,
        ),
        (
            "a long interface name",
            "ADD",
            v("1.0.0"),
            Some(("CNI_IFNAME", "averyveryverylongname")),
            "interface name is too long",
            4,
        ),
        (
            "interface name ..",
            "ADD",
            v("1.0.0"),
            Some(("CNI_IFNAME", "..")),
            "interface name is . or ..",
            4,
        ),
        (
            "a colon in the interface name",
            "ADD",
            v("1.0.0"),
            Some(("CNI_IFNAME", "eth0:1")),
            "interface name contains / or : or whitespace characters",
            4,
        ),
        // Debian's reference predates GC and STATUS: these are the sentences of its library
        // from 1.2 on, where they came.
        (
            "GC under 1.0.0",
            "GC",
            v("1.0.0"),
            None,
            "config version does not allow GC",
            1,
        ),
        (
            "STATUS under 0.4.0",
            "STATUS",
            v("0.4.0"),
            None,
            "config version does not allow STATUS",
            1,
        ),
        (
            "GC newer than any",
            "GC",
            v("9.9.9"),
            None,
            "plugin version does not allow GC",
            1,
        ),
    ];
    let mut cases: Vec<Case> = loopback
        .into_iter()
        .map(|(what, command, config, variable, msg, code)| Case {
            what,
            plugin: "loopback",
            command,
            config,
            env: variable
                .map(|(k, v)| (k, v.to_string()))
                .into_iter()
                .collect(),
            msg: msg.to_string(),
            code,
            differential: !matches!(command, "GC" | "STATUS"),
        })
        .collect();
    let two_ranges =
        |a, b| json!({"dataDir": store.path_str(), "ranges": [[{"subnet": a}], [{"subnet": b}]]});
    for (plugin, version, ipam) in [
        (
            "host-local",
            "0.1.0",
            two_ranges("10.97.0.0/24", "10.98.0.0/24"),
        ),
        (
            "host-local",
            "0.2.0",
            two_ranges("fd00:97::/64", "fd00:98::/64"),
        ),
        (
            "static",
            "0.2.0",
            json!({"addresses": [{"address": "10.97.0.5/24"}, {"address": "10.98.0.5/24"}]}),
        ),
    ] {
        let mut ipam = ipam;
        ipam["type"] = json!(plugin);
        cases.push(Case {
            what: plugin,
            plugin,
            command: "ADD",
            config: json!({"cniVersion": version, "name": "protonet", "type": "bridge", "ipam": ipam}),
            env: Vec::new(),
            msg: format!("CNI version {version} does not support more than 1 address per family"),
            // The reference answers 999, a plain error; the config is what is wrong.
            code: 7,
            differential: true,
        });
    }
    let differential = Impl::Reference.available("loopback");
    for case in &cases {
        let ours = case.run(Impl::Ours, &host, &container).error();
        assert_eq!(ours["msg"], case.msg.as_str(), "{}: {ours}", case.what);
        assert_eq!(ours["code"], case.code, "{}: {ours}", case.what);
        if !(case.differential && differential) {
            continue;
        }
        let theirs = case.run(Impl::Reference, &host, &container).error();
        assert_eq!(
            theirs["msg"], ours["msg"],
            "{}: reference {theirs}",
            case.what
        );
        if case.plugin == "loopback" {
            assert_eq!(
                theirs["code"], ours["code"],
                "{}: reference {theirs}",
                case.what
            );
        }
    }
    assert!(reserved_ips(&store.path().join("protonet")).is_empty());

    // Our detail goes to `details`: for a version mismatch, the reference's own wording.
    let ours = cases[4].run(Impl::Ours, &host, &container).error();
    assert_eq!(
        ours["details"],
        format!("config is \"9.9.9\", plugin supports {ours_supported}"),
        "{ours}"
    );
    let check = cases[0].run(Impl::Ours, &host, &container).error();
    assert!(
        check["details"]
            .as_str()
            .is_some_and(|d| d.contains("0.3.1") && d.contains("0.4.0")),
        "the details name the config's version and the minimum: {check}"
    );
    let too_many = cases[16].run(Impl::Ours, &host, &container).error();
    assert!(
        too_many["details"]
            .as_str()
            .is_some_and(|d| d.contains("ipam.ranges")),
        "the details name the field: {too_many}"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_invalid_not_missing() {
    require_root!();
    let host = NetnsGuard::new("fpro");
    let container = NetnsGuard::new("fprc");
    let add = || {
        Call::new(Impl::Ours, "loopback", "ADD")
            .attachment("proto", &container.path_str(), "lo")
            .stdin(loopback_conf(Some("1.0.0")))
    };
    let garbage = OsStr::from_bytes(b"ab\xffcd");

    let error = add()
        .env_os("CNI_CONTAINERID", garbage)
        .run_in(&host)
        .error();
    assert_eq!(error["code"], 4, "{error}");
    assert_eq!(error["msg"], "invalid characters in containerID", "{error}");
    assert!(
        error["details"]
            .as_str()
            .is_some_and(|d| d.contains("not valid UTF-8")),
        "{error}"
    );

    let error = add().env_os("CNI_IFNAME", garbage).run_in(&host).error();
    assert_eq!(error["code"], 4, "{error}");
    assert_eq!(error["msg"], "interface name is not valid UTF-8", "{error}");

    let error = add().env_os("CNI_COMMAND", garbage).run_in(&host).error();
    assert_eq!(error["code"], 4, "{error}");
    assert!(
        error["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("unknown CNI_COMMAND: ")),
        "{error}"
    );
    assert!(!container.link_is_up("lo"), "nothing was configured");
}

#[test]
fn a_namespace_of_another_kind_is_named_as_such() {
    require_root!();
    let host = NetnsGuard::new("fpro");
    for (path, kind) in [
        ("/proc/self/ns/mnt", "a mount namespace"),
        ("/proc/self/ns/uts", "a UTS namespace"),
    ] {
        for command in ["ADD", "CHECK"] {
            let error = Call::new(Impl::Ours, "loopback", command)
                .attachment("proto", path, "lo")
                .stdin(loopback_conf(Some("1.0.0")))
                .run_in(&host)
                .error();
            assert_eq!(error["code"], 8, "{command} {path}: {error}");
            let text = format!("{} {}", error["msg"], error["details"]);
            assert!(
                text.contains("is not a network namespace") && text.contains(kind),
                "{command} {path}: {error}"
            );
        }
    }
}

/// A runtime that lost track of a container may hand DEL a path that now names the
/// runtime's (and so the plugin's) own namespace. DEL must release what the attachment held
/// and must not touch the interfaces of that namespace; ADD and CHECK must still refuse.
#[test]
fn del_pointed_at_the_plugins_own_namespace_cleans_up_without_touching_it() {
    require_root!();
    for backend in ["nftables", "iptables"] {
        let host = Sandbox::new("bridge", "protonet");
        let config = host.conf(
            "1.0.0",
            json!([[{"subnet": "10.99.0.0/24"}]]),
            json!({"bridge": "protobr0", "isGateway": true, "ipMasq": true,
                   "ipMasqBackend": backend}),
        );
        let container = NetnsGuard::new("fprc");
        let result = host
            .call(Impl::Ours, "ADD", "own", &container, &config)
            .success();
        assert_eq!(host.reserved().len(), 1);
        // An interface of the plugin's own namespace under the attachment's name.
        host.ns.exec_ok(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "ownpeer0",
        ]);
        let previous = with_previous(&config, &result);
        let own = |command: &str| {
            Call::new(Impl::Ours, "bridge", command)
                .attachment("own", &host.ns.path_str(), "eth0")
                .stdin(&previous)
                .run_in(&host.ns)
        };
        own("DEL").success();
        assert!(
            host.reserved().is_empty(),
            "{backend}: the address is released"
        );
        assert!(
            host.ns.links().iter().any(|l| l == "eth0"),
            "{backend}: DEL removed an interface of its own namespace"
        );
        assert!(
            container.links().iter().any(|l| l == "eth0"),
            "{backend}: the container's namespace was not named, so it is left alone"
        );
        for command in ["ADD", "CHECK"] {
            let error = own(command).error();
            assert_eq!(error["code"], 8, "{command}: {error}");
            assert_eq!(
                error["msg"], "plugin's netns and netns from CNI_NETNS should not be the same",
                "{command}: {error}"
            );
        }
        host.ns.exec_ok(&["ip", "link", "del", "eth0"]);
        drop(container);
        host.assert_clean(&["protobr0"]);
    }
}

/// `CNI_ARGS` where a plugin reads them (host-local and static read `IP` and `GATEWAY`):
/// what the reference tolerates is tolerated, with the same outcome. A repeated key takes
/// its last value and an empty value counts as absent, as Go's `LoadArgs` assigns.
#[test]
fn cni_args_where_ipam_reads_them_as_the_reference() {
    require_root!();
    let host = NetnsGuard::new("fpro");
    let container = NetnsGuard::new("fprc");
    let implementations: &[Impl] = if Impl::Reference.available("host-local") {
        &[Impl::Ours, Impl::Reference]
    } else {
        &[Impl::Ours]
    };
    let host_local = |store: &TempDir| {
        json!({"cniVersion": "1.0.0", "name": "protonet", "type": "bridge",
               "ipam": {"type": "host-local", "dataDir": store.path_str(),
                        "ranges": [[{"subnet": "10.100.0.0/24"}]]}})
    };
    let fixed = json!({"cniVersion": "1.0.0", "name": "protonet", "type": "bridge",
                       "ipam": {"type": "static",
                                "addresses": [{"address": "10.100.1.5/24"}]}});
    let cases: [(&str, &str, &str); 7] = [
        ("host-local", "IP=", "10.100.0.2/24"),
        ("host-local", "IP=10.100.0.5;IP=10.100.0.6", "10.100.0.6/24"),
        ("host-local", "IP=10.100.0.5;IP=", "10.100.0.2/24"),
        (
            "host-local",
            "IgnoreUnknown=1;IP=10.100.0.7;K8S_POD_NAME=web",
            "10.100.0.7/24",
        ),
        (
            "static",
            "IP=10.100.2.5/24;IP=10.100.2.6/24",
            "10.100.1.5/24 10.100.2.6/24",
        ),
        ("static", "IP=", "10.100.1.5/24"),
        ("static", "GATEWAY=", "10.100.1.5/24"),
    ];
    for (i, (plugin, args, addresses)) in cases.iter().enumerate() {
        for &implementation in implementations {
            let store = TempDir::new("proto");
            let config = if *plugin == "static" {
                fixed.clone()
            } else {
                host_local(&store)
            };
            let id = format!("args{i}");
            let result = Call::new(implementation, plugin, "ADD")
                .attachment(&id, &container.path_str(), "eth0")
                .env("CNI_ARGS", args)
                .stdin(&config)
                .run_in(&host)
                .success();
            let got: Vec<&str> = result["ips"]
                .as_array()
                .map(|ips| ips.iter().filter_map(|ip| ip["address"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(
                got.join(" "),
                *addresses,
                "{implementation:?} {plugin} {args:?}: {result}"
            );
        }
    }

    // Text that is no list of pairs fails a plugin that reads it, as in the reference ...
    let store = TempDir::new("proto");
    let config = host_local(&store);
    for &implementation in implementations {
        Call::new(implementation, "host-local", "ADD")
            .attachment("argsbad", &container.path_str(), "eth0")
            .env("CNI_ARGS", "none")
            .stdin(&config)
            .run_in(&host)
            .error();
    }
    Call::new(Impl::Ours, "host-local", "ADD")
        .attachment("argsbad", &container.path_str(), "eth0")
        .env("CNI_ARGS", "IgnoreUnknown=1;none")
        .stdin(&config)
        .run_in(&host)
        .assert_error(4, "\"none\" is not a KEY=VALUE pair");
    // ... but never a DEL, which reads no argument: the reservation goes.
    Call::new(Impl::Ours, "host-local", "ADD")
        .attachment("argsdel", &container.path_str(), "eth0")
        .stdin(&config)
        .run_in(&host)
        .success();
    Call::new(Impl::Ours, "host-local", "DEL")
        .attachment("argsdel", &container.path_str(), "eth0")
        .env("CNI_ARGS", "none")
        .stdin(&config)
        .run_in(&host)
        .success();
    assert!(reserved_ips(&store.path().join("protonet")).is_empty());
}
