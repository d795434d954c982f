//! Incident routes: list, show, acknowledge, resolve, and MTTR/MTBF per service.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use watchstand_shared::time::now_ms;

use super::extract::{Json as JsonBody, Path, Query};
use super::{params, ApiError, AppState};
use crate::auth::Identity;
use crate::availability;
use crate::incident::engine::ActionError;
use crate::incident::record::{Incident, IncidentStore};
use crate::incident::{stats, IncidentState};
use crate::sla::Span;

type Shared = State<Arc<AppState>>;

/// `state`, `service` filters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    service: Option<String>,
}

fn all(state: &AppState) -> Result<Vec<Incident>, ApiError> {
    IncidentStore::new(state.store.clone())
        .all()
        .map_err(|e| ApiError::Internal(e.into()))
}

/// `GET /api/v1/incidents?state=&service=`: newest first, without timelines.
pub async fn list(
    State(state): Shared,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let wanted = q
        .state
        .as_deref()
        .map(|s| {
            s.parse::<IncidentState>()
                .map_err(|message| ApiError::BadRequest {
                    param: "state",
                    message,
                })
        })
        .transpose()?;
    if let Some(id) = &q.service {
        params::service(&state, id)?;
    }
    let st = state.clone();
    let mut incidents = tokio::task::spawn_blocking(move || all(&st))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    incidents.retain(|i| {
        wanted.is_none_or(|w| i.state == w) && q.service.as_ref().is_none_or(|s| &i.service == s)
    });
    incidents.reverse();
    let rows: Vec<Value> = incidents
        .into_iter()
        .map(|mut i| {
            let events = i.timeline.len();
            i.timeline.clear();
            let mut v = json!(i);
            v["timeline_events"] = json!(events);
            v["time_to_restore_s"] = json!(i.time_to_restore_s());
            v
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::BadRequest {
        param: "id",
        message: format!("{text:?} is not an incident id"),
    })
}

/// `GET /api/v1/incidents/{id}`: the record with its timeline.
pub async fn show(State(state): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let store = IncidentStore::new(state.store.clone());
    let incident = tokio::task::spawn_blocking(move || store.get(id))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or(ApiError::NotFound {
            what: "incident",
            id: id.to_string(),
        })?;
    let mut v = json!(incident);
    v["time_to_restore_s"] = json!(incident.time_to_restore_s());
    Ok(Json(v))
}

/// Body of ack and resolve: the comment (or resolution note). Who acts is the token's name;
/// a body naming someone (`by`) is refused, so a script that still sends it learns that it is
/// not what gets recorded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Refused when present.
    #[serde(default)]
    by: Option<serde::de::IgnoredAny>,
    /// Comment or resolution note.
    #[serde(default)]
    comment: String,
}

async fn act(
    state: Arc<AppState>,
    id: String,
    identity: Identity,
    body: ActionBody,
    resolve: bool,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    if body.by.is_some() {
        return Err(ApiError::BadRequest {
            param: "by",
            message: "is not accepted: who acts is the name of the API token".into(),
        });
    }
    let outcome = if resolve {
        state
            .incidents
            .resolve(id, &identity.name, &body.comment)
            .await
    } else {
        state
            .incidents
            .acknowledge(id, &identity.name, &body.comment)
            .await
    };
    match outcome {
        Ok(i) => Ok(Json(json!(i))),
        Err(ActionError::NotFound(id)) => Err(ApiError::NotFound {
            what: "incident",
            id: id.to_string(),
        }),
        Err(e @ ActionError::AlreadyResolved(_)) => Err(ApiError::BadRequest {
            param: "id",
            message: e.to_string(),
        }),
        Err(ActionError::Store(e)) => Err(ApiError::Internal(e.into())),
        Err(e @ ActionError::EngineStopped) => Err(ApiError::Internal(e.into())),
    }
}

/// `POST /api/v1/incidents/{id}/ack` with `{"comment"}`, by the token's holder.
pub async fn acknowledge(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ActionBody>,
) -> Result<Json<Value>, ApiError> {
    act(state, id, identity, body, false).await
}

/// `POST /api/v1/incidents/{id}/resolve` with `{"comment"}` (the resolution note), by the
/// token's holder.
pub async fn resolve(
    State(state): Shared,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ActionBody>,
) -> Result<Json<Value>, ApiError> {
    act(state, id, identity, body, true).await
}

/// `service`, `from`, `to`.
#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    service: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// One service in `GET /api/v1/incidents/stats`.
#[derive(Debug, Serialize)]
pub struct StatsRow {
    service: String,
    from_ms: u64,
    to_ms: u64,
    /// `incidents`, `found_late`, `mttr_s`, `mtbf_s`.
    #[serde(flatten)]
    reliability: stats::Reliability,
}

/// `GET /api/v1/incidents/stats?service=&from=&to=`: per service, over the window (default:
/// its SLO window): service-down incidents detected, MTTR (mean time to restore of the resolved
/// ones) and MTBF (measured uptime / failures).
pub async fn stats(
    State(state): Shared,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Vec<StatsRow>>, ApiError> {
    if let Some(id) = &q.service {
        params::service(&state, id)?;
    }
    // Checked once here as the SLA route checks them; each service's own window fills in what
    // is not given (a placeholder default keeps a lone `from` or `to` valid).
    let given = params::range(
        q.from.as_deref(),
        q.to.as_deref(),
        Span {
            from_ms: 0,
            to_ms: u64::MAX,
        },
    )?;
    let from = q.from.is_some().then_some(given.from_ms);
    let to = q.to.is_some().then_some(given.to_ms);
    let st = state.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<StatsRow>, ApiError> {
        let incidents = all(&st)?;
        let now = now_ms();
        let mut rows = Vec::new();
        for s in st
            .catalogue
            .services
            .iter()
            .filter(|s| q.service.as_ref().is_none_or(|id| &s.id == id))
        {
            let default = s.window.resolve(now);
            let span = Span {
                from_ms: from.unwrap_or(default.from_ms),
                to_ms: to.unwrap_or(default.to_ms),
            };
            if span.from_ms >= span.to_ms {
                return Err(ApiError::BadRequest {
                    param: "from",
                    message: format!("from {} must be before to {}", span.from_ms, span.to_ms),
                });
            }
            let report = availability::service_report(&st.store, s, span)
                .map_err(|e| ApiError::Internal(e.into()))?;
            rows.push(StatsRow {
                service: s.id.clone(),
                from_ms: span.from_ms,
                to_ms: span.to_ms,
                reliability: stats::reliability(&incidents, &s.id, span, report.uptime_s),
            });
        }
        Ok(rows)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(Json(rows))
}
