//! Rollups: per probe, per-minute buckets recounted from raw results, their hour and day sums,
//! and the state index; plus retention.
//!
//! Ingest marks every minute a stored result can affect as dirty (its own minute and the minutes
//! its state may hold into: up to 2 × interval). The rollup pass takes the dirty marks in key
//! order and, for each, recounts the minute from the raw results (plus the result before the
//! minute that may still hold into it), stores it in its probe-hour block (and the hour's sum),
//! rewrites the minute in the state index, then recounts the day's sum from its hour sums. A late or re-sent
//! result simply makes the buckets right again: every level always equals a recount of the raw
//! data, never an increment that could be applied twice, and a pass repeated after a crash
//! writes the same thing (marks are cleared only after everything is flushed).
//!
//! Layout: [`bucket`] (one bucket, its compact encoding), [`block`] (the stored probe-hour),
//! [`index`] (state changes), [`read`] (what the SLA read path takes from all three),
//! [`codec`] (varints).

pub mod block;
pub mod bucket;
pub mod codec;
pub mod index;
pub mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use watchstand_shared::storage::Write;
use watchstand_shared::time::{DAY_MS, HOUR_MS, MINUTE_MS};

pub use block::{bucket_key, parse_bucket_key, HourBlock};
pub use bucket::{MinuteRecount, Rollup};

use crate::sla::Observation;
use crate::store::{trees, Result, Store, StoreError};

/// Minutes after a result's own minute that it may still hold into are marked dirty, at most
/// this many (a one-hour interval holds for two hours).
const MAX_DIRTY_MINUTES: u64 = 120;
/// Dirty buckets recomputed per pass (ingest waits while a pass runs).
const PASS_LIMIT: usize = 2_000;

/// Key of a probe-minute's dirty mark.
pub fn rollup_key(agent: &str, probe: &str, minute_ms: u64) -> Vec<u8> {
    bucket_key(agent, probe, minute_ms)
}

/// The minute `at_ms` falls in.
pub const fn minute_of(at_ms: u64) -> u64 {
    at_ms - at_ms % MINUTE_MS
}

/// The dirty marks for a result observed at `observed_ms` with `interval_ms`: its minute and
/// every minute its state may hold into.
pub fn dirty_marks(agent: &str, probe: &str, observed_ms: u64, interval_ms: u64) -> Vec<Write> {
    let first = minute_of(observed_ms);
    let last = minute_of(observed_ms.saturating_add(interval_ms.saturating_mul(2)))
        .min(first + MAX_DIRTY_MINUTES * MINUTE_MS);
    (0..)
        .map(|i| first + i * MINUTE_MS)
        .take_while(|m| *m <= last)
        .map(|m| Write::Put(rollup_key(agent, probe, m), Vec::new()))
        .collect()
}

fn corrupt(tree: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::CorruptRecord { tree, detail }
}

/// The start of the hour `at_ms` falls in.
pub const fn hour_of(at_ms: u64) -> u64 {
    at_ms - at_ms % HOUR_MS
}

/// The start of the (UTC) day `at_ms` falls in.
pub const fn day_of(at_ms: u64) -> u64 {
    at_ms - at_ms % DAY_MS
}

/// The probe-hour blocks being rewritten by one pass or one history load.
#[derive(Default)]
struct PendingBlocks {
    blocks: BTreeMap<(String, String, u64), HourBlock>,
}

impl PendingBlocks {
    /// Sets one minute, loading its block from the store on first use.
    fn set(&mut self, store: &Store, agent: &str, probe: &str, m: &MinuteRecount) -> Result<()> {
        let hour = hour_of(m.minute_ms);
        let key = (agent.to_owned(), probe.to_owned(), hour);
        if !self.blocks.contains_key(&key) {
            let stored = store
                .tree(trees::ROLLUPS)?
                .get(&bucket_key(agent, probe, hour))?;
            let block = match stored {
                Some(bytes) => HourBlock::decode(&bytes).map_err(corrupt(trees::ROLLUPS))?,
                None => HourBlock::default(),
            };
            self.blocks.insert(key.clone(), block);
        }
        if let Some(block) = self.blocks.get_mut(&key) {
            let i = ((m.minute_ms - hour) / MINUTE_MS) as usize;
            block.set(i, m.rollup.clone());
        }
        Ok(())
    }

