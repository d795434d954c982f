//! The durable, bounded outbox: the third stage of probe → scheduler → **outbox** → publisher →
//! mqtt. Every probe result and capacity sample is appended here (and gets its seq) before it is
//! published, and stays until the collector's ack watermark for its boot covers it.
//!
//! # Layout on storage
//! - tree `outbox_entries`: key = (boot ordinal, seq) as big-endian u64s, so a scan returns
//!   earlier boots first and seqs in order; value = the JSON of an [`Entry`].
//! - tree `outbox_boots`: key = boot ordinal; value = [`BootMeta`] (boot id, ack watermark, last
//!   dropped seq, unbooked drops). Every start is a new boot with the next ordinal and a fresh
//!   random id; entries of earlier boots that were never acked are re-sent under their own boot
//!   id.
//!
//! # Dropping at the cap
//! At the cap the oldest entries that are not gap records are dropped (the open gap record,
//! never read, is carried forward to a fresh seq instead, its old seq joining its own range,
//! so that a long outage stays one record). What a drop books depends on whether the publisher
//! has already read the entry since its last [`Outbox::rewind`] of that boot (the boot's *read
//! frontier*: every entry present at or below it was read):
//! - **Not read** (the usual case: the broker is away): the drop is booked in a gap record at
//!   once. The newest gap record stays *open* until the publisher reads it, and drops that
//!   continue its range extend it in place, so one overflow episode is one gap record.
//! - **Read** (published, or about to be, but not acked yet): the collector probably has it, and
//!   booking it would book time it holds results for as lost. The drop is kept as an *unbooked
//!   run* in the boot's meta instead. When the ack watermark passes it the collector has it
//!   (counted in [`OutboxStats::dropped_delivered`], never booked); when the publisher rewinds
//!   to re-send (reconnect, stalled watermark), or the outbox is reopened, it can no longer be
//!   re-sent and is booked like any other drop. Booking a drop of an unread entry (or the
//!   carried open record's old seq) first books the boot's unbooked runs, which all come before
//!   it, so an outage that begins with entries in flight is still one record.
//!
//! So one overflow episode is one gap record, and a second record appears only when a drop must
//! be booked and cannot continue the open record: the record was read already (the publisher
//! sends it as soon as it is connected) and then an unread entry is dropped (the agent lost the
//! broker again, or drops outran the window) or unbooked runs are booked at a rewind or a
//! reopen (the collector did not ack them for `resend_after`, or the connection dropped first);
//! the drop belongs to another boot than the record; or a gap record already read sits between
//! the record's range and the drop. After a usual outage (the broker back, the collector acking
//! within `resend_after`) none of these happen.
//!
//! # Invariants (checked by [`Outbox::check_integrity`])
//! - Within a boot, seqs are assigned once, from 1, and never reused.
//! - Above `floor = max(watermark, dropped_upto)` the seqs of a boot are contiguous. Below it
//!   only gap records may remain: dropping at the cap takes the oldest *non-gap* entries, so a
//!   gap record (which has its own seq and is the only trace of the loss) is never dropped.
//! - Every dropped seq is either booked in exactly one gap record's range or held in exactly one
//!   unbooked run of its boot, never both (gap records are trimmed by acks like any entry, so
//!   this half is checked by the model test, `agent/tests/outbox_model.rs`). Unbooked runs are
//!   sorted, disjoint, above the watermark, at or below `dropped_upto`, and no stored entry sits
//!   in them.
//! - Only an ack trims: entries with `seq <= watermark` of their boot are deleted, nothing else;
//!   an ack also settles the unbooked drops it covers.
//!
//! # State changes
//! The outbox remembers each probe's last appended state (in memory, per process). A result
//! whose state differs from it (for a probe's first result in this process: any state but
//! `up`) is *urgent*: [`Outbox::urgent_after`] tells the publisher to send what is pending at
//! once instead of lingering, so the collector learns of an outage or a recovery without the
//! batching delay.
//!
//! # Durability
//! Appends are not flushed one by one. The publisher calls [`Outbox::ensure_durable`] once per
//! publish cycle, before it publishes anything it read, so nothing reaches the broker that a
//! crash could take back.
//!
//! # Store failures (disk full)
//! A write or flush that fails starts a *store-failing episode* ([`StoreHealth`]): it is logged
//! once (not once per result), counted, and shown in `/health`. While it lasts, an append that
//! cannot be stored still takes its seq and is booked as lost, in memory; [`run_writer`] tries
//! [`Outbox::recover`] every [`RECOVER_EVERY`]: it reopens the store in-process (sled keeps a
//! global error after a failed flush, see `ReopeningSled`), compares the index with what the
//! store really holds — entries it had accepted but never made durable are gone, and are booked
//! as lost too, so that they are never counted as delivered — writes one `store_failed` gap
//! record per run of lost seqs and flushes. Meanwhile [`Outbox::take_memory_gaps`] gives the
//! publisher gap records made in memory, to send ahead of everything while the disk is full;
//! recovery stores them under the seqs they went with. Only when that flush succeeds does the
//! episode end;
//! the collector's watermark waits at the first lost seq until the gap record arrives, and it
//! books that time as unmonitored, never up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use watchstand_shared::storage::key::{read_u64, KeyBuf};
use watchstand_shared::storage::{Storage, StorageError, Tree};
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{CapacitySample, GapReason, GapRecord, ProbeResult, ProbeState};

use crate::events;

const ENTRIES_TREE: &str = "outbox_entries";
const BOOTS_TREE: &str = "outbox_boots";
/// Every key is two u64s.
const KEY_BYTES: u64 = 16;

/// Something measured, before it has a seq.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// A probe result (its `seq` is ignored and assigned on append).
    Result(ProbeResult),
    /// A capacity sample (its `seq` is ignored and assigned on append).
    Capacity(CapacitySample),
}

/// One stored entry, as it will be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// Goes to `/results`.
    Result(ProbeResult),
    /// Goes to `/capacity`.
    Capacity(CapacitySample),
    /// Goes to `/results`, in `gaps`.
    Gap(GapRecord),
}

/// The kind of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A probe result.
    Result,
    /// A capacity sample.
    Capacity,
    /// A gap record.
    Gap,
}

impl Entry {
    /// The entry's seq in its boot.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Result(r) => r.seq,
            Entry::Capacity(c) => c.seq,
            Entry::Gap(g) => g.seq,
        }
    }

    fn set_seq(&mut self, seq: u64) {
        match self {
            Entry::Result(r) => r.seq = seq,
            Entry::Capacity(c) => c.seq = seq,
            Entry::Gap(g) => g.seq = seq,
        }
    }

    /// The kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            Entry::Result(_) => EntryKind::Result,
            Entry::Capacity(_) => EntryKind::Capacity,
            Entry::Gap(_) => EntryKind::Gap,
        }
    }

    /// When it was observed (for a gap record: the start of the range).
    pub fn observed_ms(&self) -> u64 {
        match self {
            Entry::Result(r) => r.observed_ms,
            Entry::Capacity(c) => c.observed_ms,
            Entry::Gap(g) => g.from_ms,
        }
    }

    fn encode(&self) -> Vec<u8> {
        // Our own plain structs serialise to a Vec without failing (no non-string map keys,
        // no I/O); floats are checked finite by the sampler.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl From<Measurement> for Entry {
    fn from(m: Measurement) -> Self {
        match m {
            Measurement::Result(r) => Entry::Result(r),
            Measurement::Capacity(c) => Entry::Capacity(c),
        }
    }
}

/// Why an outbox call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The flush task could not run.
    #[error("outbox flush task failed: {0}")]
    FlushTask(String),
    /// An entry too large to be published in one MQTT packet.
    #[error("{what} of {bytes} bytes exceeds the {limit}-byte limit of one entry")]
    TooLarge {
        /// `result` or `capacity`.
        what: &'static str,
        /// Encoded size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The integrity check found problems.
    #[error("outbox integrity: {}", .0.join("; "))]
    Integrity(Vec<String>),
    /// The store is failing (disk full): the measurement took seq `seq` and is booked as lost.
    #[error("outbox store failing: seq {seq} booked as lost")]
    StoreFailing {
        /// The seq the lost measurement took.
        seq: u64,
    },
}

/// How often [`run_writer`] tries to reopen a failing store.
pub const RECOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The store's health as `/health` shows it: whether writes are failing now, and counters since
/// start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Writes fail now (an episode is open).
    pub failing: bool,
    /// When the open episode began (wall clock, ms).
    pub failing_since_ms: Option<u64>,
    /// The error that opened the episode.
    pub error: Option<String>,
    /// Failed writes and flushes since start.
    pub failed_writes: u64,
    /// Entries booked as lost because the store failed, since start.
    pub lost_entries: u64,
    /// Episodes since start.
    pub episodes: u64,
}

/// The store-failing episode (see "Store failures" in the module docs).
#[derive(Debug, Default)]
struct DiskEpisode {
    health: StoreHealth,
    /// Seqs of the current boot lost in the open episode, not yet booked: seq → observed_ms.
    lost: BTreeMap<u64, u64>,
    /// Gap records of this episode published from memory (the store could not hold them):
    /// written to the store, under the same seqs, when it works again.
    sent: Vec<GapRecord>,
    /// Of those, the ones whose publish has not succeeded yet: offered again on every call.
    unpublished: Vec<GapRecord>,
    /// When the last of those was made (they are made at most every [`MEMORY_GAP_EVERY`]).
    last_sent: Option<std::time::Instant>,
}

