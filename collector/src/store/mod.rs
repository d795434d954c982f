//! The collector's store: what ingest writes and what the SLA, capacity and registry queries
//! read, laid out over the shared storage trait (sled on disk, the model in tests).
//!
//! The layout — every tree name and key encoding — is in [`trees`], the one varint codec of
//! the binary records in [`varint`]. This module sits below everything else in the collector:
//! it imports only `watchstand_shared` and its own submodules (never ingest, SLA, incident,
//! rollup or API types), so record types of higher layers travel through it as JSON
//! ([`Store::load_all`], [`StoreBatch::put_json`]) or bytes.
//!
//! Every data key is derived from what the agent sent, so writing a re-sent entry again is
//! idempotent: a crash between storing and acknowledging can cause a re-send, never a double.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use watchstand_shared::storage::{
    key::read_u64, MemoryStorage, SledStorage, Storage, StorageError, Tree, Write,
};
use watchstand_shared::wire::v1::{GapRecord, ProbeResult, ProbeState};

pub mod trees;
pub mod varint;

/// The collector's default sled page cache (`[collector] store_cache_mib` = 16), in on-disk
/// bytes. Smaller than sled's 64 MiB: with one malloc arena, a 2 M-result backlog drain peaked
/// at 372–407 MiB with 16 MiB against 542–575 MiB with 64, at the same throughput within run
/// to run noise (BENCHMARKS.md, "2 M drain on a quiet machine").
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub use trees::{capacity_key, gap_key, probe_prefix, result_key};

/// A stored raw result (the agent id and probe id are in the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    /// Boot the result came from.
    #[serde(rename = "b")]
    pub boot: String,
    /// Its seq in that boot.
    #[serde(rename = "q")]
    pub seq: u64,
    /// Observation time, epoch ms.
    #[serde(rename = "t")]
    pub observed_ms: u64,
    /// Outcome.
    #[serde(rename = "s")]
    pub state: ProbeState,
    /// Latency, µs.
    #[serde(rename = "l")]
    pub latency_us: u64,
    /// Probe interval, ms.
    #[serde(rename = "i")]
    pub interval_ms: u64,
    /// Error text when not up.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// First byte of a binary [`StoredResult`] record. A JSON record (written before the binary
/// format) always starts with `{`, so the two never mix up.
const RESULT_FORMAT_V1: u8 = 1;

impl StoredResult {
    /// The stored form: the format byte, the state byte, then LEB128 varints (`seq`,
    /// `observed_ms`, `latency_us`, `interval_ms`, the boot's length, the error's length + 1 or 0
    /// for none) with the boot and error bytes after their lengths. About 40 bytes for an `up`
    /// result against about 100 as JSON, and no serde on the ingest hot path.
    pub fn encode(&self) -> Vec<u8> {
        encode_result(
            &self.boot,
            self.seq,
            self.observed_ms,
            self.state,
            self.latency_us,
            self.interval_ms,
            self.error.as_deref(),
        )
    }

