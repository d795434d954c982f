//! The IT service continuity test report of one drill run (ISO/IEC 20000-1 8.7.2): service and
//! BIA targets, scenario, participants, planned and actual times, the step timeline, time to
//! detect, time to recover against the RTO, the RPO result, incidents seen, the SLA effect,
//! deviations, the verdict, and the review an operator fills in afterwards.
//!
//! Everything comes from the stored [`DrillRun`], whose measurements were frozen when the drill
//! finished ([`crate::drill::measure`]). The **content hash** (`content_sha256`) is SHA-256 over
//! the JSON of [`ContinuityContent`] — the record's facts, review included — and nothing else:
//! not the header (generation time, collector), not the figures table (derived from the
//! content), not the hashes. `sealed_sha256` is the same hash taken when the drill finished, so
//! a later edit (the review) shows as two different hashes.
//!
//! CSV is one long table a spreadsheet can filter (`section`): the figures (one row each, with
//! target and result), then the step timeline, the incidents, the review and the two hashes.
//! The `drill_run` column lets the CSVs of many drills be pasted into one sheet.

use serde::Serialize;

use super::render::{cell, Tabular};
use super::{Kind, Period, ReportError, ReportMeta};
use crate::auth::{hex, sha256};
use crate::drill::measure::Outcome;
use crate::drill::run::{DrillRun, DrillTrigger, Review};
use crate::drill::DrillStore;
use crate::store::Store;

/// The facts of one drill run, as hashed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContinuityContent {
    /// Drill run id.
    pub drill_run: u64,
    /// Drill id.
    pub drill: String,
    /// Service id.
    pub service: String,
    /// Runbook.
    pub runbook: String,
    /// Scenario.
    pub scenario: String,
    /// Participants.
    pub participants: Vec<String>,
    /// How it was started.
    pub trigger: DrillTrigger,
    /// Planned start (scheduled drills), epoch ms.
    pub planned_ms: Option<u64>,
    /// Actual start, epoch ms.
    pub started_ms: u64,
    /// Runbook end, epoch ms.
    pub ended_ms: Option<u64>,
    /// `running`, `restoring`, `settling` (the report is not final yet), `finished`, `skipped`.
    pub status: String,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Measurements, steps, incidents, SLA effect, RPO result, verdict (finished runs).
    pub outcome: Option<Outcome>,
    /// Review.
    pub review: Option<Review>,
}

impl ContinuityContent {
    /// The content of `run`.
    pub fn of(run: &DrillRun) -> Self {
        Self {
            drill_run: run.id,
            drill: run.drill.clone(),
            service: run.service.clone(),
            runbook: run.runbook.clone(),
            scenario: run.scenario.clone(),
            participants: run.participants.clone(),
            trigger: run.trigger.clone(),
            planned_ms: match run.trigger {
                DrillTrigger::Schedule { planned_ms } => Some(planned_ms),
                DrillTrigger::Manual { .. } => None,
            },
            started_ms: run.started_ms,
            ended_ms: run.ended_ms,
            status: run.status.as_str().to_owned(),
            skipped: run.skipped.clone(),
            outcome: run.outcome.clone(),
            review: run.review.clone(),
        }
    }

    /// SHA-256 (hex) of its JSON.
    pub fn hash(&self) -> String {
        // Serializing plain data to a Vec cannot fail; an empty input would still hash.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex(&sha256(&bytes))
    }
}

/// The content hash of `run`'s report as it stands (what `sealed_sha256` is set to when the
/// drill finishes).
pub fn content_hash(run: &DrillRun) -> String {
    ContinuityContent::of(run).hash()
}

