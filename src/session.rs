//! One browser WebSocket: a single `select!` loop over hub batches, client frames and the hub's
//! close signal. The session has no timer of its own: the hub's heartbeat sweep (an empty batch
//! every [`crate::hub::HEARTBEAT_SWEEP`]) drives pings and the ping timeout.
//!
//! actix-ws does little for us: no pong, no close reply, no heartbeat, and every write
//! (`text`, `ping`, `pong`) waits on a fixed 32-message channel that only drains as fast as the
//! client reads. So every write here is bounded: it also watches the hub's close signal, the
//! heartbeat deadline (the client must have been heard from within [`CLIENT_TIMEOUT`]) and the
//! token expiry. A client that stops reading also stops answering pings, so it is closed within
//! the heartbeat deadline even on a quiet stream, and every close is bounded by a timeout.
//! Its slots (the connection count, the hub's client table) are released by `Drop` guards, so a
//! cancelled or panicking session frees them too.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_ws::{
    AggregatedMessage, CloseCode, CloseReason as WsCloseReason, ProtocolError, Session,
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::hub::frame::{hub_frame, Batch, Frame};
use crate::hub::{CloseReason, HubHandle, Joined, Resume};

/// Client frames larger than this close the socket (SPEC §6).
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;
/// More client frames than this within one second close the socket.
pub const MAX_FRAMES_PER_SECOND: u32 = 20;
const WS_PING_EVERY: Duration = Duration::from_secs(15);
/// No frame at all from the client for this long (it answers pings): it is gone.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
/// After this much silence towards the client, send `{"type":"ping"}` like the original bridge.
const APP_PING_AFTER: Duration = Duration::from_secs(30);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const SLOW_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

const fn policy(reason: &'static str, metric: &'static str) -> CloseReason {
    CloseReason {
        code: 1008,
        reason,
        metric,
    }
}
const TOKEN_EXPIRED: CloseReason = policy("token expired", "token_expired");
const TOO_MANY_FRAMES: CloseReason = policy("too many frames", "rate_limit");
const BAD_FRAME: CloseReason = policy("frame too large or malformed", "bad_frame");
const BINARY: CloseReason = policy("binary frames not accepted", "binary");
const PING_TIMEOUT: CloseReason = CloseReason {
    code: 1011,
    reason: "ping timeout",
    metric: "ping_timeout",
};
/// The client closed first; we answer with a normal close (not counted).
const BYE: CloseReason = CloseReason {
    code: 1000,
    reason: "bye",
    metric: "client_close",
};
/// The label under which a reset, an EOF or a vanished peer is counted: not a policy close.
pub const GONE_METRIC: &str = "gone";

enum Exit {
    /// Close with this code and reason.
    Close(CloseReason),
    /// The peer is gone (TCP reset, EOF, connection dropped): nothing more to send.
    Gone,
}

/// Runs a closure once when dropped: the session's reserved slots (connection count, per-IP
/// count) are released however the session ends, also when its task is cancelled or panics.
pub struct Release<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Release<F> {
    pub fn new(f: F) -> Self {
        Release(Some(f))
    }
}

impl<F: FnOnce()> Drop for Release<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// The client's place in the hub's table, given back when dropped (cancel and panic included).
struct Membership {
    hub: HubHandle,
    client_id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave_now(self.client_id);
    }
}

