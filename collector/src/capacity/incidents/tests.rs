//! Capacity rules on a virtual clock: samples written straight into an in-memory store at
//! chosen instants, rollups recounted, the engine evaluated at chosen instants; and once
//! through the engine task's own timer.

use std::collections::HashMap;
use std::sync::Arc;

use watchstand_shared::config::Problems;
use watchstand_shared::storage::Write;
use watchstand_shared::time::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};

use super::*;
use crate::capacity::forecast::{AlarmRule, Fit, Forecast};
use crate::capacity::rollup::{self, Retention};
use crate::capacity::settings::{self, RawCapacitySection};
use crate::incident::policy::{IncidentSettings, Webhook};
use crate::incident::record::IncidentStore;
use crate::incident::IncidentState;
use crate::store::{trees, StoreBatch};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;

fn ctx(section: &str) -> CapacityContext {
    let raw: RawCapacitySection = toml::from_str(section).expect("section parses");
    let mut p = Problems::default();
    let settings = settings::validate(&raw, &mut p);
    assert!(p.is_empty(), "{p:?}");
    CapacityContext {
        settings,
        retention: Retention {
            raw_ms: 35 * DAY_MS,
            five_minutes_ms: 90 * DAY_MS,
            hours_ms: 730 * DAY_MS,
        },
    }
}

fn engine(store: &Store) -> Engine {
    Engine::load(
        IncidentStore::new(store.clone()),
        IncidentSettings::default(),
        HashMap::new(),
        vec![Webhook {
            name: "ops".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: Vec::new(),
            secret: None,
            priorities: Vec::new(),
        }],
    )
    .expect("engine")
}

fn put(store: &Store, agent: &str, metric: &str, samples: &[(u64, f64)]) {
    let mut batch = StoreBatch::default();
    for (t, v) in samples {
        batch.mark_capacity_dirty(rollup::dirty_key(agent, metric, *t));
        batch.push(
            trees::CAPACITY,
            Write::Put(
                trees::capacity_key(agent, metric, *t),
                v.to_be_bytes().to_vec(),
            ),
        );
    }
    store.commit(batch).expect("commit");
}

fn agents() -> Vec<String> {
    vec!["h1".to_owned()]
}

#[test]
fn above_for_needs_the_whole_run_at_or_above_and_a_fresh_newest_sample() {
    let m = MINUTE_MS;
    let s = |vals: &[(u64, f64)]| {
        vals.iter()
            .map(|(t, v)| (T0 + t * m, *v))
            .collect::<Vec<_>>()
    };
    // Below, then 80 (= the threshold counts) from minute 2 to minute 17.
    let run = s(&[
        (0, 70.0),
        (1, 79.9),
        (2, 80.0),
        (7, 95.0),
        (12, 81.0),
        (17, 80.0),
    ]);
    assert_eq!(above_for(&run, 80.0, 15 * m, T0 + 17 * m), Some(T0 + 2 * m));
    // 14 minutes and 59 s is not 15 minutes.
    assert_eq!(above_for(&run, 80.0, 15 * m + 1, T0 + 17 * m), None);
    // Any order.
    let mut shuffled = run.clone();
    shuffled.reverse();
    assert_eq!(
        above_for(&shuffled, 80.0, 15 * m, T0 + 17 * m),
        Some(T0 + 2 * m)
    );
    // The newest sample older than `for` at `now`: not judged above (the agent went quiet).
    assert_eq!(above_for(&run, 80.0, 15 * m, T0 + 32 * m), Some(T0 + 2 * m));
    assert_eq!(above_for(&run, 80.0, 15 * m, T0 + 32 * m + 1), None);
    // The newest below: not above, however long it was.
    let dipped = s(&[(0, 90.0), (20, 90.0), (21, 50.0)]);
    assert_eq!(above_for(&dipped, 80.0, 15 * m, T0 + 21 * m), None);
    // Every sample read above: the run starts at the oldest read.
    assert_eq!(
        above_for(&s(&[(0, 90.0), (20, 90.0)]), 80.0, 15 * m, T0 + 20 * m),
        Some(T0)
    );
    assert_eq!(above_for(&[], 80.0, 15 * m, T0), None);
}

