//! SPEC §6: malformed exchange data is logged, counted and skipped while the stream goes on;
//! hostile browser frames close only the offending client (1008); ping gets pong.

mod common;

use std::time::Duration;

use coindcx_hub::session::{MAX_CLIENT_FRAME, MAX_FRAMES_PER_SECOND};
use common::*;
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);
const BATCH_IDS: [&str; 3] = [
    "3f6c1d2e-8a47-4b0e-9c52-7d1e0a9b4c61",
    "9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13",
    "e7d05b38-2c9f-4a16-b3e4-5f81a0c6d279",
];

fn malformed() -> Vec<Value> {
    fixture("malformed.json").as_array().unwrap().clone()
}

async fn emit_entry(fake: &FakeCoinDcx, entry: &Value) {
    fake.emit(entry["event"].as_str().unwrap(), &entry["arg"])
        .await;
}

/// Reads frames until the last record of the batch fixture; returns everything before the batch.
async fn frames_before_batch(c: &mut Client) -> (Vec<Value>, Vec<Value>) {
    let mut before = Vec::new();
    let mut batch = Vec::new();
    loop {
        let f = c.next_json(Duration::from_secs(10)).await;
        if BATCH_IDS.contains(&f["data"]["id"].as_str().unwrap_or("")) {
            batch.push(f);
            if batch.len() == 3 {
                return (before, batch);
            }
        } else {
            assert!(batch.is_empty(), "frame after the batch started: {f}");
            before.push(f);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_is_skipped_and_the_stream_goes_on() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, T).await);

    let entries = malformed();
    assert_eq!(entries.len(), 14);
    for e in &entries {
        emit_entry(&fake, e).await;
    }
    fake.emit_fixture("order-update-batch.json").await;
    let (before, batch) = frames_before_batch(&mut c).await;

    // Delivered, in fixture order:
    // - `data-object-not-array`: a single object is taken as a one-record array (lenient, as
    //   PROTOCOL.md §4.2 asks) → the filled order bf2f…, seq 1;
    // - `balance-number-not-string`: a balance sent as a JSON number is still usable → a balance
    //   frame with "12.5" (the number's digits as a string), seq 2;
    // - `near-max-payload` and `number-overflow` are valid records for that same filled order with
    //   the same status and updated_at: exact repeats, dropped as duplicates (counted);
    // - `string-in-number-field` is kept with `price` null (one bad field never costs the record,
    //   counted in hub_bad_fields_total), and is also a repeat of that order: dropped.
    // Everything else is skipped and counted.
    assert_eq!(before.len(), 2, "{before:#?}");
    assert_eq!(before[0]["type"], "order");
    assert_eq!(before[0]["seq"], 1);
    assert_eq!(
        before[0]["data"]["id"],
        "bf2f3834-e7ac-48c1-b0e5-1110bf4dee0e"
    );
    assert_eq!(before[0]["data"]["price"], "2102.94");
    assert_eq!(before[1]["type"], "balance");
    assert_eq!(before[1]["seq"], 2);
    assert_eq!(before[1]["data"]["currency_short_name"], "USDT");
    assert_eq!(before[1]["data"]["balance"], "12.5");
    assert_eq!(before[1]["data"]["locked_balance"], Value::Null);
    // The next valid event is delivered with the right seq.
    let seqs: Vec<_> = batch.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);

    // Still serving, and the skips are counted.
    assert_eq!(http_get(hub.addr, "/healthz").await.0, 200);
    let (code, m) = http_get(hub.addr, "/metrics").await;
    assert_eq!(code, 200);
    let skipped = |event: &str, reason: &str| {
        metric(
            &m,
            &format!(r#"hub_events_skipped_total{{event="{event}",reason="{reason}"}}"#),
        )
    };
    assert_eq!(
        skipped("df-order-update", "bad_json"),
        Some(2.0),
        "data-not-json, deeply-nested\n{m}"
    );
    assert_eq!(
        skipped("df-order-update", "no_data"),
        Some(2.0),
        "data-null, data-missing"
    );
    assert_eq!(
        skipped("df-order-update", "arg_not_object"),
        Some(1.0),
        "arg-is-string"
    );
    assert_eq!(
        skipped("df-order-update", "bad_record"),
        Some(1.0),
        "record-without-id"
    );
    assert_eq!(
        metric(
            &m,
            r#"hub_bad_fields_total{event="df-order-update",field="price"}"#
        ),
        Some(1.0),
        "string-in-number-field"
    );
    assert_eq!(
        skipped("df-position-update", "bad_record"),
        Some(3.0),
        "record-not-object: 42, \"x\", null"
    );
    assert_eq!(
        skipped("unknown", "unknown_event"),
        Some(1.0),
        "df-trade-update"
    );
    assert_eq!(
        metric(&m, "hub_duplicates_dropped_total"),
        Some(3.0),
        "string-in-number-field, near-max-payload, number-overflow"
    );
    assert_eq!(
        metric(&m, r#"hub_events_in_total{type="order"}"#),
        Some(4.0)
    );
    assert_eq!(
        metric(&m, r#"hub_events_in_total{type="balance"}"#),
        Some(1.0)
    );
    assert_eq!(
        fake.connects(),
        1,
        "malformed data must not cost the upstream connection"
    );
    assert_eq!(status(hub.addr).await["seq"], 5);
    hub.shutdown().await;
}

/// Emits one malformed entry to a fresh hub, then the batch; returns what came before the batch.
async fn delivered_alone(name: &str) -> Vec<Value> {
    let entry = malformed().into_iter().find(|e| e["name"] == name).unwrap();
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, T).await);
    emit_entry(&fake, &entry).await;
    fake.emit_fixture("order-update-batch.json").await;
    let (before, batch) = frames_before_batch(&mut c).await;
    assert_eq!(batch[0]["seq"], before.len() as u64 + 1);
    hub.shutdown().await;
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_odd_records_are_delivered_as_stated() {
    // `number-overflow` (price 1e400): delivered; the price is a decimal string in exponent form
    // (far too long to write out). serde_json's arbitrary_precision spells it "1e+400".
    let f = delivered_alone("number-overflow").await;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["type"], "order");
    let price = f[0]["data"]["price"].as_str().unwrap();
    assert!(price == "1e400" || price == "1e+400", "{price}");
    assert_eq!(f[0]["data"]["avg_price"], "2102.51");

    // `balance-number-not-string`: delivered with "12.5".
    let f = delivered_alone("balance-number-not-string").await;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["data"]["balance"], "12.5");

    // `near-max-payload` (~900 KB record): delivered whole.
    let f = delivered_alone("near-max-payload").await;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["data"]["display_message"].as_str().unwrap().len(), {
        let e = malformed()
            .into_iter()
            .find(|e| e["name"] == "near-max-payload")
            .unwrap();
        let recs: Vec<Value> = serde_json::from_str(e["arg"]["data"].as_str().unwrap()).unwrap();
        recs[0]["display_message"].as_str().unwrap().len()
    });

    // `data-empty-array`: nothing.
    assert!(delivered_alone("data-empty-array").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_closed_and_others_keep_receiving() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut good, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, T).await);

    fake.emit_fixture("order-update-batch.json").await;
    for seq in 1..=3 {
        assert_eq!(good.next_json(T).await["seq"], seq);
    }

    // A 5 KiB text frame.
    let (mut big, _) = Client::connect_greeted(hub.addr).await;
    big.send_text(&"x".repeat(5 * 1024)).await;
    assert_eq!(
        big.expect_close(T).await.map(|c| c.0),
        Some(1008),
        "5 KiB frame"
    );

    // A binary frame.
    let (mut bin, _) = Client::connect_greeted(hub.addr).await;
    bin.ws.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        bin.expect_close(T).await.map(|c| c.0),
        Some(1008),
        "binary frame"
    );

    // 30 frames in a burst (the limit is 20 per second).
    let (mut burst, _) = Client::connect_greeted(hub.addr).await;
    for _ in 0..30 {
        burst.ws.feed(Message::Text("ping".into())).await.unwrap();
    }
    burst.ws.flush().await.unwrap();
    let mut pongs = 0;
    let close = loop {
        match burst.next(T).await {
            Some(Incoming::Json(v, _)) => {
                assert_eq!(v["type"], "pong");
                pongs += 1;
            }
            Some(Incoming::Close(c)) => break c,
            other => panic!("burst client: {other:?}"),
        }
    };
    assert_eq!(close.map(|c| c.0), Some(1008), "30-frame burst");
    assert_eq!(
        pongs, MAX_FRAMES_PER_SECOND,
        "every frame within the limit is answered, none after"
    );

    // The good client kept receiving every event, and nothing else.
    fake.emit_fixture("order-update-exponent.json").await;
    let f = good.next_json(T).await;
    assert_eq!(f["type"], "order", "{f}");
    assert_eq!(f["seq"], 4);

    // ping / {"type":"ping"} → pong; unknown text → exactly one error frame.
    good.send_text("ping").await;
    let f = good.next_json(T).await;
    assert_eq!(f["type"], "pong", "{f}");
    assert!(f.get("seq").is_none());
    good.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(good.next_json(T).await["type"], "pong");
    good.send_text("subscribe me please").await;
    let f = good.next_json(T).await;
    assert_eq!(f["type"], "error", "{f}");
    assert!(f["data"]["message"].is_string());
    good.send_text("ping").await;
    assert_eq!(
        good.next_json(T).await["type"],
        "pong",
        "only one error frame per unknown message"
    );

    let m = hub.hub.metrics.render();
    let closes = |reason: &str| {
        metric(
            &m,
            &format!(r#"hub_client_closes_total{{reason="{reason}"}}"#),
        )
    };
    assert_eq!(closes("bad_frame"), Some(1.0), "{m}");
    assert_eq!(closes("binary"), Some(1.0));
    assert_eq!(closes("rate_limit"), Some(1.0));
    assert!(wait_until(|| hub.hub.status.to_json()["active_connections"] == 1, T).await);
    hub.shutdown().await;
}

