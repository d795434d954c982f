//! Runbook routes: list runbooks, start one, list and show runs (with their step timeline),
//! approve, reject or cancel. Writes go to the engine task as [`crate::engine::RunbookAction`]s;
//! who acts is the API token's name (and, for approvals, its role). Runs are read from the
//! store, where the engine writes them after every change.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::extract::{Path, Query};
use super::{ApiError, AppState};
use crate::auth::Identity;
use crate::engine::RunbookError;
use crate::incident::Priority;
use crate::runbook::run::{Run, RunStatus, Trigger};
use crate::runbook::store::RunStore;
use crate::runbook::{OnFailure, Runbook, StepAction};

type Shared = State<Arc<AppState>>;

/// A runbook's incident trigger in `GET /api/v1/runbooks`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TriggerView {
    /// Rules that trigger it (empty: any).
    pub rules: Vec<String>,
    /// Least urgent priority that triggers it.
    pub min_priority: Priority,
    /// Delay after the incident opened, ms.
    pub after_ms: u64,
}

/// One step in `GET /api/v1/runbooks`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StepView {
    /// Step id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// One attempt's time limit, ms.
    pub timeout_ms: u64,
    /// Further attempts after a failure.
    pub retries: u32,
    /// What a final failure does.
    pub on_failure: OnFailure,
    /// `approval` steps: the least role that may approve or reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_role: Option<String>,
}

/// One runbook in `GET /api/v1/runbooks`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunbookView {
    /// Id.
    pub id: String,
    /// Its service.
    pub service: String,
    /// Description.
    pub description: String,
    /// May an operator start it.
    pub manual: bool,
    /// Incident trigger.
    pub on_incident: Option<TriggerView>,
    /// Steps.
    pub steps: Vec<StepView>,
    /// The run in progress, if any.
    pub running: Option<u64>,
}

impl RunbookView {
    fn of(b: &Runbook, running: Option<u64>) -> Self {
        Self {
            id: b.id.clone(),
            service: b.service.clone(),
            description: b.description.clone(),
            manual: b.manual,
            on_incident: b.on_incident.as_ref().map(|t| TriggerView {
                rules: t.rules.clone(),
                min_priority: t.min_priority,
                after_ms: t.after_ms,
            }),
            steps: b
                .steps
                .iter()
                .map(|s| StepView {
                    id: s.id.clone(),
                    kind: s.action.kind().to_owned(),
                    timeout_ms: s.timeout_ms,
                    retries: s.retries,
                    on_failure: s.on_failure,
                    approve_role: match &s.action {
                        StepAction::Approval { role } => Some(role.as_str().to_owned()),
                        _ => None,
                    },
                })
                .collect(),
            running,
        }
    }
}

/// One run in `GET /api/v1/runbook-runs` (without attempts).
#[derive(Debug, Serialize, Deserialize)]
pub struct RunRow {
    /// Run id.
    pub id: u64,
    /// Runbook.
    pub runbook: String,
    /// Service.
    pub service: String,
    /// What started it.
    pub trigger: Trigger,
    /// Status.
    pub status: RunStatus,
    /// Started, epoch ms.
    pub started_ms: u64,
    /// Ended.
    pub ended_ms: Option<u64>,
    /// Why it failed, was cancelled or skipped.
    pub reason: Option<String>,
    /// The step in progress.
    pub current_step: Option<String>,
}

impl From<Run> for RunRow {
    fn from(r: Run) -> Self {
        let current_step = r.current().map(|(i, _)| r.steps[i].id.clone());
        Self {
            id: r.id,
            runbook: r.runbook,
            service: r.service,
            trigger: r.trigger,
            status: r.status,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            reason: r.reason,
            current_step,
        }
    }
}

