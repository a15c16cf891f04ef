//! Our own Socket.IO client on `tokio-tungstenite`, websocket transport only, for servers that
//! speak Engine.IO 3 (socket.io 2) — `rust_socketio` 0.6 speaks only Engine.IO 4 and never
//! pings, so a socket.io 2 server drops it every pingInterval + pingTimeout (~45 s).
//!
//! It speaks both revisions, as the server's open packet says ([`super::packet`]):
//! - EIO3: the server sends `40` unprompted (a client `40` for `/` would make it close the
//!   socket); the client sends `2` every `pingInterval` and expects `3` within `pingTimeout`.
//! - EIO4: the client sends `40` and waits for `40{"sid":..}`; the server pings `2`, the client
//!   answers `3`; no ping within `pingInterval + pingTimeout` means the connection is dead.
//!
//! [`handshake`] opens the WebSocket and reads the open packet (also the `auto` probe),
//! [`session`] runs the rest on it as a [`TaskConnection`]; [`super::auto`] is the
//! [`super::Transport`] that starts them (`COINDCX_EIO=3`, or `auto` against Engine.IO 3).
//!
//! Every wait is bounded: the attempt (TCP, TLS, WebSocket, open packet, namespace connect) has
//! [`ATTEMPT_DEADLINE`] and watches the stop signal, every send has `SEND_BOUND`, and closing
//! (`leave`, the `Left Channel` answer, `41`, WebSocket close) has its own small bounds.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::packet::{self, Eio, Open, Packet};
use super::{is_private_left, prices_channel, ConnSink, Connection, Signal};
use crate::signing::join_signature;

/// TCP, TLS, WebSocket upgrade, open packet and namespace connect, all together.
pub const ATTEMPT_DEADLINE: Duration = Duration::from_secs(10);
/// The supervisor gives every attempt the same 10 s and reports why; ours ends this much later,
/// as a backstop, so the two never race to name the failure.
const BACKSTOP: Duration = Duration::from_millis(500);

/// When an attempt starting now gives up by itself.
pub fn attempt_deadline() -> Instant {
    Instant::now() + ATTEMPT_DEADLINE + BACKSTOP
}
/// A send that cannot complete by then means the server stopped reading: the connection is dead.
const SEND_BOUND: Duration = Duration::from_secs(5);
/// How long `leave` and the namespace disconnect may take to be written while closing.
const CLOSING_SEND: Duration = Duration::from_millis(300);
/// How long `close` waits for the exchange's `Left Channel` answer to `leave`.
const LEAVE_WAIT: Duration = Duration::from_secs(1);
/// How long `close` waits for the server's WebSocket close reply.
const WS_CLOSE_WAIT: Duration = Duration::from_millis(500);
/// The most `Connection::close` waits for the connection task before aborting it (the
/// `Connection` contract: about 2 s at most).
const CLOSE_BOUND: Duration = Duration::from_secs(2);
/// The exchange's answer to `leave` (PROTOCOL.md §3): not a record, never sent to the hub.
const LEFT_CHANNEL: &str = "Left Channel";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EioError {
    #[error("no Engine.IO open packet within {} s", ATTEMPT_DEADLINE.as_secs())]
    Timeout,
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error("connection closed before the open packet")]
    ClosedEarly,
    #[error(transparent)]
    Packet(#[from] packet::PacketError),
}

/// `{ws_url}/socket.io/?EIO=4&transport=websocket`, as rust_socketio builds it (http→ws,
/// https→wss). A socket.io 2 server ignores `EIO=4` and answers in Engine.IO 3.
pub fn socket_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{ws}/socket.io/?EIO=4&transport=websocket")
}

/// The `join` payload CoinDCX expects (PROTOCOL.md §3).
pub fn join_payload(api_key: &str, api_secret: &str) -> Value {
    json!({
        "channelName": "coindcx",
        "authSignature": join_signature(api_secret),
        "apiKey": api_key,
    })
}

/// Opens the WebSocket and reads the open packet, by `deadline`.
pub async fn handshake(base_url: &str, deadline: Instant) -> Result<(Ws, Open), EioError> {
    let url = socket_url(base_url);
    timeout_at(deadline, async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| EioError::WebSocket(e.to_string()))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok((ws, packet::parse_open(&text)?)),
                Some(Ok(Message::Close(_))) | None => return Err(EioError::ClosedEarly),
                Some(Ok(_)) => continue, // WebSocket pings are answered by tungstenite
                Some(Err(e)) => return Err(EioError::WebSocket(e.to_string())),
            }
        }
    })
    .await
    .unwrap_or(Err(EioError::Timeout))
}

/// Closes a WebSocket that was only opened to read its open packet (no namespace connect was
/// sent, so a socket.io 4 server never counts it as a connection). Bounded.
pub async fn discard(mut ws: Ws) {
    let _ = timeout(WS_CLOSE_WAIT, ws.close(None)).await;
}

