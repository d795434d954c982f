//! Event-driven evaluation: ingest tells the incident evaluator which services just saw a probe
//! change state, so "service down" is judged within moments of the result arriving instead of at
//! the next periodic tick.
//!
//! - [`StateWatch`] belongs to ingest. For every stored result of a catalogued probe it compares
//!   the state with the newest one seen for that probe (by observation time; late and re-sent
//!   results are left to the periodic tick) and remembers the services of the probes that
//!   changed. After the batch is committed (so an evaluation reads the data), [`StateWatch::fire`]
//!   hands them over. Its cost on the hot path is two hash lookups per result and one lock per
//!   batch that holds a change; it never evaluates anything itself.
//! - [`EvaluationTrigger`] is the hand-over: a set of pending service ids and a [`Notify`]. The
//!   evaluator takes the whole set at once, so triggers that arrive while an evaluation runs
//!   coalesce into one more evaluation.
//!
//! The first result of a probe after a collector start counts as a change (the collector does not
//! know the state before it): one extra, cheap evaluation per probe.
//!
//! A **late** result — older than the newest seen of its probe, or arriving more than
//! [`late_slack_ms`] after it was measured (a replay after a partition, or after the collector
//! itself was away) — is no state change for the live rule; instead its services and the time
//! range of such results are handed over as late ranges, so the evaluator can look in the data
//! for outages no live evaluation saw (`incident::late`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;
use watchstand_shared::wire::v1::{ProbeResult, ProbeState};

use crate::config::Catalogue;

/// Services that must be evaluated soon, shared by ingest (writer) and the evaluator (reader).
#[derive(Debug, Default)]
pub struct EvaluationTrigger {
    pending: Mutex<BTreeSet<String>>,
    late: Mutex<LateRanges>,
    wake: Notify,
}

/// Per service, the observation range `[from, to]` (epoch ms) of results that arrived late.
pub type LateRanges = BTreeMap<String, (u64, u64)>;

/// Adds `range` to the late range of `service` in `ranges`.
pub fn widen(ranges: &mut LateRanges, service: &str, range: (u64, u64)) {
    ranges
        .entry(service.to_owned())
        .and_modify(|r| *r = (r.0.min(range.0), r.1.max(range.1)))
        .or_insert(range);
}

/// How long after its measurement a result may arrive and still count as live: three of its
/// intervals (batching, a re-send) plus 10 s.
pub fn late_slack_ms(interval_ms: u64) -> u64 {
    3 * interval_ms + 10_000
}

impl EvaluationTrigger {
    /// Asks for an evaluation of `services`; wakes the evaluator.
    pub fn request(&self, services: impl IntoIterator<Item = String>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let before = pending.len();
        pending.extend(services);
        let added = pending.len() > before;
        drop(pending);
        if added {
            self.wake.notify_one();
        }
    }

    /// Asks for a look at the data of late ranges (and an evaluation of their services).
    pub fn request_late(&self, ranges: LateRanges) {
        if ranges.is_empty() {
            return;
        }
        {
            let mut late = self.late.lock().unwrap_or_else(PoisonError::into_inner);
            for (service, range) in &ranges {
                widen(&mut late, service, *range);
            }
        }
        self.request(ranges.into_keys());
    }