/// Runs one client until it leaves or is closed. `release` is dropped when the session ends.
/// `expires` is when the client's signed token runs out (closed with 1008 "token expired").
pub async fn run<F: FnOnce()>(
    hub: HubHandle,
    mut session: Session,
    stream: actix_ws::MessageStream,
    resume: Option<Resume>,
    expires: Option<Instant>,
    release: Release<F>,
) {
    let _release = release;
    let Some(joined) = hub.join(resume).await else {
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            session.close(Some(ws_reason(crate::hub::GOING_AWAY))),
        )
        .await;
        return;
    };
    let membership = Membership {
        hub: hub.clone(),
        client_id: joined.client_id,
    };
    let exit = serve(&hub, &mut session, stream, joined, expires).await;
    // Leave before the (bounded) close, so the hub stops counting this client at once.
    drop(membership);
    match exit {
        Exit::Gone => {
            hub.metrics
                .evictions
                .with_label_values(&[GONE_METRIC])
                .inc();
        }
        Exit::Close(reason) => {
            // Slow consumers are counted by the hub when it evicts them; the client's own close
            // and shutdown are not the hub's decision about this client.
            if ![crate::hub::SLOW_CONSUMER, crate::hub::GOING_AWAY, BYE].contains(&reason) {
                hub.metrics
                    .evictions
                    .with_label_values(&[reason.metric])
                    .inc();
            }
            // An evicted client is behind by a full queue: give it longer to read up to the close.
            let wait = if reason == crate::hub::SLOW_CONSUMER {
                SLOW_CLOSE_TIMEOUT
            } else {
                CLOSE_TIMEOUT
            };
            let _ = tokio::time::timeout(wait, session.close(Some(ws_reason(reason)))).await;
        }
    }
}

/// What every write races against: the hub's close signal, the heartbeat deadline and the
/// token expiry.
struct Guards {
    close: oneshot::Receiver<CloseReason>,
    last_heard: Instant,
    expires: Option<Instant>,
}

impl Guards {
    /// The first moment this client must be closed without the hub's word, and why.
    fn deadline(&self) -> (Instant, CloseReason) {
        let heartbeat = self.last_heard + CLIENT_TIMEOUT;
        match self.expires {
            Some(at) if at <= heartbeat => (at, TOKEN_EXPIRED),
            _ => (heartbeat, PING_TIMEOUT),
        }
    }

    /// Runs one write on the socket unless the hub closes the client, the heartbeat deadline
    /// passes or the token expires first. The write is polled first: when actix-ws's channel
    /// has room (the usual case) it completes without a timer being built or the close
    /// signal being polled; only a write that has to wait arms the (boxed) deadline timer.
    async fn bounded<Fut>(&mut self, write: Fut) -> Result<(), Exit>
    where
        Fut: std::future::Future<Output = Result<(), actix_ws::Closed>>,
    {
        let mut write = std::pin::pin!(write);
        if let Poll::Ready(sent) = futures_util::poll!(write.as_mut()) {
            return sent.map_err(|_| Exit::Gone);
        }
        let (at, why) = self.deadline();
        let deadline = Box::pin(tokio::time::sleep_until(at));
        tokio::select! {
            biased;
            sent = write => sent.map_err(|_| Exit::Gone),
            reason = &mut self.close => Err(Exit::Close(reason.unwrap_or(crate::hub::GOING_AWAY))),
            _ = deadline => Err(Exit::Close(why)),
        }
    }
}

