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
//! The channel is bounded twice: by events ([`RecordTx`]'s capacity) and by their approximate
//! bytes (`HUB_UPSTREAM_QUEUE_BYTES`), since one event can carry up to 1 MB.

pub mod account;
pub mod auto;
pub mod engineio;
pub mod packet;
pub mod socketio;
pub mod supervisor;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The public price channel joined next to the private one while an account has clients
/// (no signature); its event carries mark and last prices per pair (PROTOCOL.md, SPEC §9).
pub const PRICES_CHANNEL: &str = "currentPrices@futures@rt";
/// The public price channel's event.
pub const PRICES_EVENT: &str = "currentPrices@futures#update";

/// `join`/`leave` payload of the public price channel.
pub fn prices_channel() -> Value {
    serde_json::json!({ "channelName": PRICES_CHANNEL })
}

/// Whether a `Left Channel` answer is the private channel's (the one the disconnect waits for);
/// the price channel's answer may arrive first.
pub fn is_private_left(arg: &Value) -> bool {
    arg.get("channelName").and_then(Value::as_str) != Some(PRICES_CHANNEL)
}

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
    /// Approximate size in bytes (counted against the queue's byte budget).
    pub size: usize,
}

/// The bytes of events queued between the upstream and the hub, and the budget for them.
#[derive(Debug)]
struct QueueBytes {
    queued: AtomicUsize,
    limit: usize,
}

/// The sending end of the upstream → hub record queue (bounded by events and by bytes).
#[derive(Clone, Debug)]
pub struct RecordTx {
    tx: mpsc::Sender<RawEvent>,
    bytes: Arc<QueueBytes>,
}

/// The hub's end of the record queue; every event taken out gives its bytes back.
#[derive(Debug)]
pub struct RecordRx {
    rx: mpsc::Receiver<RawEvent>,
    bytes: Arc<QueueBytes>,
}

/// A record queue of at most `events` events and about `bytes` bytes.
pub fn record_queue(events: usize, bytes: usize) -> (RecordTx, RecordRx) {
    let (tx, rx) = mpsc::channel(events.max(1));
    let bytes = Arc::new(QueueBytes {
        queued: AtomicUsize::new(0),
        limit: bytes,
    });
    (
        RecordTx {
            tx,
            bytes: bytes.clone(),
        },
        RecordRx { rx, bytes },
    )
}

/// Why an event could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    Events,
    Bytes,
    /// The hub is gone (shutdown).
    Closed,
}

/// An event the queue refused: why, and what it was (its payload is dropped).
#[derive(Debug)]
pub struct Refused {
    pub why: QueueFull,
    pub event: String,
    pub size: usize,
}

impl RecordTx {
    /// Queues `raw` without waiting, or says why not.
    pub fn try_send(&self, raw: RawEvent) -> Result<(), Refused> {
        let size = raw.size;
        let refused = |why, raw: RawEvent| Refused {
            why,
            event: raw.event,
            size,
        };
        let before = self.bytes.queued.fetch_add(size, Ordering::SeqCst);
        // One event alone is always let in (its size is bounded by the transport's max payload),
        // so a single large event cannot wedge the queue.
        if before > 0 && before + size > self.bytes.limit {
            self.bytes.queued.fetch_sub(size, Ordering::SeqCst);
            return Err(refused(QueueFull::Bytes, raw));
        }
        self.tx.try_send(raw).map_err(|e| {
            self.bytes.queued.fetch_sub(size, Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(raw) => refused(QueueFull::Events, raw),
                mpsc::error::TrySendError::Closed(raw) => refused(QueueFull::Closed, raw),
            }
        })
    }
}

impl RecordRx {
    pub async fn recv(&mut self) -> Option<RawEvent> {
        let raw = self.rx.recv().await?;
        self.bytes.queued.fetch_sub(raw.size, Ordering::SeqCst);
        Some(raw)
    }

    pub fn try_recv(&mut self) -> Option<RawEvent> {
        let raw = self.rx.try_recv().ok()?;
        self.bytes.queued.fetch_sub(raw.size, Ordering::SeqCst);
        Some(raw)
    }

    /// Bytes queued right now (approximate).
    pub fn queued_bytes(&self) -> usize {
        self.bytes.queued.load(Ordering::SeqCst)
    }
}

