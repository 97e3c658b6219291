//! What the fuzz targets check, kept here so the workspace's clippy sees it and the seed
//! corpus replays through it in every `cargo test` (tests/tests/fuzz.rs); `fuzz/` only
//! wraps these functions in libFuzzer entry points.
//!
//! Both take the bytes a plugin would read: a network config on stdin, or a result (a
//! delegate's stdout, a prevResult). Any input may be refused, with a CNI error; none may
//! panic, and every result that decodes must survive a trip through every spec version.

use bridge::BridgeConf;
use cni::skel::{self, Attachment, Command, Plugin, Request};
use cni::{json, CniResult, Error, NetConfList, Result, ValidAttachments, Version};
use ipam::host_local::HostLocal;
use ipam::static_ipam::Static;
use netlib::attachment;
use serde_json::Value;

/// A network config, run through the plugin skeleton for each verb as a runtime would send
/// it, with a plugin whose every verb runs every shared config decoder (the libraries', and
/// the bridge and tuning plugins' readers, which are libraries too). The other decoders of
/// the plugin binaries are fuzzed through the binaries themselves (tests/tests/fuzz.rs).
pub fn config(data: &[u8]) {
    for command in [Command::Add, Command::Check, Command::Gc] {
        let env = |key: &str| {
            let value = match key {
                "CNI_COMMAND" => command.as_str(),
                "CNI_CONTAINERID" => "fuzz",
                // No such namespace: the skeleton's own-namespace check has nothing to open.
                "CNI_NETNS" => "/nonexistent/ferrocni-fuzz",
                "CNI_IFNAME" => "eth0",
                "CNI_PATH" => "/nonexistent",
                _ => return None,
            };
            Some(value.into())
        };
        match skel::dispatch(&Decoders, &[], &env, &mut &data[..]) {
            Ok(printed) => {
                // Whatever ADD prints must read back as a result of the version it names.
                if let Some(text) = printed {
                    let value: Value = serde_json::from_str(&text).expect("ADD prints JSON");
                    let back = CniResult::from_json(value, Version::V0_1_0);
                    back.expect("ADD's own output decodes");
                }
            }
            Err((error, version)) => {
                serde_json::to_string(&error.to_cni(version)).expect("errors serialize");
            }
        }
    }
    // cnictl reads a .conflist through the same decoder, without the skeleton.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let _ = json::from_value::<NetConfList>(value).map(|list| list.plugins.len());
    }
}

/// Decodes with each of the shared config readers, as a plugin's verbs do.
struct Decoders;

impl Decoders {
    fn decode(request: &Request, attachment: Option<&Attachment>) -> Result<CniResult> {
        // Each reader fails on its own: keep going so that every one sees the input.
        let mut outcome = CniResult::default();
        let mut failures: Vec<Error> = Vec::new();
        let mut note = |result: Result<()>| {
            if let Err(error) = result {
                failures.push(error);
            }
        };
        note(BridgeConf::load(request).map(drop));
        note(HostLocal::load(request, None).map(drop));
        note(Static::load(request, None).map(|conf| {
            let result = conf.result();
            round_trip(&result);
            outcome = result;
        }));
        if let Some(attachment) = attachment {
            note(attachment::requested_mac(request, attachment, None).map(drop));
        }
        note(
            ValidAttachments::of_request(&request.config, &request.conf.name)
                .map(|valid| check_attachments(&valid))
                .map_err(Error::from),
        );
        if let Some(sysctls) = request.config.get("sysctl").and_then(Value::as_object) {
            for key in sysctls.keys() {
                note(
                    tuning::sysctl_key(key, "eth0")
                        .map(drop)
                        .map_err(Error::from),
                );
            }
        }
        note(request.prev_result().map(|previous| {
            if let Some(previous) = previous {
                round_trip(&previous);
            }
        }));
        for error in &failures {
            serde_json::to_string(&error.to_cni(Some(request.version))).expect("errors serialize");
        }
        match failures.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(outcome),
        }
    }
}

/// The valid attachments as the dhcp plugin sends them to its daemon, and back.
fn check_attachments(valid: &ValidAttachments) {
    let text = serde_json::to_value(valid).expect("valid attachments serialize");
    let back: ValidAttachments = json::from_value(text).expect("valid attachments read back");
    assert_eq!(&back, valid);
}

impl Plugin for Decoders {
    fn about(&self) -> &'static str {
        "fuzz: every shared config decoder"
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        Self::decode(request, Some(attachment))
    }

    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        Self::decode(request, Some(attachment)).map(drop)
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        Self::decode(request, Some(attachment)).map(drop)
    }

    fn gc(&self, request: &Request, _valid: &ValidAttachments) -> Result<()> {
        Self::decode(request, None).map(drop)
    }

    fn status(&self, request: &Request) -> Result<()> {
        Self::decode(request, None).map(drop)
    }
}

/// A result as a delegate prints it or a runtime passes it as prevResult, read as each
/// version (a missing `cniVersion` takes the one given).
pub fn result(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for version in Version::ALL {
        if let Ok(result) = CniResult::from_json(value.clone(), version) {
            round_trip(&result);
        }
    }
}

/// Prints `result` in every version, reads it back, and checks that exactly what that
/// version can hold came through: all of it from 1.0.0 on, all but the 1.x interface fields
/// in 0.3.x and 0.4.0, the first address of each family with its family's routes in 0.1.0
/// and 0.2.0 (which cannot print a result without an address).
pub fn round_trip(result: &CniResult) {
    for version in Version::ALL {
        let printed = match result.to_json(version) {
            Ok(printed) => printed,
            Err(error) => {
                assert!(
                    version < Version::V0_3_0 && result.ips.is_empty(),
                    "{version} cannot print {result:?}: {error}"
                );
                continue;
            }
        };
        assert_eq!(printed["cniVersion"], version.as_str(), "{printed}");
        // Through text, as a runtime gets it; the stated version must win over the default.
        let text = printed.to_string();
        let reread: Value = serde_json::from_str(&text).expect("printed JSON parses");
        let back = CniResult::from_json(reread, Version::LATEST)
            .unwrap_or_else(|e| panic!("{version} reads back {text}: {e}"));
        assert_eq!(back, expected(result, version), "{version}: {text}");
        let again = back.to_json(version).expect("prints again");
        assert_eq!(again, printed, "{version} prints the same twice");
    }
}

/// What `version`'s layout keeps of `result`.
fn expected(result: &CniResult, version: Version) -> CniResult {
    if version >= Version::V1_0_0 {
        return result.clone();
    }
    if version >= Version::V0_3_0 {
        let mut kept = result.clone();
        for interface in &mut kept.interfaces {
            interface.mtu = None;
            interface.socket_path.clear();
            interface.pci_id.clear();
        }
        return kept;
    }
    let mut kept = CniResult {
        dns: result.dns.clone(),
        ..CniResult::default()
    };
    for v4 in [true, false] {
        let Some(first) = result.ips.iter().find(|ip| ip.address.is_ipv4() == v4) else {
            continue;
        };
        kept.ips.push(cni::IpConfig {
            interface: None,
            ..first.clone()
        });
        kept.routes.extend(
            result
                .routes
                .iter()
                .filter(|route| route.dst.is_ipv4() == v4)
                .map(|route| cni::Route::via(route.dst, route.gw)),
        );
    }
    kept
}
