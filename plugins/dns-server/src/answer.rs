//! One query in, one decision out: an answer from the table, or "forward it". Pure: the
//! listeners and the forwarder do the I/O. Anything that is no well-formed query gets
//! FORMERR (when it has a header to answer) or nothing, never a panic; the work per packet
//! is one parse and one small encode.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::net::IpAddr;

use crate::table::{Lookup, Table};

/// Answers say the names may change at any moment (a DEL), as dnsmasq's local names do.
const TTL: u32 = 0;
/// The largest UDP answer without EDNS.
pub const UDP_PLAIN: usize = 512;
/// The largest UDP answer with EDNS, whatever the client offers: the size that crosses
/// every path unfragmented (DNS flag day 2020).
const UDP_EDNS: u16 = 1232;
/// A TCP answer's limit, its length prefix's.
pub const TCP_MAX: usize = 65535;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(Vec<u8>),
    /// Not a name of this network: send the query as it is to the upstream resolvers.
    Forward,
    /// Nothing to answer (a response, or too short to hold a header).
    Drop,
}

/// Decides what to do with `packet`, which came over UDP (`tcp` false: answers fit 512
/// bytes, or the client's EDNS size up to 1232) or TCP. `turn` rotates the order of the
/// addresses of a name that has several.
pub fn answer(table: &Table, packet: &[u8], tcp: bool, turn: usize) -> Outcome {
    let message = match Message::from_vec(packet) {
        Ok(message) => message,
        Err(_) => return malformed(packet),
    };
    if message.message_type() != MessageType::Query {
        return Outcome::Drop;
    }
    let mut response = Message::new();
    response
        .set_id(message.id())
        .set_message_type(MessageType::Response)
        .set_op_code(message.op_code())
        .set_recursion_desired(message.recursion_desired())
        .set_recursion_available(true);
    let limit = if tcp {
        TCP_MAX
    } else if let Some(edns) = message.extensions() {
        usize::from(edns.max_payload().clamp(UDP_PLAIN as u16, UDP_EDNS))
    } else {
        UDP_PLAIN
    };
    if message.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_EDNS);
        response.set_edns(edns);
    }
    if message.op_code() != OpCode::Query {
        response.set_response_code(ResponseCode::NotImp);
        return encode(response, limit);
    }
    let [query] = message.queries() else {
        response.set_response_code(ResponseCode::FormErr);
        return encode(response, limit);
    };
    response.add_query(query.clone());
    let name = query.name();
    let records = match query.query_type() {
        RecordType::PTR => match reverse(table, name) {
            Some(target) => {
                response.set_authoritative(true);
                vec![Record::from_rdata(
                    name.clone(),
                    TTL,
                    RData::PTR(PTR(target)),
                )]
            }
            None => return Outcome::Forward,
        },
        query_type => match table.lookup(&name.to_ascii()) {
            Lookup::NotOurs => return Outcome::Forward,
            Lookup::NoSuchName => {
                response
                    .set_authoritative(true)
                    .set_response_code(ResponseCode::NXDomain);
                Vec::new()
            }
            Lookup::Found(addresses) => {
                response.set_authoritative(true);
                let wanted = |address: &&IpAddr| match query_type {
                    RecordType::A => address.is_ipv4(),
                    RecordType::AAAA => address.is_ipv6(),
                    RecordType::ANY => true,
                    _ => false,
                };
                let mut chosen: Vec<&IpAddr> = addresses.iter().filter(wanted).collect();
                if !chosen.is_empty() {
                    let by = turn % chosen.len();
                    chosen.rotate_left(by);
                }
                chosen
                    .into_iter()
                    .map(|address| {
                        let data = match address {
                            IpAddr::V4(v4) => RData::A(A(*v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                        };
                        Record::from_rdata(name.clone(), TTL, data)
                    })
                    .collect()
            }
        },
    };
    response.add_answers(records);
    encode(response, limit)
}

/// The name of the container whose address a reverse name (`…in-addr.arpa.`,
/// `…ip6.arpa.`) spells, if it is one of the network's.
fn reverse(table: &Table, name: &Name) -> Option<Name> {
    let network = name.parse_arpa_name().ok()?;
    if network.prefix_len() != network.max_prefix_len() {
        return None;
    }
    let target = table.reverse(network.addr())?;
    Name::from_ascii(format!("{target}.")).ok()
}

/// A response to a packet that does not parse: FORMERR when it holds a query's header,
/// nothing when it is a response or no header at all (answering those could start a loop
/// between two servers).
fn malformed(packet: &[u8]) -> Outcome {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Outcome::Drop;
    };
    if header.message_type() != MessageType::Query {
        return Outcome::Drop;
    }
    let response = Message::error_msg(header.id(), header.op_code(), ResponseCode::FormErr);
    encode(response, UDP_PLAIN)
}

