//! Fuzz target `decode`: the collector's v1 payload decoder and the topic parser.
//!
//! The input is decoded whole as every v1 message type (what ingest does with a payload). Its
//! first line is also parsed as an MQTT topic; when that succeeds, the rest of the input is
//! decoded as the topic's message type and compared with the topic, as ingest does.
//!
//! Checked: nothing panics; a rejection has a reason from `RejectReason::ALL` and a non-empty
//! message; a decoded message survives `encode` → `decode` unchanged; a parsed topic is
//! re-formatted to the same string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use watchstand_shared::topic::{Channel, TopicLayout};
use watchstand_shared::wire::v1::{
    decode, encode, Ack, CapacityBatch, Envelope, RejectReason, Rejection, ResultBatch, Status,
    MAX_PAYLOAD_BYTES,
};

/// Collector time for the timestamp checks: 2027-01-15T08:00:00Z. Seeds use times before it.
const NOW_MS: u64 = 1_800_000_000_000;

fn check_rejection(what: &str, e: &Rejection) {
    assert!(
        RejectReason::ALL.contains(&e.reason),
        "{what}: reason {:?} missing from RejectReason::ALL",
        e.reason
    );
    assert!(!e.reason.as_str().is_empty(), "{what}: empty reason label");
    let text = e.to_string();
    assert!(!text.is_empty(), "{what}: empty rejection message");
}

/// Decodes `payload` as `M`; on success checks that it round-trips through `encode`.
fn decode_one<M: Envelope + PartialEq + std::fmt::Debug>(what: &str, payload: &[u8]) -> Option<M> {
    match decode::<M>(payload, MAX_PAYLOAD_BYTES, NOW_MS) {
        Ok(m) => {
            let bytes = encode(&m);
            assert!(
                !bytes.is_empty(),
                "{what}: encode gave an empty payload for {m:?}"
            );
            match decode::<M>(&bytes, MAX_PAYLOAD_BYTES, NOW_MS) {
                Ok(back) => assert_eq!(
                    back,
                    m,
                    "{what}: round trip changed the message; re-encoded as {}",
                    String::from_utf8_lossy(&bytes)
                ),
                Err(e) => panic!(
                    "{what}: decoded, but its own encoding {} is rejected: {e}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
            Some(m)
        }
        Err(e) => {
            check_rejection(what, &e);
            None
        }
    }
}

fn decode_all(payload: &[u8]) {
    decode_one::<ResultBatch>("ResultBatch", payload);
    decode_one::<CapacityBatch>("CapacityBatch", payload);
    decode_one::<Status>("Status", payload);
    decode_one::<Ack>("Ack", payload);
}

/// What ingest does for a payload on `topic`: decode as the channel's type, compare ids.
fn decode_for_topic(channel: Channel, site: &str, agent: &str, payload: &[u8]) {
    fn ids<M: Envelope>(m: &M) -> (String, String) {
        (m.site().to_owned(), m.agent().to_owned())
    }
    let got = match channel {
        Channel::Results => decode_one::<ResultBatch>("topic/results", payload).map(|m| ids(&m)),
        Channel::Capacity => {
            decode_one::<CapacityBatch>("topic/capacity", payload).map(|m| ids(&m))
        }
        Channel::Status => decode_one::<Status>("topic/status", payload).map(|m| ids(&m)),
        Channel::Ack => decode_one::<Ack>("topic/ack", payload).map(|m| ids(&m)),
        Channel::Cmd | Channel::CmdAck => None,
    };
    if let Some((s, a)) = got {
        // Ingest rejects a mismatch as TopicMismatch; here it only must not panic.
        let _matches = s == site && a == agent;
    }
}

fuzz_target!(|data: &[u8]| {
    decode_all(data);

    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(topic) = std::str::from_utf8(first) else {
        return;
    };
    let layout = TopicLayout::new("watchstand");
    match layout.parse(topic) {
        Ok(parsed) => {
            let again = layout.agent(&parsed.site, &parsed.agent, parsed.channel);
            assert_eq!(again, topic, "topic does not re-format to itself");
            if let Some(rest) = rest {
                decode_for_topic(parsed.channel, &parsed.site, &parsed.agent, rest);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "empty topic error message"),
    }
});