/// How often a failing outbox makes a gap record in memory for the publisher to send ahead.
pub const MEMORY_GAP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs of consecutive seqs in `lost` (seq → observed_ms): `(from_seq, to_seq, from_ms, to_ms)`.
fn lost_runs(lost: &BTreeMap<u64, u64>) -> Vec<(u64, u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64, u64)> = Vec::new();
    for (&seq, &ms) in lost {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == seq => {
                run.1 = seq;
                run.2 = run.2.min(ms);
                run.3 = run.3.max(ms + 1);
            }
            _ => runs.push((seq, seq, ms, ms + 1)),
        }
    }
    runs
}

/// Caps of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most entries (gap records included).
    pub max_entries: usize,
    /// Most bytes (keys and values).
    pub max_bytes: u64,
    /// Largest single entry: what still fits one MQTT packet with its batch envelope.
    pub max_entry_bytes: usize,
}

/// What the outbox keeps per boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMeta {
    /// The boot id as published.
    pub id: String,
    /// Highest seq the collector acked; everything up to it is deleted.
    pub watermark: u64,
    /// Highest seq dropped at the cap; every non-gap entry up to it is gone.
    pub dropped_upto: u64,
    /// Seqs above the floor deleted because they no longer decoded (booked in gap records);
    /// rare, and kept so the integrity check can tell them from holes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<u64>,
    /// Entries dropped at the cap after the publisher had read them, not booked in a gap record:
    /// runs of consecutive seqs, oldest first. The watermark passing them settles them as
    /// delivered; a rewind or a reopen books them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbooked: Vec<UnbookedRun>,
}

/// Consecutive seqs of one boot dropped at the cap after the publisher had read them, not (yet)
/// booked in a gap record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbookedRun {
    /// First seq.
    pub from_seq: u64,
    /// Last seq.
    pub to_seq: u64,
    /// `observed_ms` of the first entry (kept when an ack settles the front of the run, so a
    /// later booking may start a little early: never late).
    pub from_ms: u64,
    /// One past the latest `observed_ms` in the run.
    pub to_ms: u64,
}

impl UnbookedRun {
    /// How many seqs it holds.
    pub fn count(&self) -> u64 {
        self.to_seq - self.from_seq + 1
    }
}

#[derive(Debug)]
struct BootState {
    meta: BootMeta,
    /// Highest seq ever stored for this boot (the current boot: the last one assigned).
    last_seq: u64,
    /// The read frontier: every entry present at or below `max(read_upto, watermark)` was
    /// returned by [`Outbox::read`] since the last [`Outbox::rewind`] of this boot (not
    /// persisted: a new process has read nothing).
    read_upto: u64,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    kind: EntryKind,
    bytes: u64,
    observed_ms: u64,
}

/// A boot as the publisher and health endpoint see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootView {
    /// Storage ordinal (order of starts).
    pub ordinal: u64,
    /// Boot id.
    pub id: String,
    /// Ack watermark.
    pub watermark: u64,
    /// Highest seq stored so far.
    pub last_seq: u64,
    /// This process's boot.
    pub is_current: bool,
}

/// Counters and gauges of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    /// Entries stored now.
    pub entries: usize,
    /// Bytes stored now (keys and values).
    pub bytes: u64,
    /// Entries dropped at the cap since start.
    pub dropped: u64,
    /// Of those, entries the publisher had read before the drop and the collector's watermark
    /// covered afterwards: delivered, so never booked as lost.
    pub dropped_delivered: u64,
    /// Gap records created since start.
    pub gap_records: u64,
    /// Every boot with entries, oldest first.
    pub boots: Vec<BootView>,
    /// Whether the store is failing, and its failure counters.
    pub store: StoreHealth,
}

/// What an ack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// The outbox holds nothing of that boot.
    UnknownBoot,
    /// The watermark was already at or past it.
    Stale,
    /// Entries up to the new watermark were deleted.
    Trimmed {
        /// The boot's ordinal.
        ordinal: u64,
        /// How many entries were deleted.
        removed: usize,
    },
}

#[derive(Debug)]
struct State {
    index: BTreeMap<(u64, u64), IndexEntry>,
    /// The keys of `index` that are gap records, for [`Outbox::read_gaps`].
    gap_keys: BTreeSet<(u64, u64)>,
    boots: BTreeMap<u64, BootState>,
    current: u64,
    next_seq: u64,
    bytes: u64,
    /// The last gap record, while the publisher has not read it: successive drops that extend
    /// its range rewrite it in place instead of adding records.
    open_gap: Option<GapRecord>,
    /// Writes the publisher may read, and how many of them a flush has covered.
    written: u64,
    durable: u64,
    dropped: u64,
    dropped_delivered: u64,
    gap_records: u64,
    /// Each probe's last appended state (this process).
    last_state: HashMap<String, ProbeState>,
    /// Highest seq of the current boot that is a state change (0: none).
    urgent_upto: u64,
    /// The store-failing episode.
    disk: DiskEpisode,
}

/// The outbox. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Outbox {
    storage: Arc<dyn Storage>,
    entries: Arc<dyn Tree>,
    boots: Arc<dyn Tree>,
    limits: OutboxLimits,
    /// Storage calls happen under this lock: they are short, never span an `.await`, and the
    /// lock makes "read, then close the open gap" atomic against a concurrent drop.
    state: Mutex<State>,
    /// Wakes the publisher after appends and acks.
    changed: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn entry_key(ordinal: u64, seq: u64) -> Vec<u8> {
    KeyBuf::new().u64(ordinal).u64(seq).build()
}

fn boot_key(ordinal: u64) -> Vec<u8> {
    KeyBuf::new().u64(ordinal).build()
}

/// A new boot id: 16 hex characters, the start time in seconds then 32 random bits, so ids sort
/// roughly by start and two agents started in the same second still differ.
pub fn new_boot_id() -> String {
    let secs = (now_ms() / 1_000) as u32;
    format!("{secs:08x}{:08x}", rand::random::<u32>())
}

impl Outbox {
    /// Opens the outbox on `storage` and starts a new boot. Entries of earlier boots are kept
    /// for re-sending; entries that no longer decode are deleted and booked in a gap record.
    ///
    /// # Errors
    /// Storage failure.
    pub fn open(storage: Arc<dyn Storage>, limits: OutboxLimits) -> Result<Self, OutboxError> {
        let entries = storage.tree(ENTRIES_TREE)?;
        let boots_tree = storage.tree(BOOTS_TREE)?;

        let mut boots = BTreeMap::new();
        for (key, value) in boots_tree.range(&[], None, usize::MAX)? {
            let meta = read_u64(&key, 0)
                .zip(serde_json::from_slice::<BootMeta>(&value).ok())
                .filter(|(ordinal, _)| *ordinal > 0 && key.len() == 8);
            match meta {
                Some((ordinal, meta)) => {
                    let last_seq = meta.watermark.max(meta.dropped_upto);
                    boots.insert(
                        ordinal,
                        BootState {
                            meta,
                            last_seq,
                            read_upto: 0,
                        },
                    );
                }
                None => {
                    events::StorageFailed {
                        op: "decode boot meta",
                        error: &format!("key {key:?} dropped"),
                    }
                    .emit();
                    boots_tree.delete(&key)?;
                }
            }
        }

        let mut index = BTreeMap::new();
        let mut bytes = 0;
        // Entries that no longer decode: (ordinal, seq, time of the entry before), to book.
        let mut corrupt: Vec<(u64, u64, u64)> = Vec::new();
        let mut last_ms: HashMap<u64, u64> = HashMap::new();
        for (key, value) in entries.range(&[], None, usize::MAX)? {
            let position = read_u64(&key, 0).zip(read_u64(&key, 8));
            let decoded = serde_json::from_slice::<Entry>(&value).ok();
            match (position, decoded) {
                (Some((ordinal, seq)), Some(entry))
                    if key.len() == 16 && entry.seq() == seq && boots.contains_key(&ordinal) =>
                {
                    let size = KEY_BYTES + value.len() as u64;
                    bytes += size;
                    last_ms.insert(ordinal, entry.observed_ms());
                    index.insert(
                        (ordinal, seq),
                        IndexEntry {
                            kind: entry.kind(),
                            bytes: size,
                            observed_ms: entry.observed_ms(),
                        },
                    );
                    if let Some(boot) = boots.get_mut(&ordinal) {
                        boot.last_seq = boot.last_seq.max(seq);
                    }
                }
                (position, _) => {
                    events::StorageFailed {
                        op: "decode outbox entry",
                        error: &format!("key {key:?} does not decode; deleted"),
                    }
                    .emit();
                    entries.delete(&key)?;
                    if let Some((ordinal, seq)) =
                        position.filter(|(o, s)| key.len() == 16 && *s > 0 && boots.contains_key(o))
                    {
                        let at = last_ms.get(&ordinal).copied().unwrap_or_else(now_ms);
                        corrupt.push((ordinal, seq, at));
                    }
                }
            }
        }

        // Boots with nothing left to send or to book are forgotten.
        let empty: Vec<u64> = boots
            .iter()
            .filter(|(o, b)| {
                index.range((**o, 0)..=(**o, u64::MAX)).next().is_none()
                    && !corrupt.iter().any(|(c, _, _)| c == *o)
                    && b.meta.unbooked.is_empty()
            })
            .map(|(o, _)| *o)
            .collect();
        for ordinal in empty {
            boots.remove(&ordinal);
            boots_tree.delete(&boot_key(ordinal))?;
        }

        let current = boots
            .keys()
            .chain(index.keys().map(|(o, _)| o))
            .max()
            .copied()
            .unwrap_or(0)
            + 1;
        let meta = BootMeta {
            id: new_boot_id(),
            watermark: 0,
            dropped_upto: 0,
            lost: Vec::new(),
            unbooked: Vec::new(),
        };
        boots_tree.put(
            &boot_key(current),
            &serde_json::to_vec(&meta).unwrap_or_default(),
        )?;
        boots.insert(
            current,
            BootState {
                meta,
                last_seq: 0,
                read_upto: 0,
            },
        );
        let gap_keys = index
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Gap)
            .map(|(k, _)| *k)
            .collect();
        let unbooked: Vec<u64> = boots
            .iter()
            .filter(|(_, b)| !b.meta.unbooked.is_empty())
            .map(|(o, _)| *o)
            .collect();