/// SERVFAIL for a query that no upstream answered (`packet` parsed as a query before).
pub fn server_failure(packet: &[u8]) -> Option<Vec<u8>> {
    let message = Message::from_vec(packet).ok()?;
    let mut response = Message::error_msg(message.id(), message.op_code(), ResponseCode::ServFail);
    response
        .set_recursion_desired(message.recursion_desired())
        .set_recursion_available(true)
        .add_queries(message.queries().iter().cloned());
    response.to_vec().ok()
}

/// The response's bytes; when they pass `limit`, as many of its records as fit, with TC
/// set: a client that does not retry over TCP still gets some of a crowded name's
/// addresses.
fn encode(mut response: Message, limit: usize) -> Outcome {
    let Ok(bytes) = response.to_vec() else {
        return Outcome::Drop;
    };
    if bytes.len() <= limit {
        return Outcome::Reply(bytes);
    }
    response.set_truncated(true);
    // Records compress to much the same size: start from the share that fits.
    let mut answers = response.take_answers();
    answers.truncate(answers.len() * limit / bytes.len());
    loop {
        let mut attempt = response.clone();
        attempt.add_answers(answers.iter().cloned());
        match attempt.to_vec() {
            Ok(bytes) if bytes.len() <= limit => return Outcome::Reply(bytes),
            Ok(_) if !answers.is_empty() => {
                answers.pop();
            }
            _ => return Outcome::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use names::Entry;

    fn table() -> Table {
        let web = Entry {
            name: "web".to_string(),
            aliases: vec!["svc".to_string()],
            addresses: ["10.88.0.2", "10.88.0.3", "fd00::2"]
                .iter()
                .map(|a| a.parse().expect("ip"))
                .collect(),
        };
        Table::build("dns.podman", [&web])
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        message.to_vec().expect("encodes")
    }

    fn reply(outcome: Outcome) -> Message {
        match outcome {
            Outcome::Reply(bytes) => Message::from_vec(&bytes).expect("a message"),
            other => panic!("no reply: {other:?}"),
        }
    }

    fn addresses(message: &Message) -> Vec<String> {
        message
            .answers()
            .iter()
            .map(|r| match r.data() {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::PTR(p) => p.0.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn names_of_the_network_are_answered_by_family_and_rotated() {
        let table = table();
        let first = reply(answer(
            &table,
            &query("web.dns.podman.", RecordType::A),
            false,
            0,
        ));
        assert_eq!(first.id(), 4242);
        assert!(first.authoritative() && first.recursion_desired());
        assert_eq!(addresses(&first), ["10.88.0.2", "10.88.0.3"]);
        let turned = reply(answer(&table, &query("SVC.", RecordType::A), false, 1));
        assert_eq!(addresses(&turned), ["10.88.0.3", "10.88.0.2"]);
        let v6 = reply(answer(&table, &query("web.", RecordType::AAAA), false, 0));
        assert_eq!(addresses(&v6), ["fd00::2"]);
        let other = reply(answer(&table, &query("web.", RecordType::MX), false, 0));
        assert_eq!(other.response_code(), ResponseCode::NoError);
        assert!(other.answers().is_empty());
    }

    #[test]
    fn unknown_names_under_the_domain_do_not_exist_and_the_rest_is_forwarded() {
        let table = table();
        let missing = reply(answer(
            &table,
            &query("db.dns.podman.", RecordType::A),
            false,
            0,
        ));
        assert_eq!(missing.response_code(), ResponseCode::NXDomain);
        assert_eq!(
            answer(&table, &query("example.com.", RecordType::A), false, 0),
            Outcome::Forward
        );
        assert_eq!(
            answer(
                &table,
                &query("9.9.9.9.in-addr.arpa.", RecordType::PTR),
                false,
                0
            ),
            Outcome::Forward
        );
    }

    #[test]
    fn reverse_names_of_containers_are_answered() {
        let table = table();
        let v4 = reply(answer(
            &table,
            &query("3.0.88.10.in-addr.arpa.", RecordType::PTR),
            false,
            0,
        ));
        assert_eq!(addresses(&v4), ["web.dns.podman."]);
        let nibbles: String = "fd000000000000000000000000000002"
            .chars()
            .rev()
            .map(|c| format!("{c}."))
            .collect();
        let v6 = reply(answer(
            &table,
            &query(&format!("{nibbles}ip6.arpa."), RecordType::PTR),
            false,
            0,
        ));
        assert_eq!(addresses(&v6), ["web.dns.podman."]);
    }

    #[test]
    fn bad_packets_get_formerr_or_nothing() {
        let table = table();
        assert_eq!(answer(&table, &[], false, 0), Outcome::Drop);
        assert_eq!(answer(&table, &[1, 2, 3], false, 0), Outcome::Drop);
        // A header that promises a question it does not carry.
        let mut truncated = query("web.", RecordType::A);
        truncated.truncate(14);
        let formerr = reply(answer(&table, &truncated, false, 0));
        assert_eq!(
            (formerr.id(), formerr.response_code()),
            (4242, ResponseCode::FormErr)
        );
        // The same as a response: never answered.
        truncated[2] |= 0x80;
        assert_eq!(answer(&table, &truncated, false, 0), Outcome::Drop);
        // Two questions.
        let mut two = Message::new();
        two.set_id(7)
            .add_query(Query::query(
                Name::from_ascii("a.").expect("name"),
                RecordType::A,
            ))
            .add_query(Query::query(
                Name::from_ascii("b.").expect("name"),
                RecordType::A,
            ));
        let formerr = reply(answer(&table, &two.to_vec().expect("encodes"), false, 0));
        assert_eq!(formerr.response_code(), ResponseCode::FormErr);
        // Not a query.
        let mut update = Message::from_vec(&query("web.", RecordType::A)).expect("parses");
        update.set_op_code(OpCode::Update);
        let notimp = reply(answer(&table, &update.to_vec().expect("encodes"), false, 0));
        assert_eq!(notimp.response_code(), ResponseCode::NotImp);
        // Garbage of every length up to a header and beyond: an answer or nothing, never a
        // panic.
        for len in 0..64 {
            let garbage: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = answer(&table, &garbage, false, 0);
        }
    }

    #[test]
    fn answers_that_do_not_fit_are_truncated() {
        let many = Entry {
            name: "many".to_string(),
            aliases: Vec::new(),
            addresses: (1..=100u8).map(|i| IpAddr::from([10, 88, 1, i])).collect(),
        };
        let table = Table::build("", [&many]);
        let udp = answer(&table, &query("many.", RecordType::A), false, 0);
        let Outcome::Reply(bytes) = &udp else {
            panic!("no reply: {udp:?}");
        };
        assert!(bytes.len() <= UDP_PLAIN);
        let udp = reply(udp);
        assert!(udp.truncated());
        assert!(
            (20..100).contains(&udp.answers().len()),
            "as many as fit: {}",
            udp.answers().len()
        );
        let tcp = reply(answer(&table, &query("many.", RecordType::A), true, 0));
        assert_eq!(tcp.answers().len(), 100);
        assert!(!tcp.truncated());
    }

    #[test]
    fn server_failure_keeps_the_id_and_the_question() {
        let failed = Message::from_vec(
            &server_failure(&query("example.com.", RecordType::A)).expect("a reply"),
        )
        .expect("parses");
        assert_eq!(
            (failed.id(), failed.response_code()),
            (4242, ResponseCode::ServFail)
        );
        assert_eq!(failed.queries().len(), 1);
        assert_eq!(server_failure(&[0; 3]), None);
    }
}
