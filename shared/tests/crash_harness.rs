//! Crash harness for the storage engine, in the style of sled's own crash tests: a child process
//! (`storage-crash-writer`) writes through the storage trait and is SIGKILLed at a random point
//! 0–60 ms in; after every kill this process opens the store and checks it:
//!
//! - it opens;
//! - every data entry frames, checksums and matches what the writer writes for its seq;
//! - data seqs form a contiguous prefix `1..=M`, nothing else is in the tree but the marker;
//! - the marker (written in the same atomic batch as the entries it covers) equals `M`;
//! - `M` ≥ every `flushed N` any child reported (nothing flushed is lost), and `M` never goes
//!   below what an earlier round found on disk.
//!
//! # ENOSPC rounds
//! [`sled_reopens_with_everything_flushed_after_the_disk_fills_at_random_points`] runs the
//! writer on a small tmpfs and fills it at a random point of the writes, so writes, flushes and
//! snapshot writes fail at random points; the writer is restarted while the disk is still full
//! (what systemd's `Restart=` does), then the space is freed and the store must open with
//! everything any child reported flushed. Without the repair in `SledStorage::open`, a restart
//! while full leaves an empty `snap.*.generating` file and the store never opens again.
//!
//! Rounds: 20 by default, `WATCHSTAND_CRASH_ROUNDS=N` for more; `WATCHSTAND_CRASH_SEED` replays
//! the kill delays of a run (the child's own timing still varies). On failure the store is kept
//! and its path printed.
//!
//! # Found by this harness: a kill during the very first open
//! sled 0.34.7 creates its `conf` file on the first open of a directory with two unsynced
//! writes, the settings text and then its CRC. A SIGKILL between the two leaves a file that
//! every later open rejects (`Read corrupted data at file offset None`): the store would never
//! open again (about 1 kill in 150 aimed at that window). `SledStorage::open` now recreates a
//! store that fails to open and never held data (no `db` data file);
//! [`a_store_killed_during_its_first_open_still_opens`] aims 500 kills at that window. The main
//! harness lets its first round create the store before it counts the kill delay.

#[path = "../src/bin/storage-crash-writer/record.rs"]
mod record;
#[path = "support/small_fs.rs"]
mod small_fs;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use watchstand_shared::storage::{SledStorage, Storage};

const DEFAULT_ROUNDS: usize = 20;
/// Longest kill delay.
const MAX_DELAY_MS: u64 = 60;
/// How long a child may take to print `ready` before the round fails.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// What one check of the store found.
#[derive(Debug, Default)]
struct Found {
    /// Highest data seq (all of `1..=last` present).
    last: u64,
    /// The marker value (0 when absent).
    marker: u64,
    /// Problems, empty when the store is sound.
    problems: Vec<String>,
}

/// Opens the store in `dir` in this process and checks it (see the module doc).
fn check_store(dir: &Path) -> Result<Found, String> {
    let storage = SledStorage::open(dir).map_err(|e| format!("open failed: {e}"))?;
    let tree = storage
        .tree(record::TREE)
        .map_err(|e| format!("open tree failed: {e}"))?;
    let rows = tree
        .range(&[], None, usize::MAX)
        .map_err(|e| format!("scan failed: {e}"))?;
    let mut found = Found::default();
    let mut marker = None;
    for (key, value) in &rows {
        if key.as_slice() == record::MARKER_KEY {
            match record::read_marker(value) {
                Ok(m) if *value == record::marker_value(m) => marker = Some(m),
                Ok(m) => found
                    .problems
                    .push(format!("marker {m} is not encoded as written")),
                Err(e) => found.problems.push(e),
            }
            continue;
        }
        let Some(seq) = record::key_seq(key) else {
            found.problems.push(format!("unexpected key {key:?}"));
            continue;
        };
        if let Err(e) = record::check(seq, value) {
            found.problems.push(e);
        }
        if seq != found.last + 1 {
            found
                .problems
                .push(format!("hole: seq {} is followed by seq {seq}", found.last));
        }
        found.last = seq;
    }
    found.marker = marker.unwrap_or(0);
    if found.marker != found.last {
        found.problems.push(format!(
            "marker says {} but the entries end at {}",
            found.marker, found.last
        ));
    }
    let len = tree.len().map_err(|e| format!("len failed: {e}"))?;
    if len != rows.len() {
        found.problems.push(format!(
            "len() says {len} but a scan returns {}",
            rows.len()
        ));
    }
    if found.last > 0 {
        let tail = tree
            .range_rev(&record::data_key(1), Some(&record::data_key(u64::MAX)), 1)
            .map_err(|e| format!("reverse scan failed: {e}"))?;
        let tail_seq = tail.first().and_then(|(k, _)| record::key_seq(k));
        if tail_seq != Some(found.last) {
            found.problems.push(format!(
                "reverse scan ends at {tail_seq:?}, forward scan at {}",
                found.last
            ));
        }
    }
    Ok(found)
}

