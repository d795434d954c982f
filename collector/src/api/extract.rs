//! The API's request extractors: axum's `Query`, `Path` and `Json` with their rejections
//! (malformed query or body, wrong content type, duplicated parameter) turned into the API's
//! JSON error, and the fallbacks that answer unknown routes (404) and wrong methods (405) the
//! same way. Handlers use these instead of axum's so that no error leaves the API as plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use serde::de::DeserializeOwned;

use super::ApiError;

/// Query parameters, rejected as a JSON 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| ApiError::Rejected {
                status: e.status(),
                message: e.body_text(),
            })
    }
}

/// Path parameters, rejected as JSON.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| ApiError::Rejected {
                status: e.status(),
                message: e.body_text(),
            })
    }
}

/// A JSON body: 415 without `Content-Type: application/json`, 400 when it is not JSON, 422 when
/// it is JSON of the wrong shape — each as a JSON error.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| Json(j.0))
            .map_err(|e: JsonRejection| ApiError::Rejected {
                status: e.status(),
                message: e.body_text(),
            })
    }
}

/// Fallback for paths no route matches: a JSON 404 naming the path.
pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::Rejected {
        status: StatusCode::NOT_FOUND,
        message: format!("no route {method} {}", uri.path()),
    }
}

/// Fallback for a known path asked with a method it does not answer: a JSON 405.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{} does not answer {method}", uri.path()),
    }
}