/// A connection that is one tokio task: `close` tells it to stop and waits for it, bounded.
pub struct TaskConnection {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TaskConnection {
    /// Spawns `run` with the stop signal (fired by `close`, or by dropping the connection).
    pub fn spawn<F, Fut>(run: F) -> Box<dyn Connection>
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stop_rx) = oneshot::channel();
        Box::new(TaskConnection {
            stop: Some(stop),
            task: tokio::spawn(run(stop_rx)),
        })
    }
}

impl Connection for TaskConnection {
    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        async move {
            let abort = self.task.abort_handle();
            if timeout(CLOSE_BOUND, &mut self.task).await.is_err() {
                log::warn!(target: "upstream", "connection did not close within {} s; dropped", CLOSE_BOUND.as_secs());
                abort.abort();
            }
        }
        .boxed()
    }
}

/// Why a session ended by itself.
type Ended = String;

/// One Socket.IO session over an opened WebSocket: namespace connect (by `deadline`), `join`,
/// then events and heartbeat until the server goes away or `stop` fires.
pub async fn session(
    mut ws: Ws,
    open: Open,
    join: Value,
    prices: bool,
    sink: ConnSink,
    mut stop: oneshot::Receiver<()>,
    deadline: Instant,
) {
    log::debug!(target: "upstream", "Engine.IO {} session {} (ping {:?}/{:?})", open.eio.number(), open.sid, open.ping_interval, open.ping_timeout);
    let mut beat = Heartbeat::new(&open);
    let connected = tokio::select! {
        r = timeout_at(deadline, connect_namespace(&mut ws, &open, &mut beat)) => {
            r.unwrap_or_else(|_| Err(format!("no Socket.IO connect within {} s", ATTEMPT_DEADLINE.as_secs())))
        }
        _ = &mut stop => return discard(ws).await,
    };
    if let Err(why) = connected {
        discard(ws).await;
        return sink.signal(Signal::Closed(why));
    }
    // Only now has the server acknowledged the namespace; an earlier emit is lost.
    if let Err(why) = send(&mut ws, &packet::event("join", &join)).await {
        return sink.signal(Signal::Closed(format!("join not sent: {why}")));
    }
    // The public price channel right after the private one (no signature).
    if prices {
        if let Err(why) = send(&mut ws, &packet::event("join", &prices_channel())).await {
            return sink.signal(Signal::Closed(format!("price join not sent: {why}")));
        }
    }
    sink.signal(Signal::Joined);
    let ended = tokio::select! {
        why = stream(&mut ws, &mut beat, &sink) => why,
        _ = &mut stop => return leave(ws, &mut beat, prices).await,
    };
    discard(ws).await;
    sink.signal(Signal::Closed(ended));
}

/// EIO3: wait for the server's unprompted `40`. EIO4: send `40`, wait for `40{"sid":..}`.
async fn connect_namespace(ws: &mut Ws, open: &Open, beat: &mut Heartbeat) -> Result<(), Ended> {
    if open.eio == Eio::V4 {
        send(ws, packet::CONNECT).await?;
    }
    loop {
        match next_packet(ws, beat).await? {
            Packet::Connect => return Ok(()),
            Packet::ConnectError(why) => {
                return Err(format!("server refused the Socket.IO connect: {why}"))
            }
            Packet::Close | Packet::Disconnect => {
                return Err("server closed before the Socket.IO connect".into())
            }
            _ => {}
        }
    }
}

/// Delivers events until the connection ends; returns why.
async fn stream(ws: &mut Ws, beat: &mut Heartbeat, sink: &ConnSink) -> Ended {
    loop {
        match next_packet(ws, beat).await {
            Err(why) => return why,
            Ok(Packet::Event { name, .. }) if name == LEFT_CHANNEL => {}
            Ok(Packet::Event { name, arg }) => sink.record(name, arg),
            Ok(Packet::Disconnect) => return "server disconnected".into(),
            Ok(Packet::Close) => return "server closed the Engine.IO session".into(),
            Ok(Packet::ConnectError(why)) => return format!("server error: {why}"),
            Ok(_) => {}
        }
    }
}

