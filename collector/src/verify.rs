//! The store's invariant checker, for crash tests and for an operator who wants proof: run on a
//! store that no collector holds open.
//!
//! - every (agent, boot, seq) is stored at most once among the raw results;
//! - every boot's acknowledged watermark is contiguous: each seq `1..=watermark` is a stored
//!   result or inside a stored gap record (capacity samples are stored per metric without their
//!   seq, so boots that sent samples are checked for results and gaps only, and their sample
//!   seqs are reported as `unverified`);
//! - every rollup bucket that is not marked dirty equals a recount of the raw results, and so
//!   does the state index over that minute; every hour and day sum equals the sum of its
//!   minutes;
//! - every capacity 5-minute and hourly bucket that is not marked dirty equals a recount of the
//!   raw samples ([`crate::capacity::rollup::verify`]; counted in `rollups_checked` and
//!   `rollups_wrong` too).

use std::collections::{BTreeSet, HashMap};

use watchstand_shared::time::{DAY_MS, HOUR_MS, MINUTE_MS};

use crate::rollup::{self, MinuteRecount, Rollup};
use crate::sla::Span;
use crate::store::{trees, Result, Store};

/// What [`verify`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Raw results read.
    pub results: u64,
    /// (agent, boot, seq) stored more than once.
    pub stored_twice: u64,
    /// Boots checked.
    pub boots: u64,
    /// Seqs at or below a watermark that are neither a stored result nor in a gap record.
    pub unverified: u64,
    /// Rollup buckets recounted.
    pub rollups_checked: u64,
    /// Rollup buckets that differ from the recount (a minute, its stretch of the state index,
    /// or a day sum).
    pub rollups_wrong: u64,
    /// Capacity buckets recounted (also in `rollups_checked`).
    pub capacity_buckets_checked: u64,
}

