//! Reading elements back: the requests that dump a table's sets (NFT_MSG_GETSET) and a set's
//! elements (NFT_MSG_GETSETELEM), and the decoding of the kernel's answers into the typed
//! model the batches write ([`Element`]). Pure functions over message bytes:
//! [`super::list_over`] is the one caller that talks to the kernel.
//!
//! A set's key and data types come from the kernel (nft's datatype numbers, a concatenation
//! packed six bits a field, the first highest), so the elements of sets this version does not
//! declare, such as the verdict maps of earlier versions, are read like any other. What the
//! model cannot hold is skipped: anonymous sets (a rule's `{ tcp, udp }`), one-field interval
//! sets (their ends are elements of their own), ranges that are no prefix, verdicts other
//! than a jump, unknown types. Nothing that names an owner is written that way.

use ipnetwork::IpNetwork;
use netlink_packet_core::{NlaBuffer, NlasIterator, NLA_TYPE_MASK};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::elements::{Data, Element, Family, Field, Key};
use super::wire::*;
use crate::netlink::exchange::Raw;

const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;

const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_INTERVAL: u32 = 0x4;
/// An interval's end as an element of its own, or the catch-all element: neither has a key
/// of the model's.
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
const NFT_SET_ELEM_CATCHALL: u32 = 0x2;
/// The data type of a verdict map.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
const TYPE_BITS: u32 = 6;

/// The request for a dump of `table`'s sets or, with `set`, of that set's elements (the
/// exchange adds the header and its dump flags).
pub(super) fn request(family: Family, table: &str, set: Option<&str>) -> Raw {
    let kind = match set {
        Some(_) => NFT_MSG_GETSETELEM,
        None => NFT_MSG_GETSET,
    };
    let mut payload = Vec::with_capacity(48);
    payload.extend_from_slice(&[family as u8, 0, 0, 0]);
    // The same attribute numbers as NFTA_SET_ELEM_LIST_TABLE and _SET.
    attr_str(&mut payload, NFTA_SET_TABLE, table);
    if let Some(set) = set {
        attr_str(&mut payload, NFTA_SET_NAME, set);
    }
    Raw {
        kind: (NFNL_SUBSYS_NFTABLES << 8) | kind,
        payload,
    }
}

/// One field of a key as nft types it, by its datatype number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Ipv4,
    Ipv6,
    Proto,
    Port,
    Ifname,
    Mac,
    Mark,
}

impl FieldType {
    fn from_nft(number: u32) -> Option<FieldType> {
        Some(match number {
            7 => FieldType::Ipv4,
            8 => FieldType::Ipv6,
            9 => FieldType::Mac,
            12 => FieldType::Proto,
            13 => FieldType::Port,
            19 => FieldType::Mark,
            41 => FieldType::Ifname,
            _ => return None,
        })
    }

    /// Its bytes in a key (a concatenation pads each field to 32-bit registers).
    fn len(self) -> usize {
        match self {
            FieldType::Ipv4 | FieldType::Mark => 4,
            FieldType::Ipv6 => 16,
            FieldType::Proto => 1,
            FieldType::Port => 2,
            FieldType::Ifname => IFNAMSIZ,
            FieldType::Mac => 6,
        }
    }

    /// The field whose first and last values these are.
    fn decode(self, first: &[u8], last: &[u8]) -> Option<Field> {
        if let Some(first) = address(self, first) {
            let last = address(self, last)?;
            return if first == last {
                Some(Field::Addr(first))
            } else {
                network(first, last).map(Field::Net)
            };
        }
        if first != last {
            return None;
        }
        Some(match self {
            FieldType::Proto => Field::Proto(first[0]),
            FieldType::Port => Field::Port(u16::from_be_bytes(first.try_into().ok()?)),
            FieldType::Ifname => {
                let name = first.split(|b| *b == 0).next().unwrap_or_default();
                Field::Ifname(String::from_utf8(name.to_vec()).ok()?)
            }
            FieldType::Mac => Field::Mac(first.try_into().ok()?),
            FieldType::Mark => Field::Mark(u32::from_ne_bytes(first.try_into().ok()?)),
            FieldType::Ipv4 | FieldType::Ipv6 => return None,
        })
    }
}

fn address(kind: FieldType, bytes: &[u8]) -> Option<IpAddr> {
    match kind {
        FieldType::Ipv4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into()),
        FieldType::Ipv6 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into()),
        _ => None,
    }
}