/// One measured figure against its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Key: `inject`, `detect_probe`, `detect_incident`, `recover`, `rpo`, `non_up`,
    /// `sla_drill`, `sla_downtime`, `verdict`.
    pub name: &'static str,
    /// As people read it.
    pub label: String,
    /// When, epoch ms.
    pub at_ms: Option<u64>,
    /// The figure, seconds (from inject for times).
    pub value_s: Option<f64>,
    /// The target it is compared with (RTO, RPO), seconds.
    pub target_s: Option<f64>,
    /// `met`, `not met`, `not checked`, `aborted`; none when nothing is compared.
    pub result: Option<String>,
    /// More in words.
    pub detail: String,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContinuityReport {
    /// Header (period = the drill run from start to the end of settling).
    pub meta: ReportMeta,
    /// The record's facts (hashed).
    #[serde(flatten)]
    pub content: ContinuityContent,
    /// The figures against their targets (derived from `outcome`; empty before it is
    /// finished).
    pub figures: Vec<Figure>,
    /// SHA-256 of the content when the drill finished.
    pub sealed_sha256: Option<String>,
    /// SHA-256 of the content now.
    pub content_sha256: String,
    /// The content changed since it was sealed (an edit, normally the review).
    pub changed_since_sealed: bool,
}

fn figures(o: &Outcome) -> Vec<Figure> {
    let met = |ok: bool| Some(if ok { "met" } else { "not met" }.to_owned());
    let mut out = vec![
        Figure {
            name: "inject",
            label: "Inject (first inject step began)".into(),
            at_ms: o.inject_ms,
            value_s: o.inject_ms.map(|_| 0.0),
            target_s: None,
            result: None,
            detail: String::new(),
        },
        Figure {
            name: "detect_probe",
            label: "Time to detect (first down result)".into(),
            at_ms: o.first_down_ms,
            value_s: o.detect_s,
            target_s: None,
            result: None,
            detail: String::new(),
        },
        Figure {
            name: "detect_incident",
            label: "Time to detect (incident opened)".into(),
            at_ms: o.incident_ms,
            value_s: o.detect_incident_s,
            target_s: None,
            result: None,
            detail: String::new(),
        },
        Figure {
            name: "recover",
            label: format!("Time to recover (up for {} s) vs RTO", o.confirm_s),
            at_ms: o.recovered_ms,
            value_s: o.recover_s,
            target_s: Some(o.targets.rto_s),
            result: met(o.rto_met),
            detail: String::new(),
        },
        Figure {
            name: "rpo",
            label: "Recovery point vs RPO".into(),
            at_ms: o.rpo.at_ms,
            value_s: o.rpo.lag_s,
            target_s: Some(o.targets.rpo_s),
            result: Some(o.rpo.status.as_str().to_owned()),
            detail: o.rpo.detail.clone(),
        },
        Figure {
            name: "non_up",
            label: "Non-up time from inject".into(),
            at_ms: None,
            value_s: Some(o.non_up_s),
            target_s: None,
            result: None,
            detail: String::new(),
        },
    ];
    if let Some(sla) = &o.sla {
        out.push(Figure {
            name: "sla_drill",
            label: "SLA: drill time (drill_s)".into(),
            at_ms: Some(sla.from_ms),
            value_s: Some(sla.drill_s),
            target_s: None,
            result: None,
            detail: String::new(),
        });
        out.push(Figure {
            name: "sla_downtime",
            label: "SLA: downtime in the drill window".into(),
            at_ms: Some(sla.from_ms),
            value_s: Some(sla.downtime_s),
            target_s: None,
            result: None,
            detail: String::new(),
        });
    }
    out.push(Figure {
        name: "verdict",
        label: "Verdict".into(),
        at_ms: None,
        value_s: None,
        target_s: None,
        result: Some(o.verdict.as_str().to_owned()),
        detail: o.reason.clone(),
    });
    out
}

impl ContinuityReport {
    /// The report of `run` as of `now_ms`, made by `collector`.
    pub fn of(run: &DrillRun, collector: &str, now_ms: u64) -> Self {
        let content = ContinuityContent::of(run);
        let content_sha256 = content.hash();
        let to_ms = run
            .settle_until_ms
            .or(run.ended_ms)
            .unwrap_or(now_ms)
            .max(run.started_ms);
        let measured = run
            .outcome
            .as_ref()
            .and_then(|o| o.sla.as_ref())
            .map_or((run.inject_ms.unwrap_or(run.started_ms), to_ms), |s| {
                (s.from_ms, s.to_ms)
            });
        let kind = Kind::Continuity;
        let meta = ReportMeta {
            kind,
            title: kind.title().to_owned(),
            period: Period {
                label: format!("drill run {}", run.id),
                from_ms: run.started_ms,
                to_ms,
                is_month: false,
            },
            measured_from_ms: measured.0,
            measured_to_ms: measured.1,
            generated_ms: now_ms,
            collector: collector.to_owned(),
        };
        Self {
            meta,
            figures: run.outcome.as_ref().map(figures).unwrap_or_default(),
            changed_since_sealed: run
                .sealed_sha256
                .as_ref()
                .is_some_and(|s| *s != content_sha256),
            sealed_sha256: run.sealed_sha256.clone(),
            content_sha256,
            content,
        }
    }
}

