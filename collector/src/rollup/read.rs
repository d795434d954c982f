//! What the SLA read path takes from the rollups: how far they are current for a probe (its
//! horizon), and the checks and latencies over a span, added up from the coarsest buckets that
//! fit — whole days from the day sums, whole hours from the hour sums, whole minutes
//! from the blocks' minutes. About 30 day sums and at most a few dozen blocks per probe for a
//! 30-day window, whatever the check rate.

use watchstand_shared::storage::key::prefix_end;
use watchstand_shared::time::{DAY_MS, HOUR_MS};

use super::block::{bucket_key, parse_bucket_key};
use super::bucket::Rollup;
use super::corrupt;
use crate::store::{probe_prefix, trees, Result, Store};

/// The first minute of the probe that the rollups do not yet hold as recounted (its earliest
/// dirty mark), or `None` when every stored result is rolled up. Before it the rollups and
/// the state index are exact; from it on the raw results must be read.
///
/// # Errors
/// Store failure.
pub fn horizon(store: &Store, agent: &str, probe: &str) -> Result<Option<u64>> {
    let prefix = probe_prefix(agent, probe);
    let end = prefix_end(&prefix);
    Ok(store
        .tree(trees::DIRTY)?
        .range(&prefix, end.as_deref(), 1)?
        .first()
        .and_then(|(k, _)| parse_bucket_key(k))
        .map(|(_, _, minute)| minute))
}

const fn ceil_to(t: u64, unit: u64) -> u64 {
    t.div_ceil(unit) * unit
}

const fn floor_to(t: u64, unit: u64) -> u64 {
    t - t % unit
}

/// Where [`tally`] adds the buckets it reads.
pub trait BucketSink {
    /// Adds one bucket.
    fn add(&mut self, bucket: &Rollup);

    /// Adds one encoded bucket (an hour or day sum).
    ///
    /// # Errors
    /// The bytes are not a rollup.
    fn add_encoded(&mut self, bytes: &[u8], full_ms: u64) -> std::result::Result<(), String> {
        self.add(&Rollup::decode(bytes, full_ms)?);
        Ok(())
    }
}

impl BucketSink for Rollup {
    fn add(&mut self, bucket: &Rollup) {
        Rollup::add(self, bucket);
    }
}

impl BucketSink for crate::sla::LatencyTally {
    fn add(&mut self, bucket: &Rollup) {
        self.add_rollup(bucket.checks(), &bucket.latency);
    }

    fn add_encoded(&mut self, bytes: &[u8], _full_ms: u64) -> std::result::Result<(), String> {
        // Streamed: no bucket is built, no pair list allocated.
        let mut checks = 0;
        Rollup::visit_checks(bytes, |n| checks = n, |value, n| self.add_bucket(value, n))?;
        self.add_checks(checks);
        Ok(())
    }
}

/// The sum of the probe's buckets over `[from_ms, to_ms)`, both whole minutes.
///
/// # Errors
/// Store failure or a corrupt record.
pub fn sum(store: &Store, agent: &str, probe: &str, from_ms: u64, to_ms: u64) -> Result<Rollup> {
    let mut total = Rollup::default();
    tally(store, agent, probe, from_ms, to_ms, &mut total)?;
    Ok(total)
}

/// Adds the probe's buckets over `[from_ms, to_ms)` (both whole minutes) to `total`, the
/// coarsest that fit first.
///
/// # Errors
/// Store failure or a corrupt record.
pub fn tally(
    store: &Store,
    agent: &str,
    probe: &str,
    from_ms: u64,
    to_ms: u64,
    total: &mut impl BucketSink,
) -> Result<()> {
    if from_ms >= to_ms {
        return Ok(());
    }
    let (ha, hb) = (ceil_to(from_ms, HOUR_MS), floor_to(to_ms, HOUR_MS));
    if ha >= hb {
        return add_minutes(store, agent, probe, from_ms, to_ms, total);
    }
    add_minutes(store, agent, probe, from_ms, ha, total)?;
    add_minutes(store, agent, probe, hb, to_ms, total)?;
    let (da, db) = (ceil_to(ha, DAY_MS), floor_to(hb, DAY_MS));
    if da >= db {
        add_hours(store, agent, probe, ha, hb, total)?;
    } else {
        add_hours(store, agent, probe, ha, da, total)?;
        add_days(store, agent, probe, da, db, total)?;
        add_hours(store, agent, probe, db, hb, total)?;
    }
    Ok(())
}

/// Whole minutes from the hour blocks.
fn add_minutes(
    store: &Store,
    agent: &str,
    probe: &str,
    from_ms: u64,
    to_ms: u64,
    total: &mut impl BucketSink,
) -> Result<()> {
    if from_ms < to_ms {
        for (_, m) in super::rollups(store, agent, probe, from_ms, to_ms)? {
            total.add(&m);
        }
    }
    Ok(())
}

/// Whole hours from the hour sums.
fn add_hours(
    store: &Store,
    agent: &str,
    probe: &str,
    from_ms: u64,
    to_ms: u64,
    total: &mut impl BucketSink,
) -> Result<()> {
    let span = (from_ms, to_ms);
    add_sums(
        store,
        trees::ROLLUP_HOUR_SUMS,
        HOUR_MS,
        agent,
        probe,
        span,
        total,
    )
}

/// Whole days from the day sums.
fn add_days(
    store: &Store,
    agent: &str,
    probe: &str,
    from_ms: u64,
    to_ms: u64,
    total: &mut impl BucketSink,
) -> Result<()> {
    let span = (from_ms, to_ms);
    add_sums(store, trees::ROLLUP_DAYS, DAY_MS, agent, probe, span, total)
}

/// The encoded sums of `tree` (buckets of `full_ms`) starting in `[from, to)`.
fn add_sums(
    store: &Store,
    tree: &'static str,
    full_ms: u64,
    agent: &str,
    probe: &str,
    (from_ms, to_ms): (u64, u64),
    total: &mut impl BucketSink,
) -> Result<()> {
    if from_ms >= to_ms {
        return Ok(());
    }
    let sums = store.tree(tree)?.range(
        &bucket_key(agent, probe, from_ms),
        Some(&bucket_key(agent, probe, to_ms)),
        usize::MAX,
    )?;
    for (_, v) in sums {
        total.add_encoded(&v, full_ms).map_err(corrupt(tree))?;
    }
    Ok(())
}
