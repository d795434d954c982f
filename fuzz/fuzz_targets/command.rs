//! Fuzz target `command`: the agent's command verifier (`watchstand_shared::command::Verifier`),
//! fed the bytes as a payload received on the `cmd` topic.
//!
//! Checked: nothing panics; a refusal has a reason from `RefusalReason::ALL` and a non-empty
//! detail; an accepted command re-encodes to a payload that is accepted again as the same
//! command (a fuzzer cannot forge a signature, so only the valid seeds get there).

#![no_main]

use libfuzzer_sys::fuzz_target;
use watchstand_shared::command::{CommandKey, RefusalReason, Verifier};
use watchstand_shared::wire::v1::encode;

/// The seeds' signing key and clock (see `shared/tests/fuzz_command_seeds.rs`).
const SEED: [u8; 32] = [7; 32];
const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let verifier = Verifier::new(CommandKey::from_seed(SEED).public(), "lab", "db-2", 30_000);
    match verifier.verify(data, NOW_MS) {
        Ok(ok) => {
            let again = verifier
                .verify(&encode(&ok.command), NOW_MS)
                .expect("an accepted command re-encodes to an accepted one");
            assert_eq!(again, ok);
        }
        Err(r) => {
            assert!(RefusalReason::ALL.contains(&r.reason), "{:?}", r.reason);
            assert!(!r.detail.is_empty(), "refusal {:?} without detail", r.reason);
        }
    }
});
