//! Runbooks whose steps are signed agent actions, end to end: the real collector and agent
//! binaries, a real broker, a real HTTP service on 127.0.0.1 and a real action on the agent.
//!
//! The service (`web`) is a loopback HTTP server standing for the address users reach: it
//! answers from the primary while the primary is healthy, 503 when it fails — unless the standby
//! was promoted. Promotion is the agent's declared `exec` action: it appends the role to a file
//! the server reads (its last line says who answers), so every execution is a line counted on
//! disk, never inferred from acks.
//!
//! - an outage → incident → runbook → signed `agent_action` → the service measured up again →
//!   the run `succeeded`, every step with timestamps;
//! - the same behind an approval step approved from the CLI, and one rejected (nothing runs);
//! - crash rounds: the collector SIGKILLed at random points of runs (≥ 20 rounds,
//!   `WATCHSTAND_CRASH_ROUNDS` for more): every run ends in a recorded final state after the
//!   restart and every attempt's action ran at most once (here: exactly once, as none is lost).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tempfile::TempDir;
use watchstand_shared::command::CommandKey;
use watchstand_tests::process::{
    Agent, AgentSpec, BrokerChoice, Collector, CollectorSpec, Mosquitto, MosquittoSpec,
};
use watchstand_tests::runbook::{cli_ok, lines, run_ended, start_run, web_service};
use watchstand_tests::{free_addr, now_ms, wait_for};

/// The service address: the primary answers while healthy; once the roles file's last line is
/// `standby`, the standby answers.
#[derive(Clone)]
struct Service {
    primary_failed: Arc<AtomicBool>,
    roles: PathBuf,
}

impl Service {
    fn new(roles: &Path) -> Self {
        Self {
            primary_failed: Arc::new(AtomicBool::new(false)),
            roles: roles.to_owned(),
        }
    }

    fn active(&self) -> String {
        std::fs::read_to_string(&self.roles)
            .ok()
            .and_then(|t| t.lines().last().map(str::to_owned))
            .unwrap_or_else(|| "primary".to_owned())
    }

