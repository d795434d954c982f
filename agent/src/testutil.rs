//! Test helpers for the stages (probe → scheduler → outbox → publisher → mqtt): tiny HTTP and
//! TCP targets on `127.0.0.1:0`, a closed port, a scripted probe kind, and a collector-equivalent
//! for the publisher. Compiled only for tests.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use watchstand_shared::topic::Channel;
use watchstand_shared::wire::v1::{decode, CapacityBatch, GapRecord, ResultBatch};

use crate::probe::{Check, Observation};

/// How the HTTP target answers.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

impl Reply {
    /// `200` with `body`.
    pub fn ok(body: &str) -> Self {
        Self::status(200, body)
    }

    /// `status` with `body`.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A running HTTP target.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpTarget {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts a hand-written HTTP/1.1 server that answers every request with `reply` and closes.
pub async fn http_target(reply: Reply) -> HttpTarget {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                tokio::time::sleep(reply.delay).await;
                let response = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
                // The client may have gone (timeout tests); nothing to do then.
                if stream.write_all(response.as_bytes()).await.is_ok() {
                    stream.shutdown().await.ok();
                }
            });
        }
    });
    HttpTarget { addr, requests }
}

/// Starts a TCP listener that accepts and closes every connection.
pub async fn tcp_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    addr
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Shared counters of fake probes: how many run now, the most that ran at once, how many
/// checks finished.
#[derive(Debug, Default)]
pub struct FakeStats {
    /// Running now.
    pub running: AtomicUsize,
    /// Most running at once.
    pub max_running: AtomicUsize,
    /// Checks finished.
    pub finished: AtomicUsize,
}

/// A probe that takes `delay` and is then up; it counts itself in `stats`.
#[derive(Debug)]
pub struct FakeProbe {
    /// How long one check takes.
    pub delay: Duration,
    /// Shared counters.
    pub stats: Arc<FakeStats>,
}

struct Running<'a>(&'a FakeStats);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Check for FakeProbe {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn target(&self) -> &str {
        "fake"
    }

    async fn check(&self) -> Observation {
        let now = self.stats.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.max_running.fetch_max(now, Ordering::SeqCst);
        let _running = Running(&self.stats);
        tokio::time::sleep(self.delay).await;
        self.stats.finished.fetch_add(1, Ordering::SeqCst);
        Observation::up(self.delay)
    }
}

/// A collector-equivalent for publisher tests. It ingests the payloads a test sink recorded the
/// way the real ingest does (`collector/src/ingest`): results and samples once per (boot, seq),
/// a gap record once per (boot, seq) with its range booked as accounted for in the range's
/// boot, and the ack watermark of a boot is the highest seq up to which every seq is stored or
/// accounted for.
#[derive(Debug, Default)]
pub struct FakeCollector {
    /// Per boot: seqs stored or accounted for by a gap record.
    seen: HashMap<String, BTreeSet<u64>>,
    /// Per boot: seqs of the results stored.
    results: HashMap<String, BTreeSet<u64>>,
    /// Gap records booked, in arrival order.
    gaps: Vec<GapRecord>,
}

impl FakeCollector {
    /// Ingests one payload published on `channel`; `now_ms` is the clock its timestamps are
    /// checked against.
    pub fn ingest(&mut self, channel: Channel, payload: &[u8], now_ms: u64) {
        match channel {
            Channel::Results => {
                let batch: ResultBatch = decode(payload, usize::MAX, now_ms).unwrap();
                for r in &batch.results {
                    if self
                        .seen
                        .entry(batch.boot.clone())
                        .or_default()
                        .insert(r.seq)
                    {
                        self.results
                            .entry(batch.boot.clone())
                            .or_default()
                            .insert(r.seq);
                    }
                }
                for g in &batch.gaps {
                    if self
                        .seen
                        .entry(batch.boot.clone())
                        .or_default()
                        .insert(g.seq)
                    {
                        self.seen
                            .entry(g.boot.clone())
                            .or_default()
                            .extend(g.from_seq..=g.to_seq);
                        self.gaps.push(g.clone());
                    }
                }
            }
            _ => {
                let batch: CapacityBatch = decode(payload, usize::MAX, now_ms).unwrap();
                let seen = self.seen.entry(batch.boot.clone()).or_default();
                seen.extend(batch.samples.iter().map(|s| s.seq));
            }
        }
    }

    /// The ack watermark of `boot`.
    pub fn watermark(&self, boot: &str) -> u64 {
        let mut watermark = 0;
        for seq in self.seen.get(boot).into_iter().flatten() {
            if *seq != watermark + 1 {
                break;
            }
            watermark = *seq;
        }
        watermark
    }

    /// The result seqs of `boot` stored.
    pub fn results(&self, boot: &str) -> BTreeSet<u64> {
        self.results.get(boot).cloned().unwrap_or_default()
    }

    /// The gap records booked, in arrival order.
    pub fn gaps(&self) -> &[GapRecord] {
        &self.gaps
    }
}
