//! `GET /api/v1/reports/{kind}?period=2026-11|from=&to=&format=json|csv|md|html`: one report
//! of [`crate::report`], built on the blocking pool and answered in its format's content type
//! (with a `Content-Disposition` file name). Default period: the last whole calendar month;
//! default format: JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use watchstand_shared::time::now_ms;

use super::extract::{Path, Query};
use super::{params, ApiError, AppState};
use crate::report::{self, Format, Kind, Period, ReportError, ReportSource};
use crate::sla::Span;

/// `period`, `from`, `to`, `format`.
#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::BadParam { param, message } => ApiError::BadRequest { param, message },
            other => ApiError::Internal(other.into()),
        }
    }
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
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
