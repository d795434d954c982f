//! Per-probe per-minute rollups, recomputed from raw results, and retention.
//!
//! Ingest marks every minute a stored result can affect as dirty (its own minute and the minutes
//! its state may hold into: up to 2 × interval). The rollup task periodically takes the dirty
//! marks and recomputes each bucket from the raw results (plus the result before the minute that
//! may still hold into it), so a late or re-sent result simply makes the bucket right again:
//! rollups always equal a recount of the raw data, never an increment that could be applied
//! twice.
//!
//! A bucket holds checks counted by state, time by state within the minute (the holding rule of
//! [`crate::sla::probe_timeline`]) and an hdrhistogram of latency with the shared bounds
//! ([`crate::sla::new_latency_histogram`]). It is stored as seven big-endian `u32`s followed by
//! the histogram in hdrhistogram's V2 format.
//!
//! The same task prunes raw data older than `raw_retention` and rollups older than
//! `rollup_retention`.

use std::time::Duration;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use watchstand_shared::storage::key::{read_u64, KeyBuf};
use watchstand_shared::storage::Write;
use watchstand_shared::time::MINUTE_MS;
use watchstand_shared::wire::v1::ProbeState;

use crate::sla::{
    new_latency_histogram, probe_timeline, record_latency, Observation, ProbeClass, ProbeInput,
    Span,
};
use crate::store::{trees, Result, Store, StoreError};

/// Minutes after a result's own minute that it may still hold into are marked dirty, at most
/// this many (a one-hour interval holds for two hours).
const MAX_DIRTY_MINUTES: u64 = 120;
/// Dirty buckets recomputed per pass (ingest waits while a pass runs).
const PASS_LIMIT: usize = 2_000;

/// One probe-minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    /// Checks that said up.
    pub up: u32,
    /// Checks that said degraded.
    pub degraded: u32,
    /// Checks that said down.
    pub down: u32,
    /// Time held up within the minute, ms.
    pub up_ms: u32,
    /// Time held degraded, ms.
    pub degraded_ms: u32,
    /// Time held down, ms.
    pub down_ms: u32,
    /// Time unknown (no result holds), ms.
    pub unknown_ms: u32,
    /// Latency of the checks in the minute, µs.
    pub latency: Histogram<u64>,
}

impl Rollup {
    /// Recounts one minute from `observations` (sorted; may include the one before the minute).
    pub fn compute(observations: &[Observation], minute_ms: u64) -> Self {
        let span = Span {
            from_ms: minute_ms,
            to_ms: minute_ms + MINUTE_MS,
        };
        let mut r = Rollup {
            up: 0,
            degraded: 0,
            down: 0,
            up_ms: 0,
            degraded_ms: 0,
            down_ms: 0,
            unknown_ms: 0,
            latency: new_latency_histogram(),
        };
        for o in observations.iter().filter(|o| span.contains(o.at_ms)) {
            match o.state {
                ProbeState::Up => r.up += 1,
                ProbeState::Degraded => r.degraded += 1,
                ProbeState::Down => r.down += 1,
            }
            record_latency(&mut r.latency, o.latency_us);
        }
        let input = ProbeInput {
            observations: observations.to_vec(),
            lost: Vec::new(),
        };
        for (s, class) in probe_timeline(&input, span) {
            // A minute is 60,000 ms: every duration fits a u32.
            let ms = u32::try_from(s.to_ms - s.from_ms).unwrap_or(u32::MAX);
            match class {
                ProbeClass::Up => r.up_ms += ms,
                ProbeClass::Degraded => r.degraded_ms += ms,
                ProbeClass::Down => r.down_ms += ms,
                ProbeClass::Unknown => r.unknown_ms += ms,
            }
        }
        r
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for n in [
            self.up,
            self.degraded,
            self.down,
            self.up_ms,
            self.degraded_ms,
            self.down_ms,
            self.unknown_ms,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        // Writing into a Vec cannot fail, and the histogram is ours (no overflowed counts).
        if let Err(e) = V2Serializer::new().serialize(&self.latency, &mut out) {
            tracing::error!(error = %e, "Latency histogram did not serialise; stored without it.");
        }
        out
    }

    /// Decodes stored bytes.
    ///
    /// # Errors
    /// The bytes are not a rollup.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |detail: String| StoreError::CorruptRecord {
            tree: trees::ROLLUPS,
            detail,
        };
        if bytes.len() < 28 {
            return Err(corrupt(format!(
                "{} bytes, shorter than the 28-byte header",
                bytes.len()
            )));
        }
        let mut n = [0u32; 7];
        for (i, chunk) in bytes[..28].chunks_exact(4).enumerate() {
            n[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let latency = if bytes.len() == 28 {
            new_latency_histogram()
        } else {
            Deserializer::new()
                .deserialize(&mut &bytes[28..])
                .map_err(|e| corrupt(format!("latency histogram: {e:?}")))?
        };
        Ok(Self {
            up: n[0],
            degraded: n[1],
            down: n[2],
            up_ms: n[3],
            degraded_ms: n[4],
            down_ms: n[5],
            unknown_ms: n[6],
            latency,
        })
    }
}

/// Key of a probe-minute (the same key in `rollups` and `dirty`).
pub fn rollup_key(agent: &str, probe: &str, minute_ms: u64) -> Vec<u8> {
    KeyBuf::new().str(agent).str(probe).u64(minute_ms).build()
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

/// Splits a rollup key into (agent, probe, minute).
fn parse_key(key: &[u8]) -> Option<(String, String, u64)> {
    let mut parts = key.splitn(3, |b| *b == 0);
    let agent = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let probe = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let minute = read_u64(parts.next()?, 0)?;
    Some((agent, probe, minute))
}

/// Recomputes up to `limit` dirty buckets; returns how many.
///
/// # Errors
/// Store failure (the dirty marks stay, so the next pass retries).
pub fn recompute_dirty(store: &Store, limit: usize) -> Result<usize> {
    // No ingest batch may land between reading the marks and clearing them.
    let _exclusive = store.exclusive();
    let dirty = store.tree(trees::DIRTY)?;
    let marks = dirty.range(&[], None, limit)?;
    let mut rollups = Vec::with_capacity(marks.len());
    let mut cleared = Vec::with_capacity(marks.len());
    for (key, _) in &marks {
        cleared.push(Write::Delete(key.clone()));
        let Some((agent, probe, minute)) = parse_key(key) else {
            tracing::warn!(key = ?key, "Dropping a malformed dirty mark.");
            continue;
        };
        let observations: Vec<Observation> = store
            .observations(&agent, &probe, minute, minute + MINUTE_MS)?
            .into_iter()
            .map(|r| r.observation())
            .collect();
        rollups.push(Write::Put(
            key.clone(),
            Rollup::compute(&observations, minute).encode(),
        ));
    }
    store.tree(trees::ROLLUPS)?.apply(rollups)?;
    // Rollups before marks: a crash in between leaves a mark, so the bucket is recomputed again.
    store.flush()?;
    dirty.apply(cleared)?;
    store.flush()?;
    Ok(marks.len())
}

/// The rollups of one probe with minutes in `[from_ms, to_ms)`.
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
    let start = rollup_key(agent, probe, from_ms);
    let end = rollup_key(agent, probe, to_ms);
    store
        .tree(trees::ROLLUPS)?
        .range(&start, Some(&end), usize::MAX)?
        .into_iter()
        .filter_map(|(k, v)| parse_key(&k).map(|(_, _, m)| (m, v)))
        .map(|(m, v)| Ok((m, Rollup::decode(&v)?)))
        .collect()
}

/// Retention settings of the rollup task.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Raw results and samples are kept this long, ms.
    pub raw_ms: u64,
    /// Rollups are kept this long, ms.
    pub rollup_ms: u64,
}

