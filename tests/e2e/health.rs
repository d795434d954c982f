//! `/api/v1/health` tells the truth: with the broker gone the collector answers `failing` with
//! the reason `broker_disconnected` and HTTP 503 (and `/metrics` says the same), and `ok` again
//! once the broker is back.

use std::time::Duration;

use watchstand_tests::process::{BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::wait_for;

fn reasons(h: &serde_json::Value) -> Vec<String> {
    h["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["reason"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_failing_with_503_while_the_broker_is_down_and_ok_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(mut broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    );
    let collector = spec.spawn().await;
    wait_for("health ok", Duration::from_secs(20), || async {
        (collector.health().await["status"] == "ok").then_some(())
    })
    .await;
    let (code, _) = collector.get_raw("/api/v1/health").await;
    assert_eq!(code, 200);

    broker.kill();
    let h = wait_for("health failing", Duration::from_secs(30), || async {
        let h = collector.health().await;
        (h["status"] == "failing").then_some(h)
    })
    .await;
    assert_eq!(reasons(&h), vec!["broker_disconnected"], "{h}");
    // The fields operators and tests already read are still there.
    assert!(h["ingest"]["results_stored"].is_u64(), "{h}");
    let (code, body) = collector.get_raw("/api/v1/health").await;
    assert_eq!(code, 503, "{body}");
    let (_, metrics) = collector.get_raw("/metrics").await;
    assert!(metrics.contains("watchstand_health_status 2"), "{metrics}");
    assert!(
        metrics.contains("watchstand_health_reason{reason=\"broker_disconnected\"} 1"),
        "{metrics}"
    );

    let _broker = mosquitto.spawn().await.expect("Mosquitto again");
    let h = wait_for("health ok again", Duration::from_secs(30), || async {
        let h = collector.health().await;
        (h["status"] == "ok").then_some(h)
    })
    .await;
    assert!(reasons(&h).is_empty(), "{h}");
    let (code, _) = collector.get_raw("/api/v1/health").await;
    assert_eq!(code, 200);
    let (_, metrics) = collector.get_raw("/metrics").await;
    assert!(metrics.contains("watchstand_health_status 0"), "{metrics}");
}
