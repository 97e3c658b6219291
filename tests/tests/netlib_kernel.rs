//! netlib's kernel layer used directly: namespaces, netlink and sysctls stay inside the
//! namespace they are aimed at; and the skeleton's last line of defence against panics.

use ferrocni_tests::{our_bin_dir, require_root, Call, NetnsGuard};
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
    let fixture = our_bin_dir().join("examples").join("panicking_plugin");
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
