//! Backlog amplification: 10 real agents publish through a Mosquitto the test starts; the
//! collector is SIGKILLed for 60 s (Mosquitto publishes its retained `offline` last will) and
//! restarted on the same data dir. While it is away the agents publish what they measure once
//! (the broker queues it for the collector's session) and re-send nothing; when it is back they
//! re-send from the watermark once. Afterwards: duplicates received ≤ 2 per stored entry (the
//! old stall timer, every `resend_after` = 3 s here, made ~20 copies), no seq missing, every
//! outbox drained.
//!
//! Also: the collector runs with a single glibc malloc arena (it re-executes itself with
//! `MALLOC_ARENA_MAX=1`, same pid): with the default arenas a 2 M-result backlog drain's RSS
//! was several times its heap (BENCHMARKS.md, backlog drain memory).

use std::time::{Duration, Instant};

use serde_json::Value;
use watchstand_tests::process::{Agent, AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{free_addr, wait_for, HttpTarget};

const AGENTS: usize = 10;
const DOWN: Duration = Duration::from_secs(60);

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn services() -> String {
    let probes: Vec<String> = (0..AGENTS).map(|i| format!("\"agent-{i}/p1\"")).collect();
    format!(
        "[[services]]\nid = \"fleet\"\nname = \"Fleet\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"0s\"\nprobes = [{}]\nmode = \"any\"\nslo = {{ availability = 99.0, window = \"1d\" }}\n",
        probes.join(", ")
    )
}

fn probes(target: &HttpTarget) -> String {
    (1..=3)
        .map(|i| {
            format!(
                "[[probes]]\nid = \"p{i}\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"250ms\"\ntimeout = \"200ms\"\n\n",
                target.url()
            )
        })
        .collect()
}

/// Every agent's `/health`.
async fn healths(agents: &[Agent]) -> Vec<Value> {
    let mut out = Vec::with_capacity(agents.len());
    for a in agents {
        out.push(a.health().await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_60s_with_10_agents_receives_at_most_2_duplicates_per_entry() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let target = HttpTarget::start().await;
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        &services(),
    );
    let mut collector = spec.spawn().await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let mut a = AgentSpec::new(
            &dir.path().join(format!("agent-{i}")),
            &format!("agent-{i}"),
            &mosquitto.url(),
            &probes(&target),
        );
        // A short stall timer: the old behaviour (re-send every `resend_after` while the
        // watermark stands still) would copy the backlog ~20 times in 60 s.
        a.extra.push_str("\n[outbox]\nresend_after = \"3s\"\n");
        agents.push(a.spawn().await);
    }
    let online = wait_for(
        "every agent to see the collector online",
        Duration::from_secs(20),
        || async {
            let h = healths(&agents).await;
            h.iter()
                .all(|h| h["collector_online"] == true && u(&h["outbox"]["entries"]) <= 30)
                .then_some(h)
        },
    )
    .await;
    assert_eq!(online.len(), AGENTS);
    tokio::time::sleep(Duration::from_secs(3)).await;

    collector.kill();
    let down_at = Instant::now();
    let offline = wait_for(
        "the agents to see the collector's last will",
        Duration::from_secs(10),
        || async {
            let h = healths(&agents).await;
            h.iter()
                .all(|h| h["collector_online"] == false)
                .then_some(h)
        },
    )
    .await;
    let resent_before: Vec<u64> = offline.iter().map(|h| u(&h["resent"])).collect();
    tokio::time::sleep(DOWN.saturating_sub(down_at.elapsed())).await;
    let during = healths(&agents).await;
    for (h, before) in during.iter().zip(&resent_before) {
        assert_eq!(
            u(&h["resent"]),
            *before,
            "nothing re-sent while the collector was announced offline: {h}"
        );
        assert!(
            u(&h["outbox"]["entries"]) >= 150,
            "the outage held results back: {h}"
        );
    }
    let held: u64 = during.iter().map(|h| u(&h["outbox"]["entries"])).sum();

    let collector = spec.spawn().await;
    let restarted = Instant::now();
    let drained = wait_for(
        "every outbox to drain after the restart",
        Duration::from_secs(60),
        || async {
            let h = healths(&agents).await;
            h.iter()
                .all(|h| u(&h["outbox"]["entries"]) <= 30 && h["collector_online"] == true)
                .then_some(h)
        },
    )
    .await;
    let drain_time = restarted.elapsed();
    let resent: u64 = drained.iter().map(|h| u(&h["resent"])).sum();

    let mut stored_total = 0;
    let mut dup_total = 0;
    for i in 0..AGENTS {
        let id = format!("agent-{i}");
        let record = collector.agent(&id).await.expect("agent registered");
        let (stored, dups) = (u(&record["stored"]), u(&record["duplicates"]));
        assert_eq!(record["gaps_open"], 0, "no seq missing: {record}");
        assert_eq!(record["lost_entries"], 0, "nothing booked lost: {record}");
        assert!(stored >= 300, "{record}");
        assert!(
            dups <= 2 * stored,
            "{id}: {dups} duplicates for {stored} entries stored: {record}"
        );
        stored_total += stored;
        dup_total += dups;
    }
    eprintln!(
        "backlog: {AGENTS} agents, collector down {:?}, {held} entries held, drained {drain_time:?} \
         after the restart; {resent} entries re-sent; collector stored {stored_total}, \
         duplicates {dup_total} ({:.2} per entry); test took {:?}",
        DOWN,
        dup_total as f64 / stored_total as f64,
        started.elapsed()
    );
    assert!(dup_total <= 2 * stored_total);
}

/// `MALLOC_ARENA_MAX` in the environment of process `pid`, as the kernel shows it.
fn arena_max_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/PID/environ");
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("MALLOC_ARENA_MAX=").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_runs_with_one_malloc_arena_under_its_own_pid() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        "",
    );
    // Started without the variable (the harness does not set it); `spawn` waits for the API,
    // so the process answering under the started pid is the re-executed one.
    assert!(
        std::env::var_os("MALLOC_ARENA_MAX").is_none(),
        "the test itself must run without MALLOC_ARENA_MAX"
    );
    let collector = spec.spawn().await;
    assert_eq!(
        arena_max_of(collector.pid()).as_deref(),
        Some("1"),
        "collector pid {} runs without MALLOC_ARENA_MAX=1",
        collector.pid()
    );
}
