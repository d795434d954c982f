//! Probe targets on 127.0.0.1 whose health a test switches: an HTTP server that answers 200 or
//! 503 (and logs when each request came and from which user agent, so a benchmark can tell when
//! each prober first saw a change), and a TCP listener that is open or closed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;

/// An HTTP server answering `GET /` (and every other path, so that one server stands for many
/// targets: [`HttpTarget::url_path`]) with 200 `ok` when healthy, 503 otherwise.
#[derive(Debug)]
pub struct HttpTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    requests: Arc<Mutex<VecDeque<Request>>>,
    task: JoinHandle<()>,
}

/// One request an [`HttpTarget`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Epoch ms when it arrived.
    pub at_ms: u64,
    /// Its `User-Agent` header.
    pub user_agent: String,
    /// Whether it was answered healthy (200).
    pub healthy: bool,
}

/// Requests an [`HttpTarget`] remembers (the oldest are forgotten).
const REQUEST_LOG: usize = 100_000;

impl HttpTarget {
    /// Starts a healthy target on a free loopback port.
    pub async fn start() -> Self {
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(VecDeque::new()));
        let (h, n, log) = (healthy.clone(), hits.clone(), requests.clone());
        let app = Router::new().fallback(get(move |headers: HeaderMap| {
            let (h, n, log) = (h.clone(), n.clone(), log.clone());
            async move {
                n.fetch_add(1, Ordering::Relaxed);
                let healthy = h.load(Ordering::Relaxed);
                {
                    let mut log = log.lock().unwrap();
                    if log.len() >= REQUEST_LOG {
                        log.pop_front();
                    }
                    log.push_back(Request {
                        at_ms: crate::now_ms(),
                        user_agent: headers
                            .get(header::USER_AGENT)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        healthy,
                    });
                }
                if healthy {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "down on purpose")
                }
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind target");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        Self {
            addr,
            healthy,
            hits,
            requests,
            task,
        }
    }

    /// `http://addr/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `http://addr{path}` (`path` starts with `/`).
    pub fn url_path(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Switches health.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Requests served.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The requests that arrived at or after `from_ms`, oldest first.
    pub fn requests_since(&self, from_ms: u64) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.at_ms >= from_ms)
            .cloned()
            .collect()
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP port that accepts (and closes) connections while open, and refuses them while closed.
#[derive(Debug)]
pub struct TcpTarget {
    /// The address (kept across close/open).
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl TcpTarget {
    /// An open target on a free loopback port.
    pub async fn start() -> Self {
        let mut t = Self {
            addr: crate::free_addr(),
            task: None,
        };
        t.open().await;
        t
    }

    /// Starts accepting.
    pub async fn open(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind tcp target");
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        }));
    }

    /// Stops accepting (connections are refused).
    pub fn close(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.close();
    }
}
