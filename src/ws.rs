//! The browser WebSocket below actix-web: our own response body, fed straight from the hub's
//! queue, and a reader of client frames. (actix-ws put a 32-message channel, a task wake-up and
//! an encode copy per frame between the hub and the socket.)
//!
//! Per connection there are two parts on the same actix worker thread:
//! - [`Body`], the 101 response's body, polled by actix-http's connection dispatcher. It writes
//!   each hub [`Batch`] as one chunk, already WebSocket-encoded once for every client by the hub,
//!   so frames queued for a socket go out in one `write`. It also answers the hub's heartbeat
//!   sweep (an empty batch) with the pings, and writes what the session queues on the [`Link`]
//!   (pongs, replies, the close frame). A delivery wakes only the dispatcher: no other task.
//! - the session task (`crate::session`): reads client frames with [`Reader`], holds the
//!   deadlines and decides when and why the connection closes, also when the dispatcher is stuck
//!   on a client that does not read (then the body is never polled again).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame as WsFrame, Item, ProtocolError};
use actix_web::body::{BodySize, MessageBody};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::hub::frame::{hub_frame, Frame};
use crate::hub::outbox::Receiver;
use crate::hub::status::Status;
use crate::hub::CloseReason;

/// At most this much is handed to the dispatcher per poll (it copies it into its write buffer),
/// so a large replay or batch never makes one huge buffer.
const CHUNK: usize = 64 * 1024;
/// A WebSocket ping every this often (on the hub's heartbeat sweep).
pub const WS_PING_EVERY: Duration = Duration::from_secs(15);
/// After this much silence towards the client, send `{"type":"ping"}` like the original bridge.
pub const APP_PING_AFTER: Duration = Duration::from_secs(30);

/// Appends one unmasked server text frame (FIN set).
pub fn encode_text(payload: &[u8], out: &mut BytesMut) {
    header(0x81, payload.len(), out);
    out.extend_from_slice(payload);
}

