//! P1, ingest: N simulated agents publish pre-encoded result batches (QoS 1, each agent with its
//! own boot and increasing seqs) through a Mosquitto started here, configured as
//! `configs/mosquitto/` recommends. Runs alternate A, B, A, B, … on a fresh broker each:
//!
//! - A, the baseline: a bare rumqttc subscriber (QoS 1, clean session) counts the results it
//!   receives: what the broker can deliver on this machine under this load.
//! - B, the collector: the real `watchstand-collector` binary (external broker, defaults) stores,
//!   deduplicates, flushes and acknowledges. The run ends when the collector's retained ack
//!   watermark of every agent covers its last seq (a watermark is published only after the
//!   flush), and the health API's `results_stored` says how many were stored: lost = published −
//!   stored.
//!
//! Each run reports results / (time from the first publish to the last result received, or
//! acknowledged). Every payload is encoded before the clock starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watchstand_collector::rollup::dirty_marks;
use watchstand_collector::store::{trees, Store, StoreBatch};
use watchstand_shared::storage::{key::KeyBuf, Write};
use watchstand_shared::topic::{Channel, TopicLayout};
use watchstand_shared::wire::v1::{self, Ack, ProbeResult, ProbeState, ResultBatch};
use watchstand_tests::process::{BrokerChoice, CollectorSpec, MosquittoSpec};

use crate::procfs::peak_rss_kb;
use crate::stats::{thousands, Summary};

/// Site of every simulated agent.
const SITE: &str = "bench";
/// The warm-up agent (one result, before the clock starts, to prove the subscription).
const WARMUP_AGENT: &str = "bench-warmup";
/// How often the waits look at the counters (the times themselves are taken on receipt).
const POLL: Duration = Duration::from_millis(5);

/// The writes side C makes per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreLayout {
    /// Exactly the collector's: one binary `StoredResult` per result plus its dirty marks
    /// (deduplicated within the batch).
    AsIs,
    /// Candidate: one record per message (the batch as received) plus the deduplicated dirty
    /// marks; per-probe records would be derived later, off the ack path.
    Blob,
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// A: the bare subscriber through the broker.
    Baseline,
    /// B: the collector through the broker.
    Collector,
    /// C: the store alone: the collector's own writes for the same results committed to a sled
    /// store in-process (no broker, no decode in the timed part), batches of `--store-batch`
    /// messages, each flushed.
    Store,
}

/// `bench ingest` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Results published per run.
    #[arg(long, default_value_t = 2_000_000)]
    total: u64,
    /// Simulated agents (each its own MQTT connection, boot and seq space).
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Results per MQTT message (the agent's batching).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Probes per agent (results rotate over them at a 10 s interval).
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Runs of each side, interleaved A B C A B C ….
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Which sides to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "baseline,collector,store"
    )]
    sides: Vec<Side>,
    /// Messages per store commit on side C (the collector's batches under this load hold about
    /// this many: its broker in-flight window and inbox shape them).
    #[arg(long, default_value_t = 100)]
    store_batch: usize,
    /// What side C writes: the collector's writes as they are, or a candidate layout (to
    /// measure what an optimisation of the hot path would buy).
    #[arg(long, value_enum, default_value_t = StoreLayout::AsIs)]
    store_layout: StoreLayout,
    /// Mosquitto persistence (`persistence true`, `autosave_interval 1`, as recommended).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    persistence: bool,
    /// The collector's `ingest_batch_max` (messages per store batch); default: its own default.
    #[arg(long)]
    collector_batch_max: Option<usize>,
    /// The collector's `store_cache_mib` (sled page cache); default: its own default.
    #[arg(long)]
    collector_store_cache_mib: Option<u64>,
    /// Give up on a run after this long, seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Record the collector with `perf record` during its runs into `<FILE>.<run>` (perturbs
    /// the run: profile in a separate invocation from the one whose numbers you keep).
    #[arg(long, value_name = "FILE")]
    perf: Option<PathBuf>,
    /// Directory for the runs' temporary directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tiny sizes for CI: 20,000 results, 4 agents, 100 per message, 1 run of each side.
    #[arg(long)]
    smoke: bool,
    /// Internal: run side C once in this process and report it on one `@store` line (the
    /// parent runs every side-C run in a fresh child process: sled does not give its memory
    /// back when a store is dropped, and runs must not inherit each other's heap).
    #[arg(long, hide = true)]
    child: bool,
}

