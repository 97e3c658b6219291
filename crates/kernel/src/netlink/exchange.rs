//! One request/response exchange with the kernel, for every netlink family, over a
//! [`Transport`]: the kernel's own socket ([`KernelSocket`]) or, in tests, a fake that
//! records what is sent and answers from a script (`fake`, with the `fake` feature).
//!
//! The exchange numbers what it sends, reads answers until the one that ends them (an
//! acknowledgement, the end of a dump, or an error carrying the kernel's own words from its
//! extended ack), skips answers to anything else, retries a dump the kernel marks as
//! interrupted (`NLM_F_DUMP_INTR`, the reference's issue #1121), and sends nfnetlink batches.

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, NlaBuffer, NlasIterator,
    NLA_TYPE_MASK, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE};
use netlink_sys::{Socket, SocketAddr};
use std::io;

use super::NetlinkError;

/// The kernel subsystem a socket talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// rtnetlink: links, addresses, routes, neighbours.
    Route,
    /// nfnetlink: nf_tables.
    Netfilter,
}

/// A setting of the transport that some requests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOption {
    /// NETLINK_GET_STRICT_CHK: the kernel honours a dump's filter, and refuses requests its
    /// lax parser takes.
    StrictChecking(bool),
    /// The send buffer holds at least this many bytes.
    SendBuffer(usize),
    /// The receive buffer holds at least this many bytes.
    ReceiveBuffer(usize),
}

/// What carries datagrams between the exchange and the kernel.
pub trait Transport: Send {
    /// Sends one datagram: a request, or a whole batch.
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// Replaces what `buffer` holds with the next datagram from the kernel.
    fn receive(&mut self, buffer: &mut Vec<u8>) -> io::Result<()>;
    fn set(&mut self, option: SocketOption) -> io::Result<()>;
}

/// A kernel that has not answered by then never will; fail instead of hanging the runtime.
const RECEIVE_TIMEOUT: libc::timeval = libc::timeval {
    tv_sec: 10,
    tv_usec: 0,
};

/// A netlink socket bound to the namespace of the thread that opened it, talking to the
/// kernel.
pub struct KernelSocket(Socket);

impl KernelSocket {
    pub fn open(protocol: Protocol) -> io::Result<KernelSocket> {
        let number = match protocol {
            Protocol::Route => NETLINK_ROUTE,
            Protocol::Netfilter => NETLINK_NETFILTER,
        };
        let mut socket = Socket::new(number)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks make the kernel say which attribute it refused; best effort.
        let _ = socket.set_ext_ack(true);
        if protocol == Protocol::Netfilter {
            // Errors echo only the header of what they refuse, so that an error to every
            // message of a batch fits the receive buffer (see `Exchange::batch`).
            socket.set_cap_ack(true)?;
        }
        crate::socket::set_option(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &RECEIVE_TIMEOUT,
        )?;
        Ok(KernelSocket(socket))
    }

    /// Sets a socket buffer to at least `bytes`: past the system's maximum where the process
    /// may (CAP_NET_ADMIN, as a plugin has), else up to it; a batch beyond is then refused
    /// with the kernel's errno.
    fn size_buffer(&self, forced: i32, capped: i32, bytes: usize) -> io::Result<()> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        crate::socket::set_option(&self.0, libc::SOL_SOCKET, forced, &value)
            .or_else(|_| crate::socket::set_option(&self.0, libc::SOL_SOCKET, capped, &value))
    }
}

impl Transport for KernelSocket {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.0.send(datagram, 0).map(drop)
    }

    fn receive(&mut self, buffer: &mut Vec<u8>) -> io::Result<()> {
        buffer.clear();
        self.0.recv(buffer, 0).map(drop)
    }

    fn set(&mut self, option: SocketOption) -> io::Result<()> {
        match option {
            SocketOption::StrictChecking(on) => self.0.set_netlink_get_strict_chk(on),
            SocketOption::SendBuffer(bytes) => {
                self.size_buffer(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes)
            }
            SocketOption::ReceiveBuffer(bytes) => {
                self.size_buffer(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, bytes)
            }
        }
    }
}

