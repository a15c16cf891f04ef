//! Engine.IO / Socket.IO text packets, as they travel one per WebSocket message.
//!
//! Only what a websocket-only client of CoinDCX's private stream needs: the Engine.IO open,
//! close, ping, pong and noop packets, and the Socket.IO connect, disconnect, event and connect
//! error packets of the default namespace `/`. Both Engine.IO 3 (socket.io 2) and 4 (socket.io
//! 3/4) share this text format; they differ in who pings and in the namespace connect, which
//! [`super::engineio`] handles. The revision is told apart by the open packet: only an EIO4
//! server puts `maxPayload` in it.

use std::time::Duration;

use serde_json::Value;

/// Engine.IO protocol revision spoken by a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eio {
    /// socket.io 2: the client pings, the server sends `40` unprompted.
    V3,
    /// socket.io 3/4: the server pings, the client sends `40`.
    V4,
}

impl Eio {
    pub fn number(self) -> i64 {
        match self {
            Eio::V3 => 3,
            Eio::V4 => 4,
        }
    }
}

/// The Engine.IO open packet (`0{...}`), the first message of every session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub sid: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub eio: Eio,
}

/// One received packet.
#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    /// Engine.IO `1`: the server ends the session.
    Close,
    /// Engine.IO `2` (a payload such as `probe` is allowed and ignored).
    Ping,
    /// Engine.IO `3`.
    Pong,
    /// Engine.IO `6`.
    Noop,
    /// Socket.IO CONNECT of `/` (`40`, EIO4: `40{"sid":..}`).
    Connect,
    /// Socket.IO DISCONNECT of `/` (`41`).
    Disconnect,
    /// Socket.IO EVENT of `/`: `42["name",arg,...]` → name and the first argument.
    Event { name: String, arg: Value },
    /// Socket.IO CONNECT_ERROR / ERROR of `/` (`44...`), with its payload text.
    ConnectError(String),
    /// Anything else that is well formed but of no use here (other namespaces, acks, binary
    /// packets, upgrade messages, a second open packet).
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty message")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownType(char),
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSocketType(char),
    #[error("open packet is not a JSON object with sid, pingInterval and pingTimeout: {0}")]
    BadOpen(String),
    #[error("event is not a JSON array starting with a name: {0}")]
    BadEvent(String),
}

/// Parses the open packet `0{"sid":..,"pingInterval":..,"pingTimeout":..[,"maxPayload":..]}`.
pub fn parse_open(text: &str) -> Result<Open, PacketError> {
    let bad = || PacketError::BadOpen(clip(text));
    let body = text.strip_prefix('0').ok_or_else(bad)?;
    let v: Value = serde_json::from_str(body).map_err(|_| bad())?;
    let ms = |key: &str| {
        v.get(key)
            .and_then(|n| n.as_u64())
            .map(Duration::from_millis)
    };
    let sid = v.get("sid").and_then(Value::as_str).ok_or_else(bad)?;
    Ok(Open {
        sid: sid.to_string(),
        ping_interval: ms("pingInterval").ok_or_else(bad)?,
        ping_timeout: ms("pingTimeout").ok_or_else(bad)?,
        eio: if v.get("maxPayload").is_some() {
            Eio::V4
        } else {
            Eio::V3
        },
    })
}

/// Parses one text message after the open packet.
pub fn parse(text: &str) -> Result<Packet, PacketError> {
    let mut chars = text.chars();
    let engine = chars.next().ok_or(PacketError::Empty)?;
    match engine {
        '0' => Ok(Packet::Ignored),
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping),
        '3' => Ok(Packet::Pong),
        '5' => Ok(Packet::Ignored),
        '6' => Ok(Packet::Noop),
        '4' => parse_socket(&text[1..]),
        other => Err(PacketError::UnknownType(other)),
    }
}

