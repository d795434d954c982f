//! The ISO/IEC 20000 records as reports, built from what the collector measured: typed report
//! models, one per kind, rendered to JSON, CSV, Markdown and HTML.
//!
//! Place in the flow: store → SLA ([`crate::availability`]) / incident records / capacity
//! ([`crate::capacity::report`]) / drill runs ([`crate::drill`]) → **report** → API
//! (`GET /api/v1/reports/{kind}`, `GET /api/v1/drill-runs/{id}/report`) and the `report` and
//! `drills report` CLIs. Nothing here computes an SLA figure of its own: every availability, downtime
//! and budget comes from [`crate::availability`] over the same window the SLA API would use,
//! MTTR and MTBF from [`crate::incident::stats`], the capacity rows from
//! [`crate::capacity::report::summary`].
//!
//! # Layout
//! - [`period`]: a calendar month or `[from, to)`, and the period before it.
//! - [`availability`], [`service`], [`incident`], [`capacity`]: one model per kind and how it
//!   is built over a period; each implements [`render::Tabular`] for its CSV.
//! - [`continuity`]: the continuity test report of one drill run (not of a period), with its
//!   content hash.
//! - [`render`]: JSON (serde), CSV (the `csv` crate), Markdown and HTML (minijinja templates
//!   in `templates/`, embedded in the binary; the HTML is self-contained and prints on A4).
//!
//! A new kind is one model file, one [`Kind`] and [`Report`] variant, one arm in [`build`] and
//! two templates.

pub mod availability;
pub mod capacity;
pub mod cli;
pub mod continuity;
pub mod incident;
pub mod period;
pub mod render;
pub mod service;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use period::Period;
pub use render::Format;

use crate::capacity::report::CapacityContext;
use crate::config::Catalogue;
use crate::store::{Store, StoreError};

/// A report failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A parameter is invalid (the API answers 400 naming it).
    #[error("invalid {param}: {message}")]
    BadParam {
        /// `kind`, `period`, `from`, `to`, `format`.
        param: &'static str,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// The record asked for does not exist (the API answers 404).
    #[error("{what} {id} not found")]
    NotFound {
        /// `drill run`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The store could not be read.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    /// A template failed to render (a bug: the templates are built in).
    #[error("rendering the {kind} report as {format}: {source}")]
    Template {
        /// Which report.
        kind: &'static str,
        /// Which format.
        format: &'static str,
        /// The engine's error.
        source: minijinja::Error,
    },
    /// CSV could not be written.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// JSON could not be written.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Availability measurement report: per service, every outage.
    Availability,
    /// Service report: all services against their SLAs, with the previous period.
    Service,
    /// Incident report: the incident records of the period with their timelines.
    Incident,
    /// Capacity report (capacity plan input): every host and metric, at risk first.
    Capacity,
    /// IT service continuity test report: one drill run (not a period).
    Continuity,
}

impl Kind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [Kind; 5] = [
        Kind::Availability,
        Kind::Service,
        Kind::Incident,
        Kind::Capacity,
        Kind::Continuity,
    ];

    /// The kinds made over a period ([`build`]); the continuity report is of one drill run
    /// ([`continuity::build`]).
    pub const PERIODIC: [Kind; 4] = [
        Kind::Availability,
        Kind::Service,
        Kind::Incident,
        Kind::Capacity,
    ];

    /// The name in URLs, file names and templates.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Availability => "availability",
            Kind::Service => "service",
            Kind::Incident => "incident",
            Kind::Capacity => "capacity",
            Kind::Continuity => "continuity",
        }
    }

    /// The report's title.
    pub const fn title(self) -> &'static str {
        match self {
            Kind::Availability => "Availability measurement report",
            Kind::Service => "Service report",
            Kind::Incident => "Incident report",
            Kind::Capacity => "Capacity report",
            Kind::Continuity => "IT service continuity test report",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, ReportError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| ReportError::BadParam {
                param: "kind",
                message: format!(
                    "{text:?} is not a report kind (availability, service, incident, capacity, continuity)"
                ),
            })
    }
}

/// What every report says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportMeta {
    /// Which report.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// The period asked for.
    pub period: Period,
    /// The part of it measured (up to the time of generation for a period not over yet).
    pub measured_from_ms: u64,
    /// End of the measured part (exclusive).
    pub measured_to_ms: u64,
    /// When the report was made, epoch ms.
    pub generated_ms: u64,
    /// The collector that made it.
    pub collector: String,
}

/// Everything a report is built from.
#[derive(Clone, Copy)]
pub struct ReportSource<'a> {
    /// The store.
    pub store: &'a Store,
    /// The service catalogue.
    pub catalogue: &'a Catalogue,
    /// `[capacity]` and its retention.
    pub capacity: &'a CapacityContext,
    /// The agents whose capacity is reported (sorted).
    pub agents: &'a [String],
    /// The collector's id.
    pub collector: &'a str,
}

/// One built report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// Availability measurement report.
    Availability(availability::AvailabilityReport),
    /// Service report.
    Service(service::ServiceReport),
    /// Incident report.
    Incident(incident::IncidentReport),
    /// Capacity report.
    Capacity(capacity::CapacityReport),
    /// Continuity test report of one drill run.
    Continuity(Box<continuity::ContinuityReport>),
}

impl Report {
    /// Its header.
    pub fn meta(&self) -> &ReportMeta {
        match self {
            Report::Availability(r) => &r.meta,
            Report::Service(r) => &r.meta,
            Report::Incident(r) => &r.meta,
            Report::Capacity(r) => &r.meta,
            Report::Continuity(r) => &r.meta,
        }
    }

    /// The file name it is offered under: `availability-2026-11.md`, `continuity-run-7.md`.
    pub fn file_name(&self, format: Format) -> String {
        if let Report::Continuity(r) = self {
            return format!(
                "continuity-run-{}.{}",
                r.content.drill_run,
                format.extension()
            );
        }
        let meta = self.meta();
        let period = if meta.period.is_month {
            meta.period.label.clone()
        } else {
            format!("{}-{}", meta.period.from_ms, meta.period.to_ms)
        };
        format!("{}-{period}.{}", meta.kind.as_str(), format.extension())
    }
}

/// Builds the `kind` report over `period` as of `now_ms` (the measured part ends there).
///
/// # Errors
/// A period that has not started, or the continuity kind, which is of a drill run
/// ([`ReportError::BadParam`]); store failure.
pub fn build(
    src: ReportSource<'_>,
    kind: Kind,
    period: &Period,
    now_ms: u64,
) -> Result<Report, ReportError> {
    let measured = period.measured(now_ms)?;
    let meta = ReportMeta {
        kind,
        title: kind.title().to_owned(),
        period: period.clone(),
        measured_from_ms: measured.from_ms,
        measured_to_ms: measured.to_ms,
        generated_ms: now_ms,
        collector: src.collector.to_owned(),
    };
    Ok(match kind {
        Kind::Availability => Report::Availability(availability::build(src, meta, period)?),
        Kind::Service => Report::Service(service::build(src, meta, period, now_ms)?),
        Kind::Incident => Report::Incident(incident::build(src, meta)?),
        Kind::Capacity => Report::Capacity(capacity::build(src, meta, now_ms)?),
        Kind::Continuity => {
            return Err(ReportError::BadParam {
                param: "drill_run",
                message: "the continuity report is of one drill run: give drill_run=ID".into(),
            })
        }
    })
}
