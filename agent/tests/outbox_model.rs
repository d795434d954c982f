//! Model-based property test of the outbox over both storage engines.
//!
//! Random sequences of actions — append results and capacity samples (a long run overflows the
//! small caps), the publisher reading batches and reading gap records ahead, the collector
//! acking a watermark, the publisher rewinding to re-send, and reopening the store (flush, drop,
//! reopen: the same sled directory, or a clone of the `MemoryStorage` handle) — run against
//! three things at once:
//!
//! 1. an [`Outbox`] over [`SledStorage`],
//! 2. an [`Outbox`] over [`MemoryStorage`],
//! 3. [`Model`], a reference written here from the outbox's documented rules (seqs per boot from
//!    1, drop the oldest non-gap entry at the cap; a dropped entry the publisher has not read is
//!    booked in a gap record, after the boot's unbooked drops; one read is kept as an unbooked
//!    drop, which an ack settles as delivered and a rewind or a reopen books; one record per
//!    overflow episode until it is read, the open record carried forward, acks trim only up to
//!    the watermark, empty boots forgotten).
//!
//! After every step all three must show the same observable state: what each call returned,
//! the stored entries (decoded from the `outbox_entries` tree without side effects), the boot
//! metadata (`outbox_boots`, unbooked drops included), and the stats (entries, bytes, dropped,
//! gap records, dropped-and-delivered, and per boot its watermark and last seq). Both outboxes
//! must pass `check_integrity`. Boot ids are random, so ids are compared by which open made them.
//!
//! Independently of the model, a ledger checks the accounting the issue asks for, from what is
//! observed: non-gap entries stored = appended − acked − dropped; `stats.dropped` moves by
//! exactly the number of non-gap entries that vanished in an append; every seq dropped in a
//! step is either covered by exactly one stored gap record or held unbooked (never both), and
//! only a seq the publisher has read may be held unbooked; an unbooked seq is above its boot's
//! watermark and in no gap record; only an ack settles unbooked seqs, and
//! `stats.dropped_delivered` moves by exactly the number it settled; a rewind or a reopen books
//! every unbooked seq in exactly one gap record; gap records claim only dropped seqs and never
//! overlap; and a step adds no more gap records than it has contiguous runs of newly booked
//! seqs.
//!
//! Acks are realistic: the collector acks only seqs it was sent, i.e. at most the highest seq
//! the publisher has read of that boot (across reopens), plus acks of an unknown boot.
//!
//! 64 cases by default; `PROPTEST_CASES=N` for more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use watchstand_agent::outbox::{AckOutcome, BootMeta, Entry, Measurement, Outbox, OutboxError};
use watchstand_agent::outbox::{OutboxLimits, OutboxStats, UnbookedRun};
use watchstand_shared::storage::key::read_u64;
use watchstand_shared::storage::{MemoryStorage, SledStorage, Storage};
use watchstand_shared::wire::v1::{
    CapacitySample, DiskUsage, GapReason, GapRecord, ProbeResult, ProbeState,
};

/// Tree names from the layout documented in `agent/src/outbox.rs`.
const ENTRIES_TREE: &str = "outbox_entries";
const BOOTS_TREE: &str = "outbox_boots";
/// Keys are two big-endian u64s (ordinal, seq).
const KEY_BYTES: u64 = 16;
const T0: u64 = 1_800_000_000_000;

// ---------------------------------------------------------------------------------------------
// Actions

#[derive(Debug, Clone)]
enum Item {
    /// A probe result; a non-zero `error_len` adds an error text of that length.
    Result { error_len: usize },
    /// A capacity sample with `disks` disks.
    Capacity { disks: usize },
}

#[derive(Debug, Clone)]
enum Action {
    /// Appends these measurements in order.
    Append(Vec<Item>),
    /// The publisher reads up to `limit` entries of the `boot`-th boot (mod the number of
    /// boots) after what it already read of it (at least after the watermark).
    Publish { boot: usize, limit: usize },
    /// The publisher reads up to `limit` gap records of the `boot`-th boot beyond what it
    /// already read of it, to send them ahead of the window.
    PublishGaps { boot: usize, limit: usize },
    /// The publisher forgets what it read (re-send from the watermarks): `rewind` of every boot.
    Rewind,
    /// The collector acks the `boot`-th boot up to `fraction`/255 of the way from the watermark
    /// to the highest seq ever read of it.
    Ack { boot: usize, fraction: u8 },
    /// `Publish` then an `Ack` of everything read so far of that boot.
    Cycle { boot: usize, limit: usize },
    /// An ack for a boot the outbox never had.
    AckUnknown(u64),
    /// Flush, drop and reopen the store, optionally with new limits.
    Reopen(Option<OutboxLimits>),
}

fn limits() -> impl Strategy<Value = OutboxLimits> {
    (
        prop_oneof![3 => 1usize..=20, 1 => 21usize..=60],
        // A result takes ~230 bytes with its key.
        prop_oneof![3 => Just(u64::MAX), 1 => (3u64..=20).prop_map(|k| k * 230)],
        prop_oneof![4 => Just(64 * 1024usize), 1 => Just(400usize)],
    )
        .prop_map(|(max_entries, max_bytes, max_entry_bytes)| OutboxLimits {
            max_entries,
            max_bytes,
            max_entry_bytes,
        })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => Just(Item::Result { error_len: 0 }),
        1 => (1usize..=600).prop_map(|error_len| Item::Result { error_len }),
        2 => (0usize..=3).prop_map(|disks| Item::Capacity { disks }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => proptest::collection::vec(item(), 1..=6).prop_map(Action::Append),
        // Long runs: overflow caps of 1..=60 entries.
        2 => proptest::collection::vec(item(), 7..=70).prop_map(Action::Append),
        3 => (0usize..4, 1usize..=25).prop_map(|(boot, limit)| Action::Publish { boot, limit }),
        1 => (0usize..4, 1usize..=3).prop_map(|(boot, limit)| Action::PublishGaps { boot, limit }),
        1 => Just(Action::Rewind),
        3 => (0usize..4, any::<u8>()).prop_map(|(boot, fraction)| Action::Ack { boot, fraction }),
        // A whole publish cycle: read a batch, the collector acks all of it.
        2 => (0usize..4, 1usize..=25).prop_map(|(boot, limit)| Action::Cycle { boot, limit }),
        1 => any::<u64>().prop_map(Action::AckUnknown),
        2 => proptest::option::of(limits()).prop_map(Action::Reopen),
    ]
}

