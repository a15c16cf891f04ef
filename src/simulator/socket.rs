//! The simulator's Socket.IO side: connection gate, `join` / `leave`, and the publisher.
//!
//! Behaves like `stream.coindcx.com` (PROTOCOL.md §1–4): a `join` with the right key and
//! signature puts the socket in room `coindcx`, which is where every event goes; a wrong one
//! is answered ~100 ms later with a server disconnect (`41`) and no reason; a `join` without
//! the auth fields is silently ignored; unknown events are ignored. The public price channel
//! `currentPrices@futures@rt` is joined without credentials.

use super::Shared;
use crate::signing::{constant_time_eq, join_signature};
use serde_json::Value;
use socketioxide::extract::{Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The room every authenticated socket joins and every event is sent to.
pub const ROOM: &str = "coindcx";
/// The public price channel (no credentials); see [`super::prices`].
pub const PRICES_ROOM: &str = "currentPrices@futures@rt";
/// Delay between a rejected `join` and the server's disconnect (observed ~100 ms).
const BAD_JOIN_DISCONNECT: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not accepting connections")
    }
}

/// Register the default namespace on `io`.
///
/// The `join` / `leave` handlers are registered in the connect *middleware*: socketioxide
/// awaits it before it sends the CONNECT packet, whereas it spawns the connect handler after
/// sending it, so a client that emits `join` as soon as it sees CONNECT (as the hub does)
/// could otherwise reach the server before the handler exists and be silently ignored.
pub fn install(io: &SocketIo, shared: Arc<Shared>) {
    let gate = move |s: SocketRef| {
        let open = shared.accepting.load(Ordering::SeqCst);
        if open {
            shared.connects.fetch_add(1, Ordering::Relaxed);
            let on_join = {
                let shared = shared.clone();
                move |s: SocketRef, Data(arg): Data<Value>| {
                    let shared = shared.clone();
                    async move { join(&shared, s, &arg) }
                }
            };
            s.on("join", on_join);
            // CoinDCX answers `leave` with an undocumented `Left Channel` (PROTOCOL.md §3).
            s.on(
                "leave",
                |s: SocketRef, TryData(arg): TryData<Value>| async move {
                    let prices = arg.ok().is_some_and(|a| {
                        a.get("channelName").and_then(Value::as_str) == Some(PRICES_ROOM)
                    });
                    let room = if prices { PRICES_ROOM } else { ROOM };
                    s.leave(room);
                    let _ = s.emit("Left Channel", &serde_json::json!({ "channelName": room }));
                },
            );
        }
        async move {
            if open {
                Ok(())
            } else {
                Err(Refused)
            }
        }
    };
    io.ns("/", (|| async {}).with(gate));
}

fn join(shared: &Shared, s: SocketRef, arg: &Value) {
    let field = |k: &str| arg.get(k).and_then(Value::as_str);
    if field("channelName") == Some(PRICES_ROOM) {
        // Public: no credentials needed.
        s.join(PRICES_ROOM);
        return;
    }
    let (Some(key), Some(signature)) = (field("apiKey"), field("authSignature")) else {
        return; // the exchange ignores a join without credentials
    };
    let channel_ok = field("channelName") == Some(ROOM);
    let key_ok = constant_time_eq(key, &shared.cfg.api_key);
    let sig_ok = constant_time_eq(signature, &join_signature(&shared.cfg.api_secret));
    if channel_ok && key_ok && sig_ok {
        shared.joins.fetch_add(1, Ordering::Relaxed);
        s.join(ROOM);
        log::info!(target: "simulator", "socket {} joined", s.id);
    } else {
        shared.bad_joins.fetch_add(1, Ordering::Relaxed);
        log::info!(target: "simulator", "socket {} sent a bad join; disconnecting", s.id);
        tokio::spawn(async move {
            tokio::time::sleep(BAD_JOIN_DISCONNECT).await;
            let _ = s.disconnect();
        });
    }
}

/// Send queued `(event, argument)` pairs to the room, in queue order, until the queue closes.
pub async fn publisher(io: SocketIo, mut rx: mpsc::UnboundedReceiver<(String, Value)>) {
    while let Some((event, arg)) = rx.recv().await {
        if let Err(e) = io.to(ROOM).emit(&event, &arg).await {
            log::debug!(target: "simulator", "emit {event} failed for some sockets: {e}");
        }
    }
}
