//! A DNS server on 127.0.0.1 for the `dns` probe tests: answers UDP queries from a table the
//! test edits while it runs (records, NXDOMAIN, SERVFAIL, REFUSED, or silence), built on
//! `hickory-proto`'s encoder. Names not in the table are NXDOMAIN.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record};
use tokio::net::UdpSocket;
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
}

/// A running DNS server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    table: Arc<Mutex<HashMap<String, Behaviour>>>,
    queries: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// The table key of a name: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts a server with an empty table on a free loopback port.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the DNS server");
        let addr = socket.local_addr().expect("local addr");
        let table: Arc<Mutex<HashMap<String, Behaviour>>> = Arc::default();
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
                let Some(query) = request.queries.first().cloned() else {
                    continue;
                };
                let behaviour = t
                    .lock()
                    .unwrap()
                    .get(&key(&query.name().to_utf8()))
                    .cloned()
                    .unwrap_or(Behaviour::NxDomain);
                let mut reply = Message::response(request.metadata.id, OpCode::Query);
                reply.metadata.recursion_desired = request.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                reply.add_query(query.clone());
                match behaviour {
                    Behaviour::Silent => continue,
                    Behaviour::NxDomain => reply.metadata.response_code = ResponseCode::NXDomain,
                    Behaviour::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
                    Behaviour::Refused => reply.metadata.response_code = ResponseCode::Refused,
                    Behaviour::Answer(records) => {
                        for data in records {
                            if data.record_type() == query.query_type() {
                                reply.answers.push(Record::from_rdata(
                                    query.name().clone(),
                                    60,
                                    data,
                                ));
                            }
                        }
                    }
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _sent = socket.send_to(&bytes, from).await;
                }
            }
        });
        Self {
            addr,
            table,
            queries,
            task,
        }
    }

    /// Sets how `name` is answered from now on.
    pub fn set(&self, name: &str, behaviour: Behaviour) {
        self.table.lock().unwrap().insert(key(name), behaviour);
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
