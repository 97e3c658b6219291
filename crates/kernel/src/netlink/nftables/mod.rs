//! nf_tables over netlink: the map elements a plugin's ADD and DEL write (and the few chains
//! and rules that must hold a value, such as a bridge's name, as data), as one atomic batch
//! of any size; and the elements of a table read back ([`list`]), decoded into the same model.
//!
//! Why not `nft -f` for these: every `nft` run first loads the table's chains and rules (and
//! an interval map's elements) into its cache, so the cost of adding or removing one element
//! grew with the node's container count, and so did ADD's latency. The kernel does the same
//! batch in constant time, and answers a dump of a table's elements without a cache to
//! build. `nft` stays for what is rare and written in its language: declaring the base
//! (hooked chains, maps).
//!
//! Elements map keys to values (an owner tag, a DNAT target) and only rarely to a jump:
//! committing an element that jumps makes the kernel validate every chain the table's base
//! chains reach, which with a chain per container was half of a bridge ADD's CPU time at
//! 1,000 containers.

mod dump;
mod elements;
mod wire;

pub use elements::{Data, Element, Expr, Family, Field, Key};

use std::sync::Mutex;

use super::exchange::Raw;
use super::{Exchange, NetlinkError, Protocol};
use netlink_packet_core::NLM_F_DUMP;
use wire::*;

/// The exchange of the last committed batch, closed when the next batch commits or the
/// process ends. Closing a netfilter socket makes the kernel first finish freeing what
/// transactions deleted, which waits for an RCU grace period; left open, that happens in the
/// background while the plugin does other work (deleting a veth waits for one too).
static LINGERING: Mutex<Option<Exchange>> = Mutex::new(None);

/// One transaction on one table: everything in it applies, or nothing does, whatever its
/// size.
pub struct Batch {
    /// The messages, one after another; the exchange numbers them and frames the batch.
    buffer: Vec<u8>,
    family: Family,
    table: String,
}

impl Batch {
    pub fn new(family: Family, table: &str) -> Batch {
        Batch {
            buffer: Vec::with_capacity(4096),
            family,
            table: table.to_string(),
        }
    }

