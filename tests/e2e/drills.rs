//! Failover drills end to end, with the real collector and agent binaries, a real (embedded)
//! broker and a loopback "lab" server standing for four services the agent probes every 500 ms.
//! One collector, broker and agent serve every scenario: drills of different services run at
//! the same time, and only the crash scenario (which restarts the collector) runs alone.
//!
//! - `shop`: a drill started from the CLI injects the failure through a signed `agent_action`
//!   (the agent's `http` action breaks the primary), the runbook fails over, waits until the
//!   service is measured up and fails back (`restore`); the report's time to detect and time
//!   to recover are within one probe interval of the times the lab recorded; over the drill the
//!   SLA shows `downtime_s` 0 and `drill_s` ≈ the measured non-up time; the drill's incident is
//!   kept but no webhook page is sent; a second start while it runs is skipped; the report
//!   renders as JSON and Markdown with its hash, and the review changes the content hash.
//! - `pay`: the same failover takes longer than the service's RTO (2 s): verdict `not met`,
//!   the report shows the time to recover and the RTO.
//! - `queue`: a runbook that hangs is aborted at `max_duration`; the restore steps still run
//!   and the verdict is `aborted`.
//! - `batch`: a seconds-resolution cron schedule (`*/10 * * * * *`) fires the drill in real
//!   time at its planned instants, once each.
//! - then `shop` again with the collector SIGKILLed right after the inject: restarted on the
//!   same data dir, the drill finishes, the inject and the restore ran exactly once, the report
//!   has every figure and its hash is the one sealed at completion.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use watchstand_shared::command::CommandKey;
use watchstand_tests::process::{AgentSpec, BrokerChoice, Collector, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for};

/// Probe interval of every service, seconds (the tolerance of detect/recover figures).
const INTERVAL_S: f64 = 0.5;

/// What the lab recorded for one service (the scripted truth).
#[derive(Clone, Debug, Default)]
struct Svc {
    broken: bool,
    on_standby: bool,
    /// When `/break` was called, epoch ms, each call.
    breaks: Vec<u64>,
    /// When `/failover` was called, each call.
    failovers: Vec<u64>,
    /// How many times `/failback` was called.
    failbacks: usize,
}

/// The services' fronts: `GET /{svc}` answers 503 while the primary is broken and traffic is
/// not on the standby; `POST /{svc}/break|failover|failback` change that and record when; a
/// webhook receiver keeps what it is sent.
#[derive(Clone, Default)]
struct Lab {
    svcs: Arc<Mutex<HashMap<String, Svc>>>,
    hooks: Arc<Mutex<Vec<Value>>>,
}

impl Lab {
    fn svc(&self, name: &str) -> Svc {
        self.svcs
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn change(&self, name: &str, f: impl FnOnce(&mut Svc)) {
        f(self
            .svcs
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default());
    }

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
                "/{svc}",
                get(move |UrlPath(svc): UrlPath<String>| {
                    let s = a.svc(&svc);
                    async move {
                        if s.broken && !s.on_standby {
                            (StatusCode::SERVICE_UNAVAILABLE, "primary down")
                        } else {
                            (StatusCode::OK, "ok")
                        }
                    }
                }),
            )
            .route(
                "/{svc}/break",
                post(move |UrlPath(svc): UrlPath<String>| {
                    b.change(&svc, |s| {
                        s.breaks.push(now_ms());
                        s.broken = true;
                    });
                    async { "broken" }
                }),
            )
            .route(
                "/{svc}/failover",
                post(move |UrlPath(svc): UrlPath<String>| {
                    c.change(&svc, |s| {
                        s.failovers.push(now_ms());
                        s.on_standby = true;
                    });
                    async { "on standby" }
                }),
            )
            .route(
                "/{svc}/failback",
                post(move |UrlPath(svc): UrlPath<String>| {
                    d.change(&svc, |s| {
                        s.failbacks += 1;
                        s.broken = false;
                        s.on_standby = false;
                    });
                    async { "back on primary" }
                }),
            )
            .route(
                "/hook",
                post(move |body: axum::Json<Value>| {
                    e.hooks.lock().unwrap().push(body.0);
                    async { "ok" }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        addr
    }

    /// Incident notifications the webhook got (runbook run notices are not pages).
    fn pages(&self) -> Vec<Value> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.get("incident").is_some())
            .cloned()
            .collect()
    }
}

