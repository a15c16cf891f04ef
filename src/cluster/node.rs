//! One instance's part in the cluster, for one account: the source and sink that replace the
//! hub's local sequencing when `HUB_REDIS_URL` is set.
//!
//! - The hub keeps normalizing and judging what its upstream delivers, but instead of numbering
//!   a record it hands it to the **appender**, which publishes it under this instance's fence.
//! - The **reader** follows the stream and gives the hub every entry with its cluster `seq`;
//!   the hub stores, remembers and fans out exactly those (the leader's own records too), so
//!   every instance sends the same frames in the same order.
//! - The **node** stands between the hub and the upstream supervisor: the hub's Start/Stop say
//!   whether this instance wants the upstream; the node beats in the registry, holds or seeks
//!   the lease, and only the lease holder's supervisor runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use super::lease::{holder, Held, Lease};
use super::registry::{Instance, Registry};
use super::stream::{Entry, Loaded, Payload, Stream};
use super::{connect_lazy, ClusterError, Keys, COMMAND_TIMEOUT};
use crate::upstream::supervisor::{Command as UpCommand, Supervisor};

/// How long a lease lasts unrenewed: a dead leader is replaced within this plus one tick.
pub const LEASE_TTL: Duration = Duration::from_millis(2500);
/// Beat, renew and seek the lease this often.
pub const TICK: Duration = Duration::from_millis(250);
/// An instance not seen for this long is gone from the registry.
pub const INSTANCE_EXPIRY: Duration = Duration::from_secs(5);
/// XREAD block: bounds how long a reader notices nothing when Redis vanishes.
const READ_BLOCK_MS: u64 = 1000;
const READ_COUNT: usize = 1024;
const APPEND_BATCH: usize = 256;

/// Where an instance finds its cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub url: String,
    pub prefix: String,
    pub instance: String,
    pub account: String,
    /// Stream trim target: `HUB_HISTORY`.
    pub history: usize,
}

/// What the hub reads and writes in cluster mode.
pub struct ClusterLink {
    /// Records the hub judged news: `(state key, payload)`, published if this instance leads.
    pub sink: mpsc::UnboundedSender<(String, bool, Payload)>,
    /// Stream entries and Redis reachability, in order.
    pub source: mpsc::Receiver<Incoming>,
    /// The stream as it was when this instance started (state, seq, epoch, history).
    pub initial: Option<(Loaded, Vec<Entry>)>,
    pub view: Arc<ClusterView>,
}

pub enum Incoming {
    Entries(Vec<Entry>),
    /// The stream as it is now, for a hub that could not load it at start (Redis was down).
    Loaded(Loaded, Vec<Entry>),
    /// Redis answers (`true`) or stopped answering (`false`).
    Redis(bool),
}

/// The cluster as `/ws/status` and `/readyz` show it (written by the node).
pub struct ClusterView {
    pub redis_ok: AtomicBool,
    doc: Mutex<Value>,
}

impl ClusterView {
    fn new(instance: &str) -> Self {
        ClusterView {
            redis_ok: AtomicBool::new(false),
            doc: Mutex::new(json!({"instance": instance, "instances": [], "leaders": {}})),
        }
    }

    /// `{instance, instances: [{id, clients, last_seen}], leaders: {account: instance}, redis}`.
    pub fn to_json(&self) -> Value {
        let mut doc = self.doc.lock().unwrap_or_else(|e| e.into_inner()).clone();
        doc["redis"] = json!(if self.redis_ok.load(Ordering::SeqCst) {
            "ok"
        } else {
            "unreachable"
        });
        doc
    }
}

/// Connects, loads the stream and starts the node, appender and reader tasks. `upstream` is the
/// real supervisor; the returned [`Supervisor`] is the one the hub talks to.
pub async fn start(
    settings: ClusterSettings,
    upstream: Supervisor,
    clients: Arc<dyn Fn() -> usize + Send + Sync>,
) -> Result<(ClusterLink, Supervisor), ClusterError> {
    let keys = Keys::new(&settings.prefix);
    let stream = Stream::new(keys.clone(), &settings.account, settings.history);
    // Lazy: an instance starts (and serves, not ready) while Redis is down.
    let con = connect_lazy(&settings.url, COMMAND_TIMEOUT)?;
    let read_con = connect_lazy(
        &settings.url,
        Duration::from_millis(READ_BLOCK_MS) + COMMAND_TIMEOUT,
    )?;
    let mut load_con = con.clone();
    let initial = match load_initial(&stream, &mut load_con).await {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            log::warn!(target: "cluster", "could not load the stream at start: {e}");
            None
        }
    };
    let view = Arc::new(ClusterView::new(&settings.instance));
    let (to_hub, source) = mpsc::channel(4096);
    let (sink, records) = mpsc::unbounded_channel();
    let (hub_supervisor, hub_cmds) = Supervisor::channel();
    let (fenced_tx, fenced) = mpsc::unbounded_channel();
    let held: Arc<Mutex<Option<Held>>> = Arc::new(Mutex::new(None));
    let append_failed = Arc::new(AtomicBool::new(false));
    // Without a start load the reader loads first, once Redis answers.
    let after = initial.as_ref().map(|(l, _)| l.last_id.clone());
    tokio::spawn(append(
        stream.clone(),
        con.clone(),
        records,
        held.clone(),
        fenced_tx,
        append_failed.clone(),
    ));
    tokio::spawn(read(stream, read_con, after, to_hub.clone()));
    let node = Node {
        lease: Lease::new(
            keys.clone(),
            &settings.account,
            &settings.instance,
            LEASE_TTL,
        ),
        registry: Registry::new(
            keys.clone(),
            &settings.account,
            &settings.instance,
            INSTANCE_EXPIRY,
        ),
        keys,
        settings,
        con,
        hub_cmds,
        fenced,
        upstream,
        held,
        append_failed,
        to_hub,
        view: view.clone(),
        clients,
        wants: false,
        redis_ok: None,
        last_renewed: Instant::now(),
        leading_since: None,
    };
    tokio::spawn(node.run());
    Ok((
        ClusterLink {
            sink,
            source,
            initial,
            view,
        },
        hub_supervisor,
    ))
}