    /// Declares a chain; declaring one that exists is fine.
    pub fn add_chain(&mut self, chain: &str) {
        self.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, |out, table| {
            attr_str(out, NFTA_CHAIN_TABLE, table);
            attr_str(out, NFTA_CHAIN_NAME, chain);
        });
    }

    pub fn flush_chain(&mut self, chain: &str) {
        self.message(NFT_MSG_DELRULE, 0, |out, table| {
            attr_str(out, NFTA_RULE_TABLE, table);
            attr_str(out, NFTA_RULE_CHAIN, chain);
        });
    }

    pub fn delete_chain(&mut self, chain: &str) {
        self.message(NFT_MSG_DELCHAIN, 0, |out, table| {
            attr_str(out, NFTA_CHAIN_TABLE, table);
            attr_str(out, NFTA_CHAIN_NAME, chain);
        });
    }

    /// Appends a rule to a chain.
    pub fn add_rule(&mut self, chain: &str, expressions: &[Expr]) {
        self.message(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            |out, table| {
                attr_str(out, NFTA_RULE_TABLE, table);
                attr_str(out, NFTA_RULE_CHAIN, chain);
                nested(out, NFTA_RULE_EXPRESSIONS, |out| {
                    for expression in expressions {
                        expression.encode(out);
                    }
                });
            },
        );
    }

    /// Adds `key` to set `map`, or maps it to `data` in a map, with a comment `nft list`
    /// shows. `exclusive`: fail (EEXIST) when the key exists, instead of keeping it when
    /// it already maps to `data`.
    pub fn add_element(
        &mut self,
        map: &str,
        key: &Key,
        data: Option<&Data>,
        comment: Option<&str>,
        exclusive: bool,
    ) {
        let flags = NLM_F_CREATE | if exclusive { NLM_F_EXCL } else { 0 };
        self.element(NFT_MSG_NEWSETELEM, flags, map, key, |out| {
            if let Some(data) = data {
                nested(out, NFTA_SET_ELEM_DATA, |out| data.encode(out));
            }
            if let Some(comment) = comment {
                let mut user_data = vec![UDATA_SET_ELEM_COMMENT, 0];
                user_data.extend_from_slice(comment.as_bytes());
                user_data.push(0);
                user_data[1] = u8::try_from(user_data.len() - 2).unwrap_or(u8::MAX);
                attr(out, NFTA_SET_ELEM_USERDATA, &user_data);
            }
        });
    }

    /// Adds `element` (see [`Batch::add_element`]).
    pub fn add(&mut self, element: &Element, exclusive: bool) {
        self.add_element(
            &element.set,
            &element.key,
            element.data.as_ref(),
            element.comment.as_deref(),
            exclusive,
        );
    }

    pub fn delete_element(&mut self, map: &str, key: &Key) {
        self.element(NFT_MSG_DELSETELEM, 0, map, key, |_| {});
    }

    /// Deletes the element of `key` if there is one (Linux 6.3+; older kernels refuse).
    pub fn destroy_element(&mut self, map: &str, key: &Key) {
        self.element(NFT_MSG_DESTROYSETELEM, 0, map, key, |_| {});
    }

    fn element(
        &mut self,
        kind: u16,
        flags: u16,
        map: &str,
        key: &Key,
        extra: impl FnOnce(&mut Vec<u8>),
    ) {
        let (start, end) = key.bytes();
        self.message(kind, flags, |out, table| {
            attr_str(out, NFTA_SET_ELEM_LIST_TABLE, table);
            attr_str(out, NFTA_SET_ELEM_LIST_SET, map);
            nested(out, NFTA_SET_ELEM_LIST_ELEMENTS, |out| {
                nested(out, NFTA_LIST_ELEM, |out| {
                    nested(out, NFTA_SET_ELEM_KEY, |out| {
                        attr(out, NFTA_DATA_VALUE, &start)
                    });
                    if let Some(end) = &end {
                        nested(out, NFTA_SET_ELEM_KEY_END, |out| {
                            attr(out, NFTA_DATA_VALUE, end)
                        });
                    }
                    extra(out);
                });
            });
        });
    }

    /// Sends the batch over a netfilter socket of its own, and waits for the kernel's
    /// verdict: an error for any message fails the whole transaction, which the kernel
    /// rolled back (see [`Exchange::batch`]).
    pub fn commit(&self) -> Result<(), NetlinkError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut exchange = Exchange::open(Protocol::Netfilter)?;
        self.commit_over(&mut exchange)?;
        if let Ok(mut lingering) = LINGERING.lock() {
            *lingering = Some(exchange);
        }
        Ok(())
    }

    /// Sends the batch over `exchange` (a test's fake kernel, or a socket already open).
    pub fn commit_over(&self, exchange: &mut Exchange) -> Result<(), NetlinkError> {
        exchange.batch("nftables batch", NFNL_SUBSYS_NFTABLES, &self.buffer)
    }

    fn message(&mut self, kind: u16, flags: u16, body: impl FnOnce(&mut Vec<u8>, &str)) {
        let start = header(
            &mut self.buffer,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | flags,
        );
        // nfgenmsg: family, version 0, resource id 0.
        self.buffer.extend_from_slice(&[self.family as u8, 0, 0, 0]);
        body(&mut self.buffer, &self.table);
        finish(&mut self.buffer, start);
    }
}

/// Every element of `table`'s sets and maps that the model holds (see [`dump`]), as the kernel
/// holds them now; none when there is no such table.
pub fn list(family: Family, table: &str) -> Result<Vec<Element>, NetlinkError> {
    list_over(&mut Exchange::open(Protocol::Netfilter)?, family, table)
}

/// [`list`] over `exchange`: a dump of the table's sets, then one of each set's elements.
pub fn list_over(
    exchange: &mut Exchange,
    family: Family,
    table: &str,
) -> Result<Vec<Element>, NetlinkError> {
    let gone = |e: &NetlinkError| e.errno() == Some(libc::ENOENT);
    let sets = match dump(exchange, &dump::request(family, table, None)) {
        Err(e) if gone(&e) => return Ok(Vec::new()),
        other => other?,
    };
    let mut elements = Vec::new();
    for set in sets
        .iter()
        .filter_map(|message| dump::set_type(&message.payload))
    {
        // A set deleted since the first dump holds nothing.
        let messages = match dump(exchange, &dump::request(family, table, Some(&set.name))) {
            Err(e) if gone(&e) => continue,
            other => other?,
        };
        for message in &messages {
            elements.extend(dump::elements(&message.payload, &set));
        }
    }
    Ok(elements)
}