/// A failover runbook for `svc`: inject (`inject` TOML), wait `delay` seconds, fail over,
/// wait until measured up for 1 s, fail back over HTTP.
fn failover_book(svc: &str, addr: std::net::SocketAddr, inject: &str, delay: u32) -> String {
    format!(
        r#"
[[runbooks]]
id = "{svc}-failover"
service = "{svc}"

[[runbooks.steps]]
id = "break-primary"
kind = "inject"
{inject}

[[runbooks.steps]]
id = "detection-delay"
kind = "exec"
argv = ["sleep", "{delay}"]
timeout = "10s"
retries = 1

[[runbooks.steps]]
id = "promote-standby"
kind = "http"
url = "http://{addr}/{svc}/failover"
expect_status = [200]

[[runbooks.steps]]
id = "confirm"
kind = "wait_for"
service = "{svc}"
for = "1s"
timeout = "30s"

[[runbooks.steps]]
id = "fail-back"
kind = "restore"
via = "http"
url = "http://{addr}/{svc}/failback"
expect_status = [200]
"#
    )
}

fn config(addr: std::net::SocketAddr, key_file: &Path) -> String {
    let mut text = format!(
        r#"
[commands]
key_file = "{key}"
resend_every = "300ms"

[incidents]
evaluate_every = "1s"
down_after = 2
resolve_after = "2s"
burn_rate = []
sla_below_target = false

[[webhooks]]
name = "ops"
url = "http://{addr}/hook"
"#,
        key = key_file.display()
    );
    for (svc, rto) in [
        ("shop", "5m"),
        ("pay", "2s"),
        ("queue", "5m"),
        ("batch", "5m"),
    ] {
        text.push_str(&format!(
            r#"
[[services]]
id = "{svc}"
name = "{svc}"
criticality = "critical"
rto = "{rto}"
rpo = "1m"
probes = ["agent-1/{svc}"]
slo = {{ availability = 99.9, window = "1d" }}
"#
        ));
    }
    text.push_str(&failover_book(
        "shop",
        addr,
        "via = \"agent_action\"\nagent = \"agent-1\"\naction = \"break-shop\"\ntimeout = \"15s\"\nretries = 1",
        3,
    ));
    text.push_str(&failover_book(
        "pay",
        addr,
        &format!("via = \"http\"\nurl = \"http://{addr}/pay/break\"\nexpect_status = [200]"),
        3,
    ));
    text.push_str(&format!(
        r#"
[[runbooks]]
id = "queue-hang"
service = "queue"

[[runbooks.steps]]
id = "break-primary"
kind = "inject"
via = "http"
url = "http://{addr}/queue/break"

[[runbooks.steps]]
id = "stuck"
kind = "exec"
argv = ["sleep", "60"]
timeout = "90s"

[[runbooks.steps]]
id = "fail-back"
kind = "restore"
via = "http"
url = "http://{addr}/queue/failback"

[[runbooks]]
id = "batch-check"
service = "batch"

[[runbooks.steps]]
id = "noop-inject"
kind = "inject"
via = "exec"
argv = ["/bin/true"]

[[runbooks.steps]]
id = "noop-restore"
kind = "restore"
via = "exec"
argv = ["/bin/true"]

[[drills]]
id = "shop-dr"
service = "shop"
runbook = "shop-failover"
scenario = "Primary lost; standby promoted"
participants = ["ana (continuity manager)"]
confirm = "1s"
max_duration = "60s"

[[drills]]
id = "pay-dr"
service = "pay"
runbook = "pay-failover"
scenario = "Payment primary lost; failover slower than the RTO"
confirm = "1s"
max_duration = "60s"

[[drills]]
id = "queue-abort"
service = "queue"
runbook = "queue-hang"
scenario = "Failover that hangs"
confirm = "1s"
max_duration = "3s"

[[drills]]
id = "batch-sched"
service = "batch"
runbook = "batch-check"
scenario = "Scheduled every 10 s"
schedule = "*/10 * * * * *"
confirm = "1s"
max_duration = "30s"
"#
    ));
    text
}

