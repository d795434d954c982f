//! Delivery faults on the agent's side ("Delivery you can prove"): the agent SIGKILLed while the
//! broker is away, the outbox overflowing its cap, and a broker that PUBACKs what its ACL
//! drops. Each test prints its figures with `eprintln!`.
//!
//! - Fault 4: 20 × SIGKILL at a random point (broker down). The outbox is opened in this
//!   process after each kill: it passes its integrity check, seqs are 1..=n per boot and earlier
//!   boots never change, boot ids are distinct. **Loss bound**: with the broker down the
//!   publisher never calls `ensure_durable`, so appends become durable only through sled's
//!   background flusher (`flush_every_ms = 1000` in `SledStorage::open`). A SIGKILL loses what
//!   was appended since its last pass: every result measured more than
//!   [`FLUSH_EVERY_MS`] + [`FLUSH_SLACK_MS`] before the kill must survive, and a crash loses at
//!   most `probes × ((FLUSH_EVERY_MS + FLUSH_SLACK_MS) / interval + 1)` results. Then the agent
//!   starts against a collector and every earlier boot drains with nothing missing.
//! - Fault 5: `[outbox] max_entries = 200` with Mosquitto down until it overflows: the cap
//!   holds, one gap record books exactly the dropped seqs that were not delivered anyway, the
//!   collector books its time range as unmonitored (never up), or as down for a service with
//!   `count_unknown_as_down`. Once the broker is back the gap record goes out ahead of the
//!   publisher's in-flight window (the collector's watermark cannot pass the dropped range
//!   before it arrives), and entries the outbox, still at its cap, drops after publishing them
//!   wait for the collector's ack instead of being booked (`outbox.dropped_delivered`). So the
//!   time booked lost is within two intervals of the longest stretch without any stored result,
//!   and needless drops (dropped, yet stored) stay within [`needless_drops_max`]. Before this,
//!   the record waited behind the window (half the cap) while the agent dropped, and booked,
//!   ~64 entries it had already published: 10.1 s booked lost for 4.1 s really missing, and
//!   the drain blocked for 7 s.
//! - Fault 7: a Mosquitto ACL that lets the agent connect, announce itself and read its acks but
//!   silently drops its results (MQTT 3.1.1 PUBACKs them all the same): the outbox does not
//!   shrink and the agent reports "not acknowledged by the collector" (log and `/health`);
//!   once the ACL allows the agent again the alarm clears ("acknowledged again").

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use watchstand_agent::outbox::{Entry, Outbox, OutboxLimits};
use watchstand_shared::storage::{SledStorage, Storage};
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{free_addr, free_port, now_ms, wait_for, HttpTarget};

/// sled's background flush period in the agent's outbox (`SledStorage::open`).
const FLUSH_EVERY_MS: u64 = 1_000;
/// `[mqtt] reconnect_max` of the agent and the collector (`tests/src/process.rs`).
const RECONNECT_MAX_MS: u64 = 1_000;

/// Fault 5's bound on needless drops: entries dropped at the cap although the collector stored
/// them. Two sources, for one probe every `interval_ms`:
/// - entries published just before the broker died whose ack never came back: the agent cannot
///   tell them from lost ones and books them with the gap. At most what one linger (50 ms) and
///   one ack round trip hold: a result or two.
/// - entries published after the broker is back and dropped before the collector's first ack:
///   they are settled as delivered, not booked, but they are drops. The agent and the collector
///   reconnect independently, each within `reconnect_max` of the broker's return, so the
///   collector may come back up to [`RECONNECT_MAX_MS`] after the agent: one result per
///   interval meanwhile.
///
/// One more second covers the first source, the ack round trip and a slow CI machine.
fn needless_drops_max(interval_ms: u64) -> u64 {
    (RECONNECT_MAX_MS + 1_000) / interval_ms
}
/// Time a flusher pass, the writer task and the check itself may add to that period.
const FLUSH_SLACK_MS: u64 = 500;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// An HTTP target answering 200 that records when each request arrived.
struct StampTarget {
    addr: std::net::SocketAddr,
    hits: Arc<Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StampTarget {
    async fn start() -> Self {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        let app = Router::new().route(
            "/",
            get(move || {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(now_ms());
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        Self { addr, hits, task }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Arrival times (epoch ms) of requests at or after `from_ms`.
    fn hits_since(&self, from_ms: u64) -> Vec<u64> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t >= from_ms)
            .collect()
    }
}

impl Drop for StampTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn http_probes(url: &str, n: usize, interval: &str, timeout: &str) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[probes]]\nid = \"p{i}\"\nkind = \"http\"\nurl = \"{url}\"\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\n\n"
            )
        })
        .collect()
}