    /// Takes the late ranges handed over so far.
    pub fn take_late(&self) -> LateRanges {
        std::mem::take(&mut *self.late.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits until services are pending, then takes them all (never returns an empty set).
    pub async fn next(&self) -> BTreeSet<String> {
        loop {
            let taken = self.take();
            if !taken.is_empty() {
                return taken;
            }
            self.wake.notified().await;
        }
    }

    /// Takes whatever is pending now (a full evaluation covers it).
    pub fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The newest result seen of one probe.
#[derive(Debug, Clone, Copy)]
struct Seen {
    observed_ms: u64,
    state: ProbeState,
}

/// Ingest's side: spots state changes of catalogued probes and hands their services to the
/// trigger after the commit.
#[derive(Debug)]
pub struct StateWatch {
    trigger: std::sync::Arc<EvaluationTrigger>,
    /// agent → probe → services measured by it (the catalogue's probes only).
    services: HashMap<String, HashMap<String, Vec<String>>>,
    /// agent → probe → newest result seen.
    seen: HashMap<String, HashMap<String, Seen>>,
    /// Services with a change in the batch being built.
    changed: BTreeSet<String>,
    /// Late ranges in the batch being built.
    late: LateRanges,
}

impl StateWatch {
    /// A watch over the probes of `catalogue`, handing changes to `trigger`.
    pub fn new(catalogue: &Catalogue, trigger: std::sync::Arc<EvaluationTrigger>) -> Self {
        let mut services: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
        for s in &catalogue.services {
            for p in &s.probes {
                let list = services
                    .entry(p.agent.clone())
                    .or_default()
                    .entry(p.probe.clone())
                    .or_default();
                if !list.contains(&s.id) {
                    list.push(s.id.clone());
                }
            }
        }
        Self {
            trigger,
            services,
            seen: HashMap::new(),
            changed: BTreeSet::new(),
            late: LateRanges::new(),
        }
    }

    /// Notes a stored result of `agent`; a change of a catalogued probe's state (against the
    /// newest result seen) marks its services. Returns whether it did. A late result marks its
    /// services' late range instead.
    pub fn observe(&mut self, agent: &str, r: &ProbeResult) -> bool {
        self.observe_at(agent, r, watchstand_shared::time::now_ms())
    }

    /// [`Self::observe`] with the arrival time given.
    pub fn observe_at(&mut self, agent: &str, r: &ProbeResult, now_ms: u64) -> bool {
        let Some(services) = self.services.get(agent).and_then(|p| p.get(&r.probe)) else {
            return false;
        };
        let arrived_late = r.observed_ms + late_slack_ms(r.interval_ms) < now_ms;
        let probes = match self.seen.get_mut(agent) {
            Some(p) => p,
            None => self.seen.entry(agent.to_owned()).or_default(),
        };
        let older = probes
            .get(&r.probe)
            .is_some_and(|seen| r.observed_ms < seen.observed_ms);
        if arrived_late || older {
            for s in services {
                widen(&mut self.late, s, (r.observed_ms, r.observed_ms));
            }
        }
        let changed = match probes.get_mut(&r.probe) {
            Some(seen) if r.observed_ms < seen.observed_ms => false,
            Some(seen) => {
                let changed = seen.state != r.state && !arrived_late;
                *seen = Seen {
                    observed_ms: r.observed_ms,
                    state: r.state,
                };
                changed
            }
            None => {
                probes.insert(
                    r.probe.clone(),
                    Seen {
                        observed_ms: r.observed_ms,
                        state: r.state,
                    },
                );
                !arrived_late
            }
        };
        if changed {
            self.changed.extend(services.iter().cloned());
        }
        changed
    }

    /// Hands the services changed since the last call to the evaluator. Call after the batch
    /// that carried the changes is committed.
    pub fn fire(&mut self) {
        if !self.late.is_empty() {
            self.trigger.request_late(std::mem::take(&mut self.late));
        }
        if !self.changed.is_empty() {
            self.trigger.request(std::mem::take(&mut self.changed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn result(probe: &str, observed_ms: u64, state: ProbeState) -> ProbeResult {
        ProbeResult {
            seq: 1,
            probe: probe.into(),
            kind: "http".into(),
            target: "t".into(),
            observed_ms,
            interval_ms: 1_000,
            state,
            latency_us: 1,
            error: None,
            metrics: Vec::new(),
        }
    }

    fn catalogue() -> Catalogue {
        let text = "[collector]\ndata_dir = \"d\"\n\
            [[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\", \"b/p\"]\nslo = { availability = 99.0 }\n\
            [[services]]\nid = \"shop\"\nname = \"Shop\"\ncriticality = \"low\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.0 }\n";
        let raw = crate::config::from_str(text, std::path::Path::new("t.toml")).expect("parses");
        crate::config::validate(
            raw,
            std::path::Path::new("t.toml"),
            std::path::Path::new("."),
        )
        .expect("valid")
        .catalogue
    }

    #[test]
    fn only_state_changes_of_catalogued_probes_trigger_and_only_after_fire() {
        let trigger = Arc::new(EvaluationTrigger::default());
        let mut w = StateWatch::new(&catalogue(), trigger.clone());
        assert!(
            w.observe_at("a", &result("p", 1_000, ProbeState::Up), 4_000),
            "first"
        );
        w.fire();
        assert_eq!(
            trigger.take(),
            BTreeSet::from(["shop".to_owned(), "web".to_owned()])
        );
        assert!(!w.observe_at("a", &result("p", 2_000, ProbeState::Up), 4_000));
        assert!(!w.observe_at("a", &result("other", 2_000, ProbeState::Down), 4_000));
        assert!(!w.observe_at("c", &result("p", 2_000, ProbeState::Down), 4_000));
        assert!(w.observe_at("a", &result("p", 3_000, ProbeState::Down), 4_000));
        assert!(trigger.take().is_empty(), "nothing before the commit");
        w.fire();
        assert_eq!(trigger.take().len(), 2);
        // A late result (older than the newest seen) is no state change.
        assert!(!w.observe_at("a", &result("p", 2_500, ProbeState::Up), 4_000));
        w.fire();
        assert_eq!(
            trigger.take_late().len(),
            2,
            "a late result is a late range"
        );
        assert!(trigger.take().len() == 2);
        assert!(w.observe_at("b", &result("p", 3_000, ProbeState::Down), 4_000));
        w.fire();
        assert_eq!(trigger.take(), BTreeSet::from(["web".to_owned()]));
    }

    #[test]
    fn late_results_are_handed_over_as_late_ranges_not_as_state_changes() {
        let trigger = Arc::new(EvaluationTrigger::default());
        let mut w = StateWatch::new(&catalogue(), trigger.clone());
        let now = 100_000;
        // A replay: measured a minute ago (interval 1 s, slack 13 s), a state change in it.
        assert!(!w.observe_at("a", &result("p", 40_000, ProbeState::Up), now));
        assert!(!w.observe_at("a", &result("p", 41_000, ProbeState::Down), now));
        assert!(!w.observe_at("b", &result("p", 45_000, ProbeState::Down), now));
        // Live again.
        assert!(w.observe_at("a", &result("p", 99_500, ProbeState::Up), now));
        w.fire();
        assert_eq!(
            trigger.take_late(),
            LateRanges::from([
                ("shop".to_owned(), (40_000, 41_000)),
                ("web".to_owned(), (40_000, 45_000)),
            ])
        );
        assert_eq!(trigger.take().len(), 2, "late services are evaluated too");
        assert!(trigger.take_late().is_empty());
    }

    #[tokio::test]
    async fn requests_during_an_evaluation_coalesce_into_one_more() {
        let trigger = Arc::new(EvaluationTrigger::default());
        trigger.request(["web".to_owned()]);
        assert_eq!(trigger.next().await.len(), 1);
        // Three requests while "evaluating": one wake-up takes all of them.
        trigger.request(["a".to_owned()]);
        trigger.request(["b".to_owned()]);
        trigger.request(["a".to_owned()]);
        assert_eq!(
            trigger.next().await,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        // Nothing pending: next() waits (the stale wake-up permit finds an empty set).
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), trigger.next()).await;
        assert!(waited.is_err(), "no evaluation without a request");
    }
}