        let outbox = Self {
            storage,
            entries,
            boots: boots_tree,
            limits,
            state: Mutex::new(State {
                index,
                gap_keys,
                boots,
                current,
                next_seq: 1,
                bytes,
                open_gap: None,
                written: 0,
                durable: 0,
                dropped: 0,
                dropped_delivered: 0,
                gap_records: 0,
                last_state: HashMap::new(),
                urgent_upto: 0,
                disk: DiskEpisode::default(),
            }),
            changed: Notify::new(),
        };
        {
            let mut state = outbox.lock();
            // Drops the last process left unbooked: this one has read nothing, so they can no
            // longer be re-sent (the collector may have them: booking them is harmless then).
            for ordinal in unbooked {
                outbox.book_unbooked(&mut state, ordinal)?;
                outbox.persist_boot(&state, ordinal)?;
            }
            for (ordinal, seq, at) in corrupt {
                if let Some(boot) = state.boots.get_mut(&ordinal) {
                    boot.meta.lost.push(seq);
                }
                // The only reason the protocol has is `outbox_full`; the entry is lost either
                // way, and without a record the collector's watermark for that boot would stall.
                outbox.record_drop(&mut state, ordinal, seq, at)?;
                outbox.persist_boot(&state, ordinal)?;
            }
        }
        outbox.storage.flush()?;
        Ok(outbox)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation keeps the state consistent between statements that can panic, so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The boot id of this process.
    pub fn boot_id(&self) -> String {
        let state = self.lock();
        state
            .boots
            .get(&state.current)
            .map(|b| b.meta.id.clone())
            .unwrap_or_default()
    }

    /// The limits it was opened with.
    pub fn limits(&self) -> OutboxLimits {
        self.limits
    }

