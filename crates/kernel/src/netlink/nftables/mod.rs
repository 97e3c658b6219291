//! nf_tables over netlink: the map elements a plugin's ADD and DEL write (and the few chains
//! and rules that must hold a value, such as a bridge's name, as data), as one atomic batch
//! of any size; and the elements of a table read back ([`list`]), decoded into the same model.
//!
//! Why not `nft -f` for these: every `nft` run first loads the table's chains and rules (and
//! an interval map's elements) into its cache, so with 1,000 containers adding one element
//! cost 19 ms and removing it 45 ms here, against 2-3 ms on an empty table; ADD latency grew
//! with the node's container count. The kernel does the same batch in constant time, and
//! answers a dump of a table's elements without a cache to build. `nft` stays for what is
//! rare and written in its language: declaring the base (hooked chains, maps).
//!
//! Elements map keys to values (an owner tag, a DNAT target) and only rarely to a jump:
//! committing an element that jumps makes the kernel validate every chain the table's base
//! chains reach, which with a chain per container was half of a bridge ADD's CPU time at
//! 1,000 containers.

mod dump;
mod elements;
mod wire;

pub use elements::{Data, Element, Expr, Family, Field, Key};

use netlink_packet_core::{NLMSG_DONE, NLM_F_DUMP_INTR};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::Socket;
use std::io;
use std::sync::Mutex;

use super::NetlinkError;
use wire::*;

/// The socket of the last committed batch, closed when the next batch commits or the process
/// ends. Closing a netfilter socket makes the kernel first finish freeing what transactions
/// deleted, which waits for an RCU grace period (about 20 ms here); left open, that happens
/// in the background while the plugin does other work (deleting a veth waits for one too).
static LINGERING: Mutex<Option<Socket>> = Mutex::new(None);

/// One transaction on one table: everything in it applies, or nothing does, whatever its
/// size.
pub struct Batch {
    buffer: Vec<u8>,
    family: Family,
    table: String,
    messages: u32,
    /// Where the last message starts: the only one that asks for an acknowledgement.
    last: usize,
}

impl Batch {
    pub fn new(family: Family, table: &str) -> Batch {
        let mut batch = Batch {
            buffer: Vec::with_capacity(4096),
            family,
            table: table.to_string(),
            messages: 0,
            last: 0,
        };
        control(&mut batch.buffer, NFNL_MSG_BATCH_BEGIN);
        batch
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

    /// Sends the batch and waits for the kernel's verdict: an error for any message fails
    /// the whole transaction, which the kernel rolled back.
    ///
    /// The kernel runs a batch inside the send and only then queues its answers, so they
    /// cannot be read as they come: an answer that finds the receive buffer full is dropped
    /// (ENOBUFS, though the batch may have committed), and a batch larger than the send
    /// buffer is refused whole (EMSGSIZE). So only the last message asks for an
    /// acknowledgement (the kernel reports errors whatever the flags), errors echo only the
    /// header of what they refuse, and both buffers are sized to the batch: there is room
    /// for an error to every message, as when a repeated ADD finds all its keys taken.
    pub fn commit(&self) -> Result<(), NetlinkError> {
        const OP: &str = "nftables batch";
        if self.messages == 0 {
            return Ok(());
        }
        let buffer = self.sealed();
        let socket = super::connect(NETLINK_NETFILTER)?;
        let failed = |source| super::bare(OP, source);
        socket.set_cap_ack(true).map_err(failed)?;
        let answers = usize::try_from(self.messages).unwrap_or(usize::MAX);
        size_buffer(&socket, Buffer::Send, buffer.len() + SEND_OVERHEAD).map_err(failed)?;
        size_buffer(
            &socket,
            Buffer::Receive,
            answers.saturating_mul(ANSWER_SIZE),
        )
        .map_err(failed)?;
        socket.send(&buffer, 0).map_err(failed)?;
        let mut receive = Vec::with_capacity(8192);
        loop {
            receive.clear();
            socket.recv(&mut receive, 0).map_err(failed)?;
            let mut offset = 0;
            while offset + 16 <= receive.len() {
                let length = u32_at(&receive, offset) as usize;
                let kind = u16::from_ne_bytes([receive[offset + 4], receive[offset + 5]]);
                if length < 16 {
                    return Err(NetlinkError::Decode {
                        op: OP,
                        reason: format!("message of {length} bytes"),
                    });
                }
                if kind == NLMSG_ERROR && offset + 20 <= receive.len() {
                    let code = u32_at(&receive, offset + 16) as i32;
                    if code != 0 {
                        let flags = u16::from_ne_bytes([receive[offset + 6], receive[offset + 7]]);
                        let end = (offset + length).min(receive.len());
                        return Err(NetlinkError::Request {
                            op: OP,
                            source: io::Error::from_raw_os_error(-code),
                            kernel: super::kernel_message(
                                flags,
                                receive.get(offset + 20..end).unwrap_or_default(),
                            ),
                        });
                    }
                    if u32_at(&receive, offset + 8) == self.messages {
                        if let Ok(mut lingering) = LINGERING.lock() {
                            *lingering = Some(socket);
                        }
                        return Ok(());
                    }
                }
                offset += (length + 3) & !3;
            }
        }
    }

    /// What goes to the kernel: the messages, the last asking for an acknowledgement, and
    /// the batch's end.
    fn sealed(&self) -> Vec<u8> {
        let mut buffer = self.buffer.clone();
        let flags = self.last + 6;
        let acked = u16::from_ne_bytes([buffer[flags], buffer[flags + 1]]) | NLM_F_ACK;
        buffer[flags..flags + 2].copy_from_slice(&acked.to_ne_bytes());
        control(&mut buffer, NFNL_MSG_BATCH_END);
        buffer
    }

    fn message(&mut self, kind: u16, flags: u16, body: impl FnOnce(&mut Vec<u8>, &str)) {
        self.messages += 1;
        self.last = header(
            &mut self.buffer,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | flags,
            self.messages,
        );
        let start = self.last;
        // nfgenmsg: family, version 0, resource id 0.
        self.buffer.extend_from_slice(&[self.family as u8, 0, 0, 0]);
        body(&mut self.buffer, &self.table);
        finish(&mut self.buffer, start);
    }
}

/// Every element of `table`'s sets and maps that the model holds (see [`dump`]), as the kernel
/// holds them now; none when there is no such table.
pub fn list(family: Family, table: &str) -> Result<Vec<Element>, NetlinkError> {
    let socket = super::connect(NETLINK_NETFILTER)?;
    let gone = |e: &NetlinkError| e.errno() == Some(libc::ENOENT);
    let sets = match exchange_dump(&socket, &dump::request(family, table, None)) {
        Err(e) if gone(&e) => return Ok(Vec::new()),
        other => other?,
    };
    let mut elements = Vec::new();
    for set in sets.iter().filter_map(|message| dump::set_type(message)) {
        // A set deleted since the first dump holds nothing.
        let messages = match exchange_dump(&socket, &dump::request(family, table, Some(&set.name)))
        {
            Err(e) if gone(&e) => continue,
            other => other?,
        };
        for message in &messages {
            elements.extend(dump::elements(message, &set));
        }
    }
    Ok(elements)
}

/// Sends a dump request and returns what follows the netlink header of every message the
/// kernel answers with; a dump the kernel marks as interrupted (the table changed meanwhile)
/// is asked for again. The one place this module reads a dump from the kernel.
fn exchange_dump(socket: &Socket, request: &[u8]) -> Result<Vec<Vec<u8>>, NetlinkError> {
    const OP: &str = "nftables dump";
    let failed = |source| super::bare(OP, source);
    let mut receive = Vec::with_capacity(64 * 1024);
    for _ in 0..super::DUMP_ATTEMPTS {
        socket.send(request, 0).map_err(failed)?;
        let mut answers = Vec::new();
        let mut interrupted = false;
        'receiving: loop {
            receive.clear();
            socket.recv(&mut receive, 0).map_err(failed)?;
            let mut offset = 0;
            while offset + 16 <= receive.len() {
                let length = u32_at(&receive, offset) as usize;
                let kind = u16::from_ne_bytes([receive[offset + 4], receive[offset + 5]]);
                let flags = u16::from_ne_bytes([receive[offset + 6], receive[offset + 7]]);
                let Some(message) = receive.get(offset + 16..offset + length) else {
                    return Err(NetlinkError::Decode {
                        op: OP,
                        reason: format!("message of {length} bytes"),
                    });
                };
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match kind {
                    NLMSG_DONE => break 'receiving,
                    NLMSG_ERROR => {
                        let code = message.get(..4).map_or(0, |c| u32_at(c, 0) as i32);
                        if code == 0 {
                            break 'receiving;
                        }
                        return Err(NetlinkError::Request {
                            op: OP,
                            source: io::Error::from_raw_os_error(-code),
                            kernel: super::kernel_message(
                                flags,
                                message.get(4..).unwrap_or_default(),
                            ),
                        });
                    }
                    _ => answers.push(message.to_vec()),
                }
                offset += (length + 3) & !3;
            }
        }
        if !interrupted {
            return Ok(answers);
        }
    }
    Err(failed(io::Error::from_raw_os_error(libc::EINTR)))
}

