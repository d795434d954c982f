//! The engine task's runbook handling with a real in-memory store: one run at a time, approvals
//! by role, deadlines, incident triggers (once, also across a restart), `notify` through the
//! outbox, `agent_action` failing without a signing key and answered through `cmd/ack`, and a run resumed after a restart without
//! running its in-flight attempt again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::Role;
use crate::incident::engine::Engine;
use crate::incident::policy::IncidentSettings;
use crate::incident::record::IncidentStore;
use crate::runbook::agent_action::{CommandLink, NO_KEY};
use crate::runbook::exec::RESTARTED;
use crate::runbook::run::{Outcome, Run, RunStatus, StepStatus, Trigger};
use crate::runbook::store::RunStore;
use crate::runbook::Runbook;
use crate::store::StoreBatch;
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{Answer, CmdAck, CommandOutcome, CommandRef, OutcomeStatus};

/// The config with service `web`, webhook `ops` and `runbooks`.
fn config(runbooks: &str) -> crate::config::CollectorConfig {
    let text = format!(
        "[collector]\ndata_dir = \"d\"\n[[webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/hook\"\n[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = {{ availability = 99.9 }}\n[commands]\nkey_file = \"command.key\"\n{runbooks}"
    );
    let raw = crate::config::from_str(&text, Path::new("t.toml")).expect("parses");
    crate::config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid")
}

/// What the engine under test can send agent actions to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agents {
    /// No command link (as without a signing key).
    NoLink,
    /// A command link, and agent `a` at site `s` known to the registry.
    Known,
    /// A command link, and an empty registry.
    Unknown,
}