/// The network from `first` to `last`, when they are one prefix's first and last address.
fn network(first: IpAddr, last: IpAddr) -> Option<IpNetwork> {
    let (low, high, bits) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return None,
    };
    let host = low ^ high;
    let host_bits = 128 - host.leading_zeros();
    let ones = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
    if host != ones || low & host != 0 || host_bits > bits {
        return None;
    }
    IpNetwork::new(first, u8::try_from(bits - host_bits).ok()?).ok()
}

/// What a map's elements map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataType {
    Mark,
    /// An address of the family (IPv6 when true) . a port.
    Target(bool),
    Verdict,
}

impl DataType {
    fn from_nft(number: u32) -> Option<DataType> {
        const TARGET4: u32 = (7 << TYPE_BITS) | 13;
        const TARGET6: u32 = (8 << TYPE_BITS) | 13;
        match number {
            19 => Some(DataType::Mark),
            TARGET4 => Some(DataType::Target(false)),
            TARGET6 => Some(DataType::Target(true)),
            NFT_DATA_VERDICT => Some(DataType::Verdict),
            _ => None,
        }
    }

    /// The data in an element's NFTA_SET_ELEM_DATA.
    fn decode(self, data: &[u8]) -> Option<Data> {
        let value = |kind| attribute(data, kind);
        match self {
            DataType::Mark => Some(Data::Mark(u32::from_ne_bytes(
                value(NFTA_DATA_VALUE)?.try_into().ok()?,
            ))),
            DataType::Target(ipv6) => {
                let value = value(NFTA_DATA_VALUE)?;
                let kind = if ipv6 {
                    FieldType::Ipv6
                } else {
                    FieldType::Ipv4
                };
                let at = kind.len();
                let port = value.get(at..at + 2)?;
                Some(Data::Target(
                    address(kind, value.get(..at)?)?,
                    u16::from_be_bytes(port.try_into().ok()?),
                ))
            }
            DataType::Verdict => {
                let verdict = value(NFTA_DATA_VERDICT)?;
                let code =
                    i32::from_be_bytes(attribute(verdict, NFTA_VERDICT_CODE)?.try_into().ok()?);
                let chain = string(attribute(verdict, NFTA_VERDICT_CHAIN)?);
                (code == NFT_JUMP).then_some(Data::Jump(chain))
            }
        }
    }
}

/// A set as the dump of a table's sets describes it, when the model can hold its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetType {
    pub(super) name: String,
    fields: Vec<FieldType>,
    interval: bool,
    /// None for a set; a map's data type.
    data: Option<DataType>,
}

/// The set a NEWSET message describes (`message`: what follows the netlink header).
pub(super) fn set_type(message: &[u8]) -> Option<SetType> {
    let attributes = message.get(NFGENMSG..)?;
    let number = |kind| {
        attribute(attributes, kind).and_then(|v| Some(u32::from_be_bytes(v.try_into().ok()?)))
    };
    let flags = number(NFTA_SET_FLAGS).unwrap_or(0);
    let mut fields = Vec::new();
    let mut key_type = number(NFTA_SET_KEY_TYPE)?;
    while key_type != 0 {
        fields.push(FieldType::from_nft(key_type & ((1 << TYPE_BITS) - 1))?);
        key_type >>= TYPE_BITS;
    }
    fields.reverse();
    let interval = flags & NFT_SET_INTERVAL != 0;
    if flags & NFT_SET_ANONYMOUS != 0 || fields.is_empty() || (interval && fields.len() == 1) {
        return None;
    }
    let data = match number(NFTA_SET_DATA_TYPE) {
        Some(kind) => Some(DataType::from_nft(kind)?),
        None => None,
    };
    Some(SetType {
        name: string(attribute(attributes, NFTA_SET_NAME)?),
        fields,
        interval,
        data,
    })
}

/// The elements of `set` in a NEWSETELEM message (`message`: what follows the netlink
/// header), those the model can hold.
pub(super) fn elements(message: &[u8], set: &SetType) -> Vec<Element> {
    let listed = message
        .get(NFGENMSG..)
        .and_then(|attributes| attribute(attributes, NFTA_SET_ELEM_LIST_ELEMENTS))
        .unwrap_or_default();
    attributes(listed)
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .filter_map(|(_, element)| decode_element(element, set))
        .collect()
}