/// What the receive buffer holds of one answer: the kernel counts an error's whole
/// allocation, which with the echo capped to a header stays well under this.
const ANSWER_SIZE: usize = 1024;

/// What the kernel reserves of the send buffer beyond the message itself.
const SEND_OVERHEAD: usize = 4096;

enum Buffer {
    Send,
    Receive,
}

/// Sets a socket buffer to at least `bytes`: past the system's maximum where the process
/// may (CAP_NET_ADMIN, as a plugin has), else up to it, and a batch beyond is refused with
/// the kernel's errno.
fn size_buffer(socket: &Socket, buffer: Buffer, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (forced, capped) = match buffer {
        Buffer::Send => (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        Buffer::Receive => (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    };
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |option| {
        // SAFETY: setsockopt reads exactly size_of::<c_int>() bytes from `value`, which
        // lives across the call; the descriptor belongs to `socket`.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(forced) == 0 || set(capped) == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;

    #[test]
    fn a_batch_frames_every_message_and_only_the_last_asks_for_an_answer() {
        let mut batch = Batch::new(Family::Inet, "t");
        batch.add_chain("c");
        batch.delete_chain("c");
        assert_eq!(batch.messages, 2);
        let sealed = batch.sealed();
        // Begin (20 bytes), then the chain messages, each length-prefixed and aligned.
        assert_eq!(u32_at(&sealed, 0), 20);
        let first = u32_at(&sealed, 20) as usize;
        assert_eq!(first % 4, 0);
        let flags = |at: usize| u16::from_ne_bytes([sealed[at + 6], sealed[at + 7]]);
        let kind = |at: usize| u16::from_ne_bytes([sealed[at + 4], sealed[at + 5]]);
        assert_eq!(kind(20), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN);
        assert_eq!(flags(20) & NLM_F_ACK, 0);
        let last = 20 + first;
        assert_eq!(kind(last), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELCHAIN);
        assert_eq!(flags(last) & NLM_F_ACK, NLM_F_ACK);
        let end = last + u32_at(&sealed, last) as usize;
        assert_eq!(kind(end), NFNL_MSG_BATCH_END);
        assert_eq!(end + 20, sealed.len());
    }
}
