//! Delivery faults on the broker and the collector, judged by the oracle
//! (`watchstand_tests::oracle`): after each fault heals, every acknowledged result is stored
//! exactly once with its payload, nothing unknown is stored, fresh results flow, and the
//! dedupe and re-send paths ran. Each test prints its figure.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use watchstand_tests::mqtt::TestClient;
use watchstand_tests::oracle::{self, Verdict};
use watchstand_tests::process::{BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::sim::{SimAgent, SimConfig};
use watchstand_tests::{free_addr, now_ms, wait_for};

/// One service over the first probe of the first simulated agent.
const SERVICES: &str = r#"
[[services]]
id = "sim"
name = "Simulated"
criticality = "high"
rto = "5m"
rpo = "0s"
probes = ["sim-0/p0"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;

fn agents(url: &str, n: usize, probes: usize, interval: Duration) -> Vec<SimAgent> {
    (0..n)
        .map(|i| SimAgent::start(url, SimConfig::new(&format!("sim-{i}"), probes, interval)))
        .collect()
}

fn assert_verdict(v: &Verdict) {
    assert!(v.holds(), "delivery broken: {v:?}");
    assert!(v.obligations > 0, "nothing was acknowledged: {v:?}");
}

/// Fault 1: Mosquitto SIGKILLed for 30 s under 10 agents × 10 probes at 1 s, then restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sigkill_30s_under_100_probes_loses_no_obligation() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(mut broker) = mosquitto.spawn().await else {
        return;
    };
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        SERVICES,
    )
    .spawn()
    .await;
    let sims = agents(&mosquitto.url(), 10, 10, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(5)).await;

    broker.kill();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let held: usize = sims.iter().map(SimAgent::outbox_len).sum();
    let _broker = mosquitto.spawn().await.expect("Mosquitto restarts");
    let drain = oracle::drained(&sims, Duration::from_secs(30)).await;
    let live = oracle::liveness(&collector, &sims[0], Duration::from_secs(10)).await;
    // The crash itself rarely leaves a batch stored but unacknowledged; a watermark stalled past
    // `resend_after` always makes the agents re-send what the collector already has.
    collector.pause();
    tokio::time::sleep(Duration::from_secs(6)).await;
    collector.resume();
    for s in &sims {
        s.stop_producing();
    }
    oracle::drained(&sims, Duration::from_secs(30)).await;
    let v = oracle::check(&collector, &sims).await;
    eprintln!(
        "fault 1 (broker SIGKILL 30 s, 100 probes at 1 s): outboxes held {held}, drained {drain:?} after restart, \
         fresh result stored in {live:?}; {v:?}"
    );
    assert_verdict(&v);
    assert!(v.exercised(), "re-send and dedupe ran: {v:?}");
    assert!(held >= 2_500, "the outage held results back: {held}");
    // 0 duplicates counted in the SLA: its checks equal the distinct results of the probe.
    let produced_p0 = sims[0].with(|s| s.produced.values().filter(|r| r.probe == "p0").count());
    let sla = collector
        .sla("sim", now_ms() - 3_600_000, now_ms() + 1_000)
        .await;
    assert_eq!(sla["checks"].as_u64(), Some(produced_p0 as u64), "{sla}");
}

