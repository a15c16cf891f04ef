//! One browser WebSocket's session task: it reads the client's frames, holds the deadlines and
//! decides when and why the connection closes. The frames to the client do not pass through
//! here: the hub's batches go straight to the connection's response body ([`crate::ws::Body`]),
//! which also sends the pings on the hub's heartbeat sweep. The session queues its replies
//! (pongs, `error`, the close frame) on the body's [`Link`], so no write here ever waits.
//!
//! One timer per session, re-armed lazily: the heartbeat deadline (the client must have been
//! heard from within [`CLIENT_TIMEOUT`]; it answers the body's pings) or the token expiry,
//! whichever is first. It fires at most every ~30 s per client, and it is what frees a client
//! that stopped reading: then actix never polls the body again, so only the session can act.
//! Every close waits a bounded time for the body to send it. The session's slots (the
//! connection count, the hub's client table) are released by `Drop` guards, so a cancelled or
//! panicking session frees them too.

use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::hub::frame::{hub_frame, Frame};
use crate::hub::{CloseReason, HubHandle};
use crate::ws::{Closing, Incoming, Link, Reader};

/// Client frames larger than this close the socket (SPEC §6).
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;
/// More client frames than this within one second close the socket.
pub const MAX_FRAMES_PER_SECOND: u32 = 20;
/// No frame at all from the client for this long (it answers pings): it is gone.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
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

/// Queued replies beyond this many bytes (a client that sends but never reads): slow consumer.
const MAX_QUEUED_REPLIES: usize = 64 * 1024;

/// The session's side of one connection.
pub struct Conn {
    pub link: Rc<Link>,
    /// Fires when the connection's body is dropped: the connection is gone.
    pub gone: oneshot::Receiver<()>,
    pub reader: Reader,
    /// The socket, to reset a connection that does not take its close in time.
    pub fd: Option<crate::ws::ConnFd>,
}

/// The client's entry in the hub: its id and the hub's close signal.
pub struct Entry {
    pub client_id: u64,
    pub close: oneshot::Receiver<CloseReason>,
}

/// Runs one client until it leaves or is closed. `entry` is `None` when the hub refused the
/// join (shutting down): the body was already told to close. `release` is dropped when the
/// session ends. `expires` is when the client's signed token runs out (1008 "token expired").
pub async fn run<F: FnOnce()>(
    hub: HubHandle,
    mut conn: Conn,
    entry: Option<Entry>,
    expires: Option<Instant>,
    release: Release<F>,
) {
    let _release = release;
    let Some(entry) = entry else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.gone).await;
        return;
    };
    let membership = Membership {
        hub: hub.clone(),
        client_id: entry.client_id,
    };
    let exit = serve(&hub, &mut conn, entry.close, expires).await;
    // Leave before the (bounded) close, so the hub stops counting this client at once.
    drop(membership);
    match exit {
        Exit::Gone => {
            hub.metrics
                .evictions
                .with_label_values(&[GONE_METRIC])
                .inc();
        }
        Exit::Close(closing) => {
            let reason = closing.reason;
            // Slow consumers evicted by the hub are counted there; the client's own close
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
            conn.link.close(closing);
            if tokio::time::timeout(wait, conn.gone).await.is_err() {
                // The client does not read: the body is never polled to send the close.
                // Checked on the dispatcher's thread: the body, so the socket, is alive.
                if let Some(fd) = conn.fd {
                    log::info!(target: "hub", "client does not take its close ({}): connection reset", reason.metric);
                    fd.reset();
                }
            }
        }
    }
}

enum Exit {
    /// Close with this code and reason.
    Close(Closing),
    /// The peer is gone (TCP reset, EOF, connection dropped): nothing more to send.
    Gone,
}

fn now_close(reason: CloseReason) -> Exit {
    Exit::Close(Closing {
        reason,
        drain: false,
    })
}

async fn serve(
    hub: &HubHandle,
    conn: &mut Conn,
    mut close: oneshot::Receiver<CloseReason>,
    expires: Option<Instant>,
) -> Exit {
    let epoch = &hub.status.epoch;
    let mut last_heard = Instant::now();
    // The first moment this client must be closed without the hub's word, and why.
    let deadline = |last_heard: Instant| {
        let heartbeat = last_heard + CLIENT_TIMEOUT;
        match expires {
            Some(at) if at <= heartbeat => (at, TOKEN_EXPIRED),
            _ => (heartbeat, PING_TIMEOUT),
        }
    };
    let mut timer = Box::pin(tokio::time::sleep_until(deadline(last_heard).0));
    let mut window_start = last_heard;
    let mut window_count = 0u32;
    loop {
        tokio::select! {
            biased;
            reason = &mut close => {
                return match reason {
                    // Shutting down: deliver what is queued (the notice), then close.
                    Ok(reason) => Exit::Close(Closing { reason, drain: reason.code == 1001 }),
                    Err(_) => Exit::Close(Closing { reason: crate::hub::GOING_AWAY, drain: true }),
                };
            }
            _ = &mut conn.gone => return Exit::Gone,
            _ = timer.as_mut() => {
                let (at, why) = deadline(last_heard);
                if at <= Instant::now() {
                    return now_close(why);
                }
                timer.as_mut().reset(at);
            }
            msg = conn.reader.next() => {
                last_heard = Instant::now();
                if last_heard.duration_since(window_start) >= Duration::from_secs(1) {
                    window_start = last_heard;
                    window_count = 0;
                }
                window_count += 1;
                if window_count > MAX_FRAMES_PER_SECOND {
                    return now_close(TOO_MANY_FRAMES);
                }
                let queued = match msg {
                    Incoming::Gone => return Exit::Gone,
                    Incoming::Bad(_) => return now_close(BAD_FRAME),
                    Incoming::Binary => return now_close(BINARY),
                    Incoming::Close => return now_close(BYE),
                    Incoming::Ping(payload) => conn.link.send_pong(&payload),
                    Incoming::Pong => 0,
                    Incoming::Text(text) => conn.link.send_text(&answer(epoch, &text)),
                };
                if queued > MAX_QUEUED_REPLIES {
                    // It sends but does not read our replies: nothing bounds that otherwise.
                    hub.metrics
                        .evictions
                        .with_label_values(&[crate::hub::SLOW_CONSUMER.metric])
                        .inc();
                    return now_close(crate::hub::SLOW_CONSUMER);
                }
            }
        }
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