/// A netlink message header's size.
pub(crate) const HEADER: usize = 16;
/// How often an interrupted dump is retried before giving up.
const DUMP_ATTEMPTS: usize = 5;
/// Large enough for any datagram the kernel sends (it sizes dump datagrams well below).
const RECEIVE_CAPACITY: usize = 64 * 1024;
/// nfnetlink's batch delimiters.
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 16;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 17;
/// What the receive buffer holds of one answer to a batch: the kernel counts an error's
/// whole allocation, which with the echo capped to a header stays well under this.
const ANSWER_SIZE: usize = 1024;
/// What the kernel reserves of the send buffer beyond the datagram itself.
const SEND_OVERHEAD: usize = 4096;

/// Requests and their answers over one transport.
pub struct Exchange {
    transport: Box<dyn Transport>,
    sequence: u32,
    /// One buffer each way for the exchange's life: allocating 64 KiB per answer costs an
    /// mmap and a munmap each time under musl's allocator.
    sent: Vec<u8>,
    received: Vec<u8>,
}

impl Exchange {
    /// An exchange with the kernel over a socket of `protocol` in the calling thread's
    /// namespace.
    pub fn open(protocol: Protocol) -> Result<Exchange, NetlinkError> {
        Ok(Exchange::over(
            KernelSocket::open(protocol).map_err(NetlinkError::Socket)?,
        ))
    }

    pub fn over(transport: impl Transport + 'static) -> Exchange {
        Exchange {
            transport: Box::new(transport),
            sequence: 0,
            sent: Vec::new(),
            received: Vec::with_capacity(RECEIVE_CAPACITY),
        }
    }

    pub fn set(&mut self, option: SocketOption) -> Result<(), NetlinkError> {
        self.transport.set(option).map_err(NetlinkError::Socket)
    }

    /// Sends `message` and collects the messages the kernel answers with: those of a dump
    /// (`NLM_F_DUMP` in `flags`; retried when interrupted), or those a request makes it send
    /// before its acknowledgement, which every request but a dump asks for (without one, a
    /// request that answers nothing would leave us waiting).
    pub fn request<M>(
        &mut self,
        op: &'static str,
        message: &M,
        flags: u16,
    ) -> Result<Vec<M>, NetlinkError>
    where
        M: NetlinkSerializable + NetlinkDeserializable,
    {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let flags = NLM_F_REQUEST | if dump { flags } else { flags | NLM_F_ACK };
        let attempts = if dump { DUMP_ATTEMPTS } else { 1 };
        for _ in 0..attempts {
            self.sequence = self.sequence.wrapping_add(1);
            self.sent.clear();
            encode(&mut self.sent, message, flags, self.sequence);
            self.transport.send(&self.sent).map_err(|e| bare(op, e))?;
            if let Some(answers) = self.answers(op)? {
                return Ok(answers);
            }
        }
        Err(bare(op, io::Error::from_raw_os_error(libc::EINTR)))
    }

    /// The answers to the request just sent; `None` when the kernel marked them interrupted.
    fn answers<M: NetlinkDeserializable>(
        &mut self,
        op: &'static str,
    ) -> Result<Option<Vec<M>>, NetlinkError> {
        let mut answers = Vec::new();
        let mut interrupted = false;
        loop {
            self.transport
                .receive(&mut self.received)
                .map_err(|e| bare(op, e))?;
            for message in Messages(&self.received) {
                let (header, payload) = message.map_err(|reason| decode(op, reason))?;
                if header.sequence_number != self.sequence {
                    continue;
                }
                interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                match header.message_type {
                    NLMSG_ERROR | NLMSG_DONE => {
                        verdict(op, &header, payload)?;
                        return Ok((!interrupted).then_some(answers));
                    }
                    kind if kind < NLMSG_MIN_TYPE => {}
                    _ => answers.push(
                        M::deserialize(&header, payload).map_err(|e| decode(op, e.to_string()))?,
                    ),
                }
            }
        }
    }