/// Fault 2: the collector stopped for 60 s while Mosquitto's per-client queue (50 messages)
/// overflows; the agents re-send from the stalled watermark when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_60s_with_an_overflowing_broker_queue_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    // The default config raises the queue; this one is small on purpose.
    mosquitto.extra = "max_queued_messages 50\n".to_owned();
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        SERVICES,
    );
    let mut collector = spec.spawn().await;
    let sims = agents(&mosquitto.url(), 5, 10, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(
        collector.terminate(),
        "the collector stops cleanly on SIGTERM"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let behind: usize = sims.iter().map(SimAgent::outbox_len).sum();
    let collector = spec.spawn().await;
    let restarted = Instant::now();
    let catch_up = oracle::drained(&sims, Duration::from_secs(60)).await;
    for s in &sims {
        s.stop_producing();
    }
    oracle::drained(&sims, Duration::from_secs(10)).await;
    let v = oracle::check(&collector, &sims).await;
    eprintln!(
        "fault 2 (collector down 60 s, broker queue 50): {behind} results behind, watermark caught up {catch_up:?} \
         after the restart ({:?} total); {v:?}",
        restarted.elapsed()
    );
    assert_verdict(&v);
    assert!(behind >= 2_500, "{behind}");
    let broker_log =
        std::fs::read_to_string(dir.path().join("mosquitto/mosquitto.log")).unwrap_or_default();
    assert!(
        broker_log.contains("Outgoing messages are being dropped"),
        "the broker's queue for the collector overflowed (that is the fault under test)"
    );
    assert!(
        v.resent >= 1,
        "the agents re-sent from the stalled watermark: {v:?}"
    );
}

/// Fault 3: the collector SIGKILLed at a random point, 20 rounds, under steady load; after each
/// kill the store passes the invariant checker, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_at_random_points_keeps_the_store_consistent() {
    let rounds: usize = std::env::var("WATCHSTAND_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        SERVICES,
    );
    let sims = agents(&mosquitto.url(), 3, 10, Duration::from_millis(200));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut checked = 0u64;
    for round in 0..rounds {
        let mut collector = spec.spawn().await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2_000))).await;
        collector.kill();
        let acked: Vec<u64> = sims.iter().map(|s| s.with(|st| st.watermark)).collect();
        let store = watchstand_collector::store::Store::open(&spec.dir.join("data"))
            .expect("store opens after SIGKILL");
        let report = watchstand_collector::verify::verify(&store).expect("verify");
        drop(store);
        assert_eq!(report.stored_twice, 0, "round {round}: {report:?}");
        assert_eq!(
            report.unverified, 0,
            "round {round}: watermark not contiguous: {report:?}"
        );
        assert_eq!(report.rollups_wrong, 0, "round {round}: {report:?}");
        checked += report.rollups_checked;
        // Everything the agents saw acknowledged is in the store.
        let seqs = stored_seqs(&spec.dir.join("data"));
        for (sim, acked) in sims.iter().zip(&acked) {
            let stored = seqs.get(&sim.config.agent).cloned().unwrap_or_default();
            let lost = (1..=*acked).filter(|q| !stored.contains(q)).count();
            assert_eq!(
                lost, 0,
                "round {round}: {} acknowledged results of {} lost",
                lost, sim.config.agent
            );
        }
    }
    let collector = spec.spawn().await;
    for s in &sims {
        s.stop_producing();
    }
    oracle::drained(&sims, Duration::from_secs(30)).await;
    let v = oracle::check(&collector, &sims).await;
    eprintln!("fault 3 ({rounds} collector SIGKILLs): invariants held every round, {checked} rollup buckets recounted; {v:?}");
    assert_verdict(&v);
}

