//! `GET /api/v1/reports/{kind}?period=2026-11|from=&to=&format=json|csv|md|html`: one report
//! of [`crate::report`], built on the blocking pool and answered in its format's content type
//! (with a `Content-Disposition` file name). Default period: the last whole calendar month;
//! default format: JSON. The continuity report is of one drill run, not a period:
//! `GET /api/v1/reports/continuity?drill_run=ID&format=` (the same as
//! `GET /api/v1/drill-runs/{id}/report?format=`, which [`continuity`] also answers).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use watchstand_shared::time::now_ms;

use super::extract::{Path, Query};
use super::{params, ApiError, AppState};
use crate::report::{self, Format, Kind, Period, Report, ReportError, ReportSource};
use crate::sla::Span;

/// `period`, `from`, `to`, `format`; `drill_run` for the continuity report.
#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    drill_run: Option<String>,
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::BadParam { param, message } => ApiError::BadRequest { param, message },
            ReportError::NotFound { what, id } => ApiError::NotFound { what, id },
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A rendered report as the answer: its content type and file name.
fn answer(format: Format, name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The continuity test report of drill run `id` (the text of the path or query parameter
/// `param`) as `format` (default JSON).
///
/// # Errors
/// 400 naming `param` or `format`; 404 for an unknown drill run.
pub async fn continuity(
    state: Arc<AppState>,
    param: &'static str,
    id: &str,
    format: Option<&str>,
) -> Result<Response, ApiError> {
    let format: Format = format.unwrap_or("json").parse()?;
    let id: u64 = id.parse().map_err(|_| ApiError::BadRequest {
        param,
        message: format!("{id:?} is not a drill run id"),
    })?;
    let now = now_ms();
    let (name, body) = tokio::task::spawn_blocking(move || -> Result<_, ReportError> {
        let built = Report::Continuity(Box::new(report::continuity::build(
            &state.store,
            &state.collector_id,
            id,
            now,
        )?));
        Ok((
            built.file_name(format),
            report::render::render(&built, format)?,
        ))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(answer(format, &name, body))
}

/// The period asked for: `period` (a month), or `from`/`to` (`to` defaults to now), never
/// both; neither is the last whole month.
fn period_of(q: &ReportQuery, now: u64) -> Result<Period, ApiError> {
    match (&q.period, q.from.is_some() || q.to.is_some()) {
        (Some(_), true) => Err(ApiError::BadRequest {
            param: "period",
            message: "give either period or from/to, not both".into(),
        }),
        (Some(month), false) => Ok(Period::month(month)?),
        (None, true) => {
            let from = q.from.as_deref().ok_or(ApiError::BadRequest {
                param: "from",
                message: "is required with to".into(),
            })?;
            let span = params::range(Some(from), q.to.as_deref(), Span::new(0, now))?;
            Ok(Period::range(span.from_ms, span.to_ms)?)
        }
        (None, false) => Ok(Period::last_month(now)),
    }
}

/// `GET /api/v1/reports/{kind}`.
pub async fn report(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let kind: Kind = kind.parse()?;
    if kind == Kind::Continuity {
        if q.period.is_some() || q.from.is_some() || q.to.is_some() {
            return Err(ApiError::BadRequest {
                param: "period",
                message:
                    "the continuity report is of one drill run: give drill_run, not period/from/to"
                        .into(),
            });
        }
        let Some(id) = q.drill_run.as_deref() else {
            return Err(ApiError::BadRequest {
                param: "drill_run",
                message: "is required for the continuity report (a drill run id)".into(),
            });
        };
        return continuity(state, "drill_run", id, q.format.as_deref()).await;
    }
    if q.drill_run.is_some() {
        return Err(ApiError::BadRequest {
            param: "drill_run",
            message: format!("only the continuity report takes it, not {}", kind.as_str()),
        });
    }
    let format: Format = q.format.as_deref().unwrap_or("json").parse()?;
    let now = now_ms();
    let period = period_of(&q, now)?;
    let mut agents: Vec<String> = state
        .registry
        .snapshot()
        .into_iter()
        .map(|r| r.agent)
        .collect();
    agents.sort();
    let (name, body) = tokio::task::spawn_blocking(move || -> Result<_, ReportError> {
        let src = ReportSource {
            store: &state.store,
            catalogue: &state.catalogue,
            capacity: &state.capacity,
            agents: &agents,
            collector: &state.collector_id,
        };
        let built = report::build(src, kind, &period, now)?;
        Ok((
            built.file_name(format),
            report::render::render(&built, format)?,
        ))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(answer(format, &name, body))
}
