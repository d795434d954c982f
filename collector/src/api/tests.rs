//! Every error path of the API answers JSON `{"error": …}` with the right status: unknown
//! routes and ids, bad queries, wrong methods, wrong content types, malformed bodies. Driven with
//! `oneshot` on `router(state)` (no socket).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use tower::ServiceExt as _;

use super::{router, AppState};
use crate::config;
use crate::events::Counters;
use crate::incident::engine::Engine;
use crate::incident::policy::IncidentSettings;
use crate::incident::record::IncidentStore;
use crate::registry::Registry;
use crate::store::Store;

fn state() -> AppState {
    state_with(crate::auth::ApiAccess::default())
}

/// The test state (one service `web`, an empty store) with `access` as the `[api]` section.
pub(super) fn state_with(access: crate::auth::ApiAccess) -> AppState {
    let text = "[collector]\ndata_dir = \"d\"\n[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.9 }\n";
    state_for(text, Store::in_memory(), access)
}

/// The state of a collector with config `text` over `store` and `access` as `[api]` (the
/// reports' tests use it over their fixed store).
pub(crate) fn state_for(text: &str, store: Store, access: crate::auth::ApiAccess) -> AppState {
    let raw = config::from_str(text, Path::new("t.toml")).expect("parses");
    let config = config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid");
    let engine = Engine::load(
        IncidentStore::new(store.clone()),
        IncidentSettings::default(),
        HashMap::new(),
        Vec::new(),
    )
    .expect("engine");
    let catalogue = Arc::new(config.catalogue);
    let books = config.runbooks;
    AppState {
        store: store.clone(),
        catalogue: catalogue.clone(),
        registry: Arc::new(Registry::new(Vec::new())),
        counters: Arc::new(Counters::default()),
        collector_id: "main".into(),
        started_ms: 0,
        incidents: crate::engine::spawn_for_tests_with(engine, store.clone(), catalogue, &books),
        runbooks: Arc::new(books),
        drills: Arc::new(Vec::new()),
        health: Arc::new(crate::health::HealthState::new(
            Arc::new(watchstand_shared::mqtt::InboxGauge::default()),
            30_000,
        )),
        access: Arc::new(access),
        audit: crate::audit::AuditLog::new(store.clone()),
        capacity: Arc::new(crate::capacity::report::CapacityContext {
            retention: crate::capacity::rollup::Retention {
                raw_ms: config.raw_retention.as_millis(),
                five_minutes_ms: config.capacity.five_minute_retention_ms,
                hours_ms: config.capacity.hourly_retention_ms,
            },
            settings: config.capacity,
        }),
    }
}

/// Sends one request; returns the status, the content type and the body as JSON.
async fn send(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, String, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req.body(Body::from(body.to_owned())).expect("request");
    let resp = router(state()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, ct, json)
}

/// Method, URI, content type, body, expected status, expected `error` text (when exact).
type Case<'a> = (
    Method,
    &'a str,
    Option<&'a str>,
    &'a str,
    u16,
    Option<&'a str>,
);