/// The engine task under test with the config's runbooks, over its store.
struct Bench {
    store: Store,
    handle: EngineHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Bench {
    /// Starts the engine task over a new store with incident 1 of `web` open (the incident
    /// tests' fixture).
    fn new(config: &crate::config::CollectorConfig, agents: Agents) -> Self {
        Self::on(&super::tests::engine_with_one_open().0, config, agents)
    }

    /// Starts the engine task over `store` (what a restart finds).
    fn on(store: &Store, config: &crate::config::CollectorConfig, agents: Agents) -> Self {
        let engine = Engine::load(
            IncidentStore::new(store.clone()),
            IncidentSettings::default(),
            std::collections::HashMap::new(),
            config.webhooks.clone(),
        )
        .expect("engine");
        let (handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
        inbox
            .load_runbooks(&config.runbooks, store)
            .expect("runs load");
        let mut registry = Registry::new(Vec::new());
        if agents != Agents::NoLink {
            let (link, known) = link_and_registry(&key());
            inbox.set_command_link(link);
            if agents == Agents::Known {
                registry = known;
            }
        }
        let stop = CancellationToken::new();
        let deps = EngineDeps {
            store: store.clone(),
            catalogue: Arc::new(config.catalogue.clone()),
            registry: Arc::new(registry),
            notifier: notify::wake_channel().0,
            first_tick: Duration::from_secs(86_400),
        };
        let task = tokio::spawn(run(inbox, engine, deps, stop.clone()));
        Self {
            store: store.clone(),
            handle,
            stop,
            task,
        }
    }

    /// Stops the task (as the collector's stop does) and starts it again over the same store.
    async fn restart(self, config: &crate::config::CollectorConfig, agents: Agents) -> Self {
        self.stop.cancel();
        self.task.await.expect("task ends");
        Self::on(&self.store, config, agents)
    }

    /// Starts runbook `id` by hand (as `ana`).
    async fn start(&self, id: &str) -> Run {
        self.handle.start_runbook(id, "ana").await.expect("starts")
    }

    /// Run `id` as stored now.
    fn stored(&self, id: u64) -> Run {
        RunStore::new(self.store.clone())
            .get(id)
            .expect("read")
            .expect("stored")
    }

    /// Waits (bounded) until run `id` is stored and satisfies `f`.
    async fn stored_until(&self, id: u64, f: impl Fn(&Run) -> bool) -> Run {
        let runs = RunStore::new(self.store.clone());
        for _ in 0..200 {
            if let Some(r) = runs.get(id).expect("read") {
                if f(&r) {
                    return r;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} never got there: {:?}", runs.get(id));
    }
}

/// Stores run 1 of `book` as a crashed collector left it: its first attempt begun.
fn store_begun_run(store: &Store, book: &Runbook) {
    let (begun, _) = Run::start(1, book, Trigger::Manual { by: "ana".into() }, 1);
    let mut batch = StoreBatch::default();
    RunStore::put(&mut batch, &begun, 2);
    store.commit(batch).expect("commit");
}

#[tokio::test]
async fn one_run_at_a_time_approved_by_role_then_the_exec_step_runs() {
    let config = config(
        r#"
[[runbooks]]
id = "rb"
service = "web"
[[runbooks.steps]]
id = "ok"
kind = "approval"
role = "operator"
[[runbooks.steps]]
id = "do"
kind = "exec"
argv = ["true"]
"#,
    );
    let bench = Bench::new(&config, Agents::NoLink);
    let handle = &bench.handle;

    let run = bench.start("rb").await;
    assert_eq!((run.id, run.status), (1, RunStatus::Running));
    assert_eq!(run.current().map(|(i, _)| i), Some(0));
    let skipped = handle.start_runbook("rb", "bo").await.expect("recorded");
    assert_eq!(skipped.status, RunStatus::Skipped);
    assert_eq!(
        skipped.reason.as_deref(),
        Some("run 1 of runbook \"rb\" is in progress")
    );
    assert!(matches!(
        handle.decide(1, true, "vic", Role::Viewer).await,
        Err(RunbookError::RoleTooLow { .. })
    ));
    let approved = handle
        .decide(1, true, "ana", Role::Operator)
        .await
        .expect("approved");
    assert_eq!(approved.steps[0].status, StepStatus::Succeeded);
    assert_eq!(
        approved.steps[0].attempts[0].outcome,
        Some(Outcome::Succeeded {
            detail: "approved by ana".into()
        })
    );
    let done = bench.stored_until(1, |r| r.status.is_final()).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert!(matches!(
        handle.decide(1, true, "ana", Role::Operator).await,
        Err(RunbookError::NotAwaitingApproval(1))
    ));
    assert!(matches!(
        handle.cancel_run(1, "ana").await,
        Err(RunbookError::Stale(_))
    ));
    assert!(matches!(
        handle.cancel_run(9, "ana").await,
        Err(RunbookError::RunNotFound(9))
    ));
    assert!(matches!(
        handle.start_runbook("nope", "ana").await,
        Err(RunbookError::UnknownRunbook(_))
    ));
    // A new run may start now; cancelling it ends its attempt.
    let third = bench.start("rb").await;
    assert_eq!(third.id, 3);
    let cancelled = handle.cancel_run(3, "bo").await.expect("cancels");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn an_open_incident_triggers_its_runbook_once_even_across_a_restart() {
    let config = config(
        r#"
[[runbooks]]
id = "auto"
service = "web"
manual = false
on_incident = { rules = ["service_down"], min_priority = "P2", after = "0s" }
[[runbooks.steps]]
id = "tell"
kind = "notify"
webhook = "ops"
message = "failing over"
[[runbooks.steps]]
id = "promote"
kind = "agent_action"
agent = "a"
action = "promote"
on_failure = "continue"
[[runbooks.steps]]
id = "ok"
kind = "approval"
timeout = "300ms"
"#,
    );
    let bench = Bench::new(&config, Agents::NoLink);
    let store = bench.store.clone();
    let run = bench.stored_until(1, |r| r.status.is_final()).await;
    assert_eq!(run.trigger, Trigger::Incident { incident: 1 });
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(
        run.steps[0].attempts[0].outcome,
        Some(Outcome::Succeeded {
            detail: "queued for webhook \"ops\"".into()
        })
    );
    assert_eq!(
        run.steps[1].attempts[0].outcome,
        Some(Outcome::Failed {
            reason: NO_KEY.into()
        })
    );
    assert_eq!(run.steps[2].attempts[0].outcome, Some(Outcome::TimedOut));
    let outbox: Vec<String> = IncidentStore::new(store.clone())
        .all_pending()
        .expect("outbox")
        .into_iter()
        .map(|n| format!("{}:{}", n.receiver, n.event))
        .collect();
    assert_eq!(
        outbox,
        [
            "ops:runbook_started",
            "ops:runbook_notify",
            "ops:runbook_finished"
        ]
    );
    let incident = IncidentStore::new(store.clone())
        .get(1)
        .expect("read")
        .expect("stored");
    let events: Vec<&str> = incident.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["runbook_started", "runbook_finished"]);
    assert!(matches!(
        bench.handle.start_runbook("auto", "ana").await,
        Err(RunbookError::NotManual(_))
    ));

    // Restarted with the incident still open: its runbook already ran for it.
    let _bench = bench.restart(&config, Agents::NoLink).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(RunStore::new(store.clone()).all().expect("runs").len(), 1);
}

#[tokio::test]
async fn an_http_attempt_in_flight_at_a_restart_is_not_run_again() {
    let config = config(
        r#"
[[runbooks]]
id = "h"
service = "web"
[[runbooks.steps]]
id = "call"
kind = "http"
url = "http://127.0.0.1:9/failover"
timeout = "2s"
retries = 1
"#,
    );
    let (store, _) = super::tests::engine_with_one_open();
    // As a crashed collector left it: attempt 1 of the http step stored as begun.
    store_begun_run(&store, &config.runbooks[0]);
    let bench = Bench::on(&store, &config, Agents::NoLink);
    let run = bench.stored_until(1, |r| r.status.is_final()).await;
    let attempts = &run.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{run:?}");
    assert_eq!(
        attempts[0].outcome,
        Some(Outcome::Failed {
            reason: RESTARTED.into()
        })
    );
    // The retry ran (and found nothing listening on the discard port).
    assert!(
        matches!(&attempts[1].outcome, Some(Outcome::Failed { reason }) if reason.contains("127.0.0.1:9")),
        "{run:?}"
    );
    assert_eq!(run.status, RunStatus::Failed);
    // Ids go on after the stored ones.
    let next = bench.start("h").await;
    assert_eq!(next.id, 2);
}

#[tokio::test]
async fn a_run_whose_runbook_changed_meanwhile_is_cancelled_at_the_restart() {
    let before = config(
        r#"
[[runbooks]]
id = "c"
service = "web"
[[runbooks.steps]]
id = "ok"
kind = "approval"
"#,
    );
    let after = config(
        r#"
[[runbooks]]
id = "c"
service = "web"
[[runbooks.steps]]
id = "other"
kind = "exec"
argv = ["true"]
"#,
    );
    let (store, _) = super::tests::engine_with_one_open();
    store_begun_run(&store, &before.runbooks[0]);
    let bench = Bench::on(&store, &after, Agents::NoLink);
    let run = bench.stored_until(1, |r| r.status.is_final()).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(
        run.reason.as_deref().is_some_and(|r| r.contains("changed")),
        "{run:?}"
    );
}

/// A link whose MQTT client is never connected (what it publishes is not looked at here; the
/// e2e tests send to real agents), and a registry that knows agent `a` at site `s`.
fn link_and_registry(key: &watchstand_shared::command::CommandKey) -> (CommandLink, Registry) {
    let (client, _eventloop) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 9), 64);
    let link = CommandLink::new(
        key.clone(),
        client,
        watchstand_shared::topic::TopicLayout::new("watchstand"),
        Duration::from_millis(100),
    );
    let registry = Registry::new(Vec::new());
    registry.update("s", "a", "b1", 1, |_| {});
    (link, registry)
}

/// The collector's signing key in these tests.
fn key() -> watchstand_shared::command::CommandKey {
    watchstand_shared::command::CommandKey::from_seed([9; 32])
}

fn answer(agent: &str, command_id: &str, status: OutcomeStatus, from_journal: bool) -> CmdAck {
    CmdAck {
        v: 1,
        site: "s".into(),
        agent: agent.into(),
        boot: "b1".into(),
        seq: 1,
        at_ms: now_ms(),
        command: Some(CommandRef {
            command_id: command_id.into(),
            run_id: "1".into(),
            step: 0,
            action: "promote".into(),
        }),
        from_journal,
        answer: Answer::Outcome(CommandOutcome {
            status,
            exit_code: Some(i32::from(status != OutcomeStatus::Succeeded)),
            http_status: None,
            started_ms: now_ms(),
            duration_ms: 5,
            stdout_tail: "promoted".into(),
            stderr_tail: String::new(),
            error: None,
        }),
    }
}

const PROMOTE: &str = r#"
[[runbooks]]
id = "fo"
service = "web"
[[runbooks.steps]]
id = "promote"
kind = "agent_action"
agent = "a"
action = "promote"
args = { role = "standby" }
timeout = "3s"
"#;

#[tokio::test]
async fn an_agent_action_is_signed_stored_and_ends_with_the_agents_answer() {
    let config = config(PROMOTE);
    let bench = Bench::new(&config, Agents::Known);
    let handle = &bench.handle;
    let run = bench.start("fo").await;
    let attempt = &run.steps[0].attempts[0];
    let command = attempt.command.clone().expect("stored with the attempt");
    assert_eq!(
        attempt.command_id.as_deref(),
        Some(command.command_id.as_str())
    );
    assert_eq!(
        (
            command.site.as_str(),
            command.agent.as_str(),
            command.action.as_str()
        ),
        ("s", "a", "promote")
    );
    assert_eq!(
        command.args.get("role").map(String::as_str),
        Some("standby")
    );
    assert_eq!(command.expires_ms, attempt.deadline_ms);
    let verifier = watchstand_shared::command::Verifier::new(key().public(), "s", "a", 0);
    assert!(verifier
        .verify(&watchstand_shared::wire::v1::encode(&command), now_ms())
        .is_ok());
    // Another agent's answer with that id, and an answer to an unknown id: nothing changes.
    assert!(handle.try_command_answer(answer(
        "z",
        &command.command_id,
        OutcomeStatus::Succeeded,
        false
    )));
    assert!(handle.try_command_answer(answer(
        "a",
        "run9.s0.a1.0",
        OutcomeStatus::Succeeded,
        false
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bench.stored(1).status, RunStatus::Running);
    assert!(handle.try_command_answer(answer(
        "a",
        &command.command_id,
        OutcomeStatus::Succeeded,
        false
    )));
    let done = bench.stored_until(1, |r| r.status.is_final()).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert!(matches!(
        &done.steps[0].attempts[0].outcome,
        Some(Outcome::Succeeded { detail }) if detail.starts_with("succeeded on a after 5 ms, exit code 0")
    ));
    // Counted for /metrics once it ended.
    let counts = handle.snapshot().runbooks;
    assert_eq!(counts.ended.get(&("fo".to_owned(), "succeeded")), Some(&1));
    assert_eq!(
        counts
            .steps
            .get(&("fo".to_owned(), "agent_action".to_owned(), "succeeded")),
        Some(&1)
    );
    assert!(counts.running.is_empty());
    // A repeated answer (a re-send answered again) changes nothing.
    assert!(handle.try_command_answer(answer(
        "a",
        &command.command_id,
        OutcomeStatus::Failed,
        true
    )));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bench.stored(1), done);
}

#[tokio::test]
async fn an_unanswered_command_is_resumed_after_a_restart_and_an_unknown_agent_fails() {
    let config = config(PROMOTE);
    let bench = Bench::new(&config, Agents::Known);
    let run = bench.start("fo").await;
    let sent = run.steps[0].attempts[0].command.clone().expect("stored");

    // Restarted: the same attempt goes on with the stored command (not failed, not re-signed).
    let bench = bench.restart(&config, Agents::Known).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = bench.stored(1);
    assert_eq!(resumed.status, RunStatus::Running);
    assert_eq!(resumed.steps[0].attempts.len(), 1);
    assert_eq!(resumed.steps[0].attempts[0].command.as_ref(), Some(&sent));
    assert!(bench.handle.try_command_answer(answer(
        "a",
        &sent.command_id,
        OutcomeStatus::Succeeded,
        true
    )));
    let done = bench.stored_until(1, |r| r.status.is_final()).await;
    assert!(
        matches!(
            &done.steps[0].attempts[0].outcome,
            Some(Outcome::Succeeded { detail }) if detail.contains("answered from the agent's journal")
        ),
        "{done:?}"
    );

    // An agent the collector never heard of: the attempt fails at once, naming it.
    let bench = Bench::new(&config, Agents::Unknown);
    let run = bench.start("fo").await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        matches!(
            &run.steps[0].attempts[0].outcome,
            Some(Outcome::Failed { reason }) if reason.contains("\"a\" has never connected")
        ),
        "{run:?}"
    );
}

/// A drill incident (incident 1 of `web`, opened inside drill run 5) triggers no incident
/// runbook: the drill's own run is the recovery under test.
#[tokio::test]
async fn a_drill_incident_triggers_no_incident_runbook() {
    let config = config(
        r#"
[[runbooks]]
id = "auto"
service = "web"
manual = false
on_incident = { rules = ["service_down"], min_priority = "P2", after = "0s" }
[[runbooks.steps]]
id = "tell"
kind = "notify"
webhook = "ops"
message = "failing over"
"#,
    );
    let (store, _) = super::tests::engine_with_one_open();
    let incidents = IncidentStore::new(store.clone());
    let mut incident = incidents.get(1).expect("read").expect("incident 1");
    incident.drill = Some(5);
    let mut batch = StoreBatch::default();
    IncidentStore::put(&mut batch, &incident);
    incidents.commit(batch).expect("commit");

    let bench = Bench::on(&store, &config, Agents::NoLink);
    // The trigger's `after` is 0 s: a run would be stored on the task's first look; give it
    // well past that, then check that none was.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(RunStore::new(store.clone()).get(1).expect("read"), None);
    // The same incident outside a drill does trigger (the control).
    bench.stop.cancel();
    bench.task.await.expect("task ends");
    let (store, _) = super::tests::engine_with_one_open();
    let bench = Bench::on(&store, &config, Agents::NoLink);
    let run = bench.stored_until(1, |_| true).await;
    assert_eq!(run.trigger, Trigger::Incident { incident: 1 });
}