/// (agent → stored seqs) straight from the store of a stopped collector.
fn stored_seqs(
    data: &std::path::Path,
) -> std::collections::HashMap<String, std::collections::BTreeSet<u64>> {
    let store = watchstand_collector::store::Store::open(data).expect("store");
    let mut out: std::collections::HashMap<String, std::collections::BTreeSet<u64>> =
        std::collections::HashMap::new();
    let tree = store
        .tree(watchstand_collector::store::trees::RESULTS)
        .expect("tree");
    for (key, value) in tree.scan_prefix(&[]).expect("scan") {
        let agent =
            String::from_utf8_lossy(key.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
        let r = watchstand_collector::store::StoredResult::decode(&value).expect("record");
        out.entry(agent).or_default().insert(r.seq);
    }
    out
}

/// 10,000 results of one probe, one per message, in order.
fn storm_results(boot: &str) -> Vec<Vec<u8>> {
    let start = now_ms() - 10_000 * 1_000 - 60_000;
    (1..=10_000u64)
        .map(|seq| {
            let state = if (3_000..3_600).contains(&seq) { "down" } else { "up" };
            serde_json::to_vec(&json!({"v": 1, "site": "sim", "agent": "sim-0", "boot": boot, "results": [
                {"seq": seq, "probe": "p0", "kind": "http", "target": "http://127.0.0.1/", "observed_ms": start + seq * 1_000,
                 "interval_ms": 1000, "state": state, "latency_us": 1_000 + seq % 700}]}))
            .unwrap()
        })
        .collect()
}

async fn publish_all(url: &str, messages: &[Vec<u8>]) {
    let mut client = TestClient::connect(url, "storm").await;
    for m in messages {
        client
            .publish("watchstand/v1/sim/sim-0/results", m.clone())
            .await;
    }
}

async fn sla_after(collector: &watchstand_tests::Collector, stored: u64) -> Value {
    wait_for("the storm stored", Duration::from_secs(120), || async {
        let h = collector.health().await;
        (h["ingest"]["results_stored"].as_u64() == Some(stored)).then_some(())
    })
    .await;
    let to = now_ms();
    let mut sla = collector.sla("sim", to - 11_000 * 1_000, to).await;
    // The report's own window bounds differ between runs only by when they were asked.
    for k in [
        "from_ms",
        "to_ms",
        "unmonitored_s",
        "error_budget_s",
        "error_budget_remaining_s",
        "coverage_pct",
        "measured_since",
    ] {
        sla[k] = Value::Null;
    }
    sla
}

/// Fault 6: a publisher replays 10,000 results 1–5 times each, shuffled within 50-message
/// windows: exactly 10,000 stored, duplicates dropped = injected − 10,000, and the SLA equals
/// that of a clean in-order run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_reorder_storm_stores_each_result_once() {
    let clean_messages = storm_results("b-storm");
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut storm: Vec<Vec<u8>> = Vec::new();
    for m in &clean_messages {
        for _ in 0..rng.gen_range(1..=5) {
            storm.push(m.clone());
        }
    }
    for window in storm.chunks_mut(50) {
        window.shuffle(&mut rng);
    }
    let injected = storm.len() as u64;

    let dir = tempfile::tempdir().unwrap();
    let stormy = CollectorSpec::new(
        &dir.path().join("storm"),
        BrokerChoice::Embedded(free_addr()),
        SERVICES,
    )
    .spawn()
    .await;
    let clean = CollectorSpec::new(
        &dir.path().join("clean"),
        BrokerChoice::Embedded(free_addr()),
        SERVICES,
    )
    .spawn()
    .await;
    let started = Instant::now();
    let (stormy_url, clean_url) = (stormy.broker_url(), clean.broker_url());
    tokio::join!(
        publish_all(&stormy_url, &storm),
        publish_all(&clean_url, &clean_messages)
    );
    let storm_sla = sla_after(&stormy, 10_000).await;
    let clean_sla = sla_after(&clean, 10_000).await;
    let h = stormy.health().await;
    eprintln!(
        "fault 6 (storm): injected {injected} messages for 10000 results in {:?}; stored {}, duplicates dropped {}",
        started.elapsed(),
        h["ingest"]["results_stored"],
        h["ingest"]["duplicates"]
    );
    assert_eq!(h["ingest"]["results_stored"].as_u64(), Some(10_000));
    assert_eq!(h["ingest"]["duplicates"].as_u64(), Some(injected - 10_000));
    assert_eq!(h["ingest"]["gaps_open"].as_u64(), Some(0));
    assert_eq!(storm_sla, clean_sla, "the storm changed the SLA");
    assert_eq!(storm_sla["checks"], 10_000);
    assert_eq!(storm_sla["outages"], 1, "{storm_sla}");
}
