//! [`Transport`] over `rust_socketio` 0.6 (async, Engine.IO 4, websocket only).
//!
//! Each connection runs on its own OS thread with its own single-threaded tokio runtime.
//! `rust_socketio`'s `disconnect()` leaves the WebSocket open for ~25 s and its reader task
//! would keep going, so closing a connection means dropping that runtime: every task and socket
//! it owns is gone at once, and no reconnect attempt can survive. Its own reconnect is off; the
//! supervisor owns the policy (including the deadline of an attempt).
//!
//! Closing never waits on the exchange for long: the stop signal is watched while `connect()`
//! runs (an address that accepts TCP and never answers must not hold up a stop), and
//! [`Connection::close`] waits at most [`CLOSE_BOUND`] for the thread; past that the thread
//! finishes and drops its runtime in the background.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

use super::{is_private_left, prices_channel, ConnSink, Connection, Signal, Transport};
use crate::signing::join_signature;

/// How often the connection checks that the client's reader task is still alive.
const WATCHDOG: Duration = Duration::from_millis(100);
/// How long `leave` may take to be written to the socket.
const LEAVE_SEND: Duration = Duration::from_millis(300);
/// How long to wait for the exchange's `Left Channel` answer before disconnecting anyway.
/// A socket.io 4 server dispatches an event on its next tick and drops any packet that arrives
/// after the disconnect, so `leave` and the disconnect must never go back to back.
pub const LEFT_CHANNEL_WAIT: Duration = Duration::from_secs(1);
/// How long the namespace disconnect may take to be written.
const DISCONNECT_SEND: Duration = Duration::from_millis(200);
/// The most `close()` waits for the connection thread: leave, its answer, the disconnect and
/// the runtime's shutdown, with room to spare. The thread is never joined.
pub const CLOSE_BOUND: Duration = Duration::from_millis(2000);
/// The exchange's answer to `leave` (PROTOCOL.md §3); not a record, so never sent to the hub.
const LEFT_CHANNEL: &str = "Left Channel";

pub struct SocketIoTransport {
    url: String,
    api_key: String,
    api_secret: String,
    /// Also join the public price channel.
    prices: bool,
}

impl SocketIoTransport {
    pub fn new(url: &str, api_key: &str, api_secret: &str, prices: bool) -> Self {
        SocketIoTransport {
            url: url.to_string(),
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
            prices,
        }
    }
}

impl Transport for SocketIoTransport {
    fn open(&self, sink: ConnSink) -> Box<dyn Connection> {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let url = self.url.clone();
        let prices = self.prices;
        let join = json!({
            "channelName": "coindcx",
            "authSignature": join_signature(&self.api_secret),
            "apiKey": self.api_key,
        });
        let thread_sink = sink.clone();
        let spawned = std::thread::Builder::new()
            .name("upstream-conn".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return thread_sink.signal(Signal::Closed(format!("runtime: {e}"))),
                };
                runtime.block_on(run(url, join, prices, thread_sink, stop_rx));
                // Dropping the runtime here aborts the reader task and closes the socket.
                runtime.shutdown_timeout(Duration::from_millis(100));
                let _ = done_tx.send(());
            });
        // The thread is detached: `close()` waits for `done`, bounded, never for a join.
        match spawned {
            Ok(_detached) => Box::new(SocketIoConnection {
                stop: Some(stop_tx),
                done: Some(done_rx),
            }),
            Err(e) => {
                sink.signal(Signal::Closed(format!("thread: {e}")));
                Box::new(SocketIoConnection {
                    stop: None,
                    done: None,
                })
            }
        }
    }
}

struct SocketIoConnection {
    stop: Option<oneshot::Sender<()>>,
    /// Completes (or errs) when the connection thread has dropped its runtime and sockets.
    done: Option<oneshot::Receiver<()>>,
}

impl Connection for SocketIoConnection {
    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = self.done.take();
        async move {
            if let Some(done) = done {
                if tokio::time::timeout(CLOSE_BOUND, done).await.is_err() {
                    log::warn!(target: "upstream", "connection thread still closing after {} ms; it finishes in the background", CLOSE_BOUND.as_millis());
                }
            }
        }
        .boxed()
    }
}

impl Drop for SocketIoConnection {
    fn drop(&mut self) {
        // Dropping the stop sender ends the connection thread too (close() not called).
        self.stop.take();
    }
}

