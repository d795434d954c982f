//! A Modbus TCP server on 127.0.0.1 for the `modbus` probe tests (tokio-modbus's server):
//! holding and input registers and coils a test sets between checks, one unit id, and, like
//! many field gateways, **one client at a time** (a second concurrent connection is refused).

use std::future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Registers and coils per table.
pub const SIZE: usize = 64;

#[derive(Debug)]
struct Tables {
    holding: [u16; SIZE],
    input: [u16; SIZE],
    coils: [bool; SIZE],
}

#[derive(Debug)]
struct Shared {
    unit: u8,
    tables: Mutex<Tables>,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Connections refused because one was already open.
    refused: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
}

/// A running Modbus TCP server; stops when dropped.
#[derive(Debug)]
pub struct ModbusTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// One connection's service; counts itself out of `open` when the connection ends.
struct Conn {
    shared: Arc<Shared>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn range<T: Copy>(table: &[T], addr: u16, n: u16) -> Result<Vec<T>, ExceptionCode> {
    let (from, to) = (usize::from(addr), usize::from(addr) + usize::from(n));
    table
        .get(from..to)
        .map(<[T]>::to_vec)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

impl tokio_modbus::server::Service for Conn {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        if req.slave != self.shared.unit {
            return future::ready(Err(ExceptionCode::GatewayTargetDevice));
        }
        let t = self.shared.tables.lock().expect("modbus tables");
        future::ready(match req.request {
            Request::ReadHoldingRegisters(a, n) => {
                range(&t.holding, a, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(a, n) => {
                range(&t.input, a, n).map(Response::ReadInputRegisters)
            }
            Request::ReadCoils(a, n) => range(&t.coils, a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => {
                range(&t.coils, a, n).map(Response::ReadDiscreteInputs)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

impl ModbusTarget {
    /// A server for unit `unit` on a free loopback port, every register 0.
    pub async fn start(unit: u8) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind modbus target");
        let addr = listener.local_addr().expect("modbus target address");
        let shared = Arc::new(Shared {
            unit,
            tables: Mutex::new(Tables {
                holding: [0; SIZE],
                input: [0; SIZE],
                coils: [false; SIZE],
            }),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = move |stream, _addr| {
                let s = s.clone();
                async move {
                    // One client at a time, as many gateways allow.
                    if s.open.fetch_add(1, Ordering::SeqCst) > 0 {
                        s.open.fetch_sub(1, Ordering::SeqCst);
                        s.refused.fetch_add(1, Ordering::SeqCst);
                        return Ok(None);
                    }
                    s.accepted.fetch_add(1, Ordering::SeqCst);
                    Ok(Some((Conn { shared: s }, stream)))
                }
            };
            let _ended = server.serve(&on_connected, |_err| {}).await.is_ok();
        });
        Self { addr, shared, task }
    }

    /// Sets holding registers from `addr` on.
    pub fn set_holding(&self, addr: usize, words: &[u16]) {
        let mut t = self.shared.tables.lock().expect("modbus tables");
        t.holding[addr..addr + words.len()].copy_from_slice(words);
    }

    /// Sets input registers from `addr` on.
    pub fn set_input(&self, addr: usize, words: &[u16]) {
        let mut t = self.shared.tables.lock().expect("modbus tables");
        t.input[addr..addr + words.len()].copy_from_slice(words);
    }

    /// Sets coils (also served as discrete inputs) from `addr` on.
    pub fn set_coils(&self, addr: usize, bits: &[bool]) {
        let mut t = self.shared.tables.lock().expect("modbus tables");
        t.coils[addr..addr + bits.len()].copy_from_slice(bits);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused because another was open.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_now(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for ModbusTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `value` as the two registers of an `f32`, high word first.
pub fn f32_words(value: f32) -> [u16; 2] {
    let bits = value.to_bits();
    [(bits >> 16) as u16, bits as u16]
}