fn forecast_of(outcome: Outcome, r_squared: f64) -> Forecast {
    Forecast {
        threshold: 90.0,
        aggregate: forecast::Aggregate::Peak,
        as_of_ms: Some(T0),
        step_at_ms: None,
        days_used: 30,
        samples_used: 720,
        fit: Some(Fit {
            slope_per_day: 1.0,
            slope_low: 0.5,
            slope_high: 1.5,
            pivot_ms: T0 - 15 * DAY_MS,
            pivot_value: 60.0,
            r_squared,
            residual_mad: 1.0,
        }),
        outcome,
    }
}

#[test]
fn the_alarm_needs_the_late_end_of_the_interval_within_and_the_fit_above_the_floor() {
    let rule = AlarmRule {
        within_days: 14.0,
        min_r_squared: 0.5,
    };
    let crossing = |date_d: u64, late_d: u64| Outcome::Crossing {
        date_ms: T0 + date_d * DAY_MS,
        earliest_ms: T0 + DAY_MS,
        latest_ms: T0 + late_d * DAY_MS,
    };
    assert!(forecast::alarms(
        &forecast_of(crossing(5, 14), 0.5),
        &rule,
        T0
    ));
    // The point date within 14 days is not enough: the late end is past them.
    assert!(!forecast::alarms(
        &forecast_of(crossing(5, 14), 0.5),
        &rule,
        T0 - 1
    ));
    assert!(!forecast::alarms(
        &forecast_of(crossing(10, 20), 0.9),
        &rule,
        T0
    ));
    // A poor fit does not alarm.
    assert!(!forecast::alarms(
        &forecast_of(crossing(5, 10), 0.49),
        &rule,
        T0
    ));
    // Already above alarms; the other outcomes do not.
    assert!(forecast::alarms(
        &forecast_of(Outcome::AlreadyAbove { value: 91.0 }, 0.0),
        &rule,
        T0
    ));
    for o in [
        Outcome::NoTrend,
        Outcome::Falling,
        Outcome::NotCrossingWithinHorizon {
            horizon_days: 365.0,
        },
    ] {
        assert!(!forecast::alarms(&forecast_of(o, 1.0), &rule, T0));
    }
}

#[test]
fn a_threshold_incident_opens_after_threshold_for_and_resolves_when_below() {
    let store = Store::in_memory();
    let c = ctx("[incidents]\nthreshold_for = \"15m\"\n");
    let mut e = engine(&store);
    let m = MINUTE_MS;
    // CPU at 70 % for ten minutes, then 85 % (threshold 80) from minute 10 to minute 24.
    let mut samples: Vec<(u64, f64)> = (0..10).map(|k| (T0 + k * m, 70.0)).collect();
    samples.extend((10..=24).map(|k| (T0 + k * m, 85.0)));
    put(&store, "h1", "cpu_pct", &samples);
    let changes = evaluate(&mut e, &store, &c, &agents(), T0 + 24 * m + 30 * SECOND_MS).unwrap();
    assert_eq!(changes, []);
    put(&store, "h1", "cpu_pct", &[(T0 + 25 * m, 85.0)]);
    let changes = evaluate(&mut e, &store, &c, &agents(), T0 + 25 * m + 30 * SECOND_MS).unwrap();
    let key = "capacity_threshold:h1:cpu_pct";
    assert_eq!(
        changes,
        [
            Change::Opened(1, key.to_owned()),
            Change::Notified(1, "opened".into(), "ops".into())
        ]
    );
    let incident = e.active().next().expect("active").clone();
    assert_eq!(incident.rule, Rule::CapacityThreshold("cpu_pct".into()));
    assert_eq!(incident.metric.as_deref(), Some("cpu_pct"));
    assert_eq!(incident.agent.as_deref(), Some("h1"));
    assert_eq!(incident.service, "");
    assert_eq!(incident.priority, Priority::P3);
    assert_eq!(
        incident.summary,
        "cpu_pct on h1 at 85 ≥ 80 since 2026-01-01T00:10:00Z"
    );
    // The webhook body names the kind, agent and metric.
    let queued = IncidentStore::new(store.clone()).due(u64::MAX, 10).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body["incident"]["metric"], "cpu_pct");
    assert_eq!(queued[0].body["incident"]["agent"], "h1");
    assert_eq!(
        queued[0].body["incident"]["rule"],
        serde_json::json!({"kind": "capacity_threshold", "name": "cpu_pct"})
    );
    // Still above: nothing changes. Then below: clear, resolved after `resolve_after` (60 s).
    put(&store, "h1", "cpu_pct", &[(T0 + 26 * m, 90.0)]);
    assert_eq!(
        evaluate(&mut e, &store, &c, &agents(), T0 + 26 * m + 30 * SECOND_MS).unwrap(),
        []
    );
    put(&store, "h1", "cpu_pct", &[(T0 + 27 * m, 60.0)]);
    assert_eq!(
        evaluate(&mut e, &store, &c, &agents(), T0 + 27 * m + 30 * SECOND_MS).unwrap(),
        []
    );
    let changes = evaluate(&mut e, &store, &c, &agents(), T0 + 28 * m + 30 * SECOND_MS).unwrap();
    assert_eq!(changes[0], Change::Resolved(1, key.to_owned()));
    assert_eq!(e.active().count(), 0);
    let stored = IncidentStore::new(store.clone())
        .get(1)
        .unwrap()
        .expect("stored");
    assert_eq!(stored.state, IncidentState::Resolved);
}

