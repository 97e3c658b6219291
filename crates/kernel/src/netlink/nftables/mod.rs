//! nf_tables over netlink, encode-only: the map elements a plugin's ADD and DEL write (and
//! the few chains and rules that must hold a value, such as a bridge's name, as data), as
//! one atomic batch of any size.
//!
//! Why not `nft -f` for these: every `nft` run first loads the table's chains and rules (and
//! an interval map's elements) into its cache, so the cost of adding or removing one element
//! grew with the node's container count, and so did ADD's latency. The kernel does the same
//! batch in constant time. `nft` stays for what is rare or reads: declaring the base (hooked
//! chains, maps) and listing.
//!
//! Elements map keys to values (an owner tag, a DNAT target) and only rarely to a jump:
//! committing an element that jumps makes the kernel validate every chain the table's base
//! chains reach, which with a chain per container was half of a bridge ADD's CPU time at
//! 1,000 containers.

mod elements;
mod wire;

pub use elements::{Data, Expr, Family, Field, Key};

use std::sync::Mutex;

use super::{Exchange, NetlinkError, Protocol};
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