    /// Sends `messages` (whole nfnetlink messages of `subsystem`, one after another) as one
    /// batch, which the kernel applies whole or not at all. An error to any message fails
    /// the batch, which the kernel then rolled back.
    ///
    /// The kernel runs a batch inside the send and only then queues its answers, so they
    /// cannot be read as they come: an answer that finds the receive buffer full is dropped
    /// (ENOBUFS, though the batch may have committed), and a batch larger than the send
    /// buffer is refused whole (EMSGSIZE). So only the last message asks for an
    /// acknowledgement (the kernel reports errors whatever the flags), errors echo only the
    /// header of what they refuse (NETLINK_CAP_ACK), and both buffers are sized to the
    /// batch: there is room for an error to every message, as when a repeated ADD finds all
    /// its keys taken.
    pub fn batch(
        &mut self,
        op: &'static str,
        subsystem: u16,
        messages: &[u8],
    ) -> Result<(), NetlinkError> {
        let begin = self.sequence.wrapping_add(1);
        self.sent.clear();
        control(&mut self.sent, NFNL_MSG_BATCH_BEGIN, subsystem, begin);
        let mut sequence = begin;
        let mut last = None;
        for message in Messages(messages) {
            let (mut header, payload) = message.map_err(|reason| decode(op, reason))?;
            sequence = sequence.wrapping_add(1);
            header.sequence_number = sequence;
            header.flags |= NLM_F_REQUEST;
            last = Some(self.sent.len());
            put_header(&mut self.sent, &header);
            self.sent.extend_from_slice(payload);
            self.sent.resize(self.sent.len().next_multiple_of(4), 0);
        }
        let Some(last) = last else {
            return Ok(());
        };
        let acked = sequence;
        let flags = u16::from_ne_bytes([self.sent[last + 6], self.sent[last + 7]]) | NLM_F_ACK;
        self.sent[last + 6..last + 8].copy_from_slice(&flags.to_ne_bytes());
        let end = acked.wrapping_add(1);
        control(&mut self.sent, NFNL_MSG_BATCH_END, subsystem, end);
        self.sequence = end;

        let count = acked.wrapping_sub(begin) as usize;
        let buffers = [
            SocketOption::SendBuffer(self.sent.len() + SEND_OVERHEAD),
            SocketOption::ReceiveBuffer(count.saturating_mul(ANSWER_SIZE)),
        ];
        for option in buffers {
            self.transport.set(option).map_err(|e| bare(op, e))?;
        }
        self.transport.send(&self.sent).map_err(|e| bare(op, e))?;
        loop {
            self.transport
                .receive(&mut self.received)
                .map_err(|e| bare(op, e))?;
            for message in Messages(&self.received) {
                let (header, payload) = message.map_err(|reason| decode(op, reason))?;
                let ours = header.sequence_number.wrapping_sub(begin) <= end.wrapping_sub(begin);
                if !ours || header.message_type != NLMSG_ERROR {
                    continue;
                }
                verdict(op, &header, payload)?;
                if header.sequence_number == acked {
                    return Ok(());
                }
            }
        }
    }
}

/// Types below this are netlink's own (noop, error, done, overrun), not a family's.
const NLMSG_MIN_TYPE: u16 = 16;

/// A message as bytes: for a family without a typed crate (nf_tables), and for scripting
/// the answers of a fake kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub kind: u16,
    pub payload: Vec<u8>,
}

impl Raw {
    /// A typed message, encoded.
    pub fn of<M: NetlinkSerializable>(message: &M) -> Raw {
        let mut payload = vec![0; message.buffer_len()];
        message.serialize(&mut payload);
        Raw {
            kind: message.message_type(),
            payload,
        }
    }

    /// The typed message these bytes encode.
    pub fn decode<M: NetlinkDeserializable>(&self) -> Result<M, M::Error> {
        let mut header = NetlinkHeader::default();
        header.message_type = self.kind;
        header.length = u32::try_from(HEADER + self.payload.len()).unwrap_or(u32::MAX);
        M::deserialize(&header, &self.payload)
    }
}

impl NetlinkSerializable for Raw {
    fn message_type(&self) -> u16 {
        self.kind
    }

    fn buffer_len(&self) -> usize {
        self.payload.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..self.payload.len()].copy_from_slice(&self.payload);
    }
}

impl NetlinkDeserializable for Raw {
    type Error = std::convert::Infallible;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, Self::Error> {
        Ok(Raw {
            kind: header.message_type,
            payload: payload.to_vec(),
        })
    }
}

/// An error without the kernel's words: interrupted dumps, failed sends and receives.
pub(crate) fn bare(op: &'static str, source: io::Error) -> NetlinkError {
    NetlinkError::Request {
        op,
        source,
        kernel: None,
    }
}

fn decode(op: &'static str, reason: String) -> NetlinkError {
    NetlinkError::Decode { op, reason }
}

