//! Graceful shutdown on SIGTERM, both binaries: they exit 0, announce themselves offline on their
//! retained state topics, and lose nothing — what the agent measured before SIGTERM is stored by
//! the collector once both run again.

use std::time::Duration;

use watchstand_tests::mqtt::TestClient;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{wait_for, HttpTarget};

const SERVICES: &str = r#"
[[services]]
id = "web"
name = "Web"
criticality = "low"
rto = "1h"
rpo = "1h"
probes = ["agent-1/web"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;

/// The retained payload on `topic`, as JSON.
async fn retained(url: &str, topic: &str) -> serde_json::Value {
    let mut c = TestClient::connect(url, "retained-reader").await;
    c.subscribe(topic).await;
    let p = c
        .next(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("nothing retained on {topic}"));
    serde_json::from_slice(&p.payload).expect("JSON state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_both_binaries_cleanly_offline_and_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let target = HttpTarget::start().await;
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        SERVICES,
    );
    let mut collector = spec.spawn().await;
    let probes = format!(
        "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\n",
        target.url()
    );
    let agent_spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &mosquitto.url(),
        &probes,
    );
    let mut agent = agent_spec.spawn().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The collector stops first: the agent goes on measuring into its outbox.
    assert!(collector.terminate(), "collector exits 0 on SIGTERM");
    let state = retained(&mosquitto.url(), "watchstand/v1/_collector/test/state").await;
    assert_eq!(state["state"], "offline", "{state}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = agent.health().await;
    let boot = before["boot"].as_str().unwrap().to_owned();
    assert!(
        before["outbox"]["entries"].as_u64().unwrap() >= 10,
        "measured while the collector was away: {before}"
    );
    assert!(agent.terminate(), "agent exits 0 on SIGTERM");
    let status = retained(&mosquitto.url(), "watchstand/v1/lab/agent-1/status").await;
    assert_eq!(status["state"], "offline", "{status}");
    let hits_at_stop = target.hits();

    // Both again: the agent's earlier boot is delivered in full.
    let collector = spec.spawn().await;
    let agent = agent_spec.spawn().await;
    let h = wait_for(
        "the earlier boot acknowledged and trimmed",
        Duration::from_secs(30),
        || async {
            let h = agent.health().await;
            h["watermarks"].get(&boot).is_none().then_some(h)
        },
    )
    .await;
    let record = collector.get("/api/v1/agents/agent-1").await;
    let earlier = record["boots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["boot"] == boot.as_str())
        .cloned()
        .expect("earlier boot known");
    eprintln!("SIGTERM: earlier boot {earlier}, checks served before the stop {hits_at_stop}, agent now {h}");
    assert_eq!(earlier["missing"], 0, "{earlier}");
    // Every check the target served before the agent stopped is a stored result (seqs are
    // shared with capacity samples, so the watermark is at least the number of checks).
    assert!(
        earlier["watermark"].as_u64().unwrap() >= hits_at_stop,
        "{earlier} vs {hits_at_stop} checks"
    );
}
