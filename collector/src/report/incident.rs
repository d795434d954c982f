//! The incident report: the incident records of the period with the fields an ISO/IEC 20000
//! incident record has (id, service, category (rule), priority, state, detected,
//! acknowledged and resolved with by whom, resolution note, impact, summary) and their
//! timelines. A record is in the period when its open time overlaps it (detected before the
//! period's end, not resolved before its start), so an incident carried over from the month
//! before is listed too.

use serde::Serialize;

use super::render::{cell, plain, Tabular};
use super::service::ByPriority;
use super::{ReportError, ReportMeta, ReportSource};
use crate::incident::record::{Incident, IncidentStore};
use crate::sla::Span;

/// One incident record in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentEntry {
    /// The record as stored, with its timeline.
    #[serde(flatten)]
    pub record: Incident,
    /// The rule as one word (`service_down`, `burn_rate.fast`).
    pub category: String,
    /// Detection to acknowledgement, seconds.
    pub time_to_acknowledge_s: Option<f64>,
    /// Detection to resolution, seconds.
    pub time_to_restore_s: Option<f64>,
}

/// The incident report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentReport {
    /// Header.
    pub meta: ReportMeta,
    /// Incidents detected in the period, by priority (carried-over ones not counted).
    pub detected: ByPriority,
    /// Every record open at some time in the period, oldest first.
    pub incidents: Vec<IncidentEntry>,
}

/// Builds the report.
///
/// # Errors
/// Store failure.
pub fn build(src: ReportSource<'_>, meta: ReportMeta) -> Result<IncidentReport, ReportError> {
    let span = Span::new(meta.measured_from_ms, meta.measured_to_ms);
    let all = IncidentStore::new(src.store.clone()).all()?;
    let mut detected = ByPriority::default();
    for s in &src.catalogue.services {
        let n = ByPriority::count(&all, &s.id, span);
        detected.p1 += n.p1;
        detected.p2 += n.p2;
        detected.p3 += n.p3;
        detected.p4 += n.p4;
        detected.total += n.total;
    }
    let mut incidents: Vec<IncidentEntry> = all
        .into_iter()
        .filter(|i| i.detected_ms < span.to_ms && i.resolved_ms.is_none_or(|r| r >= span.from_ms))
        .map(|record| IncidentEntry {
            category: record.rule.key_part(),
            time_to_acknowledge_s: record
                .acknowledged_ms
                .map(|a| a.saturating_sub(record.detected_ms) as f64 / 1_000.0),
            time_to_restore_s: record.time_to_restore_s(),
            record,
        })
        .collect();
    incidents.sort_by_key(|e| (e.record.detected_ms, e.record.id));
    Ok(IncidentReport {
        meta,
        detected,
        incidents,
    })
}

impl Tabular for IncidentReport {
    /// One row per record; the timeline is in the JSON, Markdown and HTML forms (CSV is flat),
    /// here only its length.
    const HEADER: &'static [&'static str] = &[
        "id",
        "service",
        "agent",
        "category",
        "priority",
        "state",
        "detected_ms",
        "acknowledged_ms",
        "acknowledged_by",
        "resolved_ms",
        "resolved_by",
        "time_to_acknowledge_s",
        "time_to_restore_s",
        "impact_scope",
        "impact_services",
        "summary",
        "resolution_note",
        "late",
        "timeline_events",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        self.incidents
            .iter()
            .map(|e| {
                let i = &e.record;
                vec![
                    cell(i.id),
                    i.service.clone(),
                    i.agent.clone().unwrap_or_default(),
                    e.category.clone(),
                    plain(&i.priority),
                    plain(&i.state),
                    cell(i.detected_ms),
                    cell(i.acknowledged_ms),
                    i.acknowledged_by.clone().unwrap_or_default(),
                    cell(i.resolved_ms),
                    i.resolved_by.clone().unwrap_or_default(),
                    cell(e.time_to_acknowledge_s),
                    cell(e.time_to_restore_s),
                    i.impact.scope.clone(),
                    i.impact.services.join(" "),
                    i.summary.clone(),
                    i.resolution_note.clone().unwrap_or_default(),
                    cell(i.late),
                    cell(i.timeline.len()),
                ]
            })
            .collect()
    }
}