/// The messages of a datagram, each as its header and payload.
pub(crate) struct Messages<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(NetlinkHeader, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let parsed = parse_header(self.0);
        let Ok((header, _)) = &parsed else {
            self.0 = &[];
            return Some(parsed);
        };
        let length = header.length as usize;
        self.0 = self.0.get(length.next_multiple_of(4)..).unwrap_or_default();
        Some(parsed)
    }
}

fn parse_header(bytes: &[u8]) -> Result<(NetlinkHeader, &[u8]), String> {
    let u32_at =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let u16_at = |at: usize| u16::from_ne_bytes([bytes[at], bytes[at + 1]]);
    if bytes.len() < HEADER {
        return Err(format!("a message cut short at {} bytes", bytes.len()));
    }
    let length = u32_at(0) as usize;
    if length < HEADER || length > bytes.len() {
        return Err(format!(
            "a message of {length} bytes where {} remain",
            bytes.len()
        ));
    }
    let mut header = NetlinkHeader::default();
    header.length = u32_at(0);
    header.message_type = u16_at(4);
    header.flags = u16_at(6);
    header.sequence_number = u32_at(8);
    header.port_number = u32_at(12);
    Ok((header, &bytes[HEADER..length]))
}

pub(crate) fn put_header(out: &mut Vec<u8>, header: &NetlinkHeader) {
    out.extend_from_slice(&header.length.to_ne_bytes());
    out.extend_from_slice(&header.message_type.to_ne_bytes());
    out.extend_from_slice(&header.flags.to_ne_bytes());
    out.extend_from_slice(&header.sequence_number.to_ne_bytes());
    out.extend_from_slice(&header.port_number.to_ne_bytes());
}

fn encode<M: NetlinkSerializable>(out: &mut Vec<u8>, message: &M, flags: u16, sequence: u32) {
    let length = HEADER + message.buffer_len();
    let mut header = NetlinkHeader::default();
    header.length = u32::try_from(length).unwrap_or(u32::MAX);
    header.message_type = message.message_type();
    header.flags = flags;
    header.sequence_number = sequence;
    put_header(out, &header);
    out.resize(length, 0);
    message.serialize(&mut out[HEADER..]);
}

/// A batch delimiter: an nfnetlink message (family unspecified, version 0) whose resource
/// id names the subsystem the batch is for.
fn control(out: &mut Vec<u8>, kind: u16, subsystem: u16, sequence: u32) {
    let mut header = NetlinkHeader::default();
    header.length = (HEADER + 4) as u32;
    header.message_type = kind;
    header.flags = NLM_F_REQUEST;
    header.sequence_number = sequence;
    put_header(out, &header);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&subsystem.to_be_bytes());
}

/// What an error or a dump's end says: nothing when its code is 0 (an acknowledgement, a
/// complete dump), else the kernel's errno and words.
fn verdict(op: &'static str, header: &NetlinkHeader, payload: &[u8]) -> Result<(), NetlinkError> {
    let code = match payload.get(..4) {
        Some(code) => i32::from_ne_bytes([code[0], code[1], code[2], code[3]]),
        // An old kernel's bare end of a dump.
        None if header.message_type == NLMSG_DONE => 0,
        None => return Err(decode(op, "an error message without its code".into())),
    };
    if code == 0 {
        return Ok(());
    }
    Err(NetlinkError::Request {
        op,
        source: io::Error::from_raw_os_error(code.wrapping_neg()),
        kernel: kernel_message(header, &payload[4..]),
    })
}

/// The message of an extended ack (`NLMSGERR_ATTR_MSG`) in what follows a code: after an
/// error, the request echoed back (only its header when `NLM_F_CAPPED`), then attributes
/// when `NLM_F_ACK_TLVS`; after a dump's end, the attributes.
fn kernel_message(header: &NetlinkHeader, after_code: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if header.flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if header.message_type == NLMSG_DONE {
        0
    } else if after_code.len() < HEADER {
        return None;
    } else if header.flags & NLM_F_CAPPED != 0 {
        HEADER
    } else {
        let length = u32::from_ne_bytes(after_code.get(..4)?.try_into().ok()?) as usize;
        length.next_multiple_of(4)
    };
    NlasIterator::new(after_code.get(echoed..)?)
        .filter_map(Result::ok)
        .find(|nla: &NlaBuffer<&[u8]>| nla.kind() & NLA_TYPE_MASK == NLMSGERR_ATTR_MSG)
        .and_then(|nla| {
            let text = nla.value().split(|byte| *byte == 0).next()?;
            let text = String::from_utf8_lossy(text).trim().to_string();
            (!text.is_empty()).then_some(text)
        })
}

