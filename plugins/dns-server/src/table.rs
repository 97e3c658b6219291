//! The names the server answers for, from the registrations: built whole when everything
//! is read again, changed in place when one registration is.

use std::collections::HashMap;
use std::net::IpAddr;

use names::Entry;

/// What a name is to this server.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// One of the network's names, with its addresses (possibly none of a family).
    Found(Vec<IpAddr>),
    /// Under the network's domain but no container's: no such name, authoritatively.
    NoSuchName,
    /// Someone else's: forwarded.
    NotOurs,
}

/// The names, changed in place one registration at a time (an ADD costs the same with 10
/// names on the network as with 1,000) and read under a lock held for one lookup.
#[derive(Debug, Default)]
pub struct Table {
    /// The domain (lower case, no final dot), empty for none.
    domain: String,
    /// Every name (lower case, no final dot), bare and under the domain, to the addresses of
    /// every entry that has it, in the order the entries came (an address two entries
    /// share is there twice, and each entry's removal takes one).
    forward: HashMap<String, Vec<IpAddr>>,
    /// An address to the names a PTR may answer with, its entries' names under the domain;
    /// the first one is answered.
    reverse: HashMap<IpAddr, Vec<String>>,
}

impl Table {
    pub fn build<'a>(domain: &str, entries: impl IntoIterator<Item = &'a Entry>) -> Table {
        let mut table = Table {
            domain: domain.to_string(),
            ..Table::default()
        };
        for entry in entries {
            table.insert(entry);
        }
        table
    }

    pub fn insert(&mut self, entry: &Entry) {
        for name in entry.names().filter(|n| !n.is_empty()) {
            for key in self.forms(name) {
                self.forward
                    .entry(key)
                    .or_default()
                    .extend_from_slice(&entry.addresses);
            }
        }
        if let Some(primary) = self.primary(entry) {
            for address in &entry.addresses {
                self.reverse
                    .entry(*address)
                    .or_default()
                    .push(primary.clone());
            }
        }
    }

    /// Takes back what [`Table::insert`] of the same entry added.
    pub fn remove(&mut self, entry: &Entry) {
        for name in entry.names().filter(|n| !n.is_empty()) {
            for key in self.forms(name) {
                if let Some(addresses) = self.forward.get_mut(&key) {
                    for address in &entry.addresses {
                        take_one(addresses, address);
                    }
                    if addresses.is_empty() {
                        self.forward.remove(&key);
                    }
                }
            }
        }
        if let Some(primary) = self.primary(entry) {
            for address in &entry.addresses {
                if let Some(names) = self.reverse.get_mut(address) {
                    take_one(names, &primary);
                    if names.is_empty() {
                        self.reverse.remove(address);
                    }
                }
            }
        }
    }

    /// `name`, and `name.domain` when there is a domain.
    fn forms(&self, name: &str) -> Vec<String> {
        let mut forms = vec![name.to_string()];
        if !self.domain.is_empty() {
            forms.push(format!("{name}.{}", self.domain));
        }
        forms
    }

    /// The name a PTR answers with for the entry's addresses: its name (or first alias)
    /// under the domain.
    fn primary(&self, entry: &Entry) -> Option<String> {
        let name = entry.names().find(|n| !n.is_empty())?;
        self.forms(name).pop()
    }

    /// What `name` (any case, with or without the final dot) is.
    pub fn lookup(&self, name: &str) -> Lookup {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(addresses) = self.forward.get(&name) {
            let mut unique = Vec::with_capacity(addresses.len());
            for address in addresses {
                if !unique.contains(address) {
                    unique.push(*address);
                }
            }
            return Lookup::Found(unique);
        }
        if self.domain.is_empty() {
            return Lookup::NotOurs;
        }
        if name == self.domain {
            return Lookup::Found(Vec::new());
        }
        match name.strip_suffix(&self.domain) {
            Some(head) if head.ends_with('.') => Lookup::NoSuchName,
            _ => Lookup::NotOurs,
        }
    }

    /// The name a PTR query for `address` is answered with.
    pub fn reverse(&self, address: IpAddr) -> Option<&str> {
        self.reverse
            .get(&address)
            .and_then(|names| names.first())
            .map(String::as_str)
    }
}

/// Removes one `item` from `list`, keeping the order of the rest.
fn take_one<T: PartialEq>(list: &mut Vec<T>, item: &T) {
    if let Some(at) = list.iter().position(|x| x == item) {
        list.remove(at);
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
            assert_eq!(table.lookup(name), Lookup::Found(both.clone()), "{name}");
        }
        assert_eq!(table.lookup("db.dns.podman"), Lookup::NoSuchName);
        assert_eq!(table.lookup("dns.podman"), Lookup::Found(Vec::new()));
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
            Lookup::Found(ips(&["10.88.0.2", "10.88.0.3", "10.244.2.5"]))
        );
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        assert_eq!(table.reverse(ip("10.88.0.3")), Some("b.dns.podman"));
        assert_eq!(table.reverse(ip("10.244.2.5")), Some("c.dns.podman"));
        assert_eq!(table.reverse(ip("10.88.0.9")), None);
    }

    #[test]
    fn removing_an_entry_takes_back_exactly_what_it_added() {
        let a = entry("a", &["svc"], &["10.88.0.2"]);
        let b = entry("b", &["svc"], &["10.88.0.2", "10.88.0.3"]);
        let mut table = Table::build("dns.podman", [&a, &b]);
        table.remove(&a);
        assert_eq!(table.lookup("a"), Lookup::NotOurs, "a bare name nobody has");
        assert_eq!(
            table.lookup("svc.dns.podman"),
            Lookup::Found(ips(&["10.88.0.2", "10.88.0.3"])),
            "b still has the shared address"
        );
        assert_eq!(
            table.reverse("10.88.0.2".parse().expect("ip")),
            Some("b.dns.podman")
        );
        table.remove(&b);
        assert_eq!(table.lookup("svc.dns.podman"), Lookup::NoSuchName);
        assert_eq!(table.reverse("10.88.0.3".parse().expect("ip")), None);
        assert!(table.forward.is_empty() && table.reverse.is_empty());
    }

    #[test]
    fn without_a_domain_only_the_names_are_ours() {
        let unnamed = entry("", &["db"], &["10.0.0.7"]);
        let table = Table::build("", [&unnamed]);
        assert_eq!(table.lookup("db"), Lookup::Found(ips(&["10.0.0.7"])));
        assert_eq!(table.lookup("web"), Lookup::NotOurs);
        assert_eq!(
            table.reverse("10.0.0.7".parse().expect("ip")),
            Some("db"),
            "an entry without a name is known by its first alias"
        );
    }
}
