//! The route × role matrix: every route of the router (from [`super::routes_table`]) × {no
//! token, bad token, viewer, operator, admin} → 401, 403 or through; a refused request changes
//! no incident and leaves an audit record; ack/resolve record the token's name, never the body's.
//! Driven with `oneshot` on `router(state)`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use super::tests::state_with;
use super::{router, routes_table, Access, AppState};
use crate::auth::{ApiAccess, Role};
use crate::incident::engine::Engine;
use crate::incident::policy::IncidentSettings;
use crate::incident::record::{Impact, Incident, IncidentStore, INCIDENTS};
use crate::incident::{IncidentState, Priority, Rule};
use crate::store::StoreBatch;

const VIEWER: &str = "wst_viewer-token-for-tests";
const OPERATOR: &str = "wst_operator-token-for-tests";
const OPERATOR_2: &str = "wst_second-operator-token";
const ADMIN: &str = "wst_admin-token-for-tests";

fn access() -> ApiAccess {
    ApiAccess::with_tokens([
        ("vic", Role::Viewer, VIEWER),
        ("ana", Role::Operator, OPERATOR),
        ("bo", Role::Operator, OPERATOR_2),
        ("root", Role::Admin, ADMIN),
    ])
}

/// A state with tokens and one open incident (id 1) of service `web`.
fn state(access: ApiAccess) -> AppState {
    let mut state = state_with(access);
    let incident = Incident {
        id: 1,
        dedup_key: "service_down:web".into(),
        service: "web".into(),
        agent: None,
        rule: Rule::ServiceDown,
        priority: Priority::P2,
        state: IncidentState::Open,
        flapping: false,
        inhibited: false,
        inhibited_by: None,
        detected_ms: 1_000,
        acknowledged_ms: None,
        acknowledged_by: None,
        resolved_ms: None,
        resolved_by: None,
        resolution_note: None,
        impact: Impact {
            services: vec!["web".into()],
            scope: "full".into(),
        },
        summary: "down".into(),
        last_notified_ms: None,
        timeline: Vec::new(),
        held_until_clear: false,
        metric: None,
        late: false,
        found_late_ms: None,
        drill: None,
    };
    let incidents = IncidentStore::new(state.store.clone());
    let mut batch = StoreBatch::default();
    IncidentStore::put(&mut batch, &incident);
    incidents.commit(batch).expect("commit");
    let engine = Engine::load(
        incidents,
        IncidentSettings::default(),
        HashMap::new(),
        Vec::new(),
    )
    .expect("engine");
    state.incidents =
        crate::engine::spawn_for_tests(engine, state.store.clone(), state.catalogue.clone());
    state
}

/// Every key and value of the incident tree.
fn incident_tree(state: &AppState) -> Vec<(Vec<u8>, Vec<u8>)> {
    state
        .store
        .tree(INCIDENTS)
        .expect("tree")
        .range(&[], None, usize::MAX)
        .expect("range")
}

struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    json: Value,
}

async fn send(state: &AppState, method: &Method, uri: &str, token: Option<&str>) -> Answer {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = if *method == Method::POST {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from("{\"comment\":\"on it\"}")
    } else {
        Body::empty()
    };
    let resp = router(state.clone())
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let www_authenticate = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        www_authenticate,
        json,
    }
}

/// A concrete URI for a route pattern.
fn uri(path: &str) -> String {
    path.replace("/services/{id}", "/services/web")
        .replace("/agents/{id}", "/agents/ghost")
        .replace("/incidents/{id}", "/incidents/1")
        .replace("/runbooks/{id}", "/runbooks/failover")
        .replace("/runbook-runs/{id}", "/runbook-runs/1")
        .replace("/reports/{kind}", "/reports/availability")
        .replace("/drills/{id}", "/drills/shop-drill")
        .replace("/drill-runs/{id}", "/drill-runs/1")
}