    /// Decodes a stored record: the binary format of [`Self::encode`], or JSON as written by
    /// earlier versions.
    ///
    /// # Errors
    /// The bytes are neither (corruption).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&RESULT_FORMAT_V1) => {
                decode_binary(&bytes[1..]).ok_or_else(|| StoreError::CorruptRecord {
                    tree: trees::RESULTS,
                    detail: format!("binary result record of {} bytes is malformed", bytes.len()),
                })
            }
            _ => decode(trees::RESULTS, bytes),
        }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored value does not decode (corruption or a format change without migration).
    #[error("stored value in tree {tree} does not decode: {source}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// The decode error.
        source: serde_json::Error,
    },
    /// A stored binary record does not decode.
    #[error("stored record in tree {tree} does not decode: {detail}")]
    CorruptRecord {
        /// Which tree.
        tree: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Result of store calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Writes to several trees, applied tree by tree in the order the trees were first used, then
/// flushed once. Data trees are used before state trees, so a crash leaves state no further
/// ahead than data. Dirty marks ([`Self::mark_dirty`]) are deduplicated and applied before
/// everything else: a crash can leave a mark without its result (recomputed harmlessly), never
/// a result without its mark (a stale rollup).
#[derive(Debug, Default)]
pub struct StoreBatch {
    dirty: BTreeSet<Vec<u8>>,
    capacity_dirty: BTreeSet<Vec<u8>>,
    writes: Vec<(&'static str, Vec<Write>)>,
}

impl StoreBatch {
    /// Adds a write to `tree`.
    pub fn push(&mut self, tree: &'static str, write: Write) {
        match self.writes.iter_mut().find(|(t, _)| *t == tree) {
            Some((_, w)) => w.push(write),
            None => self.writes.push((tree, vec![write])),
        }
    }

    /// Marks a rollup bucket (a key of the `dirty` tree) for recomputation; the same bucket
    /// marked many times in a batch is written once, ahead of every other write of the batch.
    pub fn mark_dirty(&mut self, key: Vec<u8>) {
        self.dirty.insert(key);
    }

    /// Marks a capacity 5-minute bucket (a key of the `capacity_dirty` tree) for
    /// recomputation, with the same discipline as [`Self::mark_dirty`].
    pub fn mark_capacity_dirty(&mut self, key: Vec<u8>) {
        self.capacity_dirty.insert(key);
    }

    /// Adds a JSON-encoded put.
    pub fn put_json<T: Serialize>(&mut self, tree: &'static str, key: Vec<u8>, value: &T) {
        self.push(tree, Write::Put(key, to_json(value)));
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.dirty.len()
            + self.capacity_dirty.len()
            + self.writes.iter().map(|(_, w)| w.len()).sum::<usize>()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own record types hold only strings and numbers: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Most writes [`Store::commit`] hands the engine in one atomic batch. sled 0.34 keeps every
/// page version an insert replaces until its batch returns; measured with heaptrack (issue 10),
/// 40,000-result batches held 460 MiB of replaced nodes at the collector's peak.
pub const COMMIT_PIECE: usize = 1_000;

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    storage: Arc<dyn Storage>,
    /// Serialises committed batches with rollup passes: a pass reads dirty marks, recomputes
    /// and clears them; a batch landing in between could re-mark a bucket the pass then clears
    /// with a stale rollup.
    rollup_lock: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the sled store in `dir` with the collector's default page cache
    /// ([`DEFAULT_CACHE_BYTES`]).
    ///
    /// # Errors
    /// The store cannot be opened (I/O, lock held by another collector process).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the sled store in `dir` with a page cache of `cache_bytes` (on-disk bytes;
    /// `[collector] store_cache_mib`).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        Ok(Self {
            rollup_lock: Arc::default(),
            storage: Arc::new(SledStorage::open_with_cache(dir, cache_bytes)?),
        })
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Self {
        Self {
            rollup_lock: Arc::default(),
            storage: Arc::new(MemoryStorage::new()),
        }
    }

    /// A tree by name.
    ///
    /// # Errors
    /// Engine failure.
    pub fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        Ok(self.storage.tree(name)?)
    }

    /// Applies `batch` and flushes: when this returns Ok, everything in it is durable.
    ///
    /// Written in engine batches of at most [`COMMIT_PIECE`] writes, in order (marks, then
    /// each tree's writes as added): the engine's memory per batch stays bounded however
    /// large an ingest batch is. Safe because nothing is acknowledged before the flush and
    /// every write is an idempotent put: a crash part-way leaves a prefix that the broker's
    /// redelivery rewrites (the dedup state is added last, so it never runs ahead of data).
    ///
    /// # Errors
    /// Engine failure; nothing in the batch may then be acknowledged.
    pub fn commit(&self, batch: StoreBatch) -> Result<()> {
        let _exclusive = self.exclusive();
        if !batch.dirty.is_empty() {
            let marks = batch
                .dirty
                .into_iter()
                .map(|k| Write::Put(k, Vec::new()))
                .collect();
            self.tree(trees::DIRTY)?
                .apply_in_pieces(marks, COMMIT_PIECE)?;
        }
        if !batch.capacity_dirty.is_empty() {
            let marks = batch
                .capacity_dirty
                .into_iter()
                .map(|k| Write::Put(k, Vec::new()))
                .collect();
            self.tree(trees::CAPACITY_DIRTY)?
                .apply_in_pieces(marks, COMMIT_PIECE)?;
        }
        for (tree, writes) in batch.writes {
            self.tree(tree)?.apply_in_pieces(writes, COMMIT_PIECE)?;
        }
        self.storage.flush()?;
        Ok(())
    }

    /// Holds off commits while the guard lives (rollup passes).
    pub fn exclusive(&self) -> std::sync::MutexGuard<'_, ()> {
        self.rollup_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes on disk.
    ///
    /// # Errors
    /// Engine failure.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.storage.size_on_disk()?)
    }

    /// The write for one raw result.
    pub fn result_write(agent: &str, boot: &str, r: &ProbeResult) -> Write {
        Write::Put(
            result_key(agent, &r.probe, r.observed_ms, r.seq),
            encode_result(
                boot,
                r.seq,
                r.observed_ms,
                r.state,
                r.latency_us,
                r.interval_ms,
                r.error.as_deref(),
            ),
        )
    }

    /// Raw results of one probe observed in `[from_ms, to_ms)`, plus the last one before
    /// `from_ms` (whose state may still hold at `from_ms`), in time order.
    ///
    /// # Errors
    /// Engine failure or a corrupt record.
    pub fn observations(
        &self,
        agent: &str,
        probe: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<StoredResult>> {
        let tree = self.tree(trees::RESULTS)?;
        let prefix = probe_prefix(agent, probe);
        let start = result_key(agent, probe, from_ms, 0);
        let end = result_key(agent, probe, to_ms, 0);
        let mut entries = tree.range_rev(&prefix, Some(&start), 1)?;
        entries.extend(tree.range(&start, Some(&end), usize::MAX)?);
        entries
            .iter()
            .map(|(_, v)| StoredResult::decode(v))
            .collect()
    }

    /// Capacity values of one agent metric in `[from_ms, to_ms)`.
    ///
    /// # Errors
    /// Engine failure.
    pub fn capacity_series(
        &self,
        agent: &str,
        metric: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<(u64, f64)>> {
        let tree = self.tree(trees::CAPACITY)?;
        let start = capacity_key(agent, metric, from_ms);
        let end = capacity_key(agent, metric, to_ms);
        let ts_at = start.len() - 8;
        Ok(tree
            .range(&start, Some(&end), usize::MAX)?
            .into_iter()
            .filter_map(|(k, v)| {
                let ts = read_u64(&k, ts_at)?;
                let bytes: [u8; 8] = v.as_slice().try_into().ok()?;
                Some((ts, f64::from_be_bytes(bytes)))
            })
            .collect())
    }

    /// The metric names stored for `agent` (scans the agent's capacity keys once per metric).
    ///
    /// # Errors
    /// Engine failure.
    pub fn capacity_metrics(&self, agent: &str) -> Result<Vec<String>> {
        let tree = self.tree(trees::CAPACITY)?;
        let agent_prefix = trees::agent_prefix(agent);
        let mut names = Vec::new();
        let mut cursor = agent_prefix.clone();
        let end = watchstand_shared::storage::key::prefix_end(&agent_prefix);
        // Skip from one metric to the next instead of reading every sample.
        while let Some((k, _)) = tree.range(&cursor, end.as_deref(), 1)?.into_iter().next() {
            let rest = &k[agent_prefix.len()..];
            let Some(sep) = rest.iter().position(|b| *b == 0) else {
                break;
            };
            let name = String::from_utf8_lossy(&rest[..sep]).into_owned();
            cursor = trees::capacity_key(agent, &name, u64::MAX);
            cursor.push(0);
            names.push(name);
        }
        Ok(names)
    }

    /// Gap records of `agent` whose time range may overlap `[from_ms, to_ms)`.
    ///
    /// # Errors
    /// Engine failure or a corrupt record.
    pub fn gaps(&self, agent: &str, from_ms: u64, to_ms: u64) -> Result<Vec<GapRecord>> {
        let tree = self.tree(trees::GAPS)?;
        let start = trees::agent_prefix(agent);
        let end = trees::gaps_before(agent, to_ms);
        let mut out = Vec::new();
        for (_, v) in tree.range(&start, Some(&end), usize::MAX)? {
            let g: GapRecord = decode(trees::GAPS, &v)?;
            if g.to_ms > from_ms {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Every JSON record of a small tree (registry, dedup state), keyed by its string key.
    ///
    /// # Errors
    /// Engine failure or a corrupt record.
    pub fn load_all<T: for<'de> Deserialize<'de>>(
        &self,
        tree: &'static str,
    ) -> Result<Vec<(Vec<u8>, T)>> {
        self.tree(tree)?
            .range(&[], None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| Ok((k, decode(tree, &v)?)))
            .collect()
    }

    /// Raw results of every probe of `agent` observed in `[from_ms, to_ms)`, as `(probe,
    /// result)`, by probe then time; at most `limit`.
    ///
    /// # Errors
    /// Engine failure or a corrupt record.
    pub fn agent_results(
        &self,
        agent: &str,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, StoredResult)>> {
        let tree = self.tree(trees::RESULTS)?;
        let mut out = Vec::new();
        for (key, value) in tree.scan_prefix(&trees::agent_prefix(agent))? {
            if out.len() >= limit {
                break;
            }
            let r = StoredResult::decode(&value)?;
            if r.observed_ms < from_ms || r.observed_ms >= to_ms {
                continue;
            }
            let probe = key
                .split(|b| *b == 0)
                .nth(1)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default();
            out.push((probe, r));
        }
        Ok(out)
    }

    /// The delivery state of every boot of `agent`: `(boot, state)`, the state decoded as the
    /// caller's type (ingest's dedup tracker).
    ///
    /// # Errors
    /// Engine failure or a corrupt record.
    pub fn boots<T: for<'de> Deserialize<'de>>(&self, agent: &str) -> Result<Vec<(String, T)>> {
        let tree = self.tree(trees::SEQS)?;
        tree.scan_prefix(&trees::agent_prefix(agent))?
            .into_iter()
            .map(|(k, v)| {
                let boot = trees::parse_seqs_key(&k)
                    .map(|(_, boot)| boot)
                    .unwrap_or_default();
                Ok((boot, decode(trees::SEQS, &v)?))
            })
            .collect()
    }

    /// Deletes raw results and capacity samples observed before `cutoff_ms`; returns how many.
    ///
    /// # Errors
    /// Engine failure.
    pub fn prune_raw(&self, cutoff_ms: u64) -> Result<usize> {
        let removed = self.prune_series(trees::RESULTS, cutoff_ms)?
            + self.prune_series(trees::CAPACITY, cutoff_ms)?;
        self.storage.flush()?;
        Ok(removed)
    }

    /// Deletes, in a tree keyed `agent \0 series \0 ts…`, every entry of every series older than
    /// `cutoff_ms`; returns how many. Not flushed.
    ///
    /// # Errors
    /// Engine failure.
    pub fn prune_series(&self, tree_name: &str, cutoff_ms: u64) -> Result<usize> {
        let mut removed = 0;
        let tree = self.tree(tree_name)?;
        let mut cursor: Vec<u8> = Vec::new();
        loop {
            let Some((k, _)) = tree.range(&cursor, None, 1)?.into_iter().next() else {
                break;
            };
            let Some(series) = trees::series_prefix(&k) else {
                break;
            };
            let mut cutoff = series.clone();
            cutoff.extend_from_slice(&cutoff_ms.to_be_bytes());
            removed += tree.delete_range(&series, Some(&cutoff))?;
            match watchstand_shared::storage::key::prefix_end(&series) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        Ok(removed)
    }

    /// Flushes everything written so far.
    ///
    /// # Errors
    /// Engine failure.
    pub fn flush(&self) -> Result<()> {
        Ok(self.storage.flush()?)
    }
}

/// [`StoredResult::encode`] from borrowed parts (no intermediate record on the ingest path).
fn encode_result(
    boot: &str,
    seq: u64,
    observed_ms: u64,
    state: ProbeState,
    latency_us: u64,
    interval_ms: u64,
    error: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 6 * 10 + boot.len() + error.map_or(0, str::len));
    out.push(RESULT_FORMAT_V1);
    out.push(match state {
        ProbeState::Up => 0,
        ProbeState::Degraded => 1,
        ProbeState::Down => 2,
    });
    for n in [seq, observed_ms, latency_us, interval_ms] {
        varint::put(&mut out, n);
    }
    varint::put(&mut out, boot.len() as u64);
    out.extend_from_slice(boot.as_bytes());
    match error {
        Some(e) => {
            varint::put(&mut out, e.len() as u64 + 1);
            out.extend_from_slice(e.as_bytes());
        }
        None => varint::put(&mut out, 0),
    }
    out
}

fn take_str(bytes: &mut &[u8], len: u64) -> Option<String> {
    let len = usize::try_from(len).ok()?;
    if bytes.len() < len {
        return None;
    }
    let (s, rest) = bytes.split_at(len);
    *bytes = rest;
    String::from_utf8(s.to_vec()).ok()
}

/// The body of a binary result record (after the format byte).
fn decode_binary(mut bytes: &[u8]) -> Option<StoredResult> {
    let b = &mut bytes;
    let (&state, rest) = b.split_first()?;
    *b = rest;
    let state = match state {
        0 => ProbeState::Up,
        1 => ProbeState::Degraded,
        2 => ProbeState::Down,
        _ => return None,
    };
    let seq = varint::take(b).ok()?;
    let observed_ms = varint::take(b).ok()?;
    let latency_us = varint::take(b).ok()?;
    let interval_ms = varint::take(b).ok()?;
    let boot_len = varint::take(b).ok()?;
    let boot = take_str(b, boot_len)?;
    let error = match varint::take(b).ok()? {
        0 => None,
        n => Some(take_str(b, n - 1)?),
    };
    b.is_empty().then_some(StoredResult {
        boot,
        seq,
        observed_ms,
        state,
        latency_us,
        interval_ms,
        error,
    })
}

fn decode<T: for<'de> Deserialize<'de>>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { tree, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seq: u64, observed_ms: u64, state: ProbeState) -> ProbeResult {
        ProbeResult {
            seq,
            probe: "web".into(),
            kind: "http".into(),
            target: "http://127.0.0.1/".into(),
            observed_ms,
            interval_ms: 1_000,
            state,
            latency_us: 100,
            error: None,
            metrics: Vec::new(),
        }
    }

    #[test]
    fn observations_include_the_one_still_holding_at_the_window_start() {
        let store = Store::in_memory();
        let mut batch = StoreBatch::default();
        for (seq, t) in [(1, 1_000), (2, 2_000), (3, 3_000), (4, 4_000)] {
            batch.push(
                trees::RESULTS,
                Store::result_write("a", "b", &result(seq, t, ProbeState::Up)),
            );
        }
        store.commit(batch).unwrap();
        let got: Vec<u64> = store
            .observations("a", "web", 2_500, 4_000)
            .unwrap()
            .iter()
            .map(|r| r.observed_ms)
            .collect();
        assert_eq!(got, [2_000, 3_000]);
        assert!(store
            .observations("a", "other", 0, 10_000)
            .unwrap()
            .is_empty());
    }

    fn stored(error: Option<&str>, state: ProbeState) -> StoredResult {
        StoredResult {
            boot: "0123456789abcdef".into(),
            seq: 1 << 40,
            observed_ms: 1_700_000_000_123,
            state,
            latency_us: 5_000_000,
            interval_ms: 10_000,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn binary_records_round_trip_and_json_records_still_decode() {
        for r in [
            stored(None, ProbeState::Up),
            stored(Some("connect: refused"), ProbeState::Down),
            stored(Some(""), ProbeState::Degraded),
            StoredResult {
                boot: String::new(),
                seq: 0,
                observed_ms: u64::MAX,
                latency_us: 0,
                ..stored(None, ProbeState::Up)
            },
        ] {
            let bytes = r.encode();
            assert_eq!(StoredResult::decode(&bytes).unwrap(), r);
            let json = serde_json::to_vec(&r).unwrap();
            assert!(bytes.len() < json.len());
            // What versions before the binary format wrote.
            assert_eq!(StoredResult::decode(&json).unwrap(), r);
        }
        let w = Store::result_write("a", "0123456789abcdef", &result(7, 1_000, ProbeState::Up));
        let Write::Put(_, v) = w else { panic!("a put") };
        assert_eq!(StoredResult::decode(&v).unwrap().seq, 7);
    }

    #[test]
    fn malformed_binary_records_are_corrupt_not_panics() {
        let good = stored(Some("x"), ProbeState::Down).encode();
        for cut in 1..good.len() {
            assert!(StoredResult::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(StoredResult::decode(&long).is_err());
        let mut bad_state = good;
        bad_state[1] = 9;
        assert!(StoredResult::decode(&bad_state).is_err());
        assert!(StoredResult::decode(&[]).is_err());
        assert!(StoredResult::decode(&[
            RESULT_FORMAT_V1,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x01
        ])
        .is_err());
    }

    #[test]
    fn dirty_marks_are_deduplicated_and_counted_once() {
        let store = Store::in_memory();
        let mut batch = StoreBatch::default();
        batch.push(
            trees::RESULTS,
            Store::result_write("a", "b", &result(1, 1_000, ProbeState::Up)),
        );
        for _ in 0..3 {
            batch.mark_dirty(b"a\0web\0m".to_vec());
        }
        assert_eq!(batch.len(), 2);
        store.commit(batch).unwrap();
        assert_eq!(store.tree(trees::DIRTY).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn writing_a_resent_result_again_is_idempotent() {
        let store = Store::in_memory();
        for _ in 0..3 {
            let mut batch = StoreBatch::default();
            batch.push(
                trees::RESULTS,
                Store::result_write("a", "b", &result(1, 1_000, ProbeState::Down)),
            );
            store.commit(batch).unwrap();
        }
        assert_eq!(store.tree(trees::RESULTS).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn pruning_drops_only_old_raw_data_of_every_series() {
        let store = Store::in_memory();
        let mut batch = StoreBatch::default();
        for probe in ["p1", "p2"] {
            for t in [1_000u64, 5_000, 9_000] {
                let mut r = result(t, t, ProbeState::Up);
                r.probe = probe.into();
                batch.push(trees::RESULTS, Store::result_write("a", "b", &r));
            }
        }
        for t in [1_000u64, 9_000] {
            batch.push(
                trees::CAPACITY,
                Write::Put(
                    capacity_key("a", "cpu_pct", t),
                    1.0f64.to_be_bytes().to_vec(),
                ),
            );
        }
        store.commit(batch).unwrap();
        assert_eq!(store.prune_raw(5_000).unwrap(), 3);
        assert_eq!(
            store.observations("a", "p1", 5_000, 10_000).unwrap().len(),
            2
        );
        assert_eq!(
            store.capacity_series("a", "cpu_pct", 0, 10_000).unwrap(),
            [(9_000, 1.0)]
        );
    }

    #[test]
    fn capacity_metric_names_are_listed_once_each() {
        let store = Store::in_memory();
        let mut batch = StoreBatch::default();
        for t in [1_000u64, 2_000] {
            for m in ["cpu_pct", "disk_used_pct:/", "mem_used_pct"] {
                batch.push(
                    trees::CAPACITY,
                    Write::Put(capacity_key("a", m, t), 1.0f64.to_be_bytes().to_vec()),
                );
            }
        }
        batch.push(
            trees::CAPACITY,
            Write::Put(
                capacity_key("b", "cpu_pct", 1),
                1.0f64.to_be_bytes().to_vec(),
            ),
        );
        store.commit(batch).unwrap();
        assert_eq!(
            store.capacity_metrics("a").unwrap(),
            ["cpu_pct", "disk_used_pct:/", "mem_used_pct"]
        );
    }
}
