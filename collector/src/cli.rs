//! The command-line clients of the HTTP API (`sla`, `agents`, `incidents`, `runbooks`): fetch JSON (with the
//! API token, if given), render it as a table, JSON or CSV. They never open the store (sled allows one process per store). Tables are for
//! people (times in RFC 3339, durations as `1h 2m`, see [`crate::human`]); JSON and CSV keep the
//! API's epoch ms and seconds.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use watchstand_shared::secrets::Secret;

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

/// How a column's values are shown in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// As the API gives it.
    Plain,
    /// Epoch ms, shown as RFC 3339.
    Time,
    /// Seconds, shown as `1h 2m`.
    Seconds,
    /// Shown only when some row has the field (fields a newer collector adds).
    Optional(&'static Kind),
}

/// A column: the CSV header (the JSON field) and how a table shows it. A table's header drops
/// the `_ms`/`_s` suffix of a time or duration, which it no longer shows in those units.
pub type Column = (&'static str, Kind);

/// Columns of the SLA table and CSV.
const SLA_COLUMNS: &[Column] = &[
    ("service", Kind::Plain),
    ("availability_pct", Kind::Plain),
    ("target_pct", Kind::Plain),
    ("met", Kind::Plain),
    ("coverage_pct", Kind::Optional(&Kind::Plain)),
    ("measured_since", Kind::Optional(&Kind::Time)),
    ("measured_since_ms", Kind::Optional(&Kind::Time)),
    ("uptime_s", Kind::Seconds),
    ("downtime_s", Kind::Seconds),
    ("unmonitored_s", Kind::Seconds),
    ("maintenance_s", Kind::Seconds),
    ("partial_outage_s", Kind::Seconds),
    ("error_budget_remaining_s", Kind::Seconds),
    ("latency_p50_ms", Kind::Plain),
    ("latency_p99_ms", Kind::Plain),
    ("outages", Kind::Plain),
];

/// Columns of the agents table and CSV.
const AGENT_COLUMNS: &[Column] = &[
    ("site", Kind::Plain),
    ("agent", Kind::Plain),
    ("state", Kind::Plain),
    ("boot", Kind::Plain),
    ("last_seen_ms", Kind::Time),
    ("stored", Kind::Plain),
    ("duplicates", Kind::Plain),
    ("gaps_open", Kind::Plain),
    ("lost_entries", Kind::Plain),
];

/// How to print: the format, and for tables whether times are local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Table, JSON or CSV.
    pub format: Format,
    /// Tables show local time (with its offset) instead of UTC.
    pub local: bool,
}

impl From<Format> for Output {
    fn from(format: Format) -> Self {
        Self {
            format,
            local: false,
        }
    }
}

/// A client of one collector's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer …` (a sensitive header: never in reqwest's debug output).
    token: Option<Secret>,
}

impl ApiClient {
    /// A client for the collector at `server` (e.g. `http://127.0.0.1:8088`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(server: &str) -> anyhow::Result<Self> {
        Self::with_ca(server, None)
    }

    /// A client for the collector at `server` that also trusts the PEM CA certificate(s) in
    /// `ca_pem` (an `https://` API with a private CA, `[api] tls_cert`).
    ///
    /// # Errors
    /// The CA is not PEM, or the HTTP client cannot be built.
    pub fn with_ca(server: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).context("the CA file is not PEM")?;
            anyhow::ensure!(!certs.is_empty(), "the CA file holds no PEM certificate");
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Self {
            base: server.trim_end_matches('/').to_owned(),
            http,
            token: None,
        })
    }

    /// The same client, sending `token` with every request.
    #[must_use]
    pub fn with_token(mut self, token: Option<Secret>) -> Self {
        self.token = token;
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => request.bearer_auth(t.expose()),
            None => request,
        }
    }

    /// POSTs JSON to `path`; API errors carry the server's message.
    ///
    /// # Errors
    /// The collector is unreachable or answers with an error.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .authorized(self.http.post(&url))
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

    /// An error answer as an error naming the URL, the status and the server's message.
    fn failure(url: &str, status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            " (give an API token: --token-file FILE, WATCHSTAND_TOKEN or --token)"
        } else {
            ""
        };
        anyhow::anyhow!("{url}: {status}: {message}{hint}")
    }

    async fn answer(url: &str, response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("{url}: the answer is not JSON"))?;
        if !status.is_success() {
            return Err(Self::failure(url, status, &body));
        }
        Ok(body)
    }

    /// GETs `path` (with `query`) and returns the JSON body; API errors carry the server's message.
    ///
    /// # Errors
    /// The collector is unreachable or answers with an error.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let text = self.get_text(path, query).await?;
        serde_json::from_str(&text).with_context(|| format!("{url}: the answer is not JSON"))
    }

    /// GETs `path` (with `query`) and returns the body as text, whatever its content type (a
    /// report in Markdown or HTML); API errors (JSON) carry the server's message.
    ///
    /// # Errors
    /// The collector is unreachable or answers with an error.
    pub async fn get_text(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let response = self
            .authorized(self.http.get(&url))
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
        let text = response
            .text()
            .await
            .with_context(|| format!("{url}: reading the answer"))?;
        if !status.is_success() {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(Self::failure(&url, status, &body));
        }
        Ok(text)
    }
}

