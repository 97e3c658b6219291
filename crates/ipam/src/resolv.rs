//! Reading a resolv.conf into a result's `dns`, for IPAM's `resolvConf` key.

use std::path::Path;

use super::IpamError;
use cni::Dns;

pub fn load(path: &Path) -> Result<Dns, IpamError> {
    let text = std::fs::read_to_string(path).map_err(|source| IpamError::ResolvConf {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&text))
}

/// Keeps `nameserver`, `domain`, `search` and `options` lines, as the reference does.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.clone().next()) {
            (Some("nameserver"), Some(server)) => dns.nameservers.push(server.to_string()),
            (Some("domain"), Some(domain)) => dns.domain = domain.to_string(),
            (Some("search"), Some(_)) => dns.search = fields.map(str::to_string).collect(),
            (Some("options"), Some(_)) => dns.options.extend(fields.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_four_keys() {
        let dns = super::parse(
            "# comment\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.com\nsearch a.example b.example\noptions ndots:5 edns0\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(dns.domain, "example.com");
        assert_eq!(dns.search, ["a.example", "b.example"]);
        assert_eq!(dns.options, ["ndots:5", "edns0"]);
    }
}
