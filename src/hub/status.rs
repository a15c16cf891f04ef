//! What `/ws/status`, `/readyz` and the session handshake read without asking the hub task:
//! atomics and one small mutex, written by the hub, never held across an await.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::cluster::node::ClusterView;
use crate::hub::frame::timestamp;
use crate::upstream::UpstreamState;

pub struct Status {
    pub epoch: String,
    pub kind: &'static str,
    started: Instant,
    /// Sessions that passed the upgrade checks (reserved before the upgrade, released at close).
    pub active: AtomicUsize,
    pub joined: AtomicBool,
    pub events_total: AtomicU64,
    pub seq: AtomicU64,
    /// Sizes of what the hub holds (bounded by `HUB_HISTORY` and the terminal-order cap).
    pub held: Held,
    upstream: Mutex<UpstreamInfo>,
    /// Cluster mode only: the stream's epoch changes when Redis lost its data.
    live_epoch: Mutex<Option<String>>,
    pub cluster: Option<Arc<ClusterView>>,
}

#[derive(Default)]
pub struct Held {
    pub history: AtomicUsize,
    pub orders: AtomicUsize,
    pub terminal_orders: AtomicUsize,
    pub positions: AtomicUsize,
    pub balances: AtomicUsize,
}

struct UpstreamInfo {
    state: UpstreamState,
    detail: String,
    since: DateTime<Utc>,
    last_event_at: Option<DateTime<Utc>>,
    reconnects: u64,
}

impl Status {
    pub fn new(epoch: String, kind: &'static str) -> Self {
        Status {
            epoch,
            kind,
            started: Instant::now(),
            active: AtomicUsize::new(0),
            joined: AtomicBool::new(false),
            events_total: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            held: Held::default(),
            upstream: Mutex::new(UpstreamInfo {
                state: UpstreamState::Idle,
                detail: "no clients".into(),
                since: Utc::now(),
                last_event_at: None,
                reconnects: 0,
            }),
            live_epoch: Mutex::new(None),
            cluster: None,
        }
    }

    /// Cluster mode: `/ws/status` shows the cluster and `/readyz` follows Redis.
    pub fn with_cluster(mut self, view: Arc<ClusterView>) -> Self {
        self.cluster = Some(view);
        self
    }

    /// The epoch clients are told now (the start epoch unless the cluster's stream changed it).
    pub fn current_epoch(&self) -> String {
        let live = self.live_epoch.lock().unwrap_or_else(|e| e.into_inner());
        live.clone().unwrap_or_else(|| self.epoch.clone())
    }

    pub fn set_epoch(&self, epoch: &str) {
        *self.live_epoch.lock().unwrap_or_else(|e| e.into_inner()) = Some(epoch.to_string());
    }

    fn info(&self) -> std::sync::MutexGuard<'_, UpstreamInfo> {
        // A poisoned lock only means a panic elsewhere; the data is still plain values.
        self.upstream.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_upstream(&self, state: UpstreamState, detail: &str, reconnects: u64) {
        let mut info = self.info();
        if info.state != state {
            info.since = Utc::now();
        }
        info.state = state;
        info.detail = detail.to_string();
        info.reconnects = reconnects;
        self.joined
            .store(state == UpstreamState::Joined, Ordering::SeqCst);
    }

    pub fn upstream_state(&self) -> UpstreamState {
        self.info().state
    }

    pub fn record_event(&self, seq: u64, at: DateTime<Utc>) {
        self.seq.store(seq, Ordering::SeqCst);
        self.events_total.fetch_add(1, Ordering::Relaxed);
        self.info().last_event_at = Some(at);
    }

    /// The `/ws/status` document.
    pub fn to_json(&self) -> Value {
        let epoch = self.current_epoch();
        let info = self.info();
        let mut doc = json!({
            "active_connections": self.active.load(Ordering::SeqCst),
            "coindcx_connected": self.joined.load(Ordering::SeqCst),
            "upstream": {
                "kind": self.kind,
                "state": info.state.as_str(),
                "detail": info.detail,
                "since": timestamp(info.since),
                "last_event_at": info.last_event_at.map(timestamp),
                "reconnects": info.reconnects,
            },
            "events_total": self.events_total.load(Ordering::Relaxed),
            "seq": self.seq.load(Ordering::SeqCst),
            "epoch": epoch,
            "held": {
                "history": self.held.history.load(Ordering::Relaxed),
                "orders": self.held.orders.load(Ordering::Relaxed),
                "terminal_orders": self.held.terminal_orders.load(Ordering::Relaxed),
                "positions": self.held.positions.load(Ordering::Relaxed),
                "balances": self.held.balances.load(Ordering::Relaxed),
            },
            "uptime_s": self.started.elapsed().as_secs(),
        });
        if let Some(cluster) = &self.cluster {
            doc["cluster"] = cluster.to_json();
        }
        doc
    }

    /// `Ok` when clients can be served (SPEC §2 `/readyz`), else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(cluster) = &self.cluster {
            // The upstream is the leader's (maybe another instance's): this instance can serve
            // while it can follow the stream.
            if !cluster.redis_ok.load(Ordering::SeqCst) {
                return Err("redis unreachable: serving what this instance holds".into());
            }
            let info = self.info();
            if info.state == UpstreamState::AuthFailed {
                return Err(format!("upstream auth_failed: {}", info.detail));
            }
            return Ok(());
        }
        let info = self.info();
        match info.state {
            UpstreamState::Joined => Ok(()),
            UpstreamState::Idle if self.active.load(Ordering::SeqCst) == 0 => Ok(()),
            UpstreamState::AuthFailed => Err(format!("upstream auth_failed: {}", info.detail)),
            state => Err(format!("upstream {}: {}", state.as_str(), info.detail)),
        }
    }
}
