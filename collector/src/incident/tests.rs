//! Rules and lifecycle on a virtual clock: results are written straight into an in-memory store
//! at chosen instants and the engine is evaluated at chosen instants — no sleeps. Timing is
//! asserted as "at t, within one evaluation".

use std::collections::HashMap;

use watchstand_shared::config::Problems;
use watchstand_shared::time::{DAY_MS, MINUTE_MS, SECOND_MS};
use watchstand_shared::wire::v1::{AgentState, ProbeResult, ProbeState, Status};

use super::conditions::{conditions, service_down_conditions};
use super::engine::{Change, Engine};
use super::policy::{self, IncidentPolicy, IncidentSettings, RawIncidentPolicy, Webhook};
use super::presence::Hearing;
use super::record::IncidentStore;
use super::Rule;
use crate::config::{self, Catalogue};
use crate::registry::Registry;
use crate::store::{trees, Store};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const EVERY: u64 = 10 * SECOND_MS;

/// Marks the rollup minutes a result at `at` affects, as ingest does before storing it.
fn mark_dirty(store: &Store, at: u64, interval_ms: u64) {
    store
        .tree(trees::DIRTY)
        .expect("tree")
        .apply(crate::rollup::dirty_marks("a", "p", at, interval_ms))
        .expect("mark");
}

struct World {
    store: Store,
    catalogue: Catalogue,
    registry: Registry,
    engine: Engine,
    seq: u64,
    changes: Vec<(u64, Change)>,
}

fn catalogue(services: &str) -> Catalogue {
    let text = format!("[collector]\ndata_dir = \"d\"\n{services}");
    let raw = config::from_str(&text, std::path::Path::new("t.toml")).expect("parses");
    config::validate(
        raw,
        std::path::Path::new("t.toml"),
        std::path::Path::new("."),
    )
    .expect("valid")
    .catalogue
}

impl World {
    /// One service `web` over probe `a/p` with `slo` and incident overrides `rules`.
    fn new(slo: &str, rules: &str) -> Self {
        let catalogue = catalogue(&format!(
            "[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = {slo}\n"
        ));
        let raw: RawIncidentPolicy = toml::from_str(rules).expect("rules parse");
        let mut p = Problems::default();
        let settings = IncidentSettings::default();
        let web = policy::merge(&settings.defaults, &raw, "incidents", &mut p);
        assert!(p.is_empty());
        let store = Store::in_memory();
        let engine = Engine::load(
            IncidentStore::new(store.clone()),
            settings,
            HashMap::from([("web".to_owned(), web)]),
            vec![Webhook {
                name: "ops".into(),
                url: "http://127.0.0.1:9/".into(),
                headers: Vec::new(),
                secret: None,
                priorities: Vec::new(),
            }],
        )
        .expect("engine");
        let registry = Registry::new(Vec::new());
        let mut w = Self {
            store,
            catalogue,
            registry,
            engine,
            seq: 0,
            changes: Vec::new(),
        };
        w.status(T0 - DAY_MS, AgentState::Online);
        w
    }

    fn status(&mut self, at: u64, state: AgentState) {
        self.registry.apply_status(
            &Status {
                v: 1,
                site: "lab".into(),
                agent: "a".into(),
                boot: "b".into(),
                state,
                at_ms: Some(at),
                version: None,
                probes: Vec::new(),
                capacity_interval_ms: Some(60_000),
            },
            at,
        );
    }

    fn result(&mut self, at: u64, up: bool, interval_ms: u64) {
        let w = self.result_write(at, up, interval_ms);
        self.store
            .tree(trees::RESULTS)
            .expect("tree")
            .apply(vec![w])
            .expect("write");
        // The registry hears from the agent whenever a result arrives.
        self.registry.update("lab", "a", "b", at, |_| {});
    }

    fn result_write(
        &mut self,
        at: u64,
        up: bool,
        interval_ms: u64,
    ) -> watchstand_shared::storage::Write {
        self.seq += 1;
        let r = ProbeResult {
            seq: self.seq,
            probe: "p".into(),
            kind: "http".into(),
            target: "t".into(),
            observed_ms: at,
            interval_ms,
            state: if up { ProbeState::Up } else { ProbeState::Down },
            latency_us: 1_000,
            error: None,
            metrics: Vec::new(),
        };
        mark_dirty(&self.store, at, interval_ms);
        Store::result_write("a", "b", &r)
    }

    fn evaluate(&mut self, now: u64) {
        let agents = self.registry.snapshot();
        let engine = &self.engine;
        let policy = |s: &str| -> IncidentPolicy { engine.policy(s) };
        let c = conditions(&self.store, &self.catalogue, &agents, &policy, EVERY, now)
            .expect("conditions");
        let offline: Vec<String> = agents
            .iter()
            .filter(|a| a.state_at(now) == AgentState::Offline)
            .map(|a| a.agent.clone())
            .collect();
        let topo = |_: &str| (Vec::new(), vec!["a".to_owned()]);
        let changes = self
            .engine
            .evaluate(now, &c, &offline, &topo)
            .expect("evaluate");
        self.changes.extend(changes.into_iter().map(|ch| (now, ch)));
    }

    /// An event-driven evaluation of `services` at `now` (what ingest's state watch triggers);
    /// returns the services to look at again one evaluation interval later.
    fn evaluate_event(&mut self, services: &[&str], now: u64) -> Vec<String> {
        let engine = &self.engine;
        let policy = |s: &str| -> IncidentPolicy { engine.policy(s) };
        let wanted = services.iter().map(|s| (*s).to_owned()).collect();
        let (c, pending) =
            service_down_conditions(&self.store, &self.catalogue, &wanted, &policy, EVERY, now)
                .expect("conditions");
        assert!(c.iter().all(|c| c.rule == Rule::ServiceDown));
        let topo = |_: &str| (Vec::new(), vec!["a".to_owned()]);
        let changes = self.engine.evaluate(now, &c, &[], &topo).expect("evaluate");
        self.changes.extend(changes.into_iter().map(|ch| (now, ch)));
        pending
    }

    /// A periodic evaluation at `now` by a collector that hears its agents as `hearing` says.
    fn evaluate_watching(&mut self, now: u64, hearing: Hearing) {
        let agents = super::presence::watched(self.registry.snapshot(), hearing, now);
        let engine = &self.engine;
        let policy = |s: &str| -> IncidentPolicy { engine.policy(s) };
        let c = conditions(&self.store, &self.catalogue, &agents, &policy, EVERY, now)
            .expect("conditions");
        let offline: Vec<String> = agents
            .iter()
            .filter(|a| a.state_at(now) == AgentState::Offline)
            .map(|a| a.agent.clone())
            .collect();
        let topo = |_: &str| (Vec::new(), vec!["a".to_owned()]);
        let changes = self
            .engine
            .evaluate(now, &c, &offline, &topo)
            .expect("evaluate");
        self.changes.extend(changes.into_iter().map(|ch| (now, ch)));
    }

    /// What the evaluator does with late results of `web` observed in `range`, at `now`;
    /// returns whether the data still lacks the end of a down stretch.
    fn evaluate_late(&mut self, range: (u64, u64), now: u64) -> bool {
        let service = self.catalogue.get("web").expect("web").clone();
        let scan = super::late::scan(
            &self.store,
            &service,
            &self.engine.policy("web"),
            EVERY,
            range,
            now,
        )
        .expect("scan");
        let topo = |_: &str| (Vec::new(), vec!["a".to_owned()]);
        let changes = self
            .engine
            .record_late(now, &scan.outages, &[], &topo)
            .expect("record");
        self.changes.extend(changes.into_iter().map(|ch| (now, ch)));
        scan.unfinished
    }

