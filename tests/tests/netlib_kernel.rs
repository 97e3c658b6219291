//! The kernel layer used directly: namespaces, netlink and sysctls stay inside the
//! namespace they are aimed at; and the skeleton's last line of defence against panics.

use ferrocni_tests::{profile_dir, require_root, Call, NetnsGuard};
use kernel::netlink::{Bridge, LinkBuilder, MacAddr, Netlink};
use kernel::netns::{Netns, NetnsError};
use kernel::sysctl;

#[test]
fn netlink_opened_in_a_namespace_acts_only_there() {
    require_root!();
    let container = NetnsGuard::new("fkn");
    let netns = Netns::open(container.path()).expect("opens");
    let mut netlink = Netlink::open_in(&netns).expect("socket inside");
    let lo = netlink.link("lo").expect("every namespace has lo");
    assert!(!lo.up);
    netlink.set_link_up(lo.index, true).expect("set up");
    assert!(
        container.link_is_up("lo"),
        "the change landed in the container namespace"
    );
    let addresses = netlink.addresses(lo.index).expect("dump");
    assert!(
        addresses.iter().any(|a| a.to_string() == "127.0.0.1/8"),
        "{addresses:?}"
    );
    assert!(netlink
        .link_by_name("nosuchlink0")
        .expect("lookup")
        .is_none());
    assert!(netlink.link("nosuchlink0").is_err());
    netlink.set_link_up(lo.index, false).expect("set down");
    assert!(!container.link_is_up("lo"));
}

#[test]
fn an_address_dump_names_one_link_and_leaves_the_socket_as_it_was() {
    require_root!();
    let container = NetnsGuard::new("fka");
    let netns = Netns::open(container.path()).expect("opens");
    let mut netlink = Netlink::open_in(&netns).expect("socket inside");
    let mut bridge = |name: &str, address: &str| {
        let link = netlink
            .ensure_bridge(&LinkBuilder::new(name, Bridge::default()).mac(MacAddr::random()))
            .expect("bridge");
        netlink
            .add_address(link.index, address.parse().expect("address"), true)
            .expect("add address");
        link.index
    };
    let (first, second) = (
        bridge("fka0", "10.81.0.1/24"),
        bridge("fka1", "10.82.0.1/24"),
    );
    let v4 = |addresses: Vec<ipnetwork::IpNetwork>| -> Vec<String> {
        addresses
            .iter()
            .filter(|a| a.is_ipv4())
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        v4(netlink.addresses(first).expect("dump")),
        ["10.81.0.1/24"]
    );
    assert_eq!(
        v4(netlink.addresses(second).expect("dump")),
        ["10.82.0.1/24"]
    );
    // The dump turns strict checking on for itself only: a route lookup, which the strict
    // parser refuses, still works on the same socket.
    let via = netlink
        .output_link("10.82.0.9".parse().expect("address"))
        .expect("route lookup after a dump");
    assert_eq!(via, Some(second));
    netlink.delete_link(second).expect("delete");
    assert!(netlink.addresses(second).expect("gone link").is_empty());
}

/// A `nodad` IPv6 address answers neighbour solicitations only once the kernel's work item
/// has joined its solicited-node group: right after the netlink ACK it usually has not.
#[test]
fn a_new_ipv6_address_is_resolvable_once_awaited() {
    require_root!();
    let container = NetnsGuard::new("fks");
    let netns = Netns::open(container.path()).expect("opens");
    let mut netlink = Netlink::open_in(&netns).expect("socket inside");
    let link = netlink
        .ensure_bridge(&LinkBuilder::new("fks0", Bridge::default()).mac(MacAddr::random()))
        .expect("bridge");
    for host in 1..=20u16 {
        let address: ipnetwork::IpNetwork =
            format!("fd00:83::{host:x}/64").parse().expect("address");
        netlink
            .add_address(link.index, address, true)
            .expect("add address");
        let joined = netns
            .run(|| {
                netlib::iface::await_solicited_node_groups(link.index, &[address])
                    .expect("joined within the deadline");
                std::fs::read_to_string("/proc/thread-self/net/igmp6").expect("igmp6")
            })
            .expect("enter");
        let group = format!("ff0200000000000000000001ff0000{host:02x}");
        assert!(
            joined.lines().any(|line| line.contains(&group)
                && line.split_whitespace().next() == Some(&link.index.to_string())),
            "{group} on {}:\n{joined}",
            link.index
        );
    }
}

#[test]
fn sysctls_inside_a_namespace_do_not_touch_the_host() {
    require_root!();
    let container = NetnsGuard::new("fks");
    let before = sysctl::get("net.ipv4.ip_forward").expect("host value");
    let netns = Netns::open(container.path()).expect("opens");
    let inside = netns
        .run(|| {
            sysctl::set("net.ipv4.ip_forward", "1")?;
            sysctl::get("net/ipv4/ip_forward")
        })
        .expect("entered")
        .expect("sysctl works inside");
    assert_eq!(inside, "1");
    assert_eq!(
        sysctl::get("net.ipv4.ip_forward").expect("host value"),
        before
    );
    assert!(sysctl::get("net.ipv4.no_such_key").is_err());
}