/// Approximate bytes of a JSON value as text, without serializing it. CoinDCX's `data` is one
/// string, so this is usually a single length.
pub fn approx_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(n) => n.as_str().len(),
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| approx_size(x) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, x)| k.len() + 4 + approx_size(x))
                .sum::<usize>()
        }
    }
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
    records: RecordTx,
    signals: mpsc::UnboundedSender<(u64, Signal)>,
    gap: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl ConnSink {
    /// A sink for a connection opened outside the supervisor (`check-config`): `conn_id` tags
    /// its signals; a full `records` queue sets `gap`.
    pub fn new(
        conn_id: u64,
        records: RecordTx,
        signals: mpsc::UnboundedSender<(u64, Signal)>,
        gap: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> ConnSink {
        ConnSink {
            conn_id,
            records,
            signals,
            gap,
            metrics,
        }
    }

    /// Hands one event to the hub without waiting. A full queue marks a gap to repair.
    pub fn record(&self, event: String, arg: Value) {
        let size = event.len() + approx_size(&arg);
        let raw = RawEvent {
            event,
            arg,
            received_at: Utc::now(),
            size,
        };
        match self.records.try_send(raw) {
            Ok(()) => {}
            Err(raw) if raw.why == QueueFull::Closed => {}
            Err(raw) => {
                self.gap.store(true, Ordering::SeqCst);
                self.metrics.upstream_gaps.inc();
                let limit = if raw.why == QueueFull::Bytes {
                    "bytes"
                } else {
                    "events"
                };
                self.metrics
                    .upstream_queue_full
                    .with_label_values(&[limit])
                    .inc();
                log::warn!(target: "upstream", "hub queue full ({limit}): dropped one {} event of {} bytes; a reconcile will repair it", raw.event, raw.size);
            }
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
    /// Ends the connection, in whatever phase it is, without holding up the supervisor:
    /// - still connecting (even a handshake that never answers): abandon it at once;
    /// - joined: emit `leave`, wait for the exchange's `Left Channel` (bounded, about 1 s), then
    ///   disconnect: a socket.io 4 server drops an event that arrives with the disconnect;
    /// - then release every socket and task.
    ///
    /// Completes when the connection is gone, or after a bound of about 2 s at most (the rest
    /// finishes in the background). Implementations keep `Left Channel` out of the records.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(records: RecordTx, metrics: Arc<Metrics>) -> (ConnSink, Arc<AtomicBool>) {
        let (signals, _) = mpsc::unbounded_channel();
        let gap = Arc::new(AtomicBool::new(false));
        let sink = ConnSink {
            conn_id: 1,
            records,
            signals,
            gap: gap.clone(),
            metrics,
        };
        (sink, gap)
    }

    fn event_of(bytes: usize) -> Value {
        serde_json::json!({"event": "df-order-update", "data": "x".repeat(bytes)})
    }

    #[test]
    fn queue_is_bounded_by_bytes_and_a_full_one_is_a_counted_gap() {
        let metrics = Arc::new(Metrics::new());
        let (tx, mut rx) = record_queue(100, 3_500);
        let (sink, gap) = sink(tx, metrics.clone());
        // ~1,050 bytes each: three fit under 3,500 bytes, the fourth and fifth do not.
        for _ in 0..5 {
            sink.record("df-order-update".into(), event_of(1_000));
        }
        assert!(gap.load(Ordering::SeqCst));
        let text = metrics.render();
        let sample = |s: &str| crate::metrics::sample(&text, s);
        assert_eq!(
            sample("hub_upstream_queue_full_total{limit=\"bytes\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample("hub_upstream_queue_full_total{limit=\"events\"}"),
            Some(0.0)
        );
        assert_eq!(sample("hub_upstream_gaps_total"), Some(2.0));
        let queued = rx.queued_bytes();
        assert!((3_000..=3_500).contains(&queued), "{queued}");
        let mut taken = 0;
        while rx.try_recv().is_some() {
            taken += 1;
        }
        assert_eq!((taken, rx.queued_bytes()), (3, 0));
        // Room again once the hub has taken them.
        sink.record("df-order-update".into(), event_of(1_000));
        assert!(rx.try_recv().is_some());
    }

    #[test]
    fn one_event_larger_than_the_budget_still_passes_alone() {
        let metrics = Arc::new(Metrics::new());
        let (tx, mut rx) = record_queue(100, 1_024);
        let (sink, gap) = sink(tx, metrics);
        sink.record("df-order-update".into(), event_of(5_000));
        sink.record("df-order-update".into(), event_of(10));
        assert!(gap.load(Ordering::SeqCst), "the second waits behind 5 KB");
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn queue_is_bounded_by_events() {
        let metrics = Arc::new(Metrics::new());
        let (tx, _rx) = record_queue(2, 1 << 20);
        let (sink, _) = sink(tx, metrics.clone());
        for _ in 0..3 {
            sink.record("balance-update".into(), event_of(10));
        }
        assert_eq!(
            crate::metrics::sample(
                &metrics.render(),
                "hub_upstream_queue_full_total{limit=\"events\"}"
            ),
            Some(1.0)
        );
    }
}
