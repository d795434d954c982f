//! Capacity rollups: per agent and metric, 5-minute and hourly buckets (min, max, mean, p95,
//! count) recounted from the raw samples, with the probe rollups' discipline: ingest marks the
//! 5-minute bucket of every stored sample in `capacity_dirty` ahead of the sample itself (same
//! commit); a pass recounts each marked bucket and its hour from the raw samples, flushes, and
//! only then clears the marks. A re-sent or late sample therefore makes both levels right
//! again, a pass repeated after a crash writes the same bytes, and every bucket that is not
//! marked equals a recount ([`verify`]).
//!
//! Keys: `agent \0 metric \0 bucket_start_ms` (8 bytes, big-endian) in `capacity_rollups`
//! (5-minute) and `capacity_hours`; values [`Bucket::encode`]. Retention: 5-minute buckets
//! `[capacity] five_minute_retention` (90 days), hourly `hourly_retention` (2 years); raw
//! samples are pruned with the raw results (`collector.raw_retention`). A marked bucket that
//! ends before the raw retention and already has a rollup keeps it: its samples are (being)
//! pruned, and a recount of what is left would lose them.
//!
//! Reads ([`read`]) take the coarsest level that still gives [`MIN_BUCKETS`] buckets over the
//! range (hourly, then 5-minute, then raw samples), within each level's retention.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use watchstand_shared::storage::Write;
use watchstand_shared::time::HOUR_MS;

use super::forecast::percentile;
use crate::store::{trees, Result, Store, StoreError};

/// A 5-minute bucket, ms.
pub const FIVE_MINUTES_MS: u64 = 300_000;
/// A read picks the coarsest level with at least this many buckets in its range.
pub const MIN_BUCKETS: u64 = 200;
/// Marks recomputed per pass (ingest waits while a pass runs).
const PASS_LIMIT: usize = 2_000;
/// First byte of an encoded bucket.
const BUCKET_FORMAT_V1: u8 = 1;

/// One bucket's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Samples in the bucket.
    pub count: u64,
    /// Lowest sample.
    pub min: f64,
    /// Highest sample.
    pub max: f64,
    /// Sum of the samples (the mean is `sum / count`).
    pub sum: f64,
    /// 95th percentile, nearest rank.
    pub p95: f64,
}

impl Bucket {
    /// The figures of `values` (in the order read; None when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        let first = *values.first()?;
        let (mut min, mut max, mut sum) = (first, first, 0.0);
        for v in values {
            min = min.min(*v);
            max = max.max(*v);
            sum += v;
        }
        let mut sorted = values.to_vec();
        Some(Self {
            count: values.len() as u64,
            min,
            max,
            sum,
            p95: percentile(&mut sorted, 95.0).unwrap_or(max),
        })
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// The stored form: the format byte, then count, min, max, sum, p95 big-endian (41 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41);
        out.push(BUCKET_FORMAT_V1);
        out.extend_from_slice(&self.count.to_be_bytes());
        for f in [self.min, self.max, self.sum, self.p95] {
            out.extend_from_slice(&f.to_be_bytes());
        }
        out
    }

    /// Decodes [`Self::encode`]'s bytes.
    ///
    /// # Errors
    /// Anything else (corruption), naming `tree`.
    pub fn decode(tree: &'static str, bytes: &[u8]) -> Result<Self> {
        let word =
            |i: usize| -> Option<[u8; 8]> { bytes.get(1 + i * 8..9 + i * 8)?.try_into().ok() };
        let parsed = (bytes.len() == 41 && bytes[0] == BUCKET_FORMAT_V1)
            .then(|| {
                Some(Self {
                    count: u64::from_be_bytes(word(0)?),
                    min: f64::from_be_bytes(word(1)?),
                    max: f64::from_be_bytes(word(2)?),
                    sum: f64::from_be_bytes(word(3)?),
                    p95: f64::from_be_bytes(word(4)?),
                })
            })
            .flatten();
        parsed.ok_or_else(|| StoreError::CorruptRecord {
            tree,
            detail: format!("capacity bucket of {} bytes is malformed", bytes.len()),
        })
    }
}

/// The key of a bucket (and of a dirty mark): the store's bucket key ([`trees::bucket_key`]).
pub fn bucket_key(agent: &str, metric: &str, start_ms: u64) -> Vec<u8> {
    trees::bucket_key(agent, metric, start_ms)
}

