//! The API's one error type: client errors are 4xx with a JSON body that names the parameter;
//! 401 (with `WWW-Authenticate: Bearer`) and 403 come from the access middleware; internal errors
//! are a generic 500, logged once here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter or body field is invalid.
    #[error("invalid {param}: {message}")]
    BadRequest {
        /// The parameter or field.
        param: &'static str,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request could not be read: a malformed query or body, a wrong content type, an
    /// unknown route or method. `status` is the 4xx to answer.
    #[error("{message}")]
    Rejected {
        /// 400, 404, 405, 415, 422, …
        status: StatusCode,
        /// What is wrong, in the extractor's words.
        message: String,
    },
    /// No token, or one that matches none configured.
    #[error("{message}")]
    Unauthorized {
        /// Which (never the token itself).
        message: String,
    },
    /// The token's role is below what the route needs.
    #[error("{message}")]
    Forbidden {
        /// Who, what they are, and what was needed.
        message: String,
    },
    /// The request is valid but the thing is not in a state that allows it (a run that is not
    /// waiting for an approval, a runbook that cannot be started by hand): 409.
    #[error("{message}")]
    Conflict {
        /// What is in the way.
        message: String,
    },
    /// Something broke inside.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadRequest { param, .. } => (
                StatusCode::BAD_REQUEST,
                json!({"error": self.to_string(), "param": param}),
            ),
            ApiError::Rejected { status, .. } => (*status, json!({"error": self.to_string()})),
            ApiError::Unauthorized { .. } => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": self.to_string()})),
                )
                    .into_response();
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"watchstand\""),
                );
                return response;
            }
            ApiError::Forbidden { .. } => {
                (StatusCode::FORBIDDEN, json!({"error": self.to_string()}))
            }
            ApiError::NotFound { .. } => {
                (StatusCode::NOT_FOUND, json!({"error": self.to_string()}))
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, json!({"error": self.to_string()})),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "API request failed.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal error"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
