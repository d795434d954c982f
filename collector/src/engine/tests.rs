//! The engine task with a real in-memory store: operator actions answered through their reply
//! channel and seen in the snapshot, a burst of hand-overs coalesced into one evaluation.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::incident::engine::Engine;
use crate::incident::policy::IncidentSettings;
use crate::incident::record::{Impact, Incident, IncidentStore};
use crate::incident::{IncidentState, Priority, Rule};
use crate::store::StoreBatch;

fn catalogue() -> Arc<Catalogue> {
    let text = "[collector]\ndata_dir = \"d\"\n[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"a/p\"]\nslo = { availability = 99.9 }\n";
    let raw = crate::config::from_str(text, Path::new("t.toml")).expect("parses");
    Arc::new(
        crate::config::validate(raw, Path::new("t.toml"), Path::new("."))
            .expect("valid")
            .catalogue,
    )
}

/// A store holding one open service-down incident of `web` (id 1), and its engine.
pub(super) fn engine_with_one_open() -> (Store, Engine) {
    let store = Store::in_memory();
    let incidents = IncidentStore::new(store.clone());
    let mut batch = StoreBatch::default();
    IncidentStore::put(
        &mut batch,
        &Incident {
            id: 1,
            dedup_key: "service_down:web".into(),
            service: "web".into(),
            agent: None,
            rule: Rule::ServiceDown,
            priority: Priority::P2,
            state: IncidentState::Open,
            flapping: false,
            inhibited: false,
            inhibited_by: None,
            detected_ms: 1_000,
            acknowledged_ms: None,
            acknowledged_by: None,
            resolved_ms: None,
            resolved_by: None,
            resolution_note: None,
            impact: Impact {
                services: vec!["web".into()],
                scope: "full".into(),
            },
            summary: "down".into(),
            last_notified_ms: None,
            timeline: Vec::new(),
            held_until_clear: false,
            metric: None,
            late: false,
            found_late_ms: None,
            drill: None,
        },
    );
    incidents.commit(batch).expect("commit");
    let engine = Engine::load(
        incidents,
        IncidentSettings::default(),
        HashMap::new(),
        Vec::new(),
    )
    .expect("engine");
    (store, engine)
}

fn deps(store: Store) -> EngineDeps {
    EngineDeps {
        store,
        catalogue: catalogue(),
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: Duration::from_secs(86_400),
    }
}

#[tokio::test]
async fn operator_actions_are_answered_on_their_reply_and_readers_see_the_snapshot() {
    let (store, engine) = engine_with_one_open();
    let (handle, inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    assert_eq!(handle.snapshot().active.len(), 1, "loaded before the start");
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(inbox, engine, deps(store.clone()), stop.clone()));

    let acked = handle.acknowledge(1, "ana", "on it").await.expect("ack");
    assert_eq!(acked.state, IncidentState::Acknowledged);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("ana"));
    assert_eq!(
        handle.snapshot().active[0].state,
        IncidentState::Acknowledged,
        "the snapshot is published before the reply"
    );
    let stored = IncidentStore::new(store.clone())
        .get(1)
        .expect("read")
        .expect("stored");
    assert_eq!(stored.state, IncidentState::Acknowledged, "committed");

    let resolved = handle.resolve(1, "ana", "fixed").await.expect("resolve");
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert!(handle.snapshot().active.is_empty());
    assert!(matches!(
        handle.resolve(1, "bo", "again").await,
        Err(ActionError::AlreadyResolved(1))
    ));
    assert!(matches!(
        handle.acknowledge(7, "bo", "").await,
        Err(ActionError::NotFound(7))
    ));

    stop.cancel();
    task.await.expect("task ends");
    assert!(matches!(
        handle.acknowledge(1, "bo", "").await,
        Err(ActionError::EngineStopped)
    ));
}

#[tokio::test]
async fn a_burst_of_hand_overs_queued_during_a_round_makes_one_evaluation() {
    let (store, engine) = engine_with_one_open();
    let (handle, inbox) = channel(EngineSnapshot::default());
    // 200 ingest batches with changes arrive before the task gets to run.
    for i in 0..200u64 {
        handle
            .try_probes_changed(
                BTreeSet::from(["web".to_owned()]),
                LateRanges::from([("web".to_owned(), (i, i + 1))]),
            )
            .expect("room");
    }
    let mut snapshots = handle.watch();
    tokio::spawn(run(inbox, engine, deps(store), CancellationToken::new()));
    tokio::time::timeout(
        Duration::from_secs(10),
        snapshots.wait_for(|s| s.evaluations >= 1),
    )
    .await
    .expect("evaluated within 10 s")
    .expect("task running");
    // Let any further round run if one were to come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handle.snapshot().evaluations,
        1,
        "one round for the whole burst"
    );
    // And the next change makes exactly one more.
    handle
        .try_probes_changed(BTreeSet::from(["web".to_owned()]), LateRanges::new())
        .expect("room");
    tokio::time::timeout(
        Duration::from_secs(10),
        snapshots.wait_for(|s| s.evaluations >= 2),
    )
    .await
    .expect("evaluated within 10 s")
    .expect("task running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.snapshot().evaluations, 2);
}
