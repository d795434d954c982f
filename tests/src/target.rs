//! Probe targets on 127.0.0.1 whose health a test switches: an HTTP server that answers 200 or
//! 503, and a TCP listener that is open or closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
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
    task: JoinHandle<()>,
}

impl HttpTarget {
    /// Starts a healthy target on a free loopback port.
    pub async fn start() -> Self {
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let (h, n) = (healthy.clone(), hits.clone());
        let app = Router::new().fallback(get(move || {
            let (h, n) = (h.clone(), n.clone());
            async move {
                n.fetch_add(1, Ordering::Relaxed);
                if h.load(Ordering::Relaxed) {
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