    /// Writes the blocks and their hour sums, then recounts the days they fall in from their
    /// hour sums.
    fn write(self, store: &Store) -> Result<()> {
        let hours = store.tree(trees::ROLLUP_HOUR_SUMS)?;
        let mut days = BTreeSet::new();
        let mut writes = Vec::with_capacity(self.blocks.len());
        let mut sums = Vec::with_capacity(self.blocks.len());
        for ((agent, probe, hour), block) in self.blocks {
            let key = bucket_key(&agent, &probe, hour);
            sums.push(Write::Put(key.clone(), block.coarse_sum().encode(HOUR_MS)));
            writes.push(Write::Put(key, block.encode()));
            days.insert((agent, probe, day_of(hour)));
        }
        store.tree(trees::ROLLUPS)?.apply(writes)?;
        hours.apply(sums)?;
        let mut day_writes = Vec::with_capacity(days.len());
        for (agent, probe, day) in days {
            let sums = hours
                .range(
                    &bucket_key(&agent, &probe, day),
                    Some(&bucket_key(&agent, &probe, day + DAY_MS)),
                    usize::MAX,
                )?
                .iter()
                .map(|(_, bytes)| {
                    Rollup::decode(bytes, HOUR_MS).map_err(corrupt(trees::ROLLUP_HOUR_SUMS))
                })
                .collect::<Result<Vec<_>>>()?;
            day_writes.push(Write::Put(
                bucket_key(&agent, &probe, day),
                Rollup::sum_of(&sums).encode(DAY_MS),
            ));
        }
        store.tree(trees::ROLLUP_DAYS)?.apply(day_writes)?;
        Ok(())
    }
}

/// Recomputes up to `limit` dirty buckets; returns how many.
///
/// # Errors
/// Store failure (the dirty marks stay, so the next pass retries).
pub fn recompute_dirty(store: &Store, limit: usize) -> Result<usize> {
    // No ingest batch may land between reading the marks and clearing them.
    let _exclusive = store.exclusive();
    let dirty = store.tree(trees::DIRTY)?;
    let state_index = store.tree(trees::STATE_INDEX)?;
    let marks = dirty.range(&[], None, limit)?;
    let mut pending = PendingBlocks::default();
    let mut cleared = Vec::with_capacity(marks.len());
    // Marks come in key order: a probe's minutes in time order, as the index rewrite needs.
    for (key, _) in &marks {
        cleared.push(Write::Delete(key.clone()));
        let Some((agent, probe, minute)) = parse_bucket_key(key) else {
            tracing::warn!(key = ?key, "Dropping a malformed dirty mark.");
            continue;
        };
        let minute = minute_of(minute);
        let observations: Vec<Observation> = store
            .observations(&agent, &probe, minute, minute + MINUTE_MS)?
            .into_iter()
            .map(Observation::from)
            .collect();
        let recount = MinuteRecount::compute(&observations, minute);
        let writes =
            index::rewrite_minute(&*state_index, &agent, &probe, minute, &recount.timeline)?;
        state_index.apply(writes)?;
        pending.set(store, &agent, &probe, &recount)?;
    }
    pending.write(store)?;
    // Buckets before marks: a crash in between leaves a mark, so the bucket is recomputed again.
    store.flush()?;
    dirty.apply(cleared)?;
    store.flush()?;
    Ok(marks.len())
}

/// Writes a probe's history of already-recounted minutes (in time order, all after anything
/// the probe has stored): buckets, day sums and the state index, as the rollup pass would
/// have written them from the raw results. For loading history (the benchmarks' loader).
///
/// # Errors
/// Store failure; minutes out of order.
pub fn append_history(
    store: &Store,
    agent: &str,
    probe: &str,
    minutes: &[MinuteRecount],
) -> Result<()> {
    let _exclusive = store.exclusive();
    let state_index = store.tree(trees::STATE_INDEX)?;
    if minutes.windows(2).any(|w| w[0].minute_ms >= w[1].minute_ms) {
        return Err(StoreError::CorruptRecord {
            tree: trees::ROLLUPS,
            detail: "history minutes out of order".to_owned(),
        });
    }
    let timelines: Vec<&[(crate::sla::Span, crate::sla::ProbeClass)]> =
        minutes.iter().map(|m| m.timeline.as_slice()).collect();
    let writes = index::append_writes(&*state_index, agent, probe, &timelines)?;
    let mut pending = PendingBlocks::default();
    for m in minutes {
        pending.set(store, agent, probe, m)?;
    }
    pending.write(store)?;
    state_index.apply(writes)?;
    store.flush()?;
    Ok(())
}