/// Converts a `--from`/`--to` text (the forms [`crate::human::parse_when`] takes) to epoch ms.
///
/// # Errors
/// The text is no time; the message names `--{param}`.
pub fn when(text: Option<&str>, param: &str, local: bool) -> anyhow::Result<Option<String>> {
    let now = watchstand_shared::time::now_ms();
    text.map(|t| {
        crate::human::parse_when(t, now, local)
            .map(|ms| ms.to_string())
            .map_err(|e| anyhow::anyhow!("--{param}: {e}"))
    })
    .transpose()
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
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let output = output.into();
    let now = watchstand_shared::time::now_ms();
    let mut query: Vec<(&str, String)> = Vec::new();
    for (param, text) in [("from", from), ("to", to)] {
        if let Some(text) = text {
            let ms = crate::human::parse_when(text, now, output.local)
                .map_err(|e| anyhow::anyhow!("--{param}: {e}"))?;
            query.push((param, ms.to_string()));
        }
    }
    let query: Vec<(&str, &str)> = query.iter().map(|(p, v)| (*p, v.as_str())).collect();
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
    Ok(render(&rows, SLA_COLUMNS, output))
}

/// Columns of the incidents table and CSV.
const INCIDENT_COLUMNS: &[Column] = &[
    ("id", Kind::Plain),
    ("state", Kind::Plain),
    ("priority", Kind::Plain),
    ("service", Kind::Plain),
    ("agent", Kind::Plain),
    ("metric", Kind::Optional(&Kind::Plain)),
    ("dedup_key", Kind::Plain),
    ("detected_ms", Kind::Time),
    ("flapping", Kind::Plain),
    ("inhibited", Kind::Plain),
    ("time_to_restore_s", Kind::Seconds),
    ("summary", Kind::Plain),
];

/// Columns of an incident's timeline.
const TIMELINE_COLUMNS: &[Column] = &[
    ("at_ms", Kind::Time),
    ("event", Kind::Plain),
    ("by", Kind::Plain),
    ("detail", Kind::Plain),
];

/// `incidents list`.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn incidents(
    client: &ApiClient,
    state: Option<&str>,
    service: Option<&str>,
    output: impl Into<Output>,
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
        output,
    ))
}

/// `incidents show ID`: the record and its timeline.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn incident(
    client: &ApiClient,
    id: u64,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let output = output.into();
    let body = client.get(&format!("/api/v1/incidents/{id}"), &[]).await?;
    Ok(match output.format {
        Format::Json => serde_json::to_string_pretty(&body).unwrap_or_default() + "\n",
        Format::Table | Format::Csv => {
            let mut out = render(std::slice::from_ref(&body), INCIDENT_COLUMNS, output);
            let events = body["timeline"].as_array().cloned().unwrap_or_default();
            out.push('\n');
            out.push_str(&render(&events, TIMELINE_COLUMNS, output));
            out
        }
    })
}

