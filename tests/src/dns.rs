//! A DNS server on 127.0.0.1 for the `dns` probe tests: answers UDP queries from a table the
//! test edits while it runs (records, NXDOMAIN, SERVFAIL, REFUSED, silence, or "truncated over
//! UDP, whole over TCP"), built on `hickory-proto`'s encoder. It listens on UDP and TCP on the
//! same port. Names not in the table are NXDOMAIN.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// How the server treats one name.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// NOERROR with these records (those of the type asked; none is an empty answer).
    Answer(Vec<RData>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// No reply at all.
    Silent,
    /// Over UDP an empty answer with the TC (truncated) bit; over TCP these records.
    Truncated(Vec<RData>),
}

/// A running DNS server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    table: Table,
    queries: Arc<AtomicU64>,
    tcp_queries: Arc<AtomicU64>,
    task: JoinHandle<()>,
    tcp_task: JoinHandle<()>,
}

type Table = Arc<Mutex<HashMap<String, Behaviour>>>;

/// The reply to `request` (`None`: stay silent).
fn reply_to(table: &Table, request: &Message, tcp: bool) -> Option<Vec<u8>> {
    let query = request.queries.first()?.clone();
    let behaviour = table
        .lock()
        .unwrap()
        .get(&key(&query.name().to_utf8()))
        .cloned()
        .unwrap_or(Behaviour::NxDomain);
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(query.clone());
    let records = match behaviour {
        Behaviour::Silent => return None,
        Behaviour::NxDomain => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            Vec::new()
        }
        Behaviour::ServFail => {
            reply.metadata.response_code = ResponseCode::ServFail;
            Vec::new()
        }
        Behaviour::Refused => {
            reply.metadata.response_code = ResponseCode::Refused;
            Vec::new()
        }
        Behaviour::Truncated(_) if !tcp => {
            reply.metadata.truncation = true;
            Vec::new()
        }
        Behaviour::Answer(records) | Behaviour::Truncated(records) => records,
    };
    for data in records {
        if data.record_type() == query.query_type() {
            reply
                .answers
                .push(Record::from_rdata(query.name().clone(), 60, data));
        }
    }
    reply.to_vec().ok()
}

/// The table key of a name: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts a server with an empty table on a free loopback port.
    pub async fn start() -> Self {
        // A free UDP port whose TCP twin is free too: another test may hold the TCP port, so
        // try a bounded number of fresh ports.
        let mut bound = None;
        for _ in 0..50 {
            let socket = UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind the DNS server");
            let addr = socket.local_addr().expect("local addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((socket, tcp, addr));
                break;
            }
        }
        let (socket, tcp, addr) =
            bound.expect("a loopback port free for both UDP and TCP within 50 tries");
        let table: Table = Arc::default();
        let queries = Arc::new(AtomicU64::new(0));
        let (t, q) = (table.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0_u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::Relaxed);
                if let Some(bytes) = reply_to(&t, &request, false) {
                    let _sent = socket.send_to(&bytes, from).await;
                }
            }
        });
        let tcp_queries = Arc::new(AtomicU64::new(0));
        let (t, q) = (table.clone(), tcp_queries.clone());
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let (t, q) = (t.clone(), q.clone());
                tokio::spawn(async move {
                    let Ok(len) = stream.read_u16().await else {
                        return;
                    };
                    let mut buf = vec![0_u8; usize::from(len)];
                    if stream.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let Ok(request) = Message::from_vec(&buf) else {
                        return;
                    };
                    q.fetch_add(1, Ordering::Relaxed);
                    if let Some(bytes) = reply_to(&t, &request, true) {
                        let len = u16::try_from(bytes.len()).expect("reply fits");
                        let mut framed = len.to_be_bytes().to_vec();
                        framed.extend_from_slice(&bytes);
                        let _sent = stream.write_all(&framed).await;
                    }
                });
            }
        });
        Self {
            addr,
            table,
            queries,
            tcp_queries,
            task,
            tcp_task,
        }
    }

    /// Sets how `name` is answered from now on.
    pub fn set(&self, name: &str, behaviour: Behaviour) {
        self.table.lock().unwrap().insert(key(name), behaviour);
    }

    /// UDP queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// TCP queries received so far.
    pub fn tcp_queries(&self) -> u64 {
        self.tcp_queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
        self.tcp_task.abort();
    }
}
