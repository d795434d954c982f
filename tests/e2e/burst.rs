//! A burst of small messages (issue 10, point 0): 200 agent-equivalents publish 100,000 messages
//! of 1–2 results each (150,000 results) through a real Mosquitto as fast as they can. Every result is stored
//! exactly once, the collector stays connected the whole time (one session, no keep-alive
//! timeout, no reconnect), and SIGTERM right after exits 0 within 10 s. The second variant
//! makes the MQTT inbox, the request channel, the outgoing in-flight window and the ingest
//! batches tiny, so that no ordering of the queues can hide a circular wait (at a twentieth of
//! the volume, to keep its CI cost modest). A third test stops the collector in the middle of a
//! backlog drain: it exits within 10 s and, started again, loses nothing.

use std::time::{Duration, Instant};

use watchstand_tests::oracle;
use watchstand_tests::process::{BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::sim::{SimAgent, SimConfig};

/// Queue the whole burst for the collector's session however far behind it falls, and keep it
/// in memory: Mosquitto saving a queue of a million messages every second (the harness's
/// `autosave_interval 1`) stalls the broker itself, which is not what these tests are about
/// (later lines win in mosquitto.conf).
const MOSQUITTO_EXTRA: &str = "max_queued_messages 0\nmax_queued_bytes 0\npersistence false\n";

async fn burst(
    name: &str,
    agents: usize,
    messages_per_agent: u64,
    mqtt_extra: &str,
    collector_extra: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    mosquitto.extra = MOSQUITTO_EXTRA.to_owned();
    let Some(broker) = mosquitto.spawn().await else {
        return;
    };
    let mut spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    );
    // The default keep-alive: Mosquitto 2.0.11 ignores its in-flight quota (it pushes the
    // session's whole queue at the collector), so its PINGRESP waits behind everything queued
    // for us; the driver takes incoming publishes as proof of a live link (`shared::mqtt`), so
    // a deep queue is not mistaken for a dead link.
    spec.mqtt_extra = mqtt_extra.to_owned();
    spec.collector_extra = collector_extra.to_owned();
    let mut collector = spec.spawn().await;
    watchstand_tests::wait_for(
        "the collector connected",
        Duration::from_secs(20),
        || async { (collector.health().await["status"] == "ok").then_some(()) },
    )
    .await;

    // Half the agents send one result per message, half two.
    let t0 = Instant::now();
    let agent_count = agents;
    let agents: Vec<SimAgent> = (0..agent_count)
        .map(|i| {
            let probes = 1 + i % 2;
            let mut c = SimConfig::new(&format!("burst-{i:03}"), probes, Duration::from_millis(1));
            c.batch_max = probes;
            // Re-sends while acks are on their way only add load; the agent-side back-off is
            // not what this test is about.
            c.resend_after = Duration::from_secs(30);
            c.produce_max = Some(messages_per_agent * probes as u64);
            SimAgent::start(&mosquitto.url(), c)
        })
        .collect();
    let total: u64 = agents
        .iter()
        .map(|a| a.config.produce_max.unwrap_or(0))
        .sum();

    // Every result acknowledged: each agent's watermark at its last seq.
    let limit = Duration::from_secs(300);
    loop {
        let behind = agents
            .iter()
            .filter(|a| a.with(|s| s.watermark) < a.config.produce_max.unwrap_or(0))
            .count();
        if behind == 0 {
            break;
        }
        if t0.elapsed() > limit {
            let h = collector.health().await;
            panic!("{name}: {behind} agents not fully acknowledged after {limit:?}; health {h}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = t0.elapsed();
    let health = collector.health().await;
    let published: u64 = agents
        .iter()
        .map(|a| a.with(|s| s.published + s.resent))
        .sum();
    eprintln!(
        "{name}: {total} results from {agent_count} agents acknowledged in {drained:?} ({published} results sent incl. re-sends); health {health}"
    );
    assert_eq!(health["status"], "ok", "{health}");

    let verdict = oracle::check(&collector, &agents).await;
    eprintln!("{name}: {verdict:?}");
    assert!(verdict.holds(), "{name}: {verdict:?}");
    assert_eq!(verdict.obligations, total, "{verdict:?}");
    assert_eq!(
        verdict.stored, total,
        "every result stored exactly once: {verdict:?}"
    );
    drop(agents);

    let (clean, took) = collector.terminate_within(Duration::from_secs(10));
    let log = collector.log_text();
    eprintln!("{name}: SIGTERM → exit 0 = {clean} in {took:?}");
    assert!(
        clean,
        "{name}: exit 0 within 10 s of SIGTERM (took {took:?})"
    );
    for bad in [
        "MQTT connection lost",
        "lost the broker",
        "Ingest is making no progress",
    ] {
        assert!(
            !log.contains(bad),
            "{name}: collector log says {bad:?}:\n{log}"
        );
    }
    let mlog = broker.log_text();
    assert!(
        !mlog.contains("exceeded timeout"),
        "{name}: a keep-alive timeout in Mosquitto's log"
    );
    let sessions = mlog
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains("watchstand-collector-test"))
        .count();
    assert_eq!(
        sessions, 1,
        "{name}: the collector stayed connected (one session)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100k_small_messages_from_200_agents_is_stored_exactly_once_without_a_stall() {
    // 200 agents × 500 messages = 100,000 messages.
    burst("burst", 200, 500, "", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_also_drains_with_a_tiny_request_channel_inflight_window_and_batches() {
    // A twentieth of the volume: with one request queued at a time and two outgoing publishes in
    // flight, acks go out a few per round trip, which bounds throughput (not correctness) far
    // below the default's.
    burst(
        "burst-tiny",
        100,
        50,
        // An inbox of ~50 of these messages (the default holds 2,000), one request in the
        // channel (1,024), two outgoing publishes in flight (100), batches of ~40 messages.
        "request_channel_capacity = 1\ninflight = 2\ninbox_max_bytes = 24576",
        "ingest_batch_max = 40\ningest_batch_max_bytes = 16384",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_backlog_drain_exits_within_10s_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    mosquitto.extra = MOSQUITTO_EXTRA.to_owned();
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let mut spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    );
    spec.mqtt_extra = "keep_alive = \"60s\"\n".to_owned();
    let mut collector = spec.spawn().await;
    let agents: Vec<SimAgent> = (0..50)
        .map(|i| {
            let mut c = SimConfig::new(&format!("drain-{i:02}"), 2, Duration::from_millis(1));
            c.batch_max = 2;
            c.resend_after = Duration::from_secs(10);
            c.produce_max = Some(800);
            SimAgent::start(&mosquitto.url(), c)
        })
        .collect();
    let total: u64 = 50 * 800;
    // Mid-drain: some stored, far from all.
    watchstand_tests::wait_for("the drain under way", Duration::from_secs(120), || async {
        let stored = collector.health().await["ingest"]["results_stored"]
            .as_u64()
            .unwrap_or(0);
        (stored >= 2_000).then_some(())
    })
    .await;
    let (clean, took) = collector.terminate_within(Duration::from_secs(10));
    eprintln!("drain: SIGTERM mid-drain → exit 0 = {clean} in {took:?}");
    assert!(
        clean,
        "exit 0 within 10 s of SIGTERM mid-drain (took {took:?})"
    );

    // Started again, it drains the rest from its persistent session and the agents' re-sends.
    let collector = spec.spawn().await;
    let t0 = Instant::now();
    while agents
        .iter()
        .any(|a| a.with(|s| s.watermark) < a.config.produce_max.unwrap_or(0))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "drained after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let verdict = oracle::check(&collector, &agents).await;
    eprintln!("drain: {verdict:?}");
    assert!(verdict.holds(), "{verdict:?}");
    assert_eq!(verdict.stored, total, "{verdict:?}");
}
