//! The first hour of a fresh install, end to end: a restarted agent checks its probes right
//! away (jitter within a second, not a random point of a whole interval), so a restart leaves
//! less than one probe interval unmonitored.

use std::time::Duration;

use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for, HttpTarget};

const SERVICES: &str = r#"
[[services]]
id = "web"
name = "Web"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-1/web"]
slo = { availability = 99.9, window = "1d" }
"#;

/// Probe interval of the test. The bound asserted is half of it: with the old first run at a
/// random point of a whole interval, a restart failed it more often than not.
const INTERVAL_S: u64 = 10;

/// `observed_ms` of the newest stored result of `agent-1/web` at or after `since`, if any.
async fn result_since(collector: &watchstand_tests::process::Collector, since: u64) -> Option<u64> {
    let rows: Value = collector
        .get_if_found(&format!("/api/v1/agents/agent-1/results?from={since}"))
        .await?;
    rows.as_array()?
        .iter()
        .filter_map(|r| r["observed_ms"].as_u64())
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_leaves_less_than_one_interval_unmonitored() {
    let dir = tempfile::tempdir().unwrap();
    let target = HttpTarget::start().await;
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        SERVICES,
    );
    let mut collector = spec.spawn().await;
    let probes = format!(
        "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"{INTERVAL_S}s\"\ntimeout = \"2s\"\n",
        target.url()
    );
    let agent_spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    );
    let mut agent = agent_spec.spawn().await;
    let started = now_ms();
    wait_for("the first result", Duration::from_secs(20), || async {
        result_since(&collector, started.saturating_sub(1_000)).await
    })
    .await;

    // Restart: SIGTERM (a clean stop announces offline), then start again at once.
    let stopped_at = now_ms();
    assert!(agent.terminate(), "the agent stops on SIGTERM");
    // Taken before the spawn, which waits for the agent to answer: its first check may come
    // before that wait ends.
    let restarted_at = now_ms();
    let mut agent = agent_spec.spawn().await;
    let first_after = wait_for(
        "the first result after the restart",
        Duration::from_secs(20),
        || async { result_since(&collector, restarted_at).await },
    )
    .await;
    // Well within one interval of the start (the jitter is at most 1 s; half an interval is
    // generous for a loaded machine).
    assert!(
        first_after < restarted_at + INTERVAL_S * 1_000 / 2,
        "first check {} ms after the restart",
        first_after - restarted_at
    );

    // Over the restart window, up to just after the first new result, the unmonitored time is
    // the stop, the start and the first check's jitter: well under one interval.
    let to = first_after + 1_000;
    wait_for("the window to pass", Duration::from_secs(10), || async {
        (now_ms() > to + 500).then_some(())
    })
    .await;
    let sla = collector
        .sla("web", stopped_at.saturating_sub(500), to)
        .await;
    let unmonitored = sla["unmonitored_s"].as_f64().unwrap();
    assert!(
        unmonitored < INTERVAL_S as f64 / 2.0,
        "unmonitored {unmonitored} s over the restart (interval {INTERVAL_S} s): {sla}"
    );
    eprintln!(
        "restart: stop→first result {} ms, unmonitored {unmonitored} s",
        first_after - stopped_at
    );
    assert!(agent.terminate());
    assert!(collector.terminate());
}