/// The child's stdout lines, collected by a thread; `ready` is signalled as soon as it arrives.
fn collect_lines(child: &mut Child) -> (mpsc::Receiver<()>, std::thread::JoinHandle<Vec<String>>) {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            // A line cut by the kill ends the stream as an error or a partial line; both are
            // ignored below (only complete `flushed N` lines count).
            let Ok(line) = line else { break };
            if line.starts_with("ready ") {
                // The test may have stopped waiting (a round counted from the spawn).
                ready_tx.send(()).ok();
            }
            lines.push(line);
        }
        lines
    });
    (ready_rx, reader)
}

#[test]
fn sled_keeps_a_checksummed_prefix_of_everything_flushed_across_sigkills() {
    let rounds = env_number("WATCHSTAND_CRASH_ROUNDS").map_or(DEFAULT_ROUNDS, |n| n as usize);
    let seed = env_number("WATCHSTAND_CRASH_SEED").unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let writer = env!("CARGO_BIN_EXE_storage-crash-writer");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    eprintln!(
        "crash harness start: {rounds} rounds, seed {seed} (WATCHSTAND_CRASH_SEED), store {}",
        dir.path().display()
    );

    let mut max_flushed = 0u64; // highest `flushed N` any child reported
    let mut max_seen = 0u64; // highest M a check found
    let mut lost_after_flush = 0usize; // rounds where M < max_flushed
    let mut rounds_with_flushes = 0usize;
    let mut unflushed_survived = 0usize; // rounds where M > what was reported flushed
    let mut killed_before_ready = 0usize;
    let mut check_time = Duration::ZERO;
    let mut failures: Vec<String> = Vec::new();

    for round in 1..=rounds {
        let delay = Duration::from_millis(rng.gen_range(0..=MAX_DELAY_MS));
        // Odd rounds count the delay from the spawn, so kills also land in process start-up and
        // in the engine's recovery; even rounds count it from `ready`, so they land in writes.
        // Round 1 creates the store: it waits for `ready` too (see "Known failure" above).
        let from_ready = round % 2 == 0 || round == 1;
        let mut child = Command::new(writer)
            .arg(dir.path())
            .arg("20000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn storage-crash-writer");
        let (ready, reader) = collect_lines(&mut child);
        if from_ready && ready.recv_timeout(READY_TIMEOUT).is_err() {
            failures.push(format!(
                "round {round}: writer not ready in {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(delay);
        let exited_early = child.try_wait().expect("try_wait");
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        let lines = reader.join().expect("stdout reader");
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            err.read_to_string(&mut stderr).expect("read stderr");
        }
        if let Some(status) = exited_early {
            failures.push(format!(
                "round {round}: writer exited by itself ({status}) before the kill: {}",
                stderr.trim()
            ));
        }
        if !lines.iter().any(|l| l.starts_with("ready ")) {
            killed_before_ready += 1;
        }
        let round_flushed = lines
            .iter()
            .filter_map(|l| l.strip_prefix("flushed ")?.parse::<u64>().ok())
            .max();
        if let Some(n) = round_flushed {
            rounds_with_flushes += 1;
            max_flushed = max_flushed.max(n);
        }

        let t = Instant::now();
        let found = match check_store(dir.path()) {
            Ok(found) => found,
            Err(e) => {
                failures.push(format!("round {round} (delay {delay:?}): {e}"));
                break;
            }
        };
        check_time += t.elapsed();
        if found.last < max_flushed {
            lost_after_flush += 1;
            failures.push(format!(
                "round {round} (delay {delay:?}): store ends at {} but seq {max_flushed} was \
                 reported flushed",
                found.last
            ));
        }
        if found.last < max_seen {
            failures.push(format!(
                "round {round}: store ends at {} but an earlier check found {max_seen}",
                found.last
            ));
        }
        if found.last > round_flushed.unwrap_or(0).max(max_flushed) {
            unflushed_survived += 1;
        }
        for p in &found.problems {
            failures.push(format!("round {round} (delay {delay:?}): {p}"));
        }
        max_seen = max_seen.max(found.last);
    }

    eprintln!(
        "crash harness: {rounds} rounds, max entries {max_seen}, lost-after-flush {lost_after_flush}"
    );
    eprintln!(
        "crash harness: {rounds_with_flushes} rounds reported flushes (highest {max_flushed}), \
         {killed_before_ready} killed before ready, {unflushed_survived} kept unflushed batches, \
         checks took {check_time:?}, total {:?}",
        started.elapsed()
    );
    if !failures.is_empty() {
        let kept = dir.keep();
        panic!(
            "crash harness failed (seed {seed}); store kept in {}:\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
}

/// Kills the writer 0.5–4 ms after it starts on a fresh directory each round — about when sled
/// writes its `conf` file — and checks that the store still opens. Fails with sled 0.34.7 (see
/// "Known failure" in the module doc); `WATCHSTAND_FIRST_OPEN_ROUNDS` sets the rounds (500).
#[test]
fn a_store_killed_during_its_first_open_still_opens() {
    let rounds = env_number("WATCHSTAND_FIRST_OPEN_ROUNDS").map_or(500, |n| n as usize);
    let seed = env_number("WATCHSTAND_CRASH_SEED").unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let writer = env!("CARGO_BIN_EXE_storage-crash-writer");
    let root = tempfile::tempdir().unwrap();
    let mut bricked: Vec<String> = Vec::new();
    for round in 1..=rounds {
        let dir = root.path().join(format!("store-{round}"));
        let mut child = Command::new(writer)
            .arg(&dir)
            .arg("20000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn storage-crash-writer");
        std::thread::sleep(Duration::from_micros(rng.gen_range(500..=4_000)));
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        match SledStorage::open(&dir) {
            Ok(storage) => drop(storage),
            Err(e) => {
                let conf = std::fs::read(dir.join("conf")).unwrap_or_default();
                bricked.push(format!(
                    "round {round}: {e}; conf is {} bytes: {:?}",
                    conf.len(),
                    String::from_utf8_lossy(&conf)
                ));
            }
        }
        if bricked.is_empty() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    eprintln!(
        "first-open crash: {rounds} rounds, {} stores no longer open",
        bricked.len()
    );
    if !bricked.is_empty() {
        let kept = root.keep();
        panic!(
            "stores killed during their first open no longer open (seed {seed}); kept in {}:\n{}",
            kept.display(),
            bricked.join("\n")
        );
    }
}

/// Runs the writer on `dir` until it exits by itself or `limit` passes, then kills it; returns
/// the highest `flushed N` it printed and its stderr.
fn run_writer_until(dir: &Path, limit: Duration) -> (Option<u64>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(dir)
        .arg("20000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storage-crash-writer");
    let (_ready, reader) = collect_lines(&mut child);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && child.try_wait().expect("try_wait").is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().ok(); // it may have exited already
    child.wait().expect("reap the writer");
    let lines = reader.join().expect("stdout reader");
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("read stderr");
    }
    let flushed = lines
        .iter()
        .filter_map(|l| l.strip_prefix("flushed ")?.parse::<u64>().ok())
        .max();
    (flushed, stderr)
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn sled_reopens_with_everything_flushed_after_the_disk_fills_at_random_points() {
    const FS_MIB: u64 = 24;
    let rounds = env_number("WATCHSTAND_ENOSPC_ROUNDS").map_or(8, |n| n as usize);
    let seed = env_number("WATCHSTAND_CRASH_SEED").unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(mut fs) = small_fs::SmallFs::mount_or_skip(FS_MIB) else {
        return;
    };
    let started = Instant::now();
    let mut store = 0;
    let mut dir = fs.path().join("store-0");
    let mut max_flushed = 0u64;
    let mut failures: Vec<String> = Vec::new();
    let mut writer_errors = 0;
    let mut repaired_opens = 0;
    for round in 1..=rounds {
        // The store only grows; start a new one before it takes the filesystem by itself
        // (the old one is removed: a check after freeing the fillers needs room to open).
        if dir_bytes(&dir) > FS_MIB * 1024 * 1024 / 3 {
            std::fs::remove_dir_all(&dir).expect("remove the full-grown store");
            store += 1;
            dir = fs.path().join(format!("store-{store}"));
            max_flushed = 0;
        }
        let delay = Duration::from_millis(rng.gen_range(0..=150));
        let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
            .arg(&dir)
            .arg("20000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn storage-crash-writer");
        let (ready, reader) = collect_lines(&mut child);
        if ready.recv_timeout(READY_TIMEOUT).is_err() {
            failures.push(format!(
                "round {round}: writer not ready in {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(delay);
        fs.fill().expect("fill the filesystem");
        // The writer's next write or flush fails: it exits with an error; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && child.try_wait().expect("try_wait").is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().expect("try_wait").is_some() {
            writer_errors += 1;
        }
        child.kill().ok();
        child.wait().expect("reap the writer");
        let lines = reader.join().expect("stdout reader");
        if let Some(n) = lines
            .iter()
            .filter_map(|l| l.strip_prefix("flushed ")?.parse::<u64>().ok())
            .max()
        {
            max_flushed = max_flushed.max(n);
        }
        // Restarted while the disk is still full: it must fail, not damage the store.
        let (flushed, _) = run_writer_until(&dir, Duration::from_millis(500));
        max_flushed = max_flushed.max(flushed.unwrap_or(0));
        fs.free().expect("free the space");
        let artefacts = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".generating"))
            })
            .unwrap_or(false);
        match check_store(&dir) {
            Ok(found) => {
                repaired_opens += usize::from(artefacts);
                if found.last < max_flushed {
                    failures.push(format!(
                        "round {round} (delay {delay:?}): store ends at {} but seq {max_flushed} \
                         was reported flushed",
                        found.last
                    ));
                }
                for p in &found.problems {
                    failures.push(format!("round {round} (delay {delay:?}): {p}"));
                }
            }
            Err(e) => {
                failures.push(format!("round {round} (delay {delay:?}): {e}"));
                break;
            }
        }
    }
    eprintln!(
        "ENOSPC harness: {rounds} rounds (seed {seed}), {writer_errors} writers stopped by the \
         full disk, {repaired_opens} opens found an incomplete snapshot to remove, {} stores, \
         total {:?}",
        store + 1,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "ENOSPC harness failed (seed {seed}):\n{}",
        failures.join("\n")
    );
}