/// The rule every route must have, reviewed by hand: a route added without a line here fails.
const EXPECTED: &[(&str, &str, Option<Role>)] = &[
    ("GET", "/api/v1/health", None),
    ("GET", "/api/v1/me", Some(Role::Viewer)),
    ("GET", "/api/v1/agents", Some(Role::Viewer)),
    ("GET", "/api/v1/agents/{id}", Some(Role::Viewer)),
    ("GET", "/api/v1/agents/{id}/results", Some(Role::Viewer)),
    ("GET", "/api/v1/services", Some(Role::Viewer)),
    ("GET", "/api/v1/services/{id}/sla", Some(Role::Viewer)),
    ("GET", "/api/v1/services/{id}/history", Some(Role::Viewer)),
    ("GET", "/", None),
    ("GET", "/assets/app.js", None),
    ("GET", "/assets/app.css", None),
    ("GET", "/api/v1/capacity", Some(Role::Viewer)),
    ("GET", "/api/v1/capacity/summary", Some(Role::Viewer)),
    ("GET", "/api/v1/capacity/forecast", Some(Role::Viewer)),
    ("GET", "/api/v1/reports/{kind}", Some(Role::Viewer)),
    ("GET", "/api/v1/incidents", Some(Role::Viewer)),
    ("GET", "/api/v1/incidents/stats", Some(Role::Viewer)),
    ("GET", "/api/v1/incidents/{id}", Some(Role::Viewer)),
    ("POST", "/api/v1/incidents/{id}/ack", Some(Role::Operator)),
    (
        "POST",
        "/api/v1/incidents/{id}/resolve",
        Some(Role::Operator),
    ),
    ("GET", "/api/v1/runbooks", Some(Role::Viewer)),
    ("POST", "/api/v1/runbooks/{id}/run", Some(Role::Operator)),
    ("GET", "/api/v1/runbook-runs", Some(Role::Viewer)),
    ("GET", "/api/v1/runbook-runs/{id}", Some(Role::Viewer)),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/approve",
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/reject",
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/cancel",
        Some(Role::Operator),
    ),
    ("GET", "/api/v1/drills", Some(Role::Viewer)),
    ("POST", "/api/v1/drills/{id}/run", Some(Role::Operator)),
    ("GET", "/api/v1/drill-summary", Some(Role::Viewer)),
    ("GET", "/api/v1/drill-runs", Some(Role::Viewer)),
    ("GET", "/api/v1/drill-runs/{id}", Some(Role::Viewer)),
    ("GET", "/api/v1/drill-runs/{id}/report", Some(Role::Viewer)),
    (
        "POST",
        "/api/v1/drill-runs/{id}/review",
        Some(Role::Operator),
    ),
    ("GET", "/api/v1/audit", Some(Role::Admin)),
    ("GET", "/metrics", Some(Role::Viewer)),
];

#[tokio::test]
async fn every_route_answers_each_caller_by_its_role() {
    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("no token", None, None),
        ("bad token", Some("wst_not-a-configured-token"), None),
        ("viewer", Some(VIEWER), Some(Role::Viewer)),
        ("operator", Some(OPERATOR), Some(Role::Operator)),
        ("admin", Some(ADMIN), Some(Role::Admin)),
    ];
    let table = routes_table();
    let access = access();
    let got: Vec<(String, &str, Option<Role>)> = table
        .iter()
        .map(|(r, _)| {
            let needed = match r.access {
                Access::Public => None,
                Access::Metrics => Some(Role::Viewer),
                Access::Role(role) => Some(role),
            };
            (r.method.to_string(), r.path, needed)
        })
        .collect();
    let expected: Vec<(String, &str, Option<Role>)> = EXPECTED
        .iter()
        .map(|(m, p, r)| ((*m).to_owned(), *p, *r))
        .collect();
    assert_eq!(got, expected, "the router's routes and their rules");

    for (rule, _) in &table {
        let needed = expected
            .iter()
            .find(|(_, p, _)| *p == rule.path)
            .and_then(|(_, _, r)| *r);
        for (who, token, role) in &callers {
            // A fresh state per request: an allowed write must not hide a later refusal.
            let state = state(access.clone());
            let before = incident_tree(&state);
            let audited_before = state.audit.verify().expect("verify").records;
            let a = send(&state, &rule.method, &uri(rule.path), *token).await;
            let case = format!(
                "{} {} as {who}: {} {}",
                rule.method, rule.path, a.status, a.json
            );
            match (needed, role) {
                (None, _) => assert!(
                    a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
                    "{case}"
                ),
                (Some(_), None) => {
                    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{case}");
                    assert_eq!(
                        a.www_authenticate.as_deref(),
                        Some("Bearer realm=\"watchstand\""),
                        "{case}"
                    );
                }
                (Some(n), Some(r)) if r < &n => {
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{case}")
                }
                // Through the guard: what the handler answers (a 400 for a missing parameter
                // is the handler's, not a refusal).
                (Some(_), Some(_)) => assert!(
                    a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
                    "{case}"
                ),
            }
            if a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::FORBIDDEN {
                assert!(
                    a.json["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{case}"
                );
                assert_eq!(
                    incident_tree(&state),
                    before,
                    "refused changed nothing: {case}"
                );
                let log = state.audit.page(1, 100).expect("page");
                let last = log.last().expect("the refusal is audited");
                assert_eq!(
                    last.outcome,
                    format!("refused {}", a.status.as_u16()),
                    "{case}"
                );
                assert_eq!(last.action, rule.action, "{case}");
                assert!(state.audit.verify().expect("verify").is_ok());
            } else if rule.method == Method::POST
                && (rule.path.contains("/runbook") || rule.path.contains("/drill"))
            {
                // No runbook or drill is configured here: the handler answers (404), and the write is
                // audited under the caller's name (the runbook API tests cover the success).
                let name = if *token == Some(ADMIN) { "root" } else { "ana" };
                let log = state.audit.page(1, 100).expect("page");
                let last = log.last().expect("audited");
                assert_eq!(last.actor, name, "{case}");
                assert_eq!(last.action, rule.action, "{case}");
            } else if rule.method == Method::POST {
                assert_eq!(a.status, StatusCode::OK, "{case}");
                let by = if rule.path.ends_with("/ack") {
                    &a.json["acknowledged_by"]
                } else {
                    &a.json["resolved_by"]
                };
                let name = if *token == Some(ADMIN) { "root" } else { "ana" };
                assert_eq!(by, name, "{case}");
                let log = state.audit.page(1, 100).expect("page");
                assert!(log.len() as u64 > audited_before, "{case}");
                let last = log.last().expect("audited");
                assert_eq!(
                    (last.actor.as_str(), last.outcome.as_str()),
                    (name, "ok"),
                    "{case}"
                );
            }
        }
    }
}