/// One earlier boot as the outbox holds it.
#[derive(Debug, Clone)]
struct BootSnapshot {
    id: String,
    entries: Vec<Entry>,
}

/// What opening the outbox in this process found.
#[derive(Debug)]
struct OutboxSnapshot {
    /// Earlier boots (not the one this open started), oldest first.
    boots: Vec<BootSnapshot>,
    /// `check_integrity`: entries scanned, or the problems.
    integrity: Result<usize, String>,
    /// Gap records the open itself made (undecodable entries); must be 0.
    gap_records_on_open: u64,
    entries: usize,
}

/// Opens the agent's outbox at `dir` as the agent would (integrity handling on open included),
/// reads every earlier boot and runs the integrity check. The open starts an empty boot of its
/// own, which the agent's next open forgets (boots with nothing to send are dropped).
fn inspect_outbox(dir: &Path) -> OutboxSnapshot {
    let storage: Arc<dyn Storage> =
        Arc::new(SledStorage::open(dir).expect("the outbox's sled store opens"));
    let outbox = Outbox::open(
        storage,
        OutboxLimits {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 64 * 1024,
        },
    )
    .expect("the outbox opens after a SIGKILL");
    let integrity = outbox.check_integrity().map_err(|e| e.to_string());
    let stats = outbox.stats();
    let boots = outbox
        .boots()
        .into_iter()
        .filter(|b| !b.is_current)
        .map(|b| BootSnapshot {
            entries: outbox
                .read(b.ordinal, 0, u64::MAX, usize::MAX)
                .expect("read a boot"),
            id: b.id,
        })
        .collect();
    OutboxSnapshot {
        boots,
        integrity,
        gap_records_on_open: stats.gap_records,
        entries: stats.entries,
    }
}

