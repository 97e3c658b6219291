//! netlib's kernel layer used directly: namespaces, netlink and sysctls stay inside the
//! namespace they are aimed at; and the skeleton's last line of defence against panics.

use ferrocni_tests::{profile_dir, require_root, Call, NetnsGuard};
use netlib::netlink::Netlink;
use netlib::netns::{Netns, NetnsError};
use netlib::sysctl;

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
        Err(NetnsError::NotANetns(_))
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
/// statement back in the syntax the rule was meant as, exclusive keys refuse a second owner,
/// and the keyed delete leaves nothing.
#[test]
fn nftables_batches_read_back_in_nft_syntax() {
    use netlib::netlink::nftables::{Batch, Family, Key, Stmt, Verdict};
    require_root!();
    let container = NetnsGuard::new("fkn");
    container.exec_ok(&[
        "nft",
        "add table inet t; add map inet t ports { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }",
    ]);
    let netns = Netns::open(container.path()).expect("opens");
    let net = |text: &str| text.parse().expect("a valid network");
    let key = Key::HostPort {
        host: None,
        ipv6: false,
        protocol: 6,
        port: 8080,
    };
    let mut add = Batch::new(Family::Inet, "t");
    add.add_chain("c");
    add.flush_chain("c");
    let published = [Stmt::L4Proto(6), Stmt::DestinationPort(8080)];
    let mut mark = published.to_vec();
    mark.extend([
        Stmt::daddr(net("10.1.2.3/32")),
        Stmt::saddr(net("10.88.0.7/16")),
        Stmt::SetMarkBits(0x2000),
    ]);
    add.add_rule("c", &mark);
    let mut dnat = published.to_vec();
    dnat.push(Stmt::Dnat("10.88.0.5".parse().expect("ip"), 80));
    add.add_rule("c", &dnat);
    add.add_rule(
        "c",
        &[Stmt::daddr_not(net("224.0.0.0/4")), Stmt::Masquerade],
    );
    add.add_rule(
        "c",
        &[
            Stmt::daddr(net("fd00::1/128")),
            Stmt::CtEstablishedOrRelated,
            Stmt::Verdict(Verdict::Accept),
        ],
    );
    add.add_rule(
        "c",
        &[
            Stmt::daddr(net("10.0.0.1/32")),
            Stmt::CtDnat,
            Stmt::Verdict(Verdict::Return),
        ],
    );
    add.add_element("ports", &key, "c", "net/id/eth0", true);
    netns
        .run(|| add.commit())
        .expect("entered")
        .expect("commits");

    let listed = container.exec(&["nft", "list", "table", "inet", "t"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    for expected in [
        "tcp dport 8080 ip daddr 10.1.2.3 ip saddr 10.88.0.0/16 meta mark set meta mark | 0x00002000",
        "tcp dport 8080 dnat ip to 10.88.0.5:80",
        "ip daddr != 224.0.0.0/4 masquerade",
        "ip6 daddr fd00::1 ct state established,related accept",
        "ip daddr 10.0.0.1 ct status dnat return",
        "0.0.0.0/0 . tcp . 8080 comment \"net/id/eth0\" : jump c",
    ] {
        assert!(listed.contains(expected), "{expected:?} not in:\n{listed}");
    }

    let taken = netns
        .run(|| add.commit())
        .expect("entered")
        .expect_err("an exclusive key held by another owner is refused");
    assert!(taken.already_exists(), "{taken}");

    let mut delete = Batch::new(Family::Inet, "t");
    delete.add_chain("c");
    delete.add_element("ports", &key, "c", "net/id/eth0", false);
    delete.delete_element("ports", &key);
    delete.flush_chain("c");
    delete.delete_chain("c");
    netns
        .run(|| delete.commit())
        .expect("entered")
        .expect("deletes");
    let listed = container.exec(&["nft", "list", "table", "inet", "t"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.contains("chain c"), "{listed}");
    assert!(!listed.contains("8080"), "{listed}");
}
