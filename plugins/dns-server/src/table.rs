//! The names the server answers for, built whole from the registrations whenever they
//! change (queries read a snapshot: nothing is locked while answering).

use std::collections::HashMap;
use std::net::IpAddr;

use names::Entry;

/// What a name is to this server.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// One of the network's names, with its addresses (possibly none of a family).
    Found(&'a [IpAddr]),
    /// Under the network's domain but no container's: no such name, authoritatively.
    NoSuchName,
    /// Someone else's: forwarded.
    NotOurs,
}

#[derive(Debug, Default)]
pub struct Table {
    /// The domain (lower case, no final dot), empty for none.
    domain: String,
    /// Every name (lower case, no final dot), bare and under the domain, to its addresses
    /// in the order the entries came (local first), without repeats.
    forward: HashMap<String, Vec<IpAddr>>,
    /// An address to the one name a PTR answers with: its container's name under the
    /// domain (the first entry that has the address wins).
    reverse: HashMap<IpAddr, String>,
}

impl Table {
    pub fn build<'a>(domain: &str, entries: impl IntoIterator<Item = &'a Entry>) -> Table {
        let mut table = Table {
            domain: domain.to_string(),
            ..Table::default()
        };
        for entry in entries {
            let mut primary = None;
            for name in entry.names().filter(|n| !n.is_empty()) {
                for key in table.forms(name) {
                    let addresses = table.forward.entry(key).or_default();
                    for address in &entry.addresses {
                        if !addresses.contains(address) {
                            addresses.push(*address);
                        }
                    }
                }
                primary.get_or_insert_with(|| table.qualified(name));
            }
            if let Some(primary) = primary {
                for address in &entry.addresses {
                    table
                        .reverse
                        .entry(*address)
                        .or_insert_with(|| primary.clone());
                }
            }
        }
        table
    }

    /// `name`, and `name.domain` when there is a domain.
    fn forms(&self, name: &str) -> Vec<String> {
        let mut forms = vec![name.to_string()];
        if !self.domain.is_empty() {
            forms.push(format!("{name}.{}", self.domain));
        }
        forms
    }

    fn qualified(&self, name: &str) -> String {
        self.forms(name).pop().unwrap_or_default()
    }

    /// What `name` (any case, with or without the final dot) is.
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(addresses) = self.forward.get(&name) {
            return Lookup::Found(addresses);
        }
        if self.domain.is_empty() {
            return Lookup::NotOurs;
        }
        if name == self.domain {
            return Lookup::Found(&[]);
        }
        match name.strip_suffix(&self.domain) {
            Some(head) if head.ends_with('.') => Lookup::NoSuchName,
            _ => Lookup::NotOurs,
        }
    }

    /// The name a PTR query for `address` is answered with.
    pub fn reverse(&self, address: IpAddr) -> Option<&str> {
        self.reverse.get(&address).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, aliases: &[&str], addresses: &[&str]) -> Entry {
        Entry {
            name: name.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().expect("ip")).collect()
    }

    #[test]
    fn names_resolve_bare_and_under_the_domain_in_any_case() {
        let web = entry("web", &["svc"], &["10.88.0.2", "fd00::2"]);
        let table = Table::build("dns.podman", [&web]);
        let both = ips(&["10.88.0.2", "fd00::2"]);
        for name in ["web", "WEB.", "web.dns.podman", "Svc.DNS.podman.", "svc"] {
            assert_eq!(table.lookup(name), Lookup::Found(&both), "{name}");
        }
        assert_eq!(table.lookup("db.dns.podman"), Lookup::NoSuchName);
        assert_eq!(table.lookup("dns.podman"), Lookup::Found(&[]));
        assert_eq!(table.lookup("db"), Lookup::NotOurs);
        assert_eq!(table.lookup("example.com"), Lookup::NotOurs);
        assert_eq!(table.lookup("xdns.podman"), Lookup::NotOurs);
    }

    #[test]
    fn a_shared_alias_gathers_every_containers_addresses_and_ptr_names_the_first() {
        let a = entry("a", &["svc"], &["10.88.0.2"]);
        let b = entry("b", &["svc"], &["10.88.0.3"]);
        let remote = entry("c", &["svc"], &["10.244.2.5", "10.88.0.3"]);
        let table = Table::build("dns.podman", [&a, &b, &remote]);
        assert_eq!(
            table.lookup("svc"),
            Lookup::Found(&ips(&["10.88.0.2", "10.88.0.3", "10.244.2.5"]))
        );
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        assert_eq!(table.reverse(ip("10.88.0.3")), Some("b.dns.podman"));
        assert_eq!(table.reverse(ip("10.244.2.5")), Some("c.dns.podman"));
        assert_eq!(table.reverse(ip("10.88.0.9")), None);
    }

    #[test]
    fn without_a_domain_only_the_names_are_ours() {
        let unnamed = entry("", &["db"], &["10.0.0.7"]);
        let table = Table::build("", [&unnamed]);
        assert_eq!(table.lookup("db"), Lookup::Found(&ips(&["10.0.0.7"])));
        assert_eq!(table.lookup("web"), Lookup::NotOurs);
        assert_eq!(
            table.reverse("10.0.0.7".parse().expect("ip")),
            Some("db"),
            "an entry without a name is known by its first alias"
        );
    }
}
