//! The delivery oracle (in the style of Vector's fault tests). Every result an agent produced has
//! a unique (agent, boot, seq) and a payload hash; once the collector's ack watermark covers it,
//! it is an **obligation**. After the faults heal, [`check`] reads what the collector stored
//! (`GET /api/v1/agents/{id}/results`) and reports:
//! - conservation: every obligation is stored exactly once;
//! - integrity: the stored payload hashes match what was produced;
//! - no phantoms: nothing is stored that no agent produced.
//!
//! [`liveness`] / [`Verdict::exercised`] cover the rest: a fresh result is stored within
//! 10 s, and the duplicate and re-send paths really ran.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use serde_json::Value;
use watchstand_shared::wire::v1::ProbeResult;

use crate::process::Collector;
use crate::sim::SimAgent;

/// The hash of what the SLA depends on in a result.
pub fn result_hash(
    probe: &str,
    observed_ms: u64,
    state: &str,
    latency_us: u64,
    interval_ms: u64,
) -> u64 {
    let mut h = DefaultHasher::new();
    (probe, observed_ms, state, latency_us, interval_ms).hash(&mut h);
    h.finish()
}

fn produced_hash(r: &ProbeResult) -> u64 {
    result_hash(
        &r.probe,
        r.observed_ms,
        r.state.as_str(),
        r.latency_us,
        r.interval_ms,
    )
}

fn stored_hash(v: &Value) -> u64 {
    result_hash(
        v["probe"].as_str().unwrap_or_default(),
        v["observed_ms"].as_u64().unwrap_or_default(),
        v["state"].as_str().unwrap_or_default(),
        v["latency_us"].as_u64().unwrap_or_default(),
        v["interval_ms"].as_u64().unwrap_or_default(),
    )
}

/// What the oracle found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Results acknowledged by the collector's watermark.
    pub obligations: u64,
    /// Obligations not in the store.
    pub missing: u64,
    /// (agent, boot, seq) stored more than once.
    pub stored_twice: u64,
    /// Stored with a payload other than the produced one.
    pub corrupted: u64,
    /// Stored but never produced.
    pub phantoms: u64,
    /// Results stored in all.
    pub stored: u64,
    /// Duplicates the collector dropped.
    pub duplicates_dropped: u64,
    /// Results the agents re-sent.
    pub resent: u64,
}

impl Verdict {
    /// Conservation, integrity, no phantoms.
    pub fn holds(&self) -> bool {
        self.missing == 0 && self.stored_twice == 0 && self.corrupted == 0 && self.phantoms == 0
    }

    /// The dedupe and re-send paths ran.
    pub fn exercised(&self) -> bool {
        self.duplicates_dropped >= 1 && self.resent >= 1
    }
}

/// Checks the collector's store against what `agents` produced.
pub async fn check(collector: &Collector, agents: &[SimAgent]) -> Verdict {
    let mut v = Verdict::default();
    for agent in agents {
        let rows = collector
            .get(&format!("/api/v1/agents/{}/results", agent.config.agent))
            .await;
        let rows = rows.as_array().cloned().unwrap_or_default();
        let mut stored: HashMap<(String, u64), Vec<u64>> = HashMap::new();
        for row in &rows {
            let key = (
                row["boot"].as_str().unwrap_or_default().to_owned(),
                row["seq"].as_u64().unwrap_or(0),
            );
            stored.entry(key).or_default().push(stored_hash(row));
        }
        v.stored += rows.len() as u64;
        let (produced, watermark, resent): (BTreeMap<u64, u64>, u64, u64) = agent.with(|s| {
            (
                s.produced
                    .iter()
                    .map(|(seq, r)| (*seq, produced_hash(r)))
                    .collect(),
                s.watermark,
                s.resent,
            )
        });
        v.resent += resent;
        for (seq, hash) in produced.range(..=watermark) {
            v.obligations += 1;
            match stored.get(&(agent.boot.clone(), *seq)) {
                None => v.missing += 1,
                Some(hashes) => {
                    if hashes.len() > 1 {
                        v.stored_twice += 1;
                    }
                    if hashes.iter().any(|h| h != hash) {
                        v.corrupted += 1;
                    }
                }
            }
        }
        for ((boot, seq), hashes) in &stored {
            if *boot != agent.boot || !produced.contains_key(seq) {
                v.phantoms += hashes.len() as u64;
            }
        }
    }
    v.duplicates_dropped = collector.health().await["ingest"]["duplicates"]
        .as_u64()
        .unwrap_or(0);
    v
}

/// Liveness: a result observed after now is stored within `limit`; returns how long it took.
pub async fn liveness(collector: &Collector, agent: &SimAgent, limit: Duration) -> Duration {
    let since = crate::now_ms();
    let start = std::time::Instant::now();
    let path = format!(
        "/api/v1/agents/{}/results?from={since}&limit=1",
        agent.config.agent
    );
    crate::wait_for("a fresh result stored", limit, || async {
        // 404 until the collector has heard of the agent.
        let rows = collector.get_if_found(&path).await?;
        (!rows.as_array()?.is_empty()).then_some(())
    })
    .await;
    start.elapsed()
}

/// Waits until every agent's outbox is empty (everything acknowledged); returns how long.
pub async fn drained(agents: &[SimAgent], limit: Duration) -> Duration {
    let start = std::time::Instant::now();
    crate::wait_for("the outboxes to drain", limit, || async {
        agents.iter().all(|a| a.outbox_len() == 0).then_some(())
    })
    .await;
    start.elapsed()
}