    fn queued(&self) -> Vec<super::record::Notification> {
        IncidentStore::new(self.store.clone())
            .all_pending()
            .expect("outbox")
    }

    fn count(&self, f: impl Fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|(_, c)| f(c)).count()
    }

    fn first_at(&self, f: impl Fn(&Change) -> bool) -> Option<u64> {
        self.changes.iter().find(|(_, c)| f(c)).map(|(t, _)| *t)
    }

    fn incidents(&self) -> Vec<super::record::Incident> {
        IncidentStore::new(self.store.clone())
            .all()
            .expect("incidents")
    }
}

const ONLY_DOWN: &str = "burn_rate = []\nsla_below_target = false\n";

#[test]
fn a_60_minute_breach_evaluated_every_10s_is_one_incident_with_one_open_and_one_resolve() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    let down_from = T0 + 10 * MINUTE_MS;
    let down_to = down_from + 60 * MINUTE_MS;
    let end = down_to + 10 * MINUTE_MS;
    let mut t = T0;
    while t < end {
        w.result(t, !(down_from..down_to).contains(&t), EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let incidents = w.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(
        w.count(|c| matches!(c, Change::Notified(_, e, _) if e == "opened")),
        1
    );
    assert_eq!(
        w.count(|c| matches!(c, Change::Notified(_, e, _) if e == "resolved")),
        1
    );
    assert_eq!(w.count(|c| matches!(c, Change::Notified(..))), 2);
    // Opened at the second down evaluation; resolved after the 60 s healthy period.
    let opened = w
        .first_at(|c| matches!(c, Change::Opened(..)))
        .expect("opened");
    assert_eq!(opened, down_from + EVERY + 1);
    let resolved = w
        .first_at(|c| matches!(c, Change::Resolved(..)))
        .expect("resolved");
    assert_eq!(resolved, down_to + MINUTE_MS + 1);
    let i = &incidents[0];
    assert_eq!(i.rule, Rule::ServiceDown);
    assert_eq!(i.priority, super::Priority::P2);
    assert_eq!(
        i.time_to_restore_s(),
        Some(((down_to + MINUTE_MS) - (down_from + EVERY)) as f64 / 1_000.0)
    );
    assert_eq!(i.impact.scope, "full");
}

#[test]
fn fast_and_slow_burn_rates_fire_at_the_exact_evaluation() {
    // 99.9 %: fast fires when 1 h and 5 min both burn ≥ 14.4× (51.84 s down in the hour);
    // slow when 6 h and 30 min both burn ≥ 6× (129.6 s down in six hours).
    let mut w = World::new(
        "{ availability = 99.9 }",
        "sla_below_target = false\ndown_after = 1000\nflapping = { enabled = false }\n",
    );
    let down_from = T0 + 6 * 3_600 * SECOND_MS;
    let mut t = T0;
    while t <= down_from + 5 * MINUTE_MS {
        w.result(t, t < down_from, EVERY);
        if t >= down_from {
            w.evaluate(t);
        }
        t += EVERY;
    }
    let fast = w
        .first_at(|c| matches!(c, Change::Opened(_, k) if k == "burn_rate.fast:web"))
        .expect("fast fired");
    let slow = w
        .first_at(|c| matches!(c, Change::Opened(_, k) if k == "burn_rate.slow:web"))
        .expect("slow fired");
    assert_eq!(
        fast - down_from,
        60 * SECOND_MS,
        "first evaluation with ≥ 51.84 s down"
    );
    assert_eq!(
        slow - down_from,
        130 * SECOND_MS,
        "first evaluation with ≥ 129.6 s down"
    );
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 2);
}

#[test]
fn thirty_days_with_43m12s_down_is_99_9000_pct_and_opens_sla_below_target_when_the_budget_is_spent()
{
    let mut w = World::new(
        "{ availability = 99.9, window = \"30d\" }",
        "burn_rate = []\ndown_after = 1000\nflapping = { enabled = false }\n",
    );
    let end = T0 + 30 * DAY_MS;
    let down_from = end - 2_592 * SECOND_MS;
    let mut writes = Vec::new();
    let mut t = T0;
    while t < down_from {
        writes.push(w.result_write(t, true, MINUTE_MS));
        t += MINUTE_MS;
    }
    // The outage, sampled on the minute grid, ends exactly at `end`.
    writes.push(w.result_write(down_from, false, MINUTE_MS));
    let mut t = down_from - down_from % MINUTE_MS + MINUTE_MS;
    while t < end {
        writes.push(w.result_write(t, false, MINUTE_MS));
        t += MINUTE_MS;
    }
    writes.push(w.result_write(end, true, MINUTE_MS));
    w.store
        .tree(trees::RESULTS)
        .expect("tree")
        .apply(writes)
        .expect("write");
    w.registry.update("lab", "a", "b", end, |_| {});
    // At the outage's start and one minute before its end the budget is not spent yet.
    for t in [down_from, end - MINUTE_MS] {
        w.evaluate(t);
    }
    assert_eq!(
        w.count(|c| matches!(c, Change::Opened(..))),
        0,
        "budget not spent before the end"
    );
    w.evaluate(end);
    let opened = w.first_at(|c| matches!(c, Change::Opened(_, k) if k == "sla_below_target:web"));
    assert_eq!(opened, Some(end), "opens the moment the budget is spent");
    let service = w.catalogue.get("web").expect("web").clone();
    let r = crate::availability::service_report(
        &w.store,
        &service,
        crate::sla::Span {
            from_ms: T0,
            to_ms: end,
        },
    )
    .expect("report");
    assert_eq!(r.downtime_s, 2_592.0);
    assert_eq!(
        format!("{:.4}", r.availability_pct.expect("measured")),
        "99.9000"
    );
    // Once the rollups hold the month, the report reads them (state index, day and hour
    // sums) instead of the raw results, and says exactly the same, for the whole window and
    // for windows that start and end inside minutes.
    let windows = [
        (T0, end),
        (T0 + 12_345, end - 61_001),
        (down_from - 30_500, down_from + 90_250),
        (T0 + 3 * DAY_MS + 7, T0 + 4 * DAY_MS + 3_600_001),
    ];
    let raw: Vec<_> = windows
        .iter()
        .map(|&(from_ms, to_ms)| {
            crate::availability::service_report(
                &w.store,
                &service,
                crate::sla::Span { from_ms, to_ms },
            )
            .expect("report")
        })
        .collect();
    while crate::rollup::recompute_dirty(&w.store, 10_000).expect("pass") > 0 {}
    assert_eq!(
        crate::rollup::read::horizon(&w.store, "a", "p").expect("horizon"),
        None
    );
    for (&(from_ms, to_ms), before) in windows.iter().zip(&raw) {
        let after = crate::availability::service_report(
            &w.store,
            &service,
            crate::sla::Span { from_ms, to_ms },
        )
        .expect("report");
        // Latency percentiles from hour and day sums are within their coarse buckets (3.1 %);
        // everything else is identical.
        for (a, b) in [
            (after.latency_p50_ms, before.latency_p50_ms),
            (after.latency_p90_ms, before.latency_p90_ms),
            (after.latency_p99_ms, before.latency_p99_ms),
        ] {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= b / 32.0, "{a} vs {b}"),
                (a, b) => assert_eq!(a, b),
            }
        }
        let same_but_latency = crate::sla::SlaReport {
            latency_p50_ms: before.latency_p50_ms,
            latency_p90_ms: before.latency_p90_ms,
            latency_p99_ms: before.latency_p99_ms,
            ..after.clone()
        };
        assert_eq!(&same_but_latency, before, "window {from_ms}..{to_ms}");
    }
    assert!(raw[2].downtime_s > 0.0 && raw[2].checks > 0, "{:?}", raw[2]);
}

