//! The HTTP API under `/api/v1` and `/metrics`: `router(state)` builds everything, `main`
//! serves it, tests drive it with `oneshot` (no socket). Routes are in [`routes`], the
//! Prometheus text in [`metrics`], the one error type in [`error`]. Every error is JSON: handlers
//! take their query, path and body through [`extract`] (axum's rejections as JSON, plus the 404
//! and 405 fallbacks) and check times, ranges, `limit` and ids through [`params`].
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/health` | `status` ok / degraded / failing with `reasons` (503 when failing), ingest counters, rejected by reason, store size |
//! | `GET /api/v1/me` | the token's name and role (the dashboard offers only what the role may do) |
//! | `GET /api/v1/agents` | the agent registry |
//! | `GET /api/v1/agents/{id}` | one agent with the delivery state of each boot (watermark, highest, missing) |
//! | `GET /api/v1/agents/{id}/results?from=&to=&limit=` | raw stored results with boot and seq (export, audits) |
//! | `GET /api/v1/services` | the catalogue with current attainment |
//! | `GET /api/v1/services/{id}/sla?from=&to=` | SLA report (RFC 3339 or epoch ms; default: the SLO window) |
//! | `GET /api/v1/services/{id}/history?from=&to=&buckets=` | the SLA report per equal bucket of a range (default 90 days, 90 buckets; at most 200) |
//! | `GET /`, `/assets/app.js`, `/assets/app.css` | the web dashboard (public files; its data comes from this API with the user's token) |
//! | `GET /api/v1/capacity?agent=&metric=&from=&to=` | capacity series and summary |
//! | `GET /api/v1/capacity/summary?agent=&metric=&from=&to=` | every agent and metric: current, peak, p95, trend/day, projected crossing with its interval, headroom; at risk first |
//! | `GET /api/v1/capacity/forecast?agent=&metric=&from=&to=` | one metric's forecast and its daily points |
//! | `GET /api/v1/incidents?state=&service=` | incidents, newest first |
//! | `GET /api/v1/incidents/{id}` | one incident with its timeline |
//! | `POST /api/v1/incidents/{id}/ack`, `…/resolve` | `{"comment": "…"}` (who: the token) |
//! | `GET /api/v1/incidents/stats?service=&from=&to=` | MTTR and MTBF per service |
//! | `GET /api/v1/audit?from_seq=&limit=` | audit records and the chain's verification |
//! | `GET /api/v1/reports/{kind}?period=&from=&to=&format=` | availability, service, incident, capacity reports as JSON, CSV, Markdown, HTML |
//! | `GET /api/v1/reports/continuity?drill_run=&format=`, `GET /api/v1/drill-runs/{id}/report?format=` | the continuity test report of a drill run, same formats |
//! | `GET /metrics` | Prometheus text |
//!
//! Every route has one access rule in [`routes_table`], which the router is built from (a route
//! cannot exist without a rule); [`access`] applies it: with `[[api.tokens]]` configured every
//! route but `/api/v1/health` (and `/metrics` with `public_metrics`) needs a bearer token of at
//! least the rule's role. Ack and resolve take `by` from the token's name.

pub mod access;
#[cfg(test)]
mod access_tests;
pub mod audit;
pub mod capacity;
pub mod drills;
pub mod error;
pub mod extract;
pub mod history;
pub mod incidents;
pub mod me;
pub mod metrics;
pub mod params;
pub mod reports;
pub mod routes;
pub mod runbooks;
#[cfg(test)]
pub(crate) mod tests;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::audit::AuditLog;
use crate::auth::{ApiAccess, Role};
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
    /// The engine task: operator actions go to it, metrics read its snapshot.
    pub incidents: crate::engine::EngineHandle,
    /// The configured runbooks.
    pub runbooks: Arc<Vec<crate::runbook::Runbook>>,
    /// The configured drills.
    pub drills: Arc<Vec<crate::drill::Drill>>,
    /// What health is judged from.
    pub health: Arc<crate::health::HealthState>,
    /// Who may use the API (`[api]`).
    pub access: Arc<ApiAccess>,
    /// The audit log.
    pub audit: AuditLog,
    /// `[capacity]` and the retention the capacity views read by.
    pub capacity: Arc<crate::capacity::report::CapacityContext>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/api/v1/health`).
    Public,
    /// `/metrics`: viewer, or anyone with `[api] public_metrics = true`.
    Metrics,
    /// This role or a higher one.
    Role(Role),
}

/// One route's access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Its method.
    pub method: Method,
    /// Its path as given to the router (`{id}` for parameters).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The audit log's name for it (`incident.resolve`).
    pub action: &'static str,
}

type Handler = MethodRouter<Arc<AppState>>;