/// The dirty mark of the 5-minute bucket a sample observed at `observed_ms` falls in.
pub fn dirty_key(agent: &str, metric: &str, observed_ms: u64) -> Vec<u8> {
    bucket_key(agent, metric, five_minutes_of(observed_ms))
}

/// `(agent, metric, start_ms)` of a bucket key ([`trees::parse_bucket_key`]).
pub fn parse_key(key: &[u8]) -> Option<(String, String, u64)> {
    trees::parse_bucket_key(key)
}

/// The start of the 5-minute bucket `at_ms` falls in.
pub const fn five_minutes_of(at_ms: u64) -> u64 {
    at_ms - at_ms % FIVE_MINUTES_MS
}

/// The start of the hour `at_ms` falls in.
pub const fn hour_of(at_ms: u64) -> u64 {
    at_ms - at_ms % HOUR_MS
}

fn samples(store: &Store, agent: &str, metric: &str, from: u64, to: u64) -> Result<Vec<f64>> {
    Ok(store
        .capacity_series(agent, metric, from, to)?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// The write that makes `tree`'s bucket the recount of `values`.
fn bucket_write(agent: &str, metric: &str, start: u64, values: &[f64]) -> Write {
    let key = bucket_key(agent, metric, start);
    match Bucket::of(values) {
        Some(b) => Write::Put(key, b.encode()),
        None => Write::Delete(key),
    }
}

/// Recomputes up to `limit` marked 5-minute buckets and their hours; returns how many marks
/// were taken. Buckets ending at or before `raw_floor_ms` that already have a rollup keep it
/// (see the module docs).
///
/// # Errors
/// Store failure (the marks stay, so the next pass retries).
pub fn recompute_dirty(store: &Store, limit: usize, raw_floor_ms: u64) -> Result<usize> {
    // No ingest batch may land between reading the marks and clearing them.
    let _exclusive = store.exclusive();
    let dirty = store.tree(trees::CAPACITY_DIRTY)?;
    let fives = store.tree(trees::CAPACITY_ROLLUPS)?;
    let marks = dirty.range(&[], None, limit)?;
    let mut five_writes = Vec::new();
    let mut hours: BTreeSet<(String, String, u64)> = BTreeSet::new();
    let mut cleared = Vec::with_capacity(marks.len());
    for (key, _) in &marks {
        cleared.push(Write::Delete(key.clone()));
        let Some((agent, metric, start)) = parse_key(key) else {
            tracing::warn!(key = ?key, "Dropping a malformed capacity dirty mark.");
            continue;
        };
        let start = five_minutes_of(start);
        if start + FIVE_MINUTES_MS <= raw_floor_ms
            && fives.get(&bucket_key(&agent, &metric, start))?.is_some()
        {
            continue;
        }
        let values = samples(store, &agent, &metric, start, start + FIVE_MINUTES_MS)?;
        five_writes.push(bucket_write(&agent, &metric, start, &values));
        hours.insert((agent, metric, hour_of(start)));
    }
    let mut hour_writes = Vec::with_capacity(hours.len());
    for (agent, metric, hour) in hours {
        let values = samples(store, &agent, &metric, hour, hour + HOUR_MS)?;
        hour_writes.push(bucket_write(&agent, &metric, hour, &values));
    }
    fives.apply(five_writes)?;
    store.tree(trees::CAPACITY_HOURS)?.apply(hour_writes)?;
    // Buckets before marks: a crash in between leaves a mark, so the bucket is recomputed again.
    store.flush()?;
    dirty.apply(cleared)?;
    store.flush()?;
    Ok(marks.len())
}

/// Recomputes every marked bucket (passes of [`PASS_LIMIT`]); returns how many.
///
/// # Errors
/// Store failure.
pub fn recompute_all(store: &Store, raw_floor_ms: u64) -> Result<usize> {
    let mut done = 0;
    loop {
        let n = recompute_dirty(store, PASS_LIMIT, raw_floor_ms)?;
        done += n;
        if n < PASS_LIMIT {
            return Ok(done);
        }
    }
}

/// Retention of the capacity rollup task, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples (pruned by the probe rollup task with the raw results; used here for the
    /// raw floor).
    pub raw_ms: u64,
    /// 5-minute buckets.
    pub five_minutes_ms: u64,
    /// Hourly buckets.
    pub hours_ms: u64,
}

/// Prunes buckets past their retention; returns how many. Not flushed.
///
/// # Errors
/// Store failure.
pub fn prune(store: &Store, retention: Retention, now_ms: u64) -> Result<usize> {
    Ok(store.prune_series(
        trees::CAPACITY_ROLLUPS,
        now_ms.saturating_sub(retention.five_minutes_ms),
    )? + store.prune_series(
        trees::CAPACITY_HOURS,
        now_ms.saturating_sub(retention.hours_ms),
    )?)
}

/// Runs capacity rollup passes every `every` and retention hourly until `shutdown`, with a
/// final pass at shutdown.
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
        let due = now.saturating_sub(last_prune) >= HOUR_MS;
        let outcome = tokio::task::spawn_blocking(move || -> Result<(usize, usize)> {
            let done = recompute_all(&s, now.saturating_sub(retention.raw_ms))?;
            let pruned = if due {
                let n = prune(&s, retention, now)?;
                s.flush()?;
                n
            } else {
                0
            };
            Ok((done, pruned))
        })
        .await;
        match outcome {
            Ok(Ok((done, pruned))) => {
                if due {
                    last_prune = now;
                }
                if done > 0 || pruned > 0 {
                    tracing::debug!(marks = done, pruned, "Capacity rollup pass.");
                }
            }
            Ok(Err(e)) => tracing::error!(
                error = %e,
                "Capacity rollup pass failed; dirty buckets stay marked."
            ),
            Err(e) => tracing::error!(error = %e, "Capacity rollup task panicked."),
        }
        if stopping {
            break;
        }
    }
}

