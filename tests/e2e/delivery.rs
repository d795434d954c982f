//! Delivery through a broker crash: Mosquitto is SIGKILLed for 10 s while probes run every
//! 200 ms, then restarted on the same port and store. Afterwards: no seq missing at the
//! collector (0 gaps, 0 lost), the agent's outbox drains to 0, the collector's watermark equals
//! the agent's highest seq. Then the collector is frozen past `resend_after`: the agent re-sends
//! from the stalled watermark and the copies show up as duplicates dropped, still 0 gaps.

use std::time::Duration;

use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{now_ms, wait_for, HttpTarget};

const SERVICES: &str = r#"
[[services]]
id = "fast"
name = "Fast probes"
criticality = "high"
rto = "5m"
rpo = "0s"
probes = ["agent-1/p1", "agent-1/p2", "agent-1/p3"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;

fn probes(target: &HttpTarget) -> String {
    (1..=3)
        .map(|i| {
            format!(
                "[[probes]]\nid = \"p{i}\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n",
                target.url()
            )
        })
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sigkill_for_10s_loses_nothing_and_the_outbox_drains() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(mut mosquitto) = spec.spawn().await else {
        return;
    };
    let target = HttpTarget::start().await;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(spec.url()),
        SERVICES,
    )
    .spawn()
    .await;
    let mut agent_spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &spec.url(),
        &probes(&target),
    );
    // Re-send soon when the watermark stalls, so the test sees the re-send path in seconds.
    agent_spec
        .extra
        .push_str("\n[outbox]\nresend_after = \"3s\"\n");
    let agent = agent_spec.spawn().await;
    let boot = agent.health().await["boot"].as_str().unwrap().to_owned();

    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = collector.health().await["ingest"]["results_stored"].clone();
    assert!(u(&before) >= 30, "results flow before the crash: {before}");

    mosquitto.kill();
    let killed = now_ms();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = agent.health().await;
    assert!(
        u(&held["outbox"]["entries"]) >= 100,
        "the outbox holds what was measured meanwhile: {held}"
    );
    let _restarted = spec.spawn().await.expect("Mosquitto restarts");
    let restarted_at = now_ms();
    eprintln!(
        "broker down for {} ms; outbox held {} entries",
        restarted_at - killed,
        held["outbox"]["entries"]
    );

    // Drain: the outbox empties (watermark covers everything) while probes keep running, so
    // wait for a moment when the outbox is empty or holds only the last linger's worth.
    let drained = wait_for("the outbox to drain", Duration::from_secs(60), || async {
        let h = agent.health().await;
        (u(&h["outbox"]["entries"]) <= 20).then_some(h)
    })
    .await;
    eprintln!(
        "outbox drained {} ms after the restart: {drained}",
        now_ms() - restarted_at
    );

    // A stalled watermark makes the agent re-send: freeze the collector longer than
    // `resend_after`; the broker queues both copies for its persistent session, and the
    // collector drops the second ones when it thaws.
    collector.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    collector.resume();
    let resent = wait_for(
        "the outbox to drain after the stall",
        Duration::from_secs(60),
        || async {
            let h = agent.health().await;
            (u(&h["outbox"]["entries"]) <= 20).then_some(h)
        },
    )
    .await;
    assert!(
        u(&resent["resent"]) >= 1,
        "the agent re-sent from the stalled watermark: {resent}"
    );

    // Stop the agent cleanly so its last entries are published and acknowledged, then compare.
    let mut agent = agent;
    assert!(agent.terminate(), "agent exits cleanly on SIGTERM");
    let final_health = {
        // The agent is gone; its outbox says what it published: read the collector until its
        // watermark stops moving.
        tokio::time::sleep(Duration::from_secs(2)).await;
        collector.health().await
    };
    let record = collector.agent("agent-1").await.expect("agent registered");
    eprintln!("collector after the crash: {final_health}\nagent record: {record}");
    assert_eq!(record["gaps_open"], 0, "no seq missing: {record}");
    assert_eq!(record["lost_entries"], 0, "nothing booked lost: {record}");
    assert_eq!(final_health["ingest"]["gap_records"], 0);
    assert!(
        u(&final_health["ingest"]["duplicates"]) >= 1,
        "the re-send after the crash delivered entries already stored, and they were dropped: {final_health}"
    );

    // The agent restarted on the same outbox finds its crashed-through boot fully
    // acknowledged by the collector's watermark and trimmed: nothing of it is left to send.
    let agent = agent_spec.spawn().await;
    let h = wait_for(
        "the earlier boot fully acknowledged",
        Duration::from_secs(30),
        || async {
            let h = agent.health().await;
            h["watermarks"].get(&boot).is_none().then_some(h)
        },
    )
    .await;
    eprintln!("after restart of the agent: {h}");
    let stored = u(&record["stored"]);
    let sla = collector.sla("fast", killed - 60_000, now_ms()).await;
    assert_eq!(
        sla["downtime_s"], 0.0,
        "the broker outage is not service downtime: {sla}"
    );
    assert!(
        stored > 3 * 5 * 15,
        "entries from before, during and after the crash: {stored}"
    );
}