fn decode_element(element: &[u8], set: &SetType) -> Option<Element> {
    let flags = attribute(element, NFTA_SET_ELEM_FLAGS)
        .and_then(|v| Some(u32::from_be_bytes(v.try_into().ok()?)))
        .unwrap_or(0);
    if flags & (NFT_SET_ELEM_INTERVAL_END | NFT_SET_ELEM_CATCHALL) != 0 {
        return None;
    }
    let value = |kind| attribute(attribute(element, kind)?, NFTA_DATA_VALUE);
    let start = value(NFTA_SET_ELEM_KEY)?;
    let end = match set.interval {
        true => value(NFTA_SET_ELEM_KEY_END)?,
        false => start,
    };
    let concatenated = set.fields.len() > 1;
    let mut fields = Vec::with_capacity(set.fields.len());
    let mut at = 0;
    for kind in &set.fields {
        let range = at..at + kind.len();
        fields.push(kind.decode(start.get(range.clone())?, end.get(range)?)?);
        at += match concatenated {
            true => kind.len().next_multiple_of(4),
            false => kind.len(),
        };
    }
    let data = match set.data {
        Some(kind) => Some(kind.decode(attribute(element, NFTA_SET_ELEM_DATA)?)?),
        None => None,
    };
    Some(Element {
        set: set.name.clone(),
        key: Key {
            fields,
            interval: set.interval,
        },
        data,
        comment: attribute(element, NFTA_SET_ELEM_USERDATA).and_then(comment),
    })
}

/// The comment in an element's user data: nftnl's type-length-value records.
fn comment(user_data: &[u8]) -> Option<String> {
    let mut rest = user_data;
    while let [kind, length, tail @ ..] = rest {
        let value = tail.get(..usize::from(*length))?;
        if *kind == UDATA_SET_ELEM_COMMENT {
            return Some(string(value));
        }
        rest = &tail[value.len()..];
    }
    None
}

/// The nfgenmsg header before a message's attributes.
const NFGENMSG: usize = 4;

fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(bytes)
        .map_while(Result::ok)
        .filter_map(|nla: NlaBuffer<&[u8]>| {
            let (kind, length) = (nla.kind() & NLA_TYPE_MASK, usize::from(nla.length()));
            Some((kind, nla.into_inner().get(4..length)?))
        })
}

