//! nf_tables over netlink, encode-only: the map elements a plugin's ADD and DEL write (and
//! the few chains and rules that must hold a value, such as a bridge's name, as data), as
//! one atomic batch of any size.
//!
//! Why not `nft -f` for these: every `nft` run first loads the table's chains and rules (and
//! an interval map's elements) into its cache, so with 1,000 containers adding one element
//! cost 19 ms and removing it 45 ms here, against 2-3 ms on an empty table; ADD latency grew
//! with the node's container count. The kernel does the same batch in constant time. `nft`
//! stays for what is rare or reads: declaring the base (hooked chains, maps) and listing.
//!
//! Elements map keys to values (an owner tag, a DNAT target) and only rarely to a jump:
//! committing an element that jumps makes the kernel validate every chain the table's base
//! chains reach, which with a chain per container was half of a bridge ADD's CPU time at
//! 1,000 containers.

use ipnetwork::IpNetwork;
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::Socket;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;

use super::NetlinkError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NLMSG_ERROR: u16 = 2;

const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
/// Deletes an element if it exists (Linux 6.3+).
const NFT_MSG_DESTROYSETELEM: u16 = 30;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

// Attribute numbers from linux/netfilter/nf_tables.h.
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
/// nftnl's user-data type for an element comment, which `nft list` shows.
const UDATA_SET_ELEM_COMMENT: u8 = 0;
const NFT_JUMP: i32 = -3;
const NF_DROP: i32 = 0;
const NFT_META_OIFNAME: u32 = 7;
const NFT_CMP_NEQ: u32 = 1;
/// The verdict register, and the first data register.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
/// Interface names are keys of IFNAMSIZ bytes.
const IFNAMSIZ: usize = 16;

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

/// nft syntax, as `nft -j list` gives fields back.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    fn bytes(&self) -> (Vec<u8>, Option<Vec<u8>>) {
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
    fn encode(&self, out: &mut Vec<u8>) {
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

    fn encode(&self, out: &mut Vec<u8>) {
        nested(out, NFTA_LIST_ELEM, |out| {
            attr_str(out, NFTA_EXPR_NAME, self.name());
            nested(out, NFTA_EXPR_DATA, |out| match self {
                Expr::LoadOifname => {
                    attr(out, NFTA_META_DREG, &NFT_REG_1.to_be_bytes());
                    attr(out, NFTA_META_KEY, &NFT_META_OIFNAME.to_be_bytes());
                }
                Expr::NotEqual(value) => {
                    attr(out, NFTA_CMP_SREG, &NFT_REG_1.to_be_bytes());
                    attr(out, NFTA_CMP_OP, &NFT_CMP_NEQ.to_be_bytes());
                    nested(out, NFTA_CMP_DATA, |out| {
                        attr(out, NFTA_DATA_VALUE, &value.bytes().0)
                    });
                }
                Expr::InSet(set) => {
                    attr_str(out, NFTA_LOOKUP_SET, set);
                    attr(out, NFTA_LOOKUP_SREG, &NFT_REG_1.to_be_bytes());
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

/// Batch begin and end: nfnetlink messages addressed to the nf_tables subsystem.
fn control(out: &mut Vec<u8>, kind: u16) {
    let start = header(out, kind, NLM_F_REQUEST, 0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    finish(out, start);
}

fn u32_at(buffer: &[u8], offset: usize) -> u32 {
    u32::from_ne_bytes([
        buffer[offset],
        buffer[offset + 1],
        buffer[offset + 2],
        buffer[offset + 3],
    ])
}

/// Writes a netlink header whose length [`finish`] fills in; returns where it starts.
fn header(out: &mut Vec<u8>, kind: u16, flags: u16, sequence: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    start
}

fn finish(out: &mut [u8], start: usize) {
    let length = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&length.to_ne_bytes());
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize((out.len() + 3) & !3, 0);
}

fn attr_str(out: &mut Vec<u8>, kind: u16, value: &str) {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    attr(out, kind, &bytes);
}

fn nested(out: &mut Vec<u8>, kind: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    body(out);
    let length = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&length.to_ne_bytes());
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
    fn fields_and_data_read_as_nft_lists_them() {
        assert_eq!(Field::Net(net("127.0.0.1/32")).to_string(), "127.0.0.1");
        assert_eq!(Field::Net(net("fd00::5/64")).to_string(), "fd00::/64");
        assert_eq!(Field::Proto(47).to_string(), "47");
        let target = Data::Target("fd00::2".parse().expect("a valid literal"), 80);
        assert_eq!(target.to_string(), "fd00::2 . 80");
        assert_eq!(Data::Mark(0x2000).to_string(), "0x00002000");
    }

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
