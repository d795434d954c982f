//! The engine task's drill handling with a real store: a drill does not start while its
//! service has an open incident (stored `skipped` with the reason), and a drill due on its
//! schedule fires from the task's timer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::drill::{DrillStatus, DrillStore, DrillTrigger};
use crate::incident::engine::Engine;
use crate::incident::policy::IncidentSettings;
use crate::incident::record::IncidentStore;

fn config() -> crate::config::CollectorConfig {
    let text = "[collector]\ndata_dir = \"d\"\n[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"critical\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.9 }\n[[runbooks]]\nid = \"rb\"\nservice = \"web\"\n[[runbooks.steps]]\nkind = \"inject\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n[[drills]]\nid = \"dr\"\nservice = \"web\"\nrunbook = \"rb\"\nschedule = \"* * * * *\"\n";
    let raw = crate::config::from_str(text, Path::new("t.toml")).expect("parses");
    crate::config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid")
}

#[tokio::test]
async fn a_drill_is_skipped_while_its_service_has_an_open_incident_and_fires_on_schedule() {
    let config = config();
    let (store, _) = super::tests::engine_with_one_open();
    let engine = Engine::load(
        IncidentStore::new(store.clone()),
        IncidentSettings::default(),
        std::collections::HashMap::new(),
        Vec::new(),
    )
    .expect("engine");
    let (handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    inbox.load_runbooks(&config.runbooks, &store).expect("runs");
    // Loaded as if a minute ago, so the every-minute schedule is already due.
    inbox.drills = Some(
        drills::Drills::load(&config.drills, &store, now_ms().saturating_sub(61_000))
            .expect("drills"),
    );
    let deps = EngineDeps {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue.clone()),
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: Duration::from_secs(86_400),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(inbox, engine, deps, stop.clone()));
    let manual = handle.start_drill("dr", "ana").await.expect("stored");
    assert_eq!(manual.status, DrillStatus::Skipped);
    assert_eq!(
        manual.skipped.as_deref(),
        Some("incident 1 (service_down) of service \"web\" is open")
    );
    // The scheduled one fired from the timer, and was skipped for the same reason.
    let ds = DrillStore::new(store.clone());
    let mut scheduled = None;
    for _ in 0..100 {
        scheduled = ds
            .all()
            .expect("read")
            .into_iter()
            .find(|r| matches!(r.trigger, DrillTrigger::Schedule { .. }));
        if scheduled.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scheduled = scheduled.expect("the schedule fired");
    assert_eq!(scheduled.status, DrillStatus::Skipped);
    assert!(scheduled.skipped.expect("reason").contains("incident 1"));
    stop.cancel();
    task.await.expect("task ends");
}

/// A drill whose `rpo_check` step (a real program printing the lag) reads 90 s against an RPO
/// of 1 min: the reading is on the step, the RPO result is `not met`, and so is the verdict.
#[tokio::test]
async fn an_rpo_reading_over_the_rpo_makes_the_drill_not_met() {
    let text = "[collector]\ndata_dir = \"d\"\n[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"critical\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.9 }\n[[runbooks]]\nid = \"rb\"\nservice = \"web\"\n[[runbooks.steps]]\nkind = \"inject\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n[[runbooks.steps]]\nid = \"lag\"\nkind = \"rpo_check\"\nargv = [\"sh\", \"-c\", \"echo 90\"]\nreads = \"lag_s\"\ntimeout = \"10s\"\n[[drills]]\nid = \"dr\"\nservice = \"web\"\nrunbook = \"rb\"\nconfirm = \"200ms\"\n";
    let raw = crate::config::from_str(text, Path::new("t.toml")).expect("parses");
    let config = crate::config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid");
    let store = crate::store::Store::in_memory();
    let engine = Engine::load(
        IncidentStore::new(store.clone()),
        IncidentSettings::default(),
        std::collections::HashMap::new(),
        Vec::new(),
    )
    .expect("engine");
    let (handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    inbox.load_runbooks(&config.runbooks, &store).expect("runs");
    inbox.drills = Some(drills::Drills::load(&config.drills, &store, now_ms()).expect("drills"));
    let deps = EngineDeps {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue.clone()),
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: Duration::from_secs(86_400),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(inbox, engine, deps, stop.clone()));
    let started = handle.start_drill("dr", "ana").await.expect("stored");
    assert_eq!(started.status, DrillStatus::Running, "{started:?}");
    let ds = DrillStore::new(store.clone());
    let mut finished = None;
    for _ in 0..200 {
        finished = ds
            .get(started.id)
            .expect("read")
            .filter(|r| r.status == DrillStatus::Finished);
        if finished.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = finished.expect("the drill finished");
    let o = run.outcome.as_ref().expect("measured");
    let step = o.steps.iter().find(|s| s.id == "lag").expect("rpo step");
    let reading = step.rpo.as_ref().expect("a reading on the step");
    assert_eq!(
        (reading.lag_ms, reading.rpo_ms, reading.met),
        (90_000, 60_000, false)
    );
    assert_eq!(o.rpo.status, crate::drill::measure::RpoStatus::NotMet);
    assert_eq!((o.rpo.lag_s, o.rpo.rpo_s), (Some(90.0), 60.0));
    assert_eq!(o.verdict, crate::drill::measure::Verdict::NotMet);
    assert!(
        o.reason
            .ends_with("; RPO not met: recovery point 90.0 s over the RPO of 60.0 s (step \"lag\", lag_s = 90)"),
        "{}",
        o.reason
    );
    assert_eq!(
        run.sealed_sha256.as_deref(),
        Some(crate::report::continuity::content_hash(&run).as_str())
    );
    stop.cancel();
    task.await.expect("task ends");
}

/// Two services, each with a drill whose runbook injects, notifies `ops` and restores:
/// `web`'s drill does not notify, `api`'s does (`notify = true`).
fn paging_config() -> crate::config::CollectorConfig {
    let mut text = String::from(
        "[collector]\ndata_dir = \"d\"\n[[webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/hook\"\n",
    );
    for (service, probe, notify) in [("web", "p", false), ("api", "q", true)] {
        text.push_str(&format!(
            "[[services]]\nid = \"{service}\"\nname = \"{service}\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/{probe}\"]\nslo = {{ availability = 99.9 }}\n\
             [[runbooks]]\nid = \"rb-{service}\"\nservice = \"{service}\"\n\
             [[runbooks.steps]]\nkind = \"inject\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n\
             [[runbooks.steps]]\nkind = \"notify\"\nwebhook = \"ops\"\nmessage = \"failing over\"\n\
             [[runbooks.steps]]\nkind = \"restore\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n\
             [[drills]]\nid = \"dr-{service}\"\nservice = \"{service}\"\nrunbook = \"rb-{service}\"\nnotify = {notify}\n"
        ));
    }
    let raw = crate::config::from_str(&text, Path::new("t.toml")).expect("parses");
    crate::config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid")
}

/// Waits (bounded) until runbook run `id` has ended.
async fn ended_run(store: &Store, id: u64) -> crate::runbook::run::Run {
    let runs = crate::runbook::store::RunStore::new(store.clone());
    for _ in 0..200 {
        if let Some(r) = runs.get(id).expect("read") {
            if r.status.is_final() {
                return r;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {id} never ended: {:?}", runs.get(id));
}

#[tokio::test]
async fn a_drill_s_runbook_notices_are_held_unless_it_notifies_and_then_marked_drill() {
    let config = paging_config();
    let store = Store::in_memory();
    let engine = Engine::load(
        IncidentStore::new(store.clone()),
        IncidentSettings::default(),
        std::collections::HashMap::new(),
        config.webhooks.clone(),
    )
    .expect("engine");
    let (handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    inbox.load_runbooks(&config.runbooks, &store).expect("runs");
    inbox.drills = Some(drills::Drills::load(&config.drills, &store, now_ms()).expect("drills"));
    let deps = EngineDeps {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue.clone()),
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: Duration::from_secs(86_400),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(inbox, engine, deps, stop.clone()));
    let outbox = || {
        IncidentStore::new(store.clone())
            .all_pending()
            .expect("outbox")
    };

    // The quiet drill: its run goes through every step, and nothing is queued.
    let quiet = handle.start_drill("dr-web", "ana").await.expect("started");
    assert_eq!(quiet.status, DrillStatus::Running);
    let run = ended_run(&store, quiet.run.expect("runbook run")).await;
    assert_eq!(
        run.status,
        crate::runbook::run::RunStatus::Succeeded,
        "{run:?}"
    );
    assert_eq!(
        run.steps[1].attempts[0].outcome,
        Some(crate::runbook::run::Outcome::Succeeded {
            detail: "held: not sent to webhook \"ops\" (a drill without notify)".into()
        })
    );
    assert_eq!(outbox(), Vec::new());

    // The drill with `notify = true`: its notices go out, each marked with the drill run.
    let loud = handle.start_drill("dr-api", "ana").await.expect("started");
    ended_run(&store, loud.run.expect("runbook run")).await;
    let queued = outbox();
    let events: Vec<(&str, &str)> = queued
        .iter()
        .map(|n| (n.receiver.as_str(), n.event.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("ops", "runbook_started"),
            ("ops", "runbook_notify"),
            ("ops", "runbook_finished")
        ]
    );
    assert!(
        queued.iter().all(|n| n.body["drill"] == loud.id),
        "{queued:?}"
    );
    stop.cancel();
    task.await.expect("task ends");
}
