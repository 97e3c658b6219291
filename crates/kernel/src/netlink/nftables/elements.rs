//! What a batch writes and a dump reads back, typed: table families, the fields of a map key,
//! keys, what an element maps to, elements, and the few rule expressions written over netlink;
//! each as the kernel takes it and as nft writes it.

use ipnetwork::IpNetwork;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use super::wire::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet = 1,
    Bridge = 7,
}

impl Family {
    /// As nft names it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }
}

/// One field of a key, as nft types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `ipv4_addr`/`ipv6_addr`: one address.
    Addr(IpAddr),
    /// Every address of a network, as an interval (`0.0.0.0/0`: any).
    Net(IpNetwork),
    /// `inet_proto`
    Proto(u8),
    /// `inet_service`
    Port(u16),
    /// `ifname`
    Ifname(String),
    /// `ether_addr`
    Mac([u8; 6]),
    /// `mark`
    Mark(u32),
}

impl Field {
    /// The first and last value the field matches.
    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Field::Addr(address) => {
                let octets = octets(*address);
                (octets.clone(), octets)
            }
            Field::Net(network) => {
                let first = octets(network.network());
                let last = first
                    .iter()
                    .zip(octets(network.mask()))
                    .map(|(byte, mask)| byte | !mask)
                    .collect();
                (first, last)
            }
            Field::Proto(protocol) => (vec![*protocol], vec![*protocol]),
            Field::Port(port) => (port.to_be_bytes().to_vec(), port.to_be_bytes().to_vec()),
            Field::Ifname(name) => {
                let mut bytes = name.as_bytes().to_vec();
                bytes.resize(IFNAMSIZ, 0);
                (bytes.clone(), bytes)
            }
            Field::Mac(mac) => (mac.to_vec(), mac.to_vec()),
            Field::Mark(mark) => (mark.to_ne_bytes().to_vec(), mark.to_ne_bytes().to_vec()),
        }
    }
}

fn octets(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// nft syntax: how a field reads in `nft -f` text (the elements that go with a chain of an
/// admin's conditions), in messages that name a key, and in an owner's manifest digest.
impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Addr(address) => write!(f, "{address}"),
            Field::Net(network) if network.prefix() == IpNetwork::from(network.ip()).prefix() => {
                write!(f, "{}", network.ip())
            }
            Field::Net(network) => write!(f, "{}/{}", network.network(), network.prefix()),
            // nft names the protocols it knows and prints the rest as numbers.
            Field::Proto(6) => f.write_str("tcp"),
            Field::Proto(17) => f.write_str("udp"),
            Field::Proto(132) => f.write_str("sctp"),
            Field::Proto(other) => write!(f, "{other}"),
            Field::Port(port) => write!(f, "{port}"),
            Field::Ifname(name) => f.write_str(name),
            Field::Mac(mac) => {
                let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
                f.write_str(&hex.join(":"))
            }
            Field::Mark(mark) => write!(f, "{mark:#010x}"),
        }
    }
}

/// A map key: one field, or a concatenation (`0.0.0.0/0 . tcp . 8080`).
///
/// Keys are equal when the kernel takes them for one element's: by their bytes, so that
/// `Net(10.88.0.5/16)` is `Net(10.88.0.0/16)` and, in an interval map, `Net(a/32)` is
/// `Addr(a)`, which is how a dump gives it back.
#[derive(Debug, Clone)]
pub struct Key {
    pub fields: Vec<Field>,
    /// Whether the map has `flags interval`: its elements then carry where they end. Only
    /// for concatenations: a one-field interval map takes its ends as separate elements,
    /// which this encoder does not write.
    pub interval: bool,
}

impl Key {
    /// A key of a map without `flags interval`.
    pub fn exact(fields: Vec<Field>) -> Key {
        Key {
            fields,
            interval: false,
        }
    }

    /// A key of a map with `flags interval` (a concatenation).
    pub fn interval(fields: Vec<Field>) -> Key {
        Key {
            fields,
            interval: true,
        }
    }

    /// The key, and for interval maps its end.
    pub(super) fn bytes(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let (mut start, mut end) = (Vec::new(), Vec::new());
        for field in &self.fields {
            let (first, last) = field.bytes();
            start.extend_from_slice(&first);
            end.extend_from_slice(&last);
            // Each field of a concatenation takes whole 32-bit registers.
            if self.fields.len() > 1 {
                start.resize(start.len().next_multiple_of(4), 0);
                end.resize(end.len().next_multiple_of(4), 0);
            }
        }
        (start, self.interval.then_some(end))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<String> = self.fields.iter().map(Field::to_string).collect();
        f.write_str(&fields.join(" . "))
    }
}

/// What an element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A `mark`-typed value: the owner's tag, where the map only serves as a set. Adding a
    /// key that exists with another value fails, so a DEL never takes another's element.
    Mark(u32),
    /// `ipv4_addr . inet_service` (or `ipv6_addr`): where to DNAT.
    Target(IpAddr, u16),
    /// A verdict jumping to a chain (rare: rules only nft can compile).
    Jump(String),
}

impl Data {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Data::Mark(mark) => attr(out, NFTA_DATA_VALUE, &mark.to_ne_bytes()),
            Data::Target(address, port) => {
                let mut value = octets(*address);
                value.extend_from_slice(&port.to_be_bytes());
                value.extend_from_slice(&[0, 0]);
                attr(out, NFTA_DATA_VALUE, &value);
            }
            Data::Jump(chain) => nested(out, NFTA_DATA_VERDICT, |out| {
                attr(out, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                attr_str(out, NFTA_VERDICT_CHAIN, chain);
            }),
        }
    }
}

