//! The service report: every service against its SLA over the period — availability and
//! target, error budget and how much of it was used, the latency objective, incidents by
//! priority — next to the same figures of the period before.

use serde::Serialize;

use super::availability::measure;
use super::render::{cell, plain, Tabular};
use super::{Period, ReportError, ReportMeta, ReportSource};
use crate::config::{Criticality, Service};
use crate::incident::record::{Incident, IncidentStore};
use crate::incident::Priority;
use crate::sla::{SlaReport, Span};
use crate::store::Store;

/// Incidents of a service detected in a period, by priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByPriority {
    /// P1.
    pub p1: usize,
    /// P2.
    pub p2: usize,
    /// P3.
    pub p3: usize,
    /// P4.
    pub p4: usize,
    /// All of them.
    pub total: usize,
}

impl ByPriority {
    /// Counts the incidents of `service` (any rule) detected in `span`.
    pub fn count(incidents: &[Incident], service: &str, span: Span) -> Self {
        let mut n = Self::default();
        for i in incidents
            .iter()
            .filter(|i| i.service == service && span.contains(i.detected_ms))
        {
            match i.priority {
                Priority::P1 => n.p1 += 1,
                Priority::P2 => n.p2 += 1,
                Priority::P3 => n.p3 += 1,
                Priority::P4 => n.p4 += 1,
            }
            n.total += 1;
        }
        n
    }
}

/// A service's figures over one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodFigures {
    /// The SLA API's report over the measured part of the period.
    pub sla: SlaReport,
    /// `downtime / error budget × 100`; above 100 the budget is overspent. `None` with a zero
    /// budget (a 100 % target).
    pub budget_used_pct: Option<f64>,
    /// Incidents detected in the period, by priority.
    pub incidents: ByPriority,
}

/// One service in the service report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRow {
    /// Service id.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Its criticality.
    pub criticality: Criticality,
    /// The period.
    pub current: PeriodFigures,
    /// The period before (`None` when it would start before 1970).
    pub previous: Option<PeriodFigures>,
    /// Availability now minus before, percentage points (`None` unless both are measured).
    pub availability_change_pts: Option<f64>,
}

/// The service report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceReport {
    /// Header.
    pub meta: ReportMeta,
    /// The period compared with.
    pub previous_period: Option<Period>,
    /// Every service, in catalogue order.
    pub services: Vec<ServiceRow>,
}

fn figures(
    store: &Store,
    service: &Service,
    incidents: &[Incident],
    period: &Period,
    measured: Span,
) -> Result<PeriodFigures, ReportError> {
    let (sla, _) = measure(store, service, period, measured)?;
    let budget_used_pct =
        (sla.error_budget_s > 0.0).then(|| sla.downtime_s / sla.error_budget_s * 100.0);
    Ok(PeriodFigures {
        budget_used_pct,
        incidents: ByPriority::count(incidents, &service.id, measured),
        sla,
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
    now_ms: u64,
) -> Result<ServiceReport, ReportError> {
    let measured = Span::new(meta.measured_from_ms, meta.measured_to_ms);
    let previous_period = period.previous();
    let incidents = IncidentStore::new(src.store.clone()).all()?;
    let mut services = Vec::new();
    for s in &src.catalogue.services {
        let current = figures(src.store, s, &incidents, period, measured)?;
        let previous = previous_period
            .as_ref()
            .map(|p| figures(src.store, s, &incidents, p, p.measured(now_ms)?))
            .transpose()?;
        let availability_change_pts = current
            .sla
            .availability_pct
            .zip(previous.as_ref().and_then(|p| p.sla.availability_pct))
            .map(|(now, before)| now - before);
        services.push(ServiceRow {
            service: s.id.clone(),
            name: s.name.clone(),
            criticality: s.criticality,
            current,
            previous,
            availability_change_pts,
        });
    }
    Ok(ServiceReport {
        meta,
        previous_period,
        services,
    })
}

impl Tabular for ServiceReport {
    /// One row per service; `previous_*` are the period before.
    const HEADER: &'static [&'static str] = &[
        "service",
        "name",
        "criticality",
        "availability_pct",
        "target_pct",
        "met",
        "downtime_s",
        "error_budget_s",
        "error_budget_remaining_s",
        "budget_used_pct",
        "latency_objective_ms",
        "latency_target_pct",
        "latency_within_pct",
        "latency_met",
        "incidents_p1",
        "incidents_p2",
        "incidents_p3",
        "incidents_p4",
        "incidents",
        "previous_availability_pct",
        "previous_downtime_s",
        "previous_budget_used_pct",
        "previous_incidents",
        "availability_change_pts",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        self.services
            .iter()
            .map(|s| {
                let (c, r) = (&s.current, &s.current.sla);
                let p = s.previous.as_ref();
                vec![
                    s.service.clone(),
                    s.name.clone(),
                    plain(&s.criticality),
                    cell(r.availability_pct),
                    cell(r.target_pct),
                    cell(r.met),
                    cell(r.downtime_s),
                    cell(r.error_budget_s),
                    cell(r.error_budget_remaining_s),
                    cell(c.budget_used_pct),
                    cell(r.latency_objective_ms),
                    cell(r.latency_target_pct),
                    cell(r.latency_within_pct),
                    cell(r.latency_met),
                    cell(c.incidents.p1),
                    cell(c.incidents.p2),
                    cell(c.incidents.p3),
                    cell(c.incidents.p4),
                    cell(c.incidents.total),
                    cell(p.and_then(|p| p.sla.availability_pct)),
                    cell(p.map(|p| p.sla.downtime_s)),
                    cell(p.and_then(|p| p.budget_used_pct)),
                    cell(p.map(|p| p.incidents.total)),
                    cell(s.availability_change_pts),
                ]
            })
            .collect()
    }
}
