//! Shared test harness: an in-process fake CoinDCX Socket.IO server, a hub starter and a
//! WebSocket client that reads JSON frames with timeouts.
//!
//! The fake speaks Engine.IO 4 / Socket.IO 5 through `socketioxide` on 127.0.0.1, checks `join`
//! like CoinDCX (bad signature or key: disconnect ~100 ms later), counts connects, joins, leaves
//! and open sockets, emits fixture events to joined sockets, and can be stopped (every TCP
//! connection cut at once, like a crashed server) and restarted on the same port.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const API_KEY: &str = "test-api-key";
pub const API_SECRET: &str = "test-api-secret";
const ROOM: &str = "coindcx";
/// The public price channel (joined without a signature).
pub const PRICES_ROOM: &str = "currentPrices@futures@rt";

/// A fixture file's text (`../shared/coindcx/fixtures/<name>`).
pub fn fixture_text(name: &str) -> String {
    let path = format!(
        "{}/../shared/coindcx/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A fixture file parsed as JSON (numbers keep their text: `arbitrary_precision`).
pub fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The records inside an event fixture's `data` string.
pub fn fixture_records(name: &str) -> Vec<Value> {
    let arg = fixture(name);
    let data = arg["data"].as_str().expect("data is a string");
    serde_json::from_str(data).expect("data is a JSON array")
}

/// The id of synthetic order `i`: a valid UUID with `i` in its last group.
pub fn order_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// Synthetic open orders built from the fixture's first order: record `i` of `range` has id
/// `order_id(i % distinct_ids)` and `updated_at` 1741605260101 + `i`.
pub fn numbered_orders(range: std::ops::Range<usize>, distinct_ids: usize) -> Vec<Value> {
    let template = fixture_records("order-update-batch.json").remove(0);
    range
        .map(|i| {
            let mut r = template.clone();
            r["id"] = serde_json::json!(order_id(i % distinct_ids));
            r["status"] = serde_json::json!("open");
            r["updated_at"] = serde_json::json!(1741605260101u64 + i as u64);
            r
        })
        .collect()
}

/// Emits `records` as `df-order-update` events of `per_event` records, each one only after
/// every reader in `progress` has reported all records sent so far (the machine has 2 cores:
/// an unpaced producer would out-run any reader). Panics naming the reader that fell behind
/// for longer than `step_timeout`.
pub async fn emit_paced(
    fake: &FakeCoinDcx,
    records: &[Value],
    per_event: usize,
    progress: &mut [tokio::sync::watch::Receiver<u64>],
    step_timeout: Duration,
) {
    let mut sent = 0u64;
    for chunk in records.chunks(per_event) {
        fake.emit("df-order-update", &event_arg("df-order-update", chunk))
            .await;
        sent += chunk.len() as u64;
        for (n, rx) in progress.iter_mut().enumerate() {
            tokio::time::timeout(step_timeout, rx.wait_for(|got| *got >= sent))
                .await
                .unwrap_or_else(|_| panic!("reader {n} did not get record {sent}"))
                .ok();
        }
    }
}

/// Builds an event argument `{"event": event, "data": "<JSON text of records>"}`.
pub fn event_arg(event: &str, records: &[Value]) -> Value {
    serde_json::json!({"event": event, "data": serde_json::to_string(records).unwrap()})
}

/// The hub binary built for these tests.
pub const HUB_BIN: &str = env!("CARGO_BIN_EXE_coindcx-hub");

/// Removes inherited `HUB_*` / `COINDCX_*` variables and runs from `dir` (so no `.env` is
/// read): the environment of a newcomer's shell.
pub fn clean_env<'a>(
    cmd: &'a mut std::process::Command,
    dir: &std::path::Path,
) -> &'a mut std::process::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("HUB_") || k.starts_with("COINDCX_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
}

/// The hub binary on `addr`, upstream `fake` with the test credentials, logging at `log`.
pub fn hub_command(fake: &FakeCoinDcx, addr: SocketAddr, log: &str) -> std::process::Command {
    hub_command_for(&fake.url(), &fake.url(), addr, log)
}

