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

use watchstand_shared::storage::{
    Entry as StorageEntry, Result as StorageResult, Storage, StorageError, Tree, Write,
};
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

/// A storage engine that can run out of space, for the outbox's disk-full tests. It models what
/// sled does: writes are accepted into memory (`live`) and reach the disk (`durable`) only at a
/// flush; while `full`, flushes fail, and after a failed flush every call fails
/// (sled's global error) until [`Storage::reopen`], which serves what was durable.
#[derive(Debug, Clone, Default)]
pub struct FullableStorage {
    inner: Arc<Mutex<Fullable>>,
}

type Trees = HashMap<String, std::collections::BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Debug, Default)]
struct Fullable {
    live: Trees,
    durable: Trees,
    full: bool,
    broken: bool,
}

impl FullableStorage {
    /// Fills (true) or frees (false) the disk.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fullable> {
        self.inner.lock().unwrap()
    }
}

fn no_space(op: &'static str) -> StorageError {
    StorageError::engine(op, std::io::Error::from_raw_os_error(28))
}

impl Storage for FullableStorage {
    fn tree(&self, name: &str) -> StorageResult<Arc<dyn Tree>> {
        self.lock().live.entry(name.to_owned()).or_default();
        Ok(Arc::new(FullableTree {
            storage: self.clone(),
            name: name.to_owned(),
        }))
    }

    fn flush(&self) -> StorageResult<()> {
        let mut s = self.lock();
        if s.full || s.broken {
            s.broken = true;
            return Err(no_space("flush"));
        }
        s.durable = s.live.clone();
        Ok(())
    }

    fn size_on_disk(&self) -> StorageResult<u64> {
        Ok(0)
    }

    fn reopen(&self) -> StorageResult<()> {
        let mut s = self.lock();
        if s.full {
            return Err(no_space("reopen"));
        }
        s.live = s.durable.clone();
        s.broken = false;
        Ok(())
    }
}

struct FullableTree {
    storage: FullableStorage,
    name: String,
}

impl FullableTree {
    fn write(
        &self,
        f: impl FnOnce(&mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>),
    ) -> StorageResult<()> {
        let mut s = self.storage.lock();
        // Like sled: a write is accepted into memory even when the disk is full; it is the
        // flush that fails, and breaks the engine.
        if s.broken {
            return Err(no_space("insert"));
        }
        f(s.live.entry(self.name.clone()).or_default());
        Ok(())
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> T,
    ) -> StorageResult<T> {
        let s = self.storage.lock();
        if s.broken {
            return Err(no_space("read"));
        }
        let empty = std::collections::BTreeMap::new();
        Ok(f(s.live.get(&self.name).unwrap_or(&empty)))
    }
}

impl Tree for FullableTree {
    fn get(&self, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        self.read(|m| m.get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> StorageResult<()> {
        self.write(|m| {
            m.insert(key.to_vec(), value.to_vec());
        })
    }

    fn delete(&self, key: &[u8]) -> StorageResult<()> {
        self.write(|m| {
            m.remove(key);
        })
    }

    fn apply(&self, batch: Vec<Write>) -> StorageResult<()> {
        self.write(|m| {
            for w in batch {
                match w {
                    Write::Put(k, v) => {
                        m.insert(k, v);
                    }
                    Write::Delete(k) => {
                        m.remove(&k);
                    }
                }
            }
        })
    }

    fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> StorageResult<Vec<StorageEntry>> {
        self.read(|m| {
            m.range(start.to_vec()..)
                .take_while(|(k, _)| end.is_none_or(|e| k.as_slice() < e))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn range_rev(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> StorageResult<Vec<StorageEntry>> {
        let mut all = self.range(start, end, usize::MAX)?;
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> StorageResult<usize> {
        let keys: Vec<Vec<u8>> = self
            .range(start, end, usize::MAX)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let n = keys.len();
        self.apply(keys.into_iter().map(Write::Delete).collect())?;
        Ok(n)
    }

    fn len(&self) -> StorageResult<usize> {
        self.read(std::collections::BTreeMap::len)
    }
}

/// The config problems of one `[[probes]]` entry (its TOML body, without the header) in an
/// otherwise valid agent config, as `key: message` lines.
pub fn probe_problems(probe: &str) -> Vec<String> {
    let text = format!(
        "[agent]\nsite = \"lab\"\nid = \"agent-1\"\ndata_dir = \"./data\"\n\n[[probes]]\n{probe}\n"
    );
    match crate::config::from_str(&text, std::path::Path::new("agent.toml")) {
        Ok(_) => Vec::new(),
        Err(watchstand_shared::config::LoadError::Invalid(e)) => {
            e.errors.iter().map(ToString::to_string).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}