#[tokio::test]
async fn every_error_path_answers_json_with_its_status() {
    const JSON: Option<&str> = Some("application/json");
    let cases: &[Case<'_>] = &[
        (Method::GET, "/api/v1/nope", None, "", 404, Some("no route GET /api/v1/nope")),
        (Method::GET, "/api/v1/services/ghost/sla", None, "", 404, Some("service \"ghost\" not found")),
        (Method::GET, "/api/v1/agents/ghost", None, "", 404, Some("agent \"ghost\" not found")),
        (Method::GET, "/api/v1/agents/ghost/results", None, "", 404, Some("agent \"ghost\" not found")),
        (Method::GET, "/api/v1/capacity?agent=ghost", None, "", 404, Some("agent \"ghost\" not found")),
        (Method::GET, "/api/v1/capacity/forecast?agent=ghost&metric=cpu_pct", None, "", 404, Some("agent \"ghost\" not found")),
        (Method::GET, "/api/v1/capacity/forecast?metric=cpu_pct", None, "", 400, Some("invalid agent: is required")),
        (Method::GET, "/api/v1/capacity/forecast?agent=a", None, "", 400, Some("invalid metric: is required")),
        (Method::GET, "/api/v1/capacity/summary?agent=ghost", None, "", 404, Some("agent \"ghost\" not found")),
        (Method::GET, "/api/v1/capacity/summary?from=5&to=1", None, "", 400, Some("invalid from: from 5 must be before to 1")),
        (Method::GET, "/api/v1/incidents/stats?service=ghost", None, "", 404, Some("service \"ghost\" not found")),
        (Method::GET, "/api/v1/incidents/99", None, "", 404, Some("incident \"99\" not found")),
        (Method::GET, "/api/v1/incidents/stats?from=5&to=1", None, "", 400, Some("invalid from: from 5 must be before to 1")),
        (Method::GET, "/api/v1/services/web/sla?from=5&to=1", None, "", 400, Some("invalid from: from 5 must be before to 1")),
        (Method::GET, "/api/v1/services/web/sla?from=yesterday", None, "", 400, Some("invalid from: \"yesterday\" is neither epoch milliseconds nor an RFC 3339 time (2026-12-07T09:00:00Z)")),
        (Method::GET, "/api/v1/incidents/stats?to=1969-07-20T20:17:00Z", None, "", 400, Some("invalid to: \"1969-07-20T20:17:00Z\" is before 1970-01-01T00:00:00Z, the earliest time there is")),
        (Method::GET, "/api/v1/agents/ghost/results?limit=-1", None, "", 400, Some("invalid limit: \"-1\" is not a count (a whole number from 0)")),
        (Method::GET, "/api/v1/services/web/sla?from=1&from=2", None, "", 400, Some("Failed to deserialize query string: duplicate field `from`")),
        (Method::GET, "/api/v1/incidents?state=sleeping", None, "", 400, None),
        (Method::GET, "/api/v1/incidents/abc", None, "", 400, Some("invalid id: \"abc\" is not an incident id")),
        (Method::DELETE, "/api/v1/agents", None, "", 405, Some("/api/v1/agents does not answer DELETE")),
        (Method::GET, "/api/v1/incidents/1/ack", None, "", 405, Some("/api/v1/incidents/1/ack does not answer GET")),
        (Method::POST, "/api/v1/incidents/1/ack", None, "{\"comment\":\"x\"}", 415, None),
        (Method::POST, "/api/v1/incidents/1/ack", JSON, "{\"comment\":", 400, None),
        (Method::POST, "/api/v1/incidents/1/ack", JSON, "{\"by\":\"me\"}", 400, Some("invalid by: is not accepted: who acts is the name of the API token")),
        (Method::POST, "/api/v1/incidents/1/ack", JSON, "{\"who\":\"me\"}", 422, None),
        (Method::POST, "/api/v1/incidents/1/resolve", JSON, "{\"comment\":\"done\"}", 404, Some("incident \"1\" not found")),
        (Method::GET, "/api/v1/audit?from_seq=x", None, "", 400, Some("invalid from_seq: \"x\" is not a record number (a whole number from 0)")),
    ];
    for (method, uri, ct, body, status, message) in cases {
        let (got, content_type, json) = send(method.clone(), uri, *ct, body).await;
        assert_eq!(got.as_u16(), *status, "{method} {uri}: {json}");
        assert_eq!(content_type, "application/json", "{method} {uri}: {json}");
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {uri}: {json}"));
        assert!(!error.is_empty(), "{method} {uri}");
        if let Some(m) = message {
            assert_eq!(error, *m, "{method} {uri}");
        }
    }
}

