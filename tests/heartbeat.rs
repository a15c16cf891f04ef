//! Quiet connections are kept alive and checked (SPEC §6): the hub sends a WebSocket ping
//! (payload `hub`) every 15 s on its 5 s heartbeat sweep and `{"type":"ping"}` after 30 s
//! without any frame to the client; a client that answers pings (tungstenite does, on its
//! next read) is heard from, so it stays open past the 45 s heartbeat deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const HOLD: Duration = Duration::from_secs(52);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_connection_gets_pings_and_stays_open() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut client, _) = Client::connect_greeted(hub.addr).await;
    let start = Instant::now();
    let mut ws_pings = Vec::new();
    let mut app_pings = Vec::new();
    // When the client last got a text frame other than `ping` (the greeting: at the start).
    let mut last_text = 0.0;
    let mut silences = Vec::new();
    loop {
        let left = HOLD.saturating_sub(start.elapsed());
        let msg = match tokio::time::timeout(left, client.ws.next()).await {
            Err(_) => break,
            Ok(msg) => msg,
        };
        let at = start.elapsed().as_secs_f64();
        match msg {
            Some(Ok(Message::Ping(payload))) => {
                assert_eq!(&payload[..], b"hub");
                ws_pings.push(at);
            }
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "ping" {
                    app_pings.push(at);
                    silences.push(at - last_text);
                    last_text = at;
                } else {
                    // The upstream's `system` notices may come; no records on this stream.
                    assert_eq!(v["type"], "system", "{v}");
                    last_text = at;
                }
            }
            other => panic!("after {at:.1} s: {other:?}"),
        }
    }
    eprintln!("websocket pings at {ws_pings:?} s, application pings at {app_pings:?} s");
    // First ping on the first sweep at least 15 s in (sweeps every 5 s), then every 15-20 s.
    assert!(
        (15.0..23.0).contains(&ws_pings[0]),
        "first ping at {ws_pings:?}"
    );
    assert!(ws_pings.len() >= 2, "{ws_pings:?}");
    for pair in ws_pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((14.0..25.0).contains(&gap), "pings {ws_pings:?}");
    }
    // After 30 s without a text frame (noticed on a sweep, up to 5 s late, and the silence
    // counts from the sweep after the last frame): `{"type":"ping"}`, and only then.
    assert!(!app_pings.is_empty(), "no application ping in {HOLD:?}");
    for s in &silences {
        assert!(
            (29.9..42.0).contains(s),
            "silences before pings: {silences:?}"
        );
    }
    // Past the 45 s deadline and still counted: the pongs were heard.
    assert_eq!(
        hub.hub.status.to_json()["active_connections"],
        1,
        "{}",
        hub.hub.status.to_json()
    );
    client.close().await;
    hub.shutdown().await;
}
