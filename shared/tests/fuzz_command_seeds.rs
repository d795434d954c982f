//! The seeds of the `command` fuzz target (`fuzz/seeds/command/`), run as an ordinary test so
//! that CI checks the verifier against them without running the fuzzer, exactly as the target
//! does (same key, agent and clock). Files are checked by name:
//! - `ok-*`: accepted, and accepted again after `encode`;
//! - `refused-<reason>-*`: refused with that reason (its snake_case name);
//! - `crash-*`: an input a fuzzer once crashed on; only has to be handled without a panic.
//!
//! `WATCHSTAND_WRITE_COMMAND_SEEDS=1 cargo test -p watchstand-shared --test fuzz_command_seeds`
//! rewrites the generated seeds (after a deliberate protocol change).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use watchstand_shared::command::{CommandKey, RefusalReason, UnsignedCommand, Verifier};
use watchstand_shared::wire::v1::encode;

const SEED: [u8; 32] = [7; 32];
const NOW_MS: u64 = 1_800_000_000_000;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/command")
}

fn verifier() -> Verifier {
    Verifier::new(CommandKey::from_seed(SEED).public(), "lab", "db-2", 30_000)
}

fn unsigned(nonce: u8) -> UnsignedCommand {
    UnsignedCommand {
        site: "lab".into(),
        agent: "db-2".into(),
        command_id: format!("c-{nonce}"),
        run_id: "r-1".into(),
        step: 1,
        action: "promote".into(),
        args: BTreeMap::from([("role".to_owned(), "primary".to_owned())]),
        issued_ms: NOW_MS - 1_000,
        expires_ms: NOW_MS + 60_000,
        nonce: format!("{nonce:02x}").repeat(16),
    }
}

/// The generated seeds, by file name.
fn generated() -> Vec<(&'static str, Vec<u8>)> {
    let key = CommandKey::from_seed(SEED);
    let other = CommandKey::from_seed([8; 32]);
    let ok = encode(&key.sign(unsigned(1)));
    let mut forged = other.sign(unsigned(2));
    forged.key_id = key.public().key_id().to_owned();
    let mut big = key.sign(unsigned(3));
    big.run_id = "x".repeat(17_000);
    vec![
        ("ok-promote", ok.clone()),
        (
            "ok-no-args",
            encode(&key.sign(UnsignedCommand {
                args: BTreeMap::new(),
                ..unsigned(4)
            })),
        ),
        ("refused-malformed-truncated", ok[..ok.len() / 2].to_vec()),
        (
            "refused-malformed-not-json",
            b"promote --role primary".to_vec(),
        ),
        (
            "refused-unknown_key-other-key",
            encode(&other.sign(unsigned(5))),
        ),
        ("refused-bad_signature-forged", encode(&forged)),
        (
            "refused-other_agent",
            encode(&key.sign(UnsignedCommand {
                agent: "db-1".into(),
                ..unsigned(6)
            })),
        ),
        (
            "refused-expired",
            encode(&key.sign(UnsignedCommand {
                issued_ms: NOW_MS - 120_000,
                expires_ms: NOW_MS - 31_000,
                ..unsigned(7)
            })),
        ),
        (
            "refused-not_yet_valid",
            encode(&key.sign(UnsignedCommand {
                issued_ms: NOW_MS + 31_000,
                expires_ms: NOW_MS + 90_000,
                ..unsigned(8)
            })),
        ),
        ("refused-oversized", encode(&big)),
        (
            "refused-unsupported_version",
            String::from_utf8(ok.clone())
                .unwrap()
                .replacen("\"v\":1", "\"v\":2", 1)
                .into_bytes(),
        ),
    ]
}

#[test]
fn every_command_seed_is_handled_as_its_name_says() {
    if std::env::var_os("WATCHSTAND_WRITE_COMMAND_SEEDS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, bytes) in generated() {
            std::fs::write(dir().join(name), bytes).unwrap();
        }
    }
    let v = verifier();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir().display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= generated().len(),
        "seeds missing in {}",
        dir().display()
    );
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let result = v.verify(&data, NOW_MS);
        if name.starts_with("ok-") {
            let ok = result.unwrap_or_else(|e| panic!("{name}: refused: {e}"));
            assert_eq!(
                v.verify(&encode(&ok.command), NOW_MS).unwrap(),
                ok,
                "{name}"
            );
        } else if let Some(rest) = name.strip_prefix("refused-") {
            let e = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(!e.detail.is_empty(), "{name}");
            let want = RefusalReason::ALL
                .iter()
                .find(|r| rest == r.as_str() || rest.starts_with(&format!("{}-", r.as_str())))
                .unwrap_or_else(|| panic!("{name}: no reason in the name"));
            assert_eq!(e.reason, *want, "{name}: {e}");
        } else if let Err(e) = result {
            assert!(!e.detail.is_empty(), "{name}");
        }
    }
}