async fn run(
    url: String,
    join: Value,
    prices: bool,
    sink: ConnSink,
    mut stop: oneshot::Receiver<()>,
) {
    // Whether `join` went out on this socket and it has not closed since: only then is a
    // `leave` worth sending and its answer worth waiting for.
    let joined = Arc::new(AtomicBool::new(false));
    let left = Arc::new(Notify::new());
    let on_connect = {
        let sink = sink.clone();
        let joined = joined.clone();
        move |_: Payload, client: Client| {
            let sink = sink.clone();
            let join = join.clone();
            let joined = joined.clone();
            async move {
                // Only now has the server acknowledged the namespace; an earlier emit is lost.
                // The public price channel right after the private one (no signature).
                let joins = async {
                    client.emit("join", join).await?;
                    if prices {
                        client.emit("join", prices_channel()).await?;
                    }
                    Ok::<(), rust_socketio::Error>(())
                };
                match joins.await {
                    Ok(()) => {
                        joined.store(true, Ordering::SeqCst);
                        sink.signal(Signal::Joined)
                    }
                    Err(e) => sink.signal(Signal::Closed(format!("join not sent: {e}"))),
                }
            }
            .boxed()
        }
    };
    let on_close = {
        let sink = sink.clone();
        let joined = joined.clone();
        move |_: Payload, _: Client| {
            joined.store(false, Ordering::SeqCst);
            sink.signal(Signal::Closed("server disconnected".into()));
            async {}.boxed()
        }
    };
    let on_error = {
        let sink = sink.clone();
        move |payload: Payload, _: Client| {
            let text = payload_text(&payload);
            // A refused namespace connect leaves the transport open but the stream useless.
            if text.contains("ConnectError") {
                sink.signal(Signal::Closed(
                    "server refused the Socket.IO connect".into(),
                ));
            } else {
                log::debug!(target: "upstream", "socket.io error: {text}");
            }
            async {}.boxed()
        }
    };
    let on_any = {
        let sink = sink.clone();
        let left = left.clone();
        move |event: Event, payload: Payload, _: Client| {
            match event {
                // `notify_one` keeps a permit, so an answer that beats the waiter is not lost.
                Event::Custom(name) if name == LEFT_CHANNEL => {
                    // The price channel's answer may come first; only the private one counts.
                    let private = is_private_left(&first_arg(payload));
                    if private {
                        left.notify_one()
                    }
                }
                Event::Custom(name) => sink.record(name, first_arg(payload)),
                _ => {}
            }
            async {}.boxed()
        }
    };
    let connecting = ClientBuilder::new(url)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .reconnect_on_disconnect(false)
        .on(Event::Connect, on_connect)
        .on(Event::Close, on_close)
        .on(Event::Error, on_error)
        .on_any(on_any)
        .connect();
    // A stalled handshake (TCP accepted, nothing answered) must not hold up a stop; the
    // supervisor owns the attempt's deadline and stops us when it passes.
    let connected = tokio::select! {
        c = connecting => c,
        _ = &mut stop => return,
    };
    let client = match connected {
        Ok(c) => c,
        Err(e) => return sink.signal(Signal::Closed(format!("connect failed: {e}"))),
    };
    let mut watchdog = tokio::time::interval(WATCHDOG);
    loop {
        tokio::select! {
            _ = &mut stop => {
                if joined.load(Ordering::SeqCst) {
                    leave(&client, &left, prices).await;
                }
                let _ = tokio::time::timeout(DISCONNECT_SEND, client.disconnect()).await;
                return;
            }
            _ = watchdog.tick() => {
                // rust_socketio ends its reader task silently when the transport closes.
                if tokio::runtime::Handle::current().metrics().num_alive_tasks() == 0 {
                    return sink.signal(Signal::Closed("transport closed".into()));
                }
            }
        }
    }
}

/// Emits `leave` and waits (bounded) for the exchange's `Left Channel`, so the disconnect that
/// follows cannot overtake it.
async fn leave(client: &Client, left: &Notify, prices: bool) {
    // The price channel first (its answer is not waited for), then the private one.
    let sent = tokio::time::timeout(LEAVE_SEND, async {
        if prices {
            client.emit("leave", prices_channel()).await?;
        }
        client
            .emit("leave", json!({"channelName": "coindcx"}))
            .await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        log::debug!(target: "upstream", "leave not sent; disconnecting");
        return;
    }
    if tokio::time::timeout(LEFT_CHANNEL_WAIT, left.notified())
        .await
        .is_err()
    {
        log::debug!(target: "upstream", "no `{LEFT_CHANNEL}` within {} ms; disconnecting", LEFT_CHANNEL_WAIT.as_millis());
    }
}

#[allow(deprecated)]
fn first_arg(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut args) if !args.is_empty() => args.swap_remove(0),
        Payload::Text(_) => Value::Null,
        Payload::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Payload::Binary(_) => Value::Null,
    }
}

#[allow(deprecated)]
fn payload_text(payload: &Payload) -> String {
    match payload {
        Payload::Text(args) => args
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        Payload::String(s) => s.clone(),
        Payload::Binary(b) => format!("<{} binary bytes>", b.len()),
    }
}
