//! Disk full, for real: the collector's data dir and an agent's outbox each on a small tmpfs
//! the test mounts (`watchstand_tests::small_fs`; root needed, and in CI a refused mount fails
//! the test), filled with a filler file while traffic runs, then freed.
//!
//! - The collector cannot store a batch: it acknowledges nothing of it and exits; the test plays
//!   systemd and restarts it while the disk is still full (each start fails and must not damage
//!   the store), then frees the space: it starts again by itself on the same store, and the
//!   delivery oracle finds every acknowledged result stored exactly once.
//! - The agent's outbox cannot store results: `/health` says `degraded` (`outbox store
//!   failing`), what it lost is sent ahead from memory while the disk is still full, and when
//!   space returns it recovers without a restart; what it lost is booked once (the collector's `lost_entries` equals the agent's) and the SLA shows that time as
//!   unmonitored, never up. Restarted while the disk is full, it cannot start (and does not
//!   blame another agent); once there is room it starts on the same outbox.

use std::time::{Duration, Instant};

use serde_json::Value;
use watchstand_tests::oracle;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::sim::{SimAgent, SimConfig};
use watchstand_tests::small_fs::SmallFs;
use watchstand_tests::{free_addr, now_ms, wait_for, HttpTarget};

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_default()
}

/// Makes `link` (a data dir a config names) point at a new directory `name` on `fs`.
fn data_dir_on(fs: &SmallFs, name: &str, link: &std::path::Path) {
    let target = fs.path().join(name);
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&target, link).unwrap();
}