fn header(first: u8, len: usize, out: &mut BytesMut) {
    if len < 126 {
        out.extend_from_slice(&[first, len as u8]);
    } else if len <= u16::MAX as usize {
        out.extend_from_slice(&[first, 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[first, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a control frame; its payload is cut to the 125 bytes RFC 6455 allows.
fn encode_control(opcode: u8, payload: &[u8], out: &mut BytesMut) {
    let payload = &payload[..payload.len().min(125)];
    header(0x80 | opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

pub fn encode_ping(payload: &[u8], out: &mut BytesMut) {
    encode_control(0x9, payload, out);
}

pub fn encode_pong(payload: &[u8], out: &mut BytesMut) {
    encode_control(0xA, payload, out);
}

/// Appends a close frame; the reason is cut (on a character boundary) to fit 125 bytes.
pub fn encode_close(code: u16, reason: &str, out: &mut BytesMut) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_control(0x8, &payload, out);
}

/// The connection's socket, noted when it is accepted, so a session can reset a connection
/// whose client stopped reading: actix keeps flushing to such a client forever, and the body
/// is never polled again to end it.
#[derive(Clone, Copy, Debug)]
pub struct ConnFd(std::os::fd::RawFd);

impl ConnFd {
    pub fn of(tcp: &actix_web::rt::net::TcpStream) -> ConnFd {
        use std::os::fd::AsRawFd;
        ConnFd(tcp.as_raw_fd())
    }

    /// Resets the connection (RST, buffers freed); actix's dispatcher then sees the error and
    /// drops it. Only for a connection whose body is still alive: the body lives inside the
    /// dispatcher that owns the socket, and the session runs on the same thread, so the
    /// descriptor is still this connection's.
    pub fn reset(self) {
        // SAFETY: see above: the caller checked, on the dispatcher's thread, that the body
        // (and so the socket) is alive; the descriptor is only borrowed, not closed.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) };
        let sock = socket2::SockRef::from(&fd);
        let _ = sock.set_linger(Some(Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
}

/// The text frames in a run of server frames (the hub's batches), in order: for tests and
/// benchmarks that read a client's queue directly. Stops at anything else.
pub fn text_frames(wire: &[u8]) -> Vec<ByteString> {
    let mut codec = Codec::new().client_mode().max_size(usize::MAX >> 1);
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Ok(Some(WsFrame::Text(text))) = codec.decode(&mut buf) {
        match ByteString::try_from(text) {
            Ok(text) => out.push(text),
            Err(_) => break,
        }
    }
    out
}

/// How the session wants the connection closed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Closing {
    pub reason: CloseReason,
    /// Deliver every batch already queued first (shutdown: the notice), then close.
    pub drain: bool,
}

/// What the session task and the body of one connection share (same thread).
#[derive(Default)]
pub struct Link {
    /// Encoded frames from the session (pongs, replies), written before the next batch.
    out: RefCell<BytesMut>,
    closing: Cell<Option<Closing>>,
    /// The dispatcher's waker, from the body's last pending poll.
    waker: Cell<Option<Waker>>,
}

impl Link {
    /// Queues one text frame and wakes the body; returns the bytes now queued.
    pub fn send_text(&self, text: &str) -> usize {
        self.queue(|out| encode_text(text.as_bytes(), out))
    }

    /// Queues a pong and wakes the body; returns the bytes now queued.
    pub fn send_pong(&self, payload: &[u8]) -> usize {
        self.queue(|out| encode_pong(payload, out))
    }

    fn queue(&self, encode: impl FnOnce(&mut BytesMut)) -> usize {
        let queued = {
            let mut out = self.out.borrow_mut();
            encode(&mut out);
            out.len()
        };
        self.wake();
        queued
    }

    /// Asks the body to end the connection with a close frame (the first request wins).
    pub fn close(&self, closing: Closing) {
        if self.closing.get().is_none() {
            self.closing.set(Some(closing));
        }
        self.wake();
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn park(&self, cx: &Context<'_>) {
        match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(cx.waker().clone())),
        }
    }
}

/// The 101 response's body: the connection's whole outgoing side.
pub struct Body {
    link: Rc<Link>,
    status: Arc<Status>,
    /// Frames to send before the live ones (system, snapshot or replay), encoded a chunk at a time.
    initial: std::vec::IntoIter<Frame>,
    /// Live batches from the hub; `None` once the hub dropped its end.
    frames: Option<Receiver>,
    /// The rest of the batch being written.
    current: Bytes,
    next_ws_ping: Instant,
    last_sent: Instant,
    /// Something was written since the last heartbeat sweep.
    wrote: bool,
    done: bool,
    /// Dropped with the body: tells the session the connection is gone.
    _gone: oneshot::Sender<()>,
}

impl Body {
    pub fn new(
        link: Rc<Link>,
        status: Arc<Status>,
        initial: Vec<Frame>,
        frames: Option<Receiver>,
    ) -> (Body, oneshot::Receiver<()>) {
        let (gone_tx, gone_rx) = oneshot::channel();
        let now = Instant::now();
        let body = Body {
            link,
            status,
            initial: initial.into_iter(),
            frames,
            current: Bytes::new(),
            next_ws_ping: now + WS_PING_EVERY,
            last_sent: now,
            wrote: false,
            done: false,
            _gone: gone_tx,
        };
        (body, gone_rx)
    }

    /// The hub's heartbeat sweep: a WebSocket ping every [`WS_PING_EVERY`], and an application
    /// ping after [`APP_PING_AFTER`] without any frame to the client.
    fn heartbeat(&mut self) -> Option<Bytes> {
        let now = Instant::now();
        if std::mem::take(&mut self.wrote) {
            self.last_sent = now;
        }
        let mut out = BytesMut::new();
        if now >= self.next_ws_ping {
            self.next_ws_ping = now + WS_PING_EVERY;
            encode_ping(b"hub", &mut out);
        }
        if now.duration_since(self.last_sent) >= APP_PING_AFTER {
            self.last_sent = now;
            let ping = hub_frame(&self.status.epoch, "ping", json!({}));
            encode_text(ping.as_bytes(), &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        {
            let mut out = self.link.out.borrow_mut();
            if !out.is_empty() {
                self.wrote = true;
                return Poll::Ready(Some(out.split().freeze()));
            }
        }
        let closing = self.link.closing.get();
        if let Some(c) = closing.filter(|c| !c.drain) {
            return Poll::Ready(Some(self.finish(c.reason)));
        }
        loop {
            if !self.current.is_empty() {
                self.wrote = true;
                // Usually the whole batch at once, handed over without another reference.
                let chunk = if self.current.len() <= CHUNK {
                    std::mem::take(&mut self.current)
                } else {
                    self.current.split_to(CHUNK)
                };
                return Poll::Ready(Some(chunk));
            }
            if self.initial.len() > 0 {
                let mut out = BytesMut::new();
                for frame in self.initial.by_ref() {
                    encode_text(frame.as_bytes(), &mut out);
                    if out.len() >= CHUNK {
                        break;
                    }
                }
                self.wrote = true;
                return Poll::Ready(Some(out.freeze()));
            }
            let Some(frames) = self.frames.as_mut() else {
                return self.wait_or_close(closing, cx);
            };
            match frames.poll_recv(cx) {
                Poll::Ready(Some(batch)) if batch.is_empty() => {
                    if let Some(ping) = self.heartbeat() {
                        return Poll::Ready(Some(ping));
                    }
                }
                Poll::Ready(Some(batch)) => self.current = batch,
                Poll::Ready(None) => self.frames = None,
                Poll::Pending => return self.wait_or_close(closing, cx),
            }
        }
    }

    /// Nothing more is ready: close now if asked to (after draining), else wait.
    fn wait_or_close(
        &mut self,
        closing: Option<Closing>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Bytes>> {
        match closing {
            Some(c) => Poll::Ready(Some(self.finish(c.reason))),
            None => {
                self.link.park(cx);
                Poll::Pending
            }
        }
    }

    /// The close frame; the body ends after it.
    fn finish(&mut self, reason: CloseReason) -> Bytes {
        self.done = true;
        self.frames = None;
        self.current = Bytes::new();
        self.initial = Vec::new().into_iter();
        let mut out = BytesMut::new();
        encode_close(reason.code, reason.reason, &mut out);
        out.freeze()
    }
}

impl MessageBody for Body {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().next_chunk(cx).map(|chunk| chunk.map(Ok))
    }
}

/// One complete message from the client (continuations joined).
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Text(ByteString),
    Binary,
    Ping(Bytes),
    Pong,
    Close,
    /// Too large, malformed, or not UTF-8 where text is required.
    Bad(String),
    /// The peer went away (reset, EOF, the connection dropped).
    Gone,
}

/// Reads client frames from the request payload: frames over `max` bytes (also when joined
/// from continuations) are [`Incoming::Bad`].
pub struct Reader {
    payload: actix_web::dev::Payload,
    buf: BytesMut,
    codec: Codec,
    max: usize,
    /// A fragmented message being joined: (text?, bytes so far).
    partial: Option<(bool, BytesMut)>,
}

impl Reader {
    pub fn new(payload: actix_web::dev::Payload, max: usize) -> Reader {
        Reader {
            payload,
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max),
            max,
            partial: None,
        }
    }

    /// The next whole message. Cancel-safe: bytes read stay in the buffer.
    pub async fn next(&mut self) -> Incoming {
        loop {
            match self.decode() {
                Ok(Some(msg)) => return msg,
                Ok(None) => {}
                Err(e) => return Incoming::Bad(e.to_string()),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => return Incoming::Gone,
            }
        }
    }

    fn decode(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        while let Some(frame) = self.codec.decode(&mut self.buf)? {
            let msg = match frame {
                WsFrame::Text(bytes) => text(bytes),
                WsFrame::Binary(_) => Incoming::Binary,
                WsFrame::Ping(bytes) => Incoming::Ping(bytes),
                WsFrame::Pong(_) => Incoming::Pong,
                WsFrame::Close(_) => Incoming::Close,
                WsFrame::Continuation(item) => match self.join(item) {
                    Some(msg) => msg,
                    None => continue,
                },
            };
            return Ok(Some(msg));
        }
        Ok(None)
    }

    fn join(&mut self, item: Item) -> Option<Incoming> {
        let (first, last, bytes) = match item {
            Item::FirstText(b) => (Some(true), false, b),
            Item::FirstBinary(b) => (Some(false), false, b),
            Item::Continue(b) => (None, false, b),
            Item::Last(b) => (None, true, b),
        };
        if let Some(is_text) = first {
            self.partial = Some((is_text, BytesMut::new()));
        }
        // The codec refuses a continuation that was not started, so `partial` is set here.
        let (is_text, joined) = self.partial.as_mut()?;
        if joined.len() + bytes.len() > self.max {
            self.partial = None;
            return Some(Incoming::Bad("message over the size limit".into()));
        }
        joined.extend_from_slice(&bytes);
        if !last {
            return None;
        }
        let is_text = *is_text;
        let joined = std::mem::take(joined).freeze();
        self.partial = None;
        Some(if is_text {
            text(joined)
        } else {
            Incoming::Binary
        })
    }
}

fn text(bytes: Bytes) -> Incoming {
    match ByteString::try_from(bytes) {
        Ok(text) => Incoming::Text(text),
        Err(_) => Incoming::Bad("text frame is not UTF-8".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::frame::Batch;
    use actix_http::ws::CloseCode;

    /// Decodes server frames the way a client does (actix-http's codec in client mode).
    fn decode_all(mut wire: BytesMut) -> Vec<WsFrame> {
        let mut codec = Codec::new().client_mode().max_size(1 << 20);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut wire).expect("valid frame") {
            frames.push(frame);
        }
        assert!(wire.is_empty(), "{} bytes left over", wire.len());
        frames
    }

    #[test]
    fn text_frames_of_every_length_class_decode() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload = "x".repeat(len);
            let mut wire = BytesMut::new();
            encode_text(payload.as_bytes(), &mut wire);
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(wire.len(), header + len, "{len}");
            match decode_all(wire).as_slice() {
                [WsFrame::Text(t)] => assert_eq!(t.len(), len),
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_batch_is_its_frames_back_to_back() {
        let frames: Vec<Frame> = ["{\"a\":1}", "", &"y".repeat(300)]
            .into_iter()
            .map(Frame::from)
            .collect();
        let batch = Batch::new(frames.clone());
        assert_eq!(batch.len(), 3);
        let decoded = decode_all(BytesMut::from(&batch.wire()[..]));
        let texts: Vec<Bytes> = decoded
            .into_iter()
            .map(|f| match f {
                WsFrame::Text(t) => t,
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: Vec<Bytes> = frames.iter().map(|f| f.as_bytes().clone()).collect();
        assert_eq!(texts, expected);
        assert_eq!(text_frames(batch.wire()), frames);
        assert!(Batch::new(Vec::new()).wire().is_empty());
    }

    #[test]
    fn control_frames_are_cut_to_125_bytes() {
        let mut wire = BytesMut::new();
        encode_ping(&[7u8; 200], &mut wire);
        encode_pong(b"abc", &mut wire);
        // 61 two-byte characters: cut to 123 bytes would split one; the cut keeps whole ones.
        let reason = "é".repeat(61);
        encode_close(1008, &reason, &mut wire);
        match decode_all(wire).as_slice() {
            [WsFrame::Ping(p), WsFrame::Pong(q), WsFrame::Close(Some(c))] => {
                assert_eq!(p.len(), 125);
                assert_eq!(&q[..], b"abc");
                assert_eq!(c.code, CloseCode::Policy);
                assert_eq!(c.description.as_deref(), Some("é".repeat(61).as_str()));
            }
            other => panic!("{other:?}"),
        }
        let mut wire = BytesMut::new();
        encode_close(1011, &"é".repeat(62), &mut wire);
        match decode_all(wire).as_slice() {
            [WsFrame::Close(Some(c))] => {
                assert_eq!(c.code, CloseCode::Error);
                assert_eq!(c.description.as_deref(), Some("é".repeat(61).as_str()));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Client frames (masked, as a browser sends them) as one request payload, then EOF.
    fn reader(messages: Vec<actix_http::ws::Message>) -> Reader {
        use actix_codec::Encoder;
        let mut codec = Codec::new().client_mode();
        let mut wire = BytesMut::new();
        for m in messages {
            codec.encode(m, &mut wire).unwrap();
        }
        Reader::new(actix_http::Payload::from(wire.freeze()), 16)
    }

    #[actix_web::test]
    async fn fragments_are_joined_and_limited_as_a_whole() {
        use actix_http::ws::Message as M;
        let part = |item| M::Continuation(item);
        let mut r = reader(vec![
            part(Item::FirstText(Bytes::from_static(b"pi"))),
            M::Ping(Bytes::from_static(b"between")),
            part(Item::Continue(Bytes::from_static(b"n"))),
            part(Item::Last(Bytes::from_static(b"g"))),
            part(Item::FirstBinary(Bytes::from_static(b"\x01"))),
            part(Item::Last(Bytes::from_static(b"\x02"))),
            M::Text(ByteString::from_static("0123456789abcdef")),
            part(Item::FirstText(Bytes::from_static(b"0123456789"))),
            part(Item::Last(Bytes::from_static(b"abcdefg"))),
        ]);
        assert_eq!(
            r.next().await,
            Incoming::Ping(Bytes::from_static(b"between"))
        );
        assert_eq!(
            r.next().await,
            Incoming::Text(ByteString::from_static("ping"))
        );
        assert_eq!(r.next().await, Incoming::Binary);
        // 16 bytes is the limit: one frame of 16 passes, 17 joined from two does not.
        assert_eq!(
            r.next().await,
            Incoming::Text(ByteString::from_static("0123456789abcdef"))
        );
        assert!(matches!(r.next().await, Incoming::Bad(_)));
        assert_eq!(r.next().await, Incoming::Gone);
    }

    #[actix_web::test]
    async fn oversized_and_unmasked_frames_are_bad() {
        let mut r = reader(vec![actix_http::ws::Message::Text(ByteString::from(
            "x".repeat(17),
        ))]);
        assert!(matches!(r.next().await, Incoming::Bad(_)));
        // A server-style (unmasked) frame from a client is a protocol error.
        let mut wire = BytesMut::new();
        encode_text(b"hi", &mut wire);
        let mut r = Reader::new(actix_http::Payload::from(wire.freeze()), 16);
        assert!(matches!(r.next().await, Incoming::Bad(_)));
        let mut r = Reader::new(
            actix_http::Payload::from(Bytes::from_static(&[0x81, 0x85, 1, 2])),
            16,
        );
        assert_eq!(r.next().await, Incoming::Gone, "EOF inside a frame");
    }
}
