//! Failover drills end to end, with the real collector binary, a real (embedded) broker and an
//! agent probing a loopback "shop" front every second:
//!
//! - a drill started from the CLI injects a failure (`inject` via `http`: the primary breaks),
//!   the runbook fails over (`http`), waits until the service is measured up (`wait_for`) and
//!   fails back (`restore` via `http`); the report's time to detect and time to recover are
//!   within one probe interval of the times the test's server recorded; over the drill the SLA
//!   shows `downtime_s` 0 and `drill_s` ≈ the measured non-up time; the drill's incident is kept
//!   but no webhook page is sent; the report renders as Markdown with its hash, and the review
//!   is recorded afterwards;
//! - a drill whose runbook hangs is aborted at `max_duration`: the restore steps still run and
//!   the verdict is `aborted`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, Collector, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for};

/// The shop's front: 503 while the primary is broken and traffic is not on the standby.
/// Control endpoints record when they were called (the scripted truth) and a webhook receiver
/// keeps what it is sent.
#[derive(Clone, Default)]
struct Shop {
    broken: Arc<AtomicBool>,
    on_standby: Arc<AtomicBool>,
    broke_ms: Arc<AtomicU64>,
    failover_ms: Arc<AtomicU64>,
    failbacks: Arc<AtomicU64>,
    hooks: Arc<Mutex<Vec<Value>>>,
}