/// Agent `agent-1` probing the four services every 500 ms, accepting commands signed by
/// `key`: action `break-shop` (an HTTP POST to the lab's `/shop/break`).
fn agent(dir: &Path, broker: &str, addr: std::net::SocketAddr, key: &CommandKey) -> AgentSpec {
    let probes: String = ["shop", "pay", "queue", "batch"]
        .iter()
        .map(|svc| {
            format!(
                "[[probes]]\nid = \"{svc}\"\nkind = \"http\"\nurl = \"http://{addr}/{svc}\"\ninterval = \"500ms\"\ntimeout = \"450ms\"\n"
            )
        })
        .collect();
    let mut spec = AgentSpec::new(dir, "agent-1", broker, &probes);
    spec.extra.push_str(&format!(
        r#"
[commands]
public_key = "{public}"

[[actions]]
id = "break-shop"
kind = "http"
url = "http://{addr}/shop/break"
timeout = "5s"
"#,
        public = key.public().to_base64(),
    ));
    spec
}

async fn cli(collector: &Collector, args: &[&str]) -> String {
    let out = tokio::process::Command::new(watchstand_tests::bin("watchstand-collector"))
        .args(args)
        .arg("--server")
        .arg(collector.url(""))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn cli_json(collector: &Collector, args: &[&str]) -> Value {
    let text = cli(collector, args).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

async fn finished(collector: &Collector, id: u64) -> Value {
    wait_for("the drill to finish", Duration::from_secs(60), || async {
        let run = collector.get(&format!("/api/v1/drill-runs/{id}")).await;
        (run["status"] == "finished").then_some(run)
    })
    .await
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The figures of a normal failover drill of `svc` against the lab's truth: detect and recover
/// within one probe interval, SLA downtime 0 and drill time ≈ non-up time, drill incidents not
/// paged, the report's JSON hash sealed. Returns the outcome.
fn check_failover(lab: &Lab, svc: &str, run: &Value) -> Value {
    let o = run["outcome"].clone();
    let truth = lab.svc(svc);
    let inject = o["inject_ms"].as_u64().unwrap();
    let broke = *truth.breaks.last().unwrap();
    let failover = *truth.failovers.last().unwrap();
    let detect = f(&o["detect_s"]);
    let truth_detect = broke.saturating_sub(inject) as f64 / 1e3;
    let recover = f(&o["recover_s"]);
    let truth_recover = failover.saturating_sub(inject) as f64 / 1e3;
    eprintln!(
        "{svc} drill {}: detect {detect:.3} s (truth {truth_detect:.3} s), recover {recover:.3} s (truth {truth_recover:.3} s), verdict {}",
        run["id"], o["verdict"]
    );
    // A probe started just before the break may be answered after it: a little early is fine.
    assert!(
        (truth_detect - 0.1..=truth_detect + INTERVAL_S + 0.3).contains(&detect),
        "{svc}: detect {detect} vs {truth_detect}"
    );
    assert!(
        (recover - truth_recover).abs() <= INTERVAL_S + 0.3,
        "{svc}: recover {recover} vs {truth_recover}"
    );
    let sla = &o["sla"];
    assert_eq!(f(&sla["downtime_s"]), 0.0, "{svc}: {sla}");
    let drill_s = f(&sla["drill_s"]);
    let non_up = f(&o["non_up_s"]);
    assert!(non_up >= 2.5, "{svc}: non-up {non_up}");
    assert!(
        (drill_s - non_up).abs() <= 1.0,
        "{svc}: drill_s {drill_s} vs non-up {non_up}"
    );
    let incidents = o["incidents"].as_array().unwrap();
    assert!(!incidents.is_empty(), "{svc}: {o}");
    assert!(
        incidents
            .iter()
            .all(|i| i["drill"] == true && i["notified"] == false),
        "{svc}: {incidents:?}"
    );
    let phases: Vec<&str> = o["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["inject", "recover", "recover", "recover", "restore"],
        "{svc}"
    );
    o
}

/// The `shop` drill: agent-action inject, failover, fail-back; skipped second start; report
/// formats, hash and review.
async fn shop_drill(collector: &Collector, lab: &Lab) {
    let started = cli_json(collector, &["drills", "run", "shop-dr"]).await;
    assert_eq!(started["status"], "running", "{started}");
    let id = started["id"].as_u64().unwrap();
    // A second drill of the same service while it runs is skipped with the reason.
    let second = cli_json(collector, &["drills", "run", "shop-dr"]).await;
    assert_eq!(second["status"], "skipped");
    assert!(
        second["skipped"]
            .as_str()
            .unwrap()
            .contains("is in progress"),
        "{second}"
    );
    let run = finished(collector, id).await;
    let o = check_failover(lab, "shop", &run);
    assert_eq!(o["verdict"], "met", "{o}");
    assert_eq!(o["rto_met"], true);
    let shop = lab.svc("shop");
    assert_eq!(shop.breaks.len(), 1, "the agent action ran once");
    assert_eq!(shop.failbacks, 1, "restore ran once");
    let inject = &o["steps"][0];
    assert_eq!(inject["kind"], "agent_action", "{inject}");
    assert_eq!(inject["status"], "succeeded", "{inject}");
    assert!(
        inject["detail"]
            .as_str()
            .unwrap()
            .starts_with("succeeded on agent-1"),
        "{inject}"
    );

    // The report: JSON with its hashes, Markdown, then the review.
    let json = cli_json(
        collector,
        &["drills", "report", &id.to_string(), "--format", "json"],
    )
    .await;
    assert_eq!(json["content_sha256"], json["sealed_sha256"]);
    let md = cli(
        collector,
        &["drills", "report", &id.to_string(), "--format", "md"],
    )
    .await;
    assert!(md.contains("**Verdict** | **met**"), "{md}");
    assert!(
        md.contains(json["content_sha256"].as_str().unwrap()),
        "{md}"
    );
    // HTML, written to a file as an operator would: one page with the verdict and the hash.
    let html_file = collector.spec.dir.join(format!("drill-run-{id}.html"));
    cli(
        collector,
        &[
            "drills",
            "report",
            &id.to_string(),
            "--format",
            "html",
            "--out",
            html_file.to_str().unwrap(),
        ],
    )
    .await;
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(html.trim_start().starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.trim_end().ends_with("</html>"), "{html}");
    assert!(html.contains(json["content_sha256"].as_str().unwrap()));
    assert!(html.contains("met"), "{html}");
    cli(
        collector,
        &[
            "drills",
            "review",
            &id.to_string(),
            "--reviewer",
            "ana",
            "--findings",
            "failover took 3 s",
            "--action",
            "automate promotion",
            "--plan-updated",
        ],
    )
    .await;
    let reviewed = cli_json(
        collector,
        &["drills", "report", &id.to_string(), "--format", "json"],
    )
    .await;
    assert_eq!(reviewed["review"]["reviewer"], "ana");
    assert_ne!(
        reviewed["content_sha256"], reviewed["sealed_sha256"],
        "an edit shows in the hash"
    );
    assert_eq!(reviewed["sealed_sha256"], json["sealed_sha256"]);
}

/// The `pay` drill: recovery takes longer than its 2 s RTO.
async fn pay_drill(collector: &Collector, lab: &Lab) {
    let started = cli_json(collector, &["drills", "run", "pay-dr"]).await;
    assert_eq!(started["status"], "running", "{started}");
    let id = started["id"].as_u64().unwrap();
    let run = finished(collector, id).await;
    let o = check_failover(lab, "pay", &run);
    assert_eq!(o["verdict"], "not_met", "{o}");
    assert_eq!(o["rto_met"], false, "{o}");
    assert_eq!(f(&o["targets"]["rto_s"]), 2.0);
    let recover = f(&o["recover_s"]);
    assert!(recover > 2.0, "{o}");
    let reason = o["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!("recovered in {recover:.1} s, over the RTO of 2.0 s"),
        "{o}"
    );
    assert_eq!(lab.svc("pay").failbacks, 1, "restore ran once");
    let md = cli(
        collector,
        &["drills", "report", &id.to_string(), "--format", "md"],
    )
    .await;
    assert!(md.contains("**not met**"), "{md}");
    assert!(md.contains(reason), "{md}");
    // The figures row: time to recover against the RTO of 2 s, not met.
    let row = md
        .lines()
        .find(|l| l.starts_with("| Time to recover"))
        .unwrap_or_else(|| panic!("no time-to-recover row:\n{md}"));
    assert!(
        row.contains(&format!("| {recover:.1} s | 2.0 s | not met |")),
        "{row}"
    );
}

/// The `queue` drill: aborted at `max_duration`, restore still runs.
async fn queue_drill(collector: &Collector, lab: &Lab) {
    let started = cli_json(collector, &["drills", "run", "queue-abort"]).await;
    assert_eq!(started["status"], "running", "{started}");
    let run = finished(collector, started["id"].as_u64().unwrap()).await;
    assert_eq!(run["outcome"]["verdict"], "aborted", "{run}");
    assert!(
        run["aborted"].as_str().unwrap().contains("max_duration"),
        "{run}"
    );
    assert!(run["restore_run"].as_u64().is_some(), "{run}");
    let queue = lab.svc("queue");
    assert_eq!(queue.breaks.len(), 1);
    assert_eq!(queue.failbacks, 1, "restore ran after the abort");
}

/// The scheduled `batch` drills so far (every run of `batch-sched`).
async fn batch_runs(collector: &Collector) -> Vec<Value> {
    let rows = collector.get("/api/v1/drill-runs?drill=batch-sched").await;
    let mut out = Vec::new();
    for row in rows.as_array().unwrap() {
        let id = row["id"].as_u64().unwrap();
        out.push(collector.get(&format!("/api/v1/drill-runs/{id}")).await);
    }
    out
}

/// The `batch` drill fires on its seconds-resolution schedule, at its time.
async fn batch_schedule(collector: &Collector) {
    let runs = wait_for(
        "a scheduled batch drill",
        Duration::from_secs(25),
        || async {
            let runs = batch_runs(collector).await;
            (!runs.is_empty()).then_some(runs)
        },
    )
    .await;
    let first = &runs[0];
    assert_eq!(first["trigger"]["kind"], "schedule", "{first}");
    let planned = first["trigger"]["planned_ms"].as_u64().unwrap();
    let started = first["started_ms"].as_u64().unwrap();
    assert_eq!(planned % 10_000, 0, "{first}");
    assert!(
        started >= planned && started - planned < 2_000,
        "fired at its time: planned {planned}, started {started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_end_to_end() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::default();
    let addr = lab.start().await;
    let key = CommandKey::generate();
    let key_file = dir.path().join("command.key");
    key.write(&key_file, false).unwrap();
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &config(addr, &key_file),
    );
    let mut collector = spec.spawn().await;
    let _agent = agent(
        &dir.path().join("agent"),
        &collector.broker_url(),
        addr,
        &key,
    )
    .spawn()
    .await;
    // Every service measured up before the drills start.
    let since = now_ms();
    wait_for(
        "every service measured up",
        Duration::from_secs(30),
        || async {
            for svc in ["shop", "pay", "queue", "batch"] {
                let sla = collector.sla(svc, since - 1, now_ms() + 1).await;
                if sla["uptime_s"].as_f64().unwrap_or(0.0) < 1.0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let ready = t0.elapsed();

    // 1. Drills of different services at the same time.
    tokio::join!(
        shop_drill(&collector, &lab),
        pay_drill(&collector, &lab),
        queue_drill(&collector, &lab),
        batch_schedule(&collector),
    );
    let concurrent = t0.elapsed();

    // 2. SIGKILL in the middle of a shop drill.
    wait_for("shop to be up again", Duration::from_secs(20), || async {
        let open = collector
            .get("/api/v1/incidents?state=open&service=shop")
            .await;
        open.as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await;
    let before = lab.svc("shop");
    let started = cli_json(&collector, &["drills", "run", "shop-dr"]).await;
    assert_eq!(started["status"], "running", "{started}");
    let id = started["id"].as_u64().unwrap();
    wait_for("the inject to start", Duration::from_secs(20), || async {
        let run = collector.get(&format!("/api/v1/drill-runs/{id}")).await;
        run["inject_ms"].as_u64()
    })
    .await;
    collector.kill();
    let killed_at = now_ms();
    collector = spec.spawn().await;
    let run = finished(&collector, id).await;
    eprintln!(
        "drill {id} after a SIGKILL {} ms after its inject started: {}",
        killed_at.saturating_sub(run["inject_ms"].as_u64().unwrap_or(0)),
        run["outcome"]
    );
    let o = check_failover(&lab, "shop", &run);
    assert_eq!(o["verdict"], "met", "{o}");
    let after = lab.svc("shop");
    assert_eq!(
        after.breaks.len(),
        before.breaks.len() + 1,
        "the inject ran exactly once"
    );
    assert_eq!(
        after.failbacks,
        before.failbacks + 1,
        "the restore ran exactly once"
    );
    for figure in [
        "inject_ms",
        "first_down_ms",
        "detect_s",
        "incident_ms",
        "detect_incident_s",
        "recovered_ms",
        "recover_s",
    ] {
        assert!(o[figure].is_number(), "{figure} missing: {o}");
    }
    for step in o["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "succeeded", "{o}");
        assert!(step["started_ms"].is_number() && step["ended_ms"].is_number());
    }
    let json = cli_json(
        &collector,
        &["drills", "report", &id.to_string(), "--format", "json"],
    )
    .await;
    assert_eq!(json["status"], "finished");
    assert_eq!(
        json["content_sha256"], json["sealed_sha256"],
        "the report read after the restart is the one sealed"
    );
    let md = cli(
        &collector,
        &["drills", "report", &id.to_string(), "--format", "md"],
    )
    .await;
    assert!(
        md.contains(json["content_sha256"].as_str().unwrap()),
        "{md}"
    );

    // The schedule fired once per planned instant, each at its time, across the restart.
    let batch = batch_runs(&collector).await;
    let mut planned: Vec<u64> = batch
        .iter()
        .map(|r| r["trigger"]["planned_ms"].as_u64().unwrap())
        .collect();
    let n = planned.len();
    planned.sort_unstable();
    planned.dedup();
    assert_eq!(planned.len(), n, "a planned instant fired twice: {batch:?}");
    assert!(planned.iter().all(|p| p % 10_000 == 0), "{planned:?}");
    assert_eq!(lab.pages(), Vec::<Value>::new(), "no incident was paged");
    eprintln!(
        "drills e2e: ready {:.1} s, concurrent drills done {:.1} s, total {:.1} s ({n} scheduled batch drills)",
        ready.as_secs_f64(),
        concurrent.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
