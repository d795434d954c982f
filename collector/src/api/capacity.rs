//! `GET /api/v1/capacity/summary` and `GET /api/v1/capacity/forecast`: the typed views of
//! [`crate::capacity::report`] over a period (default: `[capacity] window` up to now).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use watchstand_shared::time::now_ms;

use super::extract::Query;
use super::{params, ApiError, AppState};
use crate::capacity::report::{self, ForecastView, Summary};
use crate::sla::Span;

/// `agent`, `metric`, `from`, `to`.
#[derive(Debug, Deserialize)]
pub struct CapacityQuery {
    agent: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn period(state: &AppState, q: &CapacityQuery, now: u64) -> Result<Span, ApiError> {
    params::range(
        q.from.as_deref(),
        q.to.as_deref(),
        Span {
            from_ms: now.saturating_sub(state.capacity.settings.window_ms),
            to_ms: now + 1,
        },
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

/// `GET /api/v1/capacity/summary?agent=&from=&to=`: every metric of every agent (or of
/// `agent`), hosts at risk first.
pub async fn summary(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CapacityQuery>,
) -> Result<Json<Summary>, ApiError> {
    let now = now_ms();
    let span = period(&state, &q, now)?;
    let agents: Vec<String> = match &q.agent {
        Some(a) => vec![params::agent(&state, a)?.agent],
        None => {
            let mut ids: Vec<String> = state
                .registry
                .snapshot()
                .into_iter()
                .map(|r| r.agent)
                .collect();
            ids.sort();
            ids
        }
    };
    let metric = q.metric.clone();
    let store = state.store.clone();
    let ctx = state.capacity.clone();
    let mut summary =
        blocking(move || report::summary(&store, &ctx, &agents, span.from_ms, span.to_ms, now))
            .await?;
    if let Some(m) = metric {
        summary.rows.retain(|r| r.metric == m);
    }
    Ok(Json(summary))
}

/// `GET /api/v1/capacity/forecast?agent=&metric=&from=&to=`: one metric's forecast with the
/// daily points it was fitted on.
pub async fn forecast(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CapacityQuery>,
) -> Result<Json<ForecastView>, ApiError> {
    let required = |param: &'static str, v: &Option<String>| {
        v.clone().ok_or(ApiError::BadRequest {
            param,
            message: "is required".into(),
        })
    };
    let agent = required("agent", &q.agent)?;
    let metric = required("metric", &q.metric)?;
    params::agent(&state, &agent)?;
    let now = now_ms();
    let span = period(&state, &q, now)?;
    let store = state.store.clone();
    let ctx = state.capacity.clone();
    let view = blocking(move || {
        if !store.capacity_metrics(&agent)?.contains(&metric) {
            return Ok(Err(ApiError::NotFound {
                what: "metric",
                id: metric,
            }));
        }
        report::forecast_view(&store, &ctx, &agent, &metric, span.from_ms, span.to_ms, now).map(Ok)
    })
    .await??;
    Ok(Json(view))
}
