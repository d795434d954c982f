//! One drill run: the durable record the engine keeps and the report is made from. The engine
//! task changes it (start, runbook run ended, restore ended, settled, aborted) and stores it
//! after every change; after a crash it carries on from the stored status.
//!
//! Life of a run: `running` (the runbook's drill book: inject, recovery, restore steps) →
//! `restoring` (only when the drill book ended before its restore steps succeeded, or at
//! `max_duration`: the restore steps alone) → `settling` (the drill window stays open for the
//! confirmation period plus the probes' hold time, so the last results are in and the
//! recovery can be confirmed) → `finished` with a [`super::measure::Outcome`]. A drill that
//! may not start is stored `skipped` with the reason.

use serde::{Deserialize, Serialize};

use super::measure::Outcome;

/// The review an operator fills in after the drill (API/CLI, audited).
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
    /// Who recorded it (the API token).
    pub recorded_by: String,
    /// When, epoch ms.
    pub recorded_ms: u64,
}

/// What started a drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DrillTrigger {
    /// An operator (API/CLI).
    Manual {
        /// Who (the token's name).
        by: String,
    },
    /// Its schedule fired.
    Schedule {
        /// The planned time, epoch ms.
        planned_ms: u64,
    },
}

/// Where a drill run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    /// The drill book is running.
    Running,
    /// The restore steps are running on their own.
    Restoring,
    /// The runbook is over; waiting for the last results before measuring.
    Settling,
    /// Measured and reported.
    Finished,
    /// Never started (another drill of the service, an open incident).
    Skipped,
}

impl DrillStatus {
    /// As written in APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DrillStatus::Running => "running",
            DrillStatus::Restoring => "restoring",
            DrillStatus::Settling => "settling",
            DrillStatus::Finished => "finished",
            DrillStatus::Skipped => "skipped",
        }
    }

    /// Still holds its service (one drill per service at a time).
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            DrillStatus::Running | DrillStatus::Restoring | DrillStatus::Settling
        )
    }
}

/// One drill run, as stored (tree `drill_runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRun {
    /// Run id (increasing).
    pub id: u64,
    /// Drill id.
    pub drill: String,
    /// Service.
    pub service: String,
    /// Runbook.
    pub runbook: String,
    /// Scenario at the time of the run.
    pub scenario: String,
    /// Participants at the time of the run.
    pub participants: Vec<String>,
    /// Confirmation period, ms.
    pub confirm_ms: u64,
    /// Abort after, ms.
    pub max_duration_ms: Option<u64>,
    /// Its incidents notify.
    pub notify: bool,
    /// What started it.
    pub trigger: DrillTrigger,
    /// Where it is.
    pub status: DrillStatus,
    /// When it started (or was skipped), epoch ms.
    pub started_ms: u64,
    /// When the first `inject` step began, epoch ms (from the runbook run).
    pub inject_ms: Option<u64>,
    /// The runbook run of the drill book.
    pub run: Option<u64>,
    /// The restore-only runbook run, when one was needed.
    pub restore_run: Option<u64>,
    /// Why it was aborted (`max_duration`, the drill book failed).
    pub aborted: Option<String>,
    /// Why it was skipped.
    pub skipped: Option<String>,
    /// What did not go to plan (a failed runbook run, a restore that could not start).
    #[serde(default)]
    pub deviations: Vec<String>,
    /// When the runbook runs ended, epoch ms.
    pub ended_ms: Option<u64>,
    /// Until when the drill window stays open (end + confirmation + hold), epoch ms.
    pub settle_until_ms: Option<u64>,
    /// When it was measured, epoch ms.
    pub finished_ms: Option<u64>,
    /// The measurements and verdict (when finished).
    pub outcome: Option<Outcome>,
    /// SHA-256 of the report as completed, before any review (a later edit shows as a
    /// different `content_sha256`).
    pub sealed_sha256: Option<String>,
    /// The review filled in afterwards.
    pub review: Option<Review>,
}

impl DrillRun {
    /// The window during which the service's non-up time is `drill`: from the first inject
    /// to the end of settling (open-ended while it runs: `None`); `None` before any inject and
    /// for skipped runs.
    pub fn window(&self) -> Option<(u64, Option<u64>)> {
        let from = self.inject_ms?;
        match self.status {
            DrillStatus::Skipped => None,
            DrillStatus::Running | DrillStatus::Restoring => Some((from, None)),
            DrillStatus::Settling | DrillStatus::Finished => {
                Some((from, self.settle_until_ms.or(self.ended_ms)))
            }
        }
    }
}
