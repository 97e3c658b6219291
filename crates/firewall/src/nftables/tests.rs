//! What each feature's entries become in the tables: the elements, their owner's name on
//! them, and how listed elements are picked by owner.

use ipnetwork::IpNetwork;
use serde_json::json;

use super::scheme::{manifest, owned_by, stale_in};
use super::{elements, portmap, scheme, Owner, PORTMAP};
use crate::entry::{Entry, PortMap, PortMapping, Protocol, Snat};
use cni::{AttachmentId, ValidAttachments};
use kernel::netlink::nftables::{Data, Element};
use kernel::netlink::MacAddr;

fn net(text: &str) -> IpNetwork {
    text.parse().expect("a valid literal")
}

fn owner() -> AttachmentId {
    AttachmentId::new("net", "abc", "eth0")
}

/// The elements of `entries` as (map, key as nft writes it, value as nft writes it).
fn written(entries: &[Entry]) -> Vec<(String, String, String)> {
    let entries: Vec<&Entry> = entries.iter().collect();
    let named = Owner::new(&owner(), &entries);
    let elements = elements(&named, &entries);
    for element in &elements {
        assert_eq!(element.comment.as_deref(), Some("net:abc:eth0"));
    }
    elements
        .iter()
        .map(|e| {
            let data = e.data.as_ref().map(Data::to_string).unwrap_or_default();
            (e.set.clone(), e.key.to_string(), data)
        })
        .collect()
}

fn row(map: &str, key: &str, data: &str) -> (String, String, String) {
    (map.to_string(), key.to_string(), data.to_string())
}

/// The value of the owner's elements in maps that serve as sets.
fn tag() -> String {
    Data::Mark(scheme::owner_tag(&owner())).to_string()
}

#[test]
fn masquerade_claims_each_address_and_exempts_its_subnet() {
    let entries = Entry::masquerade(&[net("10.88.0.5/16"), net("fd00::5/64")]);
    assert_eq!(
        written(&entries),
        [
            row("snat4", "10.88.0.5", &tag()),
            row("local4", "10.88.0.5 . 10.88.0.0/16", &tag()),
            row("snat6", "fd00::5", &tag()),
            row("local6", "fd00::5 . fd00::/64", &tag()),
        ]
    );
}

#[test]
fn forwarding_and_spoof_checking_claim_addresses_and_ports() {
    let entries = Entry::forward(&[net("10.88.0.5/16"), net("fd00::5/64")]);
    assert_eq!(
        written(&entries),
        [
            row("allowed4", "10.88.0.5", &tag()),
            row("allowed6", "fd00::5", &tag())
        ]
    );
    let spoofcheck = [Entry::SpoofCheck {
        port: "veth1".to_string(),
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
    }];
    assert_eq!(
        written(&spoofcheck),
        [
            row("spoofing", "veth1", &tag()),
            row("sources", "veth1 . 02:00:00:00:00:01", &tag()),
        ]
    );
}

fn port_map(target: &str, host_ip: Option<&str>, snat: Snat, conditions: &[&str]) -> Entry {
    Entry::PortMap(PortMap {
        mapping: PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: host_ip.map(|ip| ip.parse().expect("a valid literal")),
        },
        target: net(target),
        snat,
        conditions: conditions.iter().map(|c| c.to_string()).collect(),
    })
}

#[test]
fn a_port_map_targets_the_container_and_marks_hairpin_sources() {
    let entries = [
        port_map("10.88.0.5/16", None, Snat::Local, &[]),
        port_map("fd00::5/64", Some("fd00::1"), Snat::Local, &[]),
    ];
    assert_eq!(
        written(&entries),
        [
            row("dnat4", "0.0.0.0/0 . tcp . 8080", "10.88.0.5 . 80"),
            row("hairpin4", "0.0.0.0/0 . tcp . 8080 . 10.88.0.0/16", &tag()),
            row("hairpin4", "0.0.0.0/0 . tcp . 8080 . 127.0.0.1", &tag()),
            row("dnat6", "fd00::1 . tcp . 8080", "fd00::5 . 80"),
            row("hairpin6", "fd00::1 . tcp . 8080 . fd00::/64", &tag()),
        ]
    );
    let all = [port_map("10.88.0.5/16", None, Snat::All, &[])];
    assert_eq!(
        written(&all)[1],
        row("hairpin4", "0.0.0.0/0 . tcp . 8080 . 0.0.0.0/0", &tag())
    );
    let off = [port_map("10.88.0.5/16", None, Snat::Off, &[])];
    assert_eq!(written(&off).len(), 1);
    // Host ports belong to one container; hairpin keys are taken over when stale.
    assert!(PORTMAP.exclusive.contains(&"dnat4") && !PORTMAP.exclusive.contains(&"hairpin4"));
}

