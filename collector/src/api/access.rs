//! The access middleware: authenticates the bearer token, authorises it against the route's rule
//! (the table in [`super::routes_table`]), puts the [`Identity`] into the request's extensions,
//! and appends to the audit log — every refusal (401/403), every state-changing request with its
//! outcome, and the first use of each token since the collector started.
//!
//! A route the table does not know is refused (fail closed); it cannot happen, because the router
//! is built from the table.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use watchstand_shared::time::now_ms;

use super::{Access, ApiError, RouteRule};
use crate::audit::{AuditLog, Entry, Outcome};
use crate::auth::{ApiAccess, Authentication, Identity, Role, ANONYMOUS};

/// What the middleware needs: the rules by path, the tokens, the audit log.
#[derive(Debug)]
pub struct Guard {
    rules: HashMap<&'static str, RouteRule>,
    access: Arc<ApiAccess>,
    audit: AuditLog,
    /// Token names whose first use since start is already audited.
    seen: Mutex<HashSet<String>>,
}

impl Guard {
    /// A guard over `rules`.
    pub fn new(rules: Vec<RouteRule>, access: Arc<ApiAccess>, audit: AuditLog) -> Self {
        Self {
            rules: rules.into_iter().map(|r| (r.path, r)).collect(),
            access,
            audit,
            seen: Mutex::default(),
        }
    }

    /// Appends to the audit log on a blocking thread; a failure is logged (the request's answer
    /// stands: it has already happened or been refused).
    async fn record(&self, entry: Entry) {
        let audit = self.audit.clone();
        let action = entry.action.clone();
        let outcome = tokio::task::spawn_blocking(move || audit.append(entry, now_ms())).await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(action, error = %e, "Audit record not written.");
            }
            Err(e) => tracing::error!(action, error = %e, "Audit task failed."),
        }
    }
}

/// The token of an `Authorization: Bearer …` header. `Err` for an `Authorization` header that is
/// not a bearer token (refused as invalid, not as missing).
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ())?;
    let (scheme, token) = text.split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(());
    }
    Ok(Some(token.trim()))
}

/// The role a rule asks for, `None` when the route is public.
fn required(access: Access, api: &ApiAccess) -> Option<Role> {
    match access {
        Access::Public => None,
        Access::Metrics if api.public_metrics => None,
        Access::Metrics => Some(Role::Viewer),
        Access::Role(r) => Some(r),
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn authorize(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let target = req.uri().path().to_owned();
    let method = req.method().clone();
    let rule = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| guard.rules.get(p.as_str()))
        .cloned();
    let Some(rule) = rule else {
        tracing::error!(path = %target, "Route without an access rule refused.");
        return ApiError::Forbidden {
            message: format!("{target} has no access rule"),
        }
        .into_response();
    };
    let Some(needed) = required(rule.access, &guard.access) else {
        req.extensions_mut().insert(Identity {
            name: ANONYMOUS.to_owned(),
            role: Role::Viewer,
        });
        return next.run(req).await;
    };
    let authentication = match bearer(req.headers()) {
        Ok(token) => guard.access.authenticate(token),
        Err(()) => Authentication::Invalid,
    };
    let refused = |detail: &str| Entry {
        actor: ANONYMOUS.to_owned(),
        role: None,
        action: rule.action.to_owned(),
        target: format!("{method} {target}"),
        outcome: Outcome::Unauthenticated,
        detail: detail.to_owned(),
    };
    let identity = match authentication {
        Authentication::Open => Identity {
            name: ANONYMOUS.to_owned(),
            role: Role::Admin,
        },
        Authentication::Known(identity) => identity,
        Authentication::Missing => {
            tracing::info!(%method, path = %target, "API request without a token refused.");
            guard.record(refused("no bearer token")).await;
            return ApiError::Unauthorized {
                message: "a token is needed: send Authorization: Bearer <token>".into(),
            }
            .into_response();
        }
        Authentication::Invalid => {
            tracing::info!(%method, path = %target, "API request with an invalid token refused.");
            guard.record(refused("invalid token")).await;
            return ApiError::Unauthorized {
                message: "the token is not valid".into(),
            }
            .into_response();
        }
    };
    if identity.role < needed {
        tracing::info!(
            actor = %identity.name,
            role = %identity.role,
            needed = %needed,
            %method,
            path = %target,
            "API request refused for its role."
        );
        guard
            .record(Entry {
                actor: identity.name.clone(),
                role: Some(identity.role),
                action: rule.action.to_owned(),
                target: format!("{method} {target}"),
                outcome: Outcome::Forbidden,
                detail: format!("needs {needed}"),
            })
            .await;
        return ApiError::Forbidden {
            message: format!(
                "{} is {}; {method} {} needs {needed}",
                identity.name, identity.role, rule.path
            ),
        }
        .into_response();
    }
    if !guard.access.is_open() {
        let first = guard
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(identity.name.clone());
        if first {
            guard
                .record(Entry {
                    actor: identity.name.clone(),
                    role: Some(identity.role),
                    action: "token.use".into(),
                    target: format!("{method} {target}"),
                    outcome: Outcome::Ok,
                    detail: "first use since the collector started".into(),
                })
                .await;
        }
    }
    let is_write = rule.method != Method::GET && method == rule.method;
    req.extensions_mut().insert(identity.clone());
    let response = next.run(req).await;
    if is_write {
        let status = response.status();
        guard
            .record(Entry {
                actor: identity.name,
                role: Some(identity.role),
                action: rule.action.to_owned(),
                target: format!("{method} {target}"),
                outcome: if status.is_success() {
                    Outcome::Ok
                } else {
                    Outcome::Error(status.as_u16())
                },
                detail: status.to_string(),
            })
            .await;
    }
    response
}