/// `incidents ack|resolve ID [--comment TEXT]`: who acts is the token's holder.
///
/// # Errors
/// The collector refuses (unknown id, already resolved, no or a too weak token) or is
/// unreachable.
pub async fn incident_action(
    client: &ApiClient,
    id: u64,
    action: &str,
    comment: &str,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let body = client
        .post(
            &format!("/api/v1/incidents/{id}/{action}"),
            &serde_json::json!({"comment": comment}),
        )
        .await?;
    Ok(render(&[body], INCIDENT_COLUMNS, output))
}

/// Columns of the runbooks table.
const RUNBOOK_COLUMNS: &[Column] = &[
    ("id", Kind::Plain),
    ("service", Kind::Plain),
    ("manual", Kind::Plain),
    ("trigger", Kind::Plain),
    ("steps", Kind::Plain),
    ("running", Kind::Plain),
];

/// Columns of the runs table and CSV.
const RUN_COLUMNS: &[Column] = &[
    ("id", Kind::Plain),
    ("runbook", Kind::Plain),
    ("status", Kind::Plain),
    ("trigger", Kind::Plain),
    ("started_ms", Kind::Time),
    ("ended_ms", Kind::Time),
    ("current_step", Kind::Plain),
    ("reason", Kind::Plain),
];

/// Columns of a run's step timeline (one row per attempt; a step never begun has one row).
const STEP_COLUMNS: &[Column] = &[
    ("step", Kind::Plain),
    ("kind", Kind::Plain),
    ("status", Kind::Plain),
    ("attempt", Kind::Plain),
    ("started_ms", Kind::Time),
    ("ended_ms", Kind::Time),
    ("outcome", Kind::Plain),
];

/// A run's trigger in one cell: `incident 4`, `manual by ana`.
fn trigger_text(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("incident") => format!("incident {}", cell(t.get("incident"))),
        Some("manual") => format!("manual by {}", cell(t.get("by"))),
        _ => cell(Some(t)),
    }
}

/// A run as a row of [`RUN_COLUMNS`] (the trigger in words, the current step of a full run).
fn run_row(run: &Value) -> Value {
    let mut row = run.clone();
    row["trigger"] = Value::String(trigger_text(&run["trigger"]));
    if row.get("current_step").is_none() {
        let current = run["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["status"] == "running"))
            .map(|s| s["id"].clone());
        row["current_step"] = current.unwrap_or(Value::Null);
    }
    row
}

/// `runbooks list`.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn runbooks(client: &ApiClient, output: impl Into<Output>) -> anyhow::Result<String> {
    let output = output.into();
    let body = client.get("/api/v1/runbooks", &[]).await?;
    if output.format == Format::Json {
        return Ok(serde_json::to_string_pretty(&body).unwrap_or_default() + "\n");
    }
    let rows: Vec<Value> = body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|b| {
            let trigger = match b.get("on_incident") {
                Some(t) if !t.is_null() => format!(
                    "incident {} ≥ {} after {}",
                    t["rules"].as_array().filter(|r| !r.is_empty()).map_or(
                        "any rule".to_owned(),
                        |r| r
                            .iter()
                            .map(|x| cell(Some(x)))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    cell(t.get("min_priority")),
                    crate::human::format_seconds(t["after_ms"].as_f64().unwrap_or(0.0) / 1_000.0),
                ),
                _ => "-".to_owned(),
            };
            let steps = b["steps"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|s| format!("{}({})", cell(s.get("id")), cell(s.get("kind"))))
                        .collect::<Vec<_>>()
                        .join(" → ")
                })
                .unwrap_or_default();
            serde_json::json!({
                "id": b["id"], "service": b["service"], "manual": b["manual"],
                "trigger": trigger, "steps": steps, "running": b["running"],
            })
        })
        .collect();
    Ok(render(&rows, RUNBOOK_COLUMNS, output))
}

/// `runbooks runs [--runbook ID] [--status S]`: newest first.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn runbook_runs(
    client: &ApiClient,
    runbook: Option<&str>,
    status: Option<&str>,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let output = output.into();
    let mut query = Vec::new();
    if let Some(r) = runbook {
        query.push(("runbook", r));
    }
    if let Some(s) = status {
        query.push(("status", s));
    }
    let body = client.get("/api/v1/runbook-runs", &query).await?;
    if output.format == Format::Json {
        return Ok(serde_json::to_string_pretty(&body).unwrap_or_default() + "\n");
    }
    let rows: Vec<Value> = body
        .as_array()
        .map(|a| a.iter().map(run_row).collect())
        .unwrap_or_default();
    Ok(render(&rows, RUN_COLUMNS, output))
}

