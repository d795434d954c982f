//! `watchstand-collector report <kind>`: a client of `GET /api/v1/reports/{kind}` that writes
//! the report as the server rendered it, to a file or stdout.

use std::path::Path;

use anyhow::Context as _;

use crate::cli::{when, ApiClient};

/// What `report` asks for.
#[derive(Debug, Clone, Copy)]
pub struct ReportRequest<'a> {
    /// `availability`, `service`, `incident`, `capacity`.
    pub kind: &'a str,
    /// A calendar month `YYYY-MM`.
    pub period: Option<&'a str>,
    /// Start (the forms `sla --from` takes).
    pub from: Option<&'a str>,
    /// End.
    pub to: Option<&'a str>,
    /// `json`, `csv`, `md`, `html`.
    pub format: &'a str,
    /// `--from`/`--to` dates are local midnight.
    pub local: bool,
}

/// Fetches the report; the server checks kind, period and format and names a bad one.
///
/// # Errors
/// A bad `--from`/`--to`; as [`ApiClient::get_text`].
pub async fn fetch(client: &ApiClient, req: ReportRequest<'_>) -> anyhow::Result<String> {
    let (from, to) = (
        when(req.from, "from", req.local)?,
        when(req.to, "to", req.local)?,
    );
    let mut query = vec![("format", req.format)];
    for (k, v) in [
        ("period", req.period),
        ("from", from.as_deref()),
        ("to", to.as_deref()),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let path = format!("/api/v1/reports/{}", req.kind);
    client.get_text(&path, &query).await
}

/// Writes `text` to `out` (created or replaced).
///
/// # Errors
/// The file cannot be written.
pub fn write(out: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(out, text)
        .with_context(|| format!("cannot write the report to {}", out.display()))
}