/// `leave`, then (after `Left Channel`, or [`LEAVE_WAIT`]) `41` and a WebSocket close: a
/// socket.io 4 server drops an event that arrives together with the disconnect.
async fn leave(mut ws: Ws, beat: &mut Heartbeat, prices: bool) {
    // The price channel first (its answer is not waited for), then the private one.
    let leave = packet::event("leave", &json!({"channelName": "coindcx"}));
    let prices_left = if prices {
        let prices = packet::event("leave", &prices_channel());
        send_within(&mut ws, &prices, CLOSING_SEND).await
    } else {
        Ok(())
    };
    let sent = match prices_left {
        Ok(()) => send_within(&mut ws, &leave, CLOSING_SEND).await,
        Err(e) => Err(e),
    };
    if sent.is_ok() {
        let answered = timeout(LEAVE_WAIT, async {
            loop {
                match next_packet(&mut ws, beat).await {
                    Ok(Packet::Event { name, arg })
                        if name == LEFT_CHANNEL && is_private_left(&arg) =>
                    {
                        return true
                    }
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        if !matches!(answered, Ok(true)) {
            log::debug!(target: "upstream", "no Left Channel within {} ms", LEAVE_WAIT.as_millis());
        }
        let _ = send_within(&mut ws, packet::DISCONNECT, CLOSING_SEND).await;
    }
    let _ = timeout(WS_CLOSE_WAIT, async {
        let _ = ws.close(None).await;
        // Drain to the server's close reply so the TCP connection ends cleanly.
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Who pings, and when the connection counts as dead.
struct Heartbeat {
    eio: Eio,
    interval: Duration,
    timeout: Duration,
    /// EIO3: when to send the next ping.
    next_ping: Instant,
    /// EIO3: the pong for the ping in flight is due by then. EIO4: the next server ping is.
    due: Option<Instant>,
}

impl Heartbeat {
    fn new(open: &Open) -> Heartbeat {
        let now = Instant::now();
        Heartbeat {
            eio: open.eio,
            interval: open.ping_interval,
            timeout: open.ping_timeout,
            next_ping: now + open.ping_interval,
            due: match open.eio {
                Eio::V3 => None,
                Eio::V4 => Some(now + open.ping_interval + open.ping_timeout),
            },
        }
    }

    /// The next instant something must happen (a ping to send or a deadline that passed).
    fn wake_at(&self) -> Instant {
        match (self.eio, self.due) {
            (Eio::V3, Some(due)) => due.min(self.next_ping),
            (Eio::V3, None) => self.next_ping,
            (Eio::V4, due) => due.unwrap_or(self.next_ping),
        }
    }
}

/// The next useful packet; answers and sends heartbeats on the way. Errors say why the
/// connection is dead.
async fn next_packet(ws: &mut Ws, beat: &mut Heartbeat) -> Result<Packet, Ended> {
    loop {
        let msg = tokio::select! {
            msg = ws.next() => msg,
            _ = tokio::time::sleep_until(beat.wake_at()) => {
                let now = Instant::now();
                if beat.due.is_some_and(|due| now >= due) {
                    return Err(match beat.eio {
                        Eio::V3 => format!("no pong within pingTimeout ({} ms)", beat.timeout.as_millis()),
                        Eio::V4 => format!("no ping within pingInterval + pingTimeout ({} ms)", (beat.interval + beat.timeout).as_millis()),
                    });
                }
                if beat.eio == Eio::V3 && now >= beat.next_ping {
                    send(ws, packet::PING).await?;
                    beat.next_ping = now + beat.interval;
                    if beat.due.is_none() {
                        beat.due = Some(now + beat.timeout);
                    }
                }
                continue;
            }
        };
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!("server closed the websocket ({} {})", f.code, f.reason),
                    None => "server closed the websocket".into(),
                })
            }
            Some(Ok(_)) => continue, // binary attachments, WebSocket pings (tungstenite answers)
            Some(Err(e)) => return Err(format!("transport error: {e}")),
            None => return Err("transport closed".into()),
        };
        match packet::parse(&text) {
            Ok(Packet::Ping) => {
                send(ws, packet::PONG).await?;
                if beat.eio == Eio::V4 {
                    beat.due = Some(Instant::now() + beat.interval + beat.timeout);
                }
            }
            Ok(Packet::Pong) => {
                if beat.eio == Eio::V3 {
                    beat.due = None;
                }
            }
            Ok(p) => return Ok(p),
            Err(e) => log::debug!(target: "upstream", "ignored a packet: {e}"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) -> Result<(), Ended> {
    send_within(ws, text, SEND_BOUND).await
}

async fn send_within(ws: &mut Ws, text: &str, bound: Duration) -> Result<(), Ended> {
    match timeout(bound, ws.send(Message::Text(text.to_string()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!(
            "send blocked for {} ms (server not reading)",
            bound.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_rust_socketio_builds_them() {
        assert_eq!(
            socket_url("https://stream.coindcx.com"),
            "wss://stream.coindcx.com/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url("http://127.0.0.1:9/"),
            "ws://127.0.0.1:9/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url("wss://a.b"),
            "wss://a.b/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn join_payload_is_signed() {
        assert_eq!(
            join_payload("XXXX", "YYYY"),
            json!({
                "channelName": "coindcx",
                "authSignature": "c8f94ab0ff0372da5b20dfa616c8a1abd06341fa2c0ea19559decc4c8485b989",
                "apiKey": "XXXX",
            })
        );
    }

    #[test]
    fn heartbeat_wakes_for_the_right_thing() {
        let open = |eio| Open {
            sid: "s".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            eio,
        };
        let three = Heartbeat::new(&open(Eio::V3));
        // EIO3: nothing is due until the first client ping.
        assert_eq!(three.due, None);
        assert_eq!(three.wake_at(), three.next_ping);
        let four = Heartbeat::new(&open(Eio::V4));
        // EIO4: the server's first ping is due by pingInterval + pingTimeout.
        assert_eq!(four.wake_at(), four.due.unwrap());
        assert_eq!(four.due.unwrap() - four.next_ping, Duration::from_secs(20));
    }
}
