//! The one validation of request parameters every route shares: times (`from`, `to`), ranges,
//! `limit`, and the ids of services and agents (unknown → 404). A route that takes a parameter
//! of one of these kinds checks it here, so the same mistake gets the same answer everywhere.

use super::{ApiError, AppState};
use crate::config::Service;
use crate::sla::Span;

/// Parses a time parameter: epoch milliseconds or RFC 3339, not before 1970.
///
/// # Errors
/// `BadRequest` naming the parameter and quoting the value.
pub fn parse_time(param: &'static str, text: &str) -> Result<u64, ApiError> {
    let before_1970 = || ApiError::BadRequest {
        param,
        message: format!("{text:?} is before 1970-01-01T00:00:00Z, the earliest time there is"),
    };
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    if text.parse::<i64>().is_ok() {
        return Err(before_1970());
    }
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => u64::try_from(t.timestamp_millis()).map_err(|_| before_1970()),
        Err(_) => Err(ApiError::BadRequest {
            param,
            message: format!(
                "{text:?} is neither epoch milliseconds nor an RFC 3339 time (2026-12-07T09:00:00Z)"
            ),
        }),
    }
}

/// `from`/`to` texts resolved against a default span; `from` must be before `to`.
///
/// # Errors
/// A bad time, or an empty or reversed range.
pub fn range(from: Option<&str>, to: Option<&str>, default: Span) -> Result<Span, ApiError> {
    let from_ms = from
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(default.from_ms);
    let to_ms = to
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or(default.to_ms);
    if from_ms >= to_ms {
        return Err(ApiError::BadRequest {
            param: "from",
            message: format!("from {from_ms} must be before to {to_ms}"),
        });
    }
    Ok(Span { from_ms, to_ms })
}

/// A `limit`: a whole number from 0, capped at `max`.
///
/// # Errors
/// Not a whole number from 0.
pub fn limit(text: Option<&str>, max: usize) -> Result<usize, ApiError> {
    match text {
        None => Ok(max),
        Some(t) => t
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| ApiError::BadRequest {
                param: "limit",
                message: format!("{t:?} is not a count (a whole number from 0)"),
            }),
    }
}

/// The catalogue's service `id`.
///
/// # Errors
/// `NotFound` when the catalogue has no such service.
pub fn service<'s>(state: &'s AppState, id: &str) -> Result<&'s Service, ApiError> {
    state.catalogue.get(id).ok_or_else(|| ApiError::NotFound {
        what: "service",
        id: id.to_owned(),
    })
}

/// Checks that agent `id` is known to the registry.
///
/// # Errors
/// `NotFound` when no agent of that id has been seen.
pub fn agent(state: &AppState, id: &str) -> Result<crate::registry::AgentRecord, ApiError> {
    state.registry.get(id).ok_or_else(|| ApiError::NotFound {
        what: "agent",
        id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_epoch_ms_or_rfc3339_from_1970() {
        assert_eq!(
            parse_time("from", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("from", "2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        let cases = [
            ("yesterday", "invalid to: \"yesterday\" is neither epoch milliseconds nor an RFC 3339 time (2026-12-07T09:00:00Z)"),
            ("-5", "invalid to: \"-5\" is before 1970-01-01T00:00:00Z, the earliest time there is"),
            ("1969-12-31T23:59:59Z", "invalid to: \"1969-12-31T23:59:59Z\" is before 1970-01-01T00:00:00Z, the earliest time there is"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_time("to", text).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn a_limit_is_a_whole_number_capped_at_the_maximum() {
        assert_eq!(limit(None, 10).unwrap(), 10);
        assert_eq!(limit(Some("3"), 10).unwrap(), 3);
        assert_eq!(limit(Some("30"), 10).unwrap(), 10);
        assert_eq!(
            limit(Some("-1"), 10).unwrap_err().to_string(),
            "invalid limit: \"-1\" is not a count (a whole number from 0)"
        );
    }
}
