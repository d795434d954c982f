//! The availability measurement report: per service over the period, the SLA figures
//! (availability, target, met, uptime / downtime / maintenance / drill / unmonitored), every
//! outage with its start, end, duration and the incident that covered it, MTTR, MTBF and the
//! partial outages. Figures and outages come from one read of the measured timelines
//! ([`crate::availability::service_report_with_segments`]), so the outages add up to the
//! downtime the SLA API reports for the same window.

use serde::Serialize;

use super::render::{cell, Tabular};
use super::{Period, ReportError, ReportMeta, ReportSource};
use crate::config::{Criticality, Service};
use crate::incident::record::{Incident, IncidentStore};
use crate::incident::stats::{self, Reliability};
use crate::incident::{IncidentState, Priority, Rule};
use crate::sla::{ServiceClass, ServiceSegment, SlaReport, Span};
use crate::store::Store;

/// The incident that covered an outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentRef {
    /// Its id.
    pub id: u64,
    /// Its rule (`service_down`, `burn_rate.fast`, …).
    pub rule: String,
    /// Its priority.
    pub priority: Priority,
    /// Its state now.
    pub state: IncidentState,
}

/// One outage: a maximal measured-down interval of the service inside the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outage {
    /// Start, epoch ms (the period's start when it was already down then).
    pub from_ms: u64,
    /// End (exclusive), epoch ms.
    pub to_ms: u64,
    /// Length, seconds.
    pub duration_s: f64,
    /// The incident whose open time overlaps it (a service-down incident first); `None` when
    /// no incident covered it.
    pub incident: Option<IncidentRef>,
}

/// An interval the service was up while at least one of its probes was down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartialOutage {
    /// Start, epoch ms.
    pub from_ms: u64,
    /// End (exclusive), epoch ms.
    pub to_ms: u64,
    /// Length, seconds.
    pub duration_s: f64,
}

/// One service in the availability report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceAvailability {
    /// Service id.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Its criticality.
    pub criticality: Criticality,
    /// How its probes combine, as configured.
    pub mode: String,
    /// The SLA figures over the measured part of the period (the SLA API's report).
    pub sla: SlaReport,
    /// Service-down incidents, MTTR, MTBF over the period.
    pub reliability: Reliability,
    /// Every outage, in time order.
    pub outages: Vec<Outage>,
    /// Every partial outage, in time order.
    pub partial_outages: Vec<PartialOutage>,
}

/// The availability measurement report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AvailabilityReport {
    /// Header.
    pub meta: ReportMeta,
    /// Every service of the catalogue, in catalogue order.
    pub services: Vec<ServiceAvailability>,
}

fn secs(span: Span) -> f64 {
    span.len_ms() as f64 / 1_000.0
}

/// The SLA report and classified segments of `service` over the measured part of `period`
/// (`measured`). When the period is not over, the budget is the whole period's, as the SLA
/// API does for a calendar month in progress.
///
/// # Errors
/// Store failure.
pub fn measure(
    store: &Store,
    service: &Service,
    period: &Period,
    measured: Span,
) -> Result<(SlaReport, Vec<ServiceSegment>), ReportError> {
    let (mut sla, segments) =
        crate::availability::service_report_with_segments(store, service, measured)?;
    if measured.to_ms < period.to_ms {
        sla.rebase_budget(period.len_ms());
    }
    Ok((sla, segments))
}

/// The incident of `service` whose open time overlaps `span`: a service-down one first, then
/// the earliest detected.
fn covering(incidents: &[Incident], service: &str, span: Span) -> Option<IncidentRef> {
    incidents
        .iter()
        .filter(|i| {
            i.service == service
                && i.detected_ms < span.to_ms
                && i.resolved_ms.is_none_or(|r| r > span.from_ms)
        })
        .min_by_key(|i| (i.rule != Rule::ServiceDown, i.detected_ms, i.id))
        .map(|i| IncidentRef {
            id: i.id,
            rule: i.rule.key_part(),
            priority: i.priority,
            state: i.state,
        })
}