/// Every route with its rule: the one table the router is built from and the access middleware
/// reads. A new route goes here, with its rule, or it does not exist.
pub fn routes_table() -> Vec<(RouteRule, Handler)> {
    use Access::{Metrics, Public, Role as R};
    use Role::{Admin, Operator, Viewer};
    let rule = |method: Method, path, access, action| RouteRule {
        method,
        path,
        access,
        action,
    };
    vec![
        (
            rule(Method::GET, "/api/v1/health", Public, "health.read"),
            get(routes::health),
        ),
        (
            rule(Method::GET, "/api/v1/me", R(Viewer), "me.read"),
            get(me::me),
        ),
        (
            rule(Method::GET, "/api/v1/agents", R(Viewer), "agents.read"),
            get(routes::agents),
        ),
        (
            rule(Method::GET, "/api/v1/agents/{id}", R(Viewer), "agent.read"),
            get(routes::agent),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/agents/{id}/results",
                R(Viewer),
                "results.read",
            ),
            get(routes::agent_results),
        ),
        (
            rule(Method::GET, "/api/v1/services", R(Viewer), "services.read"),
            get(routes::services),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/services/{id}/sla",
                R(Viewer),
                "sla.read",
            ),
            get(routes::service_sla),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/services/{id}/history",
                R(Viewer),
                "history.read",
            ),
            get(history::history),
        ),
        (
            rule(Method::GET, "/", Public, "dashboard.read"),
            get(crate::dashboard::index),
        ),
        (
            rule(Method::GET, "/assets/app.js", Public, "dashboard.read"),
            get(crate::dashboard::script),
        ),
        (
            rule(Method::GET, "/assets/app.css", Public, "dashboard.read"),
            get(crate::dashboard::stylesheet),
        ),
        (
            rule(Method::GET, "/api/v1/capacity", R(Viewer), "capacity.read"),
            get(routes::capacity),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/capacity/summary",
                R(Viewer),
                "capacity.summary",
            ),
            get(capacity::summary),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/capacity/forecast",
                R(Viewer),
                "capacity.forecast",
            ),
            get(capacity::forecast),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/reports/{kind}",
                R(Viewer),
                "reports.read",
            ),
            get(reports::report),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/incidents",
                R(Viewer),
                "incidents.read",
            ),
            get(incidents::list),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/incidents/stats",
                R(Viewer),
                "incidents.stats",
            ),
            get(incidents::stats),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/incidents/{id}",
                R(Viewer),
                "incident.read",
            ),
            get(incidents::show),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/incidents/{id}/ack",
                R(Operator),
                "incident.ack",
            ),
            post(incidents::acknowledge),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/incidents/{id}/resolve",
                R(Operator),
                "incident.resolve",
            ),
            post(incidents::resolve),
        ),
        (
            rule(Method::GET, "/api/v1/runbooks", R(Viewer), "runbooks.read"),
            get(runbooks::list),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/runbooks/{id}/run",
                R(Operator),
                "runbook.run",
            ),
            post(runbooks::start),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/runbook-runs",
                R(Viewer),
                "runbook_runs.read",
            ),
            get(runbooks::runs),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/runbook-runs/{id}",
                R(Viewer),
                "runbook_run.read",
            ),
            get(runbooks::show),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/runbook-runs/{id}/approve",
                R(Operator),
                "runbook_run.approve",
            ),
            post(runbooks::approve),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/runbook-runs/{id}/reject",
                R(Operator),
                "runbook_run.reject",
            ),
            post(runbooks::reject),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/runbook-runs/{id}/cancel",
                R(Operator),
                "runbook_run.cancel",
            ),
            post(runbooks::cancel),
        ),
        (
            rule(Method::GET, "/api/v1/drills", R(Viewer), "drills.read"),
            get(drills::list),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/drills/{id}/run",
                R(Operator),
                "drill.run",
            ),
            post(drills::start),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/drill-summary",
                R(Viewer),
                "drill_summary.read",
            ),
            get(drills::summary),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/drill-runs",
                R(Viewer),
                "drill_runs.read",
            ),
            get(drills::runs),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/drill-runs/{id}",
                R(Viewer),
                "drill_run.read",
            ),
            get(drills::show),
        ),
        (
            rule(
                Method::GET,
                "/api/v1/drill-runs/{id}/report",
                R(Viewer),
                "drill_report.read",
            ),
            get(drills::report),
        ),
        (
            rule(
                Method::POST,
                "/api/v1/drill-runs/{id}/review",
                R(Operator),
                "drill_run.review",
            ),
            post(drills::review),
        ),
        (
            rule(Method::GET, "/api/v1/audit", R(Admin), "audit.read"),
            get(audit::list),
        ),
        (
            rule(Method::GET, "/metrics", Metrics, "metrics.read"),
            get(metrics::metrics),
        ),
    ]
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    let mut rules = Vec::new();
    for (rule, handler) in routes_table() {
        router = router.route(rule.path, handler);
        rules.push(rule);
    }
    let guard = Arc::new(access::Guard::new(
        rules,
        state.access.clone(),
        state.audit.clone(),
    ));
    router
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            access::authorize,
        ))
        .fallback(extract::unknown_route)
        .method_not_allowed_fallback(extract::wrong_method)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(Arc::new(state))
}