    async fn start(&self) -> std::net::SocketAddr {
        let me = self.clone();
        let app = Router::new().route(
            "/",
            get(move || {
                let me = me.clone();
                async move {
                    match me.active().as_str() {
                        "standby" => (StatusCode::OK, "standby"),
                        _ if me.primary_failed.load(Ordering::SeqCst) => {
                            (StatusCode::SERVICE_UNAVAILABLE, "primary down")
                        }
                        _ => (StatusCode::OK, "primary"),
                    }
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

/// A collector key in `dir`; the collector's `[commands]` lines for it.
fn key(dir: &Path) -> (CommandKey, String) {
    std::fs::create_dir_all(dir).unwrap();
    let key = CommandKey::generate();
    let path = dir.join("command.key");
    key.write(&path, false).unwrap();
    let lines = format!(
        "[commands]\nkey_file = \"{}\"\nresend_every = \"300ms\"\n",
        path.display()
    );
    (key, lines)
}

/// Agent `agent-1` probing the service every second, accepting commands signed by the key:
/// action `promote` (after `delay` seconds, appends its `role` to the roles file).
fn agent(dir: &Path, broker: &str, parts: &Parts, delay: &str) -> AgentSpec {
    let Parts {
        addr, key, roles, ..
    } = parts;
    let mut spec = AgentSpec::new(
        dir,
        "agent-1",
        broker,
        &format!(
            "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"http://{addr}/\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n"
        ),
    );
    spec.extra.push_str(&format!(
        r#"
[commands]
public_key = "{public}"

[[actions]]
id = "promote"
kind = "exec"
argv = ["/bin/sh", "-c", "sleep {delay}; printf '%s\n' \"$1\" >> \"$2\"; echo \"$1 now answers\"", "promote", "{{role}}", "{roles}"]
timeout = "10s"
[actions.args.role]
allowed = ["primary", "standby"]
"#,
        public = key.public().to_base64(),
        roles = roles.display(),
    ));
    spec
}

/// What every test here starts with: the service (answering from the primary), the
/// collector's signing key and its `[commands]` lines.
struct Parts {
    roles: PathBuf,
    service: Service,
    addr: std::net::SocketAddr,
    key: CommandKey,
    commands: String,
}

async fn parts(dir: &Path) -> Parts {
    let roles = dir.join("roles.txt");
    let service = Service::new(&roles);
    let addr = service.start().await;
    let (key, commands) = key(&dir.join("keys"));
    Parts {
        roles,
        service,
        addr,
        key,
        commands,
    }
}

/// A running scenario: a collector (embedded broker) with `runbooks` and agent `agent-1`,
/// known to it, whose `promote` action runs at once.
struct Scenario {
    parts: Parts,
    collector: Collector,
    _agent: Agent,
    _dir: TempDir,
}

async fn scenario(runbooks: &str) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let parts = parts(dir.path()).await;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &web_service(&parts.commands, runbooks),
    )
    .spawn()
    .await;
    let agent = agent(
        &dir.path().join("agent"),
        &collector.broker_url(),
        &parts,
        "0",
    )
    .spawn()
    .await;
    agent_known(&collector).await;
    Scenario {
        parts,
        collector,
        _agent: agent,
        _dir: dir,
    }
}

async fn agent_known(collector: &Collector) {
    wait_for("agent-1 to be known", Duration::from_secs(20), || async {
        collector.agent("agent-1").await.map(|_| ())
    })
    .await;
}

/// Every step that ran has an attempt with start and end; none ended before it started.
fn assert_timestamps(run: &Value, since: u64) {
    for step in run["steps"].as_array().unwrap() {
        if step["status"] == "skipped" {
            continue;
        }
        for a in step["attempts"].as_array().unwrap() {
            let started = a["started_ms"].as_u64().unwrap();
            let ended = a["ended_ms"].as_u64().unwrap();
            assert!(started >= since && ended >= started, "{run}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_recovered_by_a_signed_agent_action() {
    let runbooks = r#"
[[runbooks]]
id = "failover"
service = "web"
on_incident = { rules = ["service_down"], min_priority = "P2", after = "1s" }

[[runbooks.steps]]
id = "promote"
kind = "agent_action"
agent = "agent-1"
action = "promote"
args = { role = "standby" }
timeout = "15s"

[[runbooks.steps]]
id = "confirm"
kind = "wait_for"
service = "web"
state = "up"
for = "2s"
timeout = "30s"
"#;
    let Scenario {
        parts: Parts { roles, service, .. },
        collector,
        ..
    } = &scenario(runbooks).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    service.primary_failed.store(true, Ordering::SeqCst);
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
    let run = run_ended(collector, id, "the run to end").await;
    let recovered_in = now_ms() - down_at;
    assert_eq!(run["status"], "succeeded", "{run}");
    eprintln!(
        "outage → incident → runbook → signed agent action → measured up again: {recovered_in} ms"
    );
    assert_timestamps(&run, down_at);
    let promote = &run["steps"][0]["attempts"][0];
    assert_eq!(
        run["steps"][0]["attempts"].as_array().unwrap().len(),
        1,
        "{run}"
    );
    let detail = promote["outcome"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("succeeded on agent-1") && detail.contains("standby now answers"),
        "{run}"
    );
    let command = &promote["command"];
    assert_eq!(command["action"], "promote", "{run}");
    assert_eq!(command["args"]["role"], "standby", "{run}");
    assert_eq!(promote["command_id"], command["command_id"], "{run}");
    assert_eq!(lines(roles), 1, "the action ran exactly once");
    // The service is up from the standby while the primary is still down.
    assert!(service.primary_failed.load(Ordering::SeqCst));
    assert_eq!(service.active(), "standby");
    let shown = cli_ok(collector, &["runbooks", "show", &id.to_string()]);
    assert!(
        shown.contains("promote") && shown.contains("succeeded"),
        "{shown}"
    );
    let (_, metrics) = collector.get_raw("/metrics").await;
    for line in [
        "watchstand_runbook_runs_total{runbook=\"failover\",status=\"succeeded\"} 1",
        "watchstand_runbook_runs_running{runbook=\"failover\"} 0",
        "watchstand_runbook_steps_total{runbook=\"failover\",kind=\"agent_action\",status=\"succeeded\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_agent_action_runs_and_a_rejected_one_does_not() {
    let runbooks = r#"
[[runbooks]]
id = "switch"
service = "web"

[[runbooks.steps]]
id = "ok-to-switch"
kind = "approval"
role = "operator"
timeout = "5m"

[[runbooks.steps]]
id = "promote"
kind = "agent_action"
agent = "agent-1"
action = "promote"
args = { role = "standby" }
timeout = "15s"

[[runbooks.steps]]
id = "confirm"
kind = "wait_for"
service = "web"
state = "up"
for = "1s"
timeout = "20s"
"#;
    let Scenario {
        parts: Parts { roles, service, .. },
        collector,
        ..
    } = &scenario(runbooks).await;

    let since = now_ms();
    let run = start_run(collector, "switch");
    let rejected = run["id"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(roles), 0, "nothing runs before the approval");
    cli_ok(collector, &["runbooks", "reject", &rejected.to_string()]);
    let run = run_ended(collector, rejected, "the rejected run to end").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["steps"][1]["status"], "skipped", "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap()
            .contains("rejected by anonymous"),
        "{run}"
    );
    assert_eq!(lines(roles), 0, "a rejected run sends no command");

    let run = start_run(collector, "switch");
    let approved = run["id"].as_u64().unwrap();
    cli_ok(collector, &["runbooks", "approve", &approved.to_string()]);
    let run = run_ended(collector, approved, "the approved run to end").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_timestamps(&run, since);
    assert_eq!(
        run["steps"][0]["attempts"][0]["outcome"]["detail"], "approved by anonymous",
        "{run}"
    );
    assert_eq!(lines(roles), 1, "the approved action ran exactly once");
    assert_eq!(service.active(), "standby");
}

/// The crash rounds' broker: Mosquitto when installed (the collector's session and queued
/// answers survive its crash), else the collector's embedded broker (the agent re-publishes
/// recent outcomes after it reconnects).
async fn crash_broker(dir: &Path) -> (BrokerChoice, Option<Mosquitto>) {
    let spec = MosquittoSpec::new(&dir.join("mosquitto"));
    match spec.spawn().await {
        Some(m) => (BrokerChoice::External(spec.url()), Some(m)),
        None => (BrokerChoice::Embedded(free_addr()), None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_crashes_at_random_points_never_run_an_attempt_twice() {
    let rounds: usize = std::env::var("WATCHSTAND_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let parts = parts(dir.path()).await;
    // Two agent actions per run (each sleeps 150 ms before it appends), so a kill lands before,
    // during and after sends, executions and answers.
    let runbooks = r#"
[[runbooks]]
id = "flip"
service = "web"

[[runbooks.steps]]
id = "to-standby"
kind = "agent_action"
agent = "agent-1"
action = "promote"
args = { role = "standby" }
timeout = "20s"

[[runbooks.steps]]
id = "back"
kind = "agent_action"
agent = "agent-1"
action = "promote"
args = { role = "primary" }
timeout = "20s"
"#;
    let (broker, _mosquitto) = crash_broker(dir.path()).await;
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        broker.clone(),
        &web_service(&parts.commands, runbooks),
    );
    let mut collector = spec.spawn().await;
    let agent = agent(&dir.path().join("agent"), &broker.url(), &parts, "0.15")
        .spawn()
        .await;
    agent_known(&collector).await;
    let http = reqwest::Client::new();
    let mut kills = 0;
    let rounds_started = Instant::now();
    for round in 0..rounds {
        // A start whose reply is lost to the kill may or may not be on record: the store says.
        let _started = http
            .post(collector.url("/api/v1/runbooks/flip/run"))
            .send()
            .await;
        let delay = rand::random::<u64>() % 700;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        collector.kill();
        kills += 1;
        collector = spec.spawn().await;
        // Every run ends after the restart before the next round starts one.
        wait_for(
            &format!("round {round}: every run to end"),
            Duration::from_secs(30),
            || async {
                let runs = collector.get("/api/v1/runbook-runs?status=running").await;
                runs.as_array().is_some_and(Vec::is_empty).then_some(())
            },
        )
        .await;
    }
    let runs = collector.get("/api/v1/runbook-runs?runbook=flip").await;
    let runs = runs.as_array().unwrap();
    let mut attempts = 0;
    let mut succeeded_attempts = 0;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for row in runs {
        let id = row["id"].as_u64().unwrap();
        let run = collector.get(&format!("/api/v1/runbook-runs/{id}")).await;
        let status = run["status"].as_str().unwrap().to_owned();
        assert!(
            ["succeeded", "failed", "cancelled", "skipped"].contains(&status.as_str()),
            "run {id} not in a final state: {run}"
        );
        *statuses.entry(status).or_default() += 1;
        for step in run["steps"].as_array().unwrap() {
            for a in step["attempts"].as_array().unwrap() {
                attempts += 1;
                assert!(a["ended_ms"].as_u64().is_some(), "{run}");
                if a["outcome"]["kind"] == "succeeded" {
                    succeeded_attempts += 1;
                }
            }
        }
    }
    let executed = lines(&parts.roles);
    let health = agent.health().await;
    eprintln!(
        "crash rounds: {rounds} rounds, {kills} SIGKILLs, {} runs {statuses:?}, {attempts} agent-action attempts ({succeeded_attempts} succeeded), {executed} executions, agent health commands {}, rounds {:.1} s (test {:.1} s)",
        runs.len(),
        health["commands"],
        rounds_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        runs.len() >= rounds / 2,
        "runs were started: {}",
        runs.len()
    );
    assert!(
        executed <= attempts,
        "at most once per attempt: {executed} executions, {attempts} attempts"
    );
    // No answer is lost either: each succeeded attempt is one execution, and nothing else ran.
    assert_eq!(
        executed, succeeded_attempts,
        "every execution is a succeeded attempt and vice versa"
    );
    assert_eq!(
        statuses.get("succeeded").copied().unwrap_or(0) * 2,
        executed,
        "{statuses:?}"
    );
}
