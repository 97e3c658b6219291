//! WireGuard's cross-platform configuration protocol (UAPI), as boringtun and wireguard-go
//! speak it on a stream: `get=1` answers the device's settings and peers as `key=value`
//! lines; `set=1` with such lines changes them; each answer ends with `errno=N` and a blank
//! line. Values are written as data, one per line, never spliced from untrusted text.

use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use zeroize::Zeroizing;

use overlay::wireguard::WgPeer;
use overlay::PublicKey;

use super::key::PrivateKey;

#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    #[error("the WireGuard device's configuration stream: {0}")]
    Io(#[from] io::Error),
    #[error("the WireGuard device refused a {what}: errno {errno} ({})", io::Error::from_raw_os_error(*errno))]
    Refused { what: &'static str, errno: i32 },
    #[error("the WireGuard device answered what is no configuration: {0}")]
    Garbled(String),
    /// An earlier request's answer was lost or cut short: what the stream holds next may
    /// be that answer, so nothing more is asked on it (the device is set up again).
    #[error("the WireGuard device's configuration stream is out of step after an earlier failure")]
    OutOfStep,
}

impl cni::Coded for UapiError {
    fn code(&self) -> cni::error::ErrorCode {
        match self {
            UapiError::Io(_) | UapiError::OutOfStep => cni::error::ErrorCode::Io,
            UapiError::Refused { .. } | UapiError::Garbled(_) => cni::error::ErrorCode::Internal,
        }
    }
}

/// What `get=1` tells of a device (its private key, which wireguard-go includes, is
/// skipped as it is read, never kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub listen_port: Option<u16>,
    pub peers: BTreeMap<PublicKey, WgPeer>,
    /// Peers' latest handshakes, in seconds since the epoch (absent: none yet).
    pub handshakes: BTreeMap<PublicKey, u64>,
}

/// The lines that give a device its key and port.
pub fn interface(key: &PrivateKey, port: u16) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::from("private_key="));
    text.push_str(&key.hex());
    text.push_str(&format!("\nlisten_port={port}\n"));
    text
}

/// The lines that add `peer`, with exactly its allowed IPs.
pub fn add_peer(peer: &WgPeer) -> String {
    let mut text = format!("public_key={}\n", peer.public_key.hex());
    if let Some(endpoint) = peer.endpoint {
        text.push_str(&format!("endpoint={endpoint}\n"));
    }
    text.push_str("replace_allowed_ips=true\n");
    for ip in &peer.allowed_ips {
        text.push_str(&format!("allowed_ip={ip}\n"));
    }
    text
}

pub fn remove_peer(key: &PublicKey) -> String {
    format!("public_key={}\nremove=true\n", key.hex())
}

