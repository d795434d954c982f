//! The capacity report (ISO/IEC 20000 capacity plan input): every host and metric over the
//! period with current, peak, p95, trend per day, the projected exhaustion date with its
//! interval, and headroom, hosts at risk first. The rows are
//! [`crate::capacity::report::summary`]'s, the same as `GET /api/v1/capacity/summary`.

use serde::Serialize;

use super::render::{cell, plain, Tabular};
use super::{ReportError, ReportMeta, ReportSource};
use crate::capacity::report::{summary, Summary};

/// The capacity report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityReport {
    /// Header.
    pub meta: ReportMeta,
    /// Rows at risk (already above the threshold, or projected to cross it within the horizon).
    pub at_risk: usize,
    /// The summary over the measured period, at risk first.
    pub summary: Summary,
}

/// Builds the report.
///
/// # Errors
/// Store failure.
pub fn build(
    src: ReportSource<'_>,
    meta: ReportMeta,
    now_ms: u64,
) -> Result<CapacityReport, ReportError> {
    let summary = summary(
        src.store,
        src.capacity,
        src.agents,
        meta.measured_from_ms,
        meta.measured_to_ms,
        now_ms,
    )?;
    let at_risk = summary
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, "already_above" | "crossing"))
        .count();
    Ok(CapacityReport {
        meta,
        at_risk,
        summary,
    })
}

impl Tabular for CapacityReport {
    /// One row per host and metric, in risk order.
    const HEADER: &'static [&'static str] = &[
        "agent",
        "metric",
        "resolution",
        "samples",
        "current",
        "current_at_ms",
        "peak",
        "p95",
        "mean",
        "threshold",
        "headroom",
        "trend_per_day",
        "outcome",
        "projected_ms",
        "projected_earliest_ms",
        "projected_latest_ms",
        "r_squared",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        self.summary
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.agent.clone(),
                    r.metric.clone(),
                    plain(&r.resolution),
                    cell(r.samples),
                    cell(r.current),
                    cell(r.current_at_ms),
                    cell(r.peak),
                    cell(r.p95),
                    cell(r.mean),
                    cell(r.threshold),
                    cell(r.headroom),
                    cell(r.trend_per_day),
                    r.outcome.to_owned(),
                    cell(r.projected_ms),
                    cell(r.projected_earliest_ms),
                    cell(r.projected_latest_ms),
                    cell(r.r_squared),
                ]
            })
            .collect()
    }
}
