//! The engine task's drill handling with a real store: a drill does not start while its
//! service has an open incident (stored `skipped` with the reason), a drill due on its
//! schedule fires from the task's timer, and — on a virtual clock handed to the drill timer —
//! a scheduled drill fires exactly once at its planned time, never before.

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

/// Starts the engine task over `store` with `config`'s runbooks and drills; the drills'
/// schedules are loaded as at `schedules_at` (a virtual time), or as the collector loads
/// them at start when `None`.
fn start_task(
    config: &crate::config::CollectorConfig,
    store: &Store,
    schedules_at: Option<u64>,
) -> (EngineHandle, CancellationToken, tokio::task::JoinHandle<()>) {
    let engine = Engine::load(
        IncidentStore::new(store.clone()),
        IncidentSettings::default(),
        std::collections::HashMap::new(),
        config.webhooks.clone(),
    )
    .expect("engine");
    let (handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    inbox.load_runbooks(&config.runbooks, store).expect("runs");
    match schedules_at {
        Some(at) => {
            inbox.drills = Some(drills::Drills::load(&config.drills, store, at).expect("drills"));
        }
        None => inbox.load_drills(&config.drills, store).expect("drills"),
    }
    let deps = EngineDeps {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue.clone()),
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: Duration::from_secs(86_400),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(inbox, engine, deps, stop.clone()));
    (handle, stop, task)
}