/// A run and its step timeline, as tables (or the API's JSON).
fn render_run(run: &Value, output: Output) -> String {
    if output.format == Format::Json {
        return serde_json::to_string_pretty(run).unwrap_or_default() + "\n";
    }
    let mut out = render(&[run_row(run)], RUN_COLUMNS, output);
    let mut rows = Vec::new();
    for step in run["steps"].as_array().cloned().unwrap_or_default() {
        let attempts = step["attempts"].as_array().cloned().unwrap_or_default();
        let base = |a: Option<&Value>| {
            let outcome = a.and_then(|a| a.get("outcome")).filter(|o| !o.is_null());
            let outcome = outcome.map_or("-".to_owned(), |o| {
                let what = o
                    .get("detail")
                    .or_else(|| o.get("reason"))
                    .or_else(|| o.get("by"));
                match what {
                    Some(w) => format!("{}: {}", cell(o.get("kind")), cell(Some(w))),
                    None => cell(o.get("kind")),
                }
            });
            serde_json::json!({
                "step": step["id"], "kind": step["kind"], "status": step["status"],
                "attempt": a.map_or(Value::Null, |a| a["n"].clone()),
                "started_ms": a.map_or(Value::Null, |a| a["started_ms"].clone()),
                "ended_ms": a.map_or(Value::Null, |a| a["ended_ms"].clone()),
                "outcome": outcome,
            })
        };
        if attempts.is_empty() {
            rows.push(base(None));
        }
        for a in &attempts {
            rows.push(base(Some(a)));
        }
    }
    out.push('\n');
    out.push_str(&render(&rows, STEP_COLUMNS, output));
    out
}

/// `runbooks show RUN`: the run and its step timeline.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn runbook_run(
    client: &ApiClient,
    id: u64,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let body = client
        .get(&format!("/api/v1/runbook-runs/{id}"), &[])
        .await?;
    Ok(render_run(&body, output.into()))
}

/// `runbooks run ID`: starts runbook `id` (who: the token's holder); the run as stored.
///
/// # Errors
/// The collector refuses (unknown runbook, not manual, no or a too weak token) or is
/// unreachable.
pub async fn start_runbook(
    client: &ApiClient,
    id: &str,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let body = client
        .post(&format!("/api/v1/runbooks/{id}/run"), &Value::Null)
        .await?;
    Ok(render_run(&body, output.into()))
}

/// `runbooks approve|reject|cancel RUN` (who: the token's holder).
///
/// # Errors
/// The collector refuses (unknown run, not waiting for an approval, a role below the step's,
/// already over) or is unreachable.
pub async fn runbook_action(
    client: &ApiClient,
    id: u64,
    action: &str,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let body = client
        .post(&format!("/api/v1/runbook-runs/{id}/{action}"), &Value::Null)
        .await?;
    Ok(render_run(&body, output.into()))
}