/// `days` of hourly disk samples from `f(day)`, starting at `from_day`.
fn disk(from_day: u64, days: u64, f: impl Fn(f64) -> f64) -> Vec<(u64, f64)> {
    (from_day * 24..(from_day + days) * 24)
        .map(|h| (T0 + h * HOUR_MS, f(h as f64 / 24.0)))
        .collect()
}

#[test]
fn a_forecast_incident_opens_on_a_filling_disk_and_a_cleanup_resolves_it() {
    let store = Store::in_memory();
    let c = ctx("");
    let mut e = engine(&store);
    let metric = "disk_used_pct:/data";
    // 40 % + 1.5 %/day for 30 days: 85 % now, 90 % at day 33⅓ — within 14 days.
    put(&store, "h1", metric, &disk(0, 30, |d| 40.0 + 1.5 * d));
    rollup::recompute_all(&store, 0).unwrap();
    let now = T0 + 30 * DAY_MS;
    let view =
        report::forecast_view(&store, &c, "h1", metric, now - 30 * DAY_MS, now, now).unwrap();
    eprintln!("{:?}", view.forecast);
    let changes = evaluate(&mut e, &store, &c, &agents(), now).unwrap();
    let key = format!("capacity_forecast:h1:{metric}");
    assert_eq!(
        changes,
        [
            Change::Opened(1, key.clone()),
            Change::Notified(1, "opened".into(), "ops".into())
        ]
    );
    let incident = e.active().next().expect("active").clone();
    assert_eq!(incident.rule, Rule::CapacityForecast(metric.into()));
    assert_eq!(incident.priority, Priority::P4);
    assert_eq!(
        incident.summary,
        "disk_used_pct:/data on h1 projected to reach 90 on 2026-02-03T08:30:00Z (80 % interval 2026-02-03T08:00:00Z – 2026-02-03T09:00:00Z, R² 1.00)"
    );
    // A slower disk (0.5 %/day: 90 % in 40 days) on another agent opens nothing.
    put(&store, "h2", metric, &disk(0, 30, |d| 50.0 + 0.5 * d));
    rollup::recompute_all(&store, 0).unwrap();
    let both = vec!["h1".to_owned(), "h2".to_owned()];
    assert_eq!(
        evaluate(&mut e, &store, &c, &both, now + MINUTE_MS).unwrap(),
        []
    );
    // A cleanup to 30 % on day 30, then 6 flat days: the step is found, the fit after it has
    // no trend, the rule is clear; resolved after `resolve_after` (60 s).
    put(&store, "h1", metric, &disk(30, 6, |_| 30.0));
    rollup::recompute_all(&store, 0).unwrap();
    let later = T0 + 36 * DAY_MS;
    assert_eq!(evaluate(&mut e, &store, &c, &agents(), later).unwrap(), []);
    let changes = evaluate(&mut e, &store, &c, &agents(), later + MINUTE_MS).unwrap();
    assert_eq!(changes[0], Change::Resolved(1, key));
    assert_eq!(e.active().count(), 0);
}

