//! The DHCPv4 message (RFC 2131) and the options a container's client uses: bytes in,
//! bytes out, nothing else.

use std::net::Ipv4Addr;
use std::time::Duration;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// op, htype, hlen, hops, xid, secs, flags, 4 addresses, chaddr, sname, file.
const FIXED_LEN: usize = 236;
const BROADCAST_FLAG: u16 = 0x8000;

pub mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const STATIC_ROUTES: u8 = 33;
    pub const REQUESTED_ADDRESS: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const USER_CLASS: u8 = 77;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;

    /// What a container needs, asked for unless the config says `skipDefault`.
    pub const DEFAULT_REQUEST: [u8; 9] = [
        SUBNET_MASK,
        ROUTER,
        DNS_SERVERS,
        DOMAIN_NAME,
        STATIC_ROUTES,
        LEASE_TIME,
        RENEWAL_TIME,
        REBINDING_TIME,
        CLASSLESS_ROUTES,
    ];

    /// Option names the config may use instead of numbers (the reference's spelling).
    pub fn by_name(name: &str) -> Option<u8> {
        Some(match name {
            "subnet-mask" => SUBNET_MASK,
            "routers" | "router" => ROUTER,
            "domain-name-servers" | "dns" => DNS_SERVERS,
            "host-name" | "hostname" => HOST_NAME,
            "domain-name" => DOMAIN_NAME,
            "static-routes" => STATIC_ROUTES,
            "dhcp-lease-time" => LEASE_TIME,
            "dhcp-renewal-time" => RENEWAL_TIME,
            "dhcp-rebinding-time" => REBINDING_TIME,
            "dhcp-client-identifier" => CLIENT_ID,
            "vendor-class-identifier" => VENDOR_CLASS,
            "user-class" => USER_CLASS,
            "classless-static-route" | "classless-route" => CLASSLESS_ROUTES,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl MessageType {
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            _ => return None,
        })
    }
}

/// One DHCP message: the fixed header fields the client uses, and the options in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub reply: bool,
    pub xid: u32,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + 64);
        out.extend_from_slice(&[if self.reply { 2 } else { 1 }, 1, 6, 0]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        let flags = if self.broadcast { BROADCAST_FLAG } else { 0 };
        out.extend_from_slice(&flags.to_be_bytes());
        for address in [
            self.ciaddr,
            self.yiaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        ] {
            out.extend_from_slice(&address.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.resize(FIXED_LEN, 0);
        out.extend_from_slice(&MAGIC_COOKIE);
        for (code, value) in &self.options {
            // Longer values are split into consecutive options (RFC 3396).
            for chunk in value.chunks(255) {
                out.push(*code);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        out.push(option::END);
        // Some servers ignore requests shorter than a BOOTP message (300 bytes).
        if out.len() < 300 {
            out.resize(300, 0);
        }
        out
    }

    /// `None` for anything that is not a well-formed DHCP message.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() < FIXED_LEN + 4 || bytes[FIXED_LEN..FIXED_LEN + 4] != MAGIC_COOKIE {
            return None;
        }
        let address =
            |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
        let mut chaddr = [0; 6];
        chaddr.copy_from_slice(&bytes[28..34]);
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut rest = &bytes[FIXED_LEN + 4..];
        while let [code, tail @ ..] = rest {
            match *code {
                option::PAD => rest = tail,
                option::END => break,
                code => {
                    let (&len, tail) = tail.split_first()?;
                    let value = tail.get(..usize::from(len))?;
                    match options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, existing)) => existing.extend_from_slice(value),
                        None => options.push((code, value.to_vec())),
                    }
                    rest = &tail[usize::from(len)..];
                }
            }
        }
        Some(Message {
            reply: bytes[0] == 2,
            xid: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            broadcast: u16::from_be_bytes([bytes[10], bytes[11]]) & BROADCAST_FLAG != 0,
            ciaddr: address(12),
            yiaddr: address(16),
            chaddr,
            options,
        })
    }

    /// Sets option `code` to `value`, in place of any value it had.
    pub fn set_option(&mut self, code: u8, value: Vec<u8>) {
        match self.options.iter_mut().find(|(c, _)| *c == code) {
            Some((_, existing)) => *existing = value,
            None => self.options.push((code, value)),
        }
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, value)| value.as_slice())
    }

    pub fn message_type(&self) -> Option<MessageType> {
        MessageType::from_byte(*self.option(option::MESSAGE_TYPE)?.first()?)
    }

    pub fn address_option(&self, code: u8) -> Option<Ipv4Addr> {
        let value: [u8; 4] = self.option(code)?.get(..4)?.try_into().ok()?;
        Some(Ipv4Addr::from(value))
    }

    pub fn seconds_option(&self, code: u8) -> Option<Duration> {
        let value: [u8; 4] = self.option(code)?.get(..4)?.try_into().ok()?;
        Some(Duration::from_secs(u64::from(u32::from_be_bytes(value))))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A server's reply to 02:00:00:00:00:01 offering 10.9.0.23, with `options`.
    pub(crate) fn ack(options: Vec<(u8, Vec<u8>)>) -> Message {
        Message {
            reply: true,
            xid: 7,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 9, 0, 23),
            chaddr: [2, 0, 0, 0, 0, 1],
            options,
        }
    }

    #[test]
    fn a_message_survives_encoding_and_decoding() {
        let message = ack(vec![
            (option::MESSAGE_TYPE, vec![MessageType::Ack as u8]),
            (option::SERVER_ID, vec![10, 9, 0, 1]),
        ]);
        let bytes = message.encode();
        assert!(bytes.len() >= 300);
        assert_eq!(Message::decode(&bytes), Some(message));
        assert_eq!(Message::decode(&bytes[..200]), None);
    }

    #[test]
    fn long_options_are_split_and_joined_again() {
        let long = vec![7u8; 300];
        let message = ack(vec![(option::HOST_NAME, long.clone())]);
        let decoded = Message::decode(&message.encode()).expect("decodes");
        assert_eq!(decoded.option(option::HOST_NAME), Some(long.as_slice()));
    }

    #[test]
    fn a_truncated_option_is_refused() {
        let mut bytes = ack(vec![]).encode();
        bytes.truncate(FIXED_LEN + 4);
        bytes.extend_from_slice(&[option::ROUTER, 4, 10, 9]);
        assert_eq!(Message::decode(&bytes), None);
    }
}