#[tokio::test]
async fn a_drill_is_skipped_while_its_service_has_an_open_incident_and_fires_on_schedule() {
    let config = config();
    let (store, _) = super::tests::engine_with_one_open();
    // Loaded as if a minute ago, so the every-minute schedule is already due.
    let (handle, stop, task) = start_task(&config, &store, Some(now_ms().saturating_sub(61_000)));
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
    let (handle, stop, task) = start_task(&config, &store, Some(now_ms()));
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
    let (handle, stop, task) = start_task(&config, &store, Some(now_ms()));
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

/// Epoch ms of an RFC 3339 instant.
fn at(text: &str) -> u64 {
    u64::try_from(
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("date")
            .timestamp_millis(),
    )
    .expect("after 1970")
}

/// Services `web` (incident 1 open, from the fixture) and `api`, each with a drill on a
/// schedule: `web-dr` monthly on the first Monday at 10:00, `api-dr` weekly on Monday 12:00.
fn scheduled_config() -> crate::config::CollectorConfig {
    let mut text = String::from("[collector]\ndata_dir = \"d\"\n");
    for (svc, schedule) in [
        ("web", "monthly first monday 10:00"),
        ("api", "0 12 * * MON"),
    ] {
        text.push_str(&format!(
            "[[services]]\nid = \"{svc}\"\nname = \"{svc}\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/{svc}\"]\nslo = {{ availability = 99.9 }}\n\
             [[runbooks]]\nid = \"{svc}-rb\"\nservice = \"{svc}\"\n[[runbooks.steps]]\nkind = \"inject\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n\
             [[drills]]\nid = \"{svc}-dr\"\nservice = \"{svc}\"\nrunbook = \"{svc}-rb\"\nschedule = \"{schedule}\"\n"
        ));
    }
    let raw = crate::config::from_str(&text, Path::new("t.toml")).expect("parses");
    crate::config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid")
}

/// The stored runs of drill `drill`.
fn runs_of(store: &Store, drill: &str) -> Vec<crate::drill::DrillRun> {
    DrillStore::new(store.clone())
        .all()
        .expect("read")
        .into_iter()
        .filter(|r| r.drill == drill)
        .collect()
}

#[tokio::test]
async fn scheduled_drills_fire_once_at_their_virtual_time_and_skip_while_an_incident_is_open() {
    let config = scheduled_config();
    let (store, engine) = super::tests::engine_with_one_open();
    let (_handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    inbox.load_runbooks(&config.runbooks, &store).expect("runs");
    // The collector started on Saturday 2027-02-27; the first Monday of March is the 1st.
    let t0 = at("2027-02-27T00:00:00Z");
    inbox.drills = Some(drills::Drills::load(&config.drills, &store, t0).expect("drills"));
    let deps = EngineDeps {
        store: store.clone(),
        catalogue: Arc::new(config.catalogue.clone()),
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: Duration::from_secs(86_400),
    };
    let mut task = Task::new(&mut inbox, engine, deps).expect("task");
    let web_fire = at("2027-03-01T10:00:00Z");
    let api_fire = at("2027-03-01T12:00:00Z");
    assert_eq!(task.drills.next_due(), Some(web_fire));

    // Not before its time.
    task.drill_timer(t0).await;
    task.drill_timer(web_fire - 1).await;
    assert!(runs_of(&store, "web-dr").is_empty(), "fired early");

    // At its time: one run, skipped because web has an open incident.
    task.drill_timer(web_fire).await;
    let web = runs_of(&store, "web-dr");
    assert_eq!(web.len(), 1, "{web:#?}");
    assert_eq!(
        web[0].trigger,
        DrillTrigger::Schedule {
            planned_ms: web_fire
        }
    );
    assert_eq!(web[0].status, DrillStatus::Skipped);
    assert_eq!(
        web[0].started_ms, web_fire,
        "stamped with the timer's clock"
    );
    assert_eq!(
        web[0].skipped.as_deref(),
        Some("incident 1 (service_down) of service \"web\" is open")
    );
    // Not twice: the same instant again, a second later, up to just before the next drill.
    for now in [web_fire, web_fire + 1_000, api_fire - 1] {
        task.drill_timer(now).await;
    }
    assert_eq!(runs_of(&store, "web-dr").len(), 1, "fired twice");
    assert!(runs_of(&store, "api-dr").is_empty(), "api fired early");

    // api has no incident: its drill starts (its runbook run too) at its time.
    task.drill_timer(api_fire).await;
    task.drill_timer(api_fire + 60_000).await;
    let api = runs_of(&store, "api-dr");
    assert_eq!(api.len(), 1, "{api:#?}");
    assert_eq!(
        api[0].trigger,
        DrillTrigger::Schedule {
            planned_ms: api_fire
        }
    );
    assert_eq!(api[0].status, DrillStatus::Running, "{api:#?}");
    assert!(api[0].run.is_some(), "the runbook started");
    // A week later the first is still in progress (nothing drives its runbook here): skipped.
    let next_week = api_fire + 7 * 86_400_000;
    task.drill_timer(next_week).await;
    let api = runs_of(&store, "api-dr");
    assert_eq!(api.len(), 2, "{api:#?}");
    assert_eq!(api[1].status, DrillStatus::Skipped);
    assert_eq!(
        api[1].skipped.as_deref(),
        Some(format!("drill run {} of service \"api\" is in progress", api[0].id).as_str())
    );

    // Once the incident is resolved, web's next monthly drill (first Monday of April) starts.
    task.engine
        .as_mut()
        .expect("engine")
        .resolve(1, "ana", "fixed", next_week)
        .expect("resolved");
    let april = at("2027-04-05T10:00:00Z");
    task.drill_timer(april - 1).await;
    assert_eq!(runs_of(&store, "web-dr").len(), 1, "fired early");
    task.drill_timer(april).await;
    let web = runs_of(&store, "web-dr");
    assert_eq!(web.len(), 2, "{web:#?}");
    assert_eq!(web[1].trigger, DrillTrigger::Schedule { planned_ms: april });
    assert_eq!(web[1].status, DrillStatus::Running, "{web:#?}");
}

#[test]
fn a_missed_stretch_of_firings_fires_once() {
    let config = scheduled_config();
    let store = Store::in_memory();
    let t0 = at("2027-02-27T00:00:00Z");
    let mut d = drills::Drills::load(&config.drills, &store, t0).expect("drills");
    // The timer woke three weeks late (a frozen host): each drill is due once, at its first
    // planned time, and the next ones are after the wake-up.
    let late = at("2027-03-20T00:00:00Z");
    let mut due = d.due(late);
    due.sort();
    assert_eq!(
        due,
        [
            ("api-dr".to_owned(), at("2027-03-01T12:00:00Z")),
            ("web-dr".to_owned(), at("2027-03-01T10:00:00Z")),
        ]
    );
    assert!(d.due(late).is_empty());
    assert_eq!(d.next_due(), Some(at("2027-03-22T12:00:00Z")));
}

/// Waits (bounded) until drill run `id` is stored and satisfies `f`.
async fn drill_until(
    store: &Store,
    id: u64,
    f: impl Fn(&crate::drill::DrillRun) -> bool,
) -> crate::drill::DrillRun {
    let ds = DrillStore::new(store.clone());
    for _ in 0..200 {
        if let Some(d) = ds.get(id).expect("read").filter(|d| f(d)) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("drill run {id} never got there: {:#?}", ds.get(id));
}

#[tokio::test]
async fn a_drill_whose_run_id_was_lost_to_a_crash_finds_its_run_and_restores() {
    let text = "[collector]\ndata_dir = \"d\"\n[[services]]\nid = \"api\"\nname = \"Api\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/api\"]\nslo = { availability = 99.9 }\n\
                [[runbooks]]\nid = \"rb\"\nservice = \"api\"\n[[runbooks.steps]]\nid = \"break\"\nkind = \"inject\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n[[runbooks.steps]]\nid = \"back\"\nkind = \"restore\"\nvia = \"exec\"\nargv = [\"/bin/true\"]\n\
                [[drills]]\nid = \"dr\"\nservice = \"api\"\nrunbook = \"rb\"\nconfirm = \"100ms\"\n";
    let raw = crate::config::from_str(text, Path::new("t.toml")).expect("parses");
    let config = crate::config::validate(raw, Path::new("t.toml"), Path::new(".")).expect("valid");
    let store = Store::in_memory();
    // What a SIGKILL between the two commits leaves: the drill stored running without its
    // run's id, and the drill book's run stored in progress (its inject attempt in flight).
    let now = now_ms();
    let drill = crate::drill::DrillRun {
        id: 1,
        drill: "dr".into(),
        service: "api".into(),
        runbook: "rb".into(),
        scenario: String::new(),
        participants: Vec::new(),
        confirm_ms: 100,
        max_duration_ms: None,
        notify: false,
        trigger: DrillTrigger::Manual { by: "ana".into() },
        status: DrillStatus::Running,
        started_ms: now,
        inject_ms: None,
        run: None,
        restore_run: None,
        aborted: None,
        skipped: None,
        deviations: Vec::new(),
        ended_ms: None,
        settle_until_ms: None,
        finished_ms: None,
        outcome: None,
        sealed_sha256: None,
        review: None,
    };
    DrillStore::new(store.clone())
        .put(&drill)
        .expect("drill stored");
    let books: Vec<crate::runbook::Runbook> = config
        .runbooks
        .iter()
        .flat_map(crate::runbook::Runbook::engine_books)
        .collect();
    let book = books
        .iter()
        .find(|b| b.id == "rb:drill")
        .expect("drill book");
    let (started, _) = crate::runbook::run::Run::start(
        7,
        book,
        crate::runbook::run::Trigger::Drill { drill_run: 1 },
        now,
    );
    let runs = crate::runbook::store::RunStore::new(store.clone());
    let mut batch = crate::store::StoreBatch::default();
    crate::runbook::store::RunStore::put(&mut batch, &started, 8);
    runs.commit(batch).expect("run stored");

    let (_handle, stop, task) = start_task(&config, &store, None);
    let done = drill_until(&store, 1, |d| d.status == DrillStatus::Finished).await;
    // Not aborted as if its runbook never started: the run was found, its inject (in flight at
    // the crash) failed "restarted", and the restore steps ran on their own.
    assert_eq!(done.aborted, None, "{done:#?}");
    assert_eq!(done.run, Some(7), "{done:#?}");
    assert_eq!(done.inject_ms, Some(now));
    let restore = done.restore_run.expect("a restore run");
    let restore = runs.get(restore).expect("read").expect("stored");
    assert_eq!(restore.runbook, "rb:restore");
    assert_eq!(
        restore.status,
        crate::runbook::run::RunStatus::Succeeded,
        "{restore:#?}"
    );
    stop.cancel();
    task.await.expect("task ends");
}