#[cfg(test)]
mod tests {
    use super::super::fake::{Fake, Reply, Sent};
    use super::*;

    fn raw(kind: u16, payload: &[u8]) -> Raw {
        Raw {
            kind,
            payload: payload.to_vec(),
        }
    }

    /// A message as the kernel sends it: header, then payload, padded.
    fn message(kind: u16, flags: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.length = (HEADER + payload.len()) as u32;
        header.message_type = kind;
        header.flags = flags;
        header.sequence_number = sequence;
        let mut out = Vec::new();
        put_header(&mut out, &header);
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// An error (0: an acknowledgement) to the request numbered `sequence`.
    fn error(sequence: u32, errno: i32) -> Vec<u8> {
        let mut payload = errno.wrapping_neg().to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; HEADER]);
        message(NLMSG_ERROR, NLM_F_CAPPED, sequence, &payload)
    }

    #[test]
    fn requests_are_numbered_and_every_one_but_a_dump_asks_for_an_acknowledgement() {
        let fake = Fake::new();
        fake.then(Reply::Answer(vec![raw(20, b"link"), raw(20, b"more")]))
            .then(Reply::Ack);
        let mut exchange = Exchange::over(fake.clone());
        let answers = exchange
            .request("get", &raw(18, b"ask"), 0)
            .expect("answered");
        assert_eq!(answers, [raw(20, b"link"), raw(20, b"more")]);
        assert_eq!(
            exchange.request("set", &raw(19, b"x"), 0).expect("acked"),
            []
        );
        let sent = fake.requests();
        assert_eq!(
            sent,
            [
                Sent {
                    flags: NLM_F_REQUEST | NLM_F_ACK,
                    sequence: 1,
                    message: raw(18, b"ask"),
                },
                Sent {
                    flags: NLM_F_REQUEST | NLM_F_ACK,
                    sequence: 2,
                    message: raw(19, b"x"),
                },
            ]
        );
        assert!(fake.finished());
    }

    #[test]
    fn the_kernels_refusal_comes_back_with_its_errno_and_its_words() {
        let fake = Fake::new();
        fake.then(Reply::Refuse {
            errno: libc::ERANGE,
            message: Some("mtu greater than device maximum".into()),
        })
        .then(Reply::Refuse {
            errno: libc::ENODEV,
            message: None,
        });
        let mut exchange = Exchange::over(fake);
        let refused = exchange
            .request("set mtu", &raw(19, b""), 0)
            .expect_err("refused");
        assert_eq!(refused.errno(), Some(libc::ERANGE));
        assert_eq!(
            refused.to_string(),
            "netlink set mtu failed: mtu greater than device maximum"
        );
        let gone = exchange
            .request("get link", &raw(18, b""), 0)
            .expect_err("refused");
        assert_eq!(gone.errno(), Some(libc::ENODEV));
        assert_eq!(gone.to_string(), "netlink get link failed");
    }

    #[test]
    fn a_dump_collects_every_datagram_until_its_end() {
        let fake = Fake::new();
        fake.then(Reply::Dump {
            datagrams: vec![vec![raw(16, b"a"), raw(16, b"b")], vec![raw(16, b"c")]],
            interrupted: false,
        });
        let mut exchange = Exchange::over(fake.clone());
        let answers = exchange
            .request("list", &raw(18, b""), NLM_F_DUMP)
            .expect("dumped");
        let kinds: Vec<&[u8]> = answers.iter().map(|a| &a.payload[..1]).collect();
        assert_eq!(kinds, [b"a", b"b", b"c"]);
        // A dump ends with DONE and asks for no acknowledgement.
        assert_eq!(fake.requests()[0].flags, NLM_F_REQUEST | NLM_F_DUMP);
    }

    #[test]
    fn an_interrupted_dump_is_asked_again_and_then_given_up() {
        let interrupted = || Reply::Dump {
            datagrams: vec![vec![raw(16, b"stale")]],
            interrupted: true,
        };
        let fake = Fake::new();
        fake.then(interrupted()).then(Reply::Dump {
            datagrams: vec![vec![raw(16, b"fresh")]],
            interrupted: false,
        });
        let mut exchange = Exchange::over(fake.clone());
        let answers = exchange
            .request("list", &raw(18, b""), NLM_F_DUMP)
            .expect("the second dump completes");
        assert_eq!(answers, [raw(16, b"fresh")]);
        let sequences: Vec<u32> = fake.requests().iter().map(|s| s.sequence).collect();
        assert_eq!(sequences, [1, 2], "each attempt is a request of its own");

        let fake = Fake::new();
        for _ in 0..DUMP_ATTEMPTS {
            fake.then(interrupted());
        }
        let failed = Exchange::over(fake.clone())
            .request("list", &raw(18, b""), NLM_F_DUMP)
            .expect_err("never completes");
        assert_eq!(failed.errno(), Some(libc::EINTR));
        assert!(fake.finished(), "asked {DUMP_ATTEMPTS} times");
    }

    #[test]
    fn answers_to_other_requests_and_netlinks_own_noise_are_skipped() {
        let fake = Fake::new();
        let noop = message(1, 0, 1, b"");
        let stale = [error(7, libc::EEXIST), noop].concat();
        let answer = message(16, 0, 1, b"mine");
        fake.then(Reply::Datagrams(vec![stale, answer, error(1, 0)]));
        let answers = Exchange::over(fake)
            .request("get", &raw(18, b""), 0)
            .expect("the stale error is another request's");
        assert_eq!(answers, [raw(16, b"mine")]);
    }

    #[test]
    fn a_dump_that_fails_at_its_end_fails() {
        let fake = Fake::new();
        let done = message(NLMSG_DONE, 0, 1, &(-libc::ENODEV).to_ne_bytes());
        fake.then(Reply::Datagrams(vec![message(16, 0, 1, b"part"), done]));
        let failed = Exchange::over(fake)
            .request("list", &raw(18, b""), NLM_F_DUMP)
            .expect_err("the kernel said the dump failed");
        assert_eq!(failed.errno(), Some(libc::ENODEV));
    }

    #[test]
    fn silence_and_garbage_are_errors_not_hangs() {
        let fake = Fake::new();
        fake.then(Reply::Silence)
            .then(Reply::Datagrams(vec![vec![40, 0, 0, 0, 2, 0]]))
            .then(Reply::Datagrams(vec![message(NLMSG_ERROR, 0, 3, b"")]));
        let mut exchange = Exchange::over(fake);
        let silent = exchange
            .request("get", &raw(18, b""), 0)
            .expect_err("no answer");
        assert_eq!(silent.errno(), Some(libc::EAGAIN));
        let cut = exchange
            .request("get", &raw(18, b""), 0)
            .expect_err("a cut message");
        assert!(matches!(cut, NetlinkError::Decode { .. }), "{cut}");
        let codeless = exchange
            .request("get", &raw(18, b""), 0)
            .expect_err("an error without a code");
        assert!(
            matches!(codeless, NetlinkError::Decode { .. }),
            "{codeless}"
        );
    }

    /// Three messages of nf_tables (subsystem 10) as a batch encoder writes them.
    fn three_messages() -> Vec<u8> {
        [
            message(10 << 8 | 3, NLM_F_REQUEST, 0, b"chain"),
            message(10 << 8 | 12, NLM_F_REQUEST, 0, b"element"),
            message(10 << 8 | 14, NLM_F_REQUEST, 0, b"gone"),
        ]
        .concat()
    }

    #[test]
    fn a_batch_is_framed_numbered_sized_and_acknowledged_once() {
        let fake = Fake::new();
        let mut exchange = Exchange::over(fake.clone());
        exchange
            .request("warm up", &raw(18, b""), 0)
            .expect_err("nothing scripted");
        fake.then(Reply::Ack);
        exchange
            .batch("batch", 10, &three_messages())
            .expect("committed");
        let sent = fake.requests();
        let batch = &sent[1..];
        let kinds: Vec<u16> = batch.iter().map(|s| s.message.kind).collect();
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                10 << 8 | 3,
                10 << 8 | 12,
                10 << 8 | 14,
                NFNL_MSG_BATCH_END
            ]
        );
        // The delimiters name the subsystem (big-endian resource id).
        assert_eq!(batch[0].message.payload, [0, 0, 0, 10]);
        assert_eq!(batch[4].message.payload, [0, 0, 0, 10]);
        let sequences: Vec<u32> = batch.iter().map(|s| s.sequence).collect();
        assert_eq!(
            sequences,
            [2, 3, 4, 5, 6],
            "numbered after the request before"
        );
        let acks: Vec<bool> = batch.iter().map(|s| s.flags & NLM_F_ACK != 0).collect();
        assert_eq!(acks, [false, false, false, true, false]);
        let datagram = fake.sent()[1].len();
        assert_eq!(
            fake.options(),
            [
                SocketOption::SendBuffer(datagram + SEND_OVERHEAD),
                SocketOption::ReceiveBuffer(3 * ANSWER_SIZE),
            ]
        );
    }

    #[test]
    fn a_batch_fails_on_the_kernels_first_error_and_waits_for_its_last_answer() {
        let fake = Fake::new();
        fake.then(Reply::Refuse {
            errno: libc::ENOENT,
            message: Some("No such table".into()),
        });
        let mut exchange = Exchange::over(fake.clone());
        let refused = exchange
            .batch("batch", 10, &three_messages())
            .expect_err("refused");
        assert_eq!(refused.errno(), Some(libc::ENOENT));
        assert_eq!(refused.to_string(), "netlink batch failed: No such table");

        // Acknowledgements of messages before the last do not end the batch, nor do the
        // answers to an earlier batch: the last message's answer does.
        let (begin, last) = (6, 9);
        fake.then(Reply::Datagrams(vec![
            error(3, libc::EEXIST),
            error(begin + 1, 0),
            error(last, libc::ENOENT),
        ]));
        let refused = exchange
            .batch("batch", 10, &three_messages())
            .expect_err("the last message's refusal");
        assert_eq!(refused.errno(), Some(libc::ENOENT));
        let (begin, last) = (11, 14);
        fake.then(Reply::Datagrams(vec![
            error(last - 5, 0),
            [error(begin + 1, 0), error(last, 0)].concat(),
        ]));
        exchange
            .batch("batch", 10, &three_messages())
            .expect("the last message's acknowledgement ends it");
        assert!(fake.finished());
    }

    #[test]
    fn an_empty_batch_sends_nothing() {
        let fake = Fake::new();
        Exchange::over(fake.clone())
            .batch("batch", 10, &[])
            .expect("nothing to do");
        assert!(fake.sent().is_empty());
    }

    /// What follows an error's code: the echoed request whose header says it is `length`
    /// bytes, cut at `echoed`, then a MSG attribute.
    fn after_code(length: u32, echoed: usize, message: &str) -> Vec<u8> {
        let mut payload = length.to_ne_bytes().to_vec();
        payload.resize(echoed, 0);
        let value = [message.as_bytes(), b"\0"].concat();
        let attribute_length = u16::try_from(4 + value.len()).expect("short message");
        payload.extend_from_slice(&attribute_length.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(&value);
        payload.resize(payload.len().next_multiple_of(4), 0);
        payload
    }

    fn flagged(kind: u16, flags: u16) -> NetlinkHeader {
        let mut header = NetlinkHeader::default();
        header.message_type = kind;
        header.flags = flags;
        header
    }

    #[test]
    fn the_kernels_message_is_found_after_a_capped_or_whole_echo_or_a_dumps_end() {
        let capped = after_code(60, 16, "Nexthop has invalid gateway");
        let header = flagged(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        assert_eq!(
            kernel_message(&header, &capped).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        let whole = after_code(22, 24, "mtu greater than device maximum");
        assert_eq!(
            kernel_message(&flagged(NLMSG_ERROR, NLM_F_ACK_TLVS), &whole).as_deref(),
            Some("mtu greater than device maximum")
        );
        let done = after_code(0, 0, "dump failed");
        assert_eq!(
            kernel_message(&flagged(NLMSG_DONE, NLM_F_ACK_TLVS), &done).as_deref(),
            Some("dump failed")
        );
    }

    #[test]
    fn no_message_without_attributes_or_with_a_short_payload() {
        let capped = after_code(60, 16, "ignored");
        assert_eq!(
            kernel_message(&flagged(NLMSG_ERROR, NLM_F_CAPPED), &capped),
            None
        );
        let tlvs = flagged(NLMSG_ERROR, NLM_F_ACK_TLVS);
        assert_eq!(kernel_message(&tlvs, &[0; 8]), None);
        let beyond = after_code(4000, 16, "unreachable");
        assert_eq!(kernel_message(&tlvs, &beyond), None);
        let both = flagged(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        assert_eq!(kernel_message(&both, &[0; 16]), None);
    }
}
