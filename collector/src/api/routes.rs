//! The `/api/v1` handlers. Each reads the shared state, does blocking store work on the
//! blocking pool, and answers JSON with field names as the spec gives them.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use watchstand_shared::time::now_ms;

use super::extract::{Path, Query};
use super::{params, ApiError, AppState};
use crate::availability;
use crate::config::Service;
use crate::ingest::dedup::SeqTracker;
use crate::sla::{SlaReport, Span};

type Shared = State<Arc<AppState>>;

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(ApiError::Internal)
}

/// What the notify outbox shows health (at most this many queued notifications are read).
fn notify_view(store: &crate::store::Store, now: u64) -> anyhow::Result<crate::health::NotifyView> {
    let queued =
        crate::incident::record::IncidentStore::new(store.clone()).due(u64::MAX, 10_000)?;
    let failing: Vec<_> = queued.iter().filter(|n| n.last_error.is_some()).collect();
    Ok(crate::health::NotifyView {
        pending: queued.len() as u64,
        failing: failing.len() as u64,
        last_error: failing.first().and_then(|n| n.last_error.clone()),
        most_overdue_ms: queued
            .iter()
            .map(|n| now.saturating_sub(n.next_at_ms))
            .max()
            .unwrap_or(0),
    })
}

/// The health verdict now (store reads on the blocking pool).
///
/// # Errors
/// The notify outbox cannot be read.
pub async fn verdict(state: &AppState) -> Result<crate::health::Verdict, ApiError> {
    let store = state.store.clone();
    let now = now_ms();
    let notify = blocking(move || notify_view(&store, now)).await?;
    Ok(crate::health::classify(&state.health.inputs(now, notify)))
}

/// `GET /api/v1/health`: `status` ok / degraded / failing with `reasons`; HTTP 503 when
/// failing, so a load balancer or watchdog can act.
pub async fn health(
    State(state): Shared,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &state.counters;
    let rejected: serde_json::Map<String, Value> = c
        .rejected()
        .into_iter()
        .map(|(r, n)| (r.as_str().to_owned(), n.into()))
        .collect();
    let store = state.store.clone();
    let store_bytes = blocking(move || Ok(store.size_on_disk()?)).await?;
    let agents = state.registry.snapshot();
    let verdict = verdict(&state).await?;
    let inbox = state.health.inbox();
    let code = if verdict.status == crate::health::Status::Failing {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    };
    Ok((
        code,
        Json(json!({
            "status": verdict.status,
            "reasons": verdict.reasons,
            "collector": state.collector_id,
            "started_ms": state.started_ms,
            "ingest": {
                "messages": c.messages.load(Relaxed),
                "results_stored": c.results_stored.load(Relaxed),
                "samples_stored": c.samples_stored.load(Relaxed),
                "duplicates": c.duplicates.load(Relaxed),
                "gap_records": c.gap_records.load(Relaxed),
                "lost_entries": c.lost_entries.load(Relaxed),
                "gaps_open": agents.iter().map(|a| a.gaps_open).sum::<u64>(),
                "batches": c.batches.load(Relaxed),
                "rejected_total": c.rejected_total(),
                "rejected": rejected,
                "waiting": inbox.messages,
                "waiting_bytes": inbox.bytes,
                "waiting_peak": inbox.peak_messages,
            },
            "agents": agents.len(),
            "services": state.catalogue.services.len(),
            "store_bytes": store_bytes,
        })),
    ))
}

/// One agent in `GET /api/v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    record: crate::registry::AgentRecord,
    /// Online/offline now (announced state and silence).
    state: watchstand_shared::wire::v1::AgentState,
}

/// `GET /api/v1/agents`.
pub async fn agents(State(state): Shared) -> Json<Vec<AgentView>> {
    let now = now_ms();
    Json(
        state
            .registry
            .snapshot()
            .into_iter()
            .map(|record| AgentView {
                state: record.state_at(now),
                record,
            })
            .collect(),
    )
}

