//! The command-line clients of the HTTP API (`sla`, `agents`): fetch JSON, render it as a table,
//! JSON or CSV. They never open the store (sled allows one process per store).

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// Output format of the CLI clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// Comma-separated with a header row.
    Csv,
}

/// Columns of the SLA table and CSV: (header, JSON field).
const SLA_COLUMNS: &[(&str, &str)] = &[
    ("service", "service"),
    ("availability_pct", "availability_pct"),
    ("target_pct", "target_pct"),
    ("met", "met"),
    ("uptime_s", "uptime_s"),
    ("downtime_s", "downtime_s"),
    ("unmonitored_s", "unmonitored_s"),
    ("maintenance_s", "maintenance_s"),
    ("partial_outage_s", "partial_outage_s"),
    ("error_budget_remaining_s", "error_budget_remaining_s"),
    ("latency_p50_ms", "latency_p50_ms"),
    ("latency_p99_ms", "latency_p99_ms"),
    ("outages", "outages"),
];

/// Columns of the agents table and CSV.
const AGENT_COLUMNS: &[(&str, &str)] = &[
    ("site", "site"),
    ("agent", "agent"),
    ("state", "state"),
    ("boot", "boot"),
    ("last_seen_ms", "last_seen_ms"),
    ("stored", "stored"),
    ("duplicates", "duplicates"),
    ("gaps_open", "gaps_open"),
    ("lost_entries", "lost_entries"),
];

/// A client of one collector's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the collector at `server` (e.g. `http://127.0.0.1:8088`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(server: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: server.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// POSTs JSON to `path`; API errors carry the server's message.
    ///
    /// # Errors
    /// The collector is unreachable or answers with an error.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the collector at {} (is it running? --server)",
                    self.base
                )
            })?;
        Self::answer(&url, response).await
    }

    async fn answer(url: &str, response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("{url}: the answer is not JSON"))?;
        if !status.is_success() {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            anyhow::bail!("{url}: {status}: {message}");
        }
        Ok(body)
    }

    /// GETs `path` (with `query`) and returns the JSON body; API errors carry the server's message.
    ///
    /// # Errors
    /// The collector is unreachable or answers with an error.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the collector at {} (is it running? --server)",
                    self.base
                )
            })?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("{url}: the answer is not JSON"))?;
        if !status.is_success() {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            anyhow::bail!("{url}: {status}: {message}");
        }
        Ok(body)
    }
}

/// `sla`: one service, or every service, over a range (default: each service's SLO window).
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn sla(
    client: &ApiClient,
    service: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    format: Format,
) -> anyhow::Result<String> {
    let mut query = Vec::new();
    if let Some(f) = from {
        query.push(("from", f));
    }
    if let Some(t) = to {
        query.push(("to", t));
    }
    let ids: Vec<String> = match service {
        Some(id) => vec![id.to_owned()],
        None => client
            .get("/api/v1/services", &[])
            .await?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut rows = Vec::with_capacity(ids.len());
    for id in &ids {
        rows.push(
            client
                .get(&format!("/api/v1/services/{id}/sla"), &query)
                .await?,
        );
    }
    Ok(render(&rows, SLA_COLUMNS, format))
}

/// Columns of the incidents table and CSV.
const INCIDENT_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("state", "state"),
    ("priority", "priority"),
    ("service", "service"),
    ("agent", "agent"),
    ("dedup_key", "dedup_key"),
    ("detected_ms", "detected_ms"),
    ("flapping", "flapping"),
    ("inhibited", "inhibited"),
    ("time_to_restore_s", "time_to_restore_s"),
    ("summary", "summary"),
];

/// `incidents list`.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn incidents(
    client: &ApiClient,
    state: Option<&str>,
    service: Option<&str>,
    format: Format,
) -> anyhow::Result<String> {
    let mut query = Vec::new();
    if let Some(s) = state {
        query.push(("state", s));
    }
    if let Some(s) = service {
        query.push(("service", s));
    }
    let body = client.get("/api/v1/incidents", &query).await?;
    Ok(render(
        &body.as_array().cloned().unwrap_or_default(),
        INCIDENT_COLUMNS,
        format,
    ))
}

/// `incidents show ID`: the record and its timeline.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn incident(client: &ApiClient, id: u64, format: Format) -> anyhow::Result<String> {
    let body = client.get(&format!("/api/v1/incidents/{id}"), &[]).await?;
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&body).unwrap_or_default() + "\n",
        Format::Table | Format::Csv => {
            let mut out = render(std::slice::from_ref(&body), INCIDENT_COLUMNS, format);
            let events = body["timeline"].as_array().cloned().unwrap_or_default();
            out.push('\n');
            out.push_str(&render(
                &events,
                &[
                    ("at_ms", "at_ms"),
                    ("event", "event"),
                    ("by", "by"),
                    ("detail", "detail"),
                ],
                format,
            ));
            out
        }
    })
}

/// `incidents ack|resolve ID --by WHO [--comment TEXT]`.
///
/// # Errors
/// The collector refuses (unknown id, already resolved) or is unreachable.
pub async fn incident_action(
    client: &ApiClient,
    id: u64,
    action: &str,
    by: &str,
    comment: &str,
    format: Format,
) -> anyhow::Result<String> {
    let body = client
        .post(
            &format!("/api/v1/incidents/{id}/{action}"),
            &serde_json::json!({"by": by, "comment": comment}),
        )
        .await?;
    Ok(render(&[body], INCIDENT_COLUMNS, format))
}

/// `agents`: the registry.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn agents(client: &ApiClient, format: Format) -> anyhow::Result<String> {
    let body = client.get("/api/v1/agents", &[]).await?;
    let rows = body.as_array().cloned().unwrap_or_default();
    Ok(render(&rows, AGENT_COLUMNS, format))
}

/// One cell: numbers with at most 4 decimals, `-` for null.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) => {
                let s = format!("{f:.4}");
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Renders rows of JSON objects in `format` with `columns`.
pub fn render(rows: &[Value], columns: &[(&str, &str)], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(rows).unwrap_or_default() + "\n",
        Format::Csv => {
            let mut out = columns
                .iter()
                .map(|(h, _)| *h)
                .collect::<Vec<_>>()
                .join(",");
            out.push('\n');
            for row in rows {
                let cells: Vec<String> = columns
                    .iter()
                    .map(|(_, f)| csv_field(&cell(row.get(*f))))
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            out
        }
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| columns.iter().map(|(_, f)| cell(row.get(*f))).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, (h, _))| {
                    table
                        .iter()
                        .map(|r| r[i].len())
                        .chain([h.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut out = String::new();
            let line = |cells: Vec<&str>, out: &mut String| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                out.push_str(padded.join("  ").trim_end());
                out.push('\n');
            };
            line(columns.iter().map(|(h, _)| *h).collect(), &mut out);
            for r in &table {
                line(r.iter().map(String::as_str).collect(), &mut out);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_and_table_show_every_column_with_nulls_as_dashes() {
        let rows = vec![
            json!({"service": "web, main", "availability_pct": 99.123456, "met": true, "outages": 2}),
        ];
        let csv = render(&rows, &SLA_COLUMNS[..4], Format::Csv);
        assert_eq!(
            csv,
            "service,availability_pct,target_pct,met\n\"web, main\",99.1235,-,true\n"
        );
        let table = render(&rows, &SLA_COLUMNS[..4], Format::Table);
        assert_eq!(
            table,
            "service    availability_pct  target_pct  met\nweb, main  99.1235           -           true\n"
        );
    }
}