fn attribute(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// A NUL-terminated string attribute.
fn string(value: &[u8]) -> String {
    let text = value.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::nftables::Batch;
    use netlink_packet_core::NLM_F_DUMP;

    /// The kernel's answers to a dump of a table (see the file's header).
    const CAPTURED: &str = include_str!("testdata/dump-inet-t.txt");

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
            .collect()
    }

    /// The captured messages that start with `tag`, split at blanks, each message without
    /// its netlink header.
    fn captured(tag: &str) -> Vec<(Vec<&str>, Vec<u8>)> {
        CAPTURED
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut words: Vec<&str> = line.split_whitespace().collect();
                let message = hex(words.pop()?)[16..].to_vec();
                (words.first() == Some(&tag)).then_some((words, message))
            })
            .collect()
    }

    fn captured_sets() -> Vec<SetType> {
        captured("SET")
            .iter()
            .filter_map(|(_, message)| set_type(message))
            .collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn net(text: &str) -> Field {
        Field::Net(text.parse().expect("a network"))
    }

    fn element(set: &str, key: Key, data: Option<Data>, comment: Option<&str>) -> Element {
        Element {
            set: set.to_string(),
            key,
            data,
            comment: comment.map(str::to_string),
        }
    }

    #[test]
    fn set_types_come_from_the_kernels_type_numbers() {
        let types: Vec<Option<SetType>> = captured("SET")
            .iter()
            .map(|(_, message)| set_type(message))
            .collect();
        let set = |name: &str, fields: Vec<FieldType>, interval, data| {
            Some(SetType {
                name: name.to_string(),
                fields,
                interval,
                data,
            })
        };
        use FieldType::*;
        assert_eq!(
            types,
            [
                set("manifests", vec![Mark, Mark], false, Some(DataType::Mark)),
                set("snat4", vec![Ipv4], false, Some(DataType::Mark)),
                set("local6", vec![Ipv6, Ipv6], true, Some(DataType::Mark)),
                set(
                    "dnat4",
                    vec![Ipv4, Proto, Port],
                    true,
                    Some(DataType::Target(false))
                ),
                set(
                    "filtered6",
                    vec![Ipv6, Proto, Port],
                    true,
                    Some(DataType::Verdict)
                ),
                set("isolated", vec![Ifname], false, None),
                set("sources", vec![Ifname, Mac], false, Some(DataType::Mark)),
                // The anonymous set of the rule's `{ tcp, udp }`.
                None,
            ]
        );
    }

    #[test]
    fn elements_decode_into_the_model_the_batches_write() {
        let types = captured_sets();
        let mut decoded = Vec::new();
        for (words, message) in captured("ELEM") {
            if let Some(set) = types.iter().find(|t| t.name == words[1]) {
                decoded.extend(elements(&message, set));
            }
        }
        let mark = |m| Some(Data::Mark(m));
        let expected = [
            element(
                "manifests",
                Key::exact(vec![Field::Mark(1), Field::Mark(0xab_cdef)]),
                mark(1),
                Some("net:id:eth0"),
            ),
            element(
                "snat4",
                Key::exact(vec![Field::Addr(ip("10.88.0.5"))]),
                mark(7),
                Some("net:id:eth0"),
            ),
            element(
                "local6",
                Key::interval(vec![Field::Addr(ip("fd00::5")), net("fd00::/64")]),
                mark(7),
                Some("net/id/eth0"),
            ),
            element(
                "dnat4",
                Key::interval(vec![net("0.0.0.0/0"), Field::Proto(6), Field::Port(8080)]),
                Some(Data::Target(ip("10.88.0.5"), 80)),
                Some("net:id:eth0"),
            ),
            element(
                "dnat4",
                Key::interval(vec![
                    Field::Addr(ip("192.168.1.1")),
                    Field::Proto(17),
                    Field::Port(53),
                ]),
                Some(Data::Target(ip("10.88.0.6"), 5353)),
                Some("net:other:eth0"),
            ),
            element(
                "filtered6",
                Key::interval(vec![net("::/0"), Field::Proto(132), Field::Port(9)]),
                Some(Data::Jump("pm-1".to_string())),
                Some("net:id:eth0"),
            ),
            element(
                "isolated",
                Key::exact(vec![Field::Ifname("br0".into())]),
                None,
                None,
            ),
            element(
                "sources",
                Key::exact(vec![
                    Field::Ifname("veth1".into()),
                    Field::Mac([2, 0, 0, 0, 0, 1]),
                ]),
                mark(7),
                Some("e x"),
            ),
        ];
        assert_eq!(decoded, expected);
        // Field by field too, not only as the kernel compares keys: a single address reads
        // back as one, a network as its prefix.
        for (got, want) in decoded.iter().zip(&expected) {
            assert_eq!(got.key.fields, want.key.fields);
        }
    }

    /// What a batch writes reads back the same: an add message carries its element in the
    /// layout a dump answers with.
    #[test]
    fn an_element_written_reads_back_the_same() {
        let types = captured_sets();
        let cases = [
            element(
                "dnat4",
                Key::interval(vec![
                    Field::Addr(ip("10.0.0.1")),
                    Field::Proto(132),
                    Field::Port(1),
                ]),
                Some(Data::Target(ip("10.88.0.9"), 65535)),
                Some("net:abc:eth0"),
            ),
            element(
                "local6",
                Key::interval(vec![Field::Addr(ip("fd00::9")), net("fd00::/48")]),
                Some(Data::Mark(u32::MAX)),
                Some("n:c~0123:x"),
            ),
            element(
                "filtered6",
                Key::interval(vec![
                    Field::Addr(ip("fd00::1")),
                    Field::Proto(6),
                    Field::Port(443),
                ]),
                Some(Data::Jump("pm-0123456789abcdef".to_string())),
                None,
            ),
            element(
                "isolated",
                Key::exact(vec![Field::Ifname("b\"r;{#".into())]),
                None,
                None,
            ),
        ];
        for case in cases {
            let mut batch = Batch::new(Family::Inet, "t");
            batch.add(&case, false);
            // A new batch holds its messages alone: this one.
            let message = &batch.buffer[..];
            let set = types
                .iter()
                .find(|t| t.name == case.set)
                .expect("a captured set");
            let read = elements(&message[16..], set);
            assert_eq!(read, std::slice::from_ref(&case));
            assert_eq!(read[0].key.fields, case.key.fields);
        }
    }

    #[test]
    fn a_range_reads_as_a_network_only_when_it_is_a_prefix() {
        let range = |a: &str, b: &str| network(ip(a), ip(b)).map(|n| n.to_string());
        assert_eq!(
            range("10.88.0.0", "10.88.255.255").as_deref(),
            Some("10.88.0.0/16")
        );
        assert_eq!(
            range("0.0.0.0", "255.255.255.255").as_deref(),
            Some("0.0.0.0/0")
        );
        assert_eq!(
            range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").as_deref(),
            Some("::/0")
        );
        assert_eq!(range("10.0.0.1", "10.0.0.2"), None);
        assert_eq!(range("10.0.0.0", "10.0.0.2"), None);
        assert_eq!(
            range("10.0.0.1", "10.0.0.1").as_deref(),
            Some("10.0.0.1/32")
        );
        assert_eq!(range("10.0.0.0", "fd00::"), None);
        // A range an interval map holds that is no prefix is not an element of ours.
        let odd = FieldType::Ipv4.decode(&[10, 0, 0, 1], &[10, 0, 0, 2]);
        assert_eq!(odd, None);
        assert_eq!(FieldType::Port.decode(&[0, 80], &[0, 90]), None);
    }

    #[test]
    fn a_verdict_reads_back_only_as_a_jump() {
        let verdict = |code: i32| {
            let mut data = Vec::new();
            nested(&mut data, NFTA_DATA_VERDICT, |out| {
                attr(out, NFTA_VERDICT_CODE, &code.to_be_bytes());
                attr_str(out, NFTA_VERDICT_CHAIN, "c");
            });
            DataType::Verdict.decode(&data)
        };
        assert_eq!(verdict(NFT_JUMP), Some(Data::Jump("c".to_string())));
        assert_eq!(verdict(NF_DROP), None);
    }

    /// The captured answers that start with `tag`, as the kernel sent them.
    fn captured_raw(tag: &str) -> Vec<(String, Raw)> {
        CAPTURED
            .lines()
            .filter(|line| line.starts_with(tag))
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let message = hex(words.last()?);
                let raw = Raw {
                    kind: u16::from_ne_bytes([message[4], message[5]]),
                    payload: message[16..].to_vec(),
                };
                Some((words[1..words.len() - 1].join(" "), raw))
            })
            .collect()
    }

    #[test]
    fn a_listing_dumps_the_sets_then_each_ones_elements() {
        use crate::netlink::fake::{Fake, Reply};
        use crate::netlink::Exchange;
        let dump = |raws: Vec<Raw>| Reply::Dump {
            datagrams: vec![raws],
            interrupted: false,
        };
        let fake = Fake::new();
        let sets: Vec<Raw> = captured_raw("SET").into_iter().map(|(_, r)| r).collect();
        fake.then(dump(sets));
        let named = captured_sets();
        let mut expected = Vec::new();
        for set in &named {
            let answers: Vec<Raw> = captured_raw("ELEM")
                .into_iter()
                .filter(|(name, _)| *name == set.name)
                .map(|(_, raw)| raw)
                .collect();
            // A set deleted between the two dumps: the kernel no longer knows it.
            if set.name == "local6" {
                fake.then(Reply::Refuse {
                    errno: libc::ENOENT,
                    message: None,
                });
                continue;
            }
            for answer in &answers {
                expected.extend(elements(&answer.payload, set));
            }
            fake.then(dump(answers));
        }
        let mut exchange = Exchange::over(fake.clone());
        let listed = super::super::list_over(&mut exchange, Family::Inet, "t").expect("listed");
        assert!(fake.finished());
        assert_eq!(listed, expected);
        assert!(listed.iter().any(|e| e.set == "dnat4"));
        assert!(listed.iter().all(|e| e.set != "local6"));
        // One dump of the sets, then one of each set the model reads, by name.
        let sent = fake.requests();
        let mut asked = vec![request(Family::Inet, "t", None)];
        asked.extend(
            named
                .iter()
                .map(|set| request(Family::Inet, "t", Some(&set.name))),
        );
        assert_eq!(
            sent.iter().map(|s| s.message.clone()).collect::<Vec<_>>(),
            asked
        );
        assert!(sent.iter().all(|s| s.flags & NLM_F_DUMP == NLM_F_DUMP));

        // No table: nothing listed.
        let fake = Fake::new();
        fake.then(Reply::Refuse {
            errno: libc::ENOENT,
            message: None,
        });
        let listed = super::super::list_over(&mut Exchange::over(fake), Family::Inet, "t");
        assert_eq!(listed.expect("an empty listing"), []);
    }

    #[test]
    fn requests_name_the_table_and_the_set() {
        let sets = request(Family::Bridge, "ferrocni", None);
        assert_eq!(sets.kind, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSET);
        assert_eq!(sets.payload[0], Family::Bridge as u8);
        assert_eq!(
            string(attribute(&sets.payload[4..], NFTA_SET_TABLE).expect("table")),
            "ferrocni"
        );
        assert_eq!(attribute(&sets.payload[4..], NFTA_SET_NAME), None);
        let elements = request(Family::Inet, "t", Some("snat4"));
        assert_eq!(
            elements.kind,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM
        );
        assert_eq!(
            string(attribute(&elements.payload[4..], NFTA_SET_NAME).expect("set")),
            "snat4"
        );
    }
}
