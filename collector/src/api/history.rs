//! `GET /api/v1/services/{id}/history?from=&to=&buckets=`: one service's SLA report per equal
//! time bucket of a range (default: the last 90 days in 90 buckets). The dashboard draws its
//! uptime bars, budget burn and latency-over-time charts from it; each bucket is the same
//! [`SlaReport`] `GET …/sla` answers for that bucket's range, so the figures agree by
//! construction.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use watchstand_shared::time::now_ms;

use super::extract::{Path, Query};
use super::{params, ApiError, AppState};
use crate::availability;
use crate::sla::{SlaReport, Span};

/// Most buckets one request may ask for.
pub const MAX_BUCKETS: usize = 200;
/// Buckets when the request names none.
const DEFAULT_BUCKETS: usize = 90;
const DAY_MS: u64 = 86_400_000;

/// `from`, `to`, `buckets`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    buckets: Option<String>,
}

/// The answer: the range, the bucket length and one report per bucket, oldest first.
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryView {
    /// Service id.
    pub service: String,
    /// Range start, epoch ms.
    pub from_ms: u64,
    /// Range end (exclusive), epoch ms.
    pub to_ms: u64,
    /// Bucket length, ms (the last bucket may be shorter).
    pub step_ms: u64,
    /// One SLA report per bucket.
    pub buckets: Vec<SlaReport>,
}

/// The bucket spans of `range` cut into `n` (the last one takes the remainder).
fn split(range: Span, n: usize) -> (u64, Vec<Span>) {
    let len = range.to_ms - range.from_ms;
    let n = (n as u64).clamp(1, len.max(1));
    let step = len.div_ceil(n);
    let mut spans = Vec::new();
    let mut from = range.from_ms;
    while from < range.to_ms {
        let to = (from + step).min(range.to_ms);
        spans.push(Span::new(from, to));
        from = to;
    }
    (step, spans)
}

/// The handler.
pub async fn history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let service = params::service(&state, &id)?.clone();
    let now = now_ms();
    let range = params::range(
        q.from.as_deref(),
        q.to.as_deref(),
        Span::new(now.saturating_sub(90 * DAY_MS), now),
    )?;
    let n = match q.buckets.as_deref() {
        None => DEFAULT_BUCKETS,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_BUCKETS).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest {
                    param: "buckets",
                    message: format!("{text:?} is not a whole number from 1 to {MAX_BUCKETS}"),
                })
            }
        },
    };
    let (step_ms, spans) = split(range, n);
    let store = state.store.clone();
    let id = service.id.clone();
    let buckets = tokio::task::spawn_blocking(move || {
        let jobs: Vec<_> = spans.iter().map(|s| (&service, *s)).collect();
        availability::service_reports(&store, &jobs)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(HistoryView {
        service: id,
        from_ms: range.from_ms,
        to_ms: range.to_ms,
        step_ms,
        buckets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_exactly_once() {
        let (step, spans) = split(Span::new(1_000, 1_000 + 10 * DAY_MS + 5), 10);
        assert_eq!(step, DAY_MS + 1);
        assert_eq!(spans.len(), 10);
        assert_eq!(spans[0].from_ms, 1_000);
        assert_eq!(spans[9].to_ms, 1_000 + 10 * DAY_MS + 5);
        assert!(spans.windows(2).all(|w| w[0].to_ms == w[1].from_ms));
        // A range shorter than the bucket count gets one bucket per millisecond.
        let (step, spans) = split(Span::new(0, 3), 90);
        assert_eq!((step, spans.len()), (1, 3));
    }
}
