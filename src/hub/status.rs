//! What `/ws/status`, `/readyz` and the session handshake read without asking the hub task:
//! atomics and one small mutex, written by the hub, never held across an await.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

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
        }
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
        let info = self.info();
        json!({
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
            "epoch": self.epoch,
            "held": {
                "history": self.held.history.load(Ordering::Relaxed),
                "orders": self.held.orders.load(Ordering::Relaxed),
                "terminal_orders": self.held.terminal_orders.load(Ordering::Relaxed),
                "positions": self.held.positions.load(Ordering::Relaxed),
                "balances": self.held.balances.load(Ordering::Relaxed),
            },
            "uptime_s": self.started.elapsed().as_secs(),
        })
    }

    /// `Ok` when clients can be served (SPEC §2 `/readyz`), else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let info = self.info();
        match info.state {
            UpstreamState::Joined => Ok(()),
            UpstreamState::Idle if self.active.load(Ordering::SeqCst) == 0 => Ok(()),
            UpstreamState::AuthFailed => Err(format!("upstream auth_failed: {}", info.detail)),
            state => Err(format!("upstream {}: {}", state.as_str(), info.detail)),
        }
    }
}
