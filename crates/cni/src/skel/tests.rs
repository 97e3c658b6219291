use super::*;

fn sentence(command: Command, config: &str) -> Option<String> {
    verb_allowed(command, config, &Version::ALL)
        .err()
        .map(|e| e.to_string())
}

#[test]
fn later_verbs_are_checked_in_the_references_order() {
    let too_old = Some("config version does not allow CHECK".to_string());
    assert_eq!(sentence(Command::Check, "0.3.1"), too_old);
    assert_eq!(sentence(Command::Check, ""), too_old);
    assert_eq!(
        sentence(Command::Check, "9.9.9").as_deref(),
        Some("plugin version does not allow CHECK")
    );
    assert_eq!(
        sentence(Command::Gc, "1.0.0").as_deref(),
        Some("config version does not allow GC")
    );
    assert_eq!(
        sentence(Command::Status, "0.4.0").as_deref(),
        Some("config version does not allow STATUS")
    );
    // Left to the exact match that follows: known, unknown in range, or no number.
    for allowed in ["0.4.0", "1.1.0", "0.4.5", "abc"] {
        assert_eq!(sentence(Command::Check, allowed), None, "{allowed}");
    }
    // ADD and DEL exist in every version.
    assert_eq!(sentence(Command::Add, "0.1.0"), None);
    assert_eq!(sentence(Command::Del, "9.9.9"), None);
}

/// A plugin that records what each verb is called with and answers as told.
#[derive(Default)]
struct Recorder {
    calls: std::cell::RefCell<Vec<String>>,
    /// Every verb fails with this when set.
    failure: Option<fn() -> Error>,
}

impl Recorder {
    fn failing(failure: fn() -> Error) -> Recorder {
        Recorder {
            failure: Some(failure),
            ..Recorder::default()
        }
    }

    fn record(&self, call: String) -> Result<()> {
        self.calls.borrow_mut().push(call);
        self.failure.map_or(Ok(()), |failure| Err(failure()))
    }

    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

fn called(verb: &str, request: &Request, attachment: &Attachment) -> String {
    format!(
        "{verb} {} {} {:?} {:?}",
        request.version,
        attachment.id,
        attachment.netns,
        attachment.raw_args()
    )
}

impl Plugin for Recorder {
    fn about(&self) -> &'static str {
        "a recorder"
    }

    fn supported_versions(&self) -> &'static [Version] {
        &Version::ALL[2..]
    }

    fn add(&self, request: &Request, attachment: &Attachment) -> Result<CniResult> {
        self.record(called("ADD", request, attachment))?;
        Ok(CniResult {
            ips: vec![crate::IpConfig {
                interface: None,
                address: "10.1.0.5/24".parse().expect("an address"),
                gateway: None,
            }],
            ..CniResult::default()
        })
    }

    fn del(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        self.record(called("DEL", request, attachment))
    }

    fn check(&self, request: &Request, attachment: &Attachment) -> Result<()> {
        self.record(called("CHECK", request, attachment))
    }

    fn gc(&self, request: &Request, valid: &ValidAttachments) -> Result<()> {
        let kept = valid.contains(&AttachmentId::new("net", "a", "eth0"));
        self.record(format!(
            "GC {} {} keeps a: {kept}",
            request.version,
            valid.network()
        ))
    }

    fn status(&self, request: &Request) -> Result<()> {
        self.record(format!("STATUS {}", request.version))
    }
}

const NETNS: &str = "/var/run/netns/ferrocni-skel-test";

/// What the process would print and its exit code, for `env` and `stdin`.
fn run(plugin: &Recorder, env: &[(&str, &str)], stdin: &str) -> (String, i32) {
    let env = |key: &str| {
        env.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| OsString::from(v))
            .filter(|v| !v.is_empty())
    };
    printed(dispatch(plugin, &[], &env, &mut stdin.as_bytes()))
}