    /// Waits until something was appended or acked since the last wake-up.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn persist_boot(&self, state: &State, ordinal: u64) -> Result<(), OutboxError> {
        if let Some(boot) = state.boots.get(&ordinal) {
            self.boots.put(
                &boot_key(ordinal),
                &serde_json::to_vec(&boot.meta).unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    fn put_entry(&self, state: &mut State, ordinal: u64, entry: &Entry) -> Result<(), OutboxError> {
        let value = entry.encode();
        let seq = entry.seq();
        self.entries.put(&entry_key(ordinal, seq), &value)?;
        let size = KEY_BYTES + value.len() as u64;
        let previous = state.index.insert(
            (ordinal, seq),
            IndexEntry {
                kind: entry.kind(),
                bytes: size,
                observed_ms: entry.observed_ms(),
            },
        );
        if entry.kind() == EntryKind::Gap {
            state.gap_keys.insert((ordinal, seq));
        }
        state.bytes = state.bytes + size - previous.map_or(0, |p| p.bytes);
        if let Some(boot) = state.boots.get_mut(&ordinal) {
            boot.last_seq = boot.last_seq.max(seq);
        }
        state.written += 1;
        Ok(())
    }

    /// Removes `key` from the in-memory index (not from storage).
    fn unindex(state: &mut State, key: (u64, u64)) {
        if let Some(e) = state.index.remove(&key) {
            state.bytes -= e.bytes;
            if e.kind == EntryKind::Gap {
                state.gap_keys.remove(&key);
            }
        }
    }

    /// Stores a measurement under the next seq of this boot and returns that seq. At the cap,
    /// drops the oldest entries: an entry the publisher has not read is booked in a gap record
    /// (the open one when the range continues it), one it has read becomes an unbooked drop (see
    /// the module docs).
    ///
    /// # Errors
    /// The entry cannot fit one MQTT packet (it is not stored and takes no seq), or storage
    /// failed.
    pub fn append(&self, measurement: Measurement) -> Result<u64, OutboxError> {
        let what = match measurement {
            Measurement::Result(_) => "result",
            Measurement::Capacity(_) => "capacity sample",
        };
        let mut entry = Entry::from(measurement);
        let mut state = self.lock();
        let seq = state.next_seq;
        entry.set_seq(seq);
        let size = entry.encode().len();
        if size > self.limits.max_entry_bytes {
            return Err(OutboxError::TooLarge {
                what,
                bytes: size,
                limit: self.limits.max_entry_bytes,
            });
        }
        let current = state.current;
        if let Err(e) = self.put_entry(&mut state, current, &entry) {
            // The seq is taken all the same: the collector's watermark must wait for the gap
            // record that books it, instead of running past a result that was never stored.
            Self::store_failed(&mut state, "append", &e);
            state.disk.lost.insert(seq, entry.observed_ms());
            state.disk.health.lost_entries += 1;
            state.next_seq += 1;
            drop(state);
            // The publisher sends what was lost ahead, from memory.
            self.changed.notify_one();
            return Err(OutboxError::StoreFailing { seq });
        }
        if let Entry::Result(r) = &entry {
            let previous = match state.last_state.get_mut(&r.probe) {
                Some(s) => Some(std::mem::replace(s, r.state)),
                None => {
                    state.last_state.insert(r.probe.clone(), r.state);
                    None
                }
            };
            if previous.unwrap_or(ProbeState::Up) != r.state {
                state.urgent_upto = seq;
            }
        }
        state.next_seq += 1;
        if let Err(e) = self.enforce_caps(&mut state) {
            // The entry is in; the caps are enforced again on the next append, and recovery
            // reconciles the index with what the store holds.
            Self::store_failed(&mut state, "enforce caps", &e);
        }
        drop(state);
        self.changed.notify_one();
        Ok(seq)
    }

    fn over_cap(&self, state: &State) -> bool {
        state.index.len() > self.limits.max_entries || state.bytes > self.limits.max_bytes
    }

    /// Drops oldest entries until the outbox is within its caps. Gap records are never dropped,
    /// except the open one (never published): it is carried forward under a fresh seq and its
    /// old seq joins the dropped range, so one long overflow stays one gap record. A dropped
    /// entry the publisher has read becomes an unbooked drop; any other seq (the carried
    /// record's old one included) is booked at once, after the unbooked drops of its boot, which
    /// all come before it.
    fn enforce_caps(&self, state: &mut State) -> Result<(), OutboxError> {
        let mut touched = Vec::new();
        let mut dropped = 0;
        let mut carried = false;
        while self.over_cap(state) {
            let current = state.current;
            let open_seq = state.open_gap.as_ref().map(|g| g.seq);
            let victim = state
                .index
                .iter()
                .find(|((o, s), e)| {
                    e.kind != EntryKind::Gap || (*o == current && Some(*s) == open_seq)
                })
                .map(|(k, e)| (*k, *e));
            let Some(((ordinal, seq), entry)) = victim else {
                // Only gap records are left; they are the record of the loss and stay.
                break;
            };
            let is_open_gap = entry.kind == EntryKind::Gap;
            if is_open_gap && carried {
                // The caps are too small to hold even the carried record; keep it.
                break;
            }
            self.entries.delete(&entry_key(ordinal, seq))?;
            Self::unindex(state, (ordinal, seq));
            let mut was_read = false;
            if let Some(boot) = state.boots.get_mut(&ordinal) {
                boot.meta.dropped_upto = boot.meta.dropped_upto.max(seq);
                was_read = seq <= boot.read_upto;
            }
            if !touched.contains(&ordinal) {
                touched.push(ordinal);
            }
            if is_open_gap {
                carried = true;
                if let Some(mut gap) = state.open_gap.take() {
                    let last_ms = gap.to_ms.saturating_sub(1);
                    gap.seq = state.next_seq;
                    state.next_seq += 1;
                    self.put_entry(state, current, &Entry::Gap(gap.clone()))?;
                    state.open_gap = Some(gap);
                    // Its old seq was never read either: book what was dropped before it.
                    self.book_unbooked(state, ordinal)?;
                    self.record_drop(state, ordinal, seq, last_ms)?;
                }
                continue;
            }
            state.dropped += 1;
            dropped += 1;
            if was_read {
                if let Some(boot) = state.boots.get_mut(&ordinal) {
                    let to_ms = entry.observed_ms + 1;
                    match boot.meta.unbooked.last_mut() {
                        Some(run) if run.to_seq + 1 == seq => {
                            run.to_seq = seq;
                            run.to_ms = run.to_ms.max(to_ms);
                        }
                        _ => boot.meta.unbooked.push(UnbookedRun {
                            from_seq: seq,
                            to_seq: seq,
                            from_ms: entry.observed_ms,
                            to_ms,
                        }),
                    }
                }
                // Right after the delete, as a gap record would be: the run is the only trace.
                self.persist_boot(state, ordinal)?;
            } else {
                self.book_unbooked(state, ordinal)?;
                self.record_drop(state, ordinal, seq, entry.observed_ms)?;
            }
        }
        if dropped > 0 {
            events::OutboxDropped { count: dropped }.emit();
        }
        for ordinal in touched {
            self.persist_boot(state, ordinal)?;
        }
        Ok(())
    }

    /// Books every unbooked drop of boot `ordinal` in gap records (the caller persists the
    /// boot's meta).
    fn book_unbooked(&self, state: &mut State, ordinal: u64) -> Result<(), OutboxError> {
        let runs = match state.boots.get_mut(&ordinal) {
            Some(boot) => std::mem::take(&mut boot.meta.unbooked),
            None => return Ok(()),
        };
        for run in runs {
            self.record_range(
                state,
                ordinal,
                (run.from_seq, run.to_seq),
                (run.from_ms, run.to_ms),
            )?;
        }
        Ok(())
    }

    /// Books dropped entry `seq` of boot `ordinal`, observed at `observed_ms`.
    fn record_drop(
        &self,
        state: &mut State,
        ordinal: u64,
        seq: u64,
        observed_ms: u64,
    ) -> Result<(), OutboxError> {
        self.record_range(state, ordinal, (seq, seq), (observed_ms, observed_ms + 1))
    }

    /// Books the dropped seqs `from..=to` of boot `ordinal`, observed over `[from_ms, to_ms)`:
    /// extends the open gap record when the range continues it, else appends a new gap record
    /// under the current boot.
    fn record_range(
        &self,
        state: &mut State,
        ordinal: u64,
        (from_seq, to_seq): (u64, u64),
        (from_ms, to_ms): (u64, u64),
    ) -> Result<(), OutboxError> {
        let boot_id = match state.boots.get(&ordinal) {
            Some(b) => b.meta.id.clone(),
            None => return Ok(()),
        };
        let current = state.current;
        if let Some(mut gap) = state.open_gap.take() {
            if gap.boot == boot_id && gap.to_seq + 1 == from_seq {
                gap.to_seq = to_seq;
                gap.to_ms = gap.to_ms.max(to_ms);
                self.put_entry(state, current, &Entry::Gap(gap.clone()))?;
                state.open_gap = Some(gap);
                return Ok(());
            }
        }
        let gap = GapRecord {
            seq: state.next_seq,
            boot: boot_id,
            from_seq,
            to_seq,
            from_ms,
            to_ms,
            reason: GapReason::OutboxFull,
        };
        state.next_seq += 1;
        state.gap_records += 1;
        self.put_entry(state, current, &Entry::Gap(gap.clone()))?;
        events::OutboxOverflow {
            boot: &gap.boot,
            from_seq,
            gap_seq: gap.seq,
        }
        .emit();
        state.open_gap = Some(gap);
        Ok(())
    }

    fn decode_rows(rows: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Entry> {
        let mut out = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            match serde_json::from_slice::<Entry>(&value) {
                Ok(entry) => out.push(entry),
                Err(e) => events::StorageFailed {
                    op: "decode outbox entry",
                    error: &format!("key {key:?}: {e}"),
                }
                .emit(),
            }
        }
        out
    }

    /// Reading the open gap record freezes it: later drops start a new record, because this one
    /// may now be on its way to the collector.
    fn freeze_if_read(state: &mut State, ordinal: u64, out: &[Entry]) {
        if ordinal == state.current {
            let read_gap = state.open_gap.as_ref().is_some_and(|g| {
                out.iter()
                    .any(|e| matches!(e, Entry::Gap(r) if r.seq == g.seq))
            });
            if read_gap {
                state.open_gap = None;
            }
        }
    }

    /// Up to `limit` entries of boot `ordinal` with `after < seq <= upto`, in seq order: what the
    /// publisher publishes next. Reading the open gap record freezes it. A read that starts at
    /// or below the boot's read frontier (or with nothing stored in between) moves the frontier
    /// to the last entry returned: from then on, dropping one of these entries at the cap waits
    /// for the watermark before it is booked.
    ///
    /// # Errors
    /// Storage failure.
    pub fn read(
        &self,
        ordinal: u64,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, OutboxError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        let start = entry_key(ordinal, after + 1);
        let rows = match upto.checked_add(1) {
            Some(end) => self
                .entries
                .range(&start, Some(&entry_key(ordinal, end)), limit)?,
            None => {
                self.entries
                    .range(&start, Some(&KeyBuf::new().u64(ordinal + 1).build()), limit)?
            }
        };
        let out = Self::decode_rows(rows);
        Self::freeze_if_read(&mut state, ordinal, &out);
        if let (Some(last), Some(boot)) = (out.last().map(Entry::seq), state.boots.get(&ordinal)) {
            let frontier = boot.read_upto.max(boot.meta.watermark);
            let continues = after <= frontier
                || state
                    .index
                    .range((ordinal, frontier + 1)..=(ordinal, after))
                    .next()
                    .is_none();
            if continues {
                if let Some(boot) = state.boots.get_mut(&ordinal) {
                    boot.read_upto = frontier.max(last);
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` gap records of boot `ordinal` with `after < seq <= upto`, in seq order, for
    /// the publisher to send ahead of everything else. Reading the open gap record freezes it;
    /// the read frontier does not move.
    ///
    /// # Errors
    /// Storage failure.
    pub fn read_gaps(
        &self,
        ordinal: u64,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, OutboxError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        let seqs: Vec<u64> = state
            .gap_keys
            .range((ordinal, after + 1)..=(ordinal, upto))
            .take(limit)
            .map(|(_, s)| *s)
            .collect();
        let mut rows = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let key = entry_key(ordinal, seq);
            if let Some(value) = self.entries.get(&key)? {
                rows.push((key, value));
            }
        }
        let out = Self::decode_rows(rows);
        Self::freeze_if_read(&mut state, ordinal, &out);
        Ok(out)
    }

    /// The publisher goes back to the watermark of boot `ordinal` to re-send from there: the
    /// read frontier goes back too, and the boot's unbooked drops, which cannot be re-sent, are
    /// booked in gap records. Returns how many seqs were booked.
    ///
    /// # Errors
    /// Storage failure.
    pub fn rewind(&self, ordinal: u64) -> Result<u64, OutboxError> {
        let mut state = self.lock();
        let Some(boot) = state.boots.get_mut(&ordinal) else {
            return Ok(0);
        };
        boot.read_upto = 0;
        let booked: u64 = boot.meta.unbooked.iter().map(UnbookedRun::count).sum();
        if booked > 0 {
            self.book_unbooked(&mut state, ordinal)?;
            self.persist_boot(&state, ordinal)?;
            drop(state);
            self.changed.notify_one();
        }
        Ok(booked)
    }

    /// Whether boot `ordinal` holds a state-change result (see the module docs) above `after`:
    /// the publisher sends what is pending at once instead of lingering.
    pub fn urgent_after(&self, ordinal: u64, after: u64) -> bool {
        let state = self.lock();
        ordinal == state.current && state.urgent_upto > after
    }

    /// How many entries of boot `ordinal` have `after < seq <= upto`, counting at most `cap`.
    pub fn count(&self, ordinal: u64, after: u64, upto: u64, cap: usize) -> usize {
        if upto <= after {
            return 0;
        }
        let state = self.lock();
        state
            .index
            .range((ordinal, after + 1)..=(ordinal, upto))
            .take(cap)
            .count()
    }

    /// Makes every entry written so far durable (one flush per call, skipped when nothing was
    /// written since the last one). Call it after reading a batch and before publishing it.
    ///
    /// # Errors
    /// The flush failed: nothing read since the last successful flush may be published.
    pub async fn ensure_durable(&self) -> Result<(), OutboxError> {
        let target = {
            let state = self.lock();
            if state.durable >= state.written {
                return Ok(());
            }
            state.written
        };
        let storage = self.storage.clone();
        let flushed = tokio::task::spawn_blocking(move || storage.flush())
            .await
            .map_err(|e| OutboxError::FlushTask(e.to_string()))?;
        let mut state = self.lock();
        if let Err(e) = flushed {
            Self::store_failed(&mut state, "flush", &e);
            return Err(e.into());
        }
        if state.disk.health.failing {
            // A flush that works does not end the episode: the lost seqs are not booked yet.
            return Err(OutboxError::StoreFailing { seq: 0 });
        }
        state.durable = state.durable.max(target);
        Ok(())
    }

    /// Counts a failed write; the first of an episode opens it and is logged.
    fn store_failed(state: &mut State, op: &'static str, error: &dyn std::fmt::Display) {
        let health = &mut state.disk.health;
        health.failed_writes += 1;
        if !health.failing {
            health.failing = true;
            health.failing_since_ms = Some(now_ms());
            health.error = Some(error.to_string());
            health.episodes += 1;
            events::OutboxStoreFailing { op, error }.emit();
        } else {
            events::COUNTERS.storage_errors.add(1);
        }
    }

    /// While the store fails: gap records for what it lost so far, made in memory (at most
    /// every [`MEMORY_GAP_EVERY`]) for the publisher to send ahead of everything, so that the
    /// collector books the loss while the disk is still full. Each takes a seq of this boot and
    /// is written to the store under it once the store works ([`Outbox::recover`]). Returns
    /// this boot's id and the new records, or `None`.
    pub fn take_memory_gaps(&self) -> Option<(String, Vec<Entry>)> {
        let mut state = self.lock();
        if !state.disk.health.failing {
            return None;
        }
        let current = state.current;
        let boot_id = state.boots.get(&current)?.meta.id.clone();
        let due = !state.disk.lost.is_empty()
            && state
                .disk
                .last_sent
                .is_none_or(|t| t.elapsed() >= MEMORY_GAP_EVERY);
        if !due {
            // Offered again until their publish succeeded.
            let again: Vec<Entry> = state
                .disk
                .unpublished
                .iter()
                .cloned()
                .map(Entry::Gap)
                .collect();
            return (!again.is_empty()).then_some((boot_id, again));
        }
        state.disk.last_sent = Some(std::time::Instant::now());
        let runs = lost_runs(&state.disk.lost);
        let lost = std::mem::take(&mut state.disk.lost);
        if let Some(boot) = state.boots.get_mut(&current) {
            boot.meta.lost.extend(lost.keys());
        }
        let mut out = Vec::with_capacity(runs.len());
        for (from_seq, to_seq, from_ms, to_ms) in runs {
            let gap = GapRecord {
                seq: state.next_seq,
                boot: boot_id.clone(),
                from_seq,
                to_seq,
                from_ms,
                to_ms,
                reason: GapReason::StoreFailed,
            };
            state.next_seq += 1;
            state.gap_records += 1;
            state.disk.sent.push(gap.clone());
            state.disk.unpublished.push(gap);
        }
        out.extend(state.disk.unpublished.iter().cloned().map(Entry::Gap));
        Some((boot_id, out))
    }

    /// The gap records [`Outbox::take_memory_gaps`] returned were published.
    pub fn memory_gaps_published(&self) {
        self.lock().disk.unpublished.clear();
    }

    /// Whether a store-failing episode is open.
    pub fn is_store_failing(&self) -> bool {
        self.lock().disk.health.failing
    }

    /// Tries to end a store-failing episode (see "Store failures" in the module docs): reopens
    /// the store, drops from the index what it no longer holds (booking those entries of this
    /// boot as lost), removes what acks deleted but the store still holds, rewrites the boots'
    /// metas and the open gap record, books every lost seq in `store_failed` gap records and
    /// flushes. Returns true when the store works again. Blocking: call it off the runtime.
    pub fn recover(&self) -> bool {
        if !self.is_store_failing() {
            return true;
        }
        // Outside the state lock: the reopen may wait for sled's lock, and everyone else's
        // calls only fail meanwhile (the store is failing anyway).
        if let Err(e) = self.storage.reopen() {
            let mut state = self.lock();
            state.disk.health.failed_writes += 1;
            state.disk.health.error = Some(e.to_string());
            return false;
        }
        let mut state = self.lock();
        match self.resync_and_book(&mut state) {
            Ok(booked) => {
                let health = &mut state.disk.health;
                health.failing = false;
                let since = health.failing_since_ms.take().unwrap_or_else(now_ms);
                health.error = None;
                let lost = std::mem::take(&mut state.disk.lost);
                state.disk.sent.clear();
                state.disk.unpublished.clear();
                state.disk.last_sent = None;
                state.durable = state.written;
                events::OutboxStoreRecovered {
                    failed_ms: now_ms().saturating_sub(since),
                    lost_entries: lost.len() as u64,
                    gap_records: booked,
                }
                .emit();
                drop(state);
                self.changed.notify_one();
                true
            }
            Err(e) => {
                state.disk.health.failed_writes += 1;
                state.disk.health.error = Some(e.to_string());
                false
            }
        }
    }

    /// The part of [`Outbox::recover`] after the reopen; returns how many gap records it wrote.
    fn resync_and_book(&self, state: &mut State) -> Result<u64, OutboxError> {
        let mut stored = BTreeSet::new();
        for (key, _) in self.entries.range(&[], None, usize::MAX)? {
            if let Some(position) = read_u64(&key, 0).zip(read_u64(&key, 8)) {
                stored.insert(position);
            }
        }
        // Accepted by the engine, never made durable: gone. Entries of this boot are booked;
        // the open gap record is written again below from memory.
        let open_gap_key = state.open_gap.as_ref().map(|g| (state.current, g.seq));
        let sent: BTreeSet<(u64, u64)> = state
            .disk
            .sent
            .iter()
            .map(|g| (state.current, g.seq))
            .collect();
        let missing: Vec<((u64, u64), IndexEntry)> = state
            .index
            .iter()
            .filter(|(k, _)| !stored.contains(k) && Some(**k) != open_gap_key && !sent.contains(k))
            .map(|(k, e)| (*k, *e))
            .collect();
        for ((ordinal, seq), e) in missing {
            Self::unindex(state, (ordinal, seq));
            if ordinal == state.current {
                state.disk.lost.insert(seq, e.observed_ms);
                state.disk.health.lost_entries += 1;
            }
        }
        // Deleted by an ack (or below a watermark whose trim failed), deletion never made
        // durable: delete again.
        for (ordinal, seq) in stored {
            let acked = state
                .boots
                .get(&ordinal)
                .is_some_and(|b| seq <= b.meta.watermark);
            if acked || !state.index.contains_key(&(ordinal, seq)) {
                self.entries.delete(&entry_key(ordinal, seq))?;
                Self::unindex(state, (ordinal, seq));
            }
        }
        let ordinals: Vec<u64> = state.boots.keys().copied().collect();
        for ordinal in ordinals {
            self.persist_boot(state, ordinal)?;
        }
        if let Some(gap) = state.open_gap.clone() {
            let current = state.current;
            self.put_entry(state, current, &Entry::Gap(gap))?;
        }
        // What was published from memory is stored under the seqs it went with.
        let current = state.current;
        for gap in state.disk.sent.clone() {
            self.put_entry(state, current, &Entry::Gap(gap))?;
        }
        // One gap record per run of consecutive lost seqs. Records written by an earlier,
        // failed attempt were found missing above and are among the lost seqs now.
        let runs = lost_runs(&state.disk.lost);
        let boot_id = state
            .boots
            .get(&current)
            .map(|b| b.meta.id.clone())
            .unwrap_or_default();
        // The lost seqs are holes above the floor: listed so the integrity check knows them.
        if let Some(boot) = state.boots.get_mut(&current) {
            let known: BTreeSet<u64> = boot.meta.lost.iter().copied().collect();
            boot.meta
                .lost
                .extend(state.disk.lost.keys().filter(|s| !known.contains(s)));
        }
        self.persist_boot(state, current)?;
        let mut booked = 0;
        for (from_seq, to_seq, from_ms, to_ms) in runs {
            let gap = GapRecord {
                seq: state.next_seq,
                boot: boot_id.clone(),
                from_seq,
                to_seq,
                from_ms,
                to_ms,
                reason: GapReason::StoreFailed,
            };
            // The seq is taken before the write: if it fails, it is lost like the rest.
            state.next_seq += 1;
            if let Err(e) = self.put_entry(state, current, &Entry::Gap(gap.clone())) {
                state.disk.lost.insert(gap.seq, from_ms);
                return Err(e);
            }
            state.gap_records += 1;
            booked += 1;
        }
        self.storage.flush()?;
        Ok(booked)
    }

    /// Flushes unconditionally (shutdown).
    ///
    /// # Errors
    /// The flush failed.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.flush())
            .await
            .map_err(|e| OutboxError::FlushTask(e.to_string()))??;
        Ok(())
    }

    /// Applies the collector's watermark for `boot`: deletes its entries up to `seq`, and settles
    /// its unbooked drops up to `seq` as delivered (the collector stored them). Acks never move a
    /// watermark back.
    ///
    /// # Errors
    /// Storage failure.
    pub fn apply_ack(&self, boot: &str, seq: u64) -> Result<AckOutcome, OutboxError> {
        let mut state = self.lock();
        let Some(ordinal) = state
            .boots
            .iter()
            .find(|(_, b)| b.meta.id == boot)
            .map(|(o, _)| *o)
        else {
            return Ok(AckOutcome::UnknownBoot);
        };
        let Some(boot_state) = state.boots.get_mut(&ordinal) else {
            return Ok(AckOutcome::UnknownBoot);
        };
        // An ack past what was ever stored would pre-acknowledge future seqs; clamp it.
        let seq = seq.min(boot_state.last_seq);
        if seq <= boot_state.meta.watermark {
            return Ok(AckOutcome::Stale);
        }
        boot_state.meta.watermark = seq;
        boot_state.meta.lost.retain(|lost| *lost > seq);
        let mut delivered = 0;
        boot_state.meta.unbooked.retain_mut(|run| {
            if run.to_seq <= seq {
                delivered += run.count();
                false
            } else {
                if run.from_seq <= seq {
                    delivered += seq - run.from_seq + 1;
                    run.from_seq = seq + 1;
                }
                true
            }
        });
        let settled_all = boot_state.meta.unbooked.is_empty();
        state.dropped_delivered += delivered;
        let removed = match self
            .entries
            .delete_range(&entry_key(ordinal, 0), Some(&entry_key(ordinal, seq + 1)))
        {
            Ok(removed) => removed,
            Err(e) => {
                // The watermark moved in memory; recovery trims below it (`resync_and_book`).
                Self::store_failed(&mut state, "trim", &e);
                return Err(e.into());
            }
        };
        let gone: Vec<(u64, u64)> = state
            .index
            .range((ordinal, 0)..=(ordinal, seq))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            Self::unindex(&mut state, k);
        }
        let is_empty = state
            .index
            .range((ordinal, 0)..=(ordinal, u64::MAX))
            .next()
            .is_none();
        if ordinal != state.current && is_empty && settled_all {
            state.boots.remove(&ordinal);
            self.boots.delete(&boot_key(ordinal))?;
        } else {
            self.persist_boot(&state, ordinal)?;
        }
        drop(state);
        self.changed.notify_one();
        Ok(AckOutcome::Trimmed { ordinal, removed })
    }

    /// Every boot with entries (and the current one), oldest first.
    pub fn boots(&self) -> Vec<BootView> {
        let state = self.lock();
        state
            .boots
            .iter()
            .map(|(ordinal, b)| BootView {
                ordinal: *ordinal,
                id: b.meta.id.clone(),
                watermark: b.meta.watermark,
                last_seq: b.last_seq,
                is_current: *ordinal == state.current,
            })
            .collect()
    }

    /// Depth, bytes, counters and boots.
    pub fn stats(&self) -> OutboxStats {
        let boots = self.boots();
        let state = self.lock();
        OutboxStats {
            entries: state.index.len(),
            bytes: state.bytes,
            dropped: state.dropped,
            dropped_delivered: state.dropped_delivered,
            gap_records: state.gap_records,
            boots,
            store: state.disk.health.clone(),
        }
    }

    /// Scans storage and checks the invariants: every value decodes, keys match their entry's
    /// seq and a known boot, no entry sits at or below its boot's watermark, non-gap entries lie
    /// above the last dropped seq, seqs above the floor are contiguous, unbooked runs are
    /// ordered, above the watermark, dropped and empty, and the in-memory index agrees with
    /// storage.
    ///
    /// # Errors
    /// [`OutboxError::Integrity`] listing every problem, or a storage failure.
    pub fn check_integrity(&self) -> Result<usize, OutboxError> {
        let state = self.lock();
        let mut problems = Vec::new();
        let mut per_boot: BTreeMap<u64, Vec<(u64, EntryKind)>> = BTreeMap::new();
        let mut bytes = 0;
        let rows = self.entries.range(&[], None, usize::MAX)?;
        for (key, value) in &rows {
            bytes += KEY_BYTES + value.len() as u64;
            let Some((ordinal, seq)) = read_u64(key, 0).zip(read_u64(key, 8)) else {
                problems.push(format!("malformed key {key:?}"));
                continue;
            };
            match serde_json::from_slice::<Entry>(value) {
                Ok(entry) if entry.seq() == seq => {
                    per_boot
                        .entry(ordinal)
                        .or_default()
                        .push((seq, entry.kind()));
                }
                Ok(entry) => problems.push(format!(
                    "boot #{ordinal} key seq {seq} holds entry seq {}",
                    entry.seq()
                )),
                Err(e) => problems.push(format!("boot #{ordinal} seq {seq} does not decode: {e}")),
            }
        }
        for (ordinal, seqs) in &per_boot {
            let Some(boot) = state.boots.get(ordinal) else {
                problems.push(format!("entries of unknown boot #{ordinal}"));
                continue;
            };
            let meta = &boot.meta;
            let floor = meta.watermark.max(meta.dropped_upto);
            let mut expected = floor + 1;
            let skip_lost = |mut e: u64| {
                while meta.lost.contains(&e) {
                    e += 1;
                }
                e
            };
            for (seq, kind) in seqs {
                if *seq > floor {
                    expected = skip_lost(expected);
                }
                if *seq <= meta.watermark {
                    problems.push(format!(
                        "boot {} seq {seq} is at or below watermark {}",
                        meta.id, meta.watermark
                    ));
                } else if *seq <= floor {
                    if *kind != EntryKind::Gap {
                        problems.push(format!(
                            "boot {} seq {seq} survived a drop up to {}",
                            meta.id, meta.dropped_upto
                        ));
                    }
                } else if *seq != expected {
                    problems.push(format!(
                        "boot {} seqs jump from {} to {seq}",
                        meta.id,
                        expected - 1
                    ));
                    expected = seq + 1;
                } else {
                    expected += 1;
                }
            }
            if *ordinal == state.current && expected > floor + 1 && expected != state.next_seq {
                problems.push(format!(
                    "current boot ends at seq {} but the next seq is {}",
                    expected - 1,
                    state.next_seq
                ));
            }
        }
        let stored: BTreeSet<(u64, u64)> = per_boot
            .iter()
            .flat_map(|(o, seqs)| seqs.iter().map(move |(s, _)| (*o, *s)))
            .collect();
        for (ordinal, boot) in &state.boots {
            let meta = &boot.meta;
            let mut after = meta.watermark;
            for run in &meta.unbooked {
                if run.from_seq <= after
                    || run.from_seq > run.to_seq
                    || run.to_seq > meta.dropped_upto
                    || run.from_ms >= run.to_ms
                {
                    problems.push(format!(
                        "boot {} unbooked run {}..={} is out of order, at or below {after}, or \
                         above the last dropped seq {}",
                        meta.id, run.from_seq, run.to_seq, meta.dropped_upto
                    ));
                }
                after = after.max(run.to_seq);
                if let Some((_, seq)) = stored
                    .range((*ordinal, run.from_seq)..=(*ordinal, run.to_seq))
                    .next()
                {
                    problems.push(format!(
                        "boot {} seq {seq} is stored but in an unbooked run",
                        meta.id
                    ));
                }
            }
        }
        let gap_keys: BTreeSet<(u64, u64)> = state
            .index
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Gap)
            .map(|(k, _)| *k)
            .collect();
        if gap_keys != state.gap_keys {
            problems.push("the gap record index disagrees with the entry index".to_owned());
        }
        if rows.len() != state.index.len() || bytes != state.bytes {
            problems.push(format!(
                "index holds {} entries / {} bytes, storage {} / {bytes}",
                state.index.len(),
                state.bytes,
                rows.len()
            ));
        }
        if problems.is_empty() {
            Ok(rows.len())
        } else {
            Err(OutboxError::Integrity(problems))
        }
    }
}

/// The writer task: drains measurements from the scheduler and the capacity sampler in batches
/// and appends them. It ends when every sender is gone, which is how shutdown knows that
/// everything measured is in the outbox.
pub async fn run_writer(outbox: Arc<Outbox>, mut measurements: mpsc::Receiver<Measurement>) {
    const DRAIN: usize = 256;
    let mut last_recovery: Option<tokio::time::Instant> = None;
    while let Some(first) = measurements.recv().await {
        // A failing store is retried at most every RECOVER_EVERY, off the runtime (a reopen
        // waits for sled's file lock), while measurements keep arriving.
        if outbox.is_store_failing() && last_recovery.is_none_or(|t| t.elapsed() >= RECOVER_EVERY) {
            last_recovery = Some(tokio::time::Instant::now());
            let o = outbox.clone();
            if tokio::task::spawn_blocking(move || o.recover())
                .await
                .is_err()
            {
                tracing::warn!("Outbox recovery task failed.");
            }
        }
        let mut batch = vec![first];
        while batch.len() < DRAIN {
            match measurements.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        for m in batch {
            match outbox.append(m) {
                Ok(_) => {}
                Err(OutboxError::TooLarge { what, bytes, limit }) => {
                    events::MeasurementRejected {
                        what: if what == "result" {
                            "result"
                        } else {
                            "capacity"
                        },
                        bytes,
                        limit,
                    }
                    .emit();
                }
                // Counted, booked and logged once per episode by the outbox.
                Err(OutboxError::StoreFailing { .. }) => {}
                Err(e) => events::StorageFailed {
                    op: "append",
                    error: &e,
                }
                .emit(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchstand_shared::storage::{MemoryStorage, SledStorage};
    use watchstand_shared::wire::v1::ProbeState;

    const T0: u64 = 1_800_000_000_000;

    fn result(i: u64) -> Measurement {
        Measurement::Result(ProbeResult {
            seq: 0,
            probe: "web".into(),
            kind: "http".into(),
            target: "http://127.0.0.1/".into(),
            observed_ms: T0 + i * 1_000,
            interval_ms: 1_000,
            state: ProbeState::Up,
            latency_us: 100,
            error: None,
            metrics: Vec::new(),
        })
    }

    fn limits(max_entries: usize) -> OutboxLimits {
        OutboxLimits {
            max_entries,
            max_bytes: u64::MAX,
            max_entry_bytes: 64 * 1024,
        }
    }

    fn open(storage: &MemoryStorage, max_entries: usize) -> Outbox {
        Outbox::open(Arc::new(storage.clone()), limits(max_entries)).unwrap()
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(Entry::seq).collect()
    }

    fn gaps(outbox: &Outbox) -> Vec<GapRecord> {
        let current = outbox.boots().into_iter().find(|b| b.is_current).unwrap();
        outbox
            .read(current.ordinal, 0, u64::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Entry::Gap(g) => Some(g),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn append_assigns_seqs_from_one_and_ack_trims_only_up_to_the_watermark() {
        let storage = MemoryStorage::new();
        let outbox = open(&storage, 100);
        let boot = outbox.boot_id();
        assert_eq!(boot.len(), 16);
        for i in 1..=5 {
            assert_eq!(outbox.append(result(i)).unwrap(), i);
        }
        let ordinal = outbox.boots()[0].ordinal;
        assert_eq!(
            outbox.apply_ack(&boot, 3).unwrap(),
            AckOutcome::Trimmed {
                ordinal,
                removed: 3
            }
        );
        let left = outbox.read(ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(seqs(&left), vec![4, 5]);
        assert_eq!(outbox.apply_ack(&boot, 2).unwrap(), AckOutcome::Stale);
        assert_eq!(
            outbox.apply_ack("other", 9).unwrap(),
            AckOutcome::UnknownBoot
        );
        assert_eq!(outbox.stats().entries, 2);
        outbox.check_integrity().unwrap();
    }

    #[test]
    fn reopening_keeps_unacked_entries_under_their_old_boot_and_starts_a_new_boot() {
        let storage = MemoryStorage::new();
        let old_boot = {
            let outbox = open(&storage, 100);
            for i in 1..=5 {
                outbox.append(result(i)).unwrap();
            }
            outbox.apply_ack(&outbox.boot_id(), 2).unwrap();
            outbox.boot_id()
        };
        let outbox = open(&storage, 100);
        let boots = outbox.boots();
        assert_eq!(boots.len(), 2);
        assert_eq!(boots[0].id, old_boot);
        assert_eq!(boots[0].watermark, 2);
        assert!(!boots[0].is_current);
        assert!(boots[1].is_current);
        assert_ne!(boots[1].id, old_boot);
        let old = outbox.read(boots[0].ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(seqs(&old), vec![3, 4, 5]);
        // The new boot starts at seq 1 again, in its own seq space.
        assert_eq!(outbox.append(result(9)).unwrap(), 1);
        outbox.check_integrity().unwrap();

        // Once the old boot is fully acked it is forgotten.
        outbox.apply_ack(&old_boot, 5).unwrap();
        assert_eq!(outbox.boots().len(), 1);
        let outbox = open(&storage, 100);
        assert_eq!(outbox.boots().len(), 2, "current boot's entry kept");
    }

    #[test]
    fn a_boot_left_with_nothing_is_forgotten_on_reopen() {
        let storage = MemoryStorage::new();
        drop(open(&storage, 100));
        let outbox = open(&storage, 100);
        assert_eq!(outbox.boots().len(), 1);
    }

    #[test]
    fn cap_overflow_drops_the_oldest_and_books_them_in_exactly_one_gap_record() {
        let storage = MemoryStorage::new();
        let outbox = open(&storage, 10);
        for i in 1..=30 {
            outbox.append(result(i)).unwrap();
        }
        let stats = outbox.stats();
        assert_eq!(stats.entries, 10);
        assert_eq!(stats.gap_records, 1);
        let gaps = gaps(&outbox);
        assert_eq!(gaps.len(), 1);
        let gap = &gaps[0];
        assert_eq!(gap.boot, outbox.boot_id());
        // Results took seqs 1..=11, the gap record 12, results 13..; when the drop front
        // reached the still unpublished gap record it was carried forward to seq 23 and its old
        // seq joined the range, so the whole loss is one record for 1..=22.
        assert_eq!(gap.seq, 23);
        assert_eq!((gap.from_seq, gap.to_seq), (1, 22));
        assert_eq!(gap.from_ms, T0 + 1_000);
        assert_eq!(gap.to_ms, T0 + 21_000 + 1);
        let current = outbox.boots()[0].ordinal;
        let left = seqs(&outbox.read(current, 0, u64::MAX, 100).unwrap());
        assert_eq!(left, (23..=32).collect::<Vec<_>>());
        assert_eq!(stats.dropped, 21);
        outbox.check_integrity().unwrap();
    }

    #[test]
    fn successive_drops_extend_one_gap_record_until_it_is_read() {
        let storage = MemoryStorage::new();
        // An old boot with 20 entries, then a new boot that overflows into them.
        let old_boot = {
            let outbox = open(&storage, 1_000);
            for i in 1..=20 {
                outbox.append(result(i)).unwrap();
            }
            outbox.boot_id()
        };
        let outbox = open(&storage, 20);
        for i in 21..=25 {
            outbox.append(result(i)).unwrap();
        }
        let found = gaps(&outbox);
        assert_eq!(found.len(), 1);
        let gap = &found[0];
        assert_eq!(gap.boot, old_boot);
        assert_eq!(gap.seq, 2, "gap record of the current boot");
        assert_eq!((gap.from_seq, gap.to_seq), (1, 6));
        assert_eq!(gap.from_ms, T0 + 1_000);
        assert_eq!(gap.to_ms, T0 + 6_000 + 1);
        assert_eq!(gap.reason, GapReason::OutboxFull);
        // `gaps()` read the record, so it is frozen: the next drop opens a new one.
        outbox.append(result(26)).unwrap();
        let found = gaps(&outbox);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].from_seq, found[0].to_seq), (1, 6));
        assert_eq!(found[1].boot, old_boot);
        assert_eq!(found[1].from_seq, 7);
        outbox.check_integrity().unwrap();
    }

    #[test]
    fn the_byte_cap_drops_oldest_entries_too() {
        let storage = MemoryStorage::new();
        let one = Entry::from(result(1)).encode().len() as u64 + KEY_BYTES;
        let outbox = Outbox::open(
            Arc::new(storage.clone()),
            OutboxLimits {
                max_entries: 1_000,
                max_bytes: one * 5 + one / 2,
                max_entry_bytes: 64 * 1024,
            },
        )
        .unwrap();
        for i in 1..=20 {
            outbox.append(result(i)).unwrap();
        }
        let stats = outbox.stats();
        assert!(stats.bytes <= one * 5 + one / 2, "{stats:?}");
        assert_eq!(stats.gap_records, 1);
        outbox.check_integrity().unwrap();
    }

    #[test]
    fn seqs_are_never_reused_within_a_boot_even_across_drops_and_acks() {
        let storage = MemoryStorage::new();
        let outbox = open(&storage, 5);
        let mut seen = std::collections::HashSet::new();
        for i in 1..=50 {
            let seq = outbox.append(result(i)).unwrap();
            assert!(seen.insert(seq), "seq {seq} reused");
            if i % 7 == 0 {
                let boot = outbox.boots()[0].clone();
                outbox.apply_ack(&boot.id, boot.last_seq - 2).unwrap();
            }
            outbox.check_integrity().unwrap();
        }
        for g in gaps(&outbox) {
            assert!(seen.insert(g.seq), "gap seq {} reused", g.seq);
        }
    }

    #[test]
    fn an_entry_too_large_for_one_packet_is_refused_without_taking_a_seq() {
        let storage = MemoryStorage::new();
        let outbox = Outbox::open(
            Arc::new(storage),
            OutboxLimits {
                max_entries: 10,
                max_bytes: u64::MAX,
                max_entry_bytes: 100,
            },
        )
        .unwrap();
        let err = outbox.append(result(1)).unwrap_err();
        assert!(
            matches!(err, OutboxError::TooLarge { limit: 100, .. }),
            "{err}"
        );
        assert_eq!(outbox.stats().entries, 0);
    }

    #[test]
    fn undecodable_entries_are_deleted_and_booked_in_a_gap_record_on_open() {
        let storage = MemoryStorage::new();
        let boot = {
            let outbox = open(&storage, 100);
            for i in 1..=3 {
                outbox.append(result(i)).unwrap();
            }
            outbox.boot_id()
        };
        let tree = storage.tree(ENTRIES_TREE).unwrap();
        tree.put(&entry_key(1, 2), b"{not json").unwrap();
        let outbox = open(&storage, 100);
        let found = gaps(&outbox);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].boot.as_str(), found[0].from_seq, found[0].to_seq),
            (boot.as_str(), 2, 2)
        );
        let old = outbox.read(1, 0, u64::MAX, 10).unwrap();
        assert_eq!(seqs(&old), vec![1, 3]);
        outbox.check_integrity().unwrap();
    }

    #[test]
    fn the_integrity_check_reports_a_hole_above_the_watermark() {
        let storage = MemoryStorage::new();
        let outbox = open(&storage, 100);
        for i in 1..=4 {
            outbox.append(result(i)).unwrap();
        }
        let ordinal = outbox.boots()[0].ordinal;
        // Bypass the outbox: storage loses seq 2.
        outbox.entries.delete(&entry_key(ordinal, 2)).unwrap();
        let err = outbox.check_integrity().unwrap_err().to_string();
        assert!(err.contains("seqs jump from 1 to 3"), "{err}");
        assert!(err.contains("index holds 4 entries"), "{err}");
    }

    #[test]
    fn a_dropped_entry_the_publisher_read_waits_for_the_ack_instead_of_a_gap_record() {
        let storage = MemoryStorage::new();
        let outbox = open(&storage, 5);
        for i in 1..=5 {
            outbox.append(result(i)).unwrap();
        }
        let ordinal = outbox.boots()[0].ordinal;
        assert_eq!(
            seqs(&outbox.read(ordinal, 0, u64::MAX, 2).unwrap()),
            vec![1, 2]
        );
        // Seqs 1 and 2 were read: dropping them books nothing yet.
        outbox.append(result(6)).unwrap();
        outbox.append(result(7)).unwrap();
        let stats = outbox.stats();
        assert_eq!((stats.dropped, stats.gap_records), (2, 0), "{stats:?}");
        outbox.check_integrity().unwrap();
        // The collector had them: the ack settles them as delivered.
        outbox.apply_ack(&outbox.boot_id(), 2).unwrap();
        let stats = outbox.stats();
        assert_eq!((stats.dropped_delivered, stats.gap_records), (2, 0));
        assert_eq!(outbox.rewind(ordinal).unwrap(), 0, "nothing left to book");
        outbox.check_integrity().unwrap();

        // An unbooked run over a stored entry is reported.
        outbox.read(ordinal, 2, u64::MAX, 1).unwrap();
        outbox.append(result(8)).unwrap();
        outbox.lock().boots.get_mut(&ordinal).unwrap().meta.unbooked[0].to_seq = 4;
        let err = outbox.check_integrity().unwrap_err().to_string();
        assert!(
            err.contains("seq 4 is stored but in an unbooked run"),
            "{err}"
        );
        assert!(err.contains("above the last dropped seq 3"), "{err}");
    }

    #[tokio::test]
    async fn sled_outbox_survives_a_reopen_with_unacked_entries() {
        let dir = tempfile::tempdir().unwrap();
        let old_boot = {
            let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
            let outbox = Outbox::open(storage, limits(100)).unwrap();
            for i in 1..=3 {
                outbox.append(result(i)).unwrap();
            }
            outbox.ensure_durable().await.unwrap();
            outbox.boot_id()
        };
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let outbox = Outbox::open(storage, limits(100)).unwrap();
        let boots = outbox.boots();
        assert_eq!(boots[0].id, old_boot);
        assert_eq!(
            seqs(&outbox.read(boots[0].ordinal, 0, u64::MAX, 10).unwrap()),
            vec![1, 2, 3]
        );
        outbox.check_integrity().unwrap();
    }

    #[tokio::test]
    async fn a_full_disk_is_one_episode_whose_lost_entries_are_booked_once_and_it_recovers_by_itself(
    ) {
        let disk = crate::testutil::FullableStorage::default();
        let outbox = Outbox::open(Arc::new(disk.clone()), limits(1_000)).unwrap();
        let ordinal = outbox.boots()[0].ordinal;
        for i in 1..=3 {
            outbox.append(result(i)).unwrap();
        }
        outbox.ensure_durable().await.unwrap();

        disk.set_full(true);
        // Accepted by the engine, never made durable.
        outbox.append(result(4)).unwrap();
        outbox.append(result(5)).unwrap();
        assert!(outbox.ensure_durable().await.is_err());
        assert!(outbox.is_store_failing());
        for i in 6..=10 {
            assert!(matches!(
                outbox.append(result(i)),
                Err(OutboxError::StoreFailing { seq }) if seq == i
            ));
        }
        let store = outbox.stats().store;
        assert_eq!(
            (store.failing, store.episodes, store.lost_entries),
            (true, 1, 5)
        );
        assert!(store.failed_writes >= 6, "{store:?}");
        assert!(!outbox.recover(), "the disk is still full");
        assert!(
            outbox.ensure_durable().await.is_err(),
            "nothing is published meanwhile"
        );

        disk.set_full(false);
        assert!(outbox.recover());
        let store = outbox.stats().store;
        assert_eq!((store.failing, store.episodes), (false, 1));
        assert_eq!(
            store.lost_entries, 7,
            "5 refused + 2 accepted but never durable"
        );
        let entries = outbox.read(ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(seqs(&entries), vec![1, 2, 3, 11]);
        let Entry::Gap(gap) = &entries[3] else {
            panic!("not a gap record: {:?}", entries[3]);
        };
        assert_eq!((gap.from_seq, gap.to_seq), (4, 10));
        assert_eq!((gap.from_ms, gap.to_ms), (T0 + 4_000, T0 + 10_001));
        assert_eq!(gap.reason, GapReason::StoreFailed);
        outbox.check_integrity().unwrap();

        assert_eq!(outbox.append(result(12)).unwrap(), 12);
        outbox.ensure_durable().await.unwrap();
        // What recovery wrote is durable: a restart finds the same.
        let reopened = Outbox::open(Arc::new(disk.clone()), limits(1_000)).unwrap();
        let again = reopened.read(ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(seqs(&again), vec![1, 2, 3, 11, 12]);
        reopened.check_integrity().unwrap();
    }

    #[tokio::test]
    async fn an_ack_whose_deletions_were_lost_with_the_failed_flush_still_trims_after_recovery() {
        let disk = crate::testutil::FullableStorage::default();
        let outbox = Outbox::open(Arc::new(disk.clone()), limits(1_000)).unwrap();
        let ordinal = outbox.boots()[0].ordinal;
        for i in 1..=4 {
            outbox.append(result(i)).unwrap();
        }
        outbox.ensure_durable().await.unwrap();
        disk.set_full(true);
        // Both accepted into memory; the flush that would make them durable fails.
        outbox.apply_ack(&outbox.boot_id(), 2).unwrap();
        outbox.append(result(5)).unwrap();
        assert!(outbox.ensure_durable().await.is_err());
        disk.set_full(false);
        assert!(outbox.recover());
        let entries = outbox.read(ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(seqs(&entries), vec![3, 4, 6], "acked entries stay deleted");
        assert!(matches!(&entries[2], Entry::Gap(g) if (g.from_seq, g.to_seq) == (5, 5)));
        outbox.check_integrity().unwrap();
    }

    #[tokio::test]
    async fn an_ack_that_arrives_while_the_store_is_broken_trims_once_it_recovers() {
        let disk = crate::testutil::FullableStorage::default();
        let outbox = Outbox::open(Arc::new(disk.clone()), limits(1_000)).unwrap();
        let ordinal = outbox.boots()[0].ordinal;
        for i in 1..=4 {
            outbox.append(result(i)).unwrap();
        }
        outbox.ensure_durable().await.unwrap();
        disk.set_full(true);
        outbox.append(result(5)).unwrap();
        assert!(outbox.ensure_durable().await.is_err());
        // The engine is broken now: the trim fails, the watermark moved in memory.
        assert!(outbox.apply_ack(&outbox.boot_id(), 3).is_err());
        assert_eq!(outbox.stats().store.episodes, 1);
        disk.set_full(false);
        assert!(outbox.recover());
        let entries = outbox.read(ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(
            seqs(&entries),
            vec![4, 6],
            "trimmed to the watermark, 5 booked in 6"
        );
        outbox.check_integrity().unwrap();
    }

    #[tokio::test]
    async fn what_a_failing_store_lost_goes_ahead_from_memory_and_is_stored_under_the_same_seq() {
        let disk = crate::testutil::FullableStorage::default();
        let outbox = Outbox::open(Arc::new(disk.clone()), limits(1_000)).unwrap();
        let ordinal = outbox.boots()[0].ordinal;
        outbox.append(result(1)).unwrap();
        outbox.ensure_durable().await.unwrap();
        disk.set_full(true);
        outbox.append(result(2)).unwrap(); // accepted, never durable
        assert!(outbox.ensure_durable().await.is_err());
        for i in 3..=5 {
            assert!(outbox.append(result(i)).is_err());
        }
        let (boot, ahead) = outbox.take_memory_gaps().expect("a gap record from memory");
        assert_eq!(boot, outbox.boot_id());
        assert!(
            matches!(&ahead[..], [Entry::Gap(g)] if (g.seq, g.from_seq, g.to_seq) == (6, 3, 5)),
            "{ahead:?}"
        );
        assert!(outbox.append(result(7)).is_err());
        let (_, again) = outbox
            .take_memory_gaps()
            .expect("offered again until published");
        assert_eq!(again, ahead);
        outbox.memory_gaps_published();
        assert!(
            outbox.take_memory_gaps().is_none(),
            "at most one per MEMORY_GAP_EVERY"
        );

        disk.set_full(false);
        assert!(outbox.recover());
        let entries = outbox.read(ordinal, 0, u64::MAX, 100).unwrap();
        assert_eq!(seqs(&entries), vec![1, 6, 8, 9], "{entries:?}");
        assert_eq!(entries[1], ahead[0], "stored exactly as it was sent");
        let booked: Vec<(u64, u64)> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Gap(g) => Some((g.from_seq, g.to_seq)),
                _ => None,
            })
            .collect();
        // 2 (never durable) and 7 (refused after the record went) each once.
        assert_eq!(booked, vec![(3, 5), (2, 2), (7, 7)]);
        assert_eq!(outbox.stats().store.lost_entries, 5);
        outbox.check_integrity().unwrap();
    }
}