/// Reads an answer up to its blank line: the `key=value` lines before `errno=`, and the
/// errno. A stream that ends first is an error.
fn answer(reader: &mut impl BufRead) -> Result<(Vec<(String, String)>, i32), UapiError> {
    let mut pairs = Vec::new();
    let mut errno = None;
    loop {
        let mut line = Zeroizing::new(String::new());
        if reader.read_line(&mut line)? == 0 {
            return Err(UapiError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let line = line.trim_end_matches('\n');
        if line.is_empty() {
            return errno
                .map(|errno| (pairs, errno))
                .ok_or_else(|| UapiError::Garbled("an answer without errno".into()));
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(UapiError::Garbled(format!(
                "a line without '=' ({} bytes)",
                line.len()
            )));
        };
        match key {
            "errno" => {
                errno = Some(
                    value
                        .parse()
                        .map_err(|_| UapiError::Garbled(format!("errno {value:?}")))?,
                )
            }
            // Never kept, never quoted.
            "private_key" => {}
            _ => pairs.push((key.to_string(), value.to_string())),
        }
    }
}

/// The state in `get=1`'s lines.
pub fn parse_state(pairs: &[(String, String)]) -> Result<State, UapiError> {
    let garbled = |key: &str, value: &str| UapiError::Garbled(format!("{key}={value}"));
    let mut state = State::default();
    let mut current: Option<WgPeer> = None;
    let finish = |peer: Option<WgPeer>, state: &mut State| {
        if let Some(peer) = peer {
            state.peers.insert(peer.public_key, peer);
        }
    };
    for (key, value) in pairs {
        match key.as_str() {
            "public_key" => {
                finish(current.take(), &mut state);
                let public_key = PublicKey::from_hex(value).ok_or_else(|| garbled(key, value))?;
                current = Some(WgPeer {
                    public_key,
                    endpoint: None,
                    allowed_ips: BTreeSet::new(),
                });
            }
            "listen_port" if current.is_none() => {
                state.listen_port = Some(value.parse().map_err(|_| garbled(key, value))?);
            }
            "endpoint" => {
                if let Some(peer) = current.as_mut() {
                    peer.endpoint = Some(value.parse().map_err(|_| garbled(key, value))?);
                }
            }
            "allowed_ip" => {
                if let Some(peer) = current.as_mut() {
                    let ip: IpNetwork = value.parse().map_err(|_| garbled(key, value))?;
                    peer.allowed_ips.insert(ip);
                }
            }
            "last_handshake_time_sec" => {
                if let Some(peer) = current.as_ref() {
                    let seconds: u64 = value.parse().map_err(|_| garbled(key, value))?;
                    if seconds > 0 {
                        state.handshakes.insert(peer.public_key, seconds);
                    }
                }
            }
            // Counters, keepalives, the device's own public key, its fwmark, and whatever
            // a newer implementation adds.
            _ => {}
        }
    }
    finish(current, &mut state);
    Ok(state)
}

/// A device's configuration stream: one request at a time, each answered before the next.
pub struct Uapi<S> {
    reader: BufReader<S>,
    /// A request went unanswered or its answer was garbled (see [`UapiError::OutOfStep`]).
    out_of_step: bool,
}

impl<S: Read + Write> Uapi<S>
where
    for<'a> &'a S: Write,
{
    pub fn new(stream: S) -> Uapi<S> {
        Uapi {
            reader: BufReader::new(stream),
            out_of_step: false,
        }
    }

    /// Writes `request` and reads its answer; a failure to read a whole answer leaves the
    /// stream out of step for good.
    fn exchange(&mut self, request: &[u8]) -> Result<(Vec<(String, String)>, i32), UapiError> {
        if self.out_of_step {
            return Err(UapiError::OutOfStep);
        }
        let mut stream = self.reader.get_ref();
        let answered = stream
            .write_all(request)
            .map_err(UapiError::from)
            .and_then(|()| answer(&mut self.reader));
        self.out_of_step = answered.is_err();
        answered
    }

    /// Sends `set=1` with `lines`, in one write (an implementation that reads the request
    /// into a buffer of its own sees all of it at once).
    pub fn set(&mut self, what: &'static str, lines: &str) -> Result<(), UapiError> {
        let mut request = Zeroizing::new(String::with_capacity(lines.len() + 8));
        request.push_str("set=1\n");
        request.push_str(lines);
        request.push('\n');
        match self.exchange(request.as_bytes())? {
            (_, 0) => Ok(()),
            (_, errno) => Err(UapiError::Refused {
                what,
                errno: errno.abs(),
            }),
        }
    }

    pub fn get(&mut self) -> Result<State, UapiError> {
        match self.exchange(b"get=1\n\n")? {
            (pairs, 0) => parse_state(&pairs),
            (_, errno) => Err(UapiError::Refused {
                what: "read of its state",
                errno: errno.abs(),
            }),
        }
    }

    /// The answer to `get=1` as the device wrote it, less its private key: for a reader
    /// such as `wg show`.
    pub fn get_text(&mut self) -> Result<String, UapiError> {
        let (pairs, errno) = self.exchange(b"get=1\n\n")?;
        let mut text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        text.push_str(&format!("errno={errno}\n\n"));
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn key(byte: u8) -> PublicKey {
        PublicKey([byte; 32])
    }

    /// A device that answers each request with the next of `answers`, and records what it
    /// was sent.
    fn device(
        answers: &'static [&'static str],
    ) -> (Uapi<UnixStream>, std::thread::JoinHandle<String>) {
        let (ours, mut theirs) = UnixStream::pair().expect("pair");
        let device = std::thread::spawn(move || {
            let mut seen = String::new();
            let mut reader = BufReader::new(theirs.try_clone().expect("clone"));
            for answer in answers {
                // A request ends with a blank line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).expect("read") == 0 {
                        return seen;
                    }
                    seen.push_str(&line);
                    if line == "\n" {
                        break;
                    }
                }
                theirs.write_all(answer.as_bytes()).expect("answer");
            }
            seen
        });
        (Uapi::new(ours), device)
    }

    /// After an answer that could not be read whole, the rest of it (or a late answer) is
    /// never taken for the answer to the next request.
    #[test]
    fn a_garbled_answer_leaves_the_stream_unused() {
        let (mut uapi, device) = device(&["garbage\nerrno=0\n\n", "errno=0\n\n"]);
        let garbled = uapi.get().expect_err("garbled");
        assert!(matches!(garbled, UapiError::Garbled(_)), "{garbled}");
        let next = uapi.get().expect_err("out of step");
        assert!(matches!(next, UapiError::OutOfStep), "{next}");
        drop(uapi);
        let _ = device.join();
    }

    #[test]
    fn peers_are_added_and_removed_with_values_as_lines() {
        let (mut uapi, device) = device(&["errno=0\n\n", "errno=0\n\n", "errno=22\n\n"]);
        let peer = WgPeer {
            public_key: key(1),
            endpoint: Some("198.18.0.2:51820".parse().expect("endpoint")),
            allowed_ips: ["10.244.2.0/24".parse().expect("net")]
                .into_iter()
                .collect(),
        };
        uapi.set("peer", &add_peer(&peer)).expect("added");
        uapi.set("peer removal", &remove_peer(&key(1)))
            .expect("removed");
        let refused = uapi.set("peer", &add_peer(&peer)).expect_err("refused");
        assert!(
            matches!(refused, UapiError::Refused { errno: 22, .. }),
            "{refused}"
        );
        drop(uapi);
        let hex = "01".repeat(32);
        assert_eq!(
            device.join().expect("device"),
            format!(
                "set=1\npublic_key={hex}\nendpoint=198.18.0.2:51820\nreplace_allowed_ips=true\nallowed_ip=10.244.2.0/24\n\n\
                 set=1\npublic_key={hex}\nremove=true\n\n\
                 set=1\npublic_key={hex}\nendpoint=198.18.0.2:51820\nreplace_allowed_ips=true\nallowed_ip=10.244.2.0/24\n\n"
            )
        );
    }

    #[test]
    fn state_is_read_as_wireguard_go_and_boringtun_write_it_without_the_private_key() {
        // wireguard-go's answer: the private key first, then peers with their counters.
        const ANSWER: &str =
            "private_key=a8dac1d8a70a751f0f699fb14ba1cff7b79cf4fbd8f09f44c6e6a90d0369604f\n\
            listen_port=51820\n\
            public_key=0101010101010101010101010101010101010101010101010101010101010101\n\
            endpoint=198.18.0.2:51820\n\
            last_handshake_time_sec=1700000000\n\
            last_handshake_time_nsec=5\n\
            tx_bytes=10\nrx_bytes=20\n\
            persistent_keepalive_interval=0\n\
            allowed_ip=10.244.2.0/24\n\
            public_key=0202020202020202020202020202020202020202020202020202020202020202\n\
            allowed_ip=10.244.3.0/24\n\
            allowed_ip=fd00::/64\n\
            errno=0\n\n";
        let (mut uapi, _device) = device(&[ANSWER, ANSWER]);
        let state = uapi.get().expect("state");
        assert_eq!(state.listen_port, Some(51820));
        assert_eq!(state.peers.len(), 2);
        let first = &state.peers[&key(1)];
        assert_eq!(
            first.endpoint,
            Some("198.18.0.2:51820".parse().expect("endpoint"))
        );
        assert_eq!(first.allowed_ips.len(), 1);
        assert_eq!(state.peers[&key(2)].endpoint, None);
        assert_eq!(state.peers[&key(2)].allowed_ips.len(), 2);
        assert_eq!(state.handshakes.get(&key(1)), Some(&1_700_000_000));
        assert!(!format!("{state:?}").contains("a8dac1d8"));
        let text = uapi.get_text().expect("text");
        assert!(text.starts_with("listen_port=51820\n"), "{text}");
        assert!(!text.contains("private_key"), "{text}");
        assert!(text.ends_with("errno=0\n\n"), "{text}");
    }

    #[test]
    fn garbled_or_cut_answers_are_errors() {
        let (mut uapi, _device) = device(&["listen_port=x\nerrno=0\n\n"]);
        assert!(matches!(uapi.get(), Err(UapiError::Garbled(_))));
        let (mut uapi, device) = device(&["errno=0\n"]);
        let cut = uapi.get();
        drop(device.join());
        assert!(matches!(cut, Err(UapiError::Io(_))), "{cut:?}");
    }
}
