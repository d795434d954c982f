//! Agent-equivalents for fault tests and load: a simulated agent speaks protocol v1 exactly as
//! the real agent does on the wire (results batches with a boot id and per-boot seqs, QoS 1, its
//! ack topic), keeps an in-memory outbox trimmed only by the collector's ack watermark, and
//! re-sends from the watermark after a reconnect or when the watermark stalls. It remembers
//! everything it produced, which is what the [`crate::oracle`] checks the store against.
//!
//! It measures nothing: results are synthetic (`up`, a latency derived from the seq), so that
//! many of them run in one test process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watchstand_shared::topic::{Channel, TopicLayout};
use watchstand_shared::wire::v1::{self, Ack, ProbeResult, ProbeState, ResultBatch};

/// How a simulated agent behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Site.
    pub site: String,
    /// Agent id.
    pub agent: String,
    /// Probes (`p0`, `p1`, …), each producing one result per interval.
    pub probes: usize,
    /// Interval of every probe.
    pub interval: Duration,
    /// Re-send from the watermark when it has not moved for this long.
    pub resend_after: Duration,
    /// Most results per MQTT message.
    pub batch_max: usize,
    /// Most results re-sent per round.
    pub resend_window: usize,
    /// Stop producing after this many results (`None`: until told).
    pub produce_max: Option<u64>,
}

impl SimConfig {
    /// `agent` at site `sim` with `probes` probes at `interval`.
    pub fn new(agent: &str, probes: usize, interval: Duration) -> Self {
        Self {
            site: "sim".to_owned(),
            agent: agent.to_owned(),
            probes,
            interval,
            resend_after: Duration::from_secs(5),
            batch_max: 500,
            resend_window: 5_000,
            produce_max: None,
        }
    }
}

/// What a simulated agent did.
#[derive(Debug, Default)]
pub struct SimState {
    /// Every result produced, by seq.
    pub produced: BTreeMap<u64, ProbeResult>,
    /// Results not yet covered by the watermark.
    pub outbox: BTreeMap<u64, ProbeResult>,
    /// Highest watermark received for this boot.
    pub watermark: u64,
    /// Results re-sent (after reconnect or a stall).
    pub resent: u64,
    /// Results published (first sends).
    pub published: u64,
    /// Connections made.
    pub connects: u64,
}

/// A running simulated agent.
#[derive(Debug)]
pub struct SimAgent {
    /// Its config.
    pub config: SimConfig,
    /// Its boot id.
    pub boot: String,
    state: Arc<Mutex<SimState>>,
    producing: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl SimAgent {
    /// Starts producing and publishing to the broker at `url` (`mqtt://127.0.0.1:port`).
    pub fn start(url: &str, config: SimConfig) -> Self {
        let boot = format!("{:016x}", rand::random::<u64>());
        let state = Arc::new(Mutex::new(SimState::default()));
        let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = tokio::spawn(run(
            url.to_owned(),
            config.clone(),
            boot.clone(),
            state.clone(),
            producing.clone(),
        ));
        Self {
            config,
            boot,
            state,
            producing,
            task,
        }
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&SimState) -> T) -> T {
        f(&self.state.lock().expect("sim state"))
    }

