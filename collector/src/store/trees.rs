//! Every tree of the store and how its keys are encoded — the one place that knows the layout.
//! Keys are `\0`-separated strings and big-endian integers ([`KeyBuf`]), so byte order is time
//! (or id) order within a prefix. Values are JSON unless the tree says otherwise.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `results` | [`result_key`]: `agent \0 probe \0 observed_ms seq` | binary raw result ([`super::StoredResult`]) |
//! | `capacity` | [`capacity_key`]: `agent \0 metric \0 observed_ms` | f64, big-endian |
//! | `gaps` | [`gap_key`]: `agent \0 from_ms boot \0 from_seq` | gap record |
//! | `rollup_hours` | [`bucket_key`]: `agent \0 probe \0 hour_ms` | binary hour block of minute rollups |
//! | `rollup_hour_sums`, `rollup_days` | [`bucket_key`] at the hour / day | binary rollup |
//! | `state_index` | [`bucket_key`] at a class change | one class byte |
//! | `dirty` | [`bucket_key`] at a minute | empty (a rollup minute to recompute) |
//! | `capacity_rollups`, `capacity_hours` | [`bucket_key`]: `agent \0 metric \0 bucket_ms` (5-minute, hour) | binary bucket (`crate::capacity::rollup::Bucket`) |
//! | `capacity_dirty` | [`bucket_key`] at a 5-minute bucket | empty (a capacity bucket to recompute) |
//! | `seqs` | [`seqs_key`]: `agent \0 boot` | the boot's dedup state |
//! | `agents` | [`agent_key`]: `agent` | the registry record |
//! | `audit` | [`audit_seq_key`]: seq, 8 bytes big-endian; and [`AUDIT_HEAD`] | hash-chained record; the head |
//! | `incidents` | [`id_key`]: id, big-endian | incident record with its timeline |
//! | `notify_outbox` | [`id_key`]: notification seq | notification not yet delivered |
//! | `incident_meta` | [`NEXT_NOTIFY_SEQ`] | the next notification seq, big-endian |
//! | `runbook_runs` | [`id_key`]: run id, big-endian | runbook run with its steps and attempts (JSON) |
//! | `runbook_meta` | [`NEXT_RUN_ID`] | the next run id, big-endian |

use watchstand_shared::storage::key::{read_u64, KeyBuf};
use watchstand_shared::wire::v1::GapRecord;

/// Raw probe results.
pub const RESULTS: &str = "results";
/// Raw capacity metrics.
pub const CAPACITY: &str = "capacity";
/// Gap records.
pub const GAPS: &str = "gaps";
/// Per-probe per-minute rollups, one record per probe-hour (the rollup task's hour blocks).
pub const ROLLUPS: &str = "rollup_hours";
/// Per-probe per-hour sums of the minute rollups (latency in coarse buckets).
pub const ROLLUP_HOUR_SUMS: &str = "rollup_hour_sums";
/// Per-probe per-day sums of the minute rollups (latency in coarse buckets).
pub const ROLLUP_DAYS: &str = "rollup_days";
/// Per-probe state changes (the rollup task's state index).
pub const STATE_INDEX: &str = "state_index";
/// Capacity 5-minute rollups (`crate::capacity::rollup`).
pub const CAPACITY_ROLLUPS: &str = "capacity_rollups";
/// Capacity hourly rollups (`crate::capacity::rollup`).
pub const CAPACITY_HOURS: &str = "capacity_hours";
/// Capacity 5-minute buckets to recompute (written first in every commit, see
/// [`super::StoreBatch::mark_capacity_dirty`]).
pub const CAPACITY_DIRTY: &str = "capacity_dirty";
/// Rollup buckets to recompute.
pub const DIRTY: &str = "dirty";
/// Per (agent, boot) dedup state.
pub const SEQS: &str = "seqs";
/// Agent registry.
pub const AGENTS: &str = "agents";
/// The audit log: records under their big-endian seq, the head under [`AUDIT_HEAD`].
pub const AUDIT: &str = "audit";
/// Incident records.
pub const INCIDENTS: &str = "incidents";
/// Undelivered notifications.
pub const NOTIFY_OUTBOX: &str = "notify_outbox";
/// Counters that must never go back (the next notification seq).
pub const INCIDENT_META: &str = "incident_meta";

/// Runbook runs (running and finished), by id.
pub const RUNBOOK_RUNS: &str = "runbook_runs";
/// Counters of the runbook runs (the next run id).
pub const RUNBOOK_META: &str = "runbook_meta";