const AGENT_SERVICES: &str = r#"
[[services]]
id = "web"
name = "Web"
criticality = "high"
rto = "5m"
rpo = "0s"
probes = ["disk-agent/p0"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;

fn agent_probes(targets: &[HttpTarget]) -> String {
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "[[probes]]\nid = \"p{i}\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n",
                t.url()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_outbox_on_a_full_disk_reports_degraded_books_the_lost_time_once_and_recovers_by_itself(
) {
    let Some(mut fs) = SmallFs::mount_or_skip(16) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        AGENT_SERVICES,
    )
    .spawn()
    .await;
    let targets = vec![
        HttpTarget::start().await,
        HttpTarget::start().await,
        HttpTarget::start().await,
    ];
    let spec = AgentSpec::new(
        &dir.path().join("agent"),
        "disk-agent",
        &collector.broker_url(),
        &agent_probes(&targets),
    );
    data_dir_on(&fs, "outbox", &spec.dir.join("outbox"));
    let agent = spec.spawn().await;
    wait_for("results acknowledged", Duration::from_secs(30), || async {
        let h = agent.health().await;
        let acked: u64 = h["watermarks"]
            .as_object()
            .map_or(0, |w| w.values().map(u).sum());
        (acked >= 20).then_some(())
    })
    .await;

    let filled_ms = now_ms();
    let filled = fs.fill().expect("fill the agent's filesystem");
    let degraded = wait_for(
        "the agent to report degraded",
        Duration::from_secs(30),
        || async {
            let h = agent.health().await;
            (h["status"] == "degraded" && h["outbox"]["store"]["failing"] == true).then_some(h)
        },
    )
    .await;
    assert!(
        degraded["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "outbox store failing")),
        "{degraded}"
    );
    // Results keep failing for a while: still one episode, still degraded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = agent.health().await;
    assert_eq!(during["status"], "degraded", "{during}");
    assert_eq!(during["outbox"]["store"]["episodes"], 1, "{during}");

    // What it lost goes ahead from memory: the collector books it while the disk is full.
    let early = wait_for(
        "the collector to book the loss while the disk is still full",
        Duration::from_secs(20),
        || async {
            collector
                .agent("disk-agent")
                .await
                .filter(|a| u(&a["lost_entries"]) > 0)
        },
    )
    .await;
    assert_eq!(agent.health().await["status"], "degraded");

    fs.free().expect("free the space");
    let freed = Instant::now();
    let recovered = wait_for(
        "the agent to recover by itself",
        Duration::from_secs(30),
        || async {
            let h = agent.health().await;
            (h["status"] == "ok" && h["outbox"]["store"]["failing"] == false).then_some(h)
        },
    )
    .await;
    let recovered_ms = now_ms();
    let lost = u(&recovered["outbox"]["store"]["lost_entries"]);
    assert!(
        lost > 0,
        "results measured while full are booked: {recovered}"
    );
    assert_eq!(recovered["outbox"]["store"]["episodes"], 1, "{recovered}");

    // Booked exactly once: the collector holds the same number of lost seqs, no seq missing.
    let record = wait_for(
        "the collector to book the gap",
        Duration::from_secs(30),
        || async {
            collector
                .agent("disk-agent")
                .await
                .filter(|a| u(&a["lost_entries"]) == lost && a["gaps_open"] == 0)
        },
    )
    .await;
    let sla = collector
        // From a second before the fill (results were flowing), to the recovery.
        .sla("web", filled_ms - 1_000, recovered_ms)
        .await;
    let unmonitored = sla["unmonitored_s"].as_f64().unwrap_or_default();
    let episode_s = (recovered_ms - filled_ms) as f64 / 1_000.0;
    eprintln!(
        "disk full (agent): filler {filled} bytes, degraded after {} ms, recovered {:?} after the \
         space came back, {lost} entries booked lost, SLA unmonitored {unmonitored:.1} s of a \
         {episode_s:.1} s episode ({} booked while still full); agent record {record}",
        u(&degraded["outbox"]["store"]["failing_since_ms"]).saturating_sub(filled_ms),
        freed.elapsed(),
        early["lost_entries"]
    );
    assert!(unmonitored > 1.0, "the lost time is unmonitored: {sla}");
    assert!(
        unmonitored <= episode_s + 2.0,
        "no more than the episode is unmonitored: {sla}"
    );
    assert_eq!(sla["downtime_s"].as_f64(), Some(0.0), "{sla}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_on_a_full_disk_restarted_while_full_recovers_when_space_returns_losing_nothing_acknowledged(
) {
    let Some(mut fs) = SmallFs::mount_or_skip(24) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    );
    data_dir_on(&fs, "data", &spec.dir.join("data"));
    let mut collector = spec.spawn().await;
    let sims: Vec<SimAgent> = (0..3)
        .map(|i| {
            SimAgent::start(
                &mosquitto.url(),
                SimConfig::new(&format!("sim-{i}"), 3, Duration::from_millis(200)),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    fs.fill().expect("fill the collector's filesystem");
    // Play systemd (`Restart=on-failure`): restart every exit while the disk is still full.
    let mut exits = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while exits < 3 && Instant::now() < deadline {
        if !collector.running() {
            exits += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            collector = spec.start();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        exits >= 2,
        "the collector exits on a full disk, also when restarted while full: {exits} exits"
    );

    fs.free().expect("free the space");
    collector.kill();
    let collector = spec.spawn().await;
    let drained = oracle::drained(&sims, Duration::from_secs(60)).await;
    for s in &sims {
        s.stop_producing();
    }
    oracle::drained(&sims, Duration::from_secs(20)).await;
    let v = oracle::check(&collector, &sims).await;
    let log = std::fs::read_to_string(spec.dir.join("collector.log")).unwrap_or_default();
    let repairs = log.matches("incomplete snapshot").count();
    let refused = log.matches("cannot open the store").count();
    eprintln!(
        "disk full (collector): {exits} exits while full ({refused} starts refused at open), \
         {repairs} incomplete snapshots removed on open, drained {drained:?} after the space \
         returned; {v:?}"
    );
    assert!(
        !log.contains("another collector"),
        "a full disk is not blamed on another collector"
    );
    assert!(v.holds(), "delivery broken: {v:?}");
    assert!(v.obligations > 0, "nothing was acknowledged: {v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_while_its_disk_is_full_starts_on_the_same_outbox_once_space_returns() {
    let Some(mut fs) = SmallFs::mount_or_skip(16) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        AGENT_SERVICES,
    )
    .spawn()
    .await;
    let targets = vec![HttpTarget::start().await];
    let spec = AgentSpec::new(
        &dir.path().join("agent"),
        "disk-agent",
        &collector.broker_url(),
        &agent_probes(&targets),
    );
    data_dir_on(&fs, "outbox", &spec.dir.join("outbox"));
    let mut agent = spec.spawn().await;
    let first_boot = agent.health().await["boot"].clone();
    fs.fill().expect("fill the agent's filesystem");
    wait_for(
        "the agent to report degraded",
        Duration::from_secs(30),
        || async { (agent.health().await["status"] == "degraded").then_some(()) },
    )
    .await;

    // Killed and restarted while full (what systemd does after a crash): every start fails.
    agent.kill();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while refused < 2 && Instant::now() < deadline {
        let mut attempt = spec.start();
        let started = Instant::now();
        while attempt.running() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !attempt.running(),
            "an agent whose outbox cannot be written does not start"
        );
        refused += 1;
    }
    let log = std::fs::read_to_string(spec.dir.join("agent.log")).unwrap_or_default();
    assert!(
        !log.contains("another agent"),
        "a full disk is not blamed on another agent"
    );

    fs.free().expect("free the space");
    let agent = spec.spawn().await;
    let health = wait_for(
        "the restarted agent to deliver",
        Duration::from_secs(30),
        || async {
            let h = agent.health().await;
            let boot = h["boot"].as_str().unwrap_or_default().to_owned();
            (h["status"] == "ok" && u(&h["watermarks"][boot.as_str()]) > 0).then_some(h)
        },
    )
    .await;
    let repairs = std::fs::read_to_string(spec.dir.join("agent.log"))
        .unwrap_or_default()
        .matches("incomplete snapshot")
        .count();
    eprintln!(
        "disk full (agent restarted while full): {refused} starts refused, {repairs} incomplete \
         snapshots removed on open; boot {first_boot} then {}",
        health["boot"]
    );
    assert_ne!(health["boot"], first_boot);
}