/// The report of drill run `id` from `store` as of `now_ms`.
///
/// # Errors
/// [`ReportError::NotFound`] for an unknown run; store failure.
pub fn build(
    store: &Store,
    collector: &str,
    id: u64,
    now_ms: u64,
) -> Result<ContinuityReport, ReportError> {
    let run = DrillStore::new(store.clone())
        .get(id)?
        .ok_or(ReportError::NotFound {
            what: "drill run",
            id: id.to_string(),
        })?;
    Ok(ContinuityReport::of(&run, collector, now_ms))
}

fn yes_no(v: bool) -> String {
    if v { "yes" } else { "no" }.to_owned()
}

impl Tabular for ContinuityReport {
    /// One long table: `section` is `figure`, `step`, `incident`, `review`,
    /// `corrective_action` or `hash`; unused cells are empty.
    const HEADER: &'static [&'static str] = &[
        "drill_run",
        "section",
        "name",
        "phase",
        "kind",
        "at_ms",
        "ended_ms",
        "value_s",
        "target_s",
        "result",
        "attempts",
        "detail",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        let run = cell(self.content.drill_run);
        let row = |section: &str, name: String| {
            let mut r = vec![String::new(); Self::HEADER.len()];
            r[0].clone_from(&run);
            r[1] = section.to_owned();
            r[2] = name;
            r
        };
        let mut rows = Vec::new();
        for f in &self.figures {
            let mut r = row("figure", f.name.to_owned());
            r[5] = cell(f.at_ms);
            r[7] = cell(f.value_s);
            r[8] = cell(f.target_s);
            r[9] = f.result.clone().unwrap_or_default();
            r[11] = if f.detail.is_empty() {
                f.label.clone()
            } else {
                format!("{}: {}", f.label, f.detail)
            };
            rows.push(r);
        }
        if let Some(o) = &self.content.outcome {
            for s in &o.steps {
                let mut r = row("step", s.id.clone());
                r[3].clone_from(&s.phase);
                r[4].clone_from(&s.kind);
                r[5] = cell(s.started_ms);
                r[6] = cell(s.ended_ms);
                r[7] = cell(s.duration_s);
                r[9].clone_from(&s.status);
                r[10] = cell(s.attempts);
                r[11].clone_from(&s.detail);
                rows.push(r);
            }
            for i in &o.incidents {
                let mut r = row("incident", cell(i.id));
                r[4].clone_from(&i.rule);
                r[5] = cell(i.detected_ms);
                r[6] = cell(i.resolved_ms);
                r[7] = cell(
                    i.resolved_ms
                        .map(|t| crate::drill::measure::secs(i.detected_ms, t)),
                );
                r[9] = if i.drill { "drill" } else { "not marked drill" }.to_owned();
                r[11] = if i.notified { "paged" } else { "not paged" }.to_owned();
                rows.push(r);
            }
        }
        if let Some(rv) = &self.content.review {
            let mut r = row("review", rv.reviewer.clone());
            r[5] = cell(rv.recorded_ms);
            r[9] = format!("plan updated: {}", yes_no(rv.plan_updated));
            r[11].clone_from(&rv.findings);
            rows.push(r);
            for a in &rv.corrective_actions {
                let mut r = row("corrective_action", rv.reviewer.clone());
                r[11].clone_from(a);
                rows.push(r);
            }
        }
        let mut r = row("hash", "content_sha256".into());
        r[11].clone_from(&self.content_sha256);
        rows.push(r);
        let mut r = row("hash", "sealed_sha256".into());
        r[11] = self.sealed_sha256.clone().unwrap_or_default();
        rows.push(r);
        rows
    }
}
