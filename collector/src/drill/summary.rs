//! The yearly drill summary: per service that is critical or has drills, its last finished
//! drill, the verdict, and whether it was drilled within its interval (the shortest
//! `interval` of its drills, a year by default) as of `now`.

use serde::{Deserialize, Serialize};

use super::config::{Drill, DEFAULT_INTERVAL_MS};
use super::measure::Verdict;
use super::run::{DrillRun, DrillStatus};
use crate::config::catalogue::{Catalogue, Criticality};

/// One service's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryLine {
    /// Service.
    pub service: String,
    /// Criticality (`critical`, …).
    pub criticality: String,
    /// Drills declared for it.
    pub drills: Vec<String>,
    /// Required interval, seconds.
    pub interval_s: f64,
    /// Finished drill runs in the last 365 days.
    pub runs_last_year: usize,
    /// The last finished run.
    pub last_run: Option<u64>,
    /// When it started, epoch ms.
    pub last_started_ms: Option<u64>,
    /// Its verdict.
    pub last_verdict: Option<Verdict>,
    /// A finished drill started within the interval before `now`.
    pub within_interval: bool,
}

/// The summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// As of, epoch ms.
    pub as_of_ms: u64,
    /// Every critical service drilled within its interval.
    pub all_critical_drilled: bool,
    /// Per service.
    pub services: Vec<SummaryLine>,
}

/// The summary of `runs` as of `now_ms`.
pub fn summary(catalogue: &Catalogue, drills: &[Drill], runs: &[DrillRun], now_ms: u64) -> Summary {
    let year = 365 * 86_400_000;
    let mut services = Vec::new();
    for s in &catalogue.services {
        let mine: Vec<&Drill> = drills.iter().filter(|d| d.service == s.id).collect();
        if s.criticality != Criticality::Critical && mine.is_empty() {
            continue;
        }
        let interval_ms = mine
            .iter()
            .map(|d| d.interval_ms)
            .min()
            .unwrap_or(DEFAULT_INTERVAL_MS);
        let done: Vec<&DrillRun> = runs
            .iter()
            .filter(|r| r.service == s.id && r.status == DrillStatus::Finished)
            .collect();
        let last = done.iter().max_by_key(|r| r.started_ms);
        services.push(SummaryLine {
            service: s.id.clone(),
            criticality: format!("{:?}", s.criticality).to_lowercase(),
            drills: mine.iter().map(|d| d.id.clone()).collect(),
            interval_s: interval_ms as f64 / 1_000.0,
            runs_last_year: done
                .iter()
                .filter(|r| now_ms.saturating_sub(r.started_ms) <= year)
                .count(),
            last_run: last.map(|r| r.id),
            last_started_ms: last.map(|r| r.started_ms),
            last_verdict: last.and_then(|r| r.outcome.as_ref().map(|o| o.verdict)),
            within_interval: last
                .is_some_and(|r| now_ms.saturating_sub(r.started_ms) <= interval_ms),
        });
    }
    Summary {
        as_of_ms: now_ms,
        all_critical_drilled: services
            .iter()
            .filter(|l| l.criticality == "critical")
            .all(|l| l.within_interval),
        services,
    }
}