/// `GET /api/v1/agents/{id}`: the registry record and the delivery state of every boot.
pub async fn agent(State(state): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let record = params::agent(&state, &id)?;
    let store = state.store.clone();
    let boots = blocking(move || Ok(store.boots::<SeqTracker>(&id)?)).await?;
    let boots: Vec<Value> = boots
        .into_iter()
        .map(|(boot, t)| {
            json!({"boot": boot, "watermark": t.watermark(), "highest": t.highest(), "missing": t.missing()})
        })
        .collect();
    Ok(Json(json!({
        "agent": AgentView { state: record.state_at(now_ms()), record },
        "boots": boots,
    })))
}

/// `from`, `to`, `limit` of the raw results export.
#[derive(Debug, Deserialize)]
pub struct ResultsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// Most raw results one export returns.
const MAX_EXPORT: usize = 1_000_000;

/// `GET /api/v1/agents/{id}/results?from=&to=&limit=`: stored raw results with their boot and
/// seq (default: everything still kept).
pub async fn agent_results(
    State(state): Shared,
    Path(id): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Result<Json<Value>, ApiError> {
    let span = params::range(
        q.from.as_deref(),
        q.to.as_deref(),
        Span {
            from_ms: 0,
            to_ms: u64::MAX,
        },
    )?;
    let (from_ms, to_ms) = (span.from_ms, span.to_ms);
    let limit = params::limit(q.limit.as_deref(), MAX_EXPORT)?;
    params::agent(&state, &id)?;
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.agent_results(&id, from_ms, to_ms, limit)?)).await?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(probe, r)| {
            json!({"boot": r.boot, "seq": r.seq, "probe": probe, "observed_ms": r.observed_ms, "state": r.state,
                   "latency_us": r.latency_us, "interval_ms": r.interval_ms, "error": r.error})
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// A service with its SLA over its SLO window.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    id: String,
    name: String,
    criticality: crate::config::Criticality,
    rto_s: f64,
    rpo_s: f64,
    probes: Vec<String>,
    mode: String,
    window: String,
    sla: SlaReport,
}

fn service_view(s: &Service, sla: SlaReport) -> ServiceView {
    ServiceView {
        id: s.id.clone(),
        name: s.name.clone(),
        criticality: s.criticality,
        rto_s: s.rto.as_millis() as f64 / 1_000.0,
        rpo_s: s.rpo.as_millis() as f64 / 1_000.0,
        probes: s.probes.iter().map(ToString::to_string).collect(),
        mode: s.mode_text.clone(),
        window: s.window_text.clone(),
        sla,
    }
}

/// `GET /api/v1/services`: every service with its attainment over its own SLO window.
pub async fn services(State(state): Shared) -> Result<Json<Vec<ServiceView>>, ApiError> {
    let now = now_ms();
    blocking(move || {
        let jobs: Vec<_> = state
            .catalogue
            .services
            .iter()
            .map(|s| (s, s.window.resolve(now)))
            .collect();
        availability::service_reports(&state.store, &jobs)
            .into_iter()
            .zip(&state.catalogue.services)
            .map(|(report, s)| {
                let mut report = report?;
                report.rebase_budget(s.window.period_ms(now));
                Ok(service_view(s, report))
            })
            .collect()
    })
    .await
    .map(Json)
}

/// `from`/`to` query parameters.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Resolves a range query against a default span.
fn resolve_range(q: &RangeQuery, default: Span) -> Result<Span, ApiError> {
    params::range(q.from.as_deref(), q.to.as_deref(), default)
}

/// The SLA response: which service, then the report fields at top level.
#[derive(Debug, Serialize)]
pub struct SlaView {
    service: String,
    name: String,
    window: String,
    #[serde(flatten)]
    report: SlaReport,
}