async fn load_initial(
    stream: &Stream,
    con: &mut ConnectionManager,
) -> Result<(Loaded, Vec<Entry>), ClusterError> {
    let loaded = timeout(COMMAND_TIMEOUT, stream.load(con))
        .await
        .map_err(|_| ClusterError::BadEntry("load timed out".into()))??;
    let history = timeout(COMMAND_TIMEOUT, stream.range(con, "0-0", &loaded.last_id))
        .await
        .map_err(|_| ClusterError::BadEntry("range timed out".into()))??;
    Ok((loaded, history))
}

struct Node {
    settings: ClusterSettings,
    keys: Keys,
    con: ConnectionManager,
    lease: Lease,
    registry: Registry,
    hub_cmds: mpsc::UnboundedReceiver<UpCommand>,
    fenced: mpsc::UnboundedReceiver<()>,
    upstream: Supervisor,
    held: Arc<Mutex<Option<Held>>>,
    append_failed: Arc<AtomicBool>,
    to_hub: mpsc::Sender<Incoming>,
    view: Arc<ClusterView>,
    clients: Arc<dyn Fn() -> usize + Send + Sync>,
    /// The local hub wants the upstream (it has clients, or lingers).
    wants: bool,
    redis_ok: Option<bool>,
    last_renewed: Instant,
    /// When this instance took the lease it holds (ms since the Unix epoch).
    leading_since: Option<i64>,
}