#[test]
fn namespace_paths_are_checked() {
    require_root!();
    let container = NetnsGuard::new("fkp");
    assert!(matches!(
        Netns::open("/run/netns/ferrocni-missing"),
        Err(NetnsError::NotFound(_))
    ));
    assert!(matches!(
        Netns::open("/etc/hostname"),
        Err(NetnsError::NotANetns { .. })
    ));
    let a = Netns::open(container.path()).expect("opens");
    let b = Netns::open(container.path()).expect("opens twice");
    assert!(a.same_as(&b).expect("stat"));
    assert!(!a.same_as(&Netns::current().expect("own")).expect("stat"));
    // The calling thread is inside during run() and back in its own namespace after it,
    // also when the code inside panics.
    let own = Netns::current().expect("own");
    let inside = a
        .run(|| Netns::current().expect("inside").same_as(&b).expect("stat"))
        .expect("entered");
    assert!(inside);
    assert!(Netns::current().expect("own").same_as(&own).expect("stat"));
    let panicked = std::panic::catch_unwind(|| a.run(|| panic!("inside")));
    assert!(panicked.is_err());
    assert!(Netns::current().expect("own").same_as(&own).expect("stat"));
}

#[test]
fn a_panicking_plugin_still_answers_with_error_json() {
    require_root!();
    let fixture = profile_dir().join("examples").join("panicking_plugin");
    assert!(fixture.is_file(), "cargo test builds examples: {fixture:?}");
    let host = NetnsGuard::new("fkx");
    let container = NetnsGuard::new("fkc");
    let outcome = Call::binary(&fixture, "ADD")
        .attachment("boom", &container.path_str(), "eth0")
        .stdin(r#"{"cniVersion":"1.0.0","name":"n","type":"panicking_plugin"}"#)
        .run_in(&host);
    assert_ne!(outcome.code, 0);
    let error = outcome.json();
    assert_eq!(error["code"], 999);
    assert!(
        error["msg"]
            .as_str()
            .expect("msg")
            .contains("deliberate test panic"),
        "{error}"
    );
}

/// What `netlink::nftables` writes is what nft itself would have: `nft list` reads every
/// element back in nft syntax, and `nftables::list` reads the same elements back; exclusive
/// keys refuse a second owner, a key mapped to another value refuses too until destroyed,
/// and the keyed delete leaves nothing.
#[test]
fn nftables_batches_read_back_in_nft_syntax() {
    use kernel::netlink::nftables::{self, Batch, Data, Element, Family, Field, Key};
    require_root!();
    let container = NetnsGuard::new("fkn");
    container.exec_ok(&[
        "nft",
        "add table inet t; \
         add chain inet t c; \
         add map inet t targets { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval; }; \
         add map inet t hairpins { type ipv6_addr . inet_proto . inet_service . ipv6_addr : mark; flags interval; }; \
         add map inet t locals { type ipv4_addr . ipv4_addr : mark; flags interval; }; \
         add map inet t ports { type ifname . ether_addr : mark; }; \
         add map inet t jumps { type ipv4_addr : verdict; }",
    ]);
    let netns = Netns::open(container.path()).expect("opens");
    let net = |text: &str| Field::Net(text.parse().expect("a valid network"));
    let ip = |text: &str| text.parse().expect("a valid address");
    let published = Key::interval(vec![net("0.0.0.0/0"), Field::Proto(6), Field::Port(8080)]);
    let elements = [
        (
            "targets",
            published.clone(),
            Data::Target(ip("10.88.0.5"), 80),
        ),
        (
            "hairpins",
            Key::interval(vec![
                net("::/0"),
                Field::Proto(17),
                Field::Port(53),
                net("fd00::7/64"),
            ]),
            Data::Mark(7),
        ),
        (
            "locals",
            Key::interval(vec![Field::Addr(ip("10.88.0.5")), net("10.88.0.0/16")]),
            Data::Mark(7),
        ),
        (
            "ports",
            Key::exact(vec![
                Field::Ifname("veth1".into()),
                Field::Mac([2, 0, 0, 0, 0, 1]),
            ]),
            Data::Mark(7),
        ),
        (
            "jumps",
            Key::exact(vec![Field::Addr(ip("10.0.0.1"))]),
            Data::Jump("c".into()),
        ),
    ];
    let mut add = Batch::new(Family::Inet, "t");
    for (map, key, data) in &elements {
        add.add_element(map, key, Some(data), Some("net/id/eth0"), *map == "targets");
    }
    netns
        .run(|| add.commit())
        .expect("entered")
        .expect("commits");

    let listed = container.exec(&["nft", "list", "table", "inet", "t"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    for (_, key, data) in &elements {
        // Keys read as `nft -j` gives them; the text listing quotes interface names.
        let expected =
            format!("{key} comment \"net/id/eth0\" : {data}").replace("veth1", "\"veth1\"");
        assert!(listed.contains(&expected), "{expected:?} not in:\n{listed}");
    }
    let mut read = netns
        .run(|| nftables::list(Family::Inet, "t"))
        .expect("entered")
        .expect("lists");
    read.sort_by(|a, b| a.set.cmp(&b.set));
    let mut written: Vec<Element> = elements
        .iter()
        .map(|(map, key, data)| Element {
            set: map.to_string(),
            key: key.clone(),
            data: Some(data.clone()),
            comment: Some("net/id/eth0".to_string()),
        })
        .collect();
    written.sort_by(|a, b| a.set.cmp(&b.set));
    assert_eq!(read, written);

    let taken = netns
        .run(|| add.commit())
        .expect("entered")
        .expect_err("an exclusive key is refused");
    assert!(taken.already_exists(), "{taken}");
    let (map, key, _) = &elements[2];
    let mut other = Batch::new(Family::Inet, "t");
    other.add_element(
        map,
        key,
        Some(&Data::Mark(8)),
        Some("net/other/eth0"),
        false,
    );
    let refused = netns
        .run(|| other.commit())
        .expect("entered")
        .expect_err("a key mapped to another owner's tag is refused");
    assert!(refused.already_exists(), "{refused}");
    let mut take_over = Batch::new(Family::Inet, "t");
    take_over.destroy_element(map, key);
    take_over.add_element(
        map,
        key,
        Some(&Data::Mark(8)),
        Some("net/other/eth0"),
        false,
    );
    netns
        .run(|| take_over.commit())
        .expect("entered")
        .expect("a destroyed key can be added again in the same batch");

    let mut delete = Batch::new(Family::Inet, "t");
    for (map, key, data) in &elements {
        let data = if *map == "locals" {
            &Data::Mark(8)
        } else {
            data
        };
        delete.add_element(map, key, Some(data), Some("net/id/eth0"), false);
        delete.delete_element(map, key);
    }
    netns
        .run(|| delete.commit())
        .expect("entered")
        .expect("deletes");
    let listed = container.exec(&["nft", "list", "table", "inet", "t"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.contains("comment"), "{listed}");
    let left = netns.run(|| nftables::list(Family::Inet, "t"));
    assert_eq!(left.expect("entered").expect("lists"), []);
    let none = netns.run(|| nftables::list(Family::Inet, "absent"));
    assert_eq!(none.expect("entered").expect("no table, no elements"), []);
}

/// A batch of any size the kernel takes is one transaction: 60,000 elements commit; the same
/// batch again fails on every message, and the answer is the kernel's first error (EEXIST),
/// not a receive buffer that overflowed; a rule written over netlink reads back as nft
/// writes it, with an interface name holding nft syntax compared as data.
#[test]
fn nftables_batches_of_any_size_and_rules() {
    use kernel::netlink::nftables::{self, Batch, Data, Expr, Family, Field, Key};
    require_root!();
    let container = NetnsGuard::new("fkn");
    container.exec_ok(&[
        "nft",
        "add table inet t; \
         add set inet t names { type ifname; }; \
         add chain inet t c; \
         add map inet t owners { type ipv4_addr : mark; }",
    ]);
    let netns = Netns::open(container.path()).expect("opens");
    let mut many = Batch::new(Family::Inet, "t");
    for i in 0..60_000u32 {
        let address = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let key = Key::exact(vec![Field::Addr(address.into())]);
        many.add_element(
            "owners",
            &key,
            Some(&Data::Mark(i)),
            Some("n/id/eth0"),
            true,
        );
    }
    netns
        .run(|| many.commit())
        .expect("entered")
        .expect("a batch of 60,000 messages commits");
    let listed = container.exec(&["nft", "list", "map", "inet", "t", "owners"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.matches("comment \"n/id/eth0\"").count(), 60_000);
    // A dump of that many takes many datagrams.
    let read = netns
        .run(|| nftables::list(Family::Inet, "t"))
        .expect("entered")
        .expect("lists");
    assert_eq!(read.len(), 60_000);
    assert!(read
        .iter()
        .all(|e| e.comment.as_deref() == Some("n/id/eth0")));
    let again = netns
        .run(|| many.commit())
        .expect("entered")
        .expect_err("every key exists");
    assert!(again.already_exists(), "{again}");

    let bridge = r#"b"r;{#"#;
    let mut rule = Batch::new(Family::Inet, "t");
    let name = Field::Ifname(bridge.into());
    rule.add_element("names", &Key::exact(vec![name.clone()]), None, None, false);
    rule.add_rule(
        "c",
        &[
            Expr::LoadOifname,
            Expr::NotEqual(name),
            Expr::LoadOifname,
            Expr::InSet("names"),
            Expr::Drop,
        ],
    );
    netns
        .run(|| rule.commit())
        .expect("entered")
        .expect("commits");
    let listed = container.exec(&["nft", "list", "table", "inet", "t"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(r#"oifname != "b"r;{#" oifname @names drop"#),
        "{listed}"
    );
    assert!(listed.contains(r#"elements = { "b"r;{#" }"#), "{listed}");
}
