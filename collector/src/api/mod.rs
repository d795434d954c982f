//! The HTTP API under `/api/v1` and `/metrics`: `router(state)` builds everything, `main`
//! serves it, tests drive it with `oneshot` (no socket). Routes are in [`routes`], the
//! Prometheus text in [`metrics`], the one error type in [`error`]. Every error is JSON: handlers
//! take their query, path and body through [`extract`] (axum's rejections as JSON, plus the 404
//! and 405 fallbacks) and check times, ranges, `limit` and ids through [`params`].
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/health` | `status` ok / degraded / failing with `reasons` (503 when failing), ingest counters, rejected by reason, store size |
//! | `GET /api/v1/agents` | the agent registry |
//! | `GET /api/v1/agents/{id}` | one agent with the delivery state of each boot (watermark, highest, missing) |
//! | `GET /api/v1/agents/{id}/results?from=&to=&limit=` | raw stored results with boot and seq (export, audits) |
//! | `GET /api/v1/services` | the catalogue with current attainment |
//! | `GET /api/v1/services/{id}/sla?from=&to=` | SLA report (RFC 3339 or epoch ms; default: the SLO window) |
//! | `GET /api/v1/capacity?agent=&metric=&from=&to=` | capacity series and summary |
//! | `GET /api/v1/incidents?state=&service=` | incidents, newest first |
//! | `GET /api/v1/incidents/{id}` | one incident with its timeline |
//! | `POST /api/v1/incidents/{id}/ack`, `…/resolve` | `{"by": "…", "comment": "…"}` |
//! | `GET /api/v1/incidents/stats?service=&from=&to=` | MTTR and MTBF per service |
//! | `GET /metrics` | Prometheus text |

pub mod error;
pub mod extract;
pub mod incidents;
pub mod metrics;
pub mod params;
pub mod routes;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;

use crate::config::Catalogue;
use crate::events::Counters;
use crate::registry::Registry;
use crate::store::Store;

pub use error::ApiError;

/// What every handler can read.
#[derive(Clone)]
pub struct AppState {
    /// The store (read-only use here).
    pub store: Store,
    /// The service catalogue.
    pub catalogue: Arc<Catalogue>,
    /// The agent registry.
    pub registry: Arc<Registry>,
    /// Ingest counters.
    pub counters: Arc<Counters>,
    /// Collector id.
    pub collector_id: String,
    /// Process start, epoch ms.
    pub started_ms: u64,
    /// The incident engine.
    pub incidents: crate::incident::SharedEngine,
    /// What health is judged from.
    pub health: Arc<crate::health::HealthState>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(routes::health))
        .route("/api/v1/agents", get(routes::agents))
        .route("/api/v1/agents/{id}", get(routes::agent))
        .route("/api/v1/agents/{id}/results", get(routes::agent_results))
        .route("/api/v1/services", get(routes::services))
        .route("/api/v1/services/{id}/sla", get(routes::service_sla))
        .route("/api/v1/capacity", get(routes::capacity))
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/stats", get(incidents::stats))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/metrics", get(metrics::metrics))
        .fallback(extract::unknown_route)
        .method_not_allowed_fallback(extract::wrong_method)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(Arc::new(state))
}
