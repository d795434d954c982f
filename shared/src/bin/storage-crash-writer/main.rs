//! `storage-crash-writer DIR [MAX_RUN_MS]`: a **test helper** for `tests/crash_harness.rs`, not
//! a tool to ship. It writes through the storage trait ([`SledStorage`]) until it is killed,
//! like the child process of sled's own crash tests.
//!
//! It opens the store in `DIR`, resumes after the marker left by earlier runs, prints
//! `ready next=N`, then loops: applies one atomic batch of 1–48 entries (seq-numbered keys,
//! checksummed values, see `record.rs`) together with the marker update, and usually flushes;
//! after each flush it prints `flushed N` (N = highest seq written), so that the parent knows
//! what was durable before it sent SIGKILL. About one batch in four is left unflushed until the
//! next flush, so kills also land between an apply and its flush.
//!
//! It stops by itself after `MAX_RUN_MS` (default 20 000) so that a test that dies before
//! killing it does not leave it filling the disk.

mod record;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng as _;
use watchstand_shared::storage::{SledStorage, Storage, Write};

/// An error printed by `main` as `Error: …`.
struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Largest batch, in data entries.
const MAX_BATCH: u64 = 48;

fn main() -> Result<(), Failure> {
    let started = Instant::now();
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| Failure("usage: storage-crash-writer DIR [MAX_RUN_MS]".into()))?,
    );
    let max_run = match args.next() {
        Some(ms) => Duration::from_millis(
            ms.to_str()
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| Failure(format!("MAX_RUN_MS {ms:?} is not a number")))?,
        ),
        None => Duration::from_secs(20),
    };

    let storage = SledStorage::open(&dir)?;
    let tree = storage.tree(record::TREE)?;
    let upto = match tree.get(record::MARKER_KEY)? {
        Some(value) => record::read_marker(&value)?,
        None => 0,
    };
    // Resume only from a consistent store: the marker names the last entry and nothing follows.
    if upto > 0 {
        let last = tree
            .get(&record::data_key(upto))?
            .ok_or_else(|| Failure(format!("marker {upto} but no entry {upto}")))?;
        record::check(upto, &last)?;
    }
    let tail = tree.range_rev(&record::data_key(1), Some(&record::data_key(u64::MAX)), 1)?;
    let tail = tail
        .first()
        .and_then(|(key, _)| record::key_seq(key))
        .unwrap_or(0);
    if tail != upto {
        return Err(Failure(format!("marker {upto} but entries end at {tail}")));
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "ready next={}", upto + 1)?;
    out.flush()?;

    let mut rng = rand::thread_rng();
    let mut next = upto + 1;
    while started.elapsed() < max_run {
        let count = rng.gen_range(1..=MAX_BATCH);
        let last = next + count - 1;
        let mut batch: Vec<Write> = (next..=last)
            .map(|seq| Write::Put(record::data_key(seq), record::encode(seq)))
            .collect();
        batch.push(Write::Put(
            record::MARKER_KEY.to_vec(),
            record::marker_value(last),
        ));
        tree.apply(batch)?;
        next = last + 1;
        if rng.gen_ratio(1, 4) {
            continue;
        }
        storage.flush()?;
        writeln!(out, "flushed {last}")?;
        out.flush()?;
    }
    Ok(())
}