#[test]
fn an_active_capacity_incident_without_samples_or_threshold_any_more_resolves() {
    let store = Store::in_memory();
    let mut e = engine(&store);
    let m = MINUTE_MS;
    put(
        &store,
        "h1",
        "load_1",
        &(0..=20).map(|k| (T0 + k * m, 9.0)).collect::<Vec<_>>(),
    );
    // load_1 has a threshold only by configuration.
    let with = ctx("[[overrides]]\nmetric = \"load_1\"\nthreshold = 8\n");
    let opened = evaluate(&mut e, &store, &with, &agents(), T0 + 20 * m).unwrap();
    assert_eq!(
        opened[0],
        Change::Opened(1, "capacity_threshold:h1:load_1".into())
    );
    // The override removed (a restart with a new config): the rule is no longer true.
    let without = ctx("");
    assert_eq!(
        evaluate(&mut e, &store, &without, &agents(), T0 + 21 * m).unwrap(),
        []
    );
    let changes = evaluate(&mut e, &store, &without, &agents(), T0 + 22 * m).unwrap();
    assert_eq!(
        changes[0],
        Change::Resolved(1, "capacity_threshold:h1:load_1".into())
    );
}

/// Through the engine task: its capacity timer (`evaluate_every = "1s"`) judges the rules and
/// the snapshot shows the incident; with `enabled = false` nothing is judged.
#[tokio::test]
async fn the_engine_task_judges_capacity_on_its_own_timer() {
    use crate::engine::{self, EngineDeps, EngineSnapshot};
    use crate::registry::Registry;
    use tokio_util::sync::CancellationToken;
    use watchstand_shared::time::now_ms;

    for enabled in [true, false] {
        let store = Store::in_memory();
        let now = now_ms();
        put(
            &store,
            "h1",
            "mem_used_pct",
            &(0..=10)
                .map(|k| (now - k * MINUTE_MS, 95.0))
                .collect::<Vec<_>>(),
        );
        let e = engine(&store);
        let (handle, mut inbox) = engine::channel(EngineSnapshot::of(&e, 0, None));
        inbox.watch_capacity(Arc::new(ctx(&format!(
            "[incidents]\nenabled = {enabled}\nevaluate_every = \"1s\"\nthreshold_for = \"5m\"\n"
        ))));
        let registry = Registry::new(Vec::new());
        registry.update("lab", "h1", "boot-1", now, |_| {});
        let deps = EngineDeps {
            store: store.clone(),
            catalogue: Arc::new(crate::config::Catalogue::default()),
            registry: Arc::new(registry),
            notifier: crate::incident::notify::wake_channel().0,
            first_tick: std::time::Duration::from_secs(86_400),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(engine::run(inbox, e, deps, stop.clone()));
        let mut watch = handle.watch();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if watch.borrow_and_update().evaluations > 0 {
                    break;
                }
                if watch.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        let snapshot = handle.snapshot();
        if enabled {
            assert!(waited.is_ok(), "no capacity evaluation within 5 s");
            assert_eq!(snapshot.active.len(), 1, "{snapshot:?}");
            assert_eq!(
                snapshot.active[0].dedup_key,
                "capacity_threshold:h1:mem_used_pct"
            );
        } else {
            assert!(waited.is_err(), "evaluated although disabled: {snapshot:?}");
            assert_eq!(snapshot.active, []);
        }
        stop.cancel();
        task.await.expect("task ends");
    }
}