/// Runs rollup passes every `every` and retention hourly, until `shutdown`; a final pass runs at
/// shutdown so rollups are current when the collector stops.
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
        let prune = now.saturating_sub(last_prune) >= watchstand_shared::time::HOUR_MS;
        let outcome = tokio::task::spawn_blocking(move || -> Result<(usize, usize)> {
            let mut done = 0;
            loop {
                let n = recompute_dirty(&s, PASS_LIMIT)?;
                done += n;
                if n < PASS_LIMIT {
                    break;
                }
            }
            let mut pruned = 0;
            if prune {
                pruned += s.prune_raw(now.saturating_sub(retention.raw_ms))?;
                pruned +=
                    s.prune_series(trees::ROLLUPS, now.saturating_sub(retention.rollup_ms))?;
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

    fn obs(at_ms: u64, state: ProbeState, latency_us: u64) -> Observation {
        Observation {
            at_ms,
            state,
            latency_us,
            interval_ms: 10_000,
        }
    }

    #[test]
    fn a_minute_counts_checks_and_time_by_state_with_the_hold_from_before() {
        let m = 10 * MINUTE_MS;
        // Down at m-5s holds into the minute until the up at m+15s; down at m+45s holds to the end.
        let o = [
            obs(m - 5_000, ProbeState::Down, 900),
            obs(m + 15_000, ProbeState::Up, 1_000),
            obs(m + 25_000, ProbeState::Up, 2_000),
            obs(m + 35_000, ProbeState::Degraded, 3_000),
            obs(m + 45_000, ProbeState::Down, 4_000),
        ];
        let r = Rollup::compute(&o, m);
        assert_eq!((r.up, r.degraded, r.down), (2, 1, 1));
        assert_eq!(
            (r.up_ms, r.degraded_ms, r.down_ms, r.unknown_ms),
            (20_000, 10_000, 30_000, 0)
        );
        assert_eq!(r.latency.len(), 4);
    }

    #[test]
    fn time_past_twice_the_interval_is_unknown() {
        let m = 0;
        let r = Rollup::compute(&[obs(1_000, ProbeState::Up, 10)], m);
        assert_eq!((r.up_ms, r.unknown_ms), (20_000, 40_000));
    }

    #[test]
    fn rollups_round_trip_and_reject_garbage() {
        let m = 5 * MINUTE_MS;
        let r = Rollup::compute(&[obs(m + 1, ProbeState::Up, 1_234)], m);
        let back = Rollup::decode(&r.encode()).expect("decodes");
        assert_eq!(back, r);
        let err = Rollup::decode(&[1, 2, 3]).expect_err("too short");
        assert!(
            err.to_string().contains("shorter than the 28-byte header"),
            "{err}"
        );
    }

    #[test]
    fn dirty_marks_cover_the_hold() {
        assert_eq!(dirty_marks("a", "p", 59_000, 10_000).len(), 2);
        assert_eq!(dirty_marks("a", "p", 1_000, 10_000).len(), 1);
        assert_eq!(dirty_marks("a", "p", 0, 86_400_000).len(), 121);
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