/// 30 days of a disk filling 1 %/day from 40 % (hourly samples, rolled up) and a flat CPU:
/// the forecast finds the disk's date within its interval, the summary puts it first.
#[tokio::test]
async fn capacity_forecast_and_summary_from_rollups() {
    use crate::store::{capacity_key, trees, StoreBatch};
    use watchstand_shared::storage::Write;
    const DAY: u64 = 86_400_000;
    let state = state();
    let now = watchstand_shared::time::now_ms();
    let start = now - 30 * DAY;
    let mut batch = StoreBatch::default();
    for h in 0..30 * 24u64 {
        let at = start + h * 3_600_000;
        let day = (at - start) as f64 / DAY as f64;
        for (metric, v) in [("disk_used_pct:/", 40.0 + day), ("cpu_pct", 20.0)] {
            batch.mark_capacity_dirty(crate::capacity::rollup::dirty_key("a", metric, at));
            batch.push(
                trees::CAPACITY,
                Write::Put(capacity_key("a", metric, at), v.to_be_bytes().to_vec()),
            );
        }
    }
    state.store.commit(batch).unwrap();
    crate::capacity::rollup::recompute_all(&state.store, 0).unwrap();
    state.registry.update("s", "a", "b", now, |_| {});
    let app = router(state);
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    let (status, f) = get("/api/v1/capacity/forecast?agent=a&metric=disk_used_pct:/".into()).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["resolution"], "hour", "{f}");
    assert_eq!(f["forecast"]["outcome"], "crossing", "{f}");
    // 40 % + 1 %/day reaches 90 % 50 days after the start.
    let truth = start + 50 * DAY;
    let date = f["forecast"]["date_ms"].as_u64().unwrap();
    let (lo, hi) = (
        f["forecast"]["earliest_ms"].as_u64().unwrap(),
        f["forecast"]["latest_ms"].as_u64().unwrap(),
    );
    assert!(lo <= truth && truth <= hi, "{f}");
    assert!(date.abs_diff(truth) < 3_600_000, "{f}");
    assert!(f["daily"].as_array().unwrap().len() >= 29);
    let (status, f) = get("/api/v1/capacity/forecast?agent=a&metric=nope".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{f}");
    assert_eq!(f["error"], "metric \"nope\" not found");
    let (status, s) = get("/api/v1/capacity/summary".into()).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{s}");
    assert_eq!(rows[0]["metric"], "disk_used_pct:/");
    assert_eq!(rows[0]["outcome"], "crossing");
    assert_eq!(rows[1]["metric"], "cpu_pct");
    assert_eq!(rows[1]["outcome"], "no_trend");
    assert_eq!(rows[1]["headroom"], 60.0);
    assert_eq!(rows[1]["peak"], 20.0);
    // The period starts a few ms after the first sample's hour began: that hour is left out.
    let samples = rows[1]["samples"].as_u64().unwrap();
    assert!((30 * 24 - 1..=30 * 24).contains(&samples), "{samples}");
}

#[tokio::test]
async fn dashboard_page_and_assets_are_served_with_a_strict_csp_and_no_token() {
    let state = state_with(crate::auth::ApiAccess::default());
    for (path, kind) in [
        ("/", "text/html"),
        ("/?load=3", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let req = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let resp = router(state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header(header::CONTENT_TYPE).starts_with(kind), "{path}");
        assert_eq!(
            header(header::CONTENT_SECURITY_POLICY),
            crate::dashboard::CSP,
            "{path}"
        );
        assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
    }
    // Another file under /assets does not exist.
    let (status, _, body) = send(Method::GET, "/assets/other.js", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn dashboard_history_answers_one_report_per_bucket_and_checks_its_parameters() {
    let day = 86_400_000u64;
    let (status, _, body) = send(
        Method::GET,
        &format!(
            "/api/v1/services/web/history?from={}&to={}&buckets=3",
            10 * day,
            13 * day
        ),
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["step_ms"], day);
    let buckets = body["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 3);
    assert_eq!(buckets[1]["from_ms"], 11 * day);
    assert_eq!(buckets[1]["to_ms"], 12 * day);
    // An empty store: no data in any bucket, the whole bucket unmonitored.
    assert!(buckets.iter().all(|b| b["availability_pct"].is_null()));
    assert_eq!(buckets[2]["unmonitored_s"], 86_400.0);
    // Default: 90 buckets.
    let (status, _, body) = send(Method::GET, "/api/v1/services/web/history", None, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["buckets"].as_array().map(Vec::len), Some(90));
    for bad in ["0", "201", "x", "-1"] {
        let (status, _, body) = send(
            Method::GET,
            &format!("/api/v1/services/web/history?buckets={bad}"),
            None,
            "",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["param"], "buckets", "{body}");
    }
    let (status, _, body) = send(Method::GET, "/api/v1/services/ghost/history", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
