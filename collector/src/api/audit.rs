//! `GET /api/v1/audit?from_seq=&limit=` (admin): a page of audit records and the verification of
//! the whole chain (the first broken link, if any), so a reader knows whether to trust the page.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Query;
use super::{params, ApiError, AppState};

/// Most records per page.
const MAX_PAGE: usize = 1_000;

/// `from_seq`, `limit`.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    from_seq: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/audit`: `{"records": [...], "next_seq": …, "verification": {"records", "head",
/// "broken"}}`, oldest first from `from_seq` (default 1), at most `limit` (default and cap 1000).
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let from_seq = match q.from_seq.as_deref() {
        None => 1,
        Some(t) => t.parse::<u64>().map_err(|_| ApiError::BadRequest {
            param: "from_seq",
            message: format!("{t:?} is not a record number (a whole number from 0)"),
        })?,
    };
    let limit = params::limit(q.limit.as_deref(), MAX_PAGE)?;
    let audit = state.audit.clone();
    let (records, verification) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((audit.page(from_seq, limit)?, audit.verify()?))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))?;
    let next_seq = records.last().map_or(from_seq, |r| r.seq + 1);
    Ok(Json(json!({
        "records": records,
        "next_seq": next_seq,
        "verification": verification,
    })))
}