/// The minute rollups of one probe with minutes in `[from_ms, to_ms)`.
///
/// # Errors
/// Store failure or a corrupt record.
pub fn rollups(
    store: &Store,
    agent: &str,
    probe: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<(u64, Rollup)>> {
    let blocks = store.tree(trees::ROLLUPS)?.range(
        &bucket_key(agent, probe, hour_of(from_ms)),
        Some(&bucket_key(agent, probe, to_ms)),
        usize::MAX,
    )?;
    let mut out = Vec::new();
    for (k, v) in blocks {
        let Some((_, _, hour)) = parse_bucket_key(&k) else {
            continue;
        };
        let block = HourBlock::decode(&v).map_err(corrupt(trees::ROLLUPS))?;
        for (i, m) in block.minutes() {
            let minute = hour + i as u64 * MINUTE_MS;
            if minute >= from_ms && minute < to_ms {
                out.push((minute, m.clone()));
            }
        }
    }
    Ok(out)
}

/// Retention settings of the rollup task.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Raw results and samples are kept this long, ms.
    pub raw_ms: u64,
    /// Rollups are kept this long, ms.
    pub rollup_ms: u64,
}

/// How long the pass at shutdown may recompute dirty buckets. What is left stays marked (marks
/// are durable) and the first pass after the next start finishes it: a stop right after a
/// large backlog (330,000 dirty minutes for 2 M results) must not wait for all of it (issue 10:
/// SIGTERM within 10 s).
pub const FINAL_PASS_BUDGET: Duration = Duration::from_secs(2);

/// Recomputes dirty buckets, [`PASS_LIMIT`] at a time, until none is left, `stop` is
/// cancelled, or `until` passes (checked between passes, each of which is short); returns how
/// many.
///
/// # Errors
/// Store failure (the dirty marks stay, so the next pass retries).
pub fn recompute_all_dirty(
    store: &Store,
    stop: &CancellationToken,
    until: Option<std::time::Instant>,
) -> Result<usize> {
    let mut done = 0;
    loop {
        let n = recompute_dirty(store, PASS_LIMIT)?;
        done += n;
        if n < PASS_LIMIT
            || stop.is_cancelled()
            || until.is_some_and(|u| std::time::Instant::now() >= u)
        {
            return Ok(done);
        }
    }
}

