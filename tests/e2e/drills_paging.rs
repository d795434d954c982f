//! Paging during a drill, end to end (issue 14), with the real collector binary, its embedded
//! broker, an agent probing two loopback services every 500 ms and a loopback webhook receiver:
//! a drill breaks service `a` on purpose (an `http` inject against the test's server) and,
//! while it runs, service `b` really fails.
//!
//! - `b`'s outage is downtime in `b`'s SLA, and it is paged (service-down and burn-rate
//!   incidents, not marked drill);
//! - `a`'s drill incident is on record, marked drill, and not paged; no burn-rate incident opens
//!   for `a` (its drill time is out of the budget arithmetic); `a`'s SLA shows `downtime_s` 0 and
//!   `drill_s` > 0;
//! - no runbook notice of the drill (started, its `notify` step, finished) reaches the receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, Collector, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for, HttpTarget};

/// Service `a`'s front (503 while broken, switched by the drill's steps) and the webhook
/// receiver.
#[derive(Clone, Default)]
struct Loopback {
    broken: Arc<AtomicBool>,
    hooks: Arc<Mutex<Vec<Value>>>,
}

impl Loopback {
    async fn start(&self) -> std::net::SocketAddr {
        let (front, brk, fix, hook) = (self.clone(), self.clone(), self.clone(), self.clone());
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let me = front.clone();
                    async move {
                        if me.broken.load(Ordering::SeqCst) {
                            (StatusCode::SERVICE_UNAVAILABLE, "broken by the drill")
                        } else {
                            (StatusCode::OK, "ok")
                        }
                    }
                }),
            )
            .route(
                "/break",
                post(move || {
                    let me = brk.clone();
                    async move {
                        me.broken.store(true, Ordering::SeqCst);
                        "broken"
                    }
                }),
            )
            .route(
                "/fix",
                post(move || {
                    let me = fix.clone();
                    async move {
                        me.broken.store(false, Ordering::SeqCst);
                        "fixed"
                    }
                }),
            )
            .route(
                "/hook",
                post(move |body: axum::Json<Value>| {
                    let me = hook.clone();
                    async move {
                        me.hooks.lock().unwrap().push(body.0);
                        "ok"
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

    fn hooks(&self) -> Vec<Value> {
        self.hooks.lock().unwrap().clone()
    }
}

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[incidents]
evaluate_every = "1s"
down_after = 2
resolve_after = "2s"
burn_rate = [{{ name = "fast", factor = 14.4, long = "30s", short = "5s" }}]
burn_rate_min_coverage_pct = 0
sla_below_target = false

[[webhooks]]
name = "ops"
url = "http://{addr}/hook"

[[services]]
id = "a"
name = "A"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["agent-1/a"]
slo = {{ availability = 99.9, window = "1d" }}

[[services]]
id = "b"
name = "B"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["agent-1/b"]
slo = {{ availability = 99.9, window = "1d" }}

[[runbooks]]
id = "a-failover"
service = "a"

[[runbooks.steps]]
id = "break"
kind = "inject"
via = "http"
url = "http://{addr}/break"
expect_status = [200]

[[runbooks.steps]]
id = "tell-ops"
kind = "notify"
webhook = "ops"
message = "drill: a is down on purpose"

[[runbooks.steps]]
id = "outage"
kind = "exec"
argv = ["sleep", "6"]
timeout = "15s"

[[runbooks.steps]]
id = "fix"
kind = "restore"
via = "http"
url = "http://{addr}/fix"
expect_status = [200]

[[drills]]
id = "a-dr"
service = "a"
runbook = "a-failover"
scenario = "A lost while B fails for real"
confirm = "1s"
max_duration = "40s"
"#
    )
}

fn cli(collector: &Collector, args: &[&str]) -> String {
    let out = std::process::Command::new(watchstand_tests::bin("watchstand-collector"))
        .args(args)
        .arg("--server")
        .arg(collector.url(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The incidents of `service` (newest first).
async fn incidents(collector: &Collector, service: &str) -> Vec<Value> {
    collector
        .get(&format!("/api/v1/incidents?service={service}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_service_s_real_outage_during_a_drill_is_downtime_and_paged() {
    let began = Instant::now();
    let from = now_ms();
    let dir = tempfile::tempdir().unwrap();
    let net = Loopback::default();
    let addr = net.start().await;
    let b = HttpTarget::start().await;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &config(addr),
    )
    .spawn()
    .await;
    let probes = format!(
        "[[probes]]\nid = \"a\"\nkind = \"http\"\nurl = \"http://{addr}/\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n\
         [[probes]]\nid = \"b\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n",
        b.url()
    );
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    )
    .spawn()
    .await;
    // Both measured up before the drill.
    wait_for(
        "both services measured",
        Duration::from_secs(20),
        || async {
            let mut up = true;
            for s in ["a", "b"] {
                let sla = collector.sla(s, from, now_ms()).await;
                up &= sla["uptime_s"].as_f64().unwrap_or(0.0) >= 1.0;
            }
            up.then_some(())
        },
    )
    .await;

    // The drill on `a`; while it runs `b` fails for real for 4 s.
    let started: Value =
        serde_json::from_str(&cli(&collector, &["drills", "run", "a-dr"])).unwrap();
    assert_eq!(started["status"], "running", "{started}");
    let id = started["id"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.set_healthy(false);
    let b_down_ms = now_ms();
    // `b` is paged during the drill: its service-down incident, not marked drill.
    let page = wait_for("b's page", Duration::from_secs(15), || async {
        net.hooks().into_iter().find(|h| {
            h["event"] == "opened"
                && h["incident"]["service"] == "b"
                && h["incident"]["rule"]["kind"] == "service_down"
        })
    })
    .await;
    assert_eq!(page["incident"]["drill"], Value::Null, "{page}");
    let elapsed = now_ms().saturating_sub(b_down_ms);
    tokio::time::sleep(Duration::from_millis(4_000u64.saturating_sub(elapsed))).await;
    b.set_healthy(true);
    let b_up_ms = now_ms();

    let run = wait_for("the drill to finish", Duration::from_secs(40), || async {
        let run = collector.get(&format!("/api/v1/drill-runs/{id}")).await;
        (run["status"] == "finished").then_some(run)
    })
    .await;
    let o = &run["outcome"];
    // `b` failed (and was paged) inside `a`'s drill window.
    let detected = page["incident"]["detected_ms"].as_u64().unwrap();
    let window = (
        o["inject_ms"].as_u64().unwrap(),
        run["settle_until_ms"].as_u64().unwrap(),
    );
    assert!(
        window.0 < detected && detected < window.1,
        "b detected at {detected}, drill window {window:?}"
    );
    assert!(
        run["deviations"].as_array().is_none_or(Vec::is_empty),
        "{run}"
    );

    // `a`: the drill incident is on record, marked drill, never paged; no burn-rate incident.
    let a_incidents = incidents(&collector, "a").await;
    assert!(
        a_incidents
            .iter()
            .any(|i| i["rule"]["kind"] == "service_down"),
        "a's drill opened its service-down incident: {a_incidents:?}"
    );
    for i in &a_incidents {
        assert_eq!(i["drill"], id, "{i}");
        assert_eq!(i["last_notified_ms"], Value::Null, "{i}");
        assert_ne!(
            i["rule"]["kind"], "burn_rate",
            "drill time burns no budget: {i}"
        );
    }
    let reported = o["incidents"].as_array().unwrap();
    assert!(
        !reported.is_empty()
            && reported
                .iter()
                .all(|i| i["drill"] == true && i["notified"] == false),
        "{reported:?}"
    );
    // `a`'s SLA over the whole test: the drill's non-up time is drill time, never downtime.
    let now = now_ms();
    let a_sla = collector.sla("a", from, now).await;
    assert_eq!(a_sla["downtime_s"].as_f64().unwrap(), 0.0, "{a_sla}");
    assert!(a_sla["drill_s"].as_f64().unwrap() >= 3.0, "{a_sla}");
    assert_eq!(o["sla"]["downtime_s"].as_f64().unwrap(), 0.0, "{o}");

    // `b`: its outage is downtime (not drill time), close to the 4 s it lasted.
    let b_sla = collector.sla("b", from, now).await;
    let b_down = b_sla["downtime_s"].as_f64().unwrap();
    let truth = (b_up_ms - b_down_ms) as f64 / 1e3;
    eprintln!(
        "b down {b_down:.3} s (truth {truth:.3} s); a drill {} s",
        a_sla["drill_s"]
    );
    assert!(b_down > 0.0 && (b_down - truth).abs() <= 1.0, "{b_sla}");
    assert_eq!(b_sla["drill_s"].as_f64().unwrap(), 0.0, "{b_sla}");
    // `b`'s burn-rate incident is paged too, and its incidents are not drill incidents.
    wait_for("b's burn-rate page", Duration::from_secs(10), || async {
        net.hooks().into_iter().find(|h| {
            h["incident"]["service"] == "b" && h["incident"]["rule"]["kind"] == "burn_rate"
        })
    })
    .await;
    let b_incidents = incidents(&collector, "b").await;
    assert!(
        b_incidents
            .iter()
            .all(|i| i["drill"] == Value::Null && i["last_notified_ms"].is_u64()),
        "{b_incidents:?}"
    );

    // The receiver got `b`'s pages only: nothing about `a`, no runbook notice of the drill.
    let hooks = net.hooks();
    assert!(
        hooks.iter().all(|h| h["incident"]["service"] == "b"),
        "only b's incidents reach the receiver: {hooks:?}"
    );
    assert!(
        !hooks.iter().any(|h| h.get("run").is_some()
            || h["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("runbook_"))),
        "no runbook notice of the drill: {hooks:?}"
    );
    eprintln!("drills_paging: {:.1} s", began.elapsed().as_secs_f64());
}