/// nft syntax, for elements that go through `nft -f`.
impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Data::Mark(mark) => write!(f, "{mark:#010x}"),
            Data::Target(address, port) => write!(f, "{address} . {port}"),
            Data::Jump(chain) => write!(f, "jump {chain}"),
        }
    }
}

/// One element of a set or map: its key, what it maps to (nothing, in a set), and the comment
/// `nft list` shows, where elements name their owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub set: String,
    pub key: Key,
    pub data: Option<Data>,
    pub comment: Option<String>,
}

/// One expression of a rule: the few that rules written over netlink need, so that a value
/// (an interface name) is compared as bytes and never parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr<'a> {
    /// `meta load oifname => reg 1`
    LoadOifname,
    /// `cmp neq reg 1 <value>`
    NotEqual(Field),
    /// `lookup reg 1 set <name>`: the rule goes on when register 1 is in the set.
    InSet(&'a str),
    /// `immediate reg 0 drop`
    Drop,
}

impl Expr<'_> {
    /// The kernel's name of the expression.
    fn name(&self) -> &'static str {
        match self {
            Expr::LoadOifname => "meta",
            Expr::NotEqual(_) => "cmp",
            Expr::InSet(_) => "lookup",
            Expr::Drop => "immediate",
        }
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        nested(out, NFTA_LIST_ELEM, |out| {
            attr_str(out, NFTA_EXPR_NAME, self.name());
            nested(out, NFTA_EXPR_DATA, |out| match self {
                Expr::LoadOifname => {
                    attr(out, NFTA_META_KEY, &NFT_META_OIFNAME.to_be_bytes());
                    attr(out, NFTA_META_DREG, &NFT_REG_1.to_be_bytes());
                }
                Expr::NotEqual(value) => {
                    attr(out, NFTA_CMP_SREG, &NFT_REG_1.to_be_bytes());
                    attr(out, NFTA_CMP_OP, &NFT_CMP_NEQ.to_be_bytes());
                    nested(out, NFTA_CMP_DATA, |out| {
                        attr(out, NFTA_DATA_VALUE, &value.bytes().0)
                    });
                }
                Expr::InSet(set) => {
                    attr(out, NFTA_LOOKUP_SREG, &NFT_REG_1.to_be_bytes());
                    attr_str(out, NFTA_LOOKUP_SET, set);
                }
                Expr::Drop => {
                    attr(out, NFTA_IMMEDIATE_DREG, &NFT_REG_VERDICT.to_be_bytes());
                    nested(out, NFTA_IMMEDIATE_DATA, |out| {
                        nested(out, NFTA_DATA_VERDICT, |out| {
                            attr(out, NFTA_VERDICT_CODE, &NF_DROP.to_be_bytes())
                        })
                    });
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNetwork {
        text.parse().expect("a valid literal")
    }

    #[test]
    fn keys_pad_each_concatenated_field_to_a_register() {
        let key = Key::interval(vec![
            Field::Net(net("0.0.0.0/0")),
            Field::Proto(6),
            Field::Port(8080),
            Field::Net(net("10.88.0.5/16")),
        ]);
        let (start, end) = key.bytes();
        assert_eq!(
            start,
            [0, 0, 0, 0, 6, 0, 0, 0, 0x1f, 0x90, 0, 0, 10, 88, 0, 0]
        );
        let end = end.expect("an interval end");
        assert_eq!(end[..4], [0xff; 4]);
        assert_eq!(end[12..], [10, 88, 0xff, 0xff]);
        assert_eq!(key.to_string(), "0.0.0.0/0 . tcp . 8080 . 10.88.0.0/16");
        let port = Key {
            fields: vec![
                Field::Ifname("veth1".into()),
                Field::Mac([2, 0, 0, 0, 0, 1]),
            ],
            interval: false,
        };
        let (start, end) = port.bytes();
        assert_eq!((start.len(), end), (IFNAMSIZ + 8, None));
        assert_eq!(port.to_string(), "veth1 . 02:00:00:00:00:01");
    }

    #[test]
    fn keys_are_equal_when_the_kernel_takes_them_for_one() {
        let address = Field::Addr("10.88.0.5".parse().expect("a valid literal"));
        let written = Key::interval(vec![address.clone(), Field::Net(net("10.88.0.5/16"))]);
        let listed = Key::interval(vec![address.clone(), Field::Net(net("10.88.0.0/16"))]);
        assert_eq!(written, listed);
        let host = Key::interval(vec![Field::Net(net("10.88.0.5/32"))]);
        assert_eq!(host, Key::interval(vec![address.clone()]));
        assert_ne!(
            Key::exact(vec![address.clone()]),
            Key::interval(vec![address])
        );
        assert_ne!(
            written,
            Key::interval(vec![Field::Net(net("10.88.0.0/16"))])
        );
    }

    #[test]
    fn fields_and_data_read_as_nft_lists_them() {
        assert_eq!(Field::Net(net("127.0.0.1/32")).to_string(), "127.0.0.1");
        assert_eq!(Field::Net(net("fd00::5/64")).to_string(), "fd00::/64");
        assert_eq!(Field::Proto(47).to_string(), "47");
        let target = Data::Target("fd00::2".parse().expect("a valid literal"), 80);
        assert_eq!(target.to_string(), "fd00::2 . 80");
        assert_eq!(Data::Mark(0x2000).to_string(), "0x00002000");
    }
}