/// Runs rollup passes every `every` and retention hourly, until `shutdown`; a final pass of at
/// most [`FINAL_PASS_BUDGET`] runs at shutdown so rollups are as current as that allows when
/// the collector stops. A pass running when `shutdown` comes ends after its current
/// [`PASS_LIMIT`] buckets.
pub async fn run(store: Store, retention: Retention, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = 0u64;
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let s = store.clone();
        let now = watchstand_shared::time::now_ms();
        // No retention work at shutdown: it can wait for the next start.
        let prune = !stopping && now.saturating_sub(last_prune) >= watchstand_shared::time::HOUR_MS;
        // The final pass runs after `shutdown`: it stops on its time budget instead.
        let (stop, until) = if stopping {
            (
                CancellationToken::new(),
                Some(std::time::Instant::now() + FINAL_PASS_BUDGET),
            )
        } else {
            (shutdown.clone(), None)
        };
        let outcome = tokio::task::spawn_blocking(move || -> Result<(usize, usize)> {
            let done = recompute_all_dirty(&s, &stop, until)?;
            if stopping && !s.tree(trees::DIRTY)?.is_empty()? {
                tracing::info!(
                    recomputed = done,
                    "Stopping with dirty rollup minutes left; the first pass after the next start recomputes them."
                );
            }
            let mut pruned = 0;
            if prune {
                pruned += s.prune_raw(now.saturating_sub(retention.raw_ms))?;
                let rollup_cutoff = now.saturating_sub(retention.rollup_ms);
                pruned += s.prune_series(trees::ROLLUPS, rollup_cutoff)?;
                pruned += s.prune_series(trees::ROLLUP_HOUR_SUMS, rollup_cutoff)?;
                pruned += s.prune_series(trees::ROLLUP_DAYS, rollup_cutoff)?;
                pruned += index::prune(&*s.tree(trees::STATE_INDEX)?, rollup_cutoff)?;
                s.flush()?;
            }
            Ok((done, pruned))
        })
        .await;
        match outcome {
            Ok(Ok((done, pruned))) => {
                if prune {
                    last_prune = now;
                }
                if done > 0 || pruned > 0 {
                    tracing::debug!(buckets = done, pruned, "Rollup pass.");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Rollup pass failed; dirty buckets stay marked.")
            }
            Err(e) => tracing::error!(error = %e, "Rollup task panicked."),
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use watchstand_shared::wire::v1::ProbeState;
    #[test]
    fn dirty_marks_cover_the_hold() {
        assert_eq!(dirty_marks("a", "p", 59_000, 10_000).len(), 2);
        assert_eq!(dirty_marks("a", "p", 1_000, 10_000).len(), 1);
        assert_eq!(dirty_marks("a", "p", 0, 86_400_000).len(), 121);
    }

    #[test]
    fn a_pass_with_a_spent_budget_or_a_stop_ends_after_one_pass_leaving_the_rest_marked() {
        let store = Store::in_memory();
        let dirty = store.tree(trees::DIRTY).expect("tree");
        // 2 × PASS_LIMIT + 5 marks: neither one pass nor two can clear them.
        let marks: Vec<Write> = (0..2 * PASS_LIMIT as u64 + 5)
            .map(|i| Write::Put(rollup_key("a", "p", i * MINUTE_MS), Vec::new()))
            .collect();
        dirty.apply(marks).expect("mark");
        let left = || dirty.range(&[], None, usize::MAX).expect("marks").len();
        let past = std::time::Instant::now();
        let done =
            recompute_all_dirty(&store, &CancellationToken::new(), Some(past)).expect("pass");
        assert_eq!(done, PASS_LIMIT, "one pass, then the spent budget ends it");
        assert_eq!(left(), PASS_LIMIT + 5);
        let stopped = CancellationToken::new();
        stopped.cancel();
        let done = recompute_all_dirty(&store, &stopped, None).expect("pass");
        assert_eq!(done, PASS_LIMIT, "one pass, then the stop ends it");
        assert_eq!(left(), 5);
        // Without a stop or a budget everything goes.
        let done = recompute_all_dirty(&store, &CancellationToken::new(), None).expect("pass");
        assert_eq!(done, 5);
        assert!(dirty.is_empty().expect("empty"));
    }

    #[test]
    fn recompute_equals_a_recount_after_late_results() {
        let store = Store::in_memory();
        let m = 100 * MINUTE_MS;
        let put = |seq: u64, at: u64, state| {
            let r = watchstand_shared::wire::v1::ProbeResult {
                seq,
                probe: "p".into(),
                kind: "http".into(),
                target: "t".into(),
                observed_ms: at,
                interval_ms: 10_000,
                state,
                latency_us: 100,
                error: None,
                metrics: Vec::new(),
            };
            store
                .tree(trees::RESULTS)
                .expect("tree")
                .apply(vec![Store::result_write("a", "boot", &r)])
                .expect("put");
            store
                .tree(trees::DIRTY)
                .expect("tree")
                .apply(dirty_marks("a", "p", at, 10_000))
                .expect("mark");
        };
        put(1, m, ProbeState::Up);
        recompute_dirty(&store, 100).expect("pass");
        let first = rollups(&store, "a", "p", m, m + MINUTE_MS).expect("read");
        assert_eq!(first[0].1.up_ms, 20_000);
        // A late result in the same minute changes the bucket to the recount.
        put(2, m + 10_000, ProbeState::Down);
        recompute_dirty(&store, 100).expect("pass");
        let second = rollups(&store, "a", "p", m, m + MINUTE_MS).expect("read");
        assert_eq!((second[0].1.up_ms, second[0].1.down_ms), (10_000, 20_000));
        assert_eq!((second[0].1.up, second[0].1.down), (1, 1));
        assert!(store
            .tree(trees::DIRTY)
            .expect("tree")
            .is_empty()
            .expect("len"));
    }
}
