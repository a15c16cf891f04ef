//! Cluster mode (SPEC §10, issue 13): hub processes on one Redis act as one hub.
//!
//! Every hub is a child process of the test (so it can be SIGKILLed or SIGSTOPped) against the
//! node fake (socket.io 4, `/rate` emits at N events/s and keeps the REST view). The shared
//! Redis is the local one (`HUB_TEST_REDIS_URL`, default 127.0.0.1:6379), each test under its
//! own key prefix, deleted when it ends; the Redis-restart test starts a redis-server of its own.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bigdecimal::BigDecimal;
use common::*;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

fn redis_url() -> String {
    std::env::var("HUB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix of its own, deleted (with every key under it) when the test ends.
struct Prefix {
    name: String,
    url: String,
}

impl Prefix {
    fn new(url: &str) -> Prefix {
        Prefix {
            name: format!("hubtest-{}", uuid::Uuid::new_v4()),
            url: url.to_string(),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.name))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    // Generous: the CI box is loaded, and a slow answer is not what these tests measure.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis answers")
}

/// The last `seq` the cluster's stream assigned.
async fn stream_seq(url: &str, prefix: &str) -> u64 {
    let mut con = redis_con(url).await;
    let seq: Option<u64> = redis::cmd("GET")
        .arg(format!("{prefix}:acct:default:seq"))
        .query_async(&mut con)
        .await
        .unwrap();
    seq.unwrap_or(0)
}

/// One hub process in the cluster.
struct HubProc {
    name: String,
    addr: SocketAddr,
    child: KillOnDrop,
    /// Its stderr, kept when the test fails (named in the panic output's temp dir).
    log: std::path::PathBuf,
}

impl Drop for HubProc {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl HubProc {
    async fn start(fake: &NodeFake, url: &str, prefix: &str, name: &str) -> HubProc {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::env::temp_dir().join(format!("{prefix}-{name}.log"));
        let mut cmd = hub_command_for(&fake.url(), &fake.ctl_url(), addr, "info");
        cmd.env("HUB_REDIS_URL", url)
            .env("HUB_REDIS_PREFIX", prefix)
            .env("HUB_INSTANCE_ID", name)
            .env("HUB_CLIENT_QUEUE", "100000")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = KillOnDrop(cmd.spawn().expect("hub binary runs"));
        wait_healthy(addr, WAIT).await;
        HubProc {
            name: name.to_string(),
            addr,
            child,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig} {}", self.pid());
    }

    /// Polls this hub's view until some instance other than `not` leads; its id.
    async fn wait_leader(&self, not: Option<&str>) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.leader().await.filter(|l| Some(l.as_str()) != not) {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader other than {not:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn leader(&self) -> Option<String> {
        let s = status(self.addr).await;
        s["cluster"]["leaders"]["default"]
            .as_str()
            .map(String::from)
    }
}

/// The parts of a frame these tests look at, parsed without building a `Value` (300 clients
/// at 200 events/s are 60k frames/s for the test process alone).
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<u64>,
    id: String,
    epoch: String,
    #[serde(default)]
    data: Data,
}

#[derive(Deserialize, Default)]
struct Data {
    id: Option<String>,
    status: Option<String>,
    price: Option<String>,
    remaining_quantity: Option<String>,
    total_quantity: Option<String>,
    seq: Option<u64>,
    message: Option<String>,
    #[serde(default)]
    orders: Vec<Order>,
}

/// An order as the client last saw it: the fields compared with the REST view.
#[derive(Deserialize, Clone, Debug)]
struct Order {
    id: String,
    status: Option<String>,
    price: Option<String>,
    remaining_quantity: Option<String>,
    total_quantity: Option<String>,
}

/// What one browser saw, compactly: 300 clients × thousands of frames must fit in memory.
#[derive(Default)]
struct View {
    /// In arrival order: `('S', snapshot seq)`, `('R', 0)` for a resync, `('E', seq)` per event.
    marks: Vec<(char, u64)>,
    /// Frame id per seq.
    ids: Vec<(u64, String)>,
    /// Latest order record per id (snapshots and events).
    orders: HashMap<String, Order>,
    systems: Vec<String>,
    epoch: String,
    ended: bool,
}

impl View {
    fn apply(&mut self, f: Frame) {
        match f.kind.as_str() {
            "snapshot" => {
                self.marks.push(('S', f.data.seq.unwrap()));
                self.epoch = f.epoch;
                for o in f.data.orders {
                    self.orders.insert(o.id.clone(), o);
                }
            }
            "resync" => self.marks.push(('R', 0)),
            "system" => self.systems.push(f.data.message.unwrap_or_default()),
            "order" | "position" | "balance" => {
                let seq = f.seq.unwrap();
                self.epoch = f.epoch;
                self.marks.push(('E', seq));
                self.ids.push((seq, f.id));
                if f.kind == "order" {
                    let d = f.data;
                    let id = d.id.unwrap();
                    self.orders.insert(
                        id.clone(),
                        Order {
                            id,
                            status: d.status,
                            price: d.price,
                            remaining_quantity: d.remaining_quantity,
                            total_quantity: d.total_quantity,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    fn last_seq(&self) -> u64 {
        self.marks
            .iter()
            .rev()
            .find(|(k, _)| *k != 'R')
            .map(|(_, s)| *s)
            .unwrap_or(0)
    }

    /// Every event after a snapshot is exactly the next seq: no gap, no duplicate. A resume
    /// continues the same sequence (no snapshot in between).
    fn check_gap_free(&self) -> Result<usize, String> {
        let mut expect: Option<u64> = None;
        let mut events = 0;
        for (kind, seq) in &self.marks {
            match kind {
                'S' => expect = Some(seq + 1),
                'R' => expect = None,
                _ => {
                    let want = expect.ok_or("event before any snapshot")?;
                    if *seq != want {
                        return Err(format!("expected seq {want}, got {seq}"));
                    }
                    expect = Some(want + 1);
                    events += 1;
                }
            }
        }
        Ok(events)
    }

    fn resyncs(&self) -> usize {
        self.marks.iter().filter(|(k, _)| *k == 'R').count()
    }
}

type Shared = Arc<Mutex<View>>;

/// Reads `c` into `view` until the connection ends.
fn collect(mut c: Client, view: Shared) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = c.ws.next().await {
            match msg {
                Message::Text(text) => {
                    let f: Frame = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("frame ({e}): {text}"));
                    view.lock().unwrap().apply(f);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        view.lock().unwrap().ended = true;
    })
}

async fn connect_clients(addr: SocketAddr, n: usize) -> Vec<(Shared, JoinHandle<()>)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Client::connect(addr, "").await;
        let view: Shared = Default::default();
        let task = collect(c, view.clone());
        out.push((view, task));
    }
    // Every client has its greeting before the test goes on.
    let views: Vec<Shared> = out.iter().map(|(v, _)| v.clone()).collect();
    assert!(
        wait_until(
            || views.iter().all(|v| !v.lock().unwrap().marks.is_empty()),
            WAIT
        )
        .await,
        "greetings"
    );
    out
}

/// The fake's REST view: its open orders (id → record), signed like the hub signs.
async fn rest_open_orders(fake: &NodeFake) -> HashMap<String, Value> {
    let body = "{}";
    let mut mac = Hmac::<Sha256>::new_from_slice(API_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let text = reqwest::Client::new()
        .post(format!(
            "{}/exchange/v1/derivatives/futures/orders",
            fake.ctl_url()
        ))
        .header("content-type", "application/json")
        .header("X-AUTH-APIKEY", API_KEY)
        .header("X-AUTH-SIGNATURE", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).expect("orders list");
    all.into_iter()
        .filter(is_open)
        .map(|o| (o["id"].as_str().unwrap().to_string(), o))
        .collect()
}

/// Open as the exchange's REST API lists it (the hub's reconcile asks for these statuses; an
/// `initial` order the stream never showed cannot be learned over REST).
fn is_open_status(s: Option<&str>) -> bool {
    matches!(s, Some("open" | "partially_filled"))
}

fn is_open(o: &Value) -> bool {
    is_open_status(o["status"].as_str())
}

fn dec(v: &Value) -> BigDecimal {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    BigDecimal::from_str(&text).unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

/// The client's open orders equal the exchange's REST view: same ids, same status and digits.
fn assert_state_matches(view: &View, rest: &HashMap<String, Value>, who: &str) {
    let open: HashMap<&String, &Order> = view
        .orders
        .iter()
        .filter(|(_, o)| is_open_status(o.status.as_deref()))
        .collect();
    assert_eq!(open.len(), rest.len(), "{who}: open orders vs REST");
    for (id, r) in rest {
        let o = open
            .get(id)
            .unwrap_or_else(|| panic!("{who}: REST open order {id} missing"));
        assert_eq!(
            o.status.as_deref(),
            r["status"].as_str(),
            "{who}: {id} status"
        );
        for (mine, f) in [
            (&o.price, "price"),
            (&o.remaining_quantity, "remaining_quantity"),
            (&o.total_quantity, "total_quantity"),
        ] {
            let mine = Value::String(mine.clone().unwrap_or_default());
            assert_eq!(dec(&mine), dec(&r[f]), "{who}: {id} {f}");
        }
    }
}

async fn start_rate(fake: &NodeFake, per_sec: u64, seconds: u64) {
    let run = fake
        .post(
            "/rate",
            json!({"events_per_sec": per_sec, "seconds": seconds, "kind": "order", "state": true}),
        )
        .await;
    assert_eq!(run["ok"], true, "{run}");
}

async fn wait_run_done(fake: &NodeFake) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = fake.stats().await;
        if stats["run"]["active"] == false {
            return;
        }
        assert!(Instant::now() < deadline, "rate run never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `cond` (async) holds; panics with `what` after `timeout`.
macro_rules! wait_for {
    ($cond:expr, $timeout:expr, $what:expr) => {{
        let deadline = Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// Every client's view reached the stream's last seq, and the stream stopped growing (a
/// reconcile may still append after the exchange went quiet).
async fn wait_caught_up(views: &[Shared], url: &str, prefix: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut settled: Option<(u64, Instant)> = None;
    loop {
        let seq = stream_seq(url, prefix).await;
        let behind = views
            .iter()
            .filter(|v| v.lock().unwrap().last_seq() != seq)
            .count();
        if seq > 0 && behind == 0 {
            match settled {
                Some((s, since)) if s == seq && since.elapsed() >= Duration::from_secs(2) => {
                    return seq
                }
                Some((s, _)) if s == seq => {}
                _ => settled = Some((seq, Instant::now())),
            }
        } else {
            settled = None;
        }
        assert!(
            Instant::now() < deadline,
            "{behind} client(s) never reached seq {seq}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples the fake's open Socket.IO connections until aborted; the highest count seen.
fn sample_connections(fake_ctl: String) -> (Arc<Mutex<u64>>, JoinHandle<()>) {
    let max = Arc::new(Mutex::new(0u64));
    let m = max.clone();
    let task = tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{fake_ctl}/stats")).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    let n = v["connections"].as_u64().unwrap_or(0);
                    let mut m = m.lock().unwrap();
                    *m = (*m).max(n);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (max, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_one_connection_and_a_killed_leader_hands_over_without_a_gap() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let fake = NodeFake::start(Sio::V4).await;
    let mut hubs = Vec::new();
    for name in ["hub-a", "hub-b", "hub-c"] {
        hubs.push(HubProc::start(&fake, &url, &prefix.name, name).await);
    }
    let mut clients: HashMap<String, Vec<(Shared, JoinHandle<()>)>> = HashMap::new();
    for hub in &hubs {
        clients.insert(hub.name.clone(), connect_clients(hub.addr, 100).await);
    }
    let (max_conns, sampler) = sample_connections(fake.ctl_url());
    assert_eq!(
        fake.wait_stat("joins_ok", |n| n >= 1, WAIT).await,
        1,
        "one join"
    );
    let leader = hubs[0].wait_leader(None).await;
    // Every instance sees the same three instances and the same leader.
    for hub in &hubs {
        let s = status(hub.addr).await;
        let ids: Vec<&str> = s["cluster"]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["hub-a", "hub-b", "hub-c"], "{s}");
        assert_eq!(s["cluster"]["leaders"]["default"], leader.as_str(), "{s}");
        assert_eq!(s["cluster"]["instance"], hub.name.as_str());
    }
    eprintln!("[{:?}] leader {leader}; starting the run", Instant::now());
    start_rate(&fake, 200, 12).await;
    wait_for!(
        stream_seq(&url, &prefix.name).await >= 400,
        WAIT,
        "400 events appended"
    );
    assert_eq!(
        fake.stat("total_connects").await,
        1,
        "one exchange connection for 3 hubs"
    );

    // SIGKILL the leader mid-stream.
    let dead = hubs.iter().position(|h| h.name == leader).unwrap();
    let mut dead_hub = hubs.remove(dead);
    let killed_ms = chrono::Utc::now().timestamp_millis();
    let _ = dead_hub.child.0.kill();
    let _ = dead_hub.child.0.wait();
    // Measured by the hubs' clock, not by when this (busy) test process got round to asking.
    let new_leader = hubs[0].wait_leader(Some(&leader)).await;
    let heir = hubs.iter().find(|h| h.name == new_leader).unwrap();
    let since = status(heir.addr).await["cluster"]["leading_since"]
        .as_i64()
        .expect("the new leader says since when");
    let takeover = Duration::from_millis(since.saturating_sub(killed_ms).max(0) as u64);
    eprintln!("takeover after {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    assert_eq!(
        fake.wait_stat("joins_ok", |n| n >= 2, WAIT).await,
        2,
        "the new leader re-joined once"
    );

    // The dead hub's clients resume on another instance with their last seq and epoch.
    let survivor = &hubs[0];
    let dead_views: Vec<Shared> = clients[&leader].iter().map(|(v, _)| v.clone()).collect();
    assert!(
        wait_until(|| dead_views.iter().all(|v| v.lock().unwrap().ended), WAIT).await,
        "the killed hub's clients noticed"
    );
    let mut resumed = Vec::new();
    for view in &dead_views {
        let (since, epoch) = {
            let v = view.lock().unwrap();
            (v.last_seq(), v.epoch.clone())
        };
        let c = Client::connect(survivor.addr, &format!("?since={since}&epoch={epoch}")).await;
        resumed.push(collect(c, view.clone()));
    }

    eprintln!("resumed; waiting for the run to end");
    wait_run_done(&fake).await;
    eprintln!("run done");
    let mut all: Vec<Shared> = clients
        .values()
        .flat_map(|v| v.iter().map(|(s, _)| s.clone()))
        .collect();
    all.sort_by_key(|v| Arc::as_ptr(v) as usize);
    let last = wait_caught_up(&all, &url, &prefix.name).await;
    sampler.abort();

    // Exactly one exchange connection at any time, two in all (the first leader, the next).
    assert_eq!(
        *max_conns.lock().unwrap(),
        1,
        "never two exchange connections"
    );
    assert_eq!(fake.stat("total_connects").await, 2);

    // Every client: every appended event exactly once, in seq order, the same id everywhere.
    let rest = rest_open_orders(&fake).await;
    let mut ids: HashMap<u64, String> = HashMap::new();
    for (i, v) in all.iter().enumerate() {
        let v = v.lock().unwrap();
        let events = v
            .check_gap_free()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(events as u64, last, "client {i} saw every event from seq 1");
        assert_eq!(v.resyncs(), 0, "client {i}: no resync");
        for (seq, id) in &v.ids {
            let known = ids.entry(*seq).or_insert_with(|| id.clone());
            assert_eq!(known, id, "seq {seq}: one event, one id");
        }
        assert_state_matches(&v, &rest, &format!("client {i}"));
    }
    assert_eq!(ids.len() as u64, last);
    // The resumed clients got a replay, not a snapshot: one snapshot each (the first).
    for v in &dead_views {
        let v = v.lock().unwrap();
        assert_eq!(v.marks.iter().filter(|(k, _)| *k == 'S').count(), 1);
    }
    eprintln!(
        "takeover {takeover:?}; {last} events; {} open orders; {} clients",
        rest.len(),
        all.len()
    );
    for t in resumed {
        t.abort();
    }
}

/// A redis-server of the test's own on a free port (never the shared one), killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<KillOnDrop>,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let mut r = OwnRedis {
            port: free_port(),
            child: None,
        };
        r.restart().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(KillOnDrop(child));
        let deadline = Instant::now() + WAIT;
        loop {
            let ok = match redis::Client::open(self.url().as_str()) {
                Ok(c) => match c.get_multiplexed_async_connection().await {
                    Ok(mut con) => redis::cmd("PING")
                        .query_async::<String>(&mut con)
                        .await
                        .is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        self.child = None; // SIGKILL and reap
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_stream_is_survived_and_reported_as_resync() {
    let mut redis = OwnRedis::start().await;
    let url = redis.url();
    let prefix = format!("hubtest-{}", uuid::Uuid::new_v4());
    let fake = NodeFake::start(Sio::V4).await;
    let a = HubProc::start(&fake, &url, &prefix, "hub-a").await;
    let b = HubProc::start(&fake, &url, &prefix, "hub-b").await;
    let mut views: Vec<Shared> = Vec::new();
    for hub in [&a, &b] {
        views.extend(
            connect_clients(hub.addr, 5)
                .await
                .into_iter()
                .map(|(v, _)| v),
        );
    }
    start_rate(&fake, 100, 12).await;
    wait_for!(stream_seq(&url, &prefix).await >= 200, WAIT, "200 events");
    let before = stream_seq(&url, &prefix).await;

    redis.kill();
    for hub in [&a, &b] {
        wait_for!(
            http_get(hub.addr, "/readyz").await.0 == 503,
            WAIT,
            "not ready while Redis is down"
        );
        // Still serving: liveness, status, and a new client gets its greeting.
        assert_eq!(http_get(hub.addr, "/healthz").await.0, 200);
        assert_eq!(status(hub.addr).await["cluster"]["redis"], "unreachable");
        let (c, snapshot) = Client::connect_greeted(hub.addr).await;
        assert!(snapshot["data"]["seq"].as_u64().unwrap() >= before);
        c.close().await;
    }
    assert!(
        wait_until(
            || views.iter().all(|v| v
                .lock()
                .unwrap()
                .systems
                .iter()
                .any(|m| m == "redis unreachable")),
            WAIT
        )
        .await,
        "every client told Redis is down"
    );

    redis.restart().await;
    for hub in [&a, &b] {
        wait_for!(
            http_get(hub.addr, "/readyz").await.0 == 200,
            WAIT,
            "ready again after Redis returned"
        );
    }
    wait_run_done(&fake).await;
    let last = wait_caught_up(&views, &url, &prefix).await;
    let rest = rest_open_orders(&fake).await;
    for (i, v) in views.iter().enumerate() {
        let v = v.lock().unwrap();
        assert!(!v.ended, "client {i} kept its connection");
        v.check_gap_free()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        // Redis lost its data: a new epoch, which no client can bridge.
        assert_eq!(v.resyncs(), 1, "client {i}: one resync");
        assert!(
            v.systems.iter().any(|m| m == "redis reachable"),
            "client {i}"
        );
        assert_state_matches(&v, &rest, &format!("client {i}"));
    }
    let epochs: std::collections::HashSet<String> = views
        .iter()
        .map(|v| v.lock().unwrap().epoch.clone())
        .collect();
    assert_eq!(epochs.len(), 1, "one epoch after recovery");
    eprintln!("{before} events before the restart, {last} after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_publishes_nothing_after_the_takeover() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let fake = NodeFake::start(Sio::V4).await;
    let a = HubProc::start(&fake, &url, &prefix.name, "hub-a").await;
    let a_views = connect_clients(a.addr, 3).await;
    wait_for!(
        a.leader().await.as_deref() == Some("hub-a"),
        WAIT,
        "hub-a leads"
    );
    let b = HubProc::start(&fake, &url, &prefix.name, "hub-b").await;
    let b_views: Vec<Shared> = connect_clients(b.addr, 3)
        .await
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    start_rate(&fake, 100, 12).await;
    wait_for!(
        stream_seq(&url, &prefix.name).await >= 100,
        WAIT,
        "100 events"
    );

    a.signal("-STOP");
    wait_for!(
        b.leader().await.as_deref() == Some("hub-b"),
        WAIT,
        "hub-b takes over"
    );
    let taken = stream_seq(&url, &prefix.name).await;
    wait_for!(
        stream_seq(&url, &prefix.name).await >= taken + 100,
        WAIT,
        "hub-b publishing"
    );
    a.signal("-CONT");
    // hub-a wakes with a dead lease and whatever it had buffered; its next append is refused.
    wait_for!(
        status(a.addr).await["upstream"]["state"] == "idle",
        WAIT,
        "hub-a stopped its upstream"
    );
    wait_run_done(&fake).await;
    let mut views = b_views.clone();
    views.extend(a_views.iter().map(|(v, _)| v.clone()));
    let last = wait_caught_up(&views, &url, &prefix.name).await;

    // The stream: who published each entry, in seq order.
    let mut con = redis_con(&url).await;
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(format!("{}:acct:default:stream", prefix.name))
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(entries.len() as u64, last, "no trim at this size");
    let by: Vec<(u64, String)> = entries
        .iter()
        .map(|(_, f)| (f["seq"].parse().unwrap(), f["by"].clone()))
        .collect();
    let first_b = by
        .iter()
        .position(|(_, who)| who.ends_with("|hub-b"))
        .expect("hub-b published");
    assert!(first_b > 0, "hub-a published first");
    assert!(
        by[..first_b].iter().all(|(_, who)| who.ends_with("|hub-a")),
        "before the takeover only hub-a"
    );
    let after: Vec<&(u64, String)> = by[first_b..]
        .iter()
        .filter(|(_, who)| !who.ends_with("|hub-b"))
        .collect();
    assert!(
        after.is_empty(),
        "published after the takeover by: {after:?}"
    );
    let seqs: Vec<u64> = by.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let rest = rest_open_orders(&fake).await;
    for (i, v) in views.iter().enumerate() {
        let v = v.lock().unwrap();
        v.check_gap_free()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_state_matches(&v, &rest, &format!("client {i}"));
    }

    // An instance that starts now builds the same snapshot from Redis alone.
    let c = HubProc::start(&fake, &url, &prefix.name, "hub-c").await;
    let (client, snapshot) = Client::connect_greeted(c.addr).await;
    let mut late = View::default();
    late.apply(serde_json::from_value(snapshot).expect("snapshot frame"));
    assert_eq!(
        late.marks,
        vec![('S', last)],
        "snapshot at the stream's seq"
    );
    assert_eq!(
        late.epoch,
        views[0].lock().unwrap().epoch,
        "the stream's epoch"
    );
    assert_state_matches(&late, &rest, "late instance");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_exists_only_while_some_instance_has_clients() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let fake = NodeFake::start(Sio::V4).await;
    let a = HubProc::start(&fake, &url, &prefix.name, "hub-a").await;
    let b = HubProc::start(&fake, &url, &prefix.name, "hub-b").await;
    // Both registered, nobody leads, no exchange connection.
    wait_for!(
        status(a.addr).await["cluster"]["instances"]
            .as_array()
            .is_some_and(|i| i.len() == 2),
        WAIT,
        "two instances registered"
    );
    assert_eq!(a.leader().await, None);
    assert_eq!(fake.stat("total_connects").await, 0);

    // A client on hub-b: hub-b is the only instance that wants the upstream, so it leads.
    let (client, _) = Client::connect_greeted(b.addr).await;
    assert_eq!(a.wait_leader(None).await, "hub-b");
    assert_eq!(fake.wait_stat("joins_ok", |n| n >= 1, WAIT).await, 1);
    // Each instance's view is refreshed on its own tick: wait for the one that follows.
    let want = json!([["hub-a", 0], ["hub-b", 1]]);
    wait_for!(
        instance_clients(&status(a.addr).await) == want,
        WAIT,
        "hub-a's view of the clients per instance"
    );

    // It leaves: the lease is given up and the exchange connection closed.
    client.close().await;
    wait_for!(a.leader().await.is_none(), WAIT, "the lease given up");
    assert_eq!(fake.wait_stat("connections", |n| n == 0, WAIT).await, 0);
    assert_eq!(fake.stat("leaves").await, 1);
    assert_eq!(fake.stat("total_connects").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_redis_is_down_serves_and_joins_the_stream_later() {
    // The fake takes its ports first: the Redis port stays unbound until Redis starts.
    let fake = NodeFake::start(Sio::V4).await;
    let mut redis = OwnRedis {
        port: free_port(),
        child: None,
    };
    let url = redis.url();
    let prefix = format!("hubtest-{}", uuid::Uuid::new_v4());
    let a = HubProc::start(&fake, &url, &prefix, "hub-a").await;
    assert_eq!(http_get(a.addr, "/readyz").await.0, 503);
    let view: Shared = Default::default();
    let task = collect(Client::connect(a.addr, "").await, view.clone());
    assert!(
        wait_until(|| view.lock().unwrap().marks == vec![('S', 0)], WAIT).await,
        "greeted while Redis is down"
    );

    redis.restart().await;
    wait_for!(
        http_get(a.addr, "/readyz").await.0 == 200,
        WAIT,
        "ready once Redis answers"
    );
    start_rate(&fake, 100, 2).await;
    wait_run_done(&fake).await;
    let last = wait_caught_up(std::slice::from_ref(&view), &url, &prefix).await;
    let epoch = status(a.addr).await["epoch"].as_str().unwrap().to_string();
    let v = view.lock().unwrap();
    // The local start epoch means nothing to the cluster: one resync, then the stream.
    assert_eq!(v.resyncs(), 1);
    // From the cluster's snapshot (which may already hold the first events) on, no gap.
    v.check_gap_free().unwrap();
    assert_eq!(v.last_seq(), last);
    assert_eq!(v.epoch, epoch);
    task.abort();
}

/// Two accounts, each at its own exchange, on two instances.
async fn two_account_hub(
    alpha: &NodeFake,
    beta: &NodeFake,
    url: &str,
    prefix: &str,
    name: &str,
    file: &std::path::Path,
) -> HubProc {
    let text = format!(
        "[[account]]\nname = \"alpha\"\nkey_env = \"ALPHA_KEY\"\nsecret_env = \"ALPHA_SECRET\"\nws_url = \"{}\"\napi_url = \"{}\"\n\n\
         [[account]]\nname = \"beta\"\nkey_env = \"BETA_KEY\"\nsecret_env = \"BETA_SECRET\"\nws_url = \"{}\"\napi_url = \"{}\"\n",
        alpha.url(),
        alpha.ctl_url(),
        beta.url(),
        beta.ctl_url()
    );
    std::fs::write(file, text).expect("accounts file");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::env::temp_dir().join(format!("{prefix}-{name}.log"));
    let mut cmd = std::process::Command::new(HUB_BIN);
    clean_env(&mut cmd, &std::env::temp_dir())
        .env("RUST_LOG", "info")
        .env("HUB_BIND", addr.to_string())
        .env("HUB_ACCOUNTS_FILE", file)
        .env("ALPHA_KEY", API_KEY)
        .env("ALPHA_SECRET", API_SECRET)
        .env("BETA_KEY", API_KEY)
        .env("BETA_SECRET", API_SECRET)
        .env("HUB_REDIS_URL", url)
        .env("HUB_REDIS_PREFIX", prefix)
        .env("HUB_INSTANCE_ID", name)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let child = KillOnDrop(cmd.spawn().expect("hub binary runs"));
    wait_healthy(addr, WAIT).await;
    HubProc {
        name: name.to_string(),
        addr,
        child,
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_has_its_own_leader_and_stream() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let alpha = NodeFake::start(Sio::V4).await;
    let beta = NodeFake::start(Sio::V4).await;
    let file_a = std::env::temp_dir().join(format!("{}-a.toml", prefix.name));
    let file_b = std::env::temp_dir().join(format!("{}-b.toml", prefix.name));
    let a = two_account_hub(&alpha, &beta, &url, &prefix.name, "hub-a", &file_a).await;
    let b = two_account_hub(&alpha, &beta, &url, &prefix.name, "hub-b", &file_b).await;
    // alpha's clients are on hub-a, beta's on hub-b: each instance leads the account it serves.
    let on_a = collect(
        Client::connect(a.addr, "?account=alpha").await,
        Default::default(),
    );
    let alpha_on_b: Shared = Default::default();
    let beta_on_b: Shared = Default::default();
    let t1 = collect(
        Client::connect(b.addr, "?account=beta").await,
        beta_on_b.clone(),
    );
    assert_eq!(alpha.wait_stat("joins_ok", |n| n >= 1, WAIT).await, 1);
    assert_eq!(beta.wait_stat("joins_ok", |n| n >= 1, WAIT).await, 1);
    wait_for!(
        status(b.addr).await["cluster"]["leaders"] == json!({"alpha": "hub-a", "beta": "hub-b"}),
        WAIT,
        "one leader per account"
    );
    // A client of alpha on hub-b is fed from alpha's stream (hub-b holds no alpha connection).
    let t2 = collect(
        Client::connect(b.addr, "?account=alpha").await,
        alpha_on_b.clone(),
    );
    assert!(
        wait_until(|| !alpha_on_b.lock().unwrap().marks.is_empty(), WAIT).await,
        "greeted"
    );
    start_rate(&alpha, 100, 2).await;
    wait_run_done(&alpha).await;
    let seq = stream_seq_of(&url, &prefix.name, "alpha").await;
    assert!(
        wait_until(|| alpha_on_b.lock().unwrap().last_seq() == seq, WAIT).await,
        "alpha's events reached hub-b"
    );
    assert_eq!(
        alpha_on_b.lock().unwrap().check_gap_free().unwrap() as u64,
        seq
    );
    assert_eq!(
        beta_on_b.lock().unwrap().last_seq(),
        0,
        "beta saw none of alpha's"
    );
    assert_eq!(stream_seq_of(&url, &prefix.name, "beta").await, 0);
    assert_eq!(alpha.stat("total_connects").await, 1);
    assert_eq!(beta.stat("total_connects").await, 1);
    for t in [on_a, t1, t2] {
        t.abort();
    }
    let _ = std::fs::remove_file(file_a);
    let _ = std::fs::remove_file(file_b);
}

async fn stream_seq_of(url: &str, prefix: &str, account: &str) -> u64 {
    let mut con = redis_con(url).await;
    let seq: Option<u64> = redis::cmd("GET")
        .arg(format!("{prefix}:acct:{account}:seq"))
        .query_async(&mut con)
        .await
        .unwrap();
    seq.unwrap_or(0)
}

/// `[[id, clients of default], ...]` from a `/ws/status` document.
fn instance_clients(s: &Value) -> Value {
    s["cluster"]["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| json!([i["id"], i["clients"]["default"]]))
                .collect()
        })
        .unwrap_or_default()
}