/// The one place this module reads a dump from the kernel: the exchange retries one the
/// kernel marks as interrupted (the table changed meanwhile).
fn dump(exchange: &mut Exchange, request: &Raw) -> Result<Vec<Raw>, NetlinkError> {
    exchange.request("nftables dump", request, NLM_F_DUMP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::exchange::Messages;
    use crate::netlink::fake::{Fake, Reply};
    use netlink_packet_core::NLM_F_ACK;

    // nft's own encodings of the same requests (nftables 1.0.6), captured with
    // `strace -e trace=sendmsg -e write=3 nft '<command>'` in a sandbox namespace: each
    // message's payload after its netlink header, less the set ids nft adds for sets
    // declared in the same batch.

    /// `add element inet t owners { 10.0.0.3 comment "n:id:eth0" : 0x00000007 }`
    const NFT_OWNER: &str = "0100000006000100740000000b0002006f776e6572730000300003802c0001800c000180080001000a0000030c000280080001000700000010000600000a6e3a69643a6574683000";
    /// `add element inet t targets { 0.0.0.0/0 . tcp . 8080 comment "c" : 10.88.0.5 . 80 }`
    /// (a map with `flags interval`)
    const NFT_TARGET: &str = "0100000006000100740000000c00020074617267657473004800038044000180140001801000010000000000060000001f90000014000a8010000100ffffffff060000001f900000100002800c0001000a580005005000000800060000026300";
    /// `add element inet t names { "veth1" }`
    const NFT_NAME: &str = "0100000006000100740000000a0002006e616d6573000000200003801c000180180001801400010076657468310000000000000000000000";
    /// `add element bridge b ports { "veth1" . 02:00:00:00:00:01 comment "x" : 0x00000007 }`
    const NFT_PORT: &str = "0700000006000100620000000a000200706f7274730000003c00038038000180200001801c0001007665746831000000000000000000000002000000000100000c00028008000100070000000800060000027800";
    /// `delete element inet t owners { 10.0.0.3 }`
    const NFT_DELETE: &str =
        "0100000006000100740000000b0002006f776e657273000014000380100001800c000180080001000a000003";
    /// `add chain inet t d`, `delete chain inet t d` (the same payload)
    const NFT_CHAIN: &str = "0100000006000100740000000600030064000000";
    /// `flush chain inet t d`
    const NFT_FLUSH: &str = "0100000006000100740000000600020064000000";
    /// `add rule inet t c oifname != "br0" oifname @names drop`
    const NFT_RULE: &str = "0100000006000100740000000600020063000000dc00048024000180090001006d6574610000000014000280080002000000000708000100000000013800018008000100636d70002c0002800800010000000001080002000000000118000380140001006272300000000000000000000000000024000180090001006d657461000000001400028008000200000000070800010000000001280001800b0001006c6f6f6b757000001800028008000200000000010a0001006e616d6573000000300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000000";

    /// Each message of the batch: its type, its flags and its payload, as hex.
    fn encoded(batch: &Batch) -> Vec<(u16, u16, String)> {
        Messages(&batch.buffer)
            .map(|message| {
                let (header, payload) = message.expect("well-formed");
                let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
                (header.message_type, header.flags, hex)
            })
            .collect()
    }

    fn nftables(kind: u16) -> u16 {
        NFNL_SUBSYS_NFTABLES << 8 | kind
    }

    fn ip(text: &str) -> std::net::IpAddr {
        text.parse().expect("an address")
    }

    const CREATE: u16 = NLM_F_REQUEST | NLM_F_CREATE;

    #[test]
    fn elements_are_encoded_as_nft_encodes_them() {
        let mut batch = Batch::new(Family::Inet, "t");
        let owner = Key::exact(vec![Field::Addr(ip("10.0.0.3"))]);
        batch.add_element(
            "owners",
            &owner,
            Some(&Data::Mark(7)),
            Some("n:id:eth0"),
            false,
        );
        let published = Key::interval(vec![
            Field::Net("0.0.0.0/0".parse().expect("a network")),
            Field::Proto(6),
            Field::Port(8080),
        ]);
        let target = Data::Target(ip("10.88.0.5"), 80);
        batch.add_element("targets", &published, Some(&target), Some("c"), true);
        let name = Key::exact(vec![Field::Ifname("veth1".into())]);
        batch.add_element("names", &name, None, None, false);
        let mut bridge = Batch::new(Family::Bridge, "b");
        let port = Key::exact(vec![
            Field::Ifname("veth1".into()),
            Field::Mac([2, 0, 0, 0, 0, 1]),
        ]);
        bridge.add_element("ports", &port, Some(&Data::Mark(7)), Some("x"), false);
        let element = nftables(NFT_MSG_NEWSETELEM);
        assert_eq!(
            encoded(&batch),
            [
                (element, CREATE, NFT_OWNER.to_string()),
                (element, CREATE | NLM_F_EXCL, NFT_TARGET.to_string()),
                (element, CREATE, NFT_NAME.to_string()),
            ]
        );
        assert_eq!(encoded(&bridge), [(element, CREATE, NFT_PORT.to_string())]);
    }

    #[test]
    fn deleting_and_destroying_an_element_name_its_key_only() {
        let mut batch = Batch::new(Family::Inet, "t");
        let owner = Key::exact(vec![Field::Addr(ip("10.0.0.3"))]);
        batch.delete_element("owners", &owner);
        batch.destroy_element("owners", &owner);
        assert_eq!(
            encoded(&batch),
            [
                (
                    nftables(NFT_MSG_DELSETELEM),
                    NLM_F_REQUEST,
                    NFT_DELETE.to_string()
                ),
                (
                    nftables(NFT_MSG_DESTROYSETELEM),
                    NLM_F_REQUEST,
                    NFT_DELETE.to_string()
                ),
            ]
        );
    }

    #[test]
    fn chains_and_rules_are_encoded_as_nft_encodes_them() {
        let mut batch = Batch::new(Family::Inet, "t");
        batch.add_chain("d");
        batch.flush_chain("d");
        batch.delete_chain("d");
        batch.add_rule(
            "c",
            &[
                Expr::LoadOifname,
                Expr::NotEqual(Field::Ifname("br0".into())),
                Expr::LoadOifname,
                Expr::InSet("names"),
                Expr::Drop,
            ],
        );
        assert_eq!(
            encoded(&batch),
            [
                (nftables(NFT_MSG_NEWCHAIN), CREATE, NFT_CHAIN.to_string()),
                (
                    nftables(NFT_MSG_DELRULE),
                    NLM_F_REQUEST,
                    NFT_FLUSH.to_string()
                ),
                (
                    nftables(NFT_MSG_DELCHAIN),
                    NLM_F_REQUEST,
                    NFT_CHAIN.to_string()
                ),
                (
                    nftables(NFT_MSG_NEWRULE),
                    CREATE | NLM_F_APPEND,
                    NFT_RULE.to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_batch_commits_as_one_nf_tables_transaction_and_reports_the_kernels_refusal() {
        let mut batch = Batch::new(Family::Inet, "t");
        batch.add_chain("c");
        batch.delete_chain("c");
        let fake = Fake::new();
        fake.then(Reply::Ack).then(Reply::Refuse {
            errno: libc::ENOENT,
            message: Some("No such file or directory".into()),
        });
        let mut exchange = Exchange::over(fake.clone());
        batch.commit_over(&mut exchange).expect("committed");
        let sent = fake.requests();
        let kinds: Vec<u16> = sent.iter().map(|s| s.message.kind).collect();
        assert_eq!(
            kinds,
            [
                16,
                nftables(NFT_MSG_NEWCHAIN),
                nftables(NFT_MSG_DELCHAIN),
                17
            ]
        );
        // The delimiters address nf_tables.
        assert_eq!(sent[0].message.payload, [0, 0, 0, 10]);
        assert_eq!(sent[2].flags & NLM_F_ACK, NLM_F_ACK);
        assert_eq!(sent[1].flags & NLM_F_ACK, 0);
        let refused = batch.commit_over(&mut exchange).expect_err("refused");
        assert_eq!(refused.errno(), Some(libc::ENOENT));
        assert!(
            Batch::new(Family::Inet, "t").commit().is_ok(),
            "nothing to send"
        );
    }
}