/// The resolution a read used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Raw samples (each point one sample).
    Raw,
    /// 5-minute buckets.
    FiveMinutes,
    /// Hourly buckets.
    Hour,
}

impl Resolution {
    /// A bucket's length, ms (0 for raw samples).
    pub const fn bucket_ms(self) -> u64 {
        match self {
            Resolution::Raw => 0,
            Resolution::FiveMinutes => FIVE_MINUTES_MS,
            Resolution::Hour => HOUR_MS,
        }
    }
}

/// One point of a read: a bucket (stamped at its middle) or a raw sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// The bucket's middle, or the sample's time, epoch ms.
    pub at_ms: u64,
    /// The figures (a raw sample is a bucket of one).
    #[serde(flatten)]
    pub bucket: Bucket,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Which level was read.
    pub resolution: Resolution,
    /// Points in time order.
    pub points: Vec<SeriesPoint>,
}

/// The resolution [`read`] uses for `[from_ms, to_ms)` at `now_ms`.
pub fn resolution_for(from_ms: u64, to_ms: u64, now_ms: u64, retention: Retention) -> Resolution {
    let span = to_ms.saturating_sub(from_ms);
    let raw_from = now_ms.saturating_sub(retention.raw_ms);
    let five_from = now_ms.saturating_sub(retention.five_minutes_ms);
    if span / HOUR_MS >= MIN_BUCKETS || from_ms < five_from {
        Resolution::Hour
    } else if span / FIVE_MINUTES_MS >= MIN_BUCKETS || from_ms < raw_from {
        Resolution::FiveMinutes
    } else {
        Resolution::Raw
    }
}

/// One metric over `[from_ms, to_ms)` at the coarsest level that resolves it (see the module
/// docs). Bucket levels cover whole buckets that start in the range.
///
/// # Errors
/// Store failure or a corrupt bucket.
pub fn read(
    store: &Store,
    agent: &str,
    metric: &str,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
    retention: Retention,
) -> Result<Series> {
    let resolution = resolution_for(from_ms, to_ms, now_ms, retention);
    let tree = match resolution {
        Resolution::Raw => {
            let points = store
                .capacity_series(agent, metric, from_ms, to_ms)?
                .into_iter()
                .map(|(at_ms, v)| SeriesPoint {
                    at_ms,
                    bucket: Bucket {
                        count: 1,
                        min: v,
                        max: v,
                        sum: v,
                        p95: v,
                    },
                })
                .collect();
            return Ok(Series { resolution, points });
        }
        Resolution::FiveMinutes => trees::CAPACITY_ROLLUPS,
        Resolution::Hour => trees::CAPACITY_HOURS,
    };
    let size = resolution.bucket_ms();
    let mut points = Vec::new();
    for (k, v) in store.tree(tree)?.range(
        &bucket_key(agent, metric, from_ms),
        Some(&bucket_key(agent, metric, to_ms)),
        usize::MAX,
    )? {
        let Some((_, _, start)) = parse_key(&k) else {
            continue;
        };
        points.push(SeriesPoint {
            at_ms: start + size / 2,
            bucket: Bucket::decode(tree, &v)?,
        });
    }
    Ok(Series { resolution, points })
}

