//! Reliability figures of a service over a window, from its incident records and its measured
//! uptime: how many service-down incidents were detected, MTTR (mean time to restore of the
//! resolved ones) and MTBF (measured uptime / failures). One computation for the
//! `incidents/stats` route and the reports.

use serde::Serialize;

use super::record::Incident;
use super::Rule;
use crate::sla::Span;

/// A service's failures over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reliability {
    /// Service-down incidents detected in the window.
    pub incidents: usize,
    /// Of them, found late in the data (a replay).
    pub found_late: usize,
    /// Mean time to restore of the resolved ones, seconds.
    pub mttr_s: Option<f64>,
    /// Mean time between failures: measured uptime / failures, seconds.
    pub mtbf_s: Option<f64>,
}

/// The reliability of `service` over `span`: the service-down incidents among `incidents`
/// detected in it, and `uptime_s` (the SLA report's measured uptime of the same window).
pub fn reliability(
    incidents: &[Incident],
    service: &str,
    span: Span,
    uptime_s: f64,
) -> Reliability {
    let failures: Vec<&Incident> = incidents
        .iter()
        .filter(|i| {
            i.service == service && i.rule == Rule::ServiceDown && span.contains(i.detected_ms)
        })
        .collect();
    let restores: Vec<f64> = failures
        .iter()
        .filter_map(|i| i.time_to_restore_s())
        .collect();
    Reliability {
        incidents: failures.len(),
        found_late: failures.iter().filter(|i| i.late).count(),
        mttr_s: (!restores.is_empty())
            .then(|| restores.iter().sum::<f64>() / restores.len() as f64),
        mtbf_s: (!failures.is_empty()).then(|| uptime_s / failures.len() as f64),
    }
}