fn flapping_run(flap: &str) -> World {
    let mut w = World::new(
        "{ availability = 99.0 }",
        &format!("burn_rate = []\nsla_below_target = false\ndown_after = 1\nresolve_after = \"0s\"\n{flap}"),
    );
    let mut t = T0;
    let flaps_until = T0 + 10 * MINUTE_MS;
    let end = flaps_until + 10 * MINUTE_MS;
    let mut i = 0u64;
    while t < end {
        let up = if t < flaps_until { i % 2 == 1 } else { true };
        w.result(t, up, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
        i += 1;
    }
    w
}

#[test]
fn a_flapping_probe_is_one_incident_held_quiet_while_it_flaps() {
    let w = flapping_run("");
    assert_eq!(w.count(|c| matches!(c, Change::FlappingStarted(_))), 1);
    assert_eq!(w.count(|c| matches!(c, Change::FlappingStopped(_))), 1);
    assert_eq!(
        w.count(|c| matches!(c, Change::Opened(..))),
        1,
        "no open/close churn"
    );
    assert_eq!(w.count(|c| matches!(c, Change::Resolved(..))), 1);
    assert_eq!(w.incidents().len(), 1);
    // The stop comes within the flap window after the probe settles.
    let stopped = w
        .first_at(|c| matches!(c, Change::FlappingStopped(_)))
        .expect("stopped");
    assert!(stopped > T0 + 10 * MINUTE_MS && stopped <= T0 + 10 * MINUTE_MS + 20 * EVERY + 1);
}

#[test]
fn without_flap_detection_the_same_input_churns() {
    let w = flapping_run("flapping = { enabled = false }\n");
    let opened = w.count(|c| matches!(c, Change::Opened(..)));
    let resolved = w.count(|c| matches!(c, Change::Resolved(..)));
    eprintln!("flap detection off: {opened} opened, {resolved} resolved");
    assert!(
        opened >= 25 && resolved >= 25,
        "the control must churn: {opened} opened, {resolved} resolved"
    );
}

#[test]
fn late_data_after_30_minutes_offline_opens_no_service_down_and_recomputes_to_100_pct() {
    let mut w = World::new("{ availability = 99.9 }", "");
    let offline_from = T0 + 10 * MINUTE_MS;
    let back = offline_from + 30 * MINUTE_MS;
    let end = back + 5 * MINUTE_MS;
    let mut t = T0;
    while t < offline_from {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    w.status(offline_from, AgentState::Offline);
    while t < back {
        w.evaluate(t + 1);
        t += EVERY;
    }
    // The agent returns and replays its outbox: every check of the 30 minutes was up.
    w.status(back, AgentState::Online);
    let mut replay = offline_from - offline_from % EVERY;
    while replay < back {
        w.result(replay, true, EVERY);
        replay += EVERY;
    }
    while t < end {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let incidents = w.incidents();
    let service_down = incidents
        .iter()
        .filter(|i| i.rule == Rule::ServiceDown)
        .count();
    let agent_offline: Vec<_> = incidents
        .iter()
        .filter(|i| i.rule == Rule::AgentOffline)
        .collect();
    assert_eq!(service_down, 0, "{incidents:#?}");
    assert_eq!(agent_offline.len(), 1);
    assert!(
        agent_offline[0].resolved_ms.is_some(),
        "the agent-offline incident resolved"
    );
    // The unmonitored service incident was recorded but not notified (its cause is the agent).
    assert!(incidents
        .iter()
        .filter(|i| i.rule == Rule::Unmonitored)
        .all(|i| i.inhibited));
    let service = w.catalogue.get("web").expect("web").clone();
    let r = crate::availability::service_report(
        &w.store,
        &service,
        crate::sla::Span {
            from_ms: T0,
            to_ms: end,
        },
    )
    .expect("report");
    assert_eq!(r.availability_pct, Some(100.0));
    assert!(r.unmonitored_s < 20.0, "the replay filled the gap: {r:?}");
}

#[test]
fn incidents_survive_a_restart_without_a_second_one_for_the_same_cause() {
    let mut w = World::new("{ availability = 99.0 }", ONLY_DOWN);
    let mut t = T0;
    for i in 0..10 {
        w.result(t, i < 3, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    assert_eq!(w.incidents().len(), 1);
    // A new engine over the same store (a collector restart) keeps the open incident.
    let settings = IncidentSettings::default();
    let web = w.engine.policy("web");
    w.engine = Engine::load(
        IncidentStore::new(w.store.clone()),
        settings,
        HashMap::from([("web".to_owned(), web)]),
        Vec::new(),
    )
    .expect("reload");
    for _ in 0..10 {
        w.result(t, false, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    assert_eq!(w.incidents().len(), 1, "still one incident for the cause");
    // Acknowledge and resolve by hand; a new breach opens a new incident with the same key.
    let id = w.incidents()[0].id;
    let acked = w.engine.acknowledge(id, "ana", "looking", t).expect("ack");
    assert_eq!(acked.acknowledged_by.as_deref(), Some("ana"));
    let resolved = w
        .engine
        .resolve(id, "ana", "restarted the pod", t + 1)
        .expect("resolve");
    assert_eq!(
        resolved.resolution_note.as_deref(),
        Some("restarted the pod")
    );
    assert!(w.engine.resolve(id, "ana", "again", t + 2).is_err());
    // Resolved by hand while still down: held until the service is seen up (issue 11), then
    // the next breach opens a new incident.
    for up in [false, true, false, false] {
        w.result(t, up, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let all = w.incidents();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].dedup_key, all[1].dedup_key);
}

#[test]
fn notification_seqs_never_repeat_across_a_restart_after_the_outbox_emptied() {
    let mut w = World::new("{ availability = 99.0 }", ONLY_DOWN);
    let mut t = T0;
    for i in 0..4 {
        w.result(t, i < 1, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let istore = IncidentStore::new(w.store.clone());
    let first = istore.due(u64::MAX, 10).expect("due");
    assert_eq!(first.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![1]);
    // Delivered: the outbox is empty.
    let mut batch = crate::store::StoreBatch::default();
    IncidentStore::delivered(&mut batch, 1);
    istore.commit(batch).expect("commit");
    let web = w.engine.policy("web");
    let hook = Webhook {
        name: "ops".into(),
        url: "http://127.0.0.1:9/".into(),
        headers: Vec::new(),
        secret: None,
        priorities: Vec::new(),
    };
    w.engine = Engine::load(
        istore.clone(),
        IncidentSettings::default(),
        HashMap::from([("web".to_owned(), web)]),
        vec![hook],
    )
    .expect("reload");
    let id = w.incidents()[0].id;
    w.engine.resolve(id, "ana", "fixed", t).expect("resolve");
    let next = istore.due(u64::MAX, 10).expect("due");
    assert_eq!(
        next.iter().map(|n| n.seq).collect::<Vec<_>>(),
        vec![2],
        "a new seq after the restart"
    );
}

#[test]
fn an_open_unacknowledged_incident_is_renotified_every_repeat_interval() {
    let mut w = World::new(
        "{ availability = 99.0 }",
        "burn_rate = []\nsla_below_target = false\nrepeat_interval = \"1m\"\n",
    );
    let mut t = T0;
    // Down for 3 minutes 30 s: opened at the 2nd evaluation, repeated at +1 min, +2 min, +3 min.
    while t < T0 + 210 * SECOND_MS {
        w.result(t, false, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let repeats: Vec<u64> = w
        .changes
        .iter()
        .filter(|(_, c)| matches!(c, Change::Notified(_, e, _) if e == "repeat"))
        .map(|(t, _)| *t)
        .collect();
    let opened = w
        .first_at(|c| matches!(c, Change::Opened(..)))
        .expect("opened");
    assert_eq!(
        repeats,
        vec![
            opened + MINUTE_MS,
            opened + 2 * MINUTE_MS,
            opened + 3 * MINUTE_MS
        ]
    );
    // Acknowledged incidents are not repeated.
    let id = w.incidents()[0].id;
    w.engine.acknowledge(id, "ana", "", t).expect("ack");
    for _ in 0..12 {
        w.result(t, false, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    assert_eq!(
        w.count(|c| matches!(c, Change::Notified(_, e, _) if e == "repeat")),
        3
    );
}

#[test]
fn the_latency_rule_opens_when_too_few_checks_are_fast_enough() {
    let mut w = World::new(
        "{ availability = 99.0, latency_ms = 300, latency_pct = 90 }",
        "burn_rate = []\nsla_below_target = false\nlatency_window = \"5m\"\n",
    );
    let latency = |w: &mut World, t: u64, us: u64| {
        w.seq += 1;
        let r = ProbeResult {
            seq: w.seq,
            probe: "p".into(),
            kind: "http".into(),
            target: "t".into(),
            observed_ms: t,
            interval_ms: EVERY,
            state: ProbeState::Up,
            latency_us: us,
            error: None,
            metrics: Vec::new(),
        };
        mark_dirty(&w.store, t, EVERY);
        w.store
            .tree(trees::RESULTS)
            .expect("tree")
            .apply(vec![Store::result_write("a", "b", &r)])
            .expect("write");
        w.registry.update("lab", "a", "b", t, |_| {});
    };
    let mut t = T0;
    // 30 fast checks, then slow ones (500 ms): the share within 300 ms drops under 90 % once
    // more than 3 of the last 30 are slow.
    for _ in 0..30 {
        latency(&mut w, t, 20_000);
        w.evaluate(t + 1);
        t += EVERY;
    }
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 0);
    let slow_from = t;
    for _ in 0..10 {
        latency(&mut w, t, 500_000);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let opened = w
        .first_at(|c| matches!(c, Change::Opened(_, k) if k == "latency:web"))
        .expect("latency incident");
    // The 4th slow check makes it 26 of 30 within (86.7 % < 90 %).
    assert_eq!(opened, slow_from + 3 * EVERY + 1);
}

#[test]
fn a_child_of_a_down_parent_is_recorded_inhibited_and_not_notified() {
    let catalogue = catalogue(
        "[[services]]\nid = \"db\"\nname = \"DB\"\ncriticality = \"critical\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.0 }\n\
         [[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.0 }\ndepends_on = [\"db\"]\n",
    );
    let mut w = World::new("{ availability = 99.0 }", ONLY_DOWN);
    w.catalogue = catalogue;
    let policy = w.engine.policy("web");
    w.engine = Engine::load(
        IncidentStore::new(w.store.clone()),
        IncidentSettings::default(),
        HashMap::from([
            ("web".to_owned(), policy.clone()),
            ("db".to_owned(), policy),
        ]),
        vec![Webhook {
            name: "ops".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: Vec::new(),
            secret: None,
            priorities: Vec::new(),
        }],
    )
    .expect("engine");
    let mut t = T0;
    for _ in 0..4 {
        w.result(t, false, EVERY);
        let agents = w.registry.snapshot();
        let engine = &w.engine;
        let policy = |s: &str| engine.policy(s);
        let c =
            conditions(&w.store, &w.catalogue, &agents, &policy, EVERY, t + 1).expect("conditions");
        let cat = w.catalogue.clone();
        let topo = move |s: &str| {
            cat.get(s).map_or((Vec::new(), Vec::new()), |s| {
                (s.depends_on.clone(), vec!["a".to_owned()])
            })
        };
        let changes = w.engine.evaluate(t + 1, &c, &[], &topo).expect("evaluate");
        w.changes.extend(changes.into_iter().map(|ch| (t + 1, ch)));
        t += EVERY;
    }
    let incidents = w.incidents();
    let db = incidents
        .iter()
        .find(|i| i.service == "db")
        .expect("db incident");
    let web = incidents
        .iter()
        .find(|i| i.service == "web")
        .expect("web incident");
    assert!(!db.inhibited);
    assert!(web.inhibited);
    assert_eq!(web.inhibited_by.as_deref(), Some("service db down"));
    let notified: Vec<u64> = w
        .changes
        .iter()
        .filter_map(|(_, c)| match c {
            Change::Notified(id, _, _) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(notified, vec![db.id], "only the parent notifies");
}

// Event-driven evaluation: ingest reports a probe state change and the evaluator judges the
// service-down rule of that service at once, besides the periodic tick.

const SECOND_PROBES: u64 = SECOND_MS;

#[test]
fn with_down_after_1_the_evaluation_triggered_by_the_first_down_result_opens_at_once() {
    let mut w = World::new(
        "{ availability = 99.0 }",
        "burn_rate = []\nsla_below_target = false\ndown_after = 1\nresolve_after = \"0s\"\n",
    );
    // A 1 s probe, ticks every 10 s (at T0 + k·10 s + 1); the outage starts between ticks.
    let down_from = T0 + 63 * SECOND_MS + 400;
    let down_to = down_from + 5 * SECOND_MS;
    let mut t = T0 + 400;
    let mut last_up = true;
    let mut tick = T0 + 401;
    while t < down_to + 5 * SECOND_MS {
        while tick <= t {
            w.evaluate(tick);
            tick += EVERY;
        }
        let up = !(down_from..down_to).contains(&t);
        w.result(t, up, SECOND_PROBES);
        if up != last_up {
            // The result arrives 30 ms after its observation; the evaluation follows at once.
            let pending = w.evaluate_event(&["web"], t + 30);
            assert!(
                pending.is_empty(),
                "down_after = 1 leaves nothing to follow up"
            );
            last_up = up;
        }
        t += SECOND_PROBES;
    }
    let opened = w
        .first_at(|c| matches!(c, Change::Opened(_, k) if k == "service_down:web"))
        .expect("opened");
    assert_eq!(opened, down_from + 30, "at the event, not at the next tick");
    let resolved = w
        .first_at(|c| matches!(c, Change::Resolved(..)))
        .expect("resolved");
    assert_eq!(
        resolved,
        down_to + 30,
        "resolve_after = 0s: at the recovery event"
    );
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 1);
    assert_eq!(
        w.count(|c| matches!(c, Change::Notified(_, e, _) if e == "opened")),
        1
    );
}

#[test]
fn an_event_evaluation_never_shortens_down_after_and_its_follow_up_opens_one_interval_later() {
    let mut w = World::new("{ availability = 99.0 }", ONLY_DOWN);
    // down_after = 2 (default): down at two instants `EVERY` apart.
    let down_from = T0 + 60 * SECOND_MS + 500;
    let mut t = T0 + 500;
    while t < down_from {
        w.result(t, true, SECOND_PROBES);
        t += SECOND_PROBES;
    }
    w.result(down_from, false, SECOND_PROBES);
    let pending = w.evaluate_event(&["web"], down_from + 20);
    assert_eq!(
        pending,
        vec!["web".to_owned()],
        "down, not for long enough yet"
    );
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 0);
    // More evaluations in between (other events) see the same rule: still not open.
    let mut t = down_from + SECOND_PROBES;
    while t < down_from + EVERY {
        w.result(t, false, SECOND_PROBES);
        w.evaluate_event(&["web"], t + 20);
        t += SECOND_PROBES;
    }
    assert_eq!(
        w.count(|c| matches!(c, Change::Opened(..))),
        0,
        "an extra evaluation is not an extra consecutive evaluation"
    );
    // The follow-up one interval after the first event opens it.
    w.result(t, false, SECOND_PROBES);
    let pending = w.evaluate_event(&["web"], down_from + 20 + EVERY);
    assert!(pending.is_empty());
    assert_eq!(
        w.first_at(|c| matches!(c, Change::Opened(..))),
        Some(down_from + 20 + EVERY)
    );
}

#[test]
fn a_service_that_recovers_before_its_follow_up_is_not_followed_up_and_opens_nothing() {
    let mut w = World::new("{ availability = 99.0 }", ONLY_DOWN);
    let mut t = T0;
    for _ in 0..30 {
        w.result(t, true, SECOND_PROBES);
        t += SECOND_PROBES;
    }
    w.result(t, false, SECOND_PROBES);
    assert_eq!(w.evaluate_event(&["web"], t + 10), vec!["web".to_owned()]);
    t += SECOND_PROBES;
    w.result(t, true, SECOND_PROBES);
    assert!(w.evaluate_event(&["web"], t + 10).is_empty(), "up again");
    assert!(w.evaluate_event(&["web"], t + 10 + EVERY).is_empty());
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 0);
}

#[test]
fn an_event_evaluation_judges_only_the_services_it_names() {
    let catalogue = catalogue(
        "[[services]]\nid = \"db\"\nname = \"DB\"\ncriticality = \"critical\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.0 }\n\
         [[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.0 }\n",
    );
    let mut w = World::new(
        "{ availability = 99.0 }",
        "burn_rate = []\nsla_below_target = false\ndown_after = 1\n",
    );
    w.catalogue = catalogue;
    let policy = w.engine.policy("web");
    w.engine = Engine::load(
        IncidentStore::new(w.store.clone()),
        IncidentSettings::default(),
        HashMap::from([
            ("web".to_owned(), policy.clone()),
            ("db".to_owned(), policy),
        ]),
        Vec::new(),
    )
    .expect("engine");
    w.result(T0, false, SECOND_PROBES);
    w.evaluate_event(&["web"], T0 + 10);
    let keys: Vec<String> = w.incidents().into_iter().map(|i| i.dedup_key).collect();
    assert_eq!(keys, vec!["service_down:web".to_owned()]);
    // The tick judges everything.
    w.evaluate(T0 + 20);
    assert_eq!(w.incidents().len(), 2);
}

#[test]
fn event_evaluations_between_ticks_do_not_make_a_flap_out_of_one_outage_or_hide_a_real_flap() {
    // The flap history is the service's state sampled `EVERY` apart back from each
    // evaluation's `now`, so extra evaluations add no history entries of their own.
    for (flapping, expected_flaps) in [(false, 0), (true, 1)] {
        let mut w = World::new(
            "{ availability = 99.0 }",
            "burn_rate = []\nsla_below_target = false\ndown_after = 1\nresolve_after = \"0s\"\n",
        );
        let mut t = T0;
        let end = T0 + 20 * MINUTE_MS;
        let mut last = None;
        let mut k = 0u64;
        while t < end {
            let up = if flapping {
                // Down 10 s, up 10 s for ten minutes, then up.
                t >= T0 + 10 * MINUTE_MS || (t - T0) / EVERY % 2 == 1
            } else {
                // One 3-minute outage.
                !(T0 + 5 * MINUTE_MS..T0 + 8 * MINUTE_MS).contains(&t)
            };
            w.result(t, up, SECOND_PROBES);
            if last != Some(up) {
                w.evaluate_event(&["web"], t + 5);
                last = Some(up);
            }
            if k % 10 == 0 {
                w.evaluate(t + 1);
            }
            t += SECOND_PROBES;
            k += 1;
        }
        assert_eq!(
            w.count(|c| matches!(c, Change::FlappingStarted(_))),
            expected_flaps,
            "flapping = {flapping}"
        );
        if !flapping {
            assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 1);
            assert_eq!(w.count(|c| matches!(c, Change::Resolved(..))), 1);
        } else {
            assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 1, "no churn");
        }
    }
}

/// Up every 10 s from `from` to `to` except down in `[down_from, down_to)`.
fn results(w: &mut World, from: u64, to: u64, down_from: u64, down_to: u64) {
    let mut t = from;
    while t < to {
        w.result(t, !(down_from..down_to).contains(&t), EVERY);
        t += EVERY;
    }
}

#[test]
fn an_outage_found_in_late_data_is_one_service_down_with_its_own_times_in_mttr_and_no_page() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    let cut = T0 + 10 * MINUTE_MS;
    let back = cut + 10 * MINUTE_MS;
    let (down_from, down_to) = (cut + 3 * MINUTE_MS, cut + 5 * MINUTE_MS);
    let mut t = T0;
    while t < cut {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    // Partitioned: the collector evaluates and sees nothing.
    while t < back {
        w.evaluate(t + 1);
        t += EVERY;
    }
    // The replay: the target was down for 2 minutes inside the cut. The first part of the
    // replay shows the outage's start only: nothing is recorded until its end arrives.
    results(&mut w, cut, down_from + MINUTE_MS, down_from, down_to);
    assert!(
        w.evaluate_late((cut, down_from + MINUTE_MS), back),
        "end not known yet"
    );
    assert!(w.incidents().iter().all(|i| i.rule != Rule::ServiceDown));
    results(&mut w, down_from + MINUTE_MS, back, down_from, down_to);
    assert!(!w.evaluate_late((cut, back), back + 1));
    // Looking again (another late batch, a retry) records nothing twice.
    assert!(!w.evaluate_late((cut, back), back + 2));
    while t < back + 5 * MINUTE_MS {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let down: Vec<_> = w
        .incidents()
        .into_iter()
        .filter(|i| i.rule == Rule::ServiceDown)
        .collect();
    assert_eq!(down.len(), 1, "{down:#?}");
    let i = &down[0];
    assert!(i.late);
    assert_eq!(i.found_late_ms, Some(back + 1));
    assert_eq!(i.state, super::IncidentState::Resolved);
    assert!(i.detected_ms.abs_diff(down_from) <= EVERY, "{i:#?}");
    let resolved = i.resolved_ms.expect("resolved from the data");
    assert!(resolved.abs_diff(down_to) <= EVERY, "{i:#?}");
    let ttr = i.time_to_restore_s().expect("time to restore");
    assert!((ttr - 120.0).abs() <= 10.0, "{ttr}");
    assert_eq!(i.resolved_by.as_deref(), Some("data"));
    // Already over when found: recorded, not paged (notify_late = "open_only").
    assert!(w.queued().iter().all(|n| n.event != "late"));
    assert!(i.timeline.iter().any(|e| e.event == "notification_held"));
    // Counted in MTTR like any other: the API's stats count service-down incidents detected in
    // the window and average their time to restore.
    assert_eq!(
        w.count(|c| matches!(c, Change::FoundLate(..))),
        1,
        "{:?}",
        w.changes
    );
}

#[test]
fn an_outage_found_late_that_still_goes_on_opens_at_its_start_is_paged_as_late_and_resolves_live() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    let cut = T0 + 10 * MINUTE_MS;
    let back = cut + 10 * MINUTE_MS;
    let down_from = cut + 8 * MINUTE_MS;
    let mut t = T0;
    while t < cut {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    while t < back {
        w.evaluate(t + 1);
        t += EVERY;
    }
    results(&mut w, cut, back, down_from, u64::MAX);
    assert!(!w.evaluate_late((cut, back), back));
    let open: Vec<_> = w.engine.active().cloned().collect();
    let i = open
        .iter()
        .find(|i| i.rule == Rule::ServiceDown)
        .expect("open");
    assert!(
        i.late && i.detected_ms.abs_diff(down_from) <= EVERY,
        "{i:#?}"
    );
    assert_eq!(
        w.queued().iter().filter(|n| n.event == "late").count(),
        1,
        "paged as late"
    );
    // The outage goes on live, then ends: the same incident, resolved by the live rule.
    while t < back + 3 * MINUTE_MS {
        w.result(t, t >= back + MINUTE_MS, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    let down: Vec<_> = w
        .incidents()
        .into_iter()
        .filter(|i| i.rule == Rule::ServiceDown)
        .collect();
    assert_eq!(down.len(), 1, "{down:#?}");
    assert_eq!(down[0].state, super::IncidentState::Resolved);
}

#[test]
fn a_live_outage_is_not_recorded_again_when_its_data_is_looked_at_late() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    let mut t = T0;
    while t < T0 + 10 * MINUTE_MS {
        w.result(
            t,
            !(T0 + 2 * MINUTE_MS..T0 + 4 * MINUTE_MS).contains(&t),
            EVERY,
        );
        w.evaluate(t + 1);
        t += EVERY;
    }
    assert_eq!(w.incidents().len(), 1);
    assert!(!w.evaluate_late((T0, t), t));
    assert_eq!(w.incidents().len(), 1, "{:#?}", w.incidents());
}

#[test]
fn after_a_restart_or_a_freeze_agents_get_a_grace_of_their_silence_threshold() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    let mut t = T0;
    while t < T0 + 5 * MINUTE_MS {
        w.result(t, true, EVERY);
        w.evaluate_watching(t + 1, Hearing::Since(T0 - DAY_MS));
        t += EVERY;
    }
    // The collector is away 10 minutes (down, disconnected, or SIGSTOPped); the agent goes on
    // measuring and its results reach the collector a little after it is back.
    let away = 10 * MINUTE_MS;
    let back = t + away;
    // While disconnected silence does not grow: heard until `t`, lost at `t`.
    w.evaluate_watching(
        t + away / 2,
        Hearing::LostAt {
            since: T0 - DAY_MS,
            lost_at: t,
        },
    );
    // Back (reconnected, or resumed after a freeze): a grace of the silence threshold
    // (3 × the agent's slowest interval, 60 s here: 180 s).
    let mut now = back;
    while now < back + 30 * SECOND_MS {
        w.evaluate_watching(now, Hearing::Since(back));
        now += EVERY;
    }
    results(&mut w, t, now, u64::MAX, u64::MAX);
    while now < back + 5 * MINUTE_MS {
        w.result(now, true, EVERY);
        w.evaluate_watching(now + 1, Hearing::Since(back));
        now += EVERY;
    }
    let false_ones: Vec<_> = w
        .incidents()
        .into_iter()
        .filter(|i| matches!(i.rule, Rule::AgentOffline | Rule::Unmonitored))
        .collect();
    assert!(false_ones.is_empty(), "{false_ones:#?}");
    // The grace is not forever: an agent that really stays silent is offline once its
    // silence threshold has passed since the collector came back.
    let last_heard = now - EVERY;
    w.evaluate_watching(last_heard + 3 * MINUTE_MS, Hearing::Since(back));
    assert!(w.incidents().iter().all(|i| i.rule != Rule::AgentOffline));
    w.evaluate_watching(last_heard + 3 * MINUTE_MS + EVERY, Hearing::Since(back));
    assert_eq!(
        w.incidents()
            .iter()
            .filter(|i| i.rule == Rule::AgentOffline)
            .count(),
        1
    );
}

#[test]
fn an_announced_offline_agent_is_offline_during_the_grace() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    w.result(T0, true, EVERY);
    w.status(T0 + SECOND_MS, AgentState::Offline);
    // The broker's retained last will decides while silence cannot.
    w.evaluate_watching(T0 + 2 * SECOND_MS, Hearing::Since(T0 + 2 * SECOND_MS));
    assert_eq!(
        w.incidents()
            .iter()
            .filter(|i| i.rule == Rule::AgentOffline)
            .count(),
        1
    );
}

/// Up from `T0` to a 10-minute cut, evaluated live; nothing during the cut; then the replay of
/// the cut with `web` down in `[down_from, down_to)`. Returns the end of the cut.
fn partitioned(w: &mut World, down_from: u64, down_to: u64) -> u64 {
    let cut = T0 + 10 * MINUTE_MS;
    let back = cut + 10 * MINUTE_MS;
    let mut t = T0;
    while t < cut {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    while t < back {
        w.evaluate(t + 1);
        t += EVERY;
    }
    results(w, cut, back, down_from, down_to);
    back
}

#[test]
fn with_notify_late_always_an_outage_already_over_is_paged_as_late() {
    let mut w = World::new(
        "{ availability = 99.9 }",
        "burn_rate = []\nsla_below_target = false\nnotify_late = \"always\"\n",
    );
    let down_from = T0 + 13 * MINUTE_MS;
    let back = partitioned(&mut w, down_from, down_from + 2 * MINUTE_MS);
    assert!(!w.evaluate_late((T0 + 10 * MINUTE_MS, back), back));
    let late: Vec<_> = w
        .queued()
        .into_iter()
        .filter(|n| n.event == "late")
        .collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].body["incident"]["late"], true);
    assert_eq!(late[0].body["incident"]["state"], "resolved");
}

#[test]
fn a_burn_rate_incident_opened_from_replayed_data_carries_the_outage_times_in_its_timeline() {
    // Default rules: the fast burn rate (14.4× over 1 h and 5 min) opens on the replayed data
    // (with no coverage floor: the world holds less than the hour's data).
    let mut w = World::new(
        "{ availability = 99.9 }",
        "sla_below_target = false\nburn_rate_min_coverage_pct = 0\n",
    );
    let (down_from, down_to) = (T0 + 16 * MINUTE_MS, T0 + 19 * MINUTE_MS);
    let back = partitioned(&mut w, down_from, down_to);
    // What the evaluator does on its next tick: the late look first, then every rule.
    assert!(!w.evaluate_late((T0 + 10 * MINUTE_MS, back), back + 1));
    w.evaluate(back + 1);
    let incidents = w.incidents();
    let burn = incidents
        .iter()
        .find(|i| i.rule == Rule::BurnRate("fast".into()))
        .expect("fast burn opened");
    let at = |event: &str| {
        burn.timeline
            .iter()
            .find(|e| e.event == event)
            .map(|e| e.at_ms)
    };
    assert!(
        at("outage_in_data").is_some_and(|t| t.abs_diff(down_from) <= EVERY),
        "{burn:#?}"
    );
    assert!(
        at("outage_in_data_ended").is_some_and(|t| t.abs_diff(down_to) <= EVERY),
        "{burn:#?}"
    );
    assert_eq!(at("opened"), Some(back + 1));
    let down: Vec<_> = incidents
        .iter()
        .filter(|i| i.rule == Rule::ServiceDown)
        .collect();
    assert_eq!(down.len(), 1);
    assert!(down[0].late);
}

#[test]
fn an_agent_offline_incident_is_not_resolved_while_the_collector_hears_nobody() {
    let mut w = World::new("{ availability = 99.9 }", ONLY_DOWN);
    let connected = Hearing::Since(T0 - DAY_MS);
    w.result(T0, true, EVERY);
    // Silent past its threshold (180 s): offline.
    w.evaluate_watching(T0 + 4 * MINUTE_MS, connected);
    assert_eq!(
        w.engine
            .active()
            .filter(|i| i.rule == Rule::AgentOffline)
            .count(),
        1
    );
    // The collector loses the broker for 10 minutes: the agent is still not heard from.
    let lost = Hearing::LostAt {
        since: T0 - DAY_MS,
        lost_at: T0 + 5 * MINUTE_MS,
    };
    let mut now = T0 + 5 * MINUTE_MS;
    while now < T0 + 15 * MINUTE_MS {
        w.evaluate_watching(now, lost);
        now += EVERY;
    }
    assert_eq!(
        w.engine
            .active()
            .filter(|i| i.rule == Rule::AgentOffline)
            .count(),
        1,
        "not resolved by the collector's own deafness"
    );
}

// Issue 11: SLO semantics for young and partly measured windows.

#[test]
fn a_30_s_outage_on_a_fresh_service_opens_exactly_one_incident_service_down() {
    // Default policy (burn rates, SLA below target, latency window all on), 30-day window.
    let mut w = World::new("{ availability = 99.9 }", "");
    let down_from = T0 + 5 * MINUTE_MS;
    let down_to = down_from + 30 * SECOND_MS;
    let end = down_to + 10 * MINUTE_MS;
    let mut t = T0;
    while t <= end {
        w.result(t, !(down_from..down_to).contains(&t), EVERY);
        w.evaluate(t);
        t += EVERY;
    }
    let opened: Vec<String> = w
        .changes
        .iter()
        .filter_map(|(_, c)| match c {
            Change::Opened(_, k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opened, vec!["service_down:web".to_owned()]);
    assert_eq!(w.count(|c| matches!(c, Change::Resolved(..))), 1);
    // The 30-day budget is the window's, not the 15 measured minutes'.
    let service = w.catalogue.get("web").expect("web").clone();
    let r = crate::availability::service_report(&w.store, &service, service.window.resolve(end))
        .expect("report");
    assert_eq!(r.error_budget_s, 2_592.0);
    assert_eq!(r.downtime_s, 30.0);
    assert_eq!(r.measured_since, Some(T0));
    assert!(r.coverage_pct.expect("coverage") < 1.0);
}

#[test]
fn thirty_one_days_of_data_with_the_budget_spent_opens_sla_below_target() {
    let mut w = World::new(
        "{ availability = 99.9, window = \"30d\" }",
        "burn_rate = []\ndown_after = 1000\nflapping = { enabled = false }\n",
    );
    let end = T0 + 31 * DAY_MS;
    // 50 minutes down, ten days before the end: more than 43 min 12 s.
    let down_from = end - 10 * DAY_MS;
    let down_to = down_from + 50 * MINUTE_MS;
    let mut writes = Vec::new();
    let mut t = T0;
    while t <= end {
        writes.push(w.result_write(t, !(down_from..down_to).contains(&t), MINUTE_MS));
        t += MINUTE_MS;
    }
    w.store
        .tree(trees::RESULTS)
        .expect("tree")
        .apply(writes)
        .expect("write");
    w.registry.update("lab", "a", "b", end, |_| {});
    // Before the outage spent it, the budget holds; after, the rule opens.
    w.evaluate(down_from + 40 * MINUTE_MS);
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 0);
    w.evaluate(end);
    let opened: Vec<_> = w
        .changes
        .iter()
        .filter(|(_, c)| matches!(c, Change::Opened(_, k) if k == "sla_below_target:web"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(opened, vec![end]);
}

#[test]
fn a_manual_resolve_while_breaching_holds_until_the_condition_clears_and_breaches_again() {
    let mut w = World::new(
        "{ availability = 99.9 }",
        "burn_rate = []\nsla_below_target = false\ndown_after = 1\nresolve_after = \"0s\"\nflapping = { enabled = false }\n",
    );
    let mut t = T0;
    // Up for a minute, then down.
    while t < T0 + MINUTE_MS {
        w.result(t, true, EVERY);
        w.evaluate(t + 1);
        t += EVERY;
    }
    w.result(t, false, EVERY);
    w.evaluate(t + 1);
    let id = w.incidents().first().expect("opened").id;
    w.engine
        .resolve(id, "ana", "known issue", t + 2)
        .expect("resolve");
    // Still down for two more minutes: no new incident, and the timeline says why, once.
    for _ in 0..12 {
        t += EVERY;
        w.result(t, false, EVERY);
        w.evaluate(t + 1);
    }
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 1);
    let resolved = w
        .incidents()
        .into_iter()
        .find(|i| i.id == id)
        .expect("kept");
    assert!(resolved.held_until_clear);
    assert_eq!(
        resolved
            .timeline
            .iter()
            .filter(|e| e.event == "reopen_held")
            .count(),
        1
    );
    // A restart keeps holding it.
    w.engine = Engine::load(
        IncidentStore::new(w.store.clone()),
        IncidentSettings::default(),
        HashMap::from([("web".to_owned(), w.engine.policy("web"))]),
        Vec::new(),
    )
    .expect("reload");
    t += EVERY;
    w.result(t, false, EVERY);
    w.evaluate(t + 1);
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 1);
    // It clears, then breaches again: a new incident.
    t += EVERY;
    w.result(t, true, EVERY);
    w.evaluate(t + 1);
    let resolved = w
        .incidents()
        .into_iter()
        .find(|i| i.id == id)
        .expect("kept");
    assert!(!resolved.held_until_clear);
    assert!(resolved
        .timeline
        .iter()
        .any(|e| e.event == "condition_cleared"));
    t += EVERY;
    w.result(t, false, EVERY);
    w.evaluate(t + 1);
    assert_eq!(w.count(|c| matches!(c, Change::Opened(..))), 2);
}

/// A finished drill run of `web` whose window is `[from_ms, to_ms)`.
fn finished_drill(id: u64, from_ms: u64, to_ms: u64) -> crate::drill::DrillRun {
    crate::drill::DrillRun {
        id,
        drill: "dr".into(),
        service: "web".into(),
        runbook: "rb".into(),
        scenario: String::new(),
        participants: Vec::new(),
        confirm_ms: 0,
        max_duration_ms: None,
        notify: false,
        trigger: crate::drill::DrillTrigger::Manual { by: "ana".into() },
        status: crate::drill::DrillStatus::Finished,
        started_ms: from_ms,
        inject_ms: Some(from_ms),
        run: None,
        restore_run: None,
        aborted: None,
        skipped: None,
        deviations: Vec::new(),
        ended_ms: Some(to_ms),
        settle_until_ms: Some(to_ms),
        finished_ms: Some(to_ms),
        outcome: None,
        sealed_sha256: None,
        review: None,
    }
}

impl World {
    fn drill(&self, run: &crate::drill::DrillRun) {
        crate::drill::DrillStore::new(self.store.clone())
            .put(run)
            .expect("drill stored");
    }

    fn burn(&self, len_ms: u64, now: u64) -> super::conditions::Burn {
        let web = self.catalogue.get("web").expect("web");
        super::conditions::burn(&self.store, web, len_ms, now).expect("burn")
    }
}

#[test]
fn a_burn_rate_leaves_drill_time_out_of_the_budget_arithmetic_exactly() {
    // 99.9 %: the budget share is 0.1 %. Up, then down for 300 s from `down` (results every
    // 10 s hold until the next one), judged at `now` = down + 360 s over 1 h and 5 min.
    let mut w = World::new(
        "{ availability = 99.9 }",
        "sla_below_target = false\ndown_after = 1000\nflapping = { enabled = false }\n",
    );
    let down = T0 + 2 * 3_600 * SECOND_MS;
    let now = down + 360 * SECOND_MS;
    let mut t = T0;
    while t < now {
        w.result(t, !(down..down + 300 * SECOND_MS).contains(&t), EVERY);
        t += EVERY;
    }
    let share = 1.0 - 99.9 / 100.0;
    let (hour, five) = (3_600 * SECOND_MS, 5 * MINUTE_MS);
    // No drill: 300 s down of 3600 s; 240 s down of 300 s.
    assert_eq!(w.burn(hour, now).rate, Some(300.0 / 3_600.0 / share));
    assert_eq!(w.burn(five, now).rate, Some(240.0 / 300.0 / share));
    // A drill over [down − 20 s, down + 200 s): its 200 s of down time leave both sides of the
    // ratio (the 20 s measured up in it stay up); 100 s real downtime remain.
    w.drill(&finished_drill(
        1,
        down - 20 * SECOND_MS,
        down + 200 * SECOND_MS,
    ));
    let long = w.burn(hour, now);
    assert_eq!(long.rate, Some(100.0 / 3_400.0 / share));
    assert_eq!(long.coverage_pct, 100.0, "drill time is not a coverage gap");
    // 5 min = [down + 60 s, down + 360 s): 140 s drill, 100 s down, 60 s up.
    assert_eq!(w.burn(five, now).rate, Some(100.0 / 160.0 / share));
    // A second drill run covering the rest of the outage: nothing burns.
    w.drill(&finished_drill(
        2,
        down + 150 * SECOND_MS,
        down + 320 * SECOND_MS,
    ));
    assert_eq!(w.burn(hour, now).rate, Some(0.0));
    assert_eq!(w.burn(five, now).rate, Some(0.0));
}

#[test]
fn a_drill_over_an_outage_opens_no_burn_rate_incident_and_one_past_its_end_opens_later() {
    // As `fast_and_slow_burn_rates_fire_at_the_exact_evaluation` (fast opens 60 s into the
    // outage without a drill), with drills over the outage.
    let run = |drill_to: u64| -> Option<u64> {
        let mut w = World::new(
            "{ availability = 99.9 }",
            "sla_below_target = false\ndown_after = 1000\nflapping = { enabled = false }\n",
        );
        let down = T0 + 2 * 3_600 * SECOND_MS;
        w.drill(&finished_drill(1, down - 20 * SECOND_MS, down + drill_to));
        let mut t = T0;
        while t <= down + 10 * MINUTE_MS {
            w.result(t, t < down, EVERY);
            if t >= down {
                w.evaluate(t);
            }
            t += EVERY;
        }
        let fast = w.first_at(|c| matches!(c, Change::Opened(_, k) if k == "burn_rate.fast:web"));
        fast.map(|at| at - down)
    };
    // The drill lasts the whole 10 minutes looked at: no burn-rate incident.
    assert_eq!(run(11 * MINUTE_MS), None);
    // The drill ends 200 s into the outage: the real downtime d after it burns the hour at
    // d / 3400 s / 0.1 % (drill time is in neither side), ≥ 14.4× from d = 48.96 s: at the
    // evaluation 250 s in (d = 50 s; the 5 min window then burns 50 / 100 s / 0.1 %).
    assert_eq!(run(200 * SECOND_MS), Some(250 * SECOND_MS));
}

#[test]
fn drill_downtime_does_not_spend_the_slo_window_budget() {
    // A 1-day window at 99.9 % allows 86.4 s; 300 s down spends it, unless it was a drill.
    let judge = |with_drill: bool| -> (bool, crate::sla::SlaReport) {
        let mut w = World::new(
            "{ availability = 99.9, window = \"1d\" }",
            "burn_rate = []\ndown_after = 1000\nflapping = { enabled = false }\n",
        );
        let down = T0 + 30 * MINUTE_MS;
        let now = T0 + 40 * MINUTE_MS;
        if with_drill {
            w.drill(&finished_drill(1, down - MINUTE_MS, down + 6 * MINUTE_MS));
        }
        let mut t = T0;
        while t < now {
            w.result(t, !(down..down + 300 * SECOND_MS).contains(&t), EVERY);
            t += EVERY;
        }
        w.evaluate(now);
        let opened = w.count(|c| matches!(c, Change::Opened(_, k) if k == "sla_below_target:web"));
        let web = w.catalogue.get("web").expect("web");
        let report =
            crate::availability::service_report(&w.store, web, web.window.resolve(now)).expect("r");
        (opened == 1, report)
    };
    let (opened, r) = judge(false);
    assert!(opened);
    assert_eq!(
        (r.downtime_s, r.drill_s, r.error_budget_s),
        (300.0, 0.0, 86.4)
    );
    let (opened, r) = judge(true);
    assert!(!opened, "{r:?}");
    assert_eq!(
        (r.downtime_s, r.drill_s, r.error_budget_s),
        (0.0, 300.0, 86.1)
    );
}

#[test]
fn a_drill_incident_that_is_not_paged_is_not_paged_when_acknowledged_or_resolved_either() {
    let outbox = |notify: bool| {
        let mut w = World::new(
            "{ availability = 99.9 }",
            "burn_rate = []\nsla_below_target = false\ndown_after = 1\nflapping = { enabled = false }\n",
        );
        w.engine
            .set_drills(HashMap::from([("web".to_owned(), (7, notify))]));
        w.result(T0, false, EVERY);
        w.evaluate(T0 + 1);
        let incident = w.incidents().pop().expect("opened");
        assert_eq!(incident.drill, Some(7));
        w.engine
            .acknowledge(incident.id, "ana", "drill", T0 + 2)
            .expect("ack");
        w.engine
            .resolve(incident.id, "ana", "drill over", T0 + 3)
            .expect("resolve");
        (w.queued(), w.incidents().pop().expect("kept"))
    };
    let (queued, incident) = outbox(false);
    assert!(queued.is_empty(), "{queued:?}");
    let held: Vec<&str> = incident
        .timeline
        .iter()
        .filter(|e| e.event == "notification_held")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(held, ["drill incident"; 3]);
    // A drill with `notify = true`: every event goes out, marked with the drill run.
    let (queued, _) = outbox(true);
    let events: Vec<&str> = queued.iter().map(|n| n.event.as_str()).collect();
    assert_eq!(events, ["opened", "acknowledged", "resolved"]);
    assert!(queued.iter().all(|n| n.body["incident"]["drill"] == 7));
}

#[test]
fn an_outage_found_late_inside_a_drill_window_is_a_drill_incident_and_not_paged() {
    let mut w = World::new(
        "{ availability = 99.9 }",
        "burn_rate = []\nsla_below_target = false\nnotify_late = \"always\"\n",
    );
    let down_from = T0 + 13 * MINUTE_MS;
    w.drill(&finished_drill(
        4,
        down_from - MINUTE_MS,
        down_from + 5 * MINUTE_MS,
    ));
    let back = partitioned(&mut w, down_from, down_from + 2 * MINUTE_MS);
    assert!(!w.evaluate_late((T0 + 10 * MINUTE_MS, back), back));
    let incident = w
        .incidents()
        .into_iter()
        .find(|i| i.rule == Rule::ServiceDown)
        .expect("recorded");
    assert!(incident.late, "{incident:#?}");
    assert_eq!(incident.drill, Some(4));
    let late: Vec<_> = w
        .queued()
        .into_iter()
        .filter(|n| n.event == "late")
        .collect();
    assert_eq!(late, Vec::new(), "a drill's outage is not paged");
}
