//! Rendering one report model to JSON, CSV, Markdown or HTML.
//!
//! - JSON is the model as serde writes it (the API's typed view).
//! - CSV is one flat table per kind ([`Tabular`]), written by the `csv` crate: numbers at full
//!   precision (they parse back to the model's values), times as epoch ms, empty for none.
//! - Markdown and HTML come from minijinja templates compiled into the binary
//!   (`templates/*.md`, `templates/*.html`, with `base.html` the page around every HTML
//!   report). HTML is autoescaped, self-contained (inline CSS, no script, no external
//!   resource), XHTML-compatible (so an XML parser checks it in the tests), and prints on A4
//!   (`@page` size and margins, no page break inside a table row).
//!
//! Template filters: `time` (epoch ms → RFC 3339, UTC), `mtime` (the same to the
//! millisecond), `dur` (seconds → `1h 2m`), `secs` (seconds with one decimal, `4.2 s`), `pct`
//! (percent with 3 decimals), `num` (2 decimals), `met` (`met` / `missed`), `cell` (a Markdown
//! table cell: `|`, `<` and `>` escaped, one line); a missing value shows as `–` in each.

use std::sync::OnceLock;

use minijinja::{Environment, Value};
use serde::Serialize;

use super::{Report, ReportError};
use crate::human::{format_seconds, format_time};

/// A report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The model as JSON.
    Json,
    /// One flat table.
    Csv,
    /// Markdown (GitHub tables).
    Md,
    /// A self-contained HTML page, printable on A4.
    Html,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [Format::Json, Format::Csv, Format::Md, Format::Html];

    /// The name in `format=` and the file extension.
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Md => "md",
            Format::Html => "html",
        }
    }

    /// The HTTP content type.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, ReportError> {
        Format::ALL
            .into_iter()
            .find(|f| f.extension() == text)
            .ok_or_else(|| ReportError::BadParam {
                param: "format",
                message: format!("{text:?} is not a report format (json, csv, md, html)"),
            })
    }
}

/// A report kind's CSV: a header and rows of cells.
pub trait Tabular {
    /// Column names.
    const HEADER: &'static [&'static str];
    /// One row per record, each as long as [`Self::HEADER`].
    fn rows(&self) -> Vec<Vec<String>>;
}

/// A value as a CSV cell.
pub trait CellValue {
    /// Its text: numbers in full (round-trip) precision, booleans `true`/`false`, none empty.
    fn text(&self) -> String;
}

macro_rules! display_cell {
    ($($t:ty),*) => {$(
        impl CellValue for $t {
            fn text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_cell!(u64, usize, f64, bool);

impl<T: CellValue> CellValue for Option<T> {
    fn text(&self) -> String {
        self.as_ref().map(CellValue::text).unwrap_or_default()
    }
}

/// A CSV cell.
pub fn cell<T: CellValue>(v: T) -> String {
    v.text()
}

/// A unit enum as serde names it (`high`, `P1`, `resolved`).
pub fn plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

const NONE: &str = "–";

fn time_filter(ms: Option<u64>) -> String {
    ms.map_or_else(|| NONE.to_owned(), |ms| format_time(ms, false))
}

fn mtime_filter(ms: Option<u64>) -> String {
    ms.and_then(|ms| i64::try_from(ms).ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || NONE.to_owned(),
            |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )
}

fn secs_filter(s: Option<f64>) -> String {
    s.map_or_else(|| NONE.to_owned(), |s| format!("{:.1} s", s + 0.0))
}

fn dur_filter(s: Option<f64>) -> String {
    s.map_or_else(|| NONE.to_owned(), format_seconds)
}

fn pct_filter(v: Option<f64>) -> String {
    v.map_or_else(|| NONE.to_owned(), |v| format!("{v:.3} %"))
}

fn num_filter(v: Option<f64>) -> String {
    v.map_or_else(|| NONE.to_owned(), |v| format!("{:.2}", v + 0.0))
}

fn met_filter(v: Option<bool>) -> String {
    match v {
        Some(true) => "met".into(),
        Some(false) => "missed".into(),
        None => NONE.into(),
    }
}

fn cell_filter(v: Option<String>) -> String {
    match v {
        Some(t) if !t.is_empty() => t
            .replace('|', "\\|")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace(['\r', '\n'], " "),
        _ => NONE.into(),
    }
}

/// The templates, compiled once.
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Lenient (the default): fields serde leaves out when empty (`agent`, a timeline
        // event's `by`) read as undefined, which the filters show as "–".
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_filter("time", time_filter);
        env.add_filter("mtime", mtime_filter);
        env.add_filter("secs", secs_filter);
        env.add_filter("dur", dur_filter);
        env.add_filter("pct", pct_filter);
        env.add_filter("num", num_filter);
        env.add_filter("met", met_filter);
        env.add_filter("cell", cell_filter);
        for (name, text) in TEMPLATES {
            // The templates are part of the binary and checked by the golden tests; a syntax
            // error in one is a bug that those tests catch, and rendering then reports it.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "A built-in report template does not compile.");
            }
        }
        env
    })
}

/// Every template, by name (`.html` ones are autoescaped).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("availability.md", include_str!("templates/availability.md")),
    (
        "availability.html",
        include_str!("templates/availability.html"),
    ),
    ("service.md", include_str!("templates/service.md")),
    ("service.html", include_str!("templates/service.html")),
    ("incident.md", include_str!("templates/incident.md")),
    ("incident.html", include_str!("templates/incident.html")),
    ("capacity.md", include_str!("templates/capacity.md")),
    ("capacity.html", include_str!("templates/capacity.html")),
    ("continuity.md", include_str!("templates/continuity.md")),
    ("continuity.html", include_str!("templates/continuity.html")),
];

fn csv_of<T: Tabular>(t: &T) -> Result<String, ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(T::HEADER)?;
    for row in t.rows() {
        w.write_record(&row)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Renders `report` as `format`.
///
/// # Errors
/// A template fails (a bug), or CSV/JSON cannot be written.
pub fn render(report: &Report, format: Format) -> Result<String, ReportError> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(report)? + "\n"),
        Format::Csv => match report {
            Report::Availability(r) => csv_of(r),
            Report::Service(r) => csv_of(r),
            Report::Incident(r) => csv_of(r),
            Report::Capacity(r) => csv_of(r),
            Report::Continuity(r) => csv_of(r.as_ref()),
        },
        Format::Md | Format::Html => {
            let kind = report.meta().kind.as_str();
            let name = format!("{kind}.{}", format.extension());
            let template_error = |source| ReportError::Template {
                kind,
                format: format.extension(),
                source,
            };
            let template = environment().get_template(&name).map_err(template_error)?;
            template
                .render(Value::from_serialize(report))
                .map_err(template_error)
        }
    }
}