/// The `n`-th measurement of the run (every engine and the model get the same one).
fn measurement(item: &Item, n: u64) -> Measurement {
    let observed_ms = T0 + n * 1_000;
    match item {
        Item::Result { error_len } => Measurement::Result(ProbeResult {
            seq: 0,
            probe: format!("probe-{}", n % 3),
            kind: "http".into(),
            target: "http://127.0.0.1:8080/health".into(),
            observed_ms,
            interval_ms: 1_000,
            state: if *error_len > 0 {
                ProbeState::Down
            } else {
                ProbeState::Up
            },
            latency_us: 100 + n,
            error: (*error_len > 0).then(|| "e".repeat(*error_len)),
            metrics: Vec::new(),
        }),
        // Floats with short exact decimals: they survive the JSON round trip bit for bit.
        Item::Capacity { disks } => Measurement::Capacity(CapacitySample {
            seq: 0,
            observed_ms,
            cpu_pct: (n % 200) as f64 * 0.5,
            load_1: 0.25,
            load_5: 1.5,
            load_15: 2.0,
            mem_used_bytes: n * 1_024,
            mem_total_bytes: 1 << 34,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
            disks: (0..*disks)
                .map(|d| DiskUsage {
                    mount: format!("/mnt/d{d}"),
                    used_bytes: n,
                    total_bytes: 1 << 40,
                    inodes_used: Some(n),
                    inodes_total: Some(1 << 30),
                })
                .collect(),
            nets: Vec::new(),
            processes: Some(n + 1),
            uptime_s: Some(n * 3),
            fd_used: (n % 2 == 0).then_some(n),
            fd_max: (n % 2 == 0).then_some(1 << 20),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// What is compared

/// Boot ids are random; they are compared by the number of the open that created them.
fn norm_id(id: &str, ids: &HashMap<String, usize>) -> String {
    match ids.get(id) {
        Some(open) => format!("open#{open}"),
        None => format!("unknown boot {id}"),
    }
}

fn norm_entry(entry: &Entry, ids: &HashMap<String, usize>) -> Entry {
    match entry {
        Entry::Gap(g) => Entry::Gap(GapRecord {
            boot: norm_id(&g.boot, ids),
            ..g.clone()
        }),
        other => other.clone(),
    }
}

/// A boot's metadata as stored: (ordinal, boot, watermark, dropped_upto, lost, unbooked runs).
type BootMetaView = (u64, String, u64, u64, Vec<u64>, Vec<UnbookedRun>);

/// Everything observable of one outbox at a step boundary.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    /// `outbox_entries`, decoded, boot ids normalised.
    entries: Vec<((u64, u64), Entry)>,
    /// `outbox_boots`.
    boot_metas: Vec<BootMetaView>,
    /// Stats: entries, bytes, dropped, gap records, dropped and delivered.
    counters: (usize, u64, u64, u64, u64),
    /// Stats per boot: (ordinal, boot, watermark, last seq, is current).
    boots: Vec<(u64, String, u64, u64, bool)>,
}

impl Observed {
    fn gaps(&self) -> impl Iterator<Item = &GapRecord> {
        self.entries.iter().filter_map(|(_, e)| match e {
            Entry::Gap(g) => Some(g),
            _ => None,
        })
    }

    fn non_gap_keys(&self) -> BTreeSet<(u64, u64)> {
        self.entries
            .iter()
            .filter(|(_, e)| !matches!(e, Entry::Gap(_)))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The normalised id of the boot with `ordinal`.
    fn boot_name(&self, ordinal: u64) -> Option<&str> {
        self.boots
            .iter()
            .find(|b| b.0 == ordinal)
            .map(|b| b.1.as_str())
    }

    /// Every unbooked (boot, seq).
    fn unbooked(&self) -> BTreeSet<(String, u64)> {
        self.boot_metas
            .iter()
            .flat_map(|m| {
                m.5.iter()
                    .flat_map(move |r| (r.from_seq..=r.to_seq).map(move |s| (m.1.clone(), s)))
            })
            .collect()
    }

    /// How many stored gap records cover `seq` of `boot`.
    fn covering(&self, boot: &str, seq: u64) -> usize {
        self.gaps()
            .filter(|g| g.boot == boot && g.from_seq <= seq && seq <= g.to_seq)
            .count()
    }
}

fn counters(stats: &OutboxStats) -> (usize, u64, u64, u64, u64) {
    (
        stats.entries,
        stats.bytes,
        stats.dropped,
        stats.gap_records,
        stats.dropped_delivered,
    )
}

// ---------------------------------------------------------------------------------------------
// The real outboxes

enum Backend {
    Sled(tempfile::TempDir),
    Memory(MemoryStorage),
}

impl Backend {
    fn open(&self) -> Arc<dyn Storage> {
        match self {
            Backend::Sled(dir) => Arc::new(SledStorage::open(dir.path()).expect("open sled")),
            Backend::Memory(m) => Arc::new(m.clone()),
        }
    }
}

struct Real {
    name: &'static str,
    backend: Backend,
    storage: Option<Arc<dyn Storage>>,
    outbox: Option<Outbox>,
    /// Boot id → open number, and back.
    ids: HashMap<String, usize>,
    by_open: HashMap<usize, String>,
}

impl Real {
    fn new(name: &'static str, backend: Backend, limits: OutboxLimits) -> Self {
        let mut real = Self {
            name,
            backend,
            storage: None,
            outbox: None,
            ids: HashMap::new(),
            by_open: HashMap::new(),
        };
        real.reopen(limits, 1);
        real
    }

    fn outbox(&self) -> &Outbox {
        self.outbox.as_ref().expect("outbox is open")
    }

    /// Flushes, drops every handle, and opens again (the `open`-th open of the run).
    fn reopen(&mut self, limits: OutboxLimits, open: usize) {
        if let Some(storage) = &self.storage {
            storage.flush().expect("flush before reopen");
        }
        self.outbox = None;
        self.storage = None;
        let storage = self.backend.open();
        let outbox = Outbox::open(storage.clone(), limits).expect("open outbox");
        let id = outbox.boot_id();
        self.ids.insert(id.clone(), open);
        self.by_open.insert(open, id);
        self.storage = Some(storage);
        self.outbox = Some(outbox);
    }

    fn observe(&self) -> Observed {
        let storage = self.storage.as_ref().expect("storage is open");
        let entries = storage
            .tree(ENTRIES_TREE)
            .expect("entries tree")
            .range(&[], None, usize::MAX)
            .expect("scan entries")
            .into_iter()
            .map(|(k, v)| {
                let key = read_u64(&k, 0).zip(read_u64(&k, 8)).expect("16-byte key");
                let entry: Entry = serde_json::from_slice(&v).expect("entry decodes");
                (key, norm_entry(&entry, &self.ids))
            })
            .collect();
        let boot_metas = storage
            .tree(BOOTS_TREE)
            .expect("boots tree")
            .range(&[], None, usize::MAX)
            .expect("scan boots")
            .into_iter()
            .map(|(k, v)| {
                let meta: BootMeta = serde_json::from_slice(&v).expect("boot meta decodes");
                (
                    read_u64(&k, 0).expect("8-byte key"),
                    norm_id(&meta.id, &self.ids),
                    meta.watermark,
                    meta.dropped_upto,
                    meta.lost,
                    meta.unbooked,
                )
            })
            .collect();
        let stats = self.outbox().stats();
        let boots = stats
            .boots
            .iter()
            .map(|b| {
                (
                    b.ordinal,
                    norm_id(&b.id, &self.ids),
                    b.watermark,
                    b.last_seq,
                    b.is_current,
                )
            })
            .collect();
        Observed {
            entries,
            boot_metas,
            counters: counters(&stats),
            boots,
        }
    }

    fn append(&self, m: Measurement) -> Option<u64> {
        match self.outbox().append(m) {
            Ok(seq) => Some(seq),
            Err(OutboxError::TooLarge { .. }) => None,
            Err(e) => panic!("{}: append failed: {e}", self.name),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reference model

#[derive(Debug, Clone)]
struct ModelBoot {
    /// Which open created it (its id).
    open: usize,
    watermark: u64,
    dropped_upto: u64,
    last_seq: u64,
    /// Entries present at or below `max(read_upto, watermark)` were read since the last rewind.
    read_upto: u64,
    /// Dropped after being read, not booked: runs of consecutive seqs.
    unbooked: Vec<UnbookedRun>,
}

/// The outbox as its documentation describes it, on plain maps.
struct Model {
    limits: OutboxLimits,
    entries: BTreeMap<(u64, u64), Entry>,
    boots: BTreeMap<u64, ModelBoot>,
    current: u64,
    next_seq: u64,
    /// The newest gap record while it has not been read: drops that continue its range
    /// extend it.
    open_gap: Option<GapRecord>,
    dropped: u64,
    dropped_delivered: u64,
    gap_records: u64,
    opens: usize,
    ids: HashMap<String, usize>,
}

/// The model's boot ids: 16 characters like the real ones, so byte counts agree.
fn model_id(open: usize) -> String {
    format!("{open:016x}")
}

fn set_seq(entry: &mut Entry, seq: u64) {
    match entry {
        Entry::Result(r) => r.seq = seq,
        Entry::Capacity(c) => c.seq = seq,
        Entry::Gap(g) => g.seq = seq,
    }
}

fn encoded_len(entry: &Entry) -> u64 {
    serde_json::to_vec(entry).expect("entry encodes").len() as u64
}

impl Model {
    fn new(limits: OutboxLimits) -> Self {
        let mut model = Self {
            limits,
            entries: BTreeMap::new(),
            boots: BTreeMap::new(),
            current: 0,
            next_seq: 1,
            open_gap: None,
            dropped: 0,
            dropped_delivered: 0,
            gap_records: 0,
            opens: 0,
            ids: HashMap::new(),
        };
        model.open(limits);
        model
    }

    /// A start: boots with neither entries nor unbooked drops are forgotten, a new boot takes
    /// the next ordinal, the counters, the open gap and every read frontier start over, and the
    /// unbooked drops of earlier boots are booked (oldest boot first).
    fn open(&mut self, limits: OutboxLimits) {
        self.limits = limits;
        let with_entries: BTreeSet<u64> = self.entries.keys().map(|(o, _)| *o).collect();
        self.boots
            .retain(|o, b| with_entries.contains(o) || !b.unbooked.is_empty());
        for (ordinal, boot) in &mut self.boots {
            let stored = self
                .entries
                .range((*ordinal, 0)..=(*ordinal, u64::MAX))
                .map(|((_, s), _)| *s)
                .max()
                .unwrap_or(0);
            boot.last_seq = boot.watermark.max(boot.dropped_upto).max(stored);
            boot.read_upto = 0;
        }
        self.current = self.boots.keys().max().copied().unwrap_or(0) + 1;
        self.opens += 1;
        self.ids.insert(model_id(self.opens), self.opens);
        self.boots.insert(
            self.current,
            ModelBoot {
                open: self.opens,
                watermark: 0,
                dropped_upto: 0,
                last_seq: 0,
                read_upto: 0,
                unbooked: Vec::new(),
            },
        );
        self.next_seq = 1;
        self.open_gap = None;
        self.dropped = 0;
        self.dropped_delivered = 0;
        self.gap_records = 0;
        let ordinals: Vec<u64> = self.boots.keys().copied().collect();
        for ordinal in ordinals {
            self.book_unbooked(ordinal);
        }
    }

    fn bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| KEY_BYTES + encoded_len(e))
            .sum()
    }

    fn put(&mut self, ordinal: u64, entry: Entry) {
        let seq = entry.seq();
        self.entries.insert((ordinal, seq), entry);
        if let Some(boot) = self.boots.get_mut(&ordinal) {
            boot.last_seq = boot.last_seq.max(seq);
        }
    }

    fn append(&mut self, m: Measurement) -> Option<u64> {
        let mut entry = Entry::from(m);
        set_seq(&mut entry, self.next_seq);
        if encoded_len(&entry) > self.limits.max_entry_bytes as u64 {
            return None;
        }
        let seq = self.next_seq;
        self.put(self.current, entry);
        self.next_seq += 1;
        self.enforce_caps();
        Some(seq)
    }

    fn over_cap(&self) -> bool {
        self.entries.len() > self.limits.max_entries || self.bytes() > self.limits.max_bytes
    }

    /// Drops the oldest entry that is not a gap record — or is the open (unread) gap record,
    /// which moves to a fresh seq and books its old seq with the rest — until within the caps.
    /// Gap records that may have been published stay; the open one moves at most once per
    /// call. A dropped entry at or below its boot's read frontier joins the unbooked drops;
    /// any other is booked, after the unbooked drops of its boot.
    fn enforce_caps(&mut self) {
        let mut carried = false;
        while self.over_cap() {
            let open_seq = self.open_gap.as_ref().map(|g| g.seq);
            let current = self.current;
            let victim = self
                .entries
                .iter()
                .find(|((o, s), e)| {
                    !matches!(e, Entry::Gap(_)) || (*o == current && Some(*s) == open_seq)
                })
                .map(|(k, e)| (*k, e.clone()));
            let Some(((ordinal, seq), entry)) = victim else {
                break;
            };
            let is_open_gap = matches!(entry, Entry::Gap(_));
            if is_open_gap && carried {
                break;
            }
            self.entries.remove(&(ordinal, seq));
            let mut was_read = false;
            if let Some(boot) = self.boots.get_mut(&ordinal) {
                boot.dropped_upto = boot.dropped_upto.max(seq);
                was_read = seq <= boot.read_upto;
            }
            if is_open_gap {
                carried = true;
                if let Some(mut gap) = self.open_gap.take() {
                    let last_ms = gap.to_ms.saturating_sub(1);
                    gap.seq = self.next_seq;
                    self.next_seq += 1;
                    self.put(current, Entry::Gap(gap.clone()));
                    self.open_gap = Some(gap);
                    self.book_unbooked(ordinal);
                    self.record_range(ordinal, seq, seq, last_ms, last_ms + 1);
                }
                continue;
            }
            self.dropped += 1;
            let ms = entry.observed_ms();
            if was_read {
                if let Some(boot) = self.boots.get_mut(&ordinal) {
                    match boot.unbooked.last_mut() {
                        Some(run) if run.to_seq + 1 == seq => {
                            run.to_seq = seq;
                            run.to_ms = run.to_ms.max(ms + 1);
                        }
                        _ => boot.unbooked.push(UnbookedRun {
                            from_seq: seq,
                            to_seq: seq,
                            from_ms: ms,
                            to_ms: ms + 1,
                        }),
                    }
                }
            } else {
                self.book_unbooked(ordinal);
                self.record_range(ordinal, seq, seq, ms, ms + 1);
            }
        }
    }

    /// Books every unbooked run of `ordinal`, oldest first.
    fn book_unbooked(&mut self, ordinal: u64) {
        let runs = match self.boots.get_mut(&ordinal) {
            Some(boot) => std::mem::take(&mut boot.unbooked),
            None => return,
        };
        for r in runs {
            self.record_range(ordinal, r.from_seq, r.to_seq, r.from_ms, r.to_ms);
        }
    }

    /// Extends the open gap record when `from_seq..=to_seq` continues its range in the same
    /// boot, else starts a new record under the current boot.
    fn record_range(&mut self, ordinal: u64, from_seq: u64, to_seq: u64, from_ms: u64, to_ms: u64) {
        let Some(boot) = self.boots.get(&ordinal) else {
            return;
        };
        let boot_id = model_id(boot.open);
        let current = self.current;
        if let Some(mut gap) = self.open_gap.take() {
            if gap.boot == boot_id && gap.to_seq + 1 == from_seq {
                gap.to_seq = to_seq;
                gap.to_ms = gap.to_ms.max(to_ms);
                self.put(current, Entry::Gap(gap.clone()));
                self.open_gap = Some(gap);
                return;
            }
        }
        let gap = GapRecord {
            seq: self.next_seq,
            boot: boot_id,
            from_seq,
            to_seq,
            from_ms,
            to_ms,
            reason: GapReason::OutboxFull,
        };
        self.next_seq += 1;
        self.gap_records += 1;
        self.put(current, Entry::Gap(gap.clone()));
        self.open_gap = Some(gap);
    }

    /// Reading the open gap record closes it.
    fn close_if_read(&mut self, ordinal: u64, out: &[Entry]) {
        if ordinal == self.current {
            if let Some(open) = &self.open_gap {
                if out
                    .iter()
                    .any(|e| matches!(e, Entry::Gap(g) if g.seq == open.seq))
                {
                    self.open_gap = None;
                }
            }
        }
    }

    /// Entries of `ordinal` with `after < seq`, at most `limit`; reading the open gap record
    /// closes it. A read that starts at or below the read frontier (or with nothing stored in
    /// between) moves the frontier to the last entry read.
    fn read(&mut self, ordinal: u64, after: u64, limit: usize) -> Vec<Entry> {
        let out: Vec<Entry> = self
            .entries
            .range((ordinal, after + 1)..=(ordinal, u64::MAX))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        self.close_if_read(ordinal, &out);
        if let (Some(last), Some(boot)) = (out.last().map(Entry::seq), self.boots.get(&ordinal)) {
            let frontier = boot.read_upto.max(boot.watermark);
            let continues = after <= frontier
                || self
                    .entries
                    .range((ordinal, frontier + 1)..=(ordinal, after))
                    .next()
                    .is_none();
            if continues {
                if let Some(boot) = self.boots.get_mut(&ordinal) {
                    boot.read_upto = frontier.max(last);
                }
            }
        }
        out
    }

    /// Gap records of `ordinal` with `after < seq`, at most `limit`; reading the open one closes
    /// it; the read frontier stays.
    fn read_gaps(&mut self, ordinal: u64, after: u64, limit: usize) -> Vec<Entry> {
        let out: Vec<Entry> = self
            .entries
            .range((ordinal, after + 1)..=(ordinal, u64::MAX))
            .filter(|(_, e)| matches!(e, Entry::Gap(_)))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        self.close_if_read(ordinal, &out);
        out
    }

    /// The publisher re-sends `ordinal` from its watermark: the frontier goes back and the
    /// unbooked drops are booked. Returns how many seqs were booked.
    fn rewind(&mut self, ordinal: u64) -> u64 {
        let Some(boot) = self.boots.get_mut(&ordinal) else {
            return 0;
        };
        boot.read_upto = 0;
        let booked = boot.unbooked.iter().map(UnbookedRun::count).sum();
        self.book_unbooked(ordinal);
        booked
    }

    /// The ack of the boot created by open `open` (`None`: a boot never seen) up to `seq`: trims
    /// entries and settles unbooked drops up to it; a boot other than the current one with
    /// neither entries nor unbooked drops left is forgotten.
    fn ack(&mut self, open: Option<usize>, seq: u64) -> AckOutcome {
        let Some(ordinal) = self
            .boots
            .iter()
            .find(|(_, b)| Some(b.open) == open)
            .map(|(o, _)| *o)
        else {
            return AckOutcome::UnknownBoot;
        };
        let Some(boot) = self.boots.get_mut(&ordinal) else {
            return AckOutcome::UnknownBoot;
        };
        let seq = seq.min(boot.last_seq);
        if seq <= boot.watermark {
            return AckOutcome::Stale;
        }
        boot.watermark = seq;
        let mut kept = Vec::new();
        for mut run in std::mem::take(&mut boot.unbooked) {
            if run.to_seq <= seq {
                self.dropped_delivered += run.count();
                continue;
            }
            if run.from_seq <= seq {
                self.dropped_delivered += seq - run.from_seq + 1;
                run.from_seq = seq + 1;
            }
            kept.push(run);
        }
        let settled = kept.is_empty();
        boot.unbooked = kept;
        let gone: Vec<(u64, u64)> = self
            .entries
            .range((ordinal, 0)..=(ordinal, seq))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.entries.remove(k);
        }
        let empty = self
            .entries
            .range((ordinal, 0)..=(ordinal, u64::MAX))
            .next()
            .is_none();
        if ordinal != self.current && empty && settled {
            self.boots.remove(&ordinal);
        }
        AckOutcome::Trimmed {
            ordinal,
            removed: gone.len(),
        }
    }

    fn observe(&self) -> Observed {
        let name = |open: usize| format!("open#{open}");
        Observed {
            entries: self
                .entries
                .iter()
                .map(|(k, e)| (*k, norm_entry(e, &self.ids)))
                .collect(),
            boot_metas: self
                .boots
                .iter()
                .map(|(o, b)| {
                    (
                        *o,
                        name(b.open),
                        b.watermark,
                        b.dropped_upto,
                        Vec::new(),
                        b.unbooked.clone(),
                    )
                })
                .collect(),
            counters: (
                self.entries.len(),
                self.bytes(),
                self.dropped,
                self.gap_records,
                self.dropped_delivered,
            ),
            boots: self
                .boots
                .iter()
                .map(|(o, b)| {
                    (
                        *o,
                        name(b.open),
                        b.watermark,
                        b.last_seq,
                        *o == self.current,
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger: accounting checked from observations only

#[derive(Default)]
struct Ledger {
    appended: u64,
    acked: u64,
    /// `stats.dropped` of earlier opens (it counts since start).
    dropped_before: u64,
    /// Every (boot, seq) ever dropped, by normalised boot id.
    dropped_ever: BTreeSet<(String, u64)>,
}

/// Number of maximal runs of consecutive seqs per boot.
fn runs(dropped: &BTreeSet<(String, u64)>) -> usize {
    let mut n = 0;
    let mut prev: Option<&(String, u64)> = None;
    for d in dropped {
        match prev {
            Some((boot, seq)) if *boot == d.0 && seq + 1 == d.1 => {}
            _ => n += 1,
        }
        prev = Some(d);
    }
    n
}

impl Ledger {
    /// After every step: stored non-gap entries = appended − acked − dropped; the stored gap
    /// records claim only dropped seqs, without overlapping; every unbooked seq was dropped, is
    /// above its boot's watermark and in no stored gap record.
    fn check(&self, obs: &Observed) -> Result<(), TestCaseError> {
        let dropped = self.dropped_before + obs.counters.2;
        prop_assert_eq!(
            obs.non_gap_keys().len() as u64,
            self.appended - self.acked - dropped,
            "entries = appended {} - acked {} - dropped {}",
            self.appended,
            self.acked,
            dropped
        );
        let mut claimed: BTreeSet<(String, u64)> = BTreeSet::new();
        for gap in obs.gaps() {
            prop_assert!(gap.from_seq >= 1 && gap.from_seq <= gap.to_seq, "{:?}", gap);
            prop_assert!(gap.from_ms < gap.to_ms, "{:?}", gap);
            for seq in gap.from_seq..=gap.to_seq {
                let d = (gap.boot.clone(), seq);
                prop_assert!(
                    self.dropped_ever.contains(&d),
                    "gap record {:?} claims {:?}, never dropped",
                    gap,
                    d
                );
                prop_assert!(claimed.insert(d), "gap records overlap: {:?}", gap);
            }
        }
        for (boot, seq) in obs.unbooked() {
            let watermark = obs.boots.iter().find(|b| b.1 == boot).map(|b| b.2);
            prop_assert!(
                watermark.is_some_and(|w| seq > w),
                "unbooked {} seq {} at or below the watermark {:?}",
                boot,
                seq,
                watermark
            );
            prop_assert!(
                self.dropped_ever.contains(&(boot.clone(), seq)),
                "unbooked {} seq {} was never dropped",
                boot,
                seq
            );
            prop_assert!(
                !claimed.contains(&(boot.clone(), seq)),
                "unbooked {} seq {} is in a gap record too",
                boot,
                seq
            );
        }
        Ok(())
    }

    /// After an append step: what vanished was dropped, `stats.dropped` counted it exactly;
    /// each dropped seq sits in exactly one stored gap record, or is held unbooked if the
    /// publisher had read it (`read`: per boot, the highest seq read since the last rewind);
    /// unbooked seqs that got booked sit in exactly one stored gap record; and the step opened
    /// no more records than it booked contiguous runs.
    fn check_append(
        &mut self,
        before: &Observed,
        after: &Observed,
        appended: &[u64],
        read: &HashMap<String, u64>,
    ) -> Result<(), TestCaseError> {
        let current = after
            .boots
            .iter()
            .find(|b| b.4)
            .map(|b| b.0)
            .ok_or_else(|| TestCaseError::fail("no current boot"))?;
        let mut had = before.non_gap_keys();
        had.extend(appended.iter().map(|s| (current, *s)));
        let kept = after.non_gap_keys();
        let dropped_entries: Vec<(u64, u64)> = had.difference(&kept).copied().collect();
        prop_assert_eq!(
            dropped_entries.len() as u64,
            after.counters.2 - before.counters.2,
            "stats.dropped moved by {} but {:?} vanished",
            after.counters.2 - before.counters.2,
            dropped_entries
        );
        // Only acks and drops remove entries, and an append step acks nothing: every seq of a
        // boot above its watermark and up to its last seq that is not stored was dropped. This
        // also catches gap records created and carried forward within the step.
        let present: BTreeSet<(u64, u64)> = after.entries.iter().map(|(k, _)| *k).collect();
        let mut step: BTreeSet<(String, u64)> = BTreeSet::new();
        for (ordinal, boot, watermark, last_seq, _) in &after.boots {
            for seq in watermark + 1..=*last_seq {
                let d = (boot.clone(), seq);
                if !present.contains(&(*ordinal, seq)) && !self.dropped_ever.contains(&d) {
                    step.insert(d);
                }
            }
        }
        for (ordinal, seq) in &dropped_entries {
            let boot = after
                .boot_name(*ordinal)
                .or_else(|| before.boot_name(*ordinal));
            prop_assert!(
                boot.is_some_and(|b| step.contains(&(b.to_owned(), *seq))),
                "dropped #{} seq {} is not missing from its boot",
                ordinal,
                seq
            );
        }
        let unbooked_before = before.unbooked();
        let unbooked_after = after.unbooked();
        for (boot, seq) in &unbooked_after {
            prop_assert!(
                step.contains(&(boot.clone(), *seq))
                    || unbooked_before.contains(&(boot.clone(), *seq)),
                "{} seq {} became unbooked without being dropped in this step",
                boot,
                seq
            );
        }
        let mut booked: BTreeSet<(String, u64)> = BTreeSet::new();
        for (boot, seq) in &step {
            let covering = after.covering(boot, *seq);
            if unbooked_after.contains(&(boot.clone(), *seq)) {
                prop_assert_eq!(covering, 0, "{} seq {} unbooked and booked", boot, seq);
                let read_upto = read.get(boot).copied().unwrap_or(0);
                prop_assert!(
                    *seq <= read_upto,
                    "{} seq {} held unbooked but the publisher read only up to {}",
                    boot,
                    seq,
                    read_upto
                );
            } else {
                prop_assert_eq!(
                    covering,
                    1,
                    "dropped {} seq {} is in {} gap records",
                    boot,
                    seq,
                    covering
                );
                booked.insert((boot.clone(), *seq));
            }
        }
        for d in unbooked_before.difference(&unbooked_after) {
            let covering = after.covering(&d.0, d.1);
            prop_assert_eq!(
                covering,
                1,
                "unbooked {:?} booked in {} records",
                d,
                covering
            );
            booked.insert(d.clone());
        }
        let new_records = after.counters.3 - before.counters.3;
        prop_assert!(
            new_records as usize <= runs(&booked),
            "{} new gap records for {} contiguous booked runs {:?}",
            new_records,
            runs(&booked),
            booked
        );
        self.appended += appended.len() as u64;
        self.dropped_ever.extend(step);
        Ok(())
    }

    /// After an ack: the unbooked seqs it covered are settled (and only those), and
    /// `stats.dropped_delivered` moved by exactly their number.
    fn check_ack(&self, before: &Observed, after: &Observed) -> Result<(), TestCaseError> {
        let watermark = |boot: &str| after.boots.iter().find(|b| b.1 == boot).map(|b| b.2);
        let mut settled = 0u64;
        for (boot, seq) in before.unbooked() {
            let covered = watermark(&boot).is_none_or(|w| seq <= w);
            let still = after.unbooked().contains(&(boot.clone(), seq));
            prop_assert_eq!(covered, !still, "{} seq {} after the ack", boot, seq);
            if covered {
                settled += 1;
            }
        }
        prop_assert!(
            after.unbooked().is_subset(&before.unbooked()),
            "an ack made drops unbooked"
        );
        prop_assert_eq!(after.counters.4 - before.counters.4, settled);
        Ok(())
    }

    /// After a rewind of every boot (`new_records` gap records made) or a reopen: nothing is
    /// unbooked, every seq that was is now in exactly one stored gap record, and no more
    /// records were made than runs booked.
    fn check_booked_all(
        &self,
        before: &Observed,
        after: &Observed,
        new_records: u64,
    ) -> Result<(), TestCaseError> {
        prop_assert!(after.unbooked().is_empty(), "{:?}", after.unbooked());
        let booked = before.unbooked();
        for (boot, seq) in &booked {
            let covering = after.covering(boot, *seq);
            prop_assert_eq!(
                covering,
                1,
                "{} seq {} booked in {} records",
                boot,
                seq,
                covering
            );
        }
        prop_assert!(
            new_records as usize <= runs(&booked),
            "{} new gap records for the unbooked runs {:?}",
            new_records,
            booked
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

/// What the publisher has read, by normalised boot id: the cursor (reset by a rewind or a
/// restart) and the highest seq ever read (what the collector may ack).
#[derive(Default)]
struct Publisher {
    cursor: HashMap<String, u64>,
    highest: HashMap<String, u64>,
}

/// Runs `actions` against sled, memory and the model; returns the final observed state.
fn run(initial: OutboxLimits, actions: Vec<Action>) -> Result<Observed, TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reals = [
        Real::new("sled", Backend::Sled(dir), initial),
        Real::new("memory", Backend::Memory(MemoryStorage::new()), initial),
    ];
    let mut model = Model::new(initial);
    let mut ledger = Ledger::default();
    let mut publisher = Publisher::default();
    let mut n = 0u64;
    let mut obs = model.observe();

    let actions: Vec<Action> = actions
        .into_iter()
        .flat_map(|a| match a {
            Action::Cycle { boot, limit } => vec![
                Action::Publish { boot, limit },
                Action::Ack {
                    boot,
                    fraction: u8::MAX,
                },
            ],
            other => vec![other],
        })
        .collect();
    for (step, action) in actions.iter().enumerate() {
        let before = obs.clone();
        match action {
            Action::Append(items) => {
                let mut appended = Vec::new();
                for item in items {
                    n += 1;
                    let m = measurement(item, n);
                    let want = model.append(m.clone());
                    for real in &reals {
                        let got = real.append(m.clone());
                        prop_assert_eq!(got, want, "step {}: {} append", step, real.name);
                    }
                    appended.extend(want);
                }
                let after = model.observe();
                ledger.check_append(&before, &after, &appended, &publisher.cursor)?;
            }
            Action::Publish { boot, limit } => {
                let (ordinal, name, watermark) = {
                    let b = &before.boots[boot % before.boots.len()];
                    (b.0, b.1.clone(), b.2)
                };
                let after = publisher
                    .cursor
                    .get(&name)
                    .copied()
                    .unwrap_or(0)
                    .max(watermark);
                let want: Vec<Entry> = model
                    .read(ordinal, after, *limit)
                    .iter()
                    .map(|e| norm_entry(e, &model.ids))
                    .collect();
                for real in &reals {
                    let got: Vec<Entry> = real
                        .outbox()
                        .read(ordinal, after, u64::MAX, *limit)
                        .expect("read")
                        .iter()
                        .map(|e| norm_entry(e, &real.ids))
                        .collect();
                    prop_assert_eq!(&got, &want, "step {}: {} read", step, real.name);
                }
                if let Some(last) = want.last() {
                    publisher.cursor.insert(name.clone(), last.seq());
                    let highest = publisher.highest.entry(name).or_default();
                    *highest = (*highest).max(last.seq());
                }
            }
            Action::PublishGaps { boot, limit } => {
                let (ordinal, name, watermark) = {
                    let b = &before.boots[boot % before.boots.len()];
                    (b.0, b.1.clone(), b.2)
                };
                let after = publisher
                    .cursor
                    .get(&name)
                    .copied()
                    .unwrap_or(0)
                    .max(watermark);
                let want: Vec<Entry> = model
                    .read_gaps(ordinal, after, *limit)
                    .iter()
                    .map(|e| norm_entry(e, &model.ids))
                    .collect();
                for real in &reals {
                    let got: Vec<Entry> = real
                        .outbox()
                        .read_gaps(ordinal, after, u64::MAX, *limit)
                        .expect("read gaps")
                        .iter()
                        .map(|e| norm_entry(e, &real.ids))
                        .collect();
                    prop_assert_eq!(&got, &want, "step {}: {} read gaps", step, real.name);
                }
                prop_assert!(want.iter().all(|e| matches!(e, Entry::Gap(_))));
            }
            Action::Rewind => {
                for (ordinal, ..) in &before.boots {
                    let want = model.rewind(*ordinal);
                    for real in &reals {
                        let got = real.outbox().rewind(*ordinal).expect("rewind");
                        prop_assert_eq!(got, want, "step {}: {} rewind", step, real.name);
                    }
                }
                publisher.cursor.clear();
                let after = model.observe();
                ledger.check_booked_all(&before, &after, after.counters.3 - before.counters.3)?;
            }
            Action::Ack { boot, fraction } => {
                let (ordinal, name, watermark) = {
                    let b = &before.boots[boot % before.boots.len()];
                    (b.0, b.1.clone(), b.2)
                };
                let open = model.boots.get(&ordinal).map(|b| b.open);
                let highest = publisher.highest.get(&name).copied().unwrap_or(0);
                let seq = if highest <= watermark {
                    highest
                } else {
                    watermark + (highest - watermark) * u64::from(*fraction) / 255
                };
                let acked = before
                    .entries
                    .iter()
                    .filter(|((o, s), e)| *o == ordinal && *s <= seq && !matches!(e, Entry::Gap(_)))
                    .count() as u64;
                let want = model.ack(open, seq);
                for real in &reals {
                    let id = open
                        .and_then(|o| real.by_open.get(&o))
                        .expect("boot id of the ack");
                    let got = real.outbox().apply_ack(id, seq).expect("ack");
                    prop_assert_eq!(&got, &want, "step {}: {} ack {}", step, real.name, seq);
                }
                if matches!(want, AckOutcome::Trimmed { .. }) {
                    ledger.acked += acked;
                }
                ledger.check_ack(&before, &model.observe())?;
            }
            Action::AckUnknown(seq) => {
                let want = model.ack(None, *seq);
                prop_assert_eq!(&want, &AckOutcome::UnknownBoot);
                for real in &reals {
                    // Real ids are 16 hex digits; this one cannot be one.
                    let got = real
                        .outbox()
                        .apply_ack("never-a-boot-id", *seq)
                        .expect("ack");
                    prop_assert_eq!(&got, &want, "step {}: {}", step, real.name);
                }
            }
            Action::Cycle { .. } => unreachable!("expanded above"),
            Action::Reopen(limits) => {
                let limits = limits.unwrap_or(model.limits);
                ledger.dropped_before += before.counters.2;
                model.open(limits);
                for real in &mut reals {
                    real.reopen(limits, model.opens);
                }
                publisher.cursor.clear();
                let after = model.observe();
                // The counters start over: every gap record this open counts, it made.
                ledger.check_booked_all(&before, &after, after.counters.3)?;
            }
        }

        obs = model.observe();
        for real in &reals {
            let got = real.observe();
            prop_assert_eq!(
                &got,
                &obs,
                "step {} ({:?}): {} differs from the model",
                step,
                action,
                real.name
            );
            if let Err(e) = real.outbox().check_integrity() {
                return Err(TestCaseError::fail(format!(
                    "step {step} ({action:?}): {}: {e}",
                    real.name
                )));
            }
        }
        ledger.check(&obs)?;
    }
    Ok(obs)
}

proptest! {
    // 64 cases; the proptest! macro lets PROPTEST_CASES override it.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Sled, memory and the model agree step by step, and the accounting holds.
    #[test]
    fn outbox_on_sled_and_memory_agrees_with_the_model(
        initial in limits(),
        actions in proptest::collection::vec(action(), 1..40),
    ) {
        run(initial, actions)?;
    }
}

/// One overflow episode (nothing read in between) is booked in exactly one gap record, however
/// long it runs; reading the record ends the episode, and the next overflow opens a second one.
#[test]
fn one_overflow_episode_is_one_gap_record_on_both_engines() {
    let limits = OutboxLimits {
        max_entries: 20,
        max_bytes: u64::MAX,
        max_entry_bytes: 64 * 1024,
    };
    let results = |n: usize| Action::Append(vec![Item::Result { error_len: 0 }; n]);
    let obs = run(limits, vec![results(100)]).unwrap();
    let gaps: Vec<&GapRecord> = obs.gaps().collect();
    assert_eq!(obs.counters.3, 1, "{obs:?}");
    assert_eq!(gaps.len(), 1, "{obs:?}");
    // 100 results over a cap of 20: 81 results dropped, plus the gap record's own earlier
    // seqs as it was carried forward; one contiguous range from seq 1.
    assert_eq!(obs.counters.2, 81);
    assert_eq!((gaps[0].boot.as_str(), gaps[0].from_seq), ("open#1", 1));
    assert_eq!(obs.entries.len(), 20);

    let publish = Action::Publish { boot: 0, limit: 25 };
    let obs = run(limits, vec![results(100), publish, results(50)]).unwrap();
    let gaps: Vec<&GapRecord> = obs.gaps().collect();
    assert_eq!(obs.counters.3, 2, "{obs:?}");
    assert_eq!(gaps.len(), 2, "{obs:?}");
    // The first record (read, so it stays) covers everything before its own seq; the second
    // everything dropped after it.
    assert_eq!(gaps[0].to_seq + 1, gaps[0].seq, "{gaps:?}");
    assert_eq!(gaps[0].seq + 1, gaps[1].from_seq, "{gaps:?}");
}

/// Drops from two boots are never booked in one gap record, even when the seqs line up: here
/// boot 1 loses seqs 1..=2 and boot 2 then loses seqs 3..=4.
#[test]
fn drops_of_two_boots_are_booked_in_separate_gap_records() {
    let limits = OutboxLimits {
        max_entries: 3,
        max_bytes: u64::MAX,
        max_entry_bytes: 64 * 1024,
    };
    let results = |n: usize| Action::Append(vec![Item::Result { error_len: 0 }; n]);
    let publish_and_ack = [
        Action::Publish { boot: 1, limit: 25 },
        Action::Ack {
            boot: 1,
            fraction: 255,
        },
    ];
    let mut actions = vec![results(2), Action::Reopen(None)];
    // Boot 2 sends seqs 1 and 2 one by one and gets them acked (the cap of 3 never bites), so
    // its oldest entry will be seq 3.
    for _ in 0..2 {
        actions.push(results(1));
        actions.extend(publish_and_ack.clone());
    }
    // Seq 3 fits; seq 4 drops boot 1's seqs 1..=2 (one record, at seq 5); seq 6 drops boot 2's
    // seqs 3..=4, which must not extend boot 1's record although 2 + 1 = 3.
    actions.push(results(3));
    let obs = run(limits, actions).unwrap();
    let ranges: Vec<(&str, u64, u64)> = obs
        .gaps()
        .map(|g| (g.boot.as_str(), g.from_seq, g.to_seq))
        .collect();
    assert_eq!(ranges, [("open#1", 1, 2), ("open#2", 3, 4)], "{obs:?}");
}

/// Entries dropped after the publisher read them are not booked at once: an ack that covers
/// them settles them as delivered (no gap record at all), while a rewind or a reopen books them
/// in one record; a drop of an entry not read yet books them first, in the same record.
#[test]
fn drops_of_read_entries_wait_for_the_ack_and_a_rewind_or_reopen_books_them() {
    let limits = OutboxLimits {
        max_entries: 10,
        max_bytes: u64::MAX,
        max_entry_bytes: 64 * 1024,
    };
    let results = |n: usize| Action::Append(vec![Item::Result { error_len: 0 }; n]);
    let publish = Action::Publish { boot: 0, limit: 5 };
    let ack = Action::Ack {
        boot: 0,
        fraction: 255,
    };
    let ranges = |obs: &Observed| -> Vec<(u64, u64)> {
        obs.gaps().map(|g| (g.from_seq, g.to_seq)).collect()
    };

    // Seqs 1..=5 read, then 3 appends drop 1..=3: held, not booked.
    let held = vec![results(10), publish.clone(), results(3)];
    let obs = run(limits, held.clone()).unwrap();
    assert_eq!((obs.counters.2, obs.counters.3, obs.counters.4), (3, 0, 0));
    assert_eq!(obs.boot_metas[0].5.len(), 1, "{obs:?}");
    assert_eq!(
        (
            obs.boot_metas[0].5[0].from_seq,
            obs.boot_metas[0].5[0].to_seq
        ),
        (1, 3)
    );

    // The collector acks what it was sent (up to 5): delivered, never booked.
    let obs = run(limits, [held.clone(), vec![ack]].concat()).unwrap();
    assert_eq!((obs.counters.2, obs.counters.3, obs.counters.4), (3, 0, 3));
    assert!(obs.boot_metas[0].5.is_empty());

    // A rewind instead: booked in one record.
    let obs = run(limits, [held.clone(), vec![Action::Rewind]].concat()).unwrap();
    assert_eq!((obs.counters.3, obs.counters.4), (1, 0));
    assert_eq!(ranges(&obs), [(1, 3)]);

    // A reopen instead: booked by the open, in one record of the new boot.
    let obs = run(limits, [held.clone(), vec![Action::Reopen(None)]].concat()).unwrap();
    assert_eq!(ranges(&obs), [(1, 3)]);
    assert_eq!(obs.counters.3, 1, "made by this open");

    // Four more appends drop 4 and 5 (read), then 6..=8 (not read; the record takes a slot
    // too): the first of those books 1..=5, and one record covers 1..=8.
    let obs = run(limits, [held, vec![results(4)]].concat()).unwrap();
    assert_eq!(ranges(&obs), [(1, 8)]);
    assert_eq!((obs.counters.2, obs.counters.3), (8, 1));
}