impl Args {
    fn effective(&self) -> Self {
        if !self.smoke {
            return self.clone();
        }
        if self.child {
            return self.clone();
        }
        Self {
            total: 20_000,
            agents: 4,
            batch: 100,
            probes: 10,
            runs: 1,
            timeout_s: 60,
            ..self.clone()
        }
    }
}

/// What one simulated agent publishes.
struct AgentLoad {
    id: String,
    boot: String,
    last_seq: u64,
    messages: Vec<Publish>,
}

/// Everything the publishers send in one run (the same bytes in every run).
struct Plan {
    agents: Vec<Arc<AgentLoad>>,
    total: u64,
    messages: usize,
    bytes: usize,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Results of one agent: probes in rotation at a 10 s interval ending a minute ago, mostly up
/// with realistic latencies, one in a thousand down with an error text.
fn agent_load(a: &Args, index: usize, results: u64, now_ms: u64) -> AgentLoad {
    const INTERVAL_MS: u64 = 10_000;
    let id = format!("bench-{index:03}");
    let boot = format!("{:016x}", splitmix(now_ms ^ index as u64));
    let topic = TopicLayout::default().agent(SITE, &id, Channel::Results);
    let probes = a.probes.max(1) as u64;
    let rounds = results.div_ceil(probes);
    let base_ms = now_ms - 60_000 - rounds * INTERVAL_MS;
    let mut messages = Vec::new();
    let mut seq = 0u64;
    while seq < results {
        let n = (results - seq).min(a.batch as u64);
        let batch: Vec<ProbeResult> = (seq..seq + n)
            .map(|k| {
                let p = k % probes;
                let h = splitmix(k ^ (index as u64) << 40);
                let down = h % 1_000 == 0;
                ProbeResult {
                    seq: k + 1,
                    probe: format!("p{p:03}"),
                    kind: "http".to_owned(),
                    target: format!("http://10.0.{index}.{p}/health"),
                    observed_ms: base_ms + (k / probes) * INTERVAL_MS + (p * 97) % INTERVAL_MS,
                    interval_ms: INTERVAL_MS,
                    state: if down {
                        ProbeState::Down
                    } else {
                        ProbeState::Up
                    },
                    latency_us: if down { 5_000_000 } else { 2_000 + h % 48_000 },
                    error: down.then(|| "connect: connection refused".to_owned()),
                    metrics: Vec::new(),
                }
            })
            .collect();
        let payload = v1::encode(&ResultBatch {
            v: v1::VERSION,
            site: SITE.to_owned(),
            agent: id.clone(),
            boot: boot.clone(),
            results: batch,
            gaps: Vec::new(),
        });
        messages.push(Publish::new(topic.clone(), QoS::AtLeastOnce, payload));
        seq += n;
    }
    AgentLoad {
        id,
        boot,
        last_seq: results,
        messages,
    }
}

fn plan(a: &Args) -> Plan {
    let now = watchstand_shared::time::now_ms();
    let agents = a.agents.max(1) as u64;
    let loads: Vec<Arc<AgentLoad>> = (0..agents)
        .map(|i| {
            let share = a.total / agents + u64::from(i < a.total % agents);
            // Index fits: agents is a usize.
            Arc::new(agent_load(a, usize::try_from(i).unwrap_or(0), share, now))
        })
        .filter(|l| l.last_seq > 0)
        .collect();
    let messages = loads.iter().map(|l| l.messages.len()).sum();
    let bytes = loads
        .iter()
        .flat_map(|l| l.messages.iter())
        .map(|m| m.payload.len())
        .sum();
    Plan {
        agents: loads,
        total: a.total,
        messages,
        bytes,
    }
}

fn options(url: &str, id: &str) -> anyhow::Result<MqttOptions> {
    let rest = url.trim_start_matches("mqtt://");
    let (host, port) = rest.rsplit_once(':').context("broker url has a port")?;
    let mut o = MqttOptions::new(id, host, port.parse::<u16>().context("broker port")?);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    Ok(o)
}

/// A connected publisher: its client (kept so the event loop does not end) and the time its
/// last PUBACK arrived.
struct Publisher {
    client: AsyncClient,
    load: Arc<AgentLoad>,
    acked_at: Arc<Mutex<Option<Result<Instant, String>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Publisher {
    async fn connect(url: &str, load: Arc<AgentLoad>) -> anyhow::Result<Self> {
        let (client, mut eventloop) =
            AsyncClient::new(options(url, &format!("bench-pub-{}", load.id))?, 200);
        let (conn_tx, conn_rx) = tokio::sync::oneshot::channel::<()>();
        let acked_at = Arc::new(Mutex::new(None));
        let n = load.messages.len();
        let done = acked_at.clone();
        let poll = tokio::spawn(async move {
            let mut conn_tx = Some(conn_tx);
            let mut acked = 0usize;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        if let Some(t) = conn_tx.take() {
                            let _ignored = t.send(()).is_ok();
                        }
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        acked += 1;
                        if acked == n {
                            if let Ok(mut d) = done.lock() {
                                *d = Some(Ok(Instant::now()));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Ok(mut d) = done.lock() {
                            d.get_or_insert(Err(e.to_string()));
                        }
                        return;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), conn_rx)
            .await
            .context("publisher CONNACK within 10 s")?
            .context("publisher event loop ended")?;
        Ok(Self {
            client,
            load,
            acked_at,
            tasks: vec![poll],
        })
    }

    /// Starts publishing every message, as fast as the client's in-flight window allows.
    fn start(&mut self) {
        let client = self.client.clone();
        let load = self.load.clone();
        self.tasks.push(tokio::spawn(async move {
            for m in &load.messages {
                let sent = client
                    .publish_bytes(m.topic.clone(), QoS::AtLeastOnce, false, m.payload.clone())
                    .await;
                if sent.is_err() {
                    return;
                }
            }
        }));
    }

    fn acked_at(&self) -> Option<Result<Instant, String>> {
        self.acked_at.lock().ok().and_then(|g| g.clone())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A subscriber's event loop in a task, dropped with it.
struct Subscription<S> {
    state: Arc<Mutex<S>>,
    _client: AsyncClient,
    task: JoinHandle<()>,
}

impl<S> Drop for Subscription<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Send + 'static> Subscription<S> {
    /// Connects as `id` (clean session), subscribes `filter` at QoS 1, waits for the SUBACK;
    /// `on_publish` runs for every message received (the client acknowledges it right away).
    async fn start(
        url: &str,
        id: &str,
        filter: &str,
        state: S,
        on_publish: impl Fn(&mut S, &Publish) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let mut o = options(url, id)?;
        o.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(o, 10);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .context("queue subscribe")?;
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let (sub_tx, sub_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut sub_tx = Some(sub_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(t) = sub_tx.take() {
                            let _ignored = t.send(()).is_ok();
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        if let Ok(mut s) = shared.lock() {
                            on_publish(&mut s, &p);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), sub_rx)
            .await
            .context("SUBACK within 10 s")?
            .context("subscriber event loop ended")?;
        Ok(Self {
            state,
            _client: client,
            task,
        })
    }

    fn read<T>(&self, f: impl FnOnce(&S) -> T) -> Option<T> {
        self.state.lock().ok().map(|s| f(&s))
    }
}

/// Results in a batch payload, counted without decoding it (the baseline does the least a
/// consumer can do: receive, acknowledge, count).
fn count_results(payload: &[u8]) -> u64 {
    std::str::from_utf8(payload).map_or(0, |s| s.matches("\"seq\":").count() as u64)
}

/// The baseline's counter: results received and when the total was reached.
#[derive(Default)]
struct Received {
    results: u64,
    total: u64,
    done_at: Option<Instant>,
}

/// The ack watermark of every (agent, boot), with when it was received.
#[derive(Default)]
struct Watermarks {
    by_agent: HashMap<(String, String), (u64, Instant)>,
}

impl Watermarks {
    /// When every `(agent, boot, seq)` was covered (the latest receipt), if all are.
    fn covered(&self, targets: &[(String, String, u64)]) -> Option<Instant> {
        let mut latest: Option<Instant> = None;
        for (agent, boot, seq) in targets {
            let (w, at) = self.by_agent.get(&(agent.clone(), boot.clone()))?;
            if w < seq {
                return None;
            }
            latest = Some(latest.map_or(*at, |l| l.max(*at)));
        }
        latest
    }
}

/// One run's outcome.
#[derive(Debug, Clone)]
struct RunOutcome {
    /// Results received (A) or stored (B).
    results: u64,
    /// Seconds from the first publish to the last result received (A) or acknowledged (B); to
    /// the deadline when incomplete.
    secs: f64,
    /// Seconds until every publisher had its last PUBACK from the broker.
    published_secs: Option<f64>,
    complete: bool,
    /// Collector only: health counters of the run.
    health: Option<HealthDelta>,
    /// Anything else to say about the run.
    note: String,
}

impl RunOutcome {
    fn rate(&self) -> f64 {
        self.results as f64 / self.secs.max(1e-9)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct HealthDelta {
    stored: u64,
    duplicates: u64,
    rejected: u64,
    messages: u64,
    batches: u64,
}

fn counter(h: &Value, key: &str) -> u64 {
    h["ingest"][key].as_u64().unwrap_or(0)
}

impl HealthDelta {
    fn between(before: &Value, after: &Value) -> Self {
        let d = |k: &str| counter(after, k).saturating_sub(counter(before, k));
        Self {
            stored: d("results_stored"),
            duplicates: d("duplicates"),
            rejected: d("rejected_total"),
            messages: d("messages"),
            batches: d("batches"),
        }
    }
}

/// The Mosquitto of one run, configured as `configs/mosquitto/mosquitto.conf` recommends except
/// for what a throwaway loopback broker must differ in (anonymous on 127.0.0.1, paths in the
/// run's temporary directory, log to a file there).
async fn start_mosquitto(
    dir: &Path,
    persistence: bool,
) -> anyhow::Result<(MosquittoSpec, watchstand_tests::Mosquitto)> {
    let mut spec = MosquittoSpec::new(dir);
    spec.extra = "max_queued_bytes 0\nmax_packet_size 262144\npersistent_client_expiration 14d\nupgrade_outgoing_qos false\nretain_available true\n".to_owned();
    if !persistence {
        // Later lines win in mosquitto.conf.
        spec.extra.push_str("persistence false\n");
    }
    let m = spec
        .spawn()
        .await
        .context("Mosquitto is not installed (apt-get install mosquitto)")?;
    Ok((spec, m))
}

fn elapsed(t0: Instant, t: Instant) -> f64 {
    t.duration_since(t0).as_secs_f64()
}

/// Connects every publisher, starts the clock, starts them all.
async fn start_publishers(url: &str, plan: &Plan) -> anyhow::Result<(Vec<Publisher>, Instant)> {
    let mut pubs = Vec::with_capacity(plan.agents.len());
    for load in &plan.agents {
        pubs.push(Publisher::connect(url, load.clone()).await?);
    }
    let t0 = Instant::now();
    for p in &mut pubs {
        p.start();
    }
    Ok((pubs, t0))
}

/// When every publisher had all its PUBACKs, waiting for them until `deadline`.
async fn published_secs(
    pubs: &[Publisher],
    t0: Instant,
    deadline: Instant,
) -> anyhow::Result<Option<f64>> {
    while Instant::now() < deadline && pubs.iter().any(|p| p.acked_at().is_none()) {
        tokio::time::sleep(POLL).await;
    }
    let mut last = t0;
    for p in pubs {
        match p.acked_at() {
            Some(Ok(at)) => last = last.max(at),
            Some(Err(e)) => bail!("publisher {} failed: {e}", p.load.id),
            None => return Ok(None),
        }
    }
    Ok(Some(elapsed(t0, last)))
}

async fn run_baseline(a: &Args, plan: &Plan, root: &Path) -> anyhow::Result<RunOutcome> {
    let dir = tempdir(root, "bench-ingest-a-")?;
    let (spec, _mosquitto) = start_mosquitto(&dir.path().join("mosquitto"), a.persistence).await?;
    let url = spec.url();
    let filter = TopicLayout::default().all_agents(Channel::Results);
    let sub = Subscription::start(
        &url,
        "bench-baseline",
        &filter,
        Received {
            total: plan.total,
            ..Received::default()
        },
        |s: &mut Received, p: &Publish| {
            s.results += count_results(&p.payload);
            if s.results >= s.total && s.done_at.is_none() {
                s.done_at = Some(Instant::now());
            }
        },
    )
    .await?;
    let (pubs, t0) = start_publishers(&url, plan).await?;
    let deadline = t0 + Duration::from_secs(a.timeout_s);
    let done = loop {
        if let Some(at) = sub.read(|s| s.done_at).flatten() {
            break Some(at);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(POLL).await;
    };
    let results = sub.read(|s| s.results).unwrap_or(0);
    let published = published_secs(&pubs, t0, deadline).await?;
    Ok(RunOutcome {
        results,
        secs: elapsed(t0, done.unwrap_or(deadline)),
        published_secs: published,
        complete: done.is_some(),
        health: None,
        note: String::new(),
    })
}

fn start_perf(file: &Path, pid: u32) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(["record", "-F", "199", "--call-graph", "dwarf,16384", "-o"])
        .arg(file)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record (is perf installed?)")
}

fn stop_perf(mut perf: Child) {
    let _sent = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status()
        .is_ok();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = perf.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _killed = perf.kill().is_ok();
    let _reaped = perf.wait().is_ok();
}

/// How long the collector may take to exit after SIGTERM before the bench kills it (reported
/// either way).
const STOP_LIMIT: Duration = Duration::from_secs(30);

async fn run_collector(
    a: &Args,
    plan: &Plan,
    root: &Path,
    run: usize,
) -> anyhow::Result<RunOutcome> {
    let dir = tempdir(root, "bench-ingest-b-")?;
    let (spec, _mosquitto) = start_mosquitto(&dir.path().join("mosquitto"), a.persistence).await?;
    let url = spec.url();
    let mut cspec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(url.clone()),
        "",
    );
    let mut extra = Vec::new();
    if let Some(n) = a.collector_batch_max {
        extra.push(format!("ingest_batch_max = {n}"));
    }
    if let Some(n) = a.collector_store_cache_mib {
        extra.push(format!("store_cache_mib = {n}"));
    }
    cspec.collector_extra = extra.join("\n");
    let mut collector = cspec.spawn().await;
    let filter = TopicLayout::default().all_agents(Channel::Ack);
    let acks = Subscription::start(
        &url,
        "bench-acks",
        &filter,
        Watermarks::default(),
        |s: &mut Watermarks, p: &Publish| {
            let now = watchstand_shared::time::now_ms();
            if let Ok(ack) = v1::decode::<Ack>(&p.payload, v1::MAX_PAYLOAD_BYTES, now) {
                let at = Instant::now();
                let e = s.by_agent.entry((ack.agent, ack.boot)).or_insert((0, at));
                if ack.seq > e.0 {
                    *e = (ack.seq, at);
                }
            }
        },
    )
    .await?;

    // Warm-up: one result from another agent, acknowledged, proves the collector's session
    // and subscriptions are in place before the clock starts.
    let boot = format!(
        "{:016x}",
        splitmix(watchstand_shared::time::now_ms() ^ 0x5741_524D)
    );
    let warm = Arc::new(AgentLoad {
        id: WARMUP_AGENT.to_owned(),
        messages: vec![Publish::new(
            TopicLayout::default().agent(SITE, WARMUP_AGENT, Channel::Results),
            QoS::AtLeastOnce,
            warm_payload(&boot),
        )],
        boot,
        last_seq: 1,
    });
    let mut warm_pub = Publisher::connect(&url, warm.clone()).await?;
    warm_pub.start();
    let warm_target = [(warm.id.clone(), warm.boot.clone(), 1)];
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    while acks.read(|s| s.covered(&warm_target)).flatten().is_none() {
        if Instant::now() >= warm_deadline {
            bail!("the collector did not acknowledge the warm-up result within 30 s");
        }
        tokio::time::sleep(POLL).await;
    }
    drop(warm_pub);
    let before = collector.health().await;

    let targets: Vec<(String, String, u64)> = plan
        .agents
        .iter()
        .map(|l| (l.id.clone(), l.boot.clone(), l.last_seq))
        .collect();
    let (pubs, t0) = start_publishers(&url, plan).await?;
    let perf = match &a.perf {
        Some(file) => Some(start_perf(
            &PathBuf::from(format!("{}.{run}", file.display())),
            collector.pid(),
        )?),
        None => None,
    };
    let deadline = t0 + Duration::from_secs(a.timeout_s);
    let done = loop {
        if let Some(at) = acks.read(|s| s.covered(&targets)).flatten() {
            break Some(at);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(p) = perf {
        stop_perf(p);
    }
    let after = collector.health().await;
    let health = HealthDelta::between(&before, &after);
    let collector_rss = peak_rss_kb(Some(collector.pid()));
    let published = published_secs(&pubs, t0, deadline).await?;
    drop(pubs);
    drop(acks);
    // Issue 10: SIGTERM right after a backlog drain must end the collector within 10 s.
    let (clean, stop_took) = collector.terminate_within(STOP_LIMIT);
    if !clean {
        eprintln!(
            "WARNING: the collector did not exit 0 within {} s of SIGTERM (killed after {:.1} s)",
            STOP_LIMIT.as_secs(),
            stop_took.as_secs_f64()
        );
    }
    let stop_note = if clean {
        format!(", SIGTERM → exit 0 in {:.1} s", stop_took.as_secs_f64())
    } else {
        format!(
            ", SIGTERM → no clean exit within {} s",
            STOP_LIMIT.as_secs()
        )
    };
    Ok(RunOutcome {
        results: health.stored,
        secs: elapsed(t0, done.unwrap_or(deadline)),
        published_secs: published,
        complete: done.is_some(),
        health: Some(health),
        note: collector_rss.map_or_else(String::new, |kb| {
            format!(", collector peak RSS {:.0} MiB", kb as f64 / 1024.0)
        }) + &stop_note,
    })
}

/// Side C: the writes the collector's ingest makes for these results (raw result + dirty marks
/// per result, the dedup state per agent), committed to a fresh sled store in batches of
/// `store_batch` messages in arrival order (agents interleaved), each batch flushed. Only the
/// commits are timed; decoding and building the writes is reported apart.
fn run_store(a: &Args, plan: &Plan, root: &Path) -> anyhow::Result<RunOutcome> {
    let dir = tempdir(root, "bench-ingest-c-")?;
    let store = Store::open(&dir.path().join("store"))?;
    let mut order = Vec::with_capacity(plan.messages);
    let longest = plan
        .agents
        .iter()
        .map(|l| l.messages.len())
        .max()
        .unwrap_or(0);
    for i in 0..longest {
        for l in &plan.agents {
            if let Some(m) = l.messages.get(i) {
                order.push((l, m));
            }
        }
    }
    let (mut commit, mut build) = (Duration::ZERO, Duration::ZERO);
    let mut results = 0u64;
    let now = watchstand_shared::time::now_ms();
    for chunk in order.chunks(a.store_batch.max(1)) {
        let t = std::time::Instant::now();
        let mut batch = StoreBatch::default();
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (load, m) in chunk {
            let b: ResultBatch = v1::decode(&m.payload, v1::MAX_PAYLOAD_BYTES, now)
                .map_err(|e| anyhow::anyhow!("decode: {e}"))?;
            if a.store_layout == StoreLayout::Blob {
                let first = b.results.first().map_or(0, |r| r.seq);
                batch.push(
                    trees::RESULTS,
                    Write::Put(
                        KeyBuf::new().str(&b.agent).str(&b.boot).u64(first).build(),
                        m.payload.to_vec(),
                    ),
                );
            }
            for r in &b.results {
                if a.store_layout != StoreLayout::Blob {
                    batch.push(trees::RESULTS, Store::result_write(&b.agent, &b.boot, r));
                }
                for mark in dirty_marks(&b.agent, &r.probe, r.observed_ms, r.interval_ms) {
                    if let Write::Put(k, _) = mark {
                        batch.mark_dirty(k);
                    }
                }
            }
            results += b.results.len() as u64;
            if let Some(r) = b.results.last() {
                last.insert(&load.id, r.seq);
            }
        }
        // The dedup state the collector writes after the data: one small record per agent.
        for (agent, seq) in last {
            batch.push(
                trees::SEQS,
                Write::Put(
                    KeyBuf::new().str(agent).str("boot").build(),
                    seq.to_be_bytes().to_vec(),
                ),
            );
        }
        build += t.elapsed();
        let t = std::time::Instant::now();
        store.commit(batch)?;
        commit += t.elapsed();
    }
    drop(store);
    Ok(RunOutcome {
        results,
        secs: commit.as_secs_f64(),
        published_secs: None,
        complete: results == plan.total,
        health: None,
        note: format!(
            " (commits only, {} messages per commit, layout {}; decode + building the writes took another {:.2} s; peak RSS {:.1} GB)",
            a.store_batch,
            layout_name(a.store_layout),
            build.as_secs_f64(),
            peak_rss_kb(None).unwrap_or(0) as f64 / 1e6,
        ),
    })
}

fn layout_name(l: StoreLayout) -> String {
    clap::ValueEnum::to_possible_value(&l).map_or_else(String::new, |v| v.get_name().to_owned())
}

/// Side C in a fresh process: `bench ingest --child …` with the same sizes.
fn run_store_child(a: &Args, root: &Path) -> anyhow::Result<RunOutcome> {
    let exe = std::env::current_exe().context("the bench's own path")?;
    let out = Command::new(exe)
        .arg("ingest")
        .arg("--child")
        .args(["--sides", "store"])
        .args(["--total", &a.total.to_string()])
        .args(["--agents", &a.agents.to_string()])
        .args(["--batch", &a.batch.to_string()])
        .args(["--probes", &a.probes.to_string()])
        .args(["--store-batch", &a.store_batch.to_string()])
        .args(["--store-layout", &layout_name(a.store_layout)])
        .arg("--dir")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .context("running side C in a child process")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "side C child failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@store "))
        .context("side C child printed no @store line")?;
    let mut parts = line.splitn(4, ' ');
    let mut field = || parts.next().context("short @store line");
    let results: u64 = field()?.parse()?;
    let secs: f64 = field()?.parse()?;
    let complete = field()? == "complete";
    let note = field().unwrap_or_default().to_owned();
    Ok(RunOutcome {
        results,
        secs,
        published_secs: None,
        complete,
        health: None,
        note,
    })
}

fn warm_payload(boot: &str) -> Vec<u8> {
    let now = watchstand_shared::time::now_ms();
    v1::encode(&ResultBatch {
        v: v1::VERSION,
        site: SITE.to_owned(),
        agent: WARMUP_AGENT.to_owned(),
        boot: boot.to_owned(),
        results: vec![ProbeResult {
            seq: 1,
            probe: "p000".to_owned(),
            kind: "http".to_owned(),
            target: "http://127.0.0.1/".to_owned(),
            observed_ms: now,
            interval_ms: 10_000,
            state: ProbeState::Up,
            latency_us: 1_000,
            error: None,
            metrics: Vec::new(),
        }],
        gaps: Vec::new(),
    })
}

fn tempdir(root: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .with_context(|| format!("temporary directory in {}", root.display()))?;
    // Mosquitto started as root drops to its own user: let it reach its directory.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(dir)
}

fn describe(side: &str, run: usize, runs: usize, o: &RunOutcome, total: u64) -> String {
    let mut line = format!(
        "run {run}/{runs} {side:<10} {:>9} results in {:>6.2} s = {:>9} results/s",
        thousands(o.results as f64),
        o.secs,
        thousands(o.rate()),
    );
    if let Some(p) = o.published_secs {
        line.push_str(&format!(" (all published by {p:.2} s)"));
    }
    if let Some(h) = o.health {
        line.push_str(&format!(
            ", lost {}, duplicates {}, rejected {}, {} messages in {} batches",
            total.saturating_sub(h.stored),
            h.duplicates,
            h.rejected,
            h.messages,
            h.batches
        ));
    }
    line.push_str(&o.note);
    if !o.complete {
        line.push_str(" — INCOMPLETE at the timeout");
    }
    line
}

/// `bench ingest`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let a = args.effective();
    if a.child {
        let plan = plan(&a);
        let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
        let o = run_store(&a, &plan, &root)?;
        println!(
            "@store {} {:.6} {} {}",
            o.results,
            o.secs,
            if o.complete { "complete" } else { "incomplete" },
            o.note
        );
        return Ok(());
    }
    if watchstand_tests::mosquitto_bin().is_none() {
        bail!("Mosquitto is not installed (apt-get install mosquitto); `bench ingest` needs it");
    }
    // Build (or find) the collector before anything is timed.
    let collector_bin = watchstand_tests::bin("watchstand-collector");
    let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let encode_start = std::time::Instant::now();
    let plan = plan(&a);
    println!(
        "# ingest: {} results from {} agents × {} probes, {} per message: {} messages, {:.1} MB of payload (encoded in {:.2} s, before the clock); {} runs per side, interleaved; Mosquitto persistence {}; collector {} (ingest_batch_max {}, store_cache_mib {})",
        thousands(plan.total as f64),
        plan.agents.len(),
        a.probes,
        a.batch,
        thousands(plan.messages as f64),
        plan.bytes as f64 / 1e6,
        encode_start.elapsed().as_secs_f64(),
        a.runs,
        if a.persistence { "on (autosave_interval 1)" } else { "off" },
        collector_bin.display(),
        a.collector_batch_max
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        a.collector_store_cache_mib
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut baseline = Vec::new();
    let mut collector = Vec::new();
    let mut store = Vec::new();
    let mut lost = 0u64;
    for run in 1..=a.runs {
        for side in &a.sides {
            match side {
                Side::Baseline => {
                    let o = rt.block_on(run_baseline(&a, &plan, &root))?;
                    println!("{}", describe("A baseline", run, a.runs, &o, plan.total));
                    baseline.push(o);
                }
                Side::Collector => {
                    let o = rt.block_on(run_collector(&a, &plan, &root, run))?;
                    println!("{}", describe("B collector", run, a.runs, &o, plan.total));
                    lost += plan.total.saturating_sub(o.results);
                    collector.push(o);
                }
                Side::Store => {
                    let o = run_store_child(&a, &root)?;
                    println!("{}", describe("C store", run, a.runs, &o, plan.total));
                    store.push(o);
                }
            }
        }
    }
    rt.shutdown_timeout(Duration::from_secs(5));

    let rates = |v: &[RunOutcome]| v.iter().map(RunOutcome::rate).collect::<Vec<_>>();
    let a_sum = Summary::of(&rates(&baseline));
    let b_sum = Summary::of(&rates(&collector));
    let c_sum = Summary::of(&rates(&store));
    println!();
    println!("| side | results/s, median (min – max, runs) |");
    println!("|---|---|");
    if let Some(s) = a_sum {
        println!(
            "| A: bare rumqttc subscriber via Mosquitto | {} |",
            s.show(thousands)
        );
    }
    if let Some(s) = b_sum {
        println!(
            "| B: collector via Mosquitto (stored, flushed, acknowledged) | {} |",
            s.show(thousands)
        );
    }
    if let Some(s) = c_sum {
        println!(
            "| C: the store alone (the collector's writes, sled commit + flush) | {} |",
            s.show(thousands)
        );
    }
    let pair = |x: &[RunOutcome], y: &[RunOutcome]| -> Option<Summary> {
        let r: Vec<f64> = x
            .iter()
            .zip(y)
            .map(|(x, y)| y.rate() / x.rate().max(1e-9))
            .collect();
        Summary::of(&r)
    };
    if let Some(r) = pair(&baseline, &collector) {
        println!(
            "| ratio B/A per interleaved run | {} |",
            r.show(|x| format!("{x:.3}"))
        );
    }
    if let Some(r) = pair(&store, &collector) {
        println!(
            "| ratio B/C per interleaved run | {} |",
            r.show(|x| format!("{x:.3}"))
        );
    }
    let b = b_sum.map_or(0.0, |s| s.median);
    let base = a_sum.map_or(0.0, |s| s.median);
    let ratio = if base > 0.0 { b / base } else { 0.0 };
    println!();
    println!(
        "ingest: {} results/s, baseline {} results/s, ratio {ratio:.3}, lost {lost}",
        b.round(),
        base.round()
    );
    Ok(())
}
