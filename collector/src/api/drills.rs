//! Drill routes: list drills, start one, list and show drill runs, the continuity test report
//! (JSON, CSV, Markdown, HTML: [`crate::report::continuity`]), the review filled in
//! afterwards, and the yearly summary. Writes go to the
//! engine task as [`crate::engine::drills::DrillAction`]s (the access layer audits them); runs
//! are read from the store, where the engine writes them after every change.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use watchstand_shared::time::now_ms;

use super::extract::{Json as JsonBody, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Identity;
use crate::drill::summary::Summary;
use crate::drill::{DrillRun, DrillStore, Review};
use crate::engine::drills::DrillError;

type Shared = State<Arc<AppState>>;

/// One drill in `GET /api/v1/drills`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DrillView {
    /// Id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Runbook.
    pub runbook: String,
    /// Scenario.
    pub scenario: String,
    /// Schedule as written.
    pub schedule: Option<String>,
    /// Next scheduled start, epoch ms.
    pub next_ms: Option<u64>,
    /// Abort after, ms.
    pub max_duration_ms: Option<u64>,
    /// Confirmation period, ms.
    pub confirm_ms: u64,
    /// The drill run in progress.
    pub running: Option<u64>,
}

/// One drill run in `GET /api/v1/drill-runs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DrillRunRow {
    /// Run id.
    pub id: u64,
    /// Drill.
    pub drill: String,
    /// Service.
    pub service: String,
    /// Status.
    pub status: String,
    /// Started, epoch ms.
    pub started_ms: u64,
    /// Verdict (finished runs).
    pub verdict: Option<String>,
    /// Time to recover, seconds.
    pub recover_s: Option<f64>,
    /// Why skipped or aborted.
    pub reason: Option<String>,
}

async fn all_runs(state: &AppState) -> Result<Vec<DrillRun>, ApiError> {
    let store = DrillStore::new(state.store.clone());
    tokio::task::spawn_blocking(move || store.all())
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

/// `GET /api/v1/drills`.
pub async fn list(State(state): Shared) -> Result<Json<Vec<DrillView>>, ApiError> {
    let runs = all_runs(&state).await?;
    let now = now_ms();
    Ok(Json(
        state
            .drills
            .iter()
            .map(|d| DrillView {
                id: d.id.clone(),
                service: d.service.clone(),
                runbook: d.runbook.clone(),
                scenario: d.scenario.clone(),
                schedule: d.schedule.as_ref().map(|s| s.text.clone()),
                next_ms: d.schedule.as_ref().and_then(|s| s.next_after(now)),
                max_duration_ms: d.max_duration_ms,
                confirm_ms: d.confirm_ms,
                running: runs
                    .iter()
                    .find(|r| r.drill == d.id && r.status.is_active())
                    .map(|r| r.id),
            })
            .collect(),
    ))
}

/// `drill` filter.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    drill: Option<String>,
}

/// `GET /api/v1/drill-runs?drill=`: newest first.
pub async fn runs(
    State(state): Shared,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<DrillRunRow>>, ApiError> {
    let mut runs = all_runs(&state).await?;
    runs.retain(|r| q.drill.as_ref().is_none_or(|d| &r.drill == d));
    runs.reverse();
    Ok(Json(
        runs.into_iter()
            .map(|r| DrillRunRow {
                id: r.id,
                drill: r.drill,
                service: r.service,
                status: r.status.as_str().to_owned(),
                started_ms: r.started_ms,
                verdict: r.outcome.as_ref().map(|o| o.verdict.as_str().to_owned()),
                recover_s: r.outcome.as_ref().and_then(|o| o.recover_s),
                reason: r.skipped.or(r.aborted),
            })
            .collect(),
    ))
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::BadRequest {
        param: "id",
        message: format!("{text:?} is not a drill run id"),
    })
}

async fn get_run(state: &AppState, id: &str) -> Result<DrillRun, ApiError> {
    let id = parse_id(id)?;
    let store = DrillStore::new(state.store.clone());
    tokio::task::spawn_blocking(move || store.get(id))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or(ApiError::NotFound {
            what: "drill run",
            id: id.to_string(),
        })
}

/// `GET /api/v1/drill-runs/{id}`: the stored drill run.
pub async fn show(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<DrillRun>, ApiError> {
    get_run(&state, &id).await.map(Json)
}

/// `format` of the report.
#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    format: Option<String>,
}

/// `GET /api/v1/drill-runs/{id}/report?format=json|csv|md|html` (default JSON).
pub async fn report(
    State(state): Shared,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    super::reports::continuity(state, "id", &id, q.format.as_deref()).await
}

/// `GET /api/v1/drill-summary`: every critical service drilled within its interval?
pub async fn summary(State(state): Shared) -> Result<Json<Summary>, ApiError> {
    let runs = all_runs(&state).await?;
    Ok(Json(crate::drill::summary::summary(
        &state.catalogue,
        &state.drills,
        &runs,
        now_ms(),
    )))
}

fn api_error(e: DrillError) -> ApiError {
    match e {
        DrillError::UnknownDrill(id) => ApiError::NotFound { what: "drill", id },
        DrillError::RunNotFound(id) => ApiError::NotFound {
            what: "drill run",
            id: id.to_string(),
        },
        e @ DrillError::NotFinished(_) => ApiError::Conflict {
            message: e.to_string(),
        },
        e @ (DrillError::Store(_) | DrillError::Runbook(_) | DrillError::EngineStopped) => {
            ApiError::Internal(e.into())
        }
    }
}

/// `POST /api/v1/drills/{id}/run`: starts it on behalf of the token's holder; the drill run as
/// stored (`skipped` with the reason when it may not start).
pub async fn start(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Json<DrillRun>, ApiError> {
    state
        .incidents
        .start_drill(&id, &identity.name)
        .await
        .map(Json)
        .map_err(api_error)
}

/// The body of `POST /api/v1/drill-runs/{id}/review`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReviewBody {
    /// Reviewer.
    pub reviewer: String,
    /// Findings.
    pub findings: String,
    /// Corrective actions.
    #[serde(default)]
    pub corrective_actions: Vec<String>,
    /// Was the plan updated.
    pub plan_updated: bool,
}

/// `POST /api/v1/drill-runs/{id}/review`: records the review of a finished drill run.
pub async fn review(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReviewBody>,
) -> Result<Json<DrillRun>, ApiError> {
    let id = parse_id(&id)?;
    if body.reviewer.trim().is_empty() {
        return Err(ApiError::BadRequest {
            param: "reviewer",
            message: "must not be empty".to_owned(),
        });
    }
    let review = Review {
        reviewer: body.reviewer,
        findings: body.findings,
        corrective_actions: body.corrective_actions,
        plan_updated: body.plan_updated,
        recorded_by: identity.name,
        recorded_ms: now_ms(),
    };
    state
        .incidents
        .review_drill(id, review)
        .await
        .map(Json)
        .map_err(api_error)
}
