//! Clean stop (issue 11, point 3): a collector on Mosquitto stopped with SIGTERM exits 0 within
//! 1 s, logs no warning on the way out, and opens no second session — its DISCONNECT ends the
//! MQTT driver, so nothing reconnects during the stop.

use std::time::Duration;

use watchstand_tests::process::{BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::wait_for;

/// Lines of `log` at WARN or above.
fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_an_idle_collector_within_a_second_with_one_session_and_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    );
    let mut collector = spec.spawn().await;
    wait_for(
        "the collector connected (health ok)",
        Duration::from_secs(20),
        || async { (collector.health().await["status"] == "ok").then_some(()) },
    )
    .await;
    // Idle for a moment: subscriptions and the online state are through.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (clean, took) = collector.terminate_within(Duration::from_secs(10));
    let log = collector.log_text();
    eprintln!("clean stop: exit 0 = {clean}, {took:?}");
    assert!(clean, "exit 0 on SIGTERM; log:\n{log}");
    assert!(
        took < Duration::from_secs(1),
        "an idle collector stops within 1 s, took {took:?}; log:\n{log}"
    );
    assert_eq!(
        warnings(&log),
        Vec::<&str>::new(),
        "no warning on a clean stop"
    );

    // Give Mosquitto a moment to log the disconnect, then count the collector's sessions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mlog = broker.log_text();
    let sessions = mlog
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains("watchstand-collector-test"))
        .count();
    assert_eq!(
        sessions, 1,
        "exactly one collector session; Mosquitto log:\n{mlog}"
    );
    assert!(
        mlog.lines()
            .any(|l| l.contains("watchstand-collector-test") && l.contains("disconnected")),
        "Mosquitto saw the collector disconnect; log:\n{mlog}"
    );
    assert!(
        !mlog.contains("exceeded timeout"),
        "no keep-alive timeout; log:\n{mlog}"
    );
}
