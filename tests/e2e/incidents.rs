//! Incidents end to end: an HTTP target goes down → an incident opens within
//! interval × `down_after` + 1 s, a webhook receiver on loopback gets "opened"; the receiver goes
//! down and the collector is SIGKILLed while the incident is open → after the restart there is
//! still exactly one incident; the target recovers → "resolved" reaches the receiver once it is
//! back. Notifications are at least once: the receiver dedupes by the notification seq.
//!
//! With a periodic tick of a minute, an outage and its recovery are still opened and resolved
//! (and notified) within seconds: the probe's state change is published without linger and
//! triggers an evaluation of its service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for, HttpTarget};

/// A webhook receiver that records (seq, body) and answers 503 while "down".
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> std::net::SocketAddr {
        let me = self.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let me = me.clone();
                async move {
                    if me.down.load(Ordering::Relaxed) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let seq = headers
                        .get("x-watchstand-notification")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    assert_eq!(
                        headers
                            .get("x-watchstand-secret")
                            .and_then(|v| v.to_str().ok()),
                        Some("s3cret")
                    );
                    me.got.lock().unwrap().push((seq, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        addr
    }

    /// Distinct notifications by event, in arrival order.
    fn events(&self) -> Vec<String> {
        let got = self.got.lock().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        got.iter()
            .filter(|(seq, _)| seen.insert(seq.clone()))
            .map(|(_, b)| b["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The collector's services file: `[incidents]` as given, the receiver at `hook` as webhook
/// `ops`, and one service `web` of `criticality` measured by `agent-1/web`.
fn web_service(hook: std::net::SocketAddr, incidents: &str, criticality: &str) -> String {
    format!(
        r#"
[incidents]
{incidents}
[[webhooks]]
name = "ops"
url = "http://{hook}/hook"
secret = "s3cret"

[[services]]
id = "web"
name = "Web"
criticality = "{criticality}"
rto = "5m"
rpo = "1m"
probes = ["agent-1/web"]
slo = {{ availability = 99.9, window = "1d" }}
"#
    )
}

/// The agent's probe `web`: HTTP every second against `url`.
fn web_probe(url: &str) -> String {
    format!(
        "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_one_incident_notified_through_a_receiver_outage_and_a_collector_crash() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let target = HttpTarget::start().await;
    let services = web_service(
        hook,
        r#"evaluate_every = "1s"
down_after = 2
resolve_after = "3s"
burn_rate = []
sla_below_target = false
"#,
        "critical",
    );
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &services,
    );
    let mut collector = spec.spawn().await;
    let probes = web_probe(&target.url());
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    )
    .spawn()
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    target.set_healthy(false);
    let down_at = now_ms();
    let incident = wait_for("an open incident", Duration::from_secs(15), || async {
        let list = collector
            .get("/api/v1/incidents?state=open&service=web")
            .await;
        list.as_array()?.first().cloned()
    })
    .await;
    let detection_ms = incident["detected_ms"].as_u64().unwrap() - down_at;
    eprintln!(
        "incident {} opened {detection_ms} ms after the target went down",
        incident["id"]
    );
    assert!(
        detection_ms <= 3_000,
        "within interval × down_after + 1 s: {detection_ms} ms"
    );
    assert_eq!(incident["priority"], "P1");
    wait_for(
        "the opened notification",
        Duration::from_secs(10),
        || async {
            receiver
                .events()
                .contains(&"opened".to_owned())
                .then_some(())
        },
    )
    .await;

    // Acknowledged from the CLI (a client of the API).
    let id = incident["id"].as_u64().unwrap();
    let out = std::process::Command::new(watchstand_tests::bin("watchstand-collector"))
        .args([
            "incidents",
            "ack",
            &id.to_string(),
            "--comment",
            "on it",
            "--server",
        ])
        .arg(collector.url(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked = collector.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(acked["state"], "acknowledged", "{acked}");
    // A loopback collector without [api] tokens is open; who acts is then `anonymous` (the
    // token's name otherwise, see e2e `security`).
    assert_eq!(acked["acknowledged_by"], "anonymous");
    wait_for(
        "the acknowledged notification",
        Duration::from_secs(10),
        || async {
            receiver
                .events()
                .contains(&"acknowledged".to_owned())
                .then_some(())
        },
    )
    .await;

    // The receiver goes down, the collector crashes with the incident open, and comes back.
    receiver.down.store(true, Ordering::Relaxed);
    collector.kill();
    let mut collector = spec.spawn().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = collector.get("/api/v1/incidents").await;
    let service_down: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["rule"]["kind"] == "service_down")
        .collect();
    assert_eq!(
        service_down.len(),
        1,
        "still one incident after the restart: {all}"
    );
    assert_eq!(
        service_down[0]["state"], "acknowledged",
        "its state survived the crash"
    );

    // Recovery while the receiver is down: resolved, queued, delivered once it is back.
    target.set_healthy(true);
    assert_eq!(service_down[0]["id"].as_u64(), Some(id));
    wait_for("the incident resolved", Duration::from_secs(20), || async {
        let i = collector.get(&format!("/api/v1/incidents/{id}")).await;
        (i["state"] == "resolved").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.events(),
        vec!["opened".to_owned(), "acknowledged".to_owned()],
        "nothing got through while it was down"
    );
    receiver.down.store(false, Ordering::Relaxed);
    wait_for(
        "the resolved notification after the receiver returns",
        Duration::from_secs(30),
        || async {
            receiver
                .events()
                .contains(&"resolved".to_owned())
                .then_some(())
        },
    )
    .await;
    let events = receiver.events();
    eprintln!("receiver got {events:?}");
    assert_eq!(
        events,
        vec![
            "opened".to_owned(),
            "acknowledged".to_owned(),
            "resolved".to_owned()
        ]
    );
    let got = receiver.got.lock().unwrap().clone();
    assert!(
        got.iter()
            .all(|(_, b)| b["dedup_key"] == "service_down:web"),
        "{got:?}"
    );

    // The record: detected, resolved, time to restore, timeline; MTTR in the stats.
    let record = collector.get(&format!("/api/v1/incidents/{id}")).await;
    assert!(
        record["time_to_restore_s"].as_f64().unwrap() > 0.0,
        "{record}"
    );
    let timeline: Vec<&str> = record["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        timeline.starts_with(&["opened", "notification_queued"]),
        "{timeline:?}"
    );
    assert!(timeline.contains(&"resolved"), "{timeline:?}");
    let stats = collector.get("/api/v1/incidents/stats?service=web").await;
    assert_eq!(stats[0]["incidents"], 1, "{stats}");
    assert!(stats[0]["mttr_s"].as_f64().is_some(), "{stats}");
    let (_, metrics) = collector.get_raw("/metrics").await;
    assert!(metrics.contains("watchstand_incidents_open"), "{metrics}");
    assert!(collector.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_opens_and_resolves_the_incident_long_before_the_periodic_tick() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let target = HttpTarget::start().await;
    // The tick runs at start and then once a minute: only an event-driven evaluation can open
    // and resolve within the test's bounds. The product's publish linger (200 ms) applies.
    let services = web_service(
        hook,
        r#"evaluate_every = "1m"
down_after = 1
resolve_after = "0s"
burn_rate = []
sla_below_target = false
"#,
        "high",
    );
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &services,
    );
    let mut collector = spec.spawn().await;
    let probes = web_probe(&target.url());
    let mut agent_spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    );
    agent_spec.extra = "[capacity]\ninterval = \"60s\"\n".to_owned();
    let _agent = agent_spec.spawn().await;
    wait_for("results of the probe", Duration::from_secs(15), || async {
        let r = collector
            .get_if_found("/api/v1/agents/agent-1/results?limit=1")
            .await?;
        (!r.as_array()?.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    target.set_healthy(false);
    let down_at = now_ms();
    wait_for(
        "the opened notification",
        Duration::from_secs(10),
        || async {
            receiver
                .events()
                .contains(&"opened".to_owned())
                .then_some(())
        },
    )
    .await;
    let opened = collector.get("/api/v1/incidents?service=web").await;
    let detected = opened[0]["detected_ms"].as_u64().unwrap();
    eprintln!(
        "opened {} ms after the target went down",
        detected - down_at
    );
    target.set_healthy(true);
    wait_for(
        "the resolved notification",
        Duration::from_secs(10),
        || async {
            receiver
                .events()
                .contains(&"resolved".to_owned())
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        receiver.events(),
        vec!["opened".to_owned(), "resolved".to_owned()]
    );
    let log = std::fs::read_to_string(dir.path().join("collector/collector.log")).unwrap();
    assert_eq!(
        log.matches("Incident opened.").count(),
        1,
        "one incident, no other rule fired"
    );
    assert!(collector.terminate());
}