/// The newest raw sample of a metric, `(at_ms, value)`.
///
/// # Errors
/// Store failure.
pub fn latest(store: &Store, agent: &str, metric: &str) -> Result<Option<(u64, f64)>> {
    let prefix = trees::probe_prefix(agent, metric);
    let end = bucket_key(agent, metric, u64::MAX);
    let mut last = store
        .tree(trees::CAPACITY)?
        .range_rev(&prefix, Some(&end), 1)?;
    // `end` itself (a sample at u64::MAX) is not in the range; no real sample is there.
    Ok(last.pop().and_then(|(k, v)| {
        let (_, _, at) = parse_key(&k)?;
        let bytes: [u8; 8] = v.as_slice().try_into().ok()?;
        Some((at, f64::from_be_bytes(bytes)))
    }))
}

/// What [`verify`] found for the capacity rollups.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapacityCheck {
    /// Buckets (5-minute and hourly) compared with a recount.
    pub checked: u64,
    /// Buckets that differ from the recount (or exist without samples, or are missing).
    pub wrong: u64,
}

/// Compares every capacity bucket that is not marked dirty with a recount of the raw samples.
/// The bucket holding a series' oldest raw sample, and everything before it, is skipped:
/// retention may have pruned part of it.
///
/// # Errors
/// Store failure or a corrupt bucket.
pub fn verify(store: &Store) -> Result<CapacityCheck> {
    let dirty: BTreeSet<Vec<u8>> = store
        .tree(trees::CAPACITY_DIRTY)?
        .scan_prefix(&[])?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    // Every raw sample, grouped by series.
    let mut series: BTreeMap<(String, String), Vec<(u64, f64)>> = BTreeMap::new();
    for (k, v) in store.tree(trees::CAPACITY)?.scan_prefix(&[])? {
        let Some((agent, metric, at)) = parse_key(&k) else {
            continue;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(v.as_slice()) else {
            continue;
        };
        series
            .entry((agent, metric))
            .or_default()
            .push((at, f64::from_be_bytes(bytes)));
    }
    let mut check = CapacityCheck::default();
    for ((agent, metric), samples) in &series {
        let Some(oldest) = samples.first().map(|s| s.0) else {
            continue;
        };
        for (tree, size) in [
            (trees::CAPACITY_ROLLUPS, FIVE_MINUTES_MS),
            (trees::CAPACITY_HOURS, HOUR_MS),
        ] {
            let from = oldest - oldest % size + size;
            let mut expected: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for (at, v) in samples.iter().filter(|s| s.0 >= from) {
                expected.entry(at - at % size).or_default().push(*v);
            }
            let mut stored: BTreeMap<u64, Bucket> = BTreeMap::new();
            for (k, v) in store.tree(tree)?.range(
                &bucket_key(agent, metric, from),
                Some(&bucket_key(agent, metric, u64::MAX)),
                usize::MAX,
            )? {
                if let Some((_, _, start)) = parse_key(&k) {
                    stored.insert(start, Bucket::decode(tree, &v)?);
                }
            }
            let starts: BTreeSet<u64> = expected.keys().chain(stored.keys()).copied().collect();
            for start in starts {
                // A bucket is unsettled while any of its 5-minute marks is pending.
                let pending = (start..start + size)
                    .step_by(FIVE_MINUTES_MS as usize)
                    .any(|s| dirty.contains(&bucket_key(agent, metric, s)));
                if pending {
                    continue;
                }
                check.checked += 1;
                let recount = expected.get(&start).and_then(|v| Bucket::of(v));
                if recount != stored.get(&start).copied() {
                    check.wrong += 1;
                }
            }
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{capacity_key, StoreBatch};

    const T0: u64 = 1_700_006_400_000;

    fn ingest(store: &Store, agent: &str, metric: &str, samples: &[(u64, f64)]) {
        let mut batch = StoreBatch::default();
        for (at, v) in samples {
            batch.mark_capacity_dirty(dirty_key(agent, metric, *at));
            batch.push(
                trees::CAPACITY,
                Write::Put(capacity_key(agent, metric, *at), v.to_be_bytes().to_vec()),
            );
        }
        store.commit(batch).expect("commit");
    }

    #[test]
    fn buckets_equal_a_recount_after_late_and_resent_samples() {
        let store = Store::in_memory();
        let samples: Vec<(u64, f64)> = (0..240).map(|i| (T0 + i * 30_000, i as f64)).collect();
        ingest(&store, "a", "cpu_pct", &samples[..200]);
        assert_eq!(recompute_all(&store, 0).expect("pass"), 20);
        // Late samples in old buckets, and a re-send of some already stored.
        ingest(&store, "a", "cpu_pct", &samples[100..]);
        recompute_all(&store, 0).expect("pass");
        let check = verify(&store).expect("verify");
        // 24 five-minute buckets and 2 hours, less the first of each (holding the oldest
        // sample).
        assert_eq!(
            check,
            CapacityCheck {
                checked: 23 + 1,
                wrong: 0
            }
        );
        let five = Bucket::decode(
            trees::CAPACITY_ROLLUPS,
            &store
                .tree(trees::CAPACITY_ROLLUPS)
                .unwrap()
                .get(&bucket_key("a", "cpu_pct", T0 + FIVE_MINUTES_MS))
                .unwrap()
                .expect("bucket"),
        )
        .unwrap();
        assert_eq!(
            five,
            Bucket {
                count: 10,
                min: 10.0,
                max: 19.0,
                sum: (10..20).sum::<i32>() as f64,
                p95: 19.0
            }
        );
        // A tampered bucket is found.
        store
            .tree(trees::CAPACITY_HOURS)
            .unwrap()
            .put(
                &bucket_key("a", "cpu_pct", T0 + HOUR_MS),
                &Bucket::of(&[1.0]).unwrap().encode(),
            )
            .unwrap();
        assert_eq!(verify(&store).unwrap().wrong, 1);
    }

    #[test]
    fn a_bucket_past_raw_retention_keeps_its_rollup() {
        let store = Store::in_memory();
        ingest(&store, "a", "m", &[(T0, 1.0), (T0 + 1_000, 3.0)]);
        recompute_all(&store, 0).unwrap();
        // Raw pruned, then a late sample for the same bucket: the rollup stays.
        store.prune_raw(T0 + 2_000).unwrap();
        ingest(&store, "a", "m", &[(T0 + 500, 2.0)]);
        recompute_all(&store, T0 + HOUR_MS).unwrap();
        let got = read(
            &store,
            "a",
            "m",
            T0,
            T0 + FIVE_MINUTES_MS * MIN_BUCKETS,
            T0 + DAY,
            Retention {
                raw_ms: DAY,
                five_minutes_ms: 90 * DAY,
                hours_ms: 730 * DAY,
            },
        )
        .unwrap();
        assert_eq!(got.resolution, Resolution::FiveMinutes);
        assert_eq!(got.points[0].bucket.count, 2);
    }

    const DAY: u64 = 86_400_000;

    #[test]
    fn reads_take_the_coarsest_level_that_resolves_the_range() {
        let r = Retention {
            raw_ms: 35 * DAY,
            five_minutes_ms: 90 * DAY,
            hours_ms: 730 * DAY,
        };
        let now = T0 + 1_000 * DAY;
        assert_eq!(
            resolution_for(now - 30 * DAY, now, now, r),
            Resolution::Hour
        );
        assert_eq!(
            resolution_for(now - DAY, now, now, r),
            Resolution::FiveMinutes
        );
        assert_eq!(
            resolution_for(now - 6 * HOUR_MS, now, now, r),
            Resolution::Raw
        );
        // Past the raw retention a short range reads 5-minute buckets, past theirs hours.
        assert_eq!(
            resolution_for(now - 40 * DAY, now - 40 * DAY + HOUR_MS, now, r),
            Resolution::FiveMinutes
        );
        assert_eq!(
            resolution_for(now - 100 * DAY, now - 99 * DAY, now, r),
            Resolution::Hour
        );
    }

    #[test]
    fn malformed_buckets_are_corrupt_not_panics() {
        let good = Bucket::of(&[1.0, 2.0]).unwrap().encode();
        assert_eq!(Bucket::decode("t", &good).unwrap().count, 2);
        for cut in 0..good.len() {
            assert!(Bucket::decode("t", &good[..cut]).is_err());
        }
        let mut bad = good;
        bad[0] = 9;
        assert!(Bucket::decode("t", &bad).is_err());
        assert_eq!(parse_key(b"a\0m"), None);
    }
}