#[tokio::test]
async fn ack_and_resolve_by_two_operators_name_each_in_timeline_and_audit() {
    let state = state(access());
    let ack = send(
        &state,
        &Method::POST,
        "/api/v1/incidents/1/ack",
        Some(OPERATOR),
    )
    .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.json);
    let resolve = send(
        &state,
        &Method::POST,
        "/api/v1/incidents/1/resolve",
        Some(OPERATOR_2),
    )
    .await;
    assert_eq!(resolve.status, StatusCode::OK, "{}", resolve.json);
    assert_eq!(resolve.json["acknowledged_by"], "ana");
    assert_eq!(resolve.json["resolved_by"], "bo");
    let audit = send(&state, &Method::GET, "/api/v1/audit", Some(ADMIN)).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.json);
    let actions: Vec<(String, String, String)> = audit.json["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
                r["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        actions,
        vec![
            expect("ana", "token.use", "ok"),
            expect("ana", "incident.ack", "ok"),
            expect("bo", "token.use", "ok"),
            expect("bo", "incident.resolve", "ok"),
            expect("root", "token.use", "ok"),
        ]
    );
    assert_eq!(audit.json["verification"]["broken"], Value::Null);
    assert_eq!(audit.json["verification"]["records"], 5);
    // No token value anywhere in what the API answers.
    for t in [VIEWER, OPERATOR, OPERATOR_2, ADMIN] {
        assert!(!audit.json.to_string().contains(t));
    }
}

#[tokio::test]
async fn a_body_naming_who_acts_is_refused_and_changes_nothing() {
    let state = state(access());
    let before = incident_tree(&state);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/incidents/1/resolve")
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"by\":\"somebody-else\"}"))
        .expect("request");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(incident_tree(&state), before);
}

#[tokio::test]
async fn without_tokens_the_api_is_open_and_acts_as_anonymous() {
    let state = state(ApiAccess::default());
    let a = send(&state, &Method::POST, "/api/v1/incidents/1/ack", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["acknowledged_by"], "anonymous");
    let audit = send(&state, &Method::GET, "/api/v1/audit", None).await;
    assert_eq!(audit.json["records"][0]["actor"], "anonymous");
    assert_eq!(audit.json["records"][0]["action"], "incident.ack");
}

#[tokio::test]
async fn me_names_the_token_and_its_role() {
    let state = state(access());
    for (token, name, role) in [
        (VIEWER, "vic", "viewer"),
        (OPERATOR, "ana", "operator"),
        (ADMIN, "root", "admin"),
    ] {
        let a = send(&state, &Method::GET, "/api/v1/me", Some(token)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        assert_eq!(a.json, serde_json::json!({"name": name, "role": role}));
    }
    let open = state_with(ApiAccess::default());
    let a = send(&open, &Method::GET, "/api/v1/me", None).await;
    assert_eq!(
        a.json,
        serde_json::json!({"name": "anonymous", "role": "admin"})
    );
}

#[tokio::test]
async fn public_metrics_opens_only_metrics() {
    let mut access = access();
    access.public_metrics = true;
    let state = state(access);
    assert_eq!(
        send(&state, &Method::GET, "/metrics", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&state, &Method::GET, "/api/v1/services", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A malformed Authorization header is an invalid token, not a missing one.
    let req = Request::builder()
        .uri("/api/v1/services")
        .header(header::AUTHORIZATION, "Basic YW5hOnB3")
        .body(Body::empty())
        .expect("request");
    let resp = router(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let last = state
        .audit
        .page(1, 10)
        .expect("page")
        .pop()
        .expect("audited");
    assert_eq!(last.detail, "invalid token");
    // Outside the routes (an unknown path, a known one with a wrong method) nothing runs: 404
    // and 405 as without tokens, and nothing is audited.
    let audited = state.audit.verify().expect("verify").records;
    assert_eq!(
        send(&state, &Method::DELETE, "/api/v1/agents", None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        send(&state, &Method::GET, "/api/v1/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(state.audit.verify().expect("verify").records, audited);
}
