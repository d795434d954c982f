//! The fuzz corpus for the `decode` fuzz target, run as an ordinary test so that CI exercises
//! the malformed-payload seeds without running the fuzzer (see `fuzz/README.md`).
//!
//! Every file under `fuzz/seeds/decode/` is decoded as every v1 message type and its first line
//! is parsed as a topic, exactly as the fuzz target does. None may panic, and a rejection must
//! carry a non-empty message. Files are also checked by name:
//! - `bad-*`: rejected as every message type;
//! - `results-*`, `capacity-*`, `status-*`, `ack*`: accepted as that type, and equal to
//!   themselves after `encode` → `decode`;
//! - `topic-*`: the first line is a valid topic, and the rest is checked as the topic's type;
//! - `crash-*`: an input a fuzzer once crashed on; it only has to be handled without a panic.
//!
//! To add a regression: copy the (minimised) input from `fuzz/artifacts/decode/` into
//! `fuzz/seeds/decode/` with a descriptive name; this test then runs it.

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use watchstand_shared::topic::{Channel, TopicLayout};
use watchstand_shared::wire::v1::{
    decode, encode, Ack, CapacityBatch, Envelope, Rejection, ResultBatch, Status, MAX_PAYLOAD_BYTES,
};

/// The collector time the fuzz target uses.
const NOW_MS: u64 = 1_800_000_000_000;

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/decode")
}

fn seed_files() -> Vec<PathBuf> {
    let dir = seeds_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

/// Decodes `payload` as `M`; a success must round-trip, a failure must say something.
fn decode_checked<M: Envelope + PartialEq + Debug>(payload: &[u8]) -> Result<M, Rejection> {
    let result = decode::<M>(payload, MAX_PAYLOAD_BYTES, NOW_MS);
    match &result {
        Ok(m) => {
            let bytes = encode(m);
            let back: M = decode(&bytes, MAX_PAYLOAD_BYTES, NOW_MS).unwrap_or_else(|e| {
                panic!(
                    "own encoding {} rejected: {e}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(&back, m, "round trip changed the message");
        }
        Err(e) => assert!(
            !e.detail.is_empty(),
            "rejection {:?} has no detail",
            e.reason
        ),
    }
    result
}

/// Which of the four types accept `payload`: (results, capacity, status, ack).
fn accepted_as(payload: &[u8]) -> [bool; 4] {
    [
        decode_checked::<ResultBatch>(payload).is_ok(),
        decode_checked::<CapacityBatch>(payload).is_ok(),
        decode_checked::<Status>(payload).is_ok(),
        decode_checked::<Ack>(payload).is_ok(),
    ]
}

fn check_seed(name: &str, data: &[u8]) {
    let accepted = accepted_as(data);
    let expect = |index: usize, type_name: &str| {
        assert!(accepted[index], "{name}: not accepted as {type_name}");
    };
    if name.starts_with("bad-") {
        assert_eq!(accepted, [false; 4], "{name}: a bad payload was accepted");
    } else if name.starts_with("results-") {
        expect(0, "ResultBatch");
    } else if name.starts_with("capacity") {
        expect(1, "CapacityBatch");
    } else if name.starts_with("status-") {
        expect(2, "Status");
    } else if name.starts_with("ack") {
        expect(3, "Ack");
    }

    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let layout = TopicLayout::new("watchstand");
    let parsed = std::str::from_utf8(first)
        .map_err(|e| e.to_string())
        .and_then(|topic| layout.parse(topic).map_err(|e| e.to_string()));
    match parsed {
        Ok(topic) => {
            let accepted = match topic.channel {
                Channel::Results => decode_checked::<ResultBatch>(rest).is_ok(),
                Channel::Capacity => decode_checked::<CapacityBatch>(rest).is_ok(),
                Channel::Status => decode_checked::<Status>(rest).is_ok(),
                Channel::Ack => decode_checked::<Ack>(rest).is_ok(),
                Channel::Cmd | Channel::CmdAck => true,
            };
            if name.starts_with("topic-") {
                assert!(accepted, "{name}: payload not accepted for its topic");
            }
        }
        Err(e) => {
            assert!(!e.is_empty(), "{name}: empty topic error");
            assert!(!name.starts_with("topic-"), "{name}: topic rejected: {e}");
        }
    }
}

#[test]
fn every_decode_seed_is_handled_without_a_panic() {
    let mut failures = Vec::new();
    for path in seed_files() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = std::fs::read(&path).expect("read seed");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check_seed(&name, &data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "seeds failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_seed_corpus_covers_every_message_type_and_malformed_payloads() {
    let names: Vec<String> = seed_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for prefix in ["results-", "capacity", "status-", "ack", "topic-", "bad-"] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no seed named {prefix}*"
        );
    }
}

#[test]
fn an_oversized_payload_is_rejected_before_parsing() {
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(accepted_as(&big), [false; 4]);
}