/// A `{"type":"ping"}` text frame padded to exactly `len` bytes.
fn padded_ping(len: usize) -> String {
    let head = r#"{"type":"ping","pad":""#;
    let tail = r#""}"#;
    let text = format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()));
    assert_eq!(text.len(), len);
    text
}

/// Reads exactly `pongs` pong frames, then the close: (pongs read, close code).
async fn pongs_then_close(c: &mut Client) -> (u32, Option<u16>) {
    let mut pongs = 0;
    loop {
        match c.next(Duration::from_secs(20)).await {
            Some(Incoming::Json(v, _)) => {
                assert_eq!(v["type"], "pong", "{v}");
                pongs += 1;
            }
            Some(Incoming::Close(close)) => return (pongs, close.map(|c| c.0)),
            other => panic!("after {pongs} pongs: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_size_boundary_4096_is_answered_4097_closes() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    assert_eq!(MAX_CLIENT_FRAME, 4096, "SPEC §6: 4 KiB");

    // Exactly the limit: answered, and the socket stays open for more.
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    c.send_text(&padded_ping(MAX_CLIENT_FRAME)).await;
    let f = c.next_json(T).await;
    assert_eq!(f["type"], "pong", "a {MAX_CLIENT_FRAME}-byte frame: {f}");
    c.send_text("ping").await;
    assert_eq!(c.next_json(T).await["type"], "pong");

    // One byte more: closed with 1008, nothing answered.
    c.send_text(&padded_ping(MAX_CLIENT_FRAME + 1)).await;
    assert_eq!(
        pongs_then_close(&mut c).await,
        (0, Some(1008)),
        "a {}-byte frame",
        MAX_CLIENT_FRAME + 1
    );

    let m = hub.hub.metrics.render();
    assert_eq!(
        metric(&m, r#"hub_client_closes_total{reason="bad_frame"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(wait_until(|| hub.hub.status.to_json()["active_connections"] == 0, T).await);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_rate_boundary_20_are_answered_the_21st_closes() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    assert_eq!(MAX_FRAMES_PER_SECOND, 20, "SPEC §6: 20 frames per second");
    let limit = MAX_FRAMES_PER_SECOND;

    // The limit in one burst: every frame answered, the socket open. The next frame, sent once a
    // full second has passed since the burst was answered (so since the hub read its first
    // frame), opens a new window and is answered too.
    let (mut at_limit, _) = Client::connect_greeted(hub.addr).await;
    for _ in 0..limit {
        at_limit
            .ws
            .feed(Message::Text("ping".into()))
            .await
            .unwrap();
    }
    at_limit.ws.flush().await.unwrap();
    for n in 0..limit {
        let f = at_limit.next_json(T).await;
        assert_eq!(
            f["type"], "pong",
            "answer {n} of the {limit}-frame burst: {f}"
        );
    }
    // The one wait here is the rate window itself; nothing can be awaited instead.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    at_limit.send_text("ping").await;
    let f = at_limit.next_json(T).await;
    assert_eq!(f["type"], "pong", "first frame of the next second: {f}");

    // One over the limit in one burst: exactly the first `limit` answered, then 1008.
    let (mut over, _) = Client::connect_greeted(hub.addr).await;
    for _ in 0..=limit {
        over.ws.feed(Message::Text("ping".into())).await.unwrap();
    }
    over.ws.flush().await.unwrap();
    assert_eq!(
        pongs_then_close(&mut over).await,
        (limit, Some(1008)),
        "{} frames in one burst",
        limit + 1
    );

    let m = hub.hub.metrics.render();
    assert_eq!(
        metric(&m, r#"hub_client_closes_total{reason="rate_limit"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(wait_until(|| hub.hub.status.to_json()["active_connections"] == 1, T).await);
    at_limit.close().await;
    hub.shutdown().await;
}