/// One service's part of the report.
///
/// # Errors
/// Store failure.
pub fn service_availability(
    store: &Store,
    service: &Service,
    incidents: &[Incident],
    period: &Period,
    measured: Span,
) -> Result<ServiceAvailability, ReportError> {
    let (sla, segments) = measure(store, service, period, measured)?;
    let mut outages = Vec::new();
    let mut partial_outages = Vec::new();
    for seg in &segments {
        match seg.class {
            ServiceClass::Down => outages.push(Outage {
                from_ms: seg.span.from_ms,
                to_ms: seg.span.to_ms,
                duration_s: secs(seg.span),
                incident: covering(incidents, &service.id, seg.span),
            }),
            ServiceClass::Up if seg.partial_outage => partial_outages.push(PartialOutage {
                from_ms: seg.span.from_ms,
                to_ms: seg.span.to_ms,
                duration_s: secs(seg.span),
            }),
            _ => {}
        }
    }
    Ok(ServiceAvailability {
        service: service.id.clone(),
        name: service.name.clone(),
        criticality: service.criticality,
        mode: service.mode_text.clone(),
        reliability: stats::reliability(incidents, &service.id, measured, sla.uptime_s),
        sla,
        outages,
        partial_outages,
    })
}

/// Builds the report.
///
/// # Errors
/// Store failure.
pub fn build(
    src: ReportSource<'_>,
    meta: ReportMeta,
    period: &Period,
) -> Result<AvailabilityReport, ReportError> {
    let measured = Span::new(meta.measured_from_ms, meta.measured_to_ms);
    let incidents = IncidentStore::new(src.store.clone()).all()?;
    let services = src
        .catalogue
        .services
        .iter()
        .map(|s| service_availability(src.store, s, &incidents, period, measured))
        .collect::<Result<_, _>>()?;
    Ok(AvailabilityReport { meta, services })
}

impl Tabular for AvailabilityReport {
    /// One `service` row per service (its figures), then one `outage` row per outage and one
    /// `partial_outage` row per partial outage (their span, length and incident): a long table
    /// a spreadsheet can filter by `record`.
    const HEADER: &'static [&'static str] = &[
        "record",
        "service",
        "from_ms",
        "to_ms",
        "duration_s",
        "incident",
        "availability_pct",
        "target_pct",
        "met",
        "uptime_s",
        "downtime_s",
        "maintenance_s",
        "drill_s",
        "unmonitored_s",
        "partial_outage_s",
        "outages",
        "mttr_s",
        "mtbf_s",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for s in &self.services {
            let r = &s.sla;
            rows.push(vec![
                "service".into(),
                s.service.clone(),
                cell(r.from_ms),
                cell(r.to_ms),
                cell((r.to_ms - r.from_ms) as f64 / 1_000.0),
                String::new(),
                cell(r.availability_pct),
                cell(r.target_pct),
                cell(r.met),
                cell(r.uptime_s),
                cell(r.downtime_s),
                cell(r.maintenance_s),
                cell(r.drill_s),
                cell(r.unmonitored_s),
                cell(r.partial_outage_s),
                cell(r.outages),
                cell(s.reliability.mttr_s),
                cell(s.reliability.mtbf_s),
            ]);
        }
        let span_row =
            |record: &str, service: &str, from_ms: u64, to_ms: u64, d: f64, inc: String| {
                let mut row = vec![
                    record.to_owned(),
                    service.to_owned(),
                    cell(from_ms),
                    cell(to_ms),
                    cell(d),
                    inc,
                ];
                row.resize(Self::HEADER.len(), String::new());
                row
            };
        for s in &self.services {
            for o in &s.outages {
                let inc = o.incident.as_ref().map(|i| i.id);
                rows.push(span_row(
                    "outage",
                    &s.service,
                    o.from_ms,
                    o.to_ms,
                    o.duration_s,
                    cell(inc),
                ));
            }
            for p in &s.partial_outages {
                rows.push(span_row(
                    "partial_outage",
                    &s.service,
                    p.from_ms,
                    p.to_ms,
                    p.duration_s,
                    String::new(),
                ));
            }
        }
        rows
    }
}