/// Checks `store`; see the module docs.
///
/// # Errors
/// Engine failure or a corrupt record.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut seen: HashMap<(String, String), BTreeSet<u64>> = HashMap::new();
    let mut probes: BTreeSet<(String, String)> = BTreeSet::new();
    for (key, value) in store.tree(trees::RESULTS)?.scan_prefix(&[])? {
        let mut parts = key.splitn(3, |b| *b == 0);
        let agent = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let probe = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let r = crate::store::StoredResult::decode(&value)?;
        report.results += 1;
        if !seen
            .entry((agent.clone(), r.boot))
            .or_default()
            .insert(r.seq)
        {
            report.stored_twice += 1;
        }
        probes.insert((agent, probe));
    }
    let mut gap_ranges: HashMap<(String, String), Vec<(u64, u64)>> = HashMap::new();
    for (key, value) in store.tree(trees::GAPS)?.scan_prefix(&[])? {
        let agent = key
            .split(|b| *b == 0)
            .next()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        let g: watchstand_shared::wire::v1::GapRecord =
            serde_json::from_slice(&value).map_err(|source| crate::store::StoreError::Corrupt {
                tree: trees::GAPS,
                source,
            })?;
        // The gap record itself is an entry of the boot that sent it.
        gap_ranges
            .entry((agent.clone(), g.boot.clone()))
            .or_default()
            .push((g.from_seq, g.to_seq));
        seen.entry((agent, g.boot.clone())).or_default();
    }
    for (key, tracker) in store.load_all::<crate::ingest::dedup::SeqTracker>(trees::SEQS)? {
        let mut parts = key
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let (Some(agent), Some(boot)) = (parts.next(), parts.next()) else {
            continue;
        };
        report.boots += 1;
        let stored = seen.get(&(agent.clone(), boot.clone()));
        let gaps = gap_ranges.get(&(agent, boot));
        for seq in 1..=tracker.watermark() {
            let in_store = stored.is_some_and(|s| s.contains(&seq));
            let in_gap = gaps.is_some_and(|g| g.iter().any(|(a, b)| (*a..=*b).contains(&seq)));
            if !in_store && !in_gap {
                report.unverified += 1;
            }
        }
    }
    let dirty: BTreeSet<Vec<u8>> = store
        .tree(trees::DIRTY)?
        .scan_prefix(&[])?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let index = store.tree(trees::STATE_INDEX)?;
    for (agent, probe) in &probes {
        let mut day_sums: std::collections::BTreeMap<u64, Rollup> = Default::default();
        let mut hour_sums: std::collections::BTreeMap<u64, Rollup> = Default::default();
        for (minute, stored) in rollup::rollups(store, agent, probe, 0, u64::MAX)? {
            day_sums
                .entry(rollup::day_of(minute))
                .or_default()
                .add(&stored);
            hour_sums
                .entry(rollup::hour_of(minute))
                .or_default()
                .add(&stored);
            if dirty.contains(&rollup::rollup_key(agent, probe, minute)) {
                continue;
            }
            report.rollups_checked += 1;
            let observations: Vec<_> = store
                .observations(agent, probe, minute, minute + MINUTE_MS)?
                .iter()
                .map(crate::sla::Observation::from)
                .collect();
            let recount = MinuteRecount::compute(&observations, minute);
            let span = Span::new(minute, minute + MINUTE_MS);
            let mut expected: Vec<(Span, crate::sla::ProbeClass)> = Vec::new();
            for (s, c) in &recount.timeline {
                let c = rollup::index::indexed(*c);
                match expected.last_mut() {
                    Some((last, lc)) if *lc == c => last.to_ms = s.to_ms,
                    _ => expected.push((*s, c)),
                }
            }
            let indexed = rollup::index::timeline(&*index, agent, probe, span)?;
            if recount.rollup != stored || indexed != expected {
                report.rollups_wrong += 1;
            }
        }
        let sums = day_sums
            .into_iter()
            .map(|s| (trees::ROLLUP_DAYS, DAY_MS, s))
            .chain(
                hour_sums
                    .into_iter()
                    .map(|s| (trees::ROLLUP_HOUR_SUMS, HOUR_MS, s)),
            );
        for (tree, full_ms, (start, mut sum)) in sums {
            sum.latency = sum.latency.coarsened();
            let stored = store
                .tree(tree)?
                .get(&rollup::bucket_key(agent, probe, start))?
                .map(|v| Rollup::decode(&v, full_ms))
                .transpose()
                .map_err(|detail| crate::store::StoreError::CorruptRecord { tree, detail })?;
            if stored.as_ref() != Some(&sum) {
                report.rollups_wrong += 1;
            }
        }
    }
    let capacity = crate::capacity::rollup::verify(store)?;
    report.capacity_buckets_checked = capacity.checked;
    report.rollups_checked += capacity.checked;
    report.rollups_wrong += capacity.wrong;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchstand_shared::storage::Write;
    use watchstand_shared::wire::v1::{ProbeResult, ProbeState};

    fn result(seq: u64, at: u64) -> ProbeResult {
        ProbeResult {
            seq,
            probe: "p".into(),
            kind: "http".into(),
            target: "t".into(),
            observed_ms: at,
            interval_ms: 10_000,
            state: ProbeState::Up,
            latency_us: 10,
            error: None,
            metrics: Vec::new(),
        }
    }

    #[test]
    fn finds_doubles_holes_and_wrong_rollups() {
        let store = Store::in_memory();
        let m = 1_000 * MINUTE_MS;
        let results = store.tree(trees::RESULTS).expect("tree");
        results
            .apply(vec![
                Store::result_write("a", "b", &result(1, m)),
                Store::result_write("a", "b", &result(2, m + 10_000)),
                // seq 2 again under another time: stored twice.
                Store::result_write("a", "b", &result(2, m + 11_000)),
            ])
            .expect("put");
        let mut tracker = crate::ingest::dedup::SeqTracker::default();
        tracker.insert_range(1, 3);
        store
            .tree(trees::SEQS)
            .expect("tree")
            .apply(vec![Write::Put(
                watchstand_shared::storage::key::KeyBuf::new()
                    .str("a")
                    .str("b")
                    .build(),
                serde_json::to_vec(&tracker).expect("json"),
            )])
            .expect("put");
        store
            .tree(trees::DIRTY)
            .expect("tree")
            .apply(rollup::dirty_marks("a", "p", m, 10_000))
            .expect("mark");
        rollup::recompute_dirty(&store, 100).expect("pass");
        let clean = verify(&store).expect("verify");
        assert_eq!(
            (
                clean.results,
                clean.stored_twice,
                clean.boots,
                clean.unverified,
                clean.rollups_wrong
            ),
            (3, 1, 1, 1, 0),
            "{clean:?}"
        );
        assert!(clean.rollups_checked >= 1);
        // A rollup that does not match the raw data is found.
        store
            .tree(trees::ROLLUPS)
            .expect("tree")
            .apply(vec![Write::Put(
                rollup::bucket_key("a", "p", rollup::hour_of(m)),
                {
                    let mut block = rollup::HourBlock::default();
                    let i = ((m - rollup::hour_of(m)) / MINUTE_MS) as usize;
                    block.set(i, MinuteRecount::compute(&[], m).rollup);
                    block.encode()
                },
            )])
            .expect("put");
        // The minute differs from its recount, and the hour and day sums from the minutes.
        assert_eq!(verify(&store).expect("verify").rollups_wrong, 3);
    }
}