async fn serve(
    hub: &HubHandle,
    session: &mut Session,
    stream: actix_ws::MessageStream,
    joined: Joined,
    expires: Option<Instant>,
) -> Exit {
    let Joined {
        initial,
        mut frames,
        close,
        ..
    } = joined;
    let mut guards = Guards {
        close,
        last_heard: Instant::now(),
        expires,
    };
    let epoch = hub.status.epoch.clone();
    let mut stream = stream
        .max_frame_size(MAX_CLIENT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_FRAME);
    for frame in initial {
        if let Err(exit) = guards.bounded(session.text(frame)).await {
            return exit;
        }
    }
    let mut last_sent = Instant::now();
    let mut window_start = Instant::now();
    let mut window_count = 0u32;
    let mut next_ws_ping = Instant::now() + WS_PING_EVERY;
    // Only a client with a signed token has a timer of its own (boxed: see `bounded`).
    let mut expiry = expires.map(|at| Box::pin(tokio::time::sleep_until(at)));
    loop {
        tokio::select! {
            biased;
            reason = &mut guards.close => {
                return match reason {
                    Ok(reason) if reason.code == 1001 => {
                        // Shutting down: deliver what is queued (the notice), then close.
                        let deadline = Instant::now() + CLOSE_TIMEOUT;
                        while let Ok(batch) = frames.try_recv() {
                            if tokio::time::timeout_at(deadline, write_all(session, &batch)).await.is_err() {
                                break;
                            }
                        }
                        Exit::Close(reason)
                    }
                    Ok(reason) => Exit::Close(reason),
                    Err(_) => Exit::Close(crate::hub::GOING_AWAY),
                };
            }
            _ = sleep_opt(&mut expiry) => return Exit::Close(TOKEN_EXPIRED),
            batch = frames.recv() => match batch {
                Some(batch) if batch.is_empty() => {
                    // The hub's heartbeat sweep.
                    let now = Instant::now();
                    if now.duration_since(guards.last_heard) > CLIENT_TIMEOUT {
                        return Exit::Close(PING_TIMEOUT);
                    }
                    if now >= next_ws_ping {
                        next_ws_ping = now + WS_PING_EVERY;
                        if let Err(exit) = guards.bounded(session.ping(b"hub")).await {
                            return exit;
                        }
                    }
                    if now.duration_since(last_sent) >= APP_PING_AFTER {
                        let ping = hub_frame(&epoch, "ping", json!({}));
                        if let Err(exit) = guards.bounded(session.text(ping)).await {
                            return exit;
                        }
                        last_sent = now;
                    }
                }
                Some(batch) => {
                    // The whole batch in one bounded write: the close signal and the deadlines
                    // are watched once per batch, not per frame.
                    if let Err(exit) = guards.bounded(write_all(session, &batch)).await {
                        return exit;
                    }
                    last_sent = Instant::now();
                }
                None => return Exit::Close(crate::hub::GOING_AWAY),
            },
            msg = stream.next() => {
                guards.last_heard = Instant::now();
                if guards.last_heard.duration_since(window_start) >= Duration::from_secs(1) {
                    window_start = guards.last_heard;
                    window_count = 0;
                }
                window_count += 1;
                if window_count > MAX_FRAMES_PER_SECOND {
                    return Exit::Close(TOO_MANY_FRAMES);
                }
                let reply = match msg {
                    None => return Exit::Gone,
                    Some(Err(e)) if peer_gone(&e) => return Exit::Gone,
                    Some(Err(_)) => return Exit::Close(BAD_FRAME),
                    Some(Ok(AggregatedMessage::Binary(_))) => return Exit::Close(BINARY),
                    Some(Ok(AggregatedMessage::Close(_))) => return Exit::Close(BYE),
                    Some(Ok(AggregatedMessage::Ping(payload))) => {
                        if let Err(exit) = guards.bounded(session.pong(&payload)).await {
                            return exit;
                        }
                        None
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => None,
                    Some(Ok(AggregatedMessage::Text(text))) => Some(answer(&epoch, &text)),
                };
                if let Some(frame) = reply {
                    if let Err(exit) = guards.bounded(session.text(frame)).await {
                        return exit;
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }
}

/// Writes every frame of a batch, in order (each a reference count, no copy).
async fn write_all(session: &mut Session, batch: &Batch) -> Result<(), actix_ws::Closed> {
    for frame in batch.iter() {
        session.text(frame.clone()).await?;
    }
    Ok(())
}

/// Whether a stream error means the peer went away (TCP reset, EOF mid-frame, connection
/// dropped) rather than sent something we refuse. actix-ws wraps transport errors, which
/// arrive as a [`PayloadError`], in `ProtocolError::Io`.
fn peer_gone(e: &ProtocolError) -> bool {
    match e {
        ProtocolError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<PayloadError>().is_some()),
        _ => false,
    }
}

/// The reply to one client text frame: `pong` for a ping, else one `error` frame.
pub fn answer(epoch: &str, text: &str) -> Frame {
    let is_ping = text.trim() == "ping"
        || serde_json::from_str::<Value>(text)
            .ok()
            .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("ping"));
    if is_ping {
        hub_frame(epoch, "pong", json!({}))
    } else {
        hub_frame(
            epoch,
            "error",
            json!({"message": "unknown message; send \"ping\" or {\"type\":\"ping\"}"}),
        )
    }
}

async fn sleep_opt(sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

fn ws_reason(reason: CloseReason) -> WsCloseReason {
    WsCloseReason {
        code: CloseCode::from(reason.code),
        description: Some(reason.reason.to_string()),
    }
}
