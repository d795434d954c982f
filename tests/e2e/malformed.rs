//! Bad input on the results topic: each of 26 kinds of malformed payload is counted under its
//! reason, ingest goes on (a valid batch after the garbage is stored), and what was stored
//! before is still there.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use watchstand_tests::mqtt::TestClient;
use watchstand_tests::process::{BrokerChoice, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for};

const TOPIC: &str = "watchstand/v1/lab/agent-x/results";

const SERVICES: &str = r#"
[[services]]
id = "x"
name = "X"
criticality = "low"
rto = "1h"
rpo = "1h"
probes = ["agent-x/p"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;

/// A valid batch with results at `seqs`, observed `now`.
fn batch(boot: &str, seqs: &[u64], now: u64) -> Value {
    let results: Vec<Value> = seqs
        .iter()
        .map(|s| {
            json!({"seq": s, "probe": "p", "kind": "http", "target": "http://127.0.0.1/", "observed_ms": now - 1_000 + s,
                   "interval_ms": 1000, "state": "up", "latency_us": 1500})
        })
        .collect();
    json!({"v": 1, "site": "lab", "agent": "agent-x", "boot": boot, "results": results})
}

/// `batch` with one field of the first result replaced.
fn with_result(field: &str, value: Value, now: u64) -> Vec<u8> {
    let mut b = batch("b1", &[100], now);
    b["results"][0][field] = value;
    serde_json::to_vec(&b).unwrap()
}

/// `batch` with one top-level field replaced.
fn with_top(field: &str, value: Value, now: u64) -> Vec<u8> {
    let mut b = batch("b1", &[100], now);
    b[field] = value;
    serde_json::to_vec(&b).unwrap()
}

/// (name, topic, payload, expected reason).
fn cases(now: u64) -> Vec<(&'static str, &'static str, Vec<u8>, &'static str)> {
    let valid = serde_json::to_vec(&batch("b1", &[100], now)).unwrap();
    let text = String::from_utf8(valid.clone()).unwrap();
    let mut huge = batch("b1", &[100], now);
    huge["padding"] = json!("x".repeat(300 * 1024));
    vec![
        ("garbage", TOPIC, b"hello, collector".to_vec(), "not_json"),
        ("empty payload", TOPIC, Vec::new(), "truncated"),
        (
            "truncated JSON",
            TOPIC,
            valid[..valid.len() / 2].to_vec(),
            "truncated",
        ),
        ("JSON array", TOPIC, b"[1,2,3]".to_vec(), "schema"),
        ("JSON null", TOPIC, b"null".to_vec(), "schema"),
        (
            "results not a list",
            TOPIC,
            with_top("results", json!("nope"), now),
            "schema",
        ),
        (
            "seq as string",
            TOPIC,
            with_result("seq", json!("100"), now),
            "schema",
        ),
        (
            "unknown state",
            TOPIC,
            with_result("state", json!("sideways"), now),
            "schema",
        ),
        (
            "negative latency",
            TOPIC,
            with_result("latency_us", json!(-5), now),
            "schema",
        ),
        (
            "negative interval",
            TOPIC,
            with_result("interval_ms", json!(-1000), now),
            "schema",
        ),
        (
            "fractional latency",
            TOPIC,
            with_result("latency_us", json!(1.5), now),
            "schema",
        ),
        (
            "NaN latency",
            TOPIC,
            text.replace("\"latency_us\":1500", "\"latency_us\":NaN")
                .into_bytes(),
            "not_json",
        ),
        (
            "unknown version",
            TOPIC,
            with_top("v", json!(2), now),
            "unsupported_version",
        ),
        (
            "version as text",
            TOPIC,
            with_top("v", json!("one"), now),
            "unsupported_version",
        ),
        (
            "agent disagrees with topic",
            TOPIC,
            with_top("agent", json!("agent-y"), now),
            "topic_mismatch",
        ),
        (
            "site disagrees with topic",
            TOPIC,
            with_top("site", json!("other"), now),
            "topic_mismatch",
        ),
        (
            "oversized",
            TOPIC,
            serde_json::to_vec(&huge).unwrap(),
            "too_large",
        ),
        (
            "invalid UTF-8",
            TOPIC,
            vec![b'{', 0xff, 0xfe, b'}'],
            "not_utf8",
        ),
        (
            "observed at epoch 0",
            TOPIC,
            with_result("observed_ms", json!(0), now),
            "timestamp_out_of_range",
        ),
        (
            "observed 10 days ahead",
            TOPIC,
            with_result("observed_ms", json!(now + 10 * 86_400_000), now),
            "timestamp_out_of_range",
        ),
        (
            "seq going backwards within a boot",
            TOPIC,
            serde_json::to_vec(&{
                let mut b = batch("b1", &[105, 103], now);
                b["results"][1]["observed_ms"] = json!(now);
                b
            })
            .unwrap(),
            "seq_not_increasing",
        ),
        (
            "seq 0",
            TOPIC,
            with_result("seq", json!(0), now),
            "invalid_value",
        ),
        (
            "zero interval",
            TOPIC,
            with_result("interval_ms", json!(0), now),
            "invalid_value",
        ),
        (
            "empty batch",
            TOPIC,
            with_top("results", json!([]), now),
            "empty_batch",
        ),
        (
            "bad probe id",
            TOPIC,
            with_result("probe", json!("bad probe!"), now),
            "invalid_id",
        ),
        (
            "bad boot id",
            TOPIC,
            with_top("boot", json!("a/b"), now),
            "invalid_id",
        ),
        (
            "id not valid in topic",
            "watchstand/v1/lab/bad id!/results",
            valid,
            "unknown_topic",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_payload_is_counted_by_reason_and_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerChoice::Embedded(free_addr());
    let collector = CollectorSpec::new(dir.path(), broker, SERVICES)
        .spawn()
        .await;
    let mut client = TestClient::connect(&collector.broker_url(), "malformed-publisher").await;

    let now = now_ms();
    client
        .publish(TOPIC, serde_json::to_vec(&batch("b1", &[1], now)).unwrap())
        .await;
    wait_for(
        "the first valid batch stored",
        Duration::from_secs(10),
        || async {
            let h = collector.health().await;
            (h["ingest"]["results_stored"] == 1).then_some(())
        },
    )
    .await;

    let cases = cases(now);
    assert!(cases.len() >= 20);
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, topic, payload, reason) in &cases {
        eprintln!(
            "publishing {name} ({} bytes) → expect {reason}",
            payload.len()
        );
        client.publish(topic, payload.clone()).await;
        *expected.entry(reason).or_default() += 1;
    }
    // Ingest goes on: a valid batch after the garbage is stored.
    client
        .publish(
            TOPIC,
            serde_json::to_vec(&batch("b1", &[2], now_ms())).unwrap(),
        )
        .await;
    let health = wait_for(
        "the valid batch after the garbage",
        Duration::from_secs(10),
        || async {
            let h = collector.health().await;
            (h["ingest"]["results_stored"] == 2).then_some(h)
        },
    )
    .await;

    let rejected = &health["ingest"]["rejected"];
    for (reason, n) in &expected {
        assert_eq!(rejected[reason], *n, "reason {reason}: {rejected}");
    }
    let total: u64 = expected.values().sum();
    assert_eq!(health["ingest"]["rejected_total"], total, "{health}");
    assert_eq!(health["ingest"]["messages"], total + 2, "{health}");
    eprintln!(
        "{} malformed payloads over {} reasons, all counted: {rejected}",
        cases.len(),
        expected.len()
    );

    // Nothing stored was lost: both valid results are in the SLA.
    let sla = collector.sla("x", now - 60_000, now_ms() + 1_000).await;
    assert_eq!(sla["checks"], 2, "{sla}");
    let agent = collector
        .agent("agent-x")
        .await
        .expect("agent-x registered");
    assert_eq!(agent["stored"], 2, "{agent}");

    // The reasons are in /metrics too.
    let (status, metrics) = collector.get_raw("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("watchstand_ingest_rejected_total{reason=\"topic_mismatch\"} 2"),
        "{metrics}"
    );
}