/// Drill runs (running, finished, skipped), by id; ids are never deleted, so the next id is
/// the last key + 1.
pub const DRILL_RUNS: &str = "drill_runs";

/// Key of the next run id in [`RUNBOOK_META`].
pub const NEXT_RUN_ID: &[u8] = b"next_run_id";
/// Key of the next notification seq in [`INCIDENT_META`].
pub const NEXT_NOTIFY_SEQ: &[u8] = b"next_notify_seq";
/// Key of the head record in [`AUDIT`] (records have 8-byte keys).
pub const AUDIT_HEAD: &[u8] = b"head";

/// Key of a raw result.
pub fn result_key(agent: &str, probe: &str, observed_ms: u64, seq: u64) -> Vec<u8> {
    KeyBuf::new()
        .str(agent)
        .str(probe)
        .u64(observed_ms)
        .u64(seq)
        .build()
}

/// Prefix of all raw results of one probe (and of its buckets in the rollup trees).
pub fn probe_prefix(agent: &str, probe: &str) -> Vec<u8> {
    KeyBuf::new().str(agent).str(probe).build()
}

/// Prefix of every key of one agent in the trees keyed by agent first.
pub fn agent_prefix(agent: &str) -> Vec<u8> {
    KeyBuf::new().str(agent).build()
}

/// Key of one capacity metric value.
pub fn capacity_key(agent: &str, metric: &str, observed_ms: u64) -> Vec<u8> {
    KeyBuf::new()
        .str(agent)
        .str(metric)
        .u64(observed_ms)
        .build()
}

/// Key of a gap record.
pub fn gap_key(agent: &str, gap: &GapRecord) -> Vec<u8> {
    KeyBuf::new()
        .str(agent)
        .u64(gap.from_ms)
        .str(&gap.boot)
        .u64(gap.from_seq)
        .build()
}

/// End (exclusive) of the gap records of `agent` that start before `to_ms`.
pub fn gaps_before(agent: &str, to_ms: u64) -> Vec<u8> {
    KeyBuf::new().str(agent).u64(to_ms).build()
}

/// Key of a probe's bucket starting at `start_ms` (hour blocks, hour and day sums, state index
/// entries, per-minute dirty marks).
pub fn bucket_key(agent: &str, probe: &str, start_ms: u64) -> Vec<u8> {
    KeyBuf::new().str(agent).str(probe).u64(start_ms).build()
}

/// Splits a bucket key into (agent, probe, start).
pub fn parse_bucket_key(key: &[u8]) -> Option<(String, String, u64)> {
    let mut parts = key.splitn(3, |b| *b == 0);
    let agent = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let probe = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let start = read_u64(parts.next()?, 0)?;
    Some((agent, probe, start))
}

/// The `agent \0 series \0` prefix of a key that starts with two strings.
pub fn series_prefix(key: &[u8]) -> Option<Vec<u8>> {
    let first = key.iter().position(|b| *b == 0)?;
    let second = key[first + 1..].iter().position(|b| *b == 0)? + first + 1;
    Some(key[..=second].to_vec())
}

/// Key of a (agent, boot) dedup record.
pub fn seqs_key(agent: &str, boot: &str) -> Vec<u8> {
    KeyBuf::new().str(agent).str(boot).build()
}

/// The (agent, boot) of a [`seqs_key`] (lossy on bytes that are not UTF-8).
pub fn parse_seqs_key(key: &[u8]) -> Option<(String, String)> {
    let mut parts = key
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Some((parts.next()?, parts.next()?))
}

/// Key of an agent's registry record.
pub fn agent_key(agent: &str) -> Vec<u8> {
    KeyBuf::new().str(agent).build()
}

/// Key of an audit record.
pub fn audit_seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Key of an incident or a runbook run (by id) or of a notification (by seq).
pub fn id_key(id: u64) -> Vec<u8> {
    KeyBuf::new().u64(id).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_within_their_prefix_and_parse_back() {
        assert!(result_key("a", "p", 9, 1) < result_key("a", "p", 10, 0));
        assert!(result_key("a", "p", 10, 0).starts_with(&probe_prefix("a", "p")));
        assert_eq!(
            parse_bucket_key(&bucket_key("a", "p", 60_000)),
            Some(("a".into(), "p".into(), 60_000))
        );
        assert_eq!(
            series_prefix(&capacity_key("a", "cpu", 5)),
            Some(probe_prefix("a", "cpu"))
        );
        assert_eq!(
            parse_seqs_key(&seqs_key("a", "b")),
            Some(("a".into(), "b".into()))
        );
        assert!(id_key(2) < id_key(10));
        assert_eq!(audit_seq_key(1).len(), 8);
    }
}
