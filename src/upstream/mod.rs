//! The exchange side: one Socket.IO connection to CoinDCX's private stream, opened only while
//! someone watches.
//!
//! - [`Transport`] / [`Connection`]: our own small trait around a Socket.IO client, so
//!   `rust_socketio` could be swapped without touching the hub. [`socketio`] implements it over
//!   `rust_socketio` (Engine.IO 4 only), [`engineio`] with our own client for Engine.IO 3 and 4
//!   ([`packet`]: the wire format), and [`auto`] picks one per `COINDCX_EIO` (probing the
//!   server's open packet by default).
//! - [`supervisor`]: the task that owns the connection's life cycle: start on the first client,
//!   stop after the last, reconnect with backoff and jitter, detect bad credentials, and run the
//!   REST reconcile after every join.
//!
//! Records go from the transport's callback straight to the hub over a bounded channel with
//! `try_send` (the callback runs inside the client's reader loop, which also answers pings, so
//! it must never wait). A full channel is a gap, flagged here and repaired by a reconcile.

pub mod account;
pub mod auto;
pub mod engineio;
pub mod packet;
pub mod socketio;
pub mod supervisor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Life-cycle state of the upstream, as shown in `/ws/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamState {
    Idle,
    Connecting,
    Joined,
    Reconnecting,
    AuthFailed,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Idle => "idle",
            UpstreamState::Connecting => "connecting",
            UpstreamState::Joined => "joined",
            UpstreamState::Reconnecting => "reconnecting",
            UpstreamState::AuthFailed => "auth_failed",
        }
    }
}

/// One Socket.IO event as it arrived, before normalization.
#[derive(Debug)]
pub struct RawEvent {
    pub event: String,
    pub arg: Value,
    pub received_at: DateTime<Utc>,
}

/// What a connection tells its supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The Socket.IO Connect event arrived and `join` was emitted.
    Joined,
    /// The connection is gone (server disconnect, transport closed, connect failure).
    Closed(String),
}

/// Where a connection delivers: records to the hub, signals to the supervisor.
#[derive(Clone)]
pub struct ConnSink {
    conn_id: u64,
    records: mpsc::Sender<RawEvent>,
    signals: mpsc::UnboundedSender<(u64, Signal)>,
    gap: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl ConnSink {
    /// Hands one event to the hub without waiting. A full queue marks a gap to repair.
    pub fn record(&self, event: String, arg: Value) {
        let raw = RawEvent {
            event,
            arg,
            received_at: Utc::now(),
        };
        if let Err(mpsc::error::TrySendError::Full(raw)) = self.records.try_send(raw) {
            self.gap.store(true, Ordering::SeqCst);
            self.metrics.upstream_gaps.inc();
            log::warn!(target: "upstream", "hub queue full: dropped one {} event; a reconcile will repair it", raw.event);
        }
    }

    pub fn signal(&self, signal: Signal) {
        // The supervisor outlives its connections; a send error only happens at shutdown.
        let _ = self.signals.send((self.conn_id, signal));
    }
}

/// Opens connections to a CoinDCX-compatible Socket.IO server.
pub trait Transport: Send + Sync + 'static {
    /// Starts one connection. It reports through `sink` and must emit `join` on every Connect.
    fn open(&self, sink: ConnSink) -> Box<dyn Connection>;
}

/// One open (or opening) connection.
pub trait Connection: Send {
    /// Sends `leave`, disconnects and releases the transport; completes when it is gone.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}
