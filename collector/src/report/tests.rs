//! The reports on a fixed store and a virtual clock: two services measured through October
//! and November 2026 with scripted outages, a maintenance window, a partial outage, incident
//! records, 30 days of capacity samples and one reviewed drill run (with an RPO reading).
//!
//! - Golden files (`golden/{kind}.{format}`) per kind and format; `WATCHSTAND_UPDATE_GOLDEN=1`
//!   rewrites them (review the diff before committing).
//! - CSV is parsed back (the `csv` crate) and equals the model; HTML is parsed as XML
//!   (quick-xml) and must be well-formed and self-contained.
//! - The figures equal the SLA API's and the incident stats API's for the same window, through
//!   the real router.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;
use watchstand_shared::storage::Write;
use watchstand_shared::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use watchstand_shared::wire::v1::{ProbeResult, ProbeState};

use super::availability::AvailabilityReport;
use super::continuity::{content_hash, ContinuityReport};
use super::render::{render, Tabular};
use super::*;
use crate::drill::measure::{
    IncidentLine, Outcome, RpoResult, RpoStatus, SlaEffect, StepLine, Targets, Verdict,
};
use crate::drill::run::{DrillRun, DrillStatus, DrillTrigger, Review};
use crate::drill::DrillStore;
use crate::incident::record::{Impact, Incident, IncidentStore, TimelineEvent};
use crate::incident::{IncidentState, Priority, Rule};
use crate::runbook::rpo::{Reads, RpoReading};
use crate::store::{capacity_key, trees, StoreBatch};

/// 2026-11-01T00:00:00Z.
const NOV: u64 = 1_793_491_200_000;
/// 2026-12-01T00:00:00Z.
const DEC: u64 = 1_796_083_200_000;
/// The virtual now: 2026-12-07T09:00:00Z.
const NOW: u64 = 1_796_634_000_000;
/// Every probe checks every 5 minutes.
const EVERY: u64 = 5 * MINUTE_MS;
/// Measurements start 2026-10-20T00:00:00Z.
const START: u64 = NOV - 12 * DAY_MS;

const CONFIG: &str = r#"
[collector]
id = "main"
data_dir = "d"

[[services]]
id = "web"
name = "Web shop"
criticality = "high"
rto = "15m"
rpo = "5m"
probes = ["a/http", "b/http"]
mode = "any"
slo = { availability = 99.9, window = "month", latency_ms = 300, latency_pct = 95 }

[[services]]
id = "db"
name = "Orders | database"
criticality = "critical"
rto = "5m"
rpo = "0s"
probes = ["a/tcp"]
mode = "all"
slo = { availability = 99.5 }
maintenance = [ { from = "2026-11-20T02:00:00Z", to = "2026-11-20T04:00:00Z" } ]
"#;

const fn at(day: u64, hour: u64, minute: u64) -> u64 {
    NOV + (day - 1) * DAY_MS + hour * HOUR_MS + minute * MINUTE_MS
}

/// Whether `agent/probe` is down at `t` (the script).
fn is_down(agent: &str, probe: &str, t: u64) -> bool {
    let within = |from: u64, to: u64| (from..to).contains(&t);
    match (agent, probe) {
        // Both web probes: 30 min on Nov 10, 10 min on Oct 20 (the previous month).
        ("a" | "b", "http")
            if within(at(10, 10, 0), at(10, 10, 30))
                || within(at(10, 10, 0) - 21 * DAY_MS, at(10, 10, 10) - 21 * DAY_MS) =>
        {
            true
        }
        // Only a's web probe: a partial outage of 1 h on Nov 15.
        ("a", "http") => within(at(15, 8, 0), at(15, 9, 0)),
        // The database: down in its maintenance window (not counted) and 5 min on Nov 25.
        ("a", "tcp") => {
            within(at(20, 2, 30), at(20, 3, 30)) || within(at(25, 14, 0), at(25, 14, 5))
        }
        _ => false,
    }
}

fn results(store: &Store) {
    let mut seq = 0;
    for (agent, probe) in [("a", "http"), ("b", "http"), ("a", "tcp")] {
        let mut batch = StoreBatch::default();
        let mut t = START;
        while t < DEC {
            seq += 1;
            let down = is_down(agent, probe, t);
            // Every 25th check is slow: 96 % within the 300 ms objective.
            let latency_us = if seq % 25 == 0 { 400_000 } else { 120_000 };
            let r = ProbeResult {
                seq,
                probe: probe.into(),
                kind: "http".into(),
                target: "t".into(),
                observed_ms: t,
                interval_ms: EVERY,
                state: if down {
                    ProbeState::Down
                } else {
                    ProbeState::Up
                },
                latency_us,
                error: down.then(|| "connection refused".to_owned()),
                metrics: Vec::new(),
            };
            for w in crate::rollup::dirty_marks(agent, probe, t, EVERY) {
                if let Write::Put(k, _) = w {
                    batch.mark_dirty(k);
                }
            }
            batch.push(trees::RESULTS, Store::result_write(agent, "boot1", &r));
            t += EVERY;
        }
        store.commit(batch).expect("commit");
    }
    crate::rollup::recompute_all_dirty(store, &tokio_util::sync::CancellationToken::new(), None)
        .expect("rollups");
}