/// A child process killed (and reaped) when the test ends, even on a failed assertion.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago (for subprocess hubs that bind it themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Default)]
struct Shared {
    api_key: String,
    signature: String,
    connects: AtomicUsize,
    /// `join`s with the right key and signature.
    joins: AtomicUsize,
    /// Every `join` received, good or bad.
    join_attempts: AtomicUsize,
    bad_joins: AtomicUsize,
    leaves: AtomicUsize,
    /// Socket ids currently connected.
    connected: Mutex<HashSet<String>>,
    /// Socket ids currently joined to the channel.
    joined: Mutex<HashSet<String>>,
    /// Every event name the fake received, with its count.
    received: Mutex<HashMap<String, usize>>,
    /// `join`/`leave` of the public price channel (counted apart from the private channel's).
    price_joins: AtomicUsize,
    price_leaves: AtomicUsize,
    /// Socket ids currently in the price channel.
    priced: Mutex<HashSet<String>>,
}

struct Running {
    io: SocketIo,
    task: JoinHandle<()>,
    streams: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

/// The fake CoinDCX stream server.
pub struct FakeCoinDcx {
    pub port: u16,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

/// A listener that keeps a clone of every accepted socket so `stop` can cut them all.
struct TrackedListener {
    inner: tokio::net::TcpListener,
    streams: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let std_stream = stream.into_std().expect("into_std");
                    let clone = std_stream.try_clone().expect("try_clone");
                    self.streams.lock().unwrap().push(clone);
                    let stream = TcpStream::from_std(std_stream).expect("from_std");
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl FakeCoinDcx {
    /// Starts a fake that accepts `API_KEY` / `API_SECRET`, on a fresh port.
    pub async fn start() -> FakeCoinDcx {
        Self::start_with(API_KEY, API_SECRET).await
    }

    pub async fn start_with(api_key: &str, api_secret: &str) -> FakeCoinDcx {
        let shared = Arc::new(Shared {
            api_key: api_key.to_string(),
            signature: coindcx_hub::signing::join_signature(api_secret),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake");
        let port = listener.local_addr().unwrap().port();
        let fake = FakeCoinDcx {
            port,
            shared,
            running: Mutex::new(None),
        };
        fake.serve(listener);
        fake
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (layer, io) = SocketIo::builder()
            .max_buffer_size(1_000_000)
            .max_payload(2_000_000)
            .build_layer();
        let shared = self.shared.clone();
        // Handlers are registered in the connect middleware, which socketioxide awaits before
        // it sends CONNECT; its connect handler is spawned after, so a `join` emitted on
        // CONNECT could otherwise arrive before the handler exists (see simulator/socket.rs).
        let register = move |socket: SocketRef| {
            on_connect(socket, shared.clone());
            async { Ok::<(), std::convert::Infallible>(()) }
        };
        io.ns("/", (|| async {}).with(register));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let listener = TrackedListener {
            inner: listener,
            streams: streams.clone(),
        };
        let app = axum::Router::new().layer(layer);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.running.lock().unwrap() = Some(Running { io, task, streams });
    }

    /// Stops like a crashed server: the port closes and every connection is cut at once.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(r) = running {
            r.task.abort();
            let _ = r.task.await;
            for s in r.streams.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            drop(r.io);
        }
        self.shared.connected.lock().unwrap().clear();
        self.shared.joined.lock().unwrap().clear();
    }

    /// Starts serving again on the same port.
    pub async fn restart(&self) {
        assert!(
            self.running.lock().unwrap().is_none(),
            "fake is still running"
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let mut last_err = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => return self.serve(listener),
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot re-bind port {}: {last_err:?}", self.port);
    }

    fn io(&self) -> SocketIo {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .expect("fake is running")
            .io
            .clone()
    }

    /// Emits `event` with argument `arg` to every joined socket.
    pub async fn emit(&self, event: &str, arg: &Value) {
        self.io()
            .to(ROOM)
            .emit(event, arg)
            .await
            .expect("emit to joined sockets");
    }

    /// Emits an event fixture (its `event` field names the Socket.IO event).
    pub async fn emit_fixture(&self, name: &str) {
        let arg = fixture(name);
        let event = arg["event"]
            .as_str()
            .expect("fixture has event")
            .to_string();
        self.emit(&event, &arg).await;
    }

    pub fn connects(&self) -> usize {
        self.shared.connects.load(Ordering::SeqCst)
    }
    pub fn joins(&self) -> usize {
        self.shared.joins.load(Ordering::SeqCst)
    }
    pub fn join_attempts(&self) -> usize {
        self.shared.join_attempts.load(Ordering::SeqCst)
    }
    pub fn bad_joins(&self) -> usize {
        self.shared.bad_joins.load(Ordering::SeqCst)
    }
    pub fn leaves(&self) -> usize {
        self.shared.leaves.load(Ordering::SeqCst)
    }
    /// Sockets connected right now.
    pub fn connected(&self) -> usize {
        self.shared.connected.lock().unwrap().len()
    }
    /// Sockets joined to the channel right now.
    pub fn joined_now(&self) -> usize {
        self.shared.joined.lock().unwrap().len()
    }
    /// How many times the fake received `event` from a client.
    pub fn received(&self, event: &str) -> usize {
        self.shared
            .received
            .lock()
            .unwrap()
            .get(event)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeCoinDcx {
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().unwrap().take() {
            r.task.abort();
            for s in r.streams.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn on_connect(socket: SocketRef, shared: Arc<Shared>) {
    shared.connects.fetch_add(1, Ordering::SeqCst);
    shared
        .connected
        .lock()
        .unwrap()
        .insert(socket.id.to_string());
    let sh = shared.clone();
    socket.on(
        "join",
        move |socket: SocketRef, Data(payload): Data<Value>| on_join(socket, payload, sh.clone()),
    );
    let sh = shared.clone();
    socket.on(
        "leave",
        move |socket: SocketRef, Data(payload): Data<Value>| {
            let sh = sh.clone();
            async move {
                if payload["channelName"] == PRICES_ROOM {
                    on_price_leave(socket, sh)
                } else {
                    on_leave(socket, sh).await
                }
            }
        },
    );
    let sh = shared.clone();
    socket.on_disconnect(move |socket: SocketRef| {
        let sh = sh.clone();
        async move {
            let id = socket.id.to_string();
            sh.connected.lock().unwrap().remove(&id);
            sh.joined.lock().unwrap().remove(&id);
            sh.priced.lock().unwrap().remove(&id);
        }
    });
}

async fn on_join(socket: SocketRef, payload: Value, shared: Arc<Shared>) {
    if payload["channelName"] == PRICES_ROOM {
        // Public: no key, no signature (PROTOCOL.md); not counted as a private join.
        socket.join(PRICES_ROOM);
        shared.priced.lock().unwrap().insert(socket.id.to_string());
        shared.price_joins.fetch_add(1, Ordering::SeqCst);
        return;
    }
    *shared
        .received
        .lock()
        .unwrap()
        .entry("join".into())
        .or_default() += 1;
    shared.join_attempts.fetch_add(1, Ordering::SeqCst);
    let ok = payload["channelName"] == "coindcx"
        && payload["apiKey"].as_str() == Some(shared.api_key.as_str())
        && payload["authSignature"].as_str() == Some(shared.signature.as_str());
    if ok {
        socket.join(ROOM);
        shared.joined.lock().unwrap().insert(socket.id.to_string());
        shared.joins.fetch_add(1, Ordering::SeqCst);
    } else {
        // Like CoinDCX: no error event, just `41` about 100 ms later.
        shared.bad_joins.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = socket.disconnect();
        });
    }
}

async fn on_leave(socket: SocketRef, shared: Arc<Shared>) {
    *shared
        .received
        .lock()
        .unwrap()
        .entry("leave".into())
        .or_default() += 1;
    socket.leave(ROOM);
    shared.joined.lock().unwrap().remove(&socket.id.to_string());
    shared.leaves.fetch_add(1, Ordering::SeqCst);
    // Like CoinDCX (PROTOCOL.md §3): the hub disconnects once it sees this (or after ~1 s).
    let _ = socket.emit("Left Channel", &serde_json::json!({"channelName": ROOM}));
}

// ---------------------------------------------------------------------------------------------
// The hub

/// A configuration from `base` settings with `extra` on top (later entries win), read through
/// `Config::from_lookup` like the environment: nothing of the test process's environment leaks in.
pub fn try_config_from(
    base: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Result<coindcx_hub::config::Config, coindcx_hub::config::ConfigError> {
    let map: HashMap<String, String> = base
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    coindcx_hub::config::Config::from_lookup(|k| map.get(k).cloned())
}

/// [`try_config_from`] that must succeed.
pub fn config_from(base: &[(&str, &str)], extra: &[(&str, &str)]) -> coindcx_hub::config::Config {
    try_config_from(base, extra).expect("valid test config")
}

/// Hub configuration pointing at `fake`, plus `extra` overrides.
pub fn hub_config(fake: &FakeCoinDcx, extra: &[(&str, &str)]) -> coindcx_hub::config::Config {
    hub_config_for(&fake.url(), &fake.url(), extra)
}

/// Starts an in-process hub against `fake`.
pub async fn start_hub(fake: &FakeCoinDcx, extra: &[(&str, &str)]) -> coindcx_hub::RunningHub {
    let _ = env_logger::builder().is_test(true).try_init();
    coindcx_hub::start(hub_config(fake, extra))
        .await
        .expect("hub starts")
}

/// `GET http://addr/path` → (status, body text).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// `GET /ws/status` as JSON.
pub async fn status(addr: SocketAddr) -> Value {
    let (code, body) = http_get(addr, "/ws/status").await;
    assert_eq!(code, 200, "/ws/status: {body}");
    serde_json::from_str(&body).expect("status is JSON")
}

/// The value of one Prometheus sample line (`name{labels}`), if present.
#[allow(unused_imports)] // not every test binary reads metrics
pub use coindcx_hub::metrics::sample as metric;

// ---------------------------------------------------------------------------------------------
// A browser-like WebSocket client

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one read produced.
#[derive(Debug)]
pub enum Incoming {
    Json(Value, String),
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame (or with an error).
    Gone(String),
}

pub struct Client {
    pub ws: Ws,
}

impl Client {
    /// Opens `ws://addr/ws/coindcx` (plus `query`, e.g. `?since=3&epoch=..`).
    pub async fn connect(addr: SocketAddr, query: &str) -> Client {
        let url = format!("ws://{addr}/ws/coindcx{query}");
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("ws connect timed out")
        .expect("ws connect");
        Client { ws }
    }

    /// Connects and reads the `system` + `snapshot` greeting; returns the snapshot frame.
    pub async fn connect_greeted(addr: SocketAddr) -> (Client, Value) {
        let mut c = Client::connect(addr, "").await;
        let system = c.next_json(Duration::from_secs(10)).await;
        assert_eq!(system["type"], "system", "{system}");
        assert_eq!(system["data"]["message"], "connected", "{system}");
        let snapshot = c.next_json(Duration::from_secs(10)).await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        (c, snapshot)
    }

    /// Next text frame, close or end, skipping WebSocket pings/pongs and app `ping` frames.
    pub async fn next(&mut self, timeout: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Incoming::Gone("stream ended".into())),
                Ok(Some(Err(e))) => return Some(Incoming::Gone(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                    if v["type"] == "ping" {
                        continue;
                    }
                    return Some(Incoming::Json(v, text));
                }
                Message::Close(frame) => {
                    return Some(Incoming::Close(
                        frame.map(|f: CloseFrame| (u16::from(f.code), f.reason.to_string())),
                    ))
                }
                Message::Binary(b) => panic!("unexpected binary frame of {} bytes", b.len()),
                _ => continue,
            }
        }
    }

    /// Next JSON frame; panics on timeout, close or end.
    pub async fn next_json(&mut self, timeout: Duration) -> Value {
        self.next_json_text(timeout).await.0
    }

    /// Next JSON frame and its exact text.
    pub async fn next_json_text(&mut self, timeout: Duration) -> (Value, String) {
        match self.next(timeout).await {
            Some(Incoming::Json(v, t)) => (v, t),
            other => panic!("expected a JSON frame within {timeout:?}, got {other:?}"),
        }
    }

    /// Skips frames until one of `type` arrives.
    pub async fn next_of_type(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next_json(left).await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Reads until the close frame (skipping data); returns (code, reason), or None if the
    /// connection ended without one.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Incoming::Json(..)) => continue,
                Some(Incoming::Close(c)) => return c,
                Some(Incoming::Gone(_)) => return None,
                None => panic!("no close within {timeout:?}"),
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string()))
            .await
            .expect("send text");
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close reply so the hub has seen us leave.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(msg)) = self.ws.next().await {
                if msg.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// A real socket.io server (node): tests/fake-coindcx, socket.io@2.4.1 (EIO3) or @4.8.1 (EIO4)

/// Which socket.io the node fake runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sio {
    /// socket.io 2.4.1: Engine.IO 3, the client must ping.
    V2,
    /// socket.io 4.8.1 (allowEIO3): Engine.IO 4, the server pings; drops an event that arrives
    /// together with the disconnect.
    V4,
}

/// `tests/fake-coindcx/server.js` under node on free ports, killed when dropped. Its Socket.IO
/// port speaks real socket.io; its control port answers `/stats`, `/emit`, `/rate`,
/// `/disconnect-all`, `/reset` and the futures REST read routes (signed).
pub struct NodeFake {
    pub port: u16,
    pub ctl_port: u16,
    pub sio: Sio,
    child: KillOnDrop,
}

impl NodeFake {
    pub async fn start(sio: Sio) -> NodeFake {
        Self::start_with(sio, &[]).await
    }

    /// `env`: extra variables (e.g. `FAKE_PING_INTERVAL`, `FAKE_SECRET`).
    pub async fn start_with(sio: Sio, env: &[(&str, &str)]) -> NodeFake {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-coindcx");
        assert!(
            std::path::Path::new(dir).join("node_modules").exists(),
            "run `npm ci` in tests/fake-coindcx first (scripts/test.sh does)"
        );
        let (port, ctl_port) = (free_port(), free_port());
        let mut cmd = std::process::Command::new("node");
        cmd.arg("server.js")
            .current_dir(dir)
            .env("FAKE_PORT", port.to_string())
            .env("FAKE_CTL_PORT", ctl_port.to_string())
            .env("FAKE_KEY", API_KEY)
            .env("FAKE_SECRET", API_SECRET)
            .env("FAKE_SIO", if sio == Sio::V4 { "v4" } else { "v2" })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = KillOnDrop(cmd.spawn().expect("node runs tests/fake-coindcx/server.js"));
        let fake = NodeFake {
            port,
            ctl_port,
            sio,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = reqwest::Client::new()
                .get(format!("{}/stats", fake.ctl_url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let sio_up = TcpStream::connect(("127.0.0.1", port)).await.is_ok();
            if up && sio_up {
                return fake;
            }
            assert!(Instant::now() < deadline, "node fake did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Socket.IO address, as `COINDCX_WS_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The control + REST address, as `COINDCX_API_URL`.
    pub fn ctl_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ctl_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// `GET /stats` as JSON.
    pub async fn stats(&self) -> Value {
        self.ctl("GET", "/stats", None).await
    }

    /// One counter of `/stats` (`leaves`, `joins_ok`, `total_connects`, `room_size`, ...).
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = self.stats().await;
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("/stats has no number {name:?}: {stats}"))
    }

    /// Polls one `/stats` counter until `cond` holds or `timeout` passes; returns the last value.
    pub async fn wait_stat(
        &self,
        name: &str,
        cond: impl Fn(u64) -> bool,
        timeout: Duration,
    ) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.stat(name).await;
            if cond(v) || Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST path` with a JSON body, answer as JSON (`Null` when not JSON).
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.ctl("POST", path, Some(body)).await
    }

    async fn ctl(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.ctl_url());
        let req = match method {
            "POST" => client.post(&url).json(&body.unwrap_or(Value::Null)),
            _ => client.get(&url),
        };
        let resp = req
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Hub configuration against this server (REST on the control port), plus `extra`.
    pub fn hub_config(&self, extra: &[(&str, &str)]) -> coindcx_hub::config::Config {
        hub_config_for(&self.url(), &self.ctl_url(), extra)
    }

    /// Starts an in-process hub against this server.
    pub async fn start_hub(&self, extra: &[(&str, &str)]) -> coindcx_hub::RunningHub {
        let _ = env_logger::builder().is_test(true).try_init();
        coindcx_hub::start(self.hub_config(extra))
            .await
            .expect("hub starts")
    }
}

// ---------------------------------------------------------------------------------------------
// The hub in simulator mode

/// A hub in simulator mode with no background activity (the test drives every change), plus
/// `extra` settings.
pub async fn start_sim_hub(extra: &[(&str, &str)]) -> coindcx_hub::RunningHub {
    let _ = env_logger::builder().is_test(true).try_init();
    let base = [
        ("HUB_BIND", "127.0.0.1:0"),
        ("HUB_SIM_BIND", "127.0.0.1:0"),
        ("HUB_SIM_RATE", "0"),
    ];
    coindcx_hub::start(config_from(&base, extra))
        .await
        .expect("hub starts")
}

/// Waits until `hub_reconcile_runs_total{result="ok"}` of a running hub reaches `runs`.
pub async fn wait_reconciles(hub: &coindcx_hub::RunningHub, runs: u64, timeout: Duration) {
    let metrics = hub.hub.metrics.clone();
    let series = "hub_reconcile_runs_total{result=\"ok\"}";
    assert!(
        wait_until(
            || metric(&metrics.render(), series) == Some(runs as f64),
            timeout
        )
        .await,
        "reconcile runs: {:?}, expected {runs}",
        metric(&metrics.render(), series)
    );
}

// ---------------------------------------------------------------------------------------------
// Upgrades and GETs with chosen headers (who may ask: tests/auth.rs, tests/host_check.rs)

/// `ws://addr{path}` as a client request with `headers` set (replacing defaults such as `Host`).
pub fn ws_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("valid ws url");
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req
}

/// A refused upgrade is an ordinary HTTP answer before the switch, which tokio-tungstenite
/// reports as `Error::Http(response)`: the open socket, or the refusal's status.
pub fn ws_outcome(
    result: Result<
        (
            Ws,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        tokio_tungstenite::tungstenite::Error,
    >,
) -> Result<Client, u16> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match result {
        Ok((ws, resp)) => {
            assert_eq!(resp.status().as_u16(), 101);
            Ok(Client { ws })
        }
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

/// Upgrades `ws://addr{path}` with extra headers: the open socket, or the refusal's status.
pub async fn ws_upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Client, u16> {
    let req = ws_request(addr, path, headers);
    let Ok(result) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    else {
        panic!("upgrade of {path} timed out");
    };
    ws_outcome(result)
}

/// An accepted upgrade, greeted with `system` + `snapshot`; panics naming `what` otherwise.
pub async fn expect_greeted(result: Result<Client, u16>, what: &str) -> Client {
    let wait = Duration::from_secs(10);
    let mut c = result.unwrap_or_else(|code| panic!("{what}: refused with HTTP {code}"));
    let system = c.next_json(wait).await;
    assert_eq!(system["type"], "system", "{what}: {system}");
    assert_eq!(system["data"]["message"], "connected", "{what}: {system}");
    let snapshot = c.next_json(wait).await;
    assert_eq!(snapshot["type"], "snapshot", "{what}: {snapshot}");
    c
}

/// `GET http://addr{path}` with extra headers (a `Host` given here replaces the real one) →
/// (status, body).
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Upstream life cycle: a hub against any exchange address, and an exchange that never answers

/// Hub configuration with the exchange at `ws_url` (stream) and `api_url` (REST), plus `extra`.
pub fn hub_config_for(
    ws_url: &str,
    api_url: &str,
    extra: &[(&str, &str)],
) -> coindcx_hub::config::Config {
    let base = [
        ("HUB_BIND", "127.0.0.1:0"),
        ("COINDCX_API_KEY", API_KEY),
        ("COINDCX_API_SECRET", API_SECRET),
        ("COINDCX_WS_URL", ws_url),
        ("COINDCX_API_URL", api_url),
    ];
    config_from(&base, extra)
}

/// The hub binary on `addr` with the exchange at `ws_url` / `api_url`, logging at `log`.
pub fn hub_command_for(
    ws_url: &str,
    api_url: &str,
    addr: SocketAddr,
    log: &str,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(HUB_BIN);
    clean_env(&mut cmd, &std::env::temp_dir())
        .env("RUST_LOG", log)
        .env("HUB_BIND", addr.to_string())
        .env("COINDCX_API_KEY", API_KEY)
        .env("COINDCX_API_SECRET", API_SECRET)
        .env("COINDCX_WS_URL", ws_url)
        .env("COINDCX_API_URL", api_url);
    cmd
}

/// Polls `GET addr/healthz` until it answers 200; panics after `timeout`.
pub async fn wait_healthy(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "hub on {addr} not healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
}

/// Polls a child until it exits; its exit status, or None after `timeout`.
pub async fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let mut exit = None;
    wait_until(
        || {
            exit = child.try_wait().ok().flatten();
            exit.is_some()
        },
        timeout,
    )
    .await;
    exit
}

/// Per accepted socket, in order: when it was accepted and when the peer closed it.
pub type SocketLog = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

/// A black-holed exchange: a TCP listener on 127.0.0.1 that accepts and never writes a byte,
/// and notes when each accepted socket was closed by the other side (EOF or reset).
pub struct SilentListener {
    pub port: u16,
    pub sockets: SocketLog,
    task: JoinHandle<()>,
}

impl SilentListener {
    pub async fn start() -> SilentListener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind silent listener");
        let port = listener.local_addr().unwrap().port();
        let sockets: SocketLog = Arc::default();
        let seen = sockets.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push((Instant::now(), None));
                    s.len() - 1
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 4096];
                    // Read (and discard) the handshake until the peer goes away.
                    while let Ok(k) = stream.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                    }
                    seen.lock().unwrap()[n].1 = Some(Instant::now());
                });
            }
        });
        SilentListener {
            port,
            sockets,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.sockets.lock().unwrap().len()
    }