/// A Socket.IO packet: `<type>[<attachments>-][<nsp>,][<ack id>][<json>]`.
fn parse_socket(text: &str) -> Result<Packet, PacketError> {
    let kind = text.chars().next().ok_or(PacketError::Empty)?;
    let mut rest = &text[kind.len_utf8()..];
    if matches!(kind, '5' | '6') {
        // Binary packets carry attachments in further messages; CoinDCX sends none.
        return Ok(Packet::Ignored);
    }
    if rest.starts_with('/') {
        let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
        if nsp != "/" {
            return Ok(Packet::Ignored);
        }
        rest = after;
    }
    // An event may ask for an ack (`42<id>[...]`); CoinDCX never does, so it is not answered.
    let ack_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let payload = &rest[ack_len..];
    match kind {
        '0' => Ok(Packet::Connect),
        '1' => Ok(Packet::Disconnect),
        '2' => parse_event(payload),
        '3' => Ok(Packet::Ignored),
        '4' => Ok(Packet::ConnectError(clip(payload))),
        other => Err(PacketError::UnknownSocketType(other)),
    }
}

fn parse_event(payload: &str) -> Result<Packet, PacketError> {
    let bad = || PacketError::BadEvent(clip(payload));
    let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(payload) else {
        return Err(bad());
    };
    if items.is_empty() {
        return Err(bad());
    }
    let arg = if items.len() > 1 {
        items.swap_remove(1)
    } else {
        Value::Null
    };
    match items.swap_remove(0) {
        Value::String(name) => Ok(Packet::Event { name, arg }),
        _ => Err(bad()),
    }
}

/// `42["name",arg]`: a Socket.IO event of `/`.
pub fn event(name: &str, arg: &Value) -> String {
    format!(
        "42{}",
        Value::Array(vec![Value::String(name.into()), arg.clone()])
    )
}

/// Engine.IO ping and pong, Socket.IO connect and disconnect of `/`.
pub const PING: &str = "2";
pub const PONG: &str = "3";
pub const CONNECT: &str = "40";
pub const DISCONNECT: &str = "41";

