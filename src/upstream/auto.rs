//! Which Socket.IO client talks to the exchange (`COINDCX_EIO`), decided in one place.
//!
//! - `4`: `rust_socketio` ([`super::socketio`]), as before; no probe.
//! - `3`: our own client ([`super::engineio`]), which follows whatever revision the server's open
//!   packet announces.
//! - `auto` (default): open the WebSocket ourselves and read the open packet. An Engine.IO 3
//!   server (no `maxPayload`) keeps that very connection, served by our client; an Engine.IO 4
//!   server gets the probe closed (no namespace connect was sent, so a socket.io 4 server never
//!   counted it) and `rust_socketio` connects. So the probe costs one WebSocket handshake against
//!   EIO4 and nothing extra against EIO3, where a separate probe would be a full extra
//!   connect/disconnect on the server.
//!
//! The answer "EIO4" is remembered for the process, so a desk that comes back after the
//! upstream went idle connects without a probe. It is forgotten after an attempt that failed
//! before joining and after any drop (the exchange runs several replicas behind a proxy; one
//! may answer differently), so the next attempt probes again. The revision seen is logged when
//! it changes and exported as the `hub_upstream_eio` gauge.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::engineio::{self, TaskConnection};
use super::packet::Eio;
use super::socketio::SocketIoTransport;
use super::{ConnSink, Connection, Signal, Transport};
use crate::config::EioMode;
use crate::metrics::Metrics;

/// The exchange [`Transport`] chosen by `COINDCX_EIO`.
pub struct AutoTransport {
    inner: Arc<Inner>,
}

struct Inner {
    mode: EioMode,
    url: String,
    join: Value,
    /// Also join the public price channel.
    prices: bool,
    socketio: SocketIoTransport,
    /// The revision learned by the last probe in `auto` mode (`None`: probe next time).
    known: Mutex<Option<Eio>>,
    metrics: Arc<Metrics>,
}

impl AutoTransport {
    pub fn new(
        mode: EioMode,
        url: &str,
        api_key: &str,
        api_secret: &str,
        prices: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        let inner = Inner {
            mode,
            url: url.to_string(),
            join: engineio::join_payload(api_key, api_secret),
            prices,
            socketio: SocketIoTransport::new(url, api_key, api_secret, prices),
            known: Mutex::new(None),
            metrics,
        };
        if mode == EioMode::V4 {
            inner.seen(Eio::V4, "COINDCX_EIO=4");
        }
        AutoTransport {
            inner: Arc::new(inner),
        }
    }
}

impl Transport for AutoTransport {
    fn open(&self, sink: ConnSink) -> Box<dyn Connection> {
        if self.inner.mode == EioMode::V4 {
            return self.inner.socketio.open(sink);
        }
        let inner = self.inner.clone();
        TaskConnection::spawn(move |stop| attempt(inner, sink, stop))
    }
}

impl Inner {
    fn remembered(&self) -> Option<Eio> {
        *self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, eio: Option<Eio>) {
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = eio;
    }

    /// Records the revision the server spoke; logs it when it differs from the last one.
    fn seen(&self, eio: Eio, how: &str) {
        let previous = self.metrics.upstream_eio.get();
        self.metrics.upstream_eio.set(eio.number());
        if previous == eio.number() {
            return;
        }
        let client = match (self.mode, eio) {
            (EioMode::V4, _) => "rust_socketio",
            (EioMode::Auto, Eio::V4) => "rust_socketio (the server pings)",
            (_, Eio::V3) => "the built-in Engine.IO client (it pings every pingInterval)",
            (EioMode::V3, Eio::V4) => "the built-in Engine.IO client",
        };
        log::info!(target: "upstream", "exchange speaks Engine.IO {} ({how}): using {client}", eio.number());
    }
}

/// One connection attempt: probe (unless EIO4 is remembered), then the chosen client. Relays
/// the client's signals to the supervisor, noting whether it joined.
async fn attempt(inner: Arc<Inner>, sink: ConnSink, mut stop: oneshot::Receiver<()>) {
    let deadline = engineio::attempt_deadline();
    let (relay, mut signals) = relay(&sink);
    let auto = inner.mode == EioMode::Auto;
    let conn: Box<dyn Connection> = if auto && inner.remembered() == Some(Eio::V4) {
        inner.socketio.open(relay)
    } else {
        let opened = tokio::select! {
            r = engineio::handshake(&inner.url, deadline) => r,
            _ = &mut stop => return,
        };
        let (ws, open) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                inner.remember(None);
                return sink.signal(Signal::Closed(format!("connect failed: {e}")));
            }
        };
        let how = match open.eio {
            Eio::V3 => "its open packet has no maxPayload",
            Eio::V4 => "its open packet has maxPayload",
        };
        inner.seen(open.eio, how);
        if auto && open.eio == Eio::V4 {
            inner.remember(Some(Eio::V4));
            engineio::discard(ws).await;
            inner.socketio.open(relay)
        } else {
            let join = inner.join.clone();
            let prices = inner.prices;
            TaskConnection::spawn(move |stop| {
                engineio::session(ws, open, join, prices, relay, stop, deadline)
            })
        }
    };
    let mut joined = false;
    loop {
        tokio::select! {
            Some((_, signal)) = signals.recv() => {
                match signal {
                    Signal::Joined => joined = true,
                    // A drop may mean a different server (one replica behind the exchange's
                    // proxy may speak EIO3): the reconnect probes again.
                    Signal::Closed(_) => inner.remember(None),
                }
                sink.signal(signal);
            }
            _ = &mut stop => break,
        }
    }
    if !joined {
        inner.remember(None);
    }
    conn.close().await;
}

/// A sink like `sink` whose signals come to us first.
fn relay(sink: &ConnSink) -> (ConnSink, mpsc::UnboundedReceiver<(u64, Signal)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let relay = ConnSink {
        signals: tx,
        ..sink.clone()
    };
    (relay, rx)
}