/// The environment of `verb` for container `a`'s `eth0`, as a runtime sets it.
fn env(verb: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_COMMAND", verb),
        ("CNI_CONTAINERID", "a"),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K=V"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn config(version: &str) -> String {
    format!(r#"{{"cniVersion": "{version}", "name": "net", "type": "recorder"}}"#)
}

fn error_object(printed: &str) -> Value {
    serde_json::from_str(printed).expect("an error object")
}

#[test]
fn add_prints_the_result_in_the_configs_version() {
    let plugin = Recorder::default();
    let (printed, code) = run(&plugin, &env("ADD"), &config("1.0.0"));
    assert_eq!(code, 0);
    assert_eq!(
        printed,
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"}],"dns":{}}"#
    );
    let (printed, _) = run(&plugin, &env("ADD"), &config("0.3.1"));
    assert_eq!(
        printed,
        r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.5/24"}],"dns":{}}"#
    );
    assert_eq!(
        plugin.calls(),
        [
            format!("ADD 1.0.0 net:a:eth0 Some({NETNS:?}) \"IgnoreUnknown=1;K=V\""),
            format!("ADD 0.3.1 net:a:eth0 Some({NETNS:?}) \"IgnoreUnknown=1;K=V\""),
        ]
    );
}

#[test]
fn del_check_gc_and_status_print_nothing_when_they_succeed() {
    let plugin = Recorder::default();
    let mut del = env("DEL");
    del.retain(|(key, _)| *key != "CNI_NETNS");
    assert_eq!(run(&plugin, &del, &config("1.0.0")), (String::new(), 0));
    assert_eq!(
        run(&plugin, &env("CHECK"), &config("0.4.0")),
        (String::new(), 0)
    );
    let gc = r#"{"cniVersion": "1.1.0", "name": "net", "type": "recorder",
        "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}"#;
    assert_eq!(run(&plugin, &env("GC"), gc), (String::new(), 0));
    assert_eq!(
        run(&plugin, &env("STATUS"), &config("1.1.0")),
        (String::new(), 0)
    );
    assert_eq!(
        plugin.calls(),
        [
            "DEL 1.0.0 net:a:eth0 None \"IgnoreUnknown=1;K=V\"".to_string(),
            format!("CHECK 0.4.0 net:a:eth0 Some({NETNS:?}) \"IgnoreUnknown=1;K=V\""),
            "GC 1.1.0 net keeps a: true".to_string(),
            "STATUS 1.1.0".to_string(),
        ]
    );
}

#[test]
fn version_answers_without_the_plugin_and_no_command_prints_nothing() {
    let plugin = Recorder::default();
    let (printed, code) = run(
        &plugin,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion": "0.4.0"}"#,
    );
    assert_eq!(code, 0);
    let answer: Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(answer["cniVersion"], "0.4.0");
    assert_eq!(answer["supportedVersions"][0], "0.3.0");
    let (printed, _) = run(
        &plugin,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion": "0.2.0"}"#,
    );
    let answer: Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(
        answer["cniVersion"],
        Version::LATEST.as_str(),
        "not one we speak"
    );
    assert_eq!(run(&plugin, &[], ""), (String::new(), 0), "run by hand");
    assert!(plugin.calls().is_empty());
}

#[test]
fn a_missing_variable_is_named_and_the_plugin_never_called() {
    let plugin = Recorder::default();
    let mut add = env("ADD");
    add.retain(|(key, _)| !matches!(*key, "CNI_NETNS" | "CNI_IFNAME"));
    let (printed, code) = run(&plugin, &add, &config("1.0.0"));
    assert_eq!(code, 1);
    let error = error_object(&printed);
    assert_eq!(error["code"], 4);
    let msg = error["msg"].as_str().expect("a message");
    assert!(
        msg.contains("CNI_NETNS") && msg.contains("CNI_IFNAME"),
        "{msg}"
    );
    assert!(plugin.calls().is_empty());
}

#[test]
fn bad_input_gets_the_error_object_of_its_kind() {
    let plugin = Recorder::default();
    let code_of = |env: &[(&str, &str)], stdin: &str| {
        let (printed, exit) = run(&plugin, env, stdin);
        assert_eq!(exit, 1, "{printed}");
        error_object(&printed)["code"].as_u64().expect("a code")
    };
    assert_eq!(code_of(&env("FROB"), &config("1.0.0")), 4, "unknown verb");
    assert_eq!(code_of(&env("ADD"), "{not json"), 6, "garbled config");
    assert_eq!(code_of(&env("ADD"), "[]"), 7, "not an object");
    assert_eq!(
        code_of(&env("ADD"), &config("0.2.0")),
        1,
        "unsupported version"
    );
    assert_eq!(
        code_of(&env("CHECK"), &config("0.3.1")),
        1,
        "CHECK before 0.4.0"
    );
    let mut bad_ifname = env("ADD");
    bad_ifname[3] = ("CNI_IFNAME", "eth0/1");
    assert_eq!(code_of(&bad_ifname, &config("1.0.0")), 4, "interface name");
    let mut own = env("ADD");
    own[2] = ("CNI_NETNS", "/proc/self/ns/net");
    assert_eq!(
        code_of(&own, &config("1.0.0")),
        8,
        "the plugin's own namespace"
    );
    assert!(plugin.calls().is_empty());
}

#[test]
fn del_in_the_plugins_own_namespace_goes_on_without_it() {
    let plugin = Recorder::default();
    let mut del = env("DEL");
    del[2] = ("CNI_NETNS", "/proc/self/ns/net");
    assert_eq!(run(&plugin, &del, &config("1.0.0")), (String::new(), 0));
    assert_eq!(
        plugin.calls(),
        ["DEL 1.0.0 net:a:eth0 None \"IgnoreUnknown=1;K=V\""]
    );
}

#[test]
fn a_plugins_failure_is_printed_with_its_code_in_the_configs_version() {
    let plugin =
        Recorder::failing(|| crate::Failure::NotReadyYet("the daemon is starting".into()).into());
    let (printed, code) = run(&plugin, &env("ADD"), &config("1.0.0"));
    assert_eq!(code, 1);
    assert_eq!(
        error_object(&printed),
        serde_json::json!({
            "cniVersion": "1.0.0",
            "code": 11,
            "msg": "the daemon is starting",
        })
    );
}