async fn all_runs(state: &AppState) -> Result<Vec<Run>, ApiError> {
    let store = RunStore::new(state.store.clone());
    tokio::task::spawn_blocking(move || store.all())
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

/// `GET /api/v1/runbooks`.
pub async fn list(State(state): Shared) -> Result<Json<Vec<RunbookView>>, ApiError> {
    let runs = all_runs(&state).await?;
    Ok(Json(
        state
            .runbooks
            .iter()
            .map(|b| {
                let running = runs
                    .iter()
                    .find(|r| r.runbook == b.id && r.status == RunStatus::Running)
                    .map(|r| r.id);
                RunbookView::of(b, running)
            })
            .collect(),
    ))
}

/// `runbook`, `status` filters.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    runbook: Option<String>,
    status: Option<String>,
}

/// `GET /api/v1/runbook-runs?runbook=&status=`: newest first.
pub async fn runs(
    State(state): Shared,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<RunRow>>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|message| ApiError::BadRequest {
                    param: "status",
                    message,
                })
        })
        .transpose()?;
    if let Some(id) = &q.runbook {
        if !state.runbooks.iter().any(|b| &b.id == id) {
            return Err(ApiError::NotFound {
                what: "runbook",
                id: id.clone(),
            });
        }
    }
    let mut runs = all_runs(&state).await?;
    runs.retain(|r| {
        status.is_none_or(|s| r.status == s) && q.runbook.as_ref().is_none_or(|b| &r.runbook == b)
    });
    runs.reverse();
    Ok(Json(runs.into_iter().map(RunRow::from).collect()))
}

fn parse_run_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::BadRequest {
        param: "id",
        message: format!("{text:?} is not a run id"),
    })
}

/// `GET /api/v1/runbook-runs/{id}`: the run with every step and attempt.
pub async fn show(State(state): Shared, Path(id): Path<String>) -> Result<Json<Run>, ApiError> {
    let id = parse_run_id(&id)?;
    let store = RunStore::new(state.store.clone());
    tokio::task::spawn_blocking(move || store.get(id))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?
        .map(Json)
        .ok_or(ApiError::NotFound {
            what: "run",
            id: id.to_string(),
        })
}

fn api_error(e: RunbookError) -> ApiError {
    match e {
        RunbookError::UnknownRunbook(id) => ApiError::NotFound {
            what: "runbook",
            id,
        },
        RunbookError::RunNotFound(id) => ApiError::NotFound {
            what: "run",
            id: id.to_string(),
        },
        e @ (RunbookError::NotManual(_)
        | RunbookError::NotAwaitingApproval(_)
        | RunbookError::Stale(_)) => ApiError::Conflict {
            message: e.to_string(),
        },
        e @ RunbookError::RoleTooLow { .. } => ApiError::Forbidden {
            message: e.to_string(),
        },
        RunbookError::Store(e) => ApiError::Internal(e.into()),
        e @ RunbookError::EngineStopped => ApiError::Internal(e.into()),
    }
}

/// `POST /api/v1/runbooks/{id}/run`: starts it on behalf of the token's holder; the run as
/// stored (`skipped` when a run of it is in progress).
pub async fn start(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    state
        .incidents
        .start_runbook(&id, &identity.name)
        .await
        .map(Json)
        .map_err(api_error)
}

async fn decide(
    state: &AppState,
    identity: Identity,
    id: &str,
    approve: bool,
) -> Result<Json<Run>, ApiError> {
    let id = parse_run_id(id)?;
    state
        .incidents
        .decide(id, approve, &identity.name, identity.role)
        .await
        .map(Json)
        .map_err(api_error)
}

/// `POST /api/v1/runbook-runs/{id}/approve`: approves the approval step the run waits on (the
/// token's role must be at least the step's).
pub async fn approve(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    decide(&state, identity, &id, true).await
}

/// `POST /api/v1/runbook-runs/{id}/reject`: rejects it (the run fails, not retried).
pub async fn reject(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    decide(&state, identity, &id, false).await
}

/// `POST /api/v1/runbook-runs/{id}/cancel`.
pub async fn cancel(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    let id = parse_run_id(&id)?;
    state
        .incidents
        .cancel_run(id, &identity.name)
        .await
        .map(Json)
        .map_err(api_error)
}