fn event(at_ms: u64, event: &str, by: Option<&str>, detail: &str) -> TimelineEvent {
    TimelineEvent {
        at_ms,
        event: event.into(),
        by: by.map(str::to_owned),
        detail: detail.into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn incident(
    id: u64,
    service: &str,
    agent: Option<&str>,
    rule: Rule,
    priority: Priority,
    detected_ms: u64,
    ack: Option<(u64, &str)>,
    resolved: Option<(u64, &str, &str)>,
    summary: &str,
) -> Incident {
    let mut timeline = vec![event(detected_ms, "opened", None, summary)];
    if let Some((t, by)) = ack {
        timeline.push(event(t, "acknowledged", Some(by), "on it"));
    }
    if let Some((t, by, note)) = resolved {
        timeline.push(event(t, "resolved", Some(by), note));
    }
    Incident {
        id,
        dedup_key: format!("{}:{}", rule.key_part(), agent.unwrap_or(service)),
        service: service.into(),
        agent: agent.map(str::to_owned),
        metric: None,
        rule,
        priority,
        state: match (ack, resolved) {
            (_, Some(_)) => IncidentState::Resolved,
            (Some(_), None) => IncidentState::Acknowledged,
            (None, None) => IncidentState::Open,
        },
        flapping: false,
        inhibited: false,
        inhibited_by: None,
        drill: None,
        detected_ms,
        acknowledged_ms: ack.map(|a| a.0),
        acknowledged_by: ack.map(|a| a.1.to_owned()),
        resolved_ms: resolved.map(|r| r.0),
        resolved_by: resolved.map(|r| r.1.to_owned()),
        resolution_note: resolved.map(|r| r.2.to_owned()),
        impact: Impact {
            services: if service.is_empty() {
                Vec::new()
            } else {
                vec![service.to_owned()]
            },
            scope: "full".into(),
        },
        summary: summary.into(),
        last_notified_ms: None,
        timeline,
        held_until_clear: false,
        late: false,
        found_late_ms: None,
    }
}

fn incidents(store: &Store) {
    let oct = at(10, 10, 0) - 21 * DAY_MS;
    let records = [
        incident(
            1,
            "web",
            None,
            Rule::ServiceDown,
            Priority::P2,
            oct + MINUTE_MS,
            None,
            Some((oct + 10 * MINUTE_MS, "auto", "healthy again")),
            "Web shop is down (2 of 2 probes down)",
        ),
        incident(
            2,
            "web",
            None,
            Rule::ServiceDown,
            Priority::P2,
            at(10, 10, 1),
            Some((at(10, 10, 5), "alice")),
            Some((at(10, 10, 30), "auto", "healthy again")),
            "Web shop is down (2 of 2 probes down)",
        ),
        incident(
            3,
            "db",
            None,
            Rule::ServiceDown,
            Priority::P1,
            at(25, 14, 1),
            None,
            Some((at(25, 14, 5), "auto", "healthy again")),
            "Orders | database is down <tcp>",
        ),
        incident(
            4,
            "",
            Some("b"),
            Rule::AgentOffline,
            Priority::P3,
            at(28, 6, 0),
            Some((at(28, 6, 10), "bob")),
            Some((at(28, 7, 0), "bob", "agent restarted & back")),
            "agent b is offline",
        ),
        incident(
            5,
            "web",
            None,
            Rule::Latency,
            Priority::P2,
            at(30, 23, 0),
            None,
            None,
            "Web shop latency objective missed",
        ),
    ];
    let mut batch = StoreBatch::default();
    for r in &records {
        IncidentStore::put(&mut batch, r);
    }
    store.commit(batch).expect("incidents");
}

fn capacity(store: &Store) {
    let mut batch = StoreBatch::default();
    let start = DEC - 30 * DAY_MS;
    for h in 0..30 * 24u64 {
        let t = start + h * HOUR_MS;
        let day = (t - start) as f64 / DAY_MS as f64;
        // A small deterministic wobble so the fit is not perfect.
        let wobble = [0.0, 0.3, -0.2, 0.1][(h % 4) as usize];
        for (agent, metric, v) in [
            ("a", "disk_used_pct:/", 40.0 + day + wobble),
            ("a", "cpu_pct", 20.0 + wobble),
            ("b", "disk_used_pct:/data", 70.0 + 0.5 * day + wobble),
            ("b", "mem_used_pct", 93.0 + wobble),
            ("b", "load_1", 0.7 + wobble),
        ] {
            batch.mark_capacity_dirty(crate::capacity::rollup::dirty_key(agent, metric, t));
            batch.push(
                trees::CAPACITY,
                Write::Put(capacity_key(agent, metric, t), v.to_be_bytes().to_vec()),
            );
        }
    }
    store.commit(batch).expect("capacity");
    crate::capacity::rollup::recompute_all(store, 0).expect("capacity rollups");
}

/// When the fixture's drill injects: 2026-11-12T10:00:00Z (the web shop is up all along, so
/// the drill window changes no SLA figure of the other reports).
const INJECT: u64 = NOV + 11 * DAY_MS + 10 * HOUR_MS;
/// The fixture's drill run.
const DRILL_RUN: u64 = 1;

#[allow(clippy::too_many_arguments)]
fn step_line(
    id: &str,
    phase: &str,
    kind: &str,
    started: u64,
    took_ms: u64,
    attempts: usize,
    detail: &str,
    rpo: Option<RpoReading>,
) -> StepLine {
    StepLine {
        run: 3,
        id: id.into(),
        phase: phase.into(),
        kind: kind.into(),
        status: "succeeded".into(),
        started_ms: Some(started),
        ended_ms: Some(started + took_ms),
        duration_s: Some(took_ms as f64 / 1e3),
        attempts,
        detail: detail.into(),
        rpo,
    }
}

/// A finished, sealed, then reviewed drill of the web shop (planned 10:00, injected 10:00:00,
/// first down result after 5.12 s, incident after 30.5 s, recovered after 130 s; RTO 15 min,
/// RPO 5 min, the recovery point read as 42.5 s of lag).
pub(super) fn drill_run() -> DrillRun {
    let reading = RpoReading {
        reads: Reads::LagS,
        value: "42.5".into(),
        at_ms: INJECT + 140_000,
        lag_ms: 42_500,
        rpo_ms: 300_000,
        met: true,
    };
    let steps = vec![
        step_line(
            "break-primary",
            "inject",
            "http",
            INJECT,
            120,
            1,
            "HTTP 200; body: broken",
            None,
        ),
        step_line(
            "promote",
            "recover",
            "agent_action",
            INJECT + 40_000,
            75_000,
            2,
            "exit code 0 | promoted <standby>",
            None,
        ),
        step_line(
            "rpo",
            "recover",
            "rpo_check",
            INJECT + 139_900,
            100,
            1,
            &reading.describe(),
            Some(reading.clone()),
        ),
        step_line(
            "fail-back",
            "restore",
            "http",
            INJECT + 150_000,
            200,
            1,
            "HTTP 200; body: back on primary",
            None,
        ),
    ];
    let rpo = crate::drill::measure::rpo_result(&steps, 300_000);
    let mut run = DrillRun {
        id: DRILL_RUN,
        drill: "web-dr".into(),
        service: "web".into(),
        runbook: "web-failover".into(),
        scenario: "Primary site lost; standby promoted".into(),
        participants: vec!["ana (continuity manager)".into(), "bob (DBA)".into()],
        confirm_ms: 30_000,
        max_duration_ms: Some(1_800_000),
        notify: false,
        trigger: DrillTrigger::Schedule {
            planned_ms: INJECT - 2_000,
        },
        status: DrillStatus::Finished,
        started_ms: INJECT - 1_500,
        inject_ms: Some(INJECT),
        run: Some(3),
        restore_run: None,
        aborted: None,
        skipped: None,
        deviations: Vec::new(),
        ended_ms: Some(INJECT + 150_200),
        settle_until_ms: Some(INJECT + 150_200 + 30_000 + 600_000),
        finished_ms: Some(INJECT + 780_300),
        outcome: Some(Outcome {
            targets: Targets {
                name: "Web shop".into(),
                criticality: "high".into(),
                rto_s: 900.0,
                rpo_s: 300.0,
            },
            inject_ms: Some(INJECT),
            first_down_ms: Some(INJECT + 5_120),
            detect_s: Some(5.12),
            incident_ms: Some(INJECT + 30_500),
            detect_incident_s: Some(30.5),
            recovered_ms: Some(INJECT + 130_000),
            recover_s: Some(130.0),
            confirm_s: 30.0,
            rto_met: true,
            non_up_s: 125.0,
            rpo,
            steps,
            incidents: vec![IncidentLine {
                id: 6,
                rule: "service_down".into(),
                detected_ms: INJECT + 30_500,
                resolved_ms: Some(INJECT + 131_000),
                drill: true,
                notified: false,
            }],
            sla: Some(SlaEffect {
                from_ms: INJECT,
                to_ms: INJECT + 780_200,
                drill_s: 125.0,
                downtime_s: 0.0,
                unmonitored_s: 0.0,
                uptime_s: 655.2,
            }),
            deviations: vec!["step \"promote\" needed 2 attempts".into()],
            verdict: Verdict::Met,
            reason: "recovered in 130.0 s, within the RTO of 900.0 s".into(),
        }),
        sealed_sha256: None,
        review: None,
    };
    run.sealed_sha256 = Some(content_hash(&run));
    run.review = Some(Review {
        reviewer: "ana".into(),
        findings: "Promotion needed a retry: the standby's <health> check & the DNS TTL".into(),
        corrective_actions: vec![
            "Lower the DNS TTL to 30 s".into(),
            "Check the standby before promoting".into(),
        ],
        plan_updated: true,
        recorded_by: "ops-token".into(),
        recorded_ms: INJECT + 2 * DAY_MS,
    });
    run
}

fn drill_runs(store: &Store) {
    DrillStore::new(store.clone())
        .put(&drill_run())
        .expect("drill run");
}

/// The fixed store (written once, shared read-only by the tests) and the state of a collector
/// over it (needs a tokio runtime: the state holds an engine task).
fn fixture() -> crate::api::AppState {
    static STORE: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
    let store = STORE
        .get_or_init(|| {
            let store = Store::in_memory();
            results(&store);
            incidents(&store);
            capacity(&store);
            drill_runs(&store);
            store
        })
        .clone();
    let state = crate::api::tests::state_for(CONFIG, store, crate::auth::ApiAccess::default());
    for agent in ["a", "b"] {
        state.registry.update("lab", agent, "boot1", NOW, |_| {});
    }
    state
}

fn agents() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

/// The `kind` report over `period`; the continuity kind is of the fixture's drill run.
fn build_at(state: &crate::api::AppState, kind: Kind, period: &Period) -> Report {
    if kind == Kind::Continuity {
        return Report::Continuity(Box::new(
            continuity::build(&state.store, &state.collector_id, DRILL_RUN, NOW)
                .expect("continuity report"),
        ));
    }
    let agents = agents();
    let src = ReportSource {
        store: &state.store,
        catalogue: &state.catalogue,
        capacity: &state.capacity,
        agents: &agents,
        collector: &state.collector_id,
    };
    build(src, kind, period, NOW).expect("report")
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/report/golden")
}

#[tokio::test]
async fn every_kind_and_format_matches_its_golden_file() {
    let state = fixture();
    let nov = Period::month("2026-11").expect("month");
    let update = std::env::var_os("WATCHSTAND_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for kind in Kind::ALL {
        let report = build_at(&state, kind, &nov);
        for format in Format::ALL {
            let text = render(&report, format).expect("render");
            let path = golden_dir().join(format!("{}.{}", kind.as_str(), format.extension()));
            if update {
                std::fs::write(&path, &text).expect("write golden");
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != text {
                let got = path.with_extension(format!("{}.got", format.extension()));
                std::fs::write(&got, &text).expect("write got");
                stale.push(format!("{} (got: {})", path.display(), got.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "reports differ from their golden files (WATCHSTAND_UPDATE_GOLDEN=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("record").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn csv_round_trip<T: Tabular>(t: &T, text: &str) -> Vec<Vec<String>> {
    let (header, rows) = parse_csv(text);
    assert_eq!(header, T::HEADER);
    assert_eq!(rows, t.rows());
    assert!(rows.iter().all(|r| r.len() == T::HEADER.len()));
    rows
}

#[tokio::test]
async fn csv_parses_back_to_the_models_figures() {
    let state = fixture();
    let nov = Period::month("2026-11").expect("month");
    for kind in Kind::ALL {
        let report = build_at(&state, kind, &nov);
        let text = render(&report, Format::Csv).expect("csv");
        match &report {
            Report::Availability(r) => {
                let rows = csv_round_trip(r, &text);
                let col = |name: &str| {
                    AvailabilityReport::HEADER
                        .iter()
                        .position(|h| *h == name)
                        .expect("column")
                };
                let web = rows
                    .iter()
                    .find(|r| r[0] == "service" && r[1] == "web")
                    .expect("web");
                let sla = &r.services[0].sla;
                assert_eq!(
                    web[col("availability_pct")].parse::<f64>().ok(),
                    sla.availability_pct
                );
                assert_eq!(
                    web[col("downtime_s")].parse::<f64>().ok(),
                    Some(sla.downtime_s)
                );
                let outages: Vec<_> = rows.iter().filter(|r| r[0] == "outage").collect();
                assert_eq!(outages.len(), 2, "{text}");
                // The outage rows add up to the downtime of each service's row.
                for s in &r.services {
                    let sum: f64 = outages
                        .iter()
                        .filter(|o| o[1] == s.service)
                        .map(|o| o[col("duration_s")].parse::<f64>().expect("number"))
                        .sum();
                    assert_eq!(sum, s.sla.downtime_s, "{}", s.service);
                }
            }
            Report::Service(r) => {
                let rows = csv_round_trip(r, &text);
                // "Orders | database" survives quoting.
                assert_eq!(rows[1][1], "Orders | database");
            }
            Report::Incident(r) => {
                let rows = csv_round_trip(r, &text);
                assert_eq!(
                    rows.len(),
                    4,
                    "the October record is not in November: {text}"
                );
            }
            Report::Continuity(r) => {
                let rows = csv_round_trip(r.as_ref(), &text);
                let col = |name: &str| {
                    ContinuityReport::HEADER
                        .iter()
                        .position(|h| *h == name)
                        .expect("column")
                };
                let figure = |name: &str| {
                    rows.iter()
                        .find(|r| r[col("section")] == "figure" && r[col("name")] == name)
                        .unwrap_or_else(|| panic!("figure {name}: {text}"))
                };
                let recover = figure("recover");
                assert_eq!(recover[col("value_s")].parse::<f64>().ok(), Some(130.0));
                assert_eq!(recover[col("target_s")].parse::<f64>().ok(), Some(900.0));
                assert_eq!(recover[col("result")], "met");
                let rpo = figure("rpo");
                assert_eq!(rpo[col("value_s")].parse::<f64>().ok(), Some(42.5));
                assert_eq!(rpo[col("target_s")].parse::<f64>().ok(), Some(300.0));
                assert_eq!(rpo[col("result")], "met");
                assert_eq!(
                    figure("detect_probe")[col("at_ms")].parse::<u64>().ok(),
                    Some(INJECT + 5_120)
                );
                let steps: Vec<_> = rows
                    .iter()
                    .filter(|r| r[col("section")] == "step")
                    .map(|r| (r[col("name")].as_str(), r[col("phase")].as_str()))
                    .collect();
                assert_eq!(
                    steps,
                    [
                        ("break-primary", "inject"),
                        ("promote", "recover"),
                        ("rpo", "recover"),
                        ("fail-back", "restore")
                    ]
                );
                // The step's detail survives quoting (`|`, `<`).
                assert!(rows
                    .iter()
                    .any(|r| r[col("detail")] == "exit code 0 | promoted <standby>"));
                let hash = rows
                    .iter()
                    .find(|r| r[col("name")] == "content_sha256")
                    .expect("hash row");
                assert_eq!(hash[col("detail")], r.content_sha256);
                assert!(rows.iter().all(|row| row[0] == "1"));
            }
            Report::Capacity(r) => {
                let rows = csv_round_trip(r, &text);
                assert_eq!(rows.len(), 5);
                // At risk first: memory above its 90 % threshold, then the disk that fills
                // sooner.
                let order: Vec<_> = rows
                    .iter()
                    .map(|r| (r[0].as_str(), r[1].as_str(), r[12].as_str()))
                    .collect();
                assert_eq!(
                    order[..3],
                    [
                        ("b", "mem_used_pct", "already_above"),
                        ("b", "disk_used_pct:/data", "crossing"),
                        ("a", "disk_used_pct:/", "crossing")
                    ]
                );
            }
        }
    }
}

/// Parses `html` as XML: every element closed in order, no undeclared entity.
fn assert_well_formed(html: &str) {
    let mut reader = quick_xml::Reader::from_str(html);
    let mut depth: i64 = 0;
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => {
                depth += 1;
                elements += 1;
            }
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Text(t)) => {
                t.unescape().unwrap_or_else(|e| {
                    panic!("bad entity near byte {}: {e}", reader.buffer_position())
                });
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at byte {}: {e}", reader.error_position()),
        }
        assert!(depth >= 0, "more end tags than start tags");
    }
    assert_eq!(depth, 0, "unclosed elements");
    assert!(elements > 20, "too few elements: {elements}");
}

#[tokio::test]
async fn html_is_well_formed_self_contained_and_printable_on_a4() {
    let state = fixture();
    let nov = Period::month("2026-11").expect("month");
    for kind in Kind::ALL {
        let html = render(&build_at(&state, kind, &nov), Format::Html).expect("html");
        assert_well_formed(&html);
        assert!(html.contains("@page { size: A4;"), "{kind:?}");
        assert!(html.contains("@media print"), "{kind:?}");
        for outside in ["src=", "href=", "<script", "@import", "url("] {
            assert!(
                !html.contains(outside),
                "{kind:?} loads something: {outside}"
            );
        }
    }
    // Text from the records is escaped, not markup.
    let html = render(&build_at(&state, Kind::Incident, &nov), Format::Html).expect("html");
    assert!(html.contains("&lt;tcp&gt;") && html.contains("restarted &amp; back"));
    let md = render(&build_at(&state, Kind::Incident, &nov), Format::Md).expect("md");
    assert!(
        md.contains("Orders \\| database is down &lt;tcp&gt;"),
        "{md}"
    );
}

#[test]
fn a_broken_document_fails_the_well_formedness_check() {
    for bad in [
        "<html><body><p>x</body></html>",
        "<html><p>a &nbsp; b</p></html>",
    ] {
        let outcome = std::panic::catch_unwind(|| assert_well_formed(bad));
        assert!(outcome.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn outages_partial_outages_and_incidents_are_what_the_script_did() {
    let state = fixture();
    let nov = Period::month("2026-11").expect("month");
    let Report::Availability(r) = build_at(&state, Kind::Availability, &nov) else {
        panic!("kind")
    };
    let web = &r.services[0];
    assert_eq!(web.outages.len(), 1);
    let o = &web.outages[0];
    assert_eq!(
        (o.from_ms, o.to_ms, o.duration_s),
        (at(10, 10, 0), at(10, 10, 30), 1_800.0)
    );
    assert_eq!(o.incident.as_ref().map(|i| i.id), Some(2));
    assert_eq!(web.partial_outages.len(), 1);
    assert_eq!(web.partial_outages[0].duration_s, 3_600.0);
    assert_eq!(web.sla.downtime_s, 1_800.0);
    // 30 min down is within the 43.2 min a 99.9 % target allows over 30 days.
    assert_eq!(web.sla.met, Some(true));
    assert_eq!(web.reliability.incidents, 1);
    assert_eq!(web.reliability.mttr_s, Some(29.0 * 60.0));
    let db = &r.services[1];
    assert_eq!(
        db.outages.len(),
        1,
        "the maintenance-window outage does not count"
    );
    assert_eq!(db.outages[0].duration_s, 300.0);
    assert_eq!(db.sla.maintenance_s, 7_200.0);
    assert_eq!(db.outages[0].incident.as_ref().map(|i| i.id), Some(3));
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, String) {
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri(uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (
        status,
        ct,
        String::from_utf8(bytes.to_vec()).expect("utf-8"),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("json")
}

/// The SLA API's report for `service` over `[from, to)` without its naming fields.
async fn sla_api(app: &axum::Router, service: &str, from: u64, to: u64) -> Value {
    let (status, _, body) = get(
        app,
        &format!("/api/v1/services/{service}/sla?from={from}&to={to}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut v = json(&body);
    let obj = v.as_object_mut().expect("object");
    for k in ["service", "name", "window"] {
        obj.remove(k);
    }
    v
}

#[tokio::test]
async fn figures_equal_the_sla_api_and_the_incident_stats_for_the_same_window() {
    let state = fixture();
    let app = crate::api::router(state);
    let (status, ct, body) = get(
        &app,
        "/api/v1/reports/availability?period=2026-11&format=json",
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, "application/json"),
        "{body}"
    );
    let availability = json(&body);
    let (_, _, body) = get(&app, "/api/v1/reports/service?period=2026-11").await;
    let service = json(&body);
    for (i, id) in ["web", "db"].into_iter().enumerate() {
        let api = sla_api(&app, id, NOV, DEC).await;
        assert_eq!(availability["services"][i]["sla"], api, "{id}");
        assert_eq!(service["services"][i]["current"]["sla"], api, "{id}");
        let previous = sla_api(&app, id, NOV - 31 * DAY_MS, NOV).await;
        assert_eq!(service["services"][i]["previous"]["sla"], previous, "{id}");
        let (_, _, stats) = get(
            &app,
            &format!("/api/v1/incidents/stats?service={id}&from={NOV}&to={DEC}"),
        )
        .await;
        let stats = json(&stats);
        let rel = &availability["services"][i]["reliability"];
        for k in ["incidents", "found_late", "mttr_s", "mtbf_s"] {
            assert_eq!(rel[k], stats[0][k], "{id} {k}");
        }
    }
    // A from/to range is the same window as the month.
    let (_, _, body) = get(
        &app,
        &format!("/api/v1/reports/availability?from={NOV}&to={DEC}"),
    )
    .await;
    assert_eq!(json(&body)["services"], availability["services"]);
}

#[tokio::test]
async fn each_format_has_its_content_type_and_bad_parameters_are_named() {
    let app = crate::api::router(fixture());
    for (format, ct) in [
        ("json", "application/json"),
        ("csv", "text/csv; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("html", "text/html; charset=utf-8"),
    ] {
        let (status, got, body) = get(
            &app,
            &format!("/api/v1/reports/incident?period=2026-11&format={format}"),
        )
        .await;
        assert_eq!((status, got.as_str()), (StatusCode::OK, ct), "{body}");
        assert!(
            body.contains("Web shop") || body.contains("web"),
            "{format}: {body}"
        );
    }
    let cases = [
        ("/api/v1/reports/uptime?period=2026-11", "kind", "invalid kind: \"uptime\" is not a report kind (availability, service, incident, capacity, continuity)"),
        ("/api/v1/reports/service?period=2026-13", "period", "invalid period: \"2026-13\" is not a calendar month (YYYY-MM, e.g. 2026-11)"),
        ("/api/v1/reports/service?period=2026-11&format=pdf", "format", "invalid format: \"pdf\" is not a report format (json, csv, md, html)"),
        ("/api/v1/reports/service?period=2026-11&from=5", "period", "invalid period: give either period or from/to, not both"),
        ("/api/v1/reports/service?to=5", "from", "invalid from: is required with to"),
        ("/api/v1/reports/service?from=yesterday", "from", "invalid from: \"yesterday\" is neither epoch milliseconds nor an RFC 3339 time (2026-12-07T09:00:00Z)"),
        ("/api/v1/reports/service?from=9&to=5", "from", "invalid from: from 9 must be before to 5"),
        ("/api/v1/reports/service?period=2999-01", "period", "invalid period: 2999-01 has not started yet"),
    ];
    for (uri, param, message) in cases {
        let (status, ct, body) = get(&app, uri).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::BAD_REQUEST, "application/json"),
            "{uri}: {body}"
        );
        let v = json(&body);
        assert_eq!(
            (v["param"].as_str(), v["error"].as_str()),
            (Some(param), Some(message)),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_period_in_progress_is_measured_to_now_with_the_whole_periods_budget() {
    let state = fixture();
    let dec = Period::month("2026-12").expect("month");
    let Report::Availability(r) = build_at(&state, Kind::Availability, &dec) else {
        panic!("kind")
    };
    assert_eq!((r.meta.measured_from_ms, r.meta.measured_to_ms), (DEC, NOW));
    let web = &r.services[0];
    assert_eq!((web.sla.from_ms, web.sla.to_ms), (DEC, NOW));
    // 0.1 % of the 31 days of December, not of the 6.4 days measured.
    assert_eq!(web.sla.error_budget_s, 2_678.4);
    // The last November result holds up to twice its interval into December.
    assert_eq!(web.sla.uptime_s, 300.0);
}

#[test]
fn the_content_hash_covers_the_record_and_shows_a_later_edit() {
    let run = drill_run();
    let at = |now: u64, collector: &str| ContinuityReport::of(&run, collector, now);
    let report = at(NOW, "main");
    // Reviewed after it was sealed: the two hashes differ, and the report says so.
    assert_eq!(report.sealed_sha256.as_deref().map(str::len), Some(64));
    assert_ne!(Some(&report.content_sha256), report.sealed_sha256.as_ref());
    assert!(report.changed_since_sealed);
    // Without the review it is the content that was sealed.
    let mut unreviewed = run.clone();
    unreviewed.review = None;
    let sealed = ContinuityReport::of(&unreviewed, "main", NOW);
    assert_eq!(Some(&sealed.content_sha256), sealed.sealed_sha256.as_ref());
    assert!(!sealed.changed_since_sealed);
    // The header (when, by which collector) is not content: the hash stays.
    assert_eq!(
        at(NOW + DAY_MS, "other").content_sha256,
        report.content_sha256
    );
    // Any edit of the content moves it.
    let mut edited = run.clone();
    if let Some(r) = edited.review.as_mut() {
        r.plan_updated = false;
    }
    assert_ne!(content_hash(&edited), report.content_sha256);
    let mut edited = run;
    if let Some(o) = edited.outcome.as_mut() {
        o.recover_s = Some(129.9);
    }
    assert_ne!(content_hash(&edited), report.content_sha256);
}

#[tokio::test]
async fn the_continuity_report_says_what_the_drill_measured() {
    let state = fixture();
    let nov = Period::month("2026-11").expect("month");
    let report = build_at(&state, Kind::Continuity, &nov);
    assert_eq!(report.file_name(Format::Html), "continuity-run-1.html");
    let md = render(&report, Format::Md).expect("md");
    for want in [
        "| **Verdict** | **met** — recovered in 130.0 s, within the RTO of 900.0 s |",
        "| RPO result | met — recovery point 42.5 s within the RPO of 300.0 s (step \"rpo\", lag_s = 42.5) |",
        "| BIA targets | criticality high, RTO 15m, RPO 5m |",
        "| Time to recover (up for 30 s) vs RTO | 2026-11-12T10:02:10.000Z | 130.0 s | 900.0 s | met |",
        "| 3 | `promote` | recover | agent_action | succeeded | 2026-11-12T10:00:40.000Z | 75.0 s | 2 | exit code 0 \\| promoted &lt;standby&gt; |",
        "- Continuity plan updated: yes",
        "**changed since it was sealed**",
    ] {
        assert!(md.contains(want), "{want}\n{md}");
    }
    let html = render(&report, Format::Html).expect("html");
    assert!(
        html.contains("the standby&#x27;s &lt;health&gt; check &amp; the DNS TTL")
            || html.contains("the standby's &lt;health&gt; check &amp; the DNS TTL"),
        "{html}"
    );
    let json: Value =
        serde_json::from_str(&render(&report, Format::Json).expect("json")).expect("json");
    assert_eq!(json["outcome"]["rpo"]["status"], "met");
    assert_eq!(json["review"]["reviewer"], "ana");
    assert_eq!(json["meta"]["kind"], "continuity");
    // The period kinds refuse it by name.
    let agents = agents();
    let src = ReportSource {
        store: &state.store,
        catalogue: &state.catalogue,
        capacity: &state.capacity,
        agents: &agents,
        collector: &state.collector_id,
    };
    let err = build(src, Kind::Continuity, &nov, NOW).expect_err("no drill run");
    assert!(
        matches!(
            err,
            ReportError::BadParam {
                param: "drill_run",
                ..
            }
        ),
        "{err}"
    );
    // A drill that did not meet its RPO says so.
    let mut missed = drill_run();
    if let Some(o) = missed.outcome.as_mut() {
        o.rpo = RpoResult {
            status: RpoStatus::NotMet,
            ..o.rpo.clone()
        };
    }
    let md = render(
        &Report::Continuity(Box::new(ContinuityReport::of(&missed, "main", NOW))),
        Format::Md,
    )
    .expect("md");
    assert!(md.contains("| RPO result | not met — "), "{md}");
}

#[tokio::test]
async fn the_continuity_report_is_served_by_both_routes_and_bad_requests_are_named() {
    let app = crate::api::router(fixture());
    for (format, ct) in [
        ("json", "application/json"),
        ("csv", "text/csv; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("html", "text/html; charset=utf-8"),
    ] {
        let mut bodies = Vec::new();
        for uri in [
            format!("/api/v1/drill-runs/1/report?format={format}"),
            format!("/api/v1/reports/continuity?drill_run=1&format={format}"),
        ] {
            let (status, got, body) = get(&app, &uri).await;
            assert_eq!(
                (status, got.as_str()),
                (StatusCode::OK, ct),
                "{uri}: {body}"
            );
            // Only the generation time may differ between two answers.
            let stable = body
                .lines()
                .filter(|l| !l.contains("generated"))
                .collect::<Vec<_>>()
                .join("\n");
            bodies.push(stable);
        }
        assert_eq!(bodies[0], bodies[1], "{format}");
    }
    let (_, _, body) = get(&app, "/api/v1/reports/continuity?drill_run=1").await;
    let v = json(&body);
    assert_eq!(v["content_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(v["drill_run"], 1);
    let cases = [
        ("/api/v1/reports/continuity", StatusCode::BAD_REQUEST, Some("drill_run"), "invalid drill_run: is required for the continuity report (a drill run id)"),
        ("/api/v1/reports/continuity?drill_run=x", StatusCode::BAD_REQUEST, Some("drill_run"), "invalid drill_run: \"x\" is not a drill run id"),
        ("/api/v1/reports/continuity?drill_run=1&period=2026-11", StatusCode::BAD_REQUEST, Some("period"), "invalid period: the continuity report is of one drill run: give drill_run, not period/from/to"),
        ("/api/v1/reports/continuity?drill_run=1&format=pdf", StatusCode::BAD_REQUEST, Some("format"), "invalid format: \"pdf\" is not a report format (json, csv, md, html)"),
        ("/api/v1/reports/service?drill_run=1", StatusCode::BAD_REQUEST, Some("drill_run"), "invalid drill_run: only the continuity report takes it, not service"),
        ("/api/v1/reports/continuity?drill_run=99", StatusCode::NOT_FOUND, None, "drill run \"99\" not found"),
        ("/api/v1/drill-runs/99/report?format=md", StatusCode::NOT_FOUND, None, "drill run \"99\" not found"),
        ("/api/v1/drill-runs/abc/report", StatusCode::BAD_REQUEST, Some("id"), "invalid id: \"abc\" is not a drill run id"),
        ("/api/v1/drill-runs/1/report?format=pdf", StatusCode::BAD_REQUEST, Some("format"), "invalid format: \"pdf\" is not a report format (json, csv, md, html)"),
    ];
    for (uri, want, param, message) in cases {
        let (status, _, body) = get(&app, uri).await;
        assert_eq!(status, want, "{uri}: {body}");
        let v = json(&body);
        assert_eq!(
            (v["param"].as_str(), v["error"].as_str()),
            (param, Some(message)),
            "{uri}"
        );
    }
}
