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
