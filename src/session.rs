//! One browser WebSocket: a single `select!` loop over hub frames, client frames, the hub's
//! close signal and a heartbeat tick.
//!
//! actix-ws does little for us: no pong, no close reply, no heartbeat, and `session.text()`
//! waits on a fixed 32-message channel. So every write here also watches the hub's close
//! signal (a client that stops reading fills its hub queue, gets evicted, and must not keep
//! this task stuck), and every close is bounded by a timeout.

use std::time::Duration;

use actix_ws::{AggregatedMessage, CloseCode, CloseReason as WsCloseReason, Session};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::hub::frame::{hub_frame, Frame};
use crate::hub::{CloseReason, HubHandle, Joined, Resume};

/// Client frames larger than this close the socket (SPEC §6).
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;
/// More client frames than this within one second close the socket.
pub const MAX_FRAMES_PER_SECOND: u32 = 20;
const WS_PING_EVERY: Duration = Duration::from_secs(15);
/// No frame at all from the client for this long (it answers pings): it is gone.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
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

enum Exit {
    /// Close with this code and reason.
    Close(CloseReason),
    /// The peer is gone or closed first: nothing more to send.
    Gone,
}

/// Runs one client until it leaves or is closed. `release` runs when the session ends.
/// `expires` is when the client's signed token runs out (closed with 1008 "token expired").
pub async fn run(
    hub: HubHandle,
    mut session: Session,
    stream: actix_ws::MessageStream,
    resume: Option<Resume>,
    expires: Option<Instant>,
    release: impl FnOnce(),
) {
    let Some(joined) = hub.join(resume).await else {
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            session.close(Some(ws_reason(crate::hub::GOING_AWAY))),
        )
        .await;
        release();
        return;
    };
    let client_id = joined.client_id;
    let exit = serve(&hub, &mut session, stream, joined, expires).await;
    hub.leave(client_id).await;
    if let Exit::Close(reason) = exit {
        // Slow consumers are counted by the hub when it evicts them; the client's own close and
        // shutdown are not the hub's decision about this client.
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
    release();
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
        mut close,
        ..
    } = joined;
    let epoch = hub.status.epoch.clone();
    let mut stream = stream
        .max_frame_size(MAX_CLIENT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_FRAME);
    for frame in initial {
        if let Some(exit) = send(session, frame, &mut close).await {
            return exit;
        }
    }
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut window_start = Instant::now();
    let mut window_count = 0u32;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next_ws_ping = Instant::now() + WS_PING_EVERY;
    loop {
        tokio::select! {
            biased;
            reason = &mut close => {
                return match reason {
                    Ok(reason) if reason.code == 1001 => {
                        // Shutting down: deliver what is queued (the notice), then close.
                        let deadline = Instant::now() + CLOSE_TIMEOUT;
                        while let Ok(frame) = frames.try_recv() {
                            if tokio::time::timeout_at(deadline, session.text(frame)).await.is_err() {
                                break;
                            }
                        }
                        Exit::Close(reason)
                    }
                    Ok(reason) => Exit::Close(reason),
                    Err(_) => Exit::Close(crate::hub::GOING_AWAY),
                };
            }
            _ = sleep_until_opt(expires) => return Exit::Close(TOKEN_EXPIRED),
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if let Some(exit) = send(session, frame, &mut close).await {
                        return exit;
                    }
                    last_sent = Instant::now();
                }
                None => return Exit::Close(crate::hub::GOING_AWAY),
            },
            msg = stream.next() => {
                last_heard = Instant::now();
                if last_heard.duration_since(window_start) >= Duration::from_secs(1) {
                    window_start = last_heard;
                    window_count = 0;
                }
                window_count += 1;
                if window_count > MAX_FRAMES_PER_SECOND {
                    return Exit::Close(TOO_MANY_FRAMES);
                }
                let reply = match msg {
                    None => return Exit::Gone,
                    Some(Err(_)) => return Exit::Close(BAD_FRAME),
                    Some(Ok(AggregatedMessage::Binary(_))) => return Exit::Close(BINARY),
                    Some(Ok(AggregatedMessage::Close(_))) => return Exit::Close(BYE),
                    Some(Ok(AggregatedMessage::Ping(payload))) => {
                        if session.pong(&payload).await.is_err() {
                            return Exit::Gone;
                        }
                        None
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => None,
                    Some(Ok(AggregatedMessage::Text(text))) => Some(answer(&epoch, &text)),
                };
                if let Some(frame) = reply {
                    if let Some(exit) = send(session, frame, &mut close).await {
                        return exit;
                    }
                    last_sent = Instant::now();
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if now.duration_since(last_heard) > CLIENT_TIMEOUT {
                    return Exit::Close(PING_TIMEOUT);
                }
                if now >= next_ws_ping {
                    next_ws_ping = now + WS_PING_EVERY;
                    if session.ping(b"hub").await.is_err() {
                        return Exit::Gone;
                    }
                }
                if now.duration_since(last_sent) >= APP_PING_AFTER {
                    if let Some(exit) = send(session, hub_frame(&epoch, "ping", json!({})), &mut close).await {
                        return exit;
                    }
                    last_sent = now;
                }
            }
        }
    }
}

/// Writes one frame unless the hub closes this client first.
async fn send(
    session: &mut Session,
    frame: Frame,
    close: &mut oneshot::Receiver<CloseReason>,
) -> Option<Exit> {
    tokio::select! {
        biased;
        reason = close => Some(Exit::Close(reason.unwrap_or(crate::hub::GOING_AWAY))),
        sent = session.text(frame) => sent.err().map(|_| Exit::Gone),
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn ws_reason(reason: CloseReason) -> WsCloseReason {
    WsCloseReason {
        code: CloseCode::from(reason.code),
        description: Some(reason.reason.to_string()),
    }
}