/// `GET /api/v1/services/{id}/sla?from=&to=`.
pub async fn service_sla(
    State(state): Shared,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<SlaView>, ApiError> {
    let service = params::service(&state, &id)?.clone();
    let now = now_ms();
    let span = resolve_range(&q, service.window.resolve(now))?;
    let store = state.store.clone();
    let mut report = {
        let service = service.clone();
        blocking(move || Ok(availability::service_report(&store, &service, span)?)).await?
    };
    // The service's own SLO window: its budget is the whole period's (a calendar month before
    // its end). An explicit range is its own budget window.
    if q.from.is_none() && q.to.is_none() {
        report.rebase_budget(service.window.period_ms(now));
    }
    Ok(Json(SlaView {
        service: service.id,
        name: service.name,
        window: service.window_text,
        report,
    }))
}

/// `agent`, `metric`, `from`, `to`.
#[derive(Debug, Deserialize)]
pub struct CapacityQuery {
    agent: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The answer of `GET /api/v1/capacity`: one agent's metrics over a span.
#[derive(Debug, Serialize)]
pub struct CapacityView {
    /// The agent.
    pub agent: String,
    /// Span start, epoch ms.
    pub from_ms: u64,
    /// Span end (exclusive), epoch ms.
    pub to_ms: u64,
    /// Every metric of the agent, or the one asked for.
    pub metrics: Vec<CapacityMetricView>,
}

/// One metric's figures over the span; with its points when the query named the metric.
#[derive(Debug, Serialize)]
pub struct CapacityMetricView {
    /// Metric name, e.g. `disk_used_pct:/`.
    pub metric: String,
    /// Stored samples in the span.
    pub samples: usize,
    /// The latest value.
    pub current: Option<f64>,
    /// The highest value.
    pub peak: Option<f64>,
    /// The 95th percentile (nearest rank).
    pub p95: Option<f64>,
    /// The mean.
    pub mean: Option<f64>,
    /// `[epoch ms, value]` pairs, oldest first (only for `metric=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<(u64, f64)>>,
}

impl CapacityMetricView {
    /// The figures of `series`; `with_points` keeps the series itself.
    fn of(metric: String, series: Vec<(u64, f64)>, with_points: bool) -> Self {
        let mut values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
        // Sorts `values`: the peak is the last.
        let p95 = crate::capacity::forecast::percentile(&mut values, 95.0);
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        Self {
            metric,
            samples: series.len(),
            current: series.last().map(|(_, v)| *v),
            peak: values.last().copied(),
            p95,
            mean,
            points: with_points.then_some(series),
        }
    }
}

/// `GET /api/v1/capacity?agent=&metric=&from=&to=`: without `metric`, the agent's metrics with
/// their latest values; with it, the series and its current, peak, p95 and mean.
pub async fn capacity(
    State(state): Shared,
    Query(q): Query<CapacityQuery>,
) -> Result<Json<CapacityView>, ApiError> {
    let agent = q.agent.clone().ok_or(ApiError::BadRequest {
        param: "agent",
        message: "is required".into(),
    })?;
    params::agent(&state, &agent)?;
    let now = now_ms();
    let span = resolve_range(
        &RangeQuery {
            from: q.from.clone(),
            to: q.to.clone(),
        },
        Span {
            from_ms: now.saturating_sub(watchstand_shared::time::DAY_MS),
            to_ms: now + 1,
        },
    )?;
    let store = state.store.clone();
    blocking(move || {
        let names = match &q.metric {
            Some(m) => vec![m.clone()],
            None => store.capacity_metrics(&agent)?,
        };
        let mut metrics = Vec::with_capacity(names.len());
        for metric in names {
            let series = store.capacity_series(&agent, &metric, span.from_ms, span.to_ms)?;
            metrics.push(CapacityMetricView::of(metric, series, q.metric.is_some()));
        }
        Ok(CapacityView {
            agent,
            from_ms: span.from_ms,
            to_ms: span.to_ms,
            metrics,
        })
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_view_keeps_the_json_shape_of_the_old_rows() {
        let view = CapacityView {
            agent: "a".into(),
            from_ms: 0,
            to_ms: 4,
            metrics: vec![
                CapacityMetricView::of("m".into(), vec![(1, 3.0), (2, 1.0), (3, 2.0)], true),
                CapacityMetricView::of("e".into(), Vec::new(), false),
            ],
        };
        assert_eq!(
            serde_json::to_value(&view).expect("serializes"),
            json!({
                "agent": "a", "from_ms": 0, "to_ms": 4,
                "metrics": [
                    {"metric": "m", "samples": 3, "current": 2.0, "peak": 3.0, "p95": 3.0,
                     "mean": 2.0, "points": [[1, 3.0], [2, 1.0], [3, 2.0]]},
                    {"metric": "e", "samples": 0, "current": null, "peak": null, "p95": null,
                     "mean": null},
                ],
            })
        );
    }
}
