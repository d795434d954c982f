//! `watchstand-collector capacity [summary|forecast]`: clients of the capacity API, rendered
//! as a table (figures rounded for people), JSON (the API's view) or CSV (full precision).

use serde_json::Value;

use crate::cli::{render, when, ApiClient, Column, Format, Kind, Output};

/// Columns of the summary table and CSV.
const SUMMARY_COLUMNS: &[Column] = &[
    ("agent", Kind::Plain),
    ("metric", Kind::Plain),
    ("current", Kind::Plain),
    ("peak", Kind::Plain),
    ("p95", Kind::Plain),
    ("threshold", Kind::Plain),
    ("headroom", Kind::Plain),
    ("trend_per_day", Kind::Plain),
    ("outcome", Kind::Plain),
    ("projected_ms", Kind::Time),
    ("projected_earliest_ms", Kind::Time),
    ("projected_latest_ms", Kind::Time),
    ("r_squared", Kind::Plain),
];

/// Columns of the forecast table and CSV (one row).
const FORECAST_COLUMNS: &[Column] = &[
    ("agent", Kind::Plain),
    ("metric", Kind::Plain),
    ("resolution", Kind::Plain),
    ("threshold", Kind::Plain),
    ("outcome", Kind::Plain),
    ("date_ms", Kind::Time),
    ("earliest_ms", Kind::Time),
    ("latest_ms", Kind::Time),
    ("slope_per_day", Kind::Plain),
    ("slope_low", Kind::Plain),
    ("slope_high", Kind::Plain),
    ("r_squared", Kind::Plain),
    ("days_used", Kind::Plain),
    ("step_at_ms", Kind::Optional(&Kind::Time)),
    ("needed", Kind::Optional(&Kind::Plain)),
];

/// Figures rounded for a table: 2 decimals, slopes and R² 3.
fn rounded(mut row: Value) -> Value {
    if let Some(obj) = row.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            let places = match k.as_str() {
                "trend_per_day" | "slope_per_day" | "slope_low" | "slope_high" | "r_squared" => 3,
                k if k.ends_with("_ms") || k == "samples" || k == "days_used" => continue,
                _ => 2,
            };
            if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
                let scale = 10f64.powi(places);
                // `+ 0.0` turns a rounded −0 into 0.
                *v = Value::from((f * scale).round() / scale + 0.0);
            }
        }
    }
    row
}

fn query<'a>(
    agent: Option<&'a str>,
    metric: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    [
        ("agent", agent),
        ("metric", metric),
        ("from", from),
        ("to", to),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect()
}

/// `capacity summary`.
///
/// # Errors
/// As [`ApiClient::get`]; a bad `--from`/`--to`.
pub async fn summary(
    client: &ApiClient,
    agent: Option<&str>,
    metric: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let output = output.into();
    let (from, to) = (
        when(from, "from", output.local)?,
        when(to, "to", output.local)?,
    );
    let body = client
        .get(
            "/api/v1/capacity/summary",
            &query(agent, metric, from.as_deref(), to.as_deref()),
        )
        .await?;
    if output.format == Format::Json {
        return Ok(serde_json::to_string_pretty(&body)? + "\n");
    }
    let mut rows = body
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if output.format == Format::Table {
        rows = rows.into_iter().map(rounded).collect();
    }
    Ok(render(&rows, SUMMARY_COLUMNS, output))
}

/// `capacity forecast --agent A --metric M`.
///
/// # Errors
/// As [`ApiClient::get`]; a bad `--from`/`--to`; no `--agent` or `--metric`.
pub async fn forecast(
    client: &ApiClient,
    agent: Option<&str>,
    metric: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    output: impl Into<Output>,
) -> anyhow::Result<String> {
    let output = output.into();
    let agent = agent.ok_or_else(|| anyhow::anyhow!("capacity forecast needs --agent"))?;
    let metric = metric.ok_or_else(|| anyhow::anyhow!("capacity forecast needs --metric"))?;
    let (from, to) = (
        when(from, "from", output.local)?,
        when(to, "to", output.local)?,
    );
    let body = client
        .get(
            "/api/v1/capacity/forecast",
            &query(Some(agent), Some(metric), from.as_deref(), to.as_deref()),
        )
        .await?;
    if output.format == Format::Json {
        return Ok(serde_json::to_string_pretty(&body)? + "\n");
    }
    // One flat row: the view's names, the forecast's fields and its fit's.
    let mut row = serde_json::Map::new();
    for k in ["agent", "metric", "resolution"] {
        row.insert(k.into(), body.get(k).cloned().unwrap_or(Value::Null));
    }
    match body.get("forecast") {
        Some(Value::Object(f)) => {
            for (k, v) in f {
                if k == "fit" {
                    if let Some(fit) = v.as_object() {
                        row.extend(fit.clone());
                    }
                } else {
                    row.insert(k.clone(), v.clone());
                }
            }
        }
        _ => {
            row.insert("outcome".into(), Value::from("no_threshold"));
        }
    }
    let mut row = Value::Object(row);
    if output.format == Format::Table {
        row = rounded(row);
    }
    Ok(render(&[row], FORECAST_COLUMNS, output))
}