/// `agents`: the registry.
///
/// # Errors
/// As [`ApiClient::get`].
pub async fn agents(client: &ApiClient, output: impl Into<Output>) -> anyhow::Result<String> {
    let body = client.get("/api/v1/agents", &[]).await?;
    let rows = body.as_array().cloned().unwrap_or_default();
    Ok(render(&rows, AGENT_COLUMNS, output))
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

/// One table cell: times and durations for people, the rest as [`cell`].
fn human_cell(v: Option<&Value>, kind: Kind, local: bool) -> String {
    match (kind, v) {
        (Kind::Optional(inner), _) => human_cell(v, *inner, local),
        (Kind::Time, Some(Value::Number(n))) if n.as_u64().is_some() => {
            crate::human::format_time(n.as_u64().unwrap_or_default(), local)
        }
        (Kind::Seconds, Some(Value::Number(n))) if n.as_f64().is_some() => {
            crate::human::format_seconds(n.as_f64().unwrap_or_default())
        }
        _ => cell(v),
    }
}

/// A table's header for a column: the field without the unit suffix its cells no longer show.
fn table_header(field: &'static str, kind: Kind) -> &'static str {
    match kind {
        Kind::Time => field.strip_suffix("_ms").unwrap_or(field),
        Kind::Seconds => field.strip_suffix("_s").unwrap_or(field),
        Kind::Optional(inner) => table_header(field, *inner),
        Kind::Plain => field,
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Renders rows of JSON objects with `columns` (an optional column only when some row has it).
pub fn render(rows: &[Value], columns: &[Column], output: impl Into<Output>) -> String {
    let output = output.into();
    let columns: Vec<(&str, &str, Kind)> = columns
        .iter()
        .filter(|(field, kind)| {
            !matches!(kind, Kind::Optional(_))
                || rows
                    .iter()
                    .any(|r| r.get(*field).is_some_and(|v| !v.is_null()))
        })
        .map(|(field, kind)| {
            let header = match output.format {
                Format::Table => table_header(field, *kind),
                Format::Json | Format::Csv => field,
            };
            (header, *field, *kind)
        })
        .collect();
    match output.format {
        Format::Json => serde_json::to_string_pretty(rows).unwrap_or_default() + "\n",
        Format::Csv => {
            let mut out = columns
                .iter()
                .map(|(h, _, _)| *h)
                .collect::<Vec<_>>()
                .join(",");
            out.push('\n');
            for row in rows {
                let cells: Vec<String> = columns
                    .iter()
                    .map(|(_, f, _)| csv_field(&cell(row.get(*f))))
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            out
        }
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    columns
                        .iter()
                        .map(|(_, f, kind)| human_cell(row.get(*f), *kind, output.local))
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, (h, _, _))| {
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
            line(columns.iter().map(|(h, _, _)| *h).collect(), &mut out);
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

    #[test]
    fn tables_show_times_in_rfc3339_and_durations_in_units_json_and_csv_keep_numbers() {
        let rows = vec![json!({
            "id": 7, "state": "open", "priority": "P2", "service": "web", "agent": null,
            "dedup_key": "web/service_down", "detected_ms": 1_796_634_000_000_u64,
            "flapping": false, "inhibited": false, "time_to_restore_s": 3_725.0, "summary": "down"
        })];
        let table = render(&rows, INCIDENT_COLUMNS, Format::Table);
        assert_eq!(
            table.lines().collect::<Vec<_>>(),
            [
                "id  state  priority  service  agent  dedup_key         detected              flapping  inhibited  time_to_restore  summary",
                "7   open   P2        web      -      web/service_down  2026-12-07T09:00:00Z  false     false      1h 2m            down",
            ]
        );
        let csv = render(&rows, INCIDENT_COLUMNS, Format::Csv);
        assert!(
            csv.starts_with("id,state,priority,service,agent,dedup_key,detected_ms,"),
            "{csv}"
        );
        assert!(
            csv.contains(",1796634000000,false,false,3725,down"),
            "{csv}"
        );
        let json = render(&rows, INCIDENT_COLUMNS, Format::Json);
        assert!(json.contains("\"detected_ms\": 1796634000000"), "{json}");
    }

    #[test]
    fn the_sla_table_shows_coverage_only_when_the_api_gives_it() {
        let old = vec![json!({"service": "web", "unmonitored_s": 2_500_000.0})];
        let header = render(&old, SLA_COLUMNS, Format::Table);
        assert!(!header.contains("coverage"), "{header}");
        assert!(header.contains("28d 22h"), "{header}");
        let new = vec![
            json!({"service": "web", "coverage_pct": 0.02, "measured_since": 1_796_634_000_000_u64, "unmonitored_s": 2_500_000.0}),
        ];
        let table = render(&new, SLA_COLUMNS, Format::Table);
        let mut lines = table.lines();
        let head = lines.next().unwrap_or_default();
        assert!(head.contains("coverage_pct  measured_since  "), "{table}");
        assert!(
            table.contains("0.02          2026-12-07T09:00:00Z"),
            "{table}"
        );
    }
}