impl Shop {
    async fn start(&self) -> std::net::SocketAddr {
        let (a, b, c, d, e) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
        );
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let me = a.clone();
                    async move {
                        if me.broken.load(Ordering::SeqCst) && !me.on_standby.load(Ordering::SeqCst)
                        {
                            (StatusCode::SERVICE_UNAVAILABLE, "primary down")
                        } else {
                            (StatusCode::OK, "ok")
                        }
                    }
                }),
            )
            .route(
                "/break",
                post(move || {
                    let me = b.clone();
                    async move {
                        me.broke_ms.store(now_ms(), Ordering::SeqCst);
                        me.broken.store(true, Ordering::SeqCst);
                        "broken"
                    }
                }),
            )
            .route(
                "/failover",
                post(move || {
                    let me = c.clone();
                    async move {
                        me.failover_ms.store(now_ms(), Ordering::SeqCst);
                        me.on_standby.store(true, Ordering::SeqCst);
                        "on standby"
                    }
                }),
            )
            .route(
                "/failback",
                post(move || {
                    let me = d.clone();
                    async move {
                        me.failbacks.fetch_add(1, Ordering::SeqCst);
                        me.broken.store(false, Ordering::SeqCst);
                        me.on_standby.store(false, Ordering::SeqCst);
                        "back on primary"
                    }
                }),
            )
            .route(
                "/hook",
                post(move |body: axum::Json<Value>| {
                    let me = e.clone();
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
}

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[incidents]
evaluate_every = "1s"
down_after = 2
resolve_after = "2s"
burn_rate = []
sla_below_target = false

[[webhooks]]
name = "ops"
url = "http://{addr}/hook"

[[services]]
id = "shop"
name = "Shop"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["agent-1/shop"]
slo = {{ availability = 99.9, window = "1d" }}

[[runbooks]]
id = "shop-failover"
service = "shop"

[[runbooks.steps]]
id = "break-primary"
kind = "inject"
via = "http"
url = "http://{addr}/break"
expect_status = [200]

[[runbooks.steps]]
id = "detection-delay"
kind = "exec"
argv = ["sleep", "4"]
timeout = "10s"

[[runbooks.steps]]
id = "promote-standby"
kind = "http"
url = "http://{addr}/failover"
expect_status = [200]

[[runbooks.steps]]
id = "confirm"
kind = "wait_for"
service = "shop"
for = "2s"
timeout = "30s"

[[runbooks.steps]]
id = "fail-back"
kind = "restore"
via = "http"
url = "http://{addr}/failback"
expect_status = [200]

[[runbooks]]
id = "shop-hang"
service = "shop"

[[runbooks.steps]]
id = "break-primary"
kind = "inject"
via = "http"
url = "http://{addr}/break"

[[runbooks.steps]]
id = "stuck"
kind = "exec"
argv = ["sleep", "60"]
timeout = "90s"

[[runbooks.steps]]
id = "fail-back"
kind = "restore"
via = "http"
url = "http://{addr}/failback"

[[drills]]
id = "shop-dr"
service = "shop"
runbook = "shop-failover"
scenario = "Primary lost; standby promoted"
participants = ["ana (continuity manager)"]
confirm = "2s"
max_duration = "60s"

[[drills]]
id = "shop-abort"
service = "shop"
runbook = "shop-hang"
scenario = "Failover that hangs"
confirm = "1s"
max_duration = "3s"
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

/// Incident notifications the webhook got (runbook run notices are not pages).
fn pages(shop: &Shop) -> Vec<Value> {
    shop.hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.get("incident").is_some())
        .cloned()
        .collect()
}

async fn finished(collector: &Collector, id: u64) -> Value {
    wait_for("the drill to finish", Duration::from_secs(60), || async {
        let run = collector.get(&format!("/api/v1/drill-runs/{id}")).await;
        (run["status"] == "finished").then_some(run)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_over_and_back_and_measures_detect_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::default();
    let addr = shop.start().await;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &config(addr),
    )
    .spawn()
    .await;
    let probe = format!(
        "[[probes]]\nid = \"shop\"\nkind = \"http\"\nurl = \"http://{addr}/\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n"
    );
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probe,
    )
    .spawn()
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. The drill, started from the CLI.
    let started: Value =
        serde_json::from_str(&cli(&collector, &["drills", "run", "shop-dr"])).unwrap();
    assert_eq!(started["status"], "running", "{started}");
    let id = started["id"].as_u64().unwrap();
    // A second drill of the same service while it runs is skipped with the reason.
    let second: Value =
        serde_json::from_str(&cli(&collector, &["drills", "run", "shop-abort"])).unwrap();
    assert_eq!(second["status"], "skipped");
    assert!(
        second["skipped"]
            .as_str()
            .unwrap()
            .contains("is in progress"),
        "{second}"
    );

    let run = finished(&collector, id).await;
    let o = &run["outcome"];
    let inject = o["inject_ms"].as_u64().unwrap();
    let broke = shop.broke_ms.load(Ordering::SeqCst);
    let failover = shop.failover_ms.load(Ordering::SeqCst);
    assert_eq!(shop.failbacks.load(Ordering::SeqCst), 1, "restore ran once");
    let interval = 1.0;
    let detect = o["detect_s"].as_f64().unwrap();
    let truth_detect = (broke.saturating_sub(inject)) as f64 / 1e3;
    let recover = o["recover_s"].as_f64().unwrap();
    let truth_recover = (failover.saturating_sub(inject)) as f64 / 1e3;
    eprintln!(
        "drill figures: detect {detect:.3} s (truth {truth_detect:.3} s), recover {recover:.3} s (truth {truth_recover:.3} s)"
    );
    assert!(
        detect >= truth_detect && detect <= truth_detect + interval + 0.3,
        "detect {detect} vs {truth_detect}"
    );
    assert!(
        (recover - truth_recover).abs() <= interval + 0.3,
        "recover {recover} vs {truth_recover}"
    );
    assert_eq!(o["verdict"], "met", "{o}");
    assert_eq!(o["rto_met"], true);
    // SLA over the drill: no downtime, the non-up time is drill time.
    let sla = &o["sla"];
    assert_eq!(sla["downtime_s"].as_f64().unwrap(), 0.0, "{sla}");
    let drill_s = sla["drill_s"].as_f64().unwrap();
    let non_up = o["non_up_s"].as_f64().unwrap();
    assert!(non_up >= 3.0, "non-up {non_up}");
    assert!(
        (drill_s - non_up).abs() <= 1.0,
        "drill_s {drill_s} vs non-up {non_up}"
    );
    // The incident is on record as a drill incident; nothing was paged.
    let incidents = o["incidents"].as_array().unwrap();
    assert!(!incidents.is_empty(), "{o}");
    assert!(
        incidents
            .iter()
            .all(|i| i["drill"] == true && i["notified"] == false),
        "{incidents:?}"
    );
    assert_eq!(pages(&shop), Vec::<Value>::new(), "no incident was paged");
    // Steps with their phases.
    let phases: Vec<&str> = o["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["inject", "recover", "recover", "recover", "restore"]
    );

    // 2. The report (Markdown and JSON), its hash, and the review.
    let md = cli(
        &collector,
        &["drills", "report", &id.to_string(), "--format", "md"],
    );
    assert!(md.contains("**Verdict** | **met**"), "{md}");
    assert!(md.contains("Content SHA-256"));
    eprintln!("{md}");
    let json: Value = serde_json::from_str(&cli(
        &collector,
        &["drills", "report", &id.to_string(), "--format", "json"],
    ))
    .unwrap();
    assert_eq!(json["content_sha256"], json["sealed_sha256"]);
    cli(
        &collector,
        &[
            "drills",
            "review",
            &id.to_string(),
            "--reviewer",
            "ana",
            "--findings",
            "failover took 4 s",
            "--action",
            "automate promotion",
            "--plan-updated",
        ],
    );
    let reviewed: Value = serde_json::from_str(&cli(
        &collector,
        &["drills", "report", &id.to_string(), "--format", "json"],
    ))
    .unwrap();
    assert_eq!(reviewed["review"]["reviewer"], "ana");
    assert_ne!(
        reviewed["content_sha256"], reviewed["sealed_sha256"],
        "an edit shows in the hash"
    );

    // 3. A drill that hangs is aborted at max_duration; restore still runs.
    wait_for(
        "the shop to be up again",
        Duration::from_secs(20),
        || async {
            let incidents = collector
                .get("/api/v1/incidents?state=open&service=shop")
                .await;
            incidents
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        },
    )
    .await;
    let aborted: Value =
        serde_json::from_str(&cli(&collector, &["drills", "run", "shop-abort"])).unwrap();
    assert_eq!(aborted["status"], "running", "{aborted}");
    let run = finished(&collector, aborted["id"].as_u64().unwrap()).await;
    assert_eq!(run["outcome"]["verdict"], "aborted", "{run}");
    assert!(
        run["aborted"].as_str().unwrap().contains("max_duration"),
        "{run}"
    );
    assert_eq!(
        shop.failbacks.load(Ordering::SeqCst),
        2,
        "restore ran after the abort"
    );
    assert!(run["restore_run"].as_u64().is_some());
    assert_eq!(pages(&shop), Vec::<Value>::new(), "no incident was paged");
}
