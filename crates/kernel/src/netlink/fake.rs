//! A [`Transport`] that records every datagram sent and answers each from a script, as the
//! kernel would: acknowledgements, errors with extended-ack text, answers, dumps in several
//! datagrams, interrupted dumps, silence. What goes to the kernel, and how its answers are
//! read, can then be tested without root and without a kernel.
//!
//! Hand a clone to [`Netlink::over`](super::Netlink::over) or
//! [`Exchange::over`](super::Exchange::over), script its replies with [`Fake::then`], and read
//! what was sent with [`Fake::requests`].

use netlink_packet_core::{
    NetlinkHeader, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLM_F_DUMP_INTR, NLM_F_MULTIPART,
};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::exchange::{put_header, Messages, Raw, SocketOption, Transport, HEADER};

/// How the fake kernel answers one datagram (a request, or a whole batch).
#[derive(Debug, Clone)]
pub enum Reply {
    /// Acknowledges the message that asked for it (a batch's last).
    Ack,
    /// These messages, then the acknowledgement: a lookup, or a creation echoed back.
    Answer(Vec<Raw>),
    /// Refuses the request (a batch's first message) with `errno` and the kernel's words.
    Refuse { errno: i32, message: Option<String> },
    /// A dump in these datagrams, then its end. `interrupted` marks every message with
    /// `NLM_F_DUMP_INTR`, as the kernel does when what it dumped changed meanwhile.
    Dump {
        datagrams: Vec<Vec<Raw>>,
        interrupted: bool,
    },
    /// Exactly these datagrams: answers to something else, or garbage.
    Datagrams(Vec<Vec<u8>>),
    /// Nothing: the receive times out, as the kernel socket's does.
    Silence,
}

/// A message as the fake saw it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub flags: u16,
    pub sequence: u32,
    pub message: Raw,
}

/// The recording fake; clones share one script and one record, so a test keeps a clone to
/// script and inspect what the exchange it handed the other to does.
#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    sent: Vec<Vec<u8>>,
    options: Vec<SocketOption>,
    queued: VecDeque<Vec<u8>>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Scripts the answer to the next datagram that has none yet.
    pub fn then(&self, reply: Reply) -> &Fake {
        self.state().script.push_back(reply);
        self
    }

    /// Every datagram sent, in order.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.state().sent.clone()
    }

    /// Every message sent (a batch's delimiters included), in order.
    pub fn requests(&self) -> Vec<Sent> {
        self.state()
            .sent
            .iter()
            .flat_map(|datagram| Messages(datagram).map(sent).collect::<Vec<_>>())
            .collect()
    }

    /// Every socket option set, in order.
    pub fn options(&self) -> Vec<SocketOption> {
        self.state().options.clone()
    }

    /// Whether every scripted reply was used up.
    pub fn finished(&self) -> bool {
        self.state().script.is_empty()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sent(message: Result<(NetlinkHeader, &[u8]), String>) -> Sent {
    let (header, payload) = message.unwrap_or_else(|reason| panic!("sent garbage: {reason}"));
    Sent {
        flags: header.flags,
        sequence: header.sequence_number,
        message: Raw {
            kind: header.message_type,
            payload: payload.to_vec(),
        },
    }
}

impl Transport for Fake {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        state.sent.push(datagram.to_vec());
        let reply = state.script.pop_front().ok_or_else(|| {
            io::Error::other("the fake kernel has no reply scripted for this request")
        })?;
        let headers: Vec<NetlinkHeader> = Messages(datagram)
            .map(|message| message.map(|(header, _)| header))
            .collect::<Result<_, _>>()
            .map_err(io::Error::other)?;
        // A batch is its delimiters around the messages; a request is one message.
        let request = headers
            .get(usize::from(headers.len() > 1))
            .copied()
            .ok_or_else(|| io::Error::other("an empty datagram"))?;
        let acked = headers
            .iter()
            .rev()
            .find(|h| h.flags & NLM_F_ACK != 0)
            .copied()
            .unwrap_or(request);
        let answers = match reply {
            Reply::Ack => vec![error(&acked, 0, None)],
            Reply::Answer(messages) => {
                vec![datagram_of(&request, &messages, 0), error(&acked, 0, None)]
            }
            Reply::Refuse { errno, message } => vec![error(&request, errno, message.as_deref())],
            Reply::Dump {
                datagrams,
                interrupted,
            } => {
                let flags = NLM_F_MULTIPART | if interrupted { NLM_F_DUMP_INTR } else { 0 };
                let mut answers: Vec<Vec<u8>> = datagrams
                    .iter()
                    .map(|messages| datagram_of(&request, messages, flags))
                    .collect();
                let done = Raw {
                    kind: NLMSG_DONE,
                    payload: 0i32.to_ne_bytes().to_vec(),
                };
                answers.push(datagram_of(&request, &[done], flags));
                answers
            }
            Reply::Datagrams(datagrams) => datagrams,
            Reply::Silence => Vec::new(),
        };
        state.queued.extend(answers);
        Ok(())
    }

    fn receive(&mut self, buffer: &mut Vec<u8>) -> io::Result<()> {
        let next = self.state().queued.pop_front();
        // What a socket whose receive timeout ran out says.
        let datagram = next.ok_or_else(|| io::Error::from_raw_os_error(libc::EAGAIN))?;
        buffer.clear();
        buffer.extend_from_slice(&datagram);
        Ok(())
    }

    fn set(&mut self, option: SocketOption) -> io::Result<()> {
        self.state().options.push(option);
        Ok(())
    }
}

/// `messages` as answers to `request`, in one datagram.
fn datagram_of(request: &NetlinkHeader, messages: &[Raw], flags: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        out.extend(answer(request, message.kind, flags, &message.payload));
    }
    out
}

fn answer(request: &NetlinkHeader, kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.length = u32::try_from(HEADER + payload.len()).unwrap_or(u32::MAX);
    header.message_type = kind;
    header.flags = flags;
    header.sequence_number = request.sequence_number;
    let mut out = Vec::new();
    put_header(&mut out, &header);
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// The kernel's error message (an acknowledgement when `errno` is 0): the code, the
/// header of the request it answers, then the extended ack's message attribute.
fn error(request: &NetlinkHeader, errno: i32, message: Option<&str>) -> Vec<u8> {
    let mut payload = errno.wrapping_neg().to_ne_bytes().to_vec();
    put_header(&mut payload, request);
    let mut flags = NLM_F_CAPPED;
    if let Some(text) = message {
        flags |= NLM_F_ACK_TLVS;
        let value = [text.as_bytes(), b"\0"].concat();
        let length = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        payload.extend_from_slice(&length.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(&value);
        payload.resize(payload.len().next_multiple_of(4), 0);
    }
    answer(request, NLMSG_ERROR, flags, &payload)
}
