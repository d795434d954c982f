//! The IT service continuity test report of one drill run (ISO/IEC 20000-1 8.7.2): a typed
//! model built from the stored [`DrillRun`], rendered as JSON or Markdown, with a SHA-256 of
//! its content so a later edit is visible. The review section is filled in afterwards.

use crate::auth::{hex, sha256};
use serde::{Deserialize, Serialize};

use super::measure::Outcome;
use super::run::{DrillRun, DrillTrigger};

/// The review an operator fills in after the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Reviewer.
    pub reviewer: String,
    /// Findings.
    pub findings: String,
    /// Corrective actions.
    pub corrective_actions: Vec<String>,
    /// Was the continuity plan updated?
    pub plan_updated: bool,
    /// Who recorded it (the API token), when.
    pub recorded_by: String,
    /// When, epoch ms.
    pub recorded_ms: u64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuityReport {
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
    /// Still in progress (the report is not final).
    pub status: String,
    /// Measurements, steps, incidents, SLA effect, verdict.
    pub outcome: Option<Outcome>,
    /// Review.
    pub review: Option<Review>,
    /// SHA-256 of the report as completed (before the review).
    pub sealed_sha256: Option<String>,
    /// SHA-256 of this report's content (every field but the two hashes).
    pub content_sha256: String,
}

impl ContinuityReport {
    /// The report of `run`.
    pub fn of(run: &DrillRun) -> Self {
        let mut r = Self {
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
            outcome: run.outcome.clone(),
            review: run.review.clone(),
            sealed_sha256: run.sealed_sha256.clone(),
            content_sha256: String::new(),
        };
        r.content_sha256 = r.hash();
        r
    }

    /// SHA-256 (hex) of the JSON of every field but the two hashes.
    pub fn hash(&self) -> String {
        let mut bare = self.clone();
        bare.content_sha256.clear();
        bare.sealed_sha256 = None;
        let bytes = serde_json::to_vec(&bare).unwrap_or_default();
        hex(&sha256(&bytes))
    }

    /// The Markdown rendering.
    pub fn markdown(&self) -> String {
        // One line of Markdown (writing to a String cannot fail).
        macro_rules! w {
            ($m:ident, $($arg:tt)*) => {{
                $m.push_str(&format!($($arg)*));
                $m.push('\n');
            }};
        }
        let mut m = String::new();
        let t = |ms: Option<u64>| ms.map_or_else(|| "—".to_owned(), iso);
        let s = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1} s"));
        w!(
            m,
            "# IT service continuity test report — drill run {}\n",
            self.drill_run
        );
        w!(m, "| | |\n|---|---|");
        w!(
            m,
            "| Drill | `{}` (runbook `{}`) |",
            self.drill,
            self.runbook
        );
        w!(m, "| Service | `{}` |", self.service);
        if let Some(o) = &self.outcome {
            let bia = &o.targets;
            w!(
                m,
                "| BIA targets | {} — criticality {}, RTO {:.0} s, RPO {:.0} s |",
                bia.name,
                bia.criticality,
                bia.rto_s,
                bia.rpo_s
            );
        }
        w!(m, "| Scenario | {} |", self.scenario);
        w!(m, "| Participants | {} |", self.participants.join(", "));
        let how = match &self.trigger {
            DrillTrigger::Manual { by } => format!("by hand ({by})"),
            DrillTrigger::Schedule { .. } => "on schedule".to_owned(),
        };
        w!(
            m,
            "| Started | {} {how}; planned {} |",
            iso(self.started_ms),
            t(self.planned_ms)
        );
        w!(m, "| Ended | {} |", t(self.ended_ms));
        w!(m, "| Status | {} |", self.status);
        if let Some(o) = &self.outcome {
            w!(
                m,
                "| **Verdict** | **{}** — {} |\n",
                o.verdict.as_str(),
                o.reason
            );
            w!(m, "## Measurements (from the stored probe results)\n");
            w!(m, "| measure | at | after inject |\n|---|---|---|");
            w!(m, "| Inject | {} | 0 s |", t(o.inject_ms));
            w!(
                m,
                "| First down result (time to detect) | {} | {} |",
                t(o.first_down_ms),
                s(o.detect_s)
            );
            w!(
                m,
                "| Incident opened | {} | {} |",
                t(o.incident_ms),
                s(o.detect_incident_s)
            );
            w!(
                m,
                "| Recovered, up for {:.0} s (time to recover) | {} | {} (RTO {:.0} s: {}) |",
                o.confirm_s,
                t(o.recovered_ms),
                s(o.recover_s),
                o.targets.rto_s,
                if o.rto_met { "met" } else { "not met" }
            );
            w!(
                m,
                "\nRecovery point: {}. Non-up time: {:.1} s.\n",
                o.rpo_result,
                o.non_up_s
            );
            w!(m, "## Step timeline\n");
            w!(m, "| run | step | phase | kind | status | started | duration | attempts | detail |\n|---|---|---|---|---|---|---|---|---|");
            for st in &o.steps {
                w!(
                    m,
                    "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
                    st.run,
                    st.id,
                    st.phase,
                    st.kind,
                    st.status,
                    t(st.started_ms),
                    s(st.duration_s),
                    st.attempts,
                    st.detail.replace('|', "\\|").replace('\n', " ")
                );
            }
            w!(m, "\n## Incidents seen\n");
            if o.incidents.is_empty() {
                w!(m, "None.");
            }
            for i in &o.incidents {
                w!(
                    m,
                    "- #{} `{}` detected {}, resolved {}; {}{}",
                    i.id,
                    i.rule,
                    iso(i.detected_ms),
                    t(i.resolved_ms),
                    if i.drill {
                        "drill incident"
                    } else {
                        "not marked as a drill"
                    },
                    if i.notified {
                        ", notified"
                    } else {
                        ", not paged"
                    }
                );
            }
            if let Some(sla) = &o.sla {
                w!(
                    m,
                    "\n## SLA effect ({} – {})\n",
                    iso(sla.from_ms),
                    iso(sla.to_ms)
                );
                w!(
                    m,
                    "`drill_s` {:.1}, `downtime_s` {:.1}, `unmonitored_s` {:.1}, `uptime_s` {:.1}",
                    sla.drill_s,
                    sla.downtime_s,
                    sla.unmonitored_s,
                    sla.uptime_s
                );
            }
            w!(m, "\n## Deviations\n");
            if o.deviations.is_empty() {
                w!(m, "None.");
            }
            for d in &o.deviations {
                w!(m, "- {d}");
            }
        }
        w!(m, "\n## Review\n");
        match &self.review {
            None => {
                w!(m, "Not reviewed yet.");
            }
            Some(r) => {
                w!(
                    m,
                    "- Reviewer: {}\n- Findings: {}\n- Plan updated: {}",
                    r.reviewer,
                    r.findings,
                    if r.plan_updated { "yes" } else { "no" }
                );
                for a in &r.corrective_actions {
                    w!(m, "- Corrective action: {a}");
                }
                w!(
                    m,
                    "- Recorded by {} at {}",
                    r.recorded_by,
                    iso(r.recorded_ms)
                );
            }
        }
        w!(m, "\n---\nContent SHA-256: `{}`", self.content_sha256);
        if let Some(sealed) = &self.sealed_sha256 {
            w!(m, "Sealed at completion: `{sealed}`");
        }
        m
    }
}

/// Epoch ms as RFC 3339 UTC.
fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || ms.to_string(),
            |d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )
}