impl Node {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.hub_cmds.recv() => match cmd {
                    Some(UpCommand::Start) => self.wants = true,
                    Some(UpCommand::Stop) => self.wants = false,
                    Some(UpCommand::Reconcile) => {
                        if self.leading() {
                            self.upstream.send(UpCommand::Reconcile);
                        }
                        continue;
                    }
                    Some(UpCommand::Shutdown(reply)) => {
                        self.wants = false;
                        self.resign().await;
                        self.upstream.send(UpCommand::Shutdown(reply));
                        continue;
                    }
                    None => return,
                },
                Some(()) = self.fenced.recv() => {
                    log::warn!(target: "cluster", "append refused by the fence: another instance leads; stopping the upstream");
                    self.lost();
                }
                _ = tick.tick() => {}
            }
            self.step().await;
        }
    }

    fn leading(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn set_held(&self, held: Option<Held>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
    }

    fn current(&self) -> Option<Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The lease is gone: stop publishing and stop the upstream at once.
    fn lost(&mut self) {
        if self.current().is_some() {
            self.set_held(None);
            self.upstream.send(UpCommand::Stop);
        }
    }

    async fn resign(&mut self) {
        if let Some(held) = self.current() {
            self.set_held(None);
            self.upstream.send(UpCommand::Stop);
            let _ = timeout(COMMAND_TIMEOUT, self.lease.release(&mut self.con, &held)).await;
            log::info!(target: "cluster", "resigned the lease of {:?}", self.settings.account);
        }
    }

    async fn step(&mut self) {
        let account = self.settings.account.clone();
        let mut clients = BTreeMap::new();
        clients.insert(account.clone(), (self.clients)());
        let wanted: BTreeSet<String> = if self.wants {
            [account.clone()].into()
        } else {
            BTreeSet::new()
        };
        let beat = timeout(
            COMMAND_TIMEOUT,
            self.registry.beat(&mut self.con, &clients, &wanted),
        )
        .await;
        let live: Option<Vec<Instance>> = match beat {
            Ok(Ok(live)) => Some(live),
            Ok(Err(e)) => {
                log::debug!(target: "cluster", "registry beat failed: {e}");
                None
            }
            Err(_) => None,
        };
        self.set_redis(live.is_some()).await;
        match (self.current(), &live) {
            (Some(held), Some(live)) => {
                let anyone_wants = live.iter().any(|i| i.wants.contains(&account));
                if !anyone_wants {
                    self.resign().await;
                } else {
                    match timeout(COMMAND_TIMEOUT, self.lease.renew(&mut self.con, &held)).await {
                        Ok(Ok(true)) => {
                            self.last_renewed = Instant::now();
                            if self.append_failed.swap(false, Ordering::SeqCst) {
                                // Records were lost between us and Redis: the REST view covers them.
                                self.upstream.send(UpCommand::Reconcile);
                            }
                        }
                        Ok(Ok(false)) => {
                            log::warn!(target: "cluster", "lease of {account:?} lost (expired or taken over)");
                            self.lost();
                        }
                        _ => self.renew_failed(),
                    }
                }
            }
            (Some(_), None) => self.renew_failed(),
            (None, Some(_)) if self.wants => {
                if let Ok(Ok(Some(held))) =
                    timeout(COMMAND_TIMEOUT, self.lease.acquire(&mut self.con)).await
                {
                    log::info!(target: "cluster", "leading {account:?} (fencing token {})", held.token);
                    self.last_renewed = Instant::now();
                    self.append_failed.store(false, Ordering::SeqCst);
                    self.set_held(Some(held));
                    self.leading_since = Some(super::now_ms());
                    // The supervisor joins and reconciles over REST after every join.
                    self.upstream.send(UpCommand::Start);
                }
            }
            _ => {}
        }
        if let Some(live) = live {
            let leader =
                match timeout(COMMAND_TIMEOUT, holder(&mut self.con, &self.keys, &account)).await {
                    Ok(Ok(h)) => h.map(|(_, instance)| instance),
                    _ => None,
                };
            let instances: Vec<Value> = live
                .iter()
                .map(|i| json!({"id": i.id, "clients": i.clients, "last_seen": i.last_seen}))
                .collect();
            let mut leaders = serde_json::Map::new();
            if let Some(leader) = leader {
                leaders.insert(account, Value::String(leader));
            }
            let since = self.leading_since.filter(|_| self.leading());
            *self.view.doc.lock().unwrap_or_else(|e| e.into_inner()) = json!({
                "instance": self.settings.instance,
                "instances": instances,
                "leaders": leaders,
                "leading_since": since,
            });
        }
    }

    /// Redis did not answer a renewal: past the TTL the lease may be someone else's.
    fn renew_failed(&mut self) {
        if self.last_renewed.elapsed() >= LEASE_TTL {
            log::warn!(target: "cluster", "lease not renewed for {LEASE_TTL:?}: stopping the upstream");
            self.lost();
        }
    }

    async fn set_redis(&mut self, ok: bool) {
        self.view.redis_ok.store(ok, Ordering::SeqCst);
        if self.redis_ok != Some(ok) {
            if self.redis_ok.is_some() || !ok {
                log::warn!(target: "cluster", "redis {}", if ok { "reachable again" } else { "unreachable" });
                let _ = self.to_hub.send(Incoming::Redis(ok)).await;
            }
            self.redis_ok = Some(ok);
        }
    }
}

/// Publishes the hub's records under the fence, in batches.
async fn append(
    stream: Stream,
    mut con: ConnectionManager,
    mut records: mpsc::UnboundedReceiver<(String, bool, Payload)>,
    held: Arc<Mutex<Option<Held>>>,
    fenced: mpsc::UnboundedSender<()>,
    failed: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    while let Some(first) = records.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < APPEND_BATCH {
            match records.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let value = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|h| h.value.clone());
        let Some(value) = value else {
            log::debug!(target: "cluster", "not leading: {} record(s) not published", batch.len());
            continue;
        };
        match timeout(COMMAND_TIMEOUT, stream.append(&mut con, &value, &batch)).await {
            Ok(Ok(_)) => {}
            Ok(Err(ClusterError::Fenced)) => {
                let _ = fenced.send(());
            }
            Ok(Err(e)) => {
                log::warn!(target: "cluster", "append of {} record(s) failed: {e}", batch.len());
                failed.store(true, Ordering::SeqCst);
            }
            Err(_) => {
                log::warn!(target: "cluster", "append of {} record(s) timed out", batch.len());
                failed.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Follows the stream from `after` and hands every entry to the hub, in order.
async fn read(
    stream: Stream,
    mut con: ConnectionManager,
    after: Option<String>,
    to_hub: mpsc::Sender<Incoming>,
) {
    let mut after = match after {
        Some(after) => after,
        None => loop {
            match load_initial(&stream, &mut con).await {
                Ok((loaded, history)) => {
                    let after = loaded.last_id.clone();
                    if to_hub
                        .send(Incoming::Loaded(loaded, history))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    break after;
                }
                Err(e) => {
                    log::debug!(target: "cluster", "stream load failed: {e}");
                    if to_hub.is_closed() {
                        return;
                    }
                    tokio::time::sleep(TICK).await;
                }
            }
        },
    };
    loop {
        match stream
            .read(&mut con, &after, READ_BLOCK_MS, READ_COUNT)
            .await
        {
            Ok(entries) => {
                let Some(last) = entries.last() else { continue };
                after = last.id.clone();
                if to_hub.send(Incoming::Entries(entries)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                log::debug!(target: "cluster", "stream read failed: {e}");
                if to_hub.is_closed() {
                    return;
                }
                tokio::time::sleep(TICK).await;
            }
        }
    }
}