/// A packet's text for an error message: the first 120 characters.
fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OPEN_EIO4: &str = r#"0{"sid":"cJ0PfU62v2igyWOtAbjK","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    // What socket.io 2.4.1 sends (captured from tests/fake-coindcx).
    const OPEN_EIO3: &str =
        r#"0{"sid":"2Vp1n1QvYp5XbEYDAAAA","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#;

    #[test]
    fn open_packets_tell_the_revision() {
        let four = parse_open(OPEN_EIO4).unwrap();
        assert_eq!(
            four,
            Open {
                sid: "cJ0PfU62v2igyWOtAbjK".into(),
                ping_interval: Duration::from_millis(25_000),
                ping_timeout: Duration::from_millis(20_000),
                eio: Eio::V4,
            }
        );
        let three = parse_open(OPEN_EIO3).unwrap();
        assert_eq!(three.eio, Eio::V3);
        assert_eq!(three.sid, "2Vp1n1QvYp5XbEYDAAAA");
        assert_eq!(
            (three.ping_interval, three.ping_timeout),
            (Duration::from_secs(25), Duration::from_secs(20))
        );
        // maxPayload decides, whatever its value.
        let odd = r#"0{"sid":"a","pingInterval":1,"pingTimeout":2,"maxPayload":0}"#;
        assert_eq!(parse_open(odd).unwrap().eio, Eio::V4);
        assert_eq!((Eio::V3.number(), Eio::V4.number()), (3, 4));
    }

    #[test]
    fn bad_open_packets_are_errors() {
        for text in [
            "",
            "0",
            "40",
            "0{}",
            "0[]",
            r#"0{"sid":"a","pingInterval":25000}"#,
            r#"0{"sid":"a","pingInterval":"25000","pingTimeout":20000}"#,
            r#"0{"sid":7,"pingInterval":25000,"pingTimeout":20000}"#,
            r#"1{"sid":"a","pingInterval":25000,"pingTimeout":20000}"#,
        ] {
            assert!(
                matches!(parse_open(text), Err(PacketError::BadOpen(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn engine_packets() {
        assert_eq!(parse("1"), Ok(Packet::Close));
        assert_eq!(parse("2"), Ok(Packet::Ping));
        assert_eq!(parse("2probe"), Ok(Packet::Ping));
        assert_eq!(parse("3"), Ok(Packet::Pong));
        assert_eq!(parse("6"), Ok(Packet::Noop));
        assert_eq!(parse("5"), Ok(Packet::Ignored));
        assert_eq!(parse(OPEN_EIO4), Ok(Packet::Ignored));
        assert_eq!(parse(""), Err(PacketError::Empty));
        assert_eq!(parse("7"), Err(PacketError::UnknownType('7')));
        assert_eq!(parse("x"), Err(PacketError::UnknownType('x')));
        assert_eq!(parse("4"), Err(PacketError::Empty));
        assert_eq!(parse("49"), Err(PacketError::UnknownSocketType('9')));
        assert_eq!(parse("4é"), Err(PacketError::UnknownSocketType('é')));
    }

    #[test]
    fn socket_packets_of_the_default_namespace() {
        assert_eq!(parse("40"), Ok(Packet::Connect));
        assert_eq!(
            parse(r#"40{"sid":"twueJep_OFwxn2X7AbjP"}"#),
            Ok(Packet::Connect)
        );
        assert_eq!(parse("40/,"), Ok(Packet::Connect));
        assert_eq!(parse("41"), Ok(Packet::Disconnect));
        assert_eq!(
            parse(r#"44{"message":"Not authorized"}"#),
            Ok(Packet::ConnectError(
                r#"{"message":"Not authorized"}"#.into()
            ))
        );
        // Other namespaces, acks and binary packets are not ours.
        assert_eq!(parse("40/admin,"), Ok(Packet::Ignored));
        assert_eq!(parse(r#"42/admin,["x",1]"#), Ok(Packet::Ignored));
        assert_eq!(parse(r#"4312["ok"]"#), Ok(Packet::Ignored));
        assert_eq!(
            parse(r#"451-["x",{"_placeholder":true,"num":0}]"#),
            Ok(Packet::Ignored)
        );
    }

    #[test]
    fn events_keep_their_first_argument_and_digits() {
        let text = r#"42["balance-update",{"event":"balance-update","data":"[{\"balance\":\"412.39080417\"}]"},"extra"]"#;
        assert_eq!(
            parse(text),
            Ok(Packet::Event {
                name: "balance-update".into(),
                arg: json!({"event":"balance-update","data":"[{\"balance\":\"412.39080417\"}]"}),
            })
        );
        // Numbers keep their text (arbitrary_precision): 0.1000 stays 0.1000.
        match parse(r#"42["df-position-update",{"p":0.1000,"q":12345678901234567890.123}]"#) {
            Ok(Packet::Event { arg, .. }) => {
                assert_eq!(
                    arg.to_string(),
                    r#"{"p":0.1000,"q":12345678901234567890.123}"#
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(r#"42["Left Channel"]"#),
            Ok(Packet::Event {
                name: "Left Channel".into(),
                arg: Value::Null
            })
        );
        assert_eq!(
            parse(r#"42/,7["ping",{}]"#),
            Ok(Packet::Event {
                name: "ping".into(),
                arg: json!({})
            })
        );
        for bad in ["42", "42nope", "42[]", "42[1,2]", r#"42{"a":1}"#] {
            assert!(
                matches!(parse(bad), Err(PacketError::BadEvent(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn outgoing_events() {
        assert_eq!(
            event("leave", &json!({"channelName": "coindcx"})),
            r#"42["leave",{"channelName":"coindcx"}]"#
        );
        let arg = json!({"channelName":"coindcx","authSignature":"ab","apiKey":"k"});
        assert_eq!(
            parse(&event("join", &arg)),
            Ok(Packet::Event {
                name: "join".into(),
                arg
            })
        );
    }
}
