//! The frames a browser receives (SPEC §3): one JSON text each, serialized once per event and
//! shared by every client as a [`Frame`].

use bytestring::ByteString;

/// One serialized frame, shared by every client (cloning is a reference count).
pub type Frame = ByteString;

/// The frames of one hub cycle as WebSocket text frames, back to back, headers included: built
/// once, and every client's queue gets the same bytes (a reference count), so a connection
/// writes a whole batch as one chunk, with no per-client, per-frame encoding.
pub struct Batch {
    frames: usize,
    wire: bytes::Bytes,
}

impl Batch {
    pub fn new(frames: Vec<Frame>) -> Batch {
        let mut wire =
            bytes::BytesMut::with_capacity(frames.iter().map(|f| f.len() + 10).sum::<usize>());
        for frame in &frames {
            crate::ws::encode_text(frame.as_bytes(), &mut wire);
        }
        Batch {
            frames: frames.len(),
            wire: wire.freeze(),
        }
    }

    /// How many frames the batch holds.
    pub fn len(&self) -> usize {
        self.frames
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The encoded frames.
    pub fn wire(&self) -> &bytes::Bytes {
        &self.wire
    }
}

impl FromIterator<Frame> for Batch {
    fn from_iter<I: IntoIterator<Item = Frame>>(iter: I) -> Batch {
        Batch::new(iter.into_iter().collect())
    }
}
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    epoch: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    event: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reconciled: bool,
    data: D,
}

/// RFC 3339 with milliseconds, UTC (`2026-11-23T10:15:02.123Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One exchange record as an `order` / `position` / `balance` frame.
pub fn record_frame<D: Serialize>(
    epoch: &str,
    seq: u64,
    kind: &str,
    event: &str,
    received_at: DateTime<Utc>,
    reconciled: bool,
    data: D,
) -> Frame {
    record_frame_with_id(
        Uuid::new_v4(),
        epoch,
        seq,
        kind,
        event,
        received_at,
        reconciled,
        data,
    )
}

/// [`record_frame`] with a given id: in cluster mode the leader picks it, so one event has one
/// id on every instance.
#[allow(clippy::too_many_arguments)]
pub fn record_frame_with_id<D: Serialize>(
    id: Uuid,
    epoch: &str,
    seq: u64,
    kind: &str,
    event: &str,
    received_at: DateTime<Utc>,
    reconciled: bool,
    data: D,
) -> Frame {
    encode(&Envelope {
        id,
        seq: Some(seq),
        epoch,
        kind,
        event,
        timestamp: timestamp(received_at),
        reconciled,
        data,
    })
}

/// A hub frame without `seq`: `system`, `snapshot`, `resync`, `pong`, `ping`, `error`.
pub fn hub_frame<D: Serialize>(epoch: &str, kind: &str, data: D) -> Frame {
    encode(&Envelope {
        id: Uuid::new_v4(),
        seq: None,
        epoch,
        kind,
        event: kind,
        timestamp: timestamp(Utc::now()),
        reconciled: false,
        data,
    })
}

/// A `system` frame with a message and extra fields.
pub fn system_frame(epoch: &str, message: &str, extra: Value) -> Frame {
    let mut data = serde_json::Map::new();
    data.insert("message".into(), Value::String(message.into()));
    if let Value::Object(more) = extra {
        data.extend(more);
    }
    hub_frame(epoch, "system", Value::Object(data))
}

fn encode<T: Serialize>(value: &T) -> Frame {
    // Serializing maps, strings and numbers into a Vec cannot fail.
    Frame::from(serde_json::to_string(value).unwrap_or_default())
}
