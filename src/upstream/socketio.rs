//! [`Transport`] over `rust_socketio` 0.6 (async, Engine.IO 4, websocket only).
//!
//! Each connection runs on its own OS thread with its own single-threaded tokio runtime.
//! `rust_socketio`'s `disconnect()` leaves the WebSocket open for ~25 s and its reader task
//! would keep going, so closing a connection means dropping that runtime: every task and socket
//! it owns is gone at once, and no reconnect attempt can survive. Its own reconnect is off; the
//! supervisor owns the policy.

use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{ConnSink, Connection, Signal, Transport};
use crate::signing::join_signature;

/// How often the connection checks that the client's reader task is still alive.
const WATCHDOG: Duration = Duration::from_millis(100);

pub struct SocketIoTransport {
    url: String,
    api_key: String,
    api_secret: String,
}

impl SocketIoTransport {
    pub fn new(url: &str, api_key: &str, api_secret: &str) -> Self {
        SocketIoTransport {
            url: url.to_string(),
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
        }
    }
}

impl Transport for SocketIoTransport {
    fn open(&self, sink: ConnSink) -> Box<dyn Connection> {
        let (stop_tx, stop_rx) = oneshot::channel();
        let url = self.url.clone();
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
                runtime.block_on(run(url, join, thread_sink, stop_rx));
                // Dropping the runtime here aborts the reader task and closes the socket.
                runtime.shutdown_timeout(Duration::from_millis(100));
            });
        match spawned {
            Ok(thread) => Box::new(SocketIoConnection {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(e) => {
                sink.signal(Signal::Closed(format!("thread: {e}")));
                Box::new(SocketIoConnection {
                    stop: None,
                    thread: None,
                })
            }
        }
    }
}

struct SocketIoConnection {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Connection for SocketIoConnection {
    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take();
        async move {
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
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

async fn run(url: String, join: Value, sink: ConnSink, mut stop: oneshot::Receiver<()>) {
    let on_connect = {
        let sink = sink.clone();
        move |_: Payload, client: Client| {
            let sink = sink.clone();
            let join = join.clone();
            async move {
                // Only now has the server acknowledged the namespace; an earlier emit is lost.
                match client.emit("join", join).await {
                    Ok(()) => sink.signal(Signal::Joined),
                    Err(e) => sink.signal(Signal::Closed(format!("join not sent: {e}"))),
                }
            }
            .boxed()
        }
    };
    let on_close = {
        let sink = sink.clone();
        move |_: Payload, _: Client| {
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
        move |event: Event, payload: Payload, _: Client| {
            if let Event::Custom(name) = event {
                sink.record(name, first_arg(payload));
            }
            async {}.boxed()
        }
    };
    let connected = ClientBuilder::new(url)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .reconnect_on_disconnect(false)
        .on(Event::Connect, on_connect)
        .on(Event::Close, on_close)
        .on(Event::Error, on_error)
        .on_any(on_any)
        .connect()
        .await;
    let client = match connected {
        Ok(c) => c,
        Err(e) => return sink.signal(Signal::Closed(format!("connect failed: {e}"))),
    };
    let mut watchdog = tokio::time::interval(WATCHDOG);
    loop {
        tokio::select! {
            _ = &mut stop => {
                let leave = client.emit("leave", json!({"channelName": "coindcx"}));
                let _ = tokio::time::timeout(Duration::from_millis(300), leave).await;
                let _ = tokio::time::timeout(Duration::from_millis(200), client.disconnect()).await;
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