/// Bytes under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_bytes(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// `text` without ANSI colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The numeric value of ` key=` in a log line.
fn log_field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn read_log(path: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Fault 4: the agent SIGKILLed at a random point while the broker is down, 20 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_at_random_points_with_the_broker_down_loses_only_the_unflushed_tail() {
    const ROUNDS: usize = 20;
    const PROBES: u64 = 5;
    const INTERVAL_MS: u64 = 100;
    let bound = PROBES * ((FLUSH_EVERY_MS + FLUSH_SLACK_MS) / INTERVAL_MS + 1);
    let test_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let target = StampTarget::start().await;
    // Nothing listens there: the agent keeps reconnecting and publishes nothing.
    let dead_broker = format!("mqtt://127.0.0.1:{}", free_port());
    let mut spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &dead_broker,
        &http_probes(&target.url(), PROBES as usize, "100ms", "80ms"),
    );
    let outbox_dir = spec.dir.join("outbox");
    let seed = now_ms();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    eprintln!("fault 4: seed {seed}, {ROUNDS} rounds, {PROBES} probes at {INTERVAL_MS} ms, loss bound {bound} results per crash");

    // Every boot seen so far, with its entries as first seen: they must never change.
    let mut known: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut boot_order: Vec<String> = Vec::new();
    let (mut max_loss, mut max_unflushed_ms, mut lost_before_flush) = (0u64, 0u64, 0u64);
    let mut total_results = 0u64;
    let mut round_start = now_ms();
    for round in 1..=ROUNDS {
        let mut agent = spec.spawn().await;
        let boot = agent.health().await["boot"].as_str().unwrap().to_owned();
        assert!(
            !boot_order.contains(&boot),
            "round {round}: boot id {boot} reused"
        );
        let wait = rng.gen_range(300..=1_500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let kill_ms = now_ms();
        agent.kill();
        // Requests already on the wire are still served (and counted) by the target.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hits = target.hits_since(round_start);
        round_start = now_ms();

        let d = outbox_dir.clone();
        let snap = tokio::task::spawn_blocking(move || inspect_outbox(&d))
            .await
            .unwrap();
        assert!(
            snap.integrity.is_ok(),
            "round {round}: integrity check: {:?}",
            snap.integrity
        );
        assert_eq!(
            snap.gap_records_on_open, 0,
            "round {round}: the open found undecodable entries"
        );
        for b in &snap.boots {
            let seqs: Vec<u64> = b.entries.iter().map(Entry::seq).collect();
            let want: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(
                seqs, want,
                "round {round}: boot {} seqs are not 1..=n (reused or torn)",
                b.id
            );
            match known.get(&b.id) {
                Some(before) => assert_eq!(
                    before, &b.entries,
                    "round {round}: earlier boot {} changed",
                    b.id
                ),
                None => {
                    assert_eq!(
                        b.id, boot,
                        "round {round}: a boot appeared that no agent started"
                    );
                    known.insert(b.id.clone(), b.entries.clone());
                }
            }
        }
        let ids: HashSet<&str> = snap.boots.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            snap.boots.len(),
            "round {round}: duplicate boot ids"
        );
        for earlier in &boot_order {
            if known.contains_key(earlier) {
                assert!(
                    ids.contains(earlier.as_str()),
                    "round {round}: earlier boot {earlier} vanished without an ack"
                );
            }
        }
        boot_order.push(boot.clone());

        // This round's results against the checks the target served.
        let observed: Vec<u64> = known
            .get(&boot)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| match e {
                        Entry::Result(r) => Some(r.observed_ms),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let results = observed.len() as u64;
        total_results += results;
        let served = hits.len() as u64;
        let loss = served.saturating_sub(results);
        // Checks served before the flusher's last pass must all be there.
        let old = hits
            .iter()
            .filter(|t| **t + FLUSH_EVERY_MS + FLUSH_SLACK_MS < kill_ms)
            .count() as u64;
        let before_flush_missing = old.saturating_sub(results);
        let newest = observed.iter().max().copied();
        let unflushed_ms = kill_ms.saturating_sub(newest.unwrap_or(kill_ms - wait));
        eprintln!(
            "fault 4 round {round:2}: killed {wait:4} ms after health; served {served:3} checks, {results:3} results in the outbox, lost {loss:2}, newest survivor {unflushed_ms:4} ms before the kill, lost from before the last flush {before_flush_missing}"
        );
        assert!(
            loss <= bound,
            "round {round}: lost {loss} results > bound {bound}"
        );
        assert_eq!(
            before_flush_missing,
            0,
            "round {round}: results measured more than {} ms before the kill are missing",
            FLUSH_EVERY_MS + FLUSH_SLACK_MS
        );
        max_loss = max_loss.max(loss);
        max_unflushed_ms = max_unflushed_ms.max(unflushed_ms);
        lost_before_flush += before_flush_missing;
    }
    assert_eq!(
        boot_order.iter().collect::<HashSet<_>>().len(),
        ROUNDS,
        "boot ids distinct across rounds"
    );

    // Drain: the last snapshot is what the outbox holds; every earlier boot must reach the
    // collector complete, its watermark at its highest seq.
    let d = outbox_dir.clone();
    let before = tokio::task::spawn_blocking(move || inspect_outbox(&d))
        .await
        .unwrap();
    let expected: BTreeMap<String, (u64, u64)> = before
        .boots
        .iter()
        .map(|b| {
            let results = b
                .entries
                .iter()
                .filter(|e| matches!(e, Entry::Result(_)))
                .count() as u64;
            (b.id.clone(), (b.entries.len() as u64, results))
        })
        .collect();
    let services = r#"
[[services]]
id = "crash"
name = "Crash rounds"
criticality = "low"
rto = "5m"
rpo = "0s"
probes = ["agent-1/p1"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        services,
    )
    .spawn()
    .await;
    spec.broker_url = collector.broker_url();
    let drain_start = Instant::now();
    let agent = spec.spawn().await;
    let live = agent.health().await["boot"].as_str().unwrap().to_owned();
    let drained = wait_for(
        "every earlier boot drained",
        Duration::from_secs(60),
        || async {
            let h = agent.health().await;
            let only_live = h["watermarks"]
                .as_object()
                .is_some_and(|m| m.len() == 1 && m.contains_key(&live));
            (only_live && u(&h["outbox"]["entries"]) <= 50).then_some(h)
        },
    )
    .await;
    let drain_ms = drain_start.elapsed().as_millis();
    let record = collector.get("/api/v1/agents/agent-1").await;
    let boots = record["boots"].as_array().unwrap().clone();
    for b in &boots {
        assert_eq!(b["missing"], 0, "no seq missing at the collector: {b}");
    }
    let results = collector.get("/api/v1/agents/agent-1/results").await;
    let mut stored_per_boot: BTreeMap<String, u64> = BTreeMap::new();
    for r in results.as_array().unwrap() {
        *stored_per_boot
            .entry(r["boot"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (id, (highest, results)) in &expected {
        let b = boots
            .iter()
            .find(|b| b["boot"] == id.as_str())
            .unwrap_or_else(|| panic!("boot {id} reached the collector: {record}"));
        assert_eq!(
            u(&b["watermark"]),
            *highest,
            "boot {id}: collector watermark = highest seq in the outbox"
        );
        assert_eq!(
            stored_per_boot.get(id).copied().unwrap_or(0),
            *results,
            "boot {id}: every result in the outbox stored once"
        );
    }
    let stored_earlier: u64 = expected
        .keys()
        .map(|id| stored_per_boot.get(id).copied().unwrap_or(0))
        .sum();
    eprintln!(
        "fault 4: {ROUNDS} SIGKILLs; max loss per crash {max_loss} results (bound {bound}); newest survivor at most {max_unflushed_ms} ms before a kill (flush period {FLUSH_EVERY_MS} ms); results lost that were measured before the last flush: {lost_before_flush}; integrity check passed {ROUNDS}/{ROUNDS}; {} boots with entries, {} entries ({total_results} results) in the outbox before draining; drained in {drain_ms} ms; collector: {} boots, 0 missing, earlier boots' watermarks = outbox highest seqs, {stored_earlier} of their results stored; outbox now {}; test took {:.1} s",
        expected.len(),
        before.entries,
        boots.len(),
        drained["outbox"],
        test_start.elapsed().as_secs_f64()
    );
}

/// Polls an agent's `/health` in the background and keeps the peaks.
struct HealthWatch {
    peaks: Arc<Mutex<(u64, u64, u64)>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthWatch {
    fn start(health: std::net::SocketAddr) -> Self {
        let peaks = Arc::new(Mutex::new((0, 0, 0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peaks.clone(), stop.clone());
        let url = format!("http://{health}/health");
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok(r) = client.get(&url).send().await {
                    if let Ok(h) = r.json::<Value>().await {
                        let mut peaks = p.lock().unwrap();
                        peaks.0 = peaks.0.max(h["outbox"]["entries"].as_u64().unwrap_or(0));
                        peaks.1 = peaks.1.max(h["outbox"]["bytes"].as_u64().unwrap_or(0));
                        peaks.2 += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Self { peaks, stop, task }
    }

    /// (most entries, most bytes, samples taken).
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        *self.peaks.lock().unwrap()
    }
}

/// Fault 5: the outbox overflows its cap while Mosquitto is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_overflow_books_one_gap_as_data_lost_never_up() {
    const MAX_ENTRIES: u64 = 200;
    const MAX_BYTES: u64 = 64 * 1024;
    const INTERVAL_MS: u64 = 100;
    let test_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(mut broker) = mosquitto.spawn().await else {
        return;
    };
    let target = HttpTarget::start().await;
    let services = r#"
[[services]]
id = "lenient"
name = "Unknown is left out"
criticality = "high"
rto = "5m"
rpo = "0s"
probes = ["agent-1/p1"]
mode = "all"
slo = { availability = 99.0, window = "1d" }

[[services]]
id = "strict"
name = "Unknown counts as down"
criticality = "high"
rto = "5m"
rpo = "0s"
probes = ["agent-1/p1"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
count_unknown_as_down = true
"#;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        services,
    )
    .spawn()
    .await;
    let mut spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &mosquitto.url(),
        &http_probes(&target.url(), 1, "100ms", "80ms"),
    );
    // Capacity samples are rare here, so the entry cap is what binds.
    spec.extra = format!(
        "[capacity]\ninterval = \"1h\"\n\n[publish]\nlinger = \"50ms\"\n\n[outbox]\nmax_entries = {MAX_ENTRIES}\nmax_bytes = {MAX_BYTES}\n"
    );
    let agent = spec.spawn().await;
    let watch = HealthWatch::start(spec.health);
    wait_for("results flow", Duration::from_secs(20), || async {
        (u(&collector.health().await["ingest"]["results_stored"]) >= 20).then_some(())
    })
    .await;

    broker.kill();
    let killed = now_ms();
    let first_drop = wait_for(
        "the outbox to overflow",
        Duration::from_secs(60),
        || async {
            let h = agent.health().await;
            (u(&h["outbox"]["dropped"]) > 0).then_some(h)
        },
    )
    .await;
    let overflow_after_ms = now_ms() - killed;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = agent.health().await;
    assert!(
        u(&still["outbox"]["dropped"]) > u(&first_drop["outbox"]["dropped"]),
        "drops keep growing while the broker is down: {first_drop} → {still}"
    );
    let _broker = mosquitto.spawn().await.expect("Mosquitto restarts");
    let restarted = now_ms();
    let drained = wait_for("the outbox to drain", Duration::from_secs(60), || async {
        let h = agent.health().await;
        let c = collector.health().await;
        (u(&h["outbox"]["entries"]) <= 20 && u(&c["ingest"]["gap_records"]) >= 1).then_some(h)
    })
    .await;
    let drained_at = now_ms();
    // The gap record is not stuck behind the window: once both clients are back (each within
    // `reconnect_max`), one round trip drains the outbox; 2 s more for a slow CI machine.
    let drain_max_ms = 2 * RECONNECT_MAX_MS + 2_000;
    assert!(
        drained_at - restarted <= drain_max_ms,
        "drained {} ms after the restart > {drain_max_ms} ms",
        drained_at - restarted
    );
    // Let the last acks land, then read everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (max_entries_seen, max_bytes_seen, samples) = watch.finish();
    let h = agent.health().await;
    let ch = collector.health().await;
    let record = collector.get("/api/v1/agents/agent-1").await;
    let dropped = u(&h["outbox"]["dropped"]);
    let disk = dir_bytes(&spec.dir.join("outbox"));

    // The cap held.
    assert!(
        max_entries_seen <= MAX_ENTRIES,
        "outbox entries peaked at {max_entries_seen} > {MAX_ENTRIES}"
    );
    assert!(
        max_bytes_seen * 100 <= MAX_BYTES * 105,
        "outbox bytes peaked at {max_bytes_seen} > {MAX_BYTES} + 5 %"
    );
    // One overflow episode: one gap record, sent and booked once.
    assert_eq!(
        h["outbox"]["gap_records"], 1,
        "agent made one gap record: {h}"
    );
    assert_eq!(ch["ingest"]["gap_records"], 1, "collector booked one: {ch}");
    let log = read_log(&collector.spec.dir.join("collector.log"));
    let booked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("booking the range as data lost"))
        .collect();
    assert_eq!(booked.len(), 1, "one gap booked: {booked:?}");
    let line = booked[0];
    let field = |k: &str| log_field(line, k).unwrap_or_else(|| panic!("{k} in {line}"));
    let (from_seq, to_seq, from_ms, to_ms) = (
        field("from_seq"),
        field("to_seq"),
        field("from_ms"),
        field("to_ms"),
    );
    // Drops counted exactly: the gap's seq range is exactly the dropped entries not settled as
    // delivered (the range only holds more when the open gap record itself was carried
    // forward, after a full cap's worth of drops, which this outage stays below).
    let dropped_delivered = u(&h["outbox"]["dropped_delivered"]);
    let booked_drops = dropped - dropped_delivered;
    assert!(dropped < MAX_ENTRIES, "the outage stayed short: {dropped}");
    assert_eq!(
        to_seq - from_seq + 1,
        booked_drops,
        "gap range = drops not delivered: {line} {h}"
    );
    assert_eq!(
        u(&ch["ingest"]["lost_entries"]),
        booked_drops,
        "collector books exactly the booked seqs"
    );
    for b in record["boots"].as_array().unwrap() {
        assert_eq!(b["missing"], 0, "nothing else missing: {b}");
    }
    // Entries published just before the broker died, whose ack never came back, are dropped
    // and booked although the collector may have them: the registry counts only what it never
    // stored.
    let boot = h["boot"].as_str().unwrap();
    let results = collector.get("/api/v1/agents/agent-1/results").await;
    let in_gap: Vec<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["boot"] == boot && (from_seq..=to_seq).contains(&u(&r["seq"])))
        .map(|r| u(&r["observed_ms"]))
        .collect();
    let delivered_in_gap = in_gap.len() as u64;
    // The longest stretch of the gap's time range with no stored result at all.
    let really_missing_ms = {
        let mut points = in_gap.clone();
        points.extend([from_ms, to_ms]);
        points.sort_unstable();
        points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    };
    assert_eq!(
        u(&record["agent"]["lost_entries"]) + delivered_in_gap,
        booked_drops,
        "registry lost + delivered-and-booked = booked: {record}"
    );
    // Needless drops: dropped although stored, booked with the gap or settled by the ack.
    let needless = delivered_in_gap + dropped_delivered;
    let needless_max = needless_drops_max(INTERVAL_MS);
    assert!(
        needless <= needless_max,
        "{needless} needless drops ({delivered_in_gap} booked, {dropped_delivered} settled as \
         delivered) > {needless_max}"
    );

    // The SLA: the gap's time range is unmonitored, never up; with count_unknown_as_down it
    // is down.
    let gap_s = (to_ms - from_ms) as f64 / 1_000.0;
    let exact = collector.sla("lenient", from_ms, to_ms).await;
    assert_eq!(
        f(&exact["uptime_s"]),
        0.0,
        "never up inside the gap: {exact}"
    );
    assert_eq!(f(&exact["downtime_s"]), 0.0, "{exact}");
    assert!(
        (f(&exact["unmonitored_s"]) - gap_s).abs() < 0.002,
        "the whole gap is unmonitored: {exact}"
    );
    // ... and hardly more than what is really missing: the longest stretch of the gap without
    // any stored result, plus up to an interval at each end (an entry booked although the
    // collector stored it: one in flight when the broker died).
    let interval_s = INTERVAL_MS as f64 / 1_000.0;
    let really_missing_s = really_missing_ms as f64 / 1_000.0;
    assert!(
        f(&exact["unmonitored_s"]) <= really_missing_s + 2.0 * interval_s + 0.002,
        "booked lost {gap_s} s, really missing {really_missing_s} s: {exact}"
    );
    // From before the kill (the agent measured for seconds already) to after the drain.
    let (w_from, w_to) = (killed - 1_000, drained_at - 2_000);
    let lenient = collector.sla("lenient", w_from, w_to).await;
    let strict = collector.sla("strict", w_from, w_to).await;
    let unmonitored = f(&lenient["unmonitored_s"]);
    assert!(
        unmonitored >= gap_s - 0.002 && unmonitored <= gap_s + interval_s + 0.002,
        "unmonitored {unmonitored} s vs gap {gap_s} s (one interval {interval_s} s): {lenient}"
    );
    // A check timing out under CI load is real downtime in both policies; what differs between
    // them is exactly the gap.
    assert!(
        (f(&strict["downtime_s"]) - f(&lenient["downtime_s"]) - unmonitored).abs() < 0.002,
        "count_unknown_as_down books the same time as down: {strict} vs {lenient}"
    );
    assert!(
        (f(&strict["unmonitored_s"]) - unmonitored).abs() < 0.002,
        "still reported as unmonitored too: {strict}"
    );

    eprintln!(
        "fault 5: cap {MAX_ENTRIES} entries / {MAX_BYTES} B; broker down {} ms, overflow after {overflow_after_ms} ms; outbox peaked at {max_entries_seen} entries / {max_bytes_seen} B ({samples} health samples); dropped {dropped} = {booked_drops} booked (gap seqs {from_seq}..={to_seq} = collector lost_entries {}) + {dropped_delivered} settled as delivered by the ack; gap records: agent {}, collector {}; needless drops {needless} (bound {needless_max}): {delivered_in_gap} booked though stored (published before the outage, ack lost; registry lost {}), {dropped_delivered} published after the reconnect and dropped before the first ack; gap {from_ms}..{to_ms} = {gap_s:.3} s booked lost, its longest stretch without any stored result {:.3} s; SLA over the gap: up {} s, unmonitored {} s; over {} s around it: lenient unmonitored {unmonitored:.3} s (gap + {:.3} s), down {} s, availability {}; strict down {} s, availability {}; sled dir {disk} B on disk vs the {MAX_BYTES} B cap (sled preallocates segments: not asserted); drained {} ms after the restart, outbox {}; test took {:.1} s",
        restarted - killed,
        ch["ingest"]["lost_entries"],
        h["outbox"]["gap_records"],
        ch["ingest"]["gap_records"],
        record["agent"]["lost_entries"],
        really_missing_ms as f64 / 1_000.0,
        exact["uptime_s"],
        exact["unmonitored_s"],
        (w_to - w_from) / 1_000,
        unmonitored - gap_s,
        lenient["downtime_s"],
        lenient["availability_pct"],
        strict["downtime_s"],
        strict["availability_pct"],
        drained_at - restarted,
        drained["outbox"],
        test_start.elapsed().as_secs_f64()
    );
}

/// Writes Mosquitto's password file (`mosquitto_passwd`) with `users`.
fn write_passwords(path: &Path, users: &[(&str, &str)]) {
    for (i, (user, pass)) in users.iter().enumerate() {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let ok = cmd
            .arg("-b")
            .arg(path)
            .args([user, pass])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mosquitto_passwd for {user}");
    }
}

fn make_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// The collector's rights, as in `configs/mosquitto/watchstand.acl`.
const COLLECTOR_ACL: &str = "user watchstand-collector
topic read watchstand/v1/+/+/results
topic read watchstand/v1/+/+/capacity
topic read watchstand/v1/+/+/status
topic write watchstand/v1/+/+/ack
topic readwrite watchstand/v1/_collector/#
";

/// Fault 7: a publish the broker's ACL denies (MQTT 3.1.1: PUBACKed, dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_denied_by_the_broker_acl_are_reported_not_acknowledged_by_the_collector() {
    const ALARM_S: u64 = 5;
    let test_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("mosquitto");
    let mut mosquitto = MosquittoSpec::new(&mdir);
    if watchstand_tests::mosquitto_bin().is_none() {
        assert!(mosquitto.spawn().await.is_none());
        return;
    }
    let passwd = mdir.join("watchstand.passwd");
    write_passwords(&passwd, &[("agent-1", "a1"), ("watchstand-collector", "c")]);
    make_readable(&passwd);
    // agent-1 may announce itself and read its acks, not publish results or capacity.
    let acl = mdir.join("watchstand.acl");
    let deny = format!(
        "{COLLECTOR_ACL}\nuser agent-1\ntopic write watchstand/v1/+/agent-1/status\ntopic read watchstand/v1/+/agent-1/ack\n"
    );
    std::fs::write(&acl, &deny).unwrap();
    make_readable(&acl);
    mosquitto.extra = format!(
        "password_file {}\nacl_file {}\n",
        passwd.display(),
        acl.display()
    );
    let Some(mut broker) = mosquitto.spawn().await else {
        return;
    };
    let target = HttpTarget::start().await;
    let services = r#"
[[services]]
id = "denied"
name = "Denied"
criticality = "low"
rto = "5m"
rpo = "0s"
probes = ["agent-1/p1"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;
    let mut cspec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        services,
    );
    cspec.mqtt_extra = "username = \"watchstand-collector\"\npassword = \"c\"".to_owned();
    let collector = cspec.spawn().await;
    let mut spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &mosquitto.url(),
        &http_probes(&target.url(), 1, "200ms", "150ms"),
    );
    spec.mqtt_extra = "username = \"agent-1\"\npassword = \"a1\"".to_owned();
    spec.extra
        .push_str(&format!("\n[outbox]\nunacked_alarm = \"{ALARM_S}s\"\n"));
    let started = Instant::now();
    let agent = spec.spawn().await;
    let boot = agent.health().await["boot"].as_str().unwrap().to_owned();

    // Until the alarm: connected, publishing, the outbox never shrinks, the watermark stays 0.
    let last = std::cell::Cell::new(0u64);
    let alarm = wait_for(
        "the unacknowledged alarm",
        Duration::from_secs(60),
        || async {
            let h = agent.health().await;
            let entries = u(&h["outbox"]["entries"]);
            assert!(
                entries >= last.get(),
                "the outbox shrank ({} → {entries}) though nothing was acknowledged: {h}",
                last.get()
            );
            last.set(entries);
            assert_eq!(h["watermarks"][&boot], 0, "nothing acknowledged: {h}");
            (h["unacknowledged"]["alarm"] == true).then_some(h)
        },
    )
    .await;
    let alarm_after = started.elapsed();
    assert_eq!(alarm["mqtt_connected"], true, "{alarm}");
    assert!(u(&alarm["published"]) > 0, "the agent did publish: {alarm}");
    assert_eq!(alarm["unacknowledged"]["boot"], boot.as_str());
    assert_eq!(alarm["unacknowledged"]["oldest_seq"], 1);
    assert_eq!(alarm["unacked_alarms"], 1, "{alarm}");
    assert!(
        // (Wall-clock age against a monotonic timer: a few ms of rounding.)
        u(&alarm["unacknowledged"]["age_ms"]) + 20 >= ALARM_S * 1_000,
        "{alarm}"
    );
    let log_path = spec.dir.join("agent.log");
    let warned = wait_for("the WARN in the agent log", Duration::from_secs(5), || {
        let text = read_log(&log_path);
        async move {
            text.lines()
                .find(|l| l.contains("WARN") && l.contains("not acknowledged by the collector"))
                .map(str::to_owned)
        }
    })
    .await;
    assert!(warned.contains(&format!("boot={boot}")) || warned.contains(&boot));
    assert!(warned.contains("oldest_seq=1"), "{warned}");
    // The collector saw the agent (its status is allowed) but none of its results.
    let record = wait_for("the agent registered", Duration::from_secs(10), || async {
        collector.agent("agent-1").await
    })
    .await;
    assert_eq!(record["stored"], 0, "nothing got through: {record}");
    assert_eq!(collector.health().await["ingest"]["results_stored"], 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = agent.health().await;
    assert!(u(&later["outbox"]["entries"]) >= u(&alarm["outbox"]["entries"]));
    assert_eq!(later["unacked_alarms"], 1, "one WARN per episode: {later}");

    // The ACL is fixed: the agent re-sends on the new connection, the watermark moves and the
    // alarm clears.
    broker.kill();
    std::fs::write(
        &acl,
        format!(
            "{COLLECTOR_ACL}\nuser agent-1\npattern write watchstand/v1/+/%u/results\npattern write watchstand/v1/+/%u/capacity\ntopic write watchstand/v1/+/agent-1/status\ntopic read watchstand/v1/+/agent-1/ack\n"
        ),
    )
    .unwrap();
    let fixed = Instant::now();
    let _broker = mosquitto.spawn().await.expect("Mosquitto restarts");
    let cleared = wait_for("the alarm to clear", Duration::from_secs(60), || async {
        let h = agent.health().await;
        (u(&h["watermarks"][&boot]) > 0 && h["unacknowledged"]["alarm"] != true).then_some(h)
    })
    .await;
    let cleared_after = fixed.elapsed();
    let text = wait_for("the INFO in the agent log", Duration::from_secs(5), || {
        let text = read_log(&log_path);
        async move { text.contains("acknowledged again").then_some(text) }
    })
    .await;
    let warns = text
        .lines()
        .filter(|l| l.contains("not acknowledged by the collector"))
        .count();
    assert_eq!(warns, 1, "one WARN for the episode");
    eprintln!(
        "fault 7: ACL denies agent-1's results (PUBACKed, dropped): alarm after {:.1} s from the agent's start (unacked_alarm {ALARM_S} s), outbox {} entries, never shrank, published {}, watermark 0, collector stored 0; log: {}; after the ACL fix the alarm cleared in {:.1} s (watermark {}, outbox {}); test took {:.1} s",
        alarm_after.as_secs_f64(),
        later["outbox"]["entries"],
        later["published"],
        warned.trim(),
        cleared_after.as_secs_f64(),
        cleared["watermarks"][&boot],
        cleared["outbox"]["entries"],
        test_start.elapsed().as_secs_f64()
    );
}