#[test]
fn conditions_put_an_owners_port_maps_behind_a_chain_of_its_own() {
    let entries = [
        port_map(
            "10.88.0.5/16",
            None,
            Snat::Local,
            &["ip", "saddr", "10.0.0.0/8"],
        ),
        port_map("fd00::5/64", None, Snat::Local, &[]),
    ];
    let refs: Vec<&Entry> = entries.iter().collect();
    let chain = portmap::chain(&owner(), &refs).expect("a chain");
    assert!(chain.starts_with("pm-"), "{chain}");
    let jump = format!("jump {chain}");
    assert_eq!(
        written(&entries),
        [
            row("dnat4", "0.0.0.0/0 . tcp . 8080", "10.88.0.5 . 80"),
            row("filtered4", "0.0.0.0/0 . tcp . 8080", &jump),
            row("dnat6", "::/0 . tcp . 8080", "fd00::5 . 80"),
            row("filtered6", "::/0 . tcp . 8080", &jump),
        ]
    );
    let maps: Vec<&PortMap> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::PortMap(map) => Some(map),
            _ => None,
        })
        .collect();
    assert_eq!(
        portmap::conditional_rules(&maps),
        [
            "ip saddr 10.0.0.0/8 meta l4proto 6 th dport 8080 ip saddr 10.88.0.0/16 meta mark set meta mark | 0x2000",
            "ip saddr 10.0.0.0/8 meta l4proto 6 th dport 8080 ip saddr 127.0.0.1 meta mark set meta mark | 0x2000",
            "ip saddr 10.0.0.0/8 meta l4proto 6 th dport 8080 dnat ip to 10.88.0.5:80",
            " meta l4proto 6 th dport 8080 ip6 saddr fd00::/64 meta mark set meta mark | 0x2000",
            " meta l4proto 6 th dport 8080 dnat ip6 to [fd00::5]:80",
            "accept",
        ]
    );
    let plain: Vec<&Entry> = entries[1..].iter().collect();
    assert_eq!(portmap::chain(&owner(), &plain), None);
}

#[test]
fn a_manifest_names_the_owner_and_exactly_its_elements() {
    let id = owner();
    let one = written_elements(&Entry::masquerade(&[net("10.88.0.5/16")]));
    let other = written_elements(&Entry::masquerade(&[net("10.88.0.6/16")]));
    let (a, b) = (manifest(&id, &one), manifest(&id, &other));
    assert_eq!(a.set, "manifests");
    assert_eq!(a.data, Some(Data::Mark(scheme::owner_tag(&id))));
    assert_ne!(a.key, b.key);
    assert_eq!(a, manifest(&id, &one));
    let elsewhere = AttachmentId::new("net", "abd", "eth0");
    assert_ne!(a.key, manifest(&elsewhere, &one).key);
}

fn written_elements(entries: &[Entry]) -> Vec<Element> {
    let entries: Vec<&Entry> = entries.iter().collect();
    elements(&Owner::new(&owner(), &entries), &entries)
}

fn commented(comment: Option<&str>) -> Element {
    Element {
        comment: comment.map(str::to_string),
        ..written_elements(&Entry::forward(&[net("10.88.0.5/16")]))[0].clone()
    }
}

#[test]
fn listed_elements_are_found_by_their_owner_in_every_form() {
    let ours = owned_by(&owner());
    assert!(ours(&commented(Some("net:abc:eth0"))));
    assert!(ours(&commented(Some("net/abc/eth0"))));
    assert!(!ours(&commented(Some("net:abcd:eth0"))));
    assert!(!ours(&commented(None)));
    let valid = ValidAttachments::of_request(
        &json!({"cni.dev/valid-attachments": [{"containerID": "abc", "ifname": "eth0"}]}),
        "net",
    )
    .expect("a valid list");
    let stale = stale_in(&valid);
    assert!(stale(&commented(Some("net:gone:eth0"))));
    assert!(stale(&commented(Some("net/gone/eth0"))));
    assert!(!stale(&commented(Some("net:abc:eth0"))));
    assert!(!stale(&commented(Some("net/abc/eth0"))));
    assert!(!stale(&commented(Some("other:gone:eth0"))));
    assert!(!stale(&commented(None)));
}