    /// Stops producing new results (publishing, acks and re-sends go on).
    pub fn stop_producing(&self) {
        self.producing
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Entries not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.with(|s| s.outbox.len())
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn options(url: &str, id: &str) -> MqttOptions {
    let rest = url.trim_start_matches("mqtt://");
    let (host, port) = rest.rsplit_once(':').expect("url has a port");
    let mut o = MqttOptions::new(id, host, port.parse().expect("port"));
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    o
}

fn batch(config: &SimConfig, boot: &str, results: Vec<ProbeResult>) -> Vec<u8> {
    v1::encode(&ResultBatch {
        v: v1::VERSION,
        site: config.site.clone(),
        agent: config.agent.clone(),
        boot: boot.to_owned(),
        results,
        gaps: Vec::new(),
    })
}

/// Publishes `results` in batches without waiting (a full request queue drops the send; the
/// outbox still holds the entries for the next re-send).
fn send(
    client: &AsyncClient,
    topic: &str,
    config: &SimConfig,
    boot: &str,
    results: &[ProbeResult],
) {
    for chunk in results.chunks(config.batch_max) {
        let _sent = client
            .try_publish(
                topic,
                QoS::AtLeastOnce,
                false,
                batch(config, boot, chunk.to_vec()),
            )
            .is_ok();
    }
}

async fn run(
    url: String,
    config: SimConfig,
    boot: String,
    state: Arc<Mutex<SimState>>,
    producing: Arc<std::sync::atomic::AtomicBool>,
) {
    let layout = TopicLayout::default();
    let results_topic = layout.agent(&config.site, &config.agent, Channel::Results);
    let ack_topic = layout.agent(&config.site, &config.agent, Channel::Ack);
    let (client, mut eventloop) =
        AsyncClient::new(options(&url, &format!("sim-{}", config.agent)), 10_000);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stall_check = tokio::time::interval(Duration::from_millis(500));
    let mut last_progress = Instant::now();
    let mut connected = false;
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !producing.load(std::sync::atomic::Ordering::Relaxed)
                    || config.produce_max.is_some_and(|max| seq >= max)
                {
                    continue;
                }
                let now = watchstand_shared::time::now_ms();
                let mut fresh = Vec::with_capacity(config.probes);
                for p in 0..config.probes {
                    seq += 1;
                    fresh.push(ProbeResult {
                        seq,
                        probe: format!("p{p}"),
                        kind: "http".to_owned(),
                        target: "http://127.0.0.1/".to_owned(),
                        observed_ms: now,
                        interval_ms: u64::try_from(config.interval.as_millis()).unwrap_or(1_000),
                        state: ProbeState::Up,
                        latency_us: 500 + seq % 1_000,
                        error: None,
                        metrics: Vec::new(),
                    });
                }
                {
                    let mut s = state.lock().expect("sim state");
                    for r in &fresh {
                        s.produced.insert(r.seq, r.clone());
                        s.outbox.insert(r.seq, r.clone());
                    }
                    if connected {
                        s.published += fresh.len() as u64;
                    }
                }
                if connected {
                    send(&client, &results_topic, &config, &boot, &fresh);
                }
            }
            _ = stall_check.tick() => {
                if connected && last_progress.elapsed() >= config.resend_after {
                    let pending: Vec<ProbeResult> = {
                        let mut s = state.lock().expect("sim state");
                        let p: Vec<_> = s.outbox.values().take(config.resend_window).cloned().collect();
                        s.resent += p.len() as u64;
                        p
                    };
                    if !pending.is_empty() {
                        send(&client, &results_topic, &config, &boot, &pending);
                    }
                    last_progress = Instant::now();
                }
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    connected = true;
                    let _subscribed = client.try_subscribe(&ack_topic, QoS::AtLeastOnce).is_ok();
                    // Re-send from the watermark after every (re)connect.
                    let pending: Vec<ProbeResult> = {
                        let mut s = state.lock().expect("sim state");
                        s.connects += 1;
                        let p: Vec<_> = s.outbox.values().take(config.resend_window).cloned().collect();
                        if s.connects > 1 {
                            s.resent += p.len() as u64;
                        }
                        p
                    };
                    send(&client, &results_topic, &config, &boot, &pending);
                    last_progress = Instant::now();
                }
                Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == ack_topic => {
                    if let Ok(ack) = v1::decode::<Ack>(&p.payload, v1::MAX_PAYLOAD_BYTES, watchstand_shared::time::now_ms()) {
                        if ack.boot == boot {
                            let mut s = state.lock().expect("sim state");
                            if ack.seq > s.watermark {
                                s.watermark = ack.seq;
                                s.outbox = s.outbox.split_off(&(ack.seq + 1));
                                last_progress = Instant::now();
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    connected = false;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
}
