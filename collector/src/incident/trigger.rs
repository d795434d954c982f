//! Event-driven evaluation: ingest tells the incident evaluator which services just saw a probe
//! change state, so "service down" is judged within moments of the result arriving instead of at
//! the next periodic tick.
//!
//! - [`StateWatch`] belongs to ingest. For every stored result of a catalogued probe it compares
//!   the state with the newest one seen for that probe (by observation time; late and re-sent
//!   results are left to the periodic tick) and remembers the services of the probes that
//!   changed. After the batch is committed (so an evaluation reads the data), [`StateWatch::fire`]
//!   hands them to the engine task as one [`EngineEvent::ProbesChanged`]. Its cost on the hot
//!   path is two hash lookups per result and one queue send per batch that holds a change; it
//!   never evaluates anything itself.
//! - The hand-over never waits: on a full engine queue the changes stay in the watch and go with
//!   the next batch's hand-over or ingest's retry ([`StateWatch::pending`]). The engine task
//!   drains everything queued before it evaluates, so a burst of batches with changes makes one
//!   evaluation round.
//!
//! [`EngineEvent::ProbesChanged`]: crate::engine::EngineEvent::ProbesChanged
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

use watchstand_shared::wire::v1::{ProbeResult, ProbeState};

use crate::config::Catalogue;
use crate::engine::EngineHandle;

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

/// The newest result seen of one probe.
#[derive(Debug, Clone, Copy)]
struct Seen {
    observed_ms: u64,
    state: ProbeState,
}

/// Ingest's side: spots state changes of catalogued probes and hands their services to the
/// engine task after the commit.
#[derive(Debug)]
pub struct StateWatch {
    engine: EngineHandle,
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
    /// A watch over the probes of `catalogue`, handing changes to `engine`.
    pub fn new(catalogue: &Catalogue, engine: EngineHandle) -> Self {
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
            engine,
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

    /// Hands the services changed since the last call (and those of late ranges, with the
    /// ranges) to the engine task, without waiting: on a full queue they stay here for the
    /// next call. Call after the batch that carried the changes is committed.
    pub fn fire(&mut self) {
        if !self.pending() {
            return;
        }
        let mut services = std::mem::take(&mut self.changed);
        services.extend(self.late.keys().cloned());
        let late = std::mem::take(&mut self.late);
        if let Err((services, late)) = self.engine.try_probes_changed(services, late) {
            tracing::debug!(
                services = services.len(),
                "Engine queue full; the state changes go with the next hand-over."
            );
            self.changed.extend(services);
            for (service, range) in late {
                widen(&mut self.late, &service, range);
            }
        }
    }

    /// Whether changes are waiting to be handed over (a full engine queue kept them).
    pub fn pending(&self) -> bool {
        !self.changed.is_empty() || !self.late.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{self, EngineEvent, EngineInbox, EngineSnapshot};

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

    /// The services and late ranges of the next hand-over queued for the engine, if any.
    fn next(inbox: &mut EngineInbox) -> Option<(BTreeSet<String>, LateRanges)> {
        match inbox.try_next()? {
            EngineEvent::ProbesChanged { services, late } => Some((services, late)),
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[test]
    fn only_state_changes_of_catalogued_probes_trigger_and_only_after_fire() {
        let (handle, mut inbox) = engine::channel(EngineSnapshot::default());
        let mut w = StateWatch::new(&catalogue(), handle);
        assert!(
            w.observe_at("a", &result("p", 1_000, ProbeState::Up), 4_000),
            "first"
        );
        w.fire();
        assert_eq!(
            next(&mut inbox).expect("handed over").0,
            BTreeSet::from(["shop".to_owned(), "web".to_owned()])
        );
        assert!(!w.observe_at("a", &result("p", 2_000, ProbeState::Up), 4_000));
        assert!(!w.observe_at("a", &result("other", 2_000, ProbeState::Down), 4_000));
        assert!(!w.observe_at("c", &result("p", 2_000, ProbeState::Down), 4_000));
        assert!(w.observe_at("a", &result("p", 3_000, ProbeState::Down), 4_000));
        assert!(next(&mut inbox).is_none(), "nothing before the commit");
        w.fire();
        assert_eq!(next(&mut inbox).expect("handed over").0.len(), 2);
        // A late result (older than the newest seen) is no state change.
        assert!(!w.observe_at("a", &result("p", 2_500, ProbeState::Up), 4_000));
        w.fire();
        let (services, late) = next(&mut inbox).expect("handed over");
        assert_eq!(late.len(), 2, "a late result is a late range");
        assert!(services.len() == 2);
        assert!(w.observe_at("b", &result("p", 3_000, ProbeState::Down), 4_000));
        w.fire();
        assert_eq!(
            next(&mut inbox).expect("handed over").0,
            BTreeSet::from(["web".to_owned()])
        );
        w.fire();
        assert!(
            next(&mut inbox).is_none(),
            "nothing new, nothing handed over"
        );
    }

    #[test]
    fn late_results_are_handed_over_as_late_ranges_not_as_state_changes() {
        let (handle, mut inbox) = engine::channel(EngineSnapshot::default());
        let mut w = StateWatch::new(&catalogue(), handle);
        let now = 100_000;
        // A replay: measured a minute ago (interval 1 s, slack 13 s), a state change in it.
        assert!(!w.observe_at("a", &result("p", 40_000, ProbeState::Up), now));
        assert!(!w.observe_at("a", &result("p", 41_000, ProbeState::Down), now));
        assert!(!w.observe_at("b", &result("p", 45_000, ProbeState::Down), now));
        // Live again.
        assert!(w.observe_at("a", &result("p", 99_500, ProbeState::Up), now));
        w.fire();
        let (services, late) = next(&mut inbox).expect("handed over");
        assert_eq!(
            late,
            LateRanges::from([
                ("shop".to_owned(), (40_000, 41_000)),
                ("web".to_owned(), (40_000, 45_000)),
            ])
        );
        assert_eq!(services.len(), 2, "late services are evaluated too");
        assert!(next(&mut inbox).is_none());
    }

    #[test]
    fn a_full_engine_queue_never_blocks_ingest_and_the_changes_go_with_the_next_hand_over() {
        let (handle, mut inbox) = engine::channel_with(1, EngineSnapshot::default());
        let mut w = StateWatch::new(&catalogue(), handle);
        assert!(w.observe_at("a", &result("p", 1_000, ProbeState::Up), 4_000));
        w.fire();
        assert!(!w.pending(), "handed over");
        // The queue (one event) is full now: these stay in the watch, fire returns at once.
        assert!(w.observe_at("b", &result("p", 2_000, ProbeState::Down), 4_000));
        assert!(!w.observe_at("a", &result("p", 500, ProbeState::Down), 4_000));
        w.fire();
        assert!(w.pending(), "kept while the queue is full");
        assert_eq!(next(&mut inbox).expect("first").0.len(), 2);
        // Room again: the kept changes and the late range go in one event.
        w.fire();
        assert!(!w.pending());
        let (services, late) = next(&mut inbox).expect("kept changes");
        assert_eq!(
            services,
            BTreeSet::from(["shop".to_owned(), "web".to_owned()])
        );
        assert_eq!(late.get("web"), Some(&(500, 500)));
        assert!(next(&mut inbox).is_none());
    }
}
