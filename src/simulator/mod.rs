//! A built-in CoinDCX futures exchange: Socket.IO private stream plus the signed REST routes.
//!
//! It is a separate exchange, not a view of the hub: it writes payloads the way CoinDCX does
//! (`coindcx/fixtures/`) and shares no model types with the hub, so the hub reaches it through
//! the same client code as the real `stream.coindcx.com` / `api.coindcx.com`.
//!
//! - [`market`]: instruments, integer-tick price walk, the exchange's number notations
//! - [`book`]: orders, positions, wallets (plain data)
//! - [`account`]: the state machine (create, cancel, fills)
//! - `background`: what one random market step does
//! - [`records`]: socket and REST records, field for field
//! - [`socket`]: Socket.IO join/leave and the publisher
//! - [`rest`]: the REST routes with signing, skew and validation
//! - [`activity`]: seeded background events at a configured rate
//! - `prices`: the public `currentPrices@futures#update` publisher (with the activity only)
//!
//! All state sits behind one mutex; every change enqueues its events while holding it, and a
//! single publisher task emits them, so the stream order is the order of the changes.

pub mod account;
mod activity;
mod background;
pub mod book;
pub mod market;
mod prices;
pub mod records;
mod rest;
mod socket;

#[cfg(test)]
mod account_tests;

use account::{ApiError, Emission, Exchange};
use serde_json::{json, Value};
use socketioxide::SocketIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Demo credentials the hub prints at start when it runs the simulator.
pub const DEMO_API_KEY: &str = "demo-key";
pub const DEMO_API_SECRET: &str = "demo-secret";

#[derive(Clone)]
pub struct SimConfig {
    pub bind: SocketAddr,
    pub api_key: String,
    pub api_secret: String,
    /// Background exchange records per second (batched into fewer events at high rates);
    /// 0 = none.
    pub rate: f64,
    pub seed: u64,
}

/// Shows everything but the secret.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("bind", &self.bind)
            .field("api_key", &self.api_key)
            .field("rate", &self.rate)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// Demo credentials, 2 events/s, seed 42.
    pub fn demo(bind: SocketAddr) -> Self {
        SimConfig {
            bind,
            api_key: DEMO_API_KEY.to_string(),
            api_secret: DEMO_API_SECRET.to_string(),
            rate: 2.0,
            seed: 42,
        }
    }
}

/// State shared by the socket handlers, the REST routes and the activity task.
pub(crate) struct Shared {
    cfg: SimConfig,
    exchange: Mutex<Exchange>,
    queue: mpsc::UnboundedSender<(String, Value)>,
    accepting: AtomicBool,
    connects: AtomicU64,
    joins: AtomicU64,
    bad_joins: AtomicU64,
}

impl Shared {
    /// Run `f` on the exchange under the lock; `publish` enqueues events in order.
    fn with_exchange<T>(
        &self,
        f: impl FnOnce(&mut Exchange, &mut dyn FnMut(Vec<Emission>)) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut ex = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        let mut publish = |emissions: Vec<Emission>| {
            for e in emissions {
                self.enqueue(e.event, &e.records);
            }
        };
        f(&mut ex, &mut publish)
    }

    /// Queue one socket event carrying `records` as the JSON text of an array.
    fn enqueue(&self, event: &str, records: &[Value]) {
        let data = serde_json::to_string(records).unwrap_or_else(|_| "[]".to_string());
        let _ = self
            .queue
            .send((event.to_string(), json!({"event": event, "data": data})));
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Handle to a running simulator.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    io: SocketIo,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Bind `cfg.bind` (port 0 allowed) and spawn the server, the publisher and the activity.
    pub async fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut exchange = Exchange::new(cfg.seed);
        exchange.stamp(now_ms());
        let shared = Arc::new(Shared {
            exchange: Mutex::new(exchange),
            queue: tx,
            accepting: AtomicBool::new(true),
            connects: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            bad_joins: AtomicU64::new(0),
            cfg,
        });
        let (layer, io) = SocketIo::builder()
            .ping_interval(Duration::from_secs(25))
            .ping_timeout(Duration::from_secs(20))
            .max_payload(1_000_000)
            .max_buffer_size(16_384)
            .build_layer();
        socket::install(&io, shared.clone());
        let rest_shared = shared.clone();
        let app = axum::Router::new()
            .fallback(move |method, uri, headers, body| {
                rest::handle(rest_shared.clone(), method, uri, headers, body)
            })
            .layer(layer);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                log::error!(target: "simulator", "server stopped: {e}");
            }
        });
        let mut tasks = vec![server, tokio::spawn(socket::publisher(io.clone(), rx))];
        if shared.cfg.rate > 0.0 {
            tasks.push(tokio::spawn(activity::run(shared.clone())));
            // Prices move only with the activity; without it the tests drive every change.
            tasks.push(tokio::spawn(prices::run(shared.clone(), io.clone())));
        }
        log::info!(target: "simulator", "CoinDCX simulator listening on {addr}");
        Ok(Simulator {
            addr,
            shared,
            io,
            stop: Some(stop_tx),
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base for both the stream and the REST API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// Sockets currently joined to channel `coindcx`.
    pub fn joined_sockets(&self) -> usize {
        self.io
            .of("/")
            .map(|ns| ns.within(socket::ROOM).sockets().len())
            .unwrap_or(0)
    }

    pub fn connects_total(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    pub fn joins_total(&self) -> u64 {
        self.shared.joins.load(Ordering::Relaxed)
    }

    pub fn bad_joins_total(&self) -> u64 {
        self.shared.bad_joins.load(Ordering::Relaxed)
    }

    /// `false`: drop every socket now and refuse new ones until set back to `true`.
    /// The account keeps changing meanwhile, as a real exchange would.
    pub fn set_accepting(&self, accept: bool) {
        self.shared.accepting.store(accept, Ordering::SeqCst);
        if !accept {
            if let Some(ns) = self.io.of("/") {
                for s in ns.sockets() {
                    let _ = s.disconnect();
                }
            }
        }
    }

    /// Send one event with `arg` exactly as given to every joined socket (after anything
    /// already queued).
    pub fn emit_raw(&self, event: &str, arg: Value) {
        let _ = self.shared.queue.send((event.to_string(), arg));
    }

    /// Stop the activity, close every socket and the listener.
    pub async fn shutdown(mut self) {
        if let Some(activity) = self.tasks.get(2) {
            activity.abort();
        }
        self.io.close().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.tasks.remove(0);
        for t in &self.tasks {
            t.abort();
        }
        if tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .is_err()
        {
            log::warn!(target: "simulator", "server did not stop within 3 s");
        }
    }
}
