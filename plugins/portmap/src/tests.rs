//! What portmap asks the firewall for, from its config and the container's addresses.

use super::*;
use serde_json::{json, Value};

fn conf(config: Value) -> Result<Conf> {
    Conf::from_raw(serde_json::from_value(config).expect("a config portmap decodes"))
}

fn net(text: &str) -> IpNetwork {
    text.parse().expect("a valid literal")
}

fn refused(config: Value) -> String {
    match conf(config) {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            assert_eq!(e.code(), cni::ErrorCode::InvalidConfig, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn iptables_options_are_typed_into_the_iptables_backend() {
    let bit = conf(json!({"backend": "iptables", "markMasqBit": 5})).expect("valid");
    assert_eq!(
        bit.backend,
        Backend::Iptables(Iptables {
            masquerade_mark: MasqueradeMark::Bit(5),
            ..Iptables::default()
        })
    );
    // An iptables option with no backend named picks iptables.
    let chain = conf(json!({"externalSetMarkChain": "KUBE-MARK-MASQ"})).expect("valid");
    assert_eq!(
        chain.backend,
        Backend::Iptables(Iptables {
            masquerade_mark: MasqueradeMark::Chain("KUBE-MARK-MASQ".to_string()),
            ..Iptables::default()
        })
    );
    let nft = conf(json!({"conditionsV4": ["ip", "saddr", "10.0.0.0/8"]})).expect("valid");
    assert_eq!(nft.backend, Backend::Nftables);
}

#[test]
fn an_option_of_the_other_backend_is_refused_by_name() {
    for (config, field) in [
        (
            json!({"backend": "nftables", "markMasqBit": 5}),
            "markMasqBit",
        ),
        (
            json!({"backend": "nftables", "externalSetMarkChain": "X"}),
            "externalSetMarkChain",
        ),
        (
            json!({"backend": "nftables", "conditionsV6": ["-s", "fd00::/8"]}),
            "conditionsV6",
        ),
        (
            json!({"backend": "iptables", "conditionsV4": ["ip", "saddr", "10.0.0.0/8"]}),
            "conditionsV4",
        ),
        (
            json!({"conditionsV4": ["-s", "10.0.0.0/8"], "conditionsV6": ["ip6", "saddr", "fd00::/8"]}),
            "conditionsV6",
        ),
    ] {
        let error = refused(config);
        assert!(error.contains(&format!("config: {field}:")), "{error}");
    }
}

#[test]
fn each_mapping_goes_to_each_target_of_its_family() {
    let conf = conf(json!({
        "backend": "nftables",
        "masqAll": true,
        "conditionsV6": ["ip6", "saddr", "fd00::/8"],
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80},
            {"hostPort": 53, "containerPort": 5353, "protocol": "UDP", "hostIP": "192.0.2.1"},
        ]},
    }))
    .expect("valid");
    let targets = [net("10.88.0.5/16"), net("fd00::5/64")];
    let entries = conf.entries(&targets);
    let seen: Vec<(u16, IpNetwork, Snat, usize)> = entries
        .iter()
        .map(|entry| match entry {
            Entry::PortMap(map) => (
                map.mapping.host_port,
                map.target,
                map.snat,
                map.conditions.len(),
            ),
            other => panic!("not a port map: {other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [
            (8080, targets[0], Snat::All, 0),
            (8080, targets[1], Snat::All, 3),
            (53, targets[0], Snat::All, 0),
        ]
    );
    let Entry::PortMap(udp) = &entries[2] else {
        panic!("not a port map")
    };
    assert_eq!(udp.mapping.protocol, Protocol::Udp);
    let off = Conf::from_raw(
        serde_json::from_value(json!({"backend": "nftables", "snat": false, "masqAll": true}))
            .expect("decodes"),
    )
    .expect("valid");
    assert_eq!(off.snat, Snat::Off);
}