    /// Accepted sockets the peer has not closed yet.
    pub fn open(&self) -> usize {
        self.sockets
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, closed)| closed.is_none())
            .count()
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeFake {
    /// `GET /logs`: recent connects, joins, leaves and disconnects, each `{at (unix ms), sid}`.
    pub async fn logs(&self) -> Value {
        self.ctl("GET", "/logs", None).await
    }
}

// ---------------------------------------------------------------------------------------------
// The public price channel on the in-process fake (SPEC §9)

fn on_price_leave(socket: SocketRef, shared: Arc<Shared>) {
    socket.leave(PRICES_ROOM);
    shared.priced.lock().unwrap().remove(&socket.id.to_string());
    shared.price_leaves.fetch_add(1, Ordering::SeqCst);
    let _ = socket.emit(
        "Left Channel",
        &serde_json::json!({"channelName": PRICES_ROOM}),
    );
}

impl FakeCoinDcx {
    /// `join`s of the public price channel received.
    pub fn price_joins(&self) -> usize {
        self.shared.price_joins.load(Ordering::SeqCst)
    }

    /// `leave`s of the public price channel received.
    pub fn price_leaves(&self) -> usize {
        self.shared.price_leaves.load(Ordering::SeqCst)
    }

    /// Sockets in the price channel now.
    pub fn priced_now(&self) -> usize {
        self.shared.priced.lock().unwrap().len()
    }

    /// Emits `currentPrices@futures#update` with `data` (the JSON text CoinDCX sends) to the
    /// price channel.
    pub async fn emit_prices(&self, data: &Value) {
        let arg = serde_json::json!({
            "event": "currentPrices@futures#update",
            "data": serde_json::to_string(data).unwrap(),
        });
        self.io()
            .to(PRICES_ROOM)
            .emit("currentPrices@futures#update", &arg)
            .await
            .expect("emit to the price channel");
    }
}
