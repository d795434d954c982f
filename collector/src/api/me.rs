//! `GET /api/v1/me`: who the request's token is (its name and role), so a client such as the
//! dashboard offers only the actions the API would allow that role. It decides nothing: every
//! request is still checked by [`super::access`] on its own.

use axum::{Extension, Json};
use serde::Serialize;

use crate::auth::{Identity, Role};

/// The answer of `GET /api/v1/me`.
#[derive(Debug, Serialize)]
pub struct MeView {
    /// The token's name (`anonymous` on an open API).
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// `GET /api/v1/me`.
pub async fn me(Extension(identity): Extension<Identity>) -> Json<MeView> {
    Json(MeView {
        name: identity.name,
        role: identity.role,
    })
}
