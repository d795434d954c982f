//! Runbooks end to end, with the real collector binary, a real (embedded) broker and an agent:
//!
//! - a service's loopback HTTP target goes down → incident → the runbook's `http` step calls the
//!   test's "fail over" endpoint (which brings the target back) and its `wait_for` step waits
//!   until the service is measured up → the run `succeeded`, every step with timestamps, and
//!   the incident's timeline shows the run;
//! - a manual run with an approval step approved from the CLI binary, and one rejected;
//! - the collector SIGKILLed while an `exec` attempt is in flight (not run again: the command
//!   appends to a file that is counted) and again while the run waits for an approval → after
//!   each restart the run continues, and the approval is accepted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, Collector, CollectorSpec};
use watchstand_tests::runbook::{
    cli, cli_ok, lines, run_ended, run_until, start_run as start, web_service,
};
use watchstand_tests::{free_addr, now_ms, wait_for};

/// A primary that answers 503 while "failed", and a `POST /failover` that brings it back (as a
/// standby taking over would).
#[derive(Clone, Default)]
struct Primary {
    failed: Arc<AtomicBool>,
    failovers: Arc<AtomicU64>,
}

impl Primary {
    async fn start(&self) -> std::net::SocketAddr {
        let (a, b) = (self.clone(), self.clone());
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let me = a.clone();
                    async move {
                        if me.failed.load(Ordering::SeqCst) {
                            (StatusCode::SERVICE_UNAVAILABLE, "primary down")
                        } else {
                            (StatusCode::OK, "ok")
                        }
                    }
                }),
            )
            .route(
                "/failover",
                post(move || {
                    let me = b.clone();
                    async move {
                        me.failovers.fetch_add(1, Ordering::SeqCst);
                        me.failed.store(false, Ordering::SeqCst);
                        "standby promoted"
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

fn current_step(run: &Value) -> Option<String> {
    run["steps"]
        .as_array()?
        .iter()
        .find(|s| s["status"] == "running")
        .and_then(|s| s["id"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_triggers_a_failover_runbook_that_restores_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Primary::default();
    let addr = primary.start().await;
    let runbooks = format!(
        r#"
[[runbooks]]
id = "failover"
service = "web"
on_incident = {{ rules = ["service_down"], min_priority = "P2", after = "1s" }}

[[runbooks.steps]]
id = "promote"
kind = "http"
method = "POST"
url = "http://{addr}/failover"
expect_status = [200]
timeout = "5s"
retries = 1

[[runbooks.steps]]
id = "confirm"
kind = "wait_for"
service = "web"
state = "up"
for = "2s"
timeout = "30s"
"#
    );
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &web_service("", &runbooks),
    );
    let collector = spec.spawn().await;
    let probe = format!(
        "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"http://{addr}/\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n"
    );
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probe,
    )
    .spawn()
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let listed = cli_ok(&collector, &["runbooks", "list"]);
    assert!(
        listed.contains("failover") && listed.contains("promote(http)"),
        "{listed}"
    );

    primary.failed.store(true, Ordering::SeqCst);
    let down_at = now_ms();
    let run = wait_for(
        "a run of the failover runbook",
        Duration::from_secs(20),
        || async {
            let runs = collector.get("/api/v1/runbook-runs?runbook=failover").await;
            runs.as_array()?.first().cloned()
        },
    )
    .await;
    let id = run["id"].as_u64().unwrap();
    assert_eq!(run["trigger"]["kind"], "incident", "{run}");
    let incident = run["trigger"]["incident"].as_u64().unwrap();
    let run = run_ended(&collector, id, "the run to end").await;
    let recovered_in = now_ms() - down_at;
    assert_eq!(run["status"], "succeeded", "{run}");
    eprintln!("outage → incident → runbook → measured up again: {recovered_in} ms");
    assert_eq!(primary.failovers.load(Ordering::SeqCst), 1);
    for step in run["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "succeeded", "{run}");
        let a = &step["attempts"][0];
        let (started, ended) = (
            a["started_ms"].as_u64().unwrap(),
            a["ended_ms"].as_u64().unwrap(),
        );
        assert!(started >= down_at && ended >= started, "{run}");
    }
    let confirm = &run["steps"][1]["attempts"][0];
    let promote_end = run["steps"][0]["attempts"][0]["ended_ms"].as_u64().unwrap();
    // `for = "2s"`: the service had to be measured up for 2 s after the failover.
    assert!(
        confirm["ended_ms"].as_u64().unwrap() >= promote_end + 2_000,
        "{run}"
    );
    let timeline = collector
        .get(&format!("/api/v1/incidents/{incident}"))
        .await;
    let events: Vec<(&str, &str)> = timeline["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let started = format!("run {id} of runbook \"failover\"");
    assert!(
        events.contains(&("runbook_started", started.as_str())),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(e, d)| *e == "runbook_finished" && d.contains("succeeded")),
        "{events:?}"
    );
    let shown = cli_ok(&collector, &["runbooks", "show", &id.to_string()]);
    assert!(
        shown.contains("promote") && shown.contains("confirm") && shown.contains("succeeded"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_from_the_cli_let_a_run_go_on_or_end_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("after-approval");
    let runbooks = format!(
        r#"
[[runbooks]]
id = "switch"
service = "web"

[[runbooks.steps]]
id = "ok-to-switch"
kind = "approval"
role = "operator"
timeout = "5m"

[[runbooks.steps]]
id = "switch"
kind = "exec"
argv = ["sh", "-c", "echo switched >> '{}'"]
timeout = "10s"
"#,
        marker.display()
    );
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &web_service("", &runbooks),
    );
    let collector = spec.spawn().await;

    let run = start(&collector, "switch");
    let first = run["id"].as_u64().unwrap();
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(current_step(&run).as_deref(), Some("ok-to-switch"));
    // One run at a time: a second start is recorded as skipped.
    let second = start(&collector, "switch");
    assert_eq!(second["status"], "skipped", "{second}");
    assert!(
        second["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("run {first}")),
        "{second}"
    );
    assert_eq!(lines(&marker), 0, "nothing runs before the approval");

    cli_ok(&collector, &["runbooks", "approve", &first.to_string()]);
    let run = run_ended(&collector, first, "the approved run to end").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let approval = &run["steps"][0]["attempts"][0]["outcome"];
    assert_eq!(approval["detail"], "approved by anonymous", "{run}");
    assert_eq!(lines(&marker), 1);
    // Approving again: the run is over.
    let again = cli(&collector, &["runbooks", "approve", &first.to_string()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not waiting for an approval"));

    let run = start(&collector, "switch");
    let rejected = run["id"].as_u64().unwrap();
    cli_ok(&collector, &["runbooks", "reject", &rejected.to_string()]);
    let run = run_ended(&collector, rejected, "the rejected run to end").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["steps"][1]["status"], "skipped", "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap()
            .contains("rejected by anonymous"),
        "{run}"
    );
    assert_eq!(lines(&marker), 1, "a rejected run does not switch");
    let runs = cli_ok(&collector, &["runbooks", "runs", "--runbook", "switch"]);
    for word in ["succeeded", "skipped", "failed"] {
        assert!(runs.contains(word), "{runs}");
    }
    let audit = collector.get("/api/v1/audit").await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    for action in ["runbook.run", "runbook_run.approve", "runbook_run.reject"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_collector_crashes_without_running_an_attempt_twice() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow-exec");
    let after = dir.path().join("after-approval");
    let runbooks = format!(
        r#"
[[runbooks]]
id = "recover"
service = "web"

[[runbooks.steps]]
id = "slow"
kind = "exec"
argv = ["sh", "-c", "echo ran >> '{}'; sleep 20"]
timeout = "60s"
retries = 2
on_failure = "continue"

[[runbooks.steps]]
id = "go-ahead"
kind = "approval"
timeout = "10m"

[[runbooks.steps]]
id = "finish"
kind = "exec"
argv = ["sh", "-c", "echo ran >> '{}'"]
timeout = "10s"
"#,
        slow.display(),
        after.display()
    );
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &web_service("", &runbooks),
    );
    let mut collector = spec.spawn().await;
    let run = start(&collector, "recover");
    let id = run["id"].as_u64().unwrap();
    wait_for(
        "the slow exec to start",
        Duration::from_secs(10),
        || async { (lines(&slow) == 1).then_some(()) },
    )
    .await;
    collector.kill();
    let mut collector = spec.spawn().await;
    // The attempt in flight is not run again: it failed (outcome unknown), and its retry ran.
    let run = run_until(&collector, id, "the run to reach the approval", |r| {
        current_step(r).as_deref() == Some("go-ahead")
            || r["steps"][0]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() >= 2)
    })
    .await;
    let first = &run["steps"][0]["attempts"][0];
    assert_eq!(first["outcome"]["kind"], "failed", "{run}");
    assert_eq!(
        first["outcome"]["reason"], "collector restarted during the attempt; outcome unknown",
        "{run}"
    );
    assert!(first["ended_ms"].as_u64().is_some(), "{run}");
    // The retry is a new attempt (and appends once); the interrupted one never ran again.
    wait_for("the retry to start", Duration::from_secs(10), || async {
        (lines(&slow) == 2).then_some(())
    })
    .await;
    let run = collector.get(&format!("/api/v1/runbook-runs/{id}")).await;
    assert_eq!(
        run["steps"][0]["attempts"].as_array().unwrap().len(),
        2,
        "{run}"
    );
    crash_during_retries_then_approve(&mut collector, &spec, id, &slow, &after).await;
}

/// Crashes the collector during the retry, then while the run waits for the approval, then
/// approves it.
async fn crash_during_retries_then_approve(
    collector: &mut Collector,
    spec: &CollectorSpec,
    id: u64,
    slow: &Path,
    after: &Path,
) {
    collector.kill();
    let mut collector = spec.spawn().await;
    // The second attempt also ends "outcome unknown"; the third runs once.
    wait_for("the third attempt", Duration::from_secs(15), || async {
        (lines(slow) == 3).then_some(())
    })
    .await;
    collector.kill();
    let mut collector = spec.spawn().await;
    // Three attempts failed (each once, none re-run): `on_failure = "continue"` goes on.
    let run = run_until(&collector, id, "the approval step", |r| {
        current_step(r).as_deref() == Some("go-ahead")
    })
    .await;
    assert_eq!(run["steps"][0]["status"], "failed", "{run}");
    assert_eq!(
        run["steps"][0]["attempts"].as_array().unwrap().len(),
        3,
        "{run}"
    );
    assert_eq!(lines(slow), 3, "every attempt executed exactly once");
    // Crashed while waiting for the approval: the run continues and can be approved.
    collector.kill();
    let collector = spec.spawn().await;
    let run = collector.get(&format!("/api/v1/runbook-runs/{id}")).await;
    assert_eq!(current_step(&run).as_deref(), Some("go-ahead"), "{run}");
    assert_eq!(
        run["steps"][1]["attempts"].as_array().unwrap().len(),
        1,
        "re-armed, not restarted: {run}"
    );
    cli_ok(&collector, &["runbooks", "approve", &id.to_string()]);
    let run = run_ended(&collector, id, "the run to end").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(lines(after), 1);
    assert_eq!(lines(slow), 3);
}
