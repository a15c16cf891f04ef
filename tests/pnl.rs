//! SPEC §9: live marks and unrealized PnL. The upstream joins the public price channel with the
//! private one and leaves it with the last client; `pnl` frames carry hand-checkable digits
//! (8 places, half to even), at most one per second per account, only on change.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A typed record array from JSON text (numbers keep their digits: no f64 on the way).
fn records(text: &str) -> Vec<Value> {
    serde_json::from_str(text).expect("records")
}

fn position(id: &str, pair: &str, active_pos: &str, avg_price: &str) -> String {
    format!(
        r#"{{"id":"{id}","pair":"{pair}","active_pos":{active_pos},"inactive_pos_buy":0,"inactive_pos_sell":0,"avg_price":{avg_price},"liquidation_price":1,"locked_margin":1,"locked_user_margin":1,"locked_order_margin":0,"take_profit_trigger":null,"stop_loss_trigger":null,"leverage":4,"mark_price":1,"maintenance_margin":0.1,"updated_at":1741605260233,"margin_type":"isolated","margin_currency_short_name":"USDT","settlement_currency_avg_price":1}}"#
    )
}

/// Waits for a `pnl` frame whose data satisfies `want`; returns it.
async fn pnl_where(c: &mut Client, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no pnl frame with {what}");
        let f = c.next_of_type("pnl", left).await;
        assert!(f.get("seq").is_none(), "pnl carries no seq: {f}");
        if want(&f["data"]) {
            return f;
        }
    }
}

fn pnl_of<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no position {id} in {data}"))
}

async fn digits_by_hand(eio: &str) {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("COINDCX_EIO", eio)]).await;
    let (mut c, snapshot) = Client::connect_greeted(hub.addr).await;
    assert_eq!(snapshot["data"]["pnl"], Value::Null, "no mark yet: no PnL");
    assert!(
        wait_until(|| fake.joined_now() == 1 && fake.priced_now() == 1, T).await,
        "both channels joined"
    );
    assert_eq!(fake.price_joins(), 1);
    assert_eq!(
        fake.bad_joins(),
        0,
        "the public join is not a bad private join"
    );

    let positions = [
        position("long", "B-ETH_USDT", "0.045", "2101.75"),
        position("short", "B-BTC_USDT", "-0.002", "84250.1"),
        position("flat", "B-SOL_USDT", "0", "140"),
        position("tie", "B-DOGE_USDT", "-1", "0.100000025"),
        position("nomark", "B-ADA_USDT", "10", "0.5"),
    ];
    fake.emit(
        "df-position-update",
        &event_arg(
            "df-position-update",
            &records(&format!("[{}]", positions.join(","))),
        ),
    )
    .await;
    fake.emit("balance-update", &event_arg("balance-update", &records(
        r#"[{"id":"w1","balance":"1000.5","locked_balance":"20.25","currency_id":"c","currency_short_name":"USDT"}]"#,
    ))).await;
    // Partial updates: DOGE first without a mark, ETH's `ls` later without `mp`.
    fake.emit_prices(&json!({"vs": 1, "ts": 1741605260300u64, "pr": "futures", "pST": 1741605260300u64, "prices": {
        "B-ETH_USDT": {"mp": 2102.96, "ls": 2103.1},
        "B-BTC_USDT": {"mp": "84000.35"},
        "B-DOGE_USDT": {"ls": 0.11},
    }})).await;
    fake.emit_prices(&json!({"vs": 2, "ts": 1741605260400u64, "prices": {
        "B-ETH_USDT": {"ls": 2104.0},
        "B-DOGE_USDT": {"mp": 0.1},
        "B-SOL_USDT": {"mp": "not-a-number"},
    }}))
    .await;

    // By hand: long (2102.96 − 2101.75) × 0.045 = 0.05445; short (84000.35 − 84250.1) × −0.002
    // = 0.4995; flat 0; tie (0.1 − 0.100000025) × −1 = 0.000000025 → 0.00000002 (half to even);
    // ADA has no mark: null, and so are the totals.
    let f = pnl_where(&mut c, "DOGE's mark", |d| {
        pnl_of(d, "tie")["unrealized_pnl"] != Value::Null
    })
    .await;
    let d = &f["data"];
    assert_eq!(f["type"], "pnl");
    assert_eq!(
        pnl_of(d, "long")["mark_price"],
        "2102.96",
        "ETH's mark kept over an update without mp"
    );
    assert_eq!(pnl_of(d, "long")["unrealized_pnl"], "0.05445000");
    assert_eq!(pnl_of(d, "short")["mark_price"], "84000.35");
    assert_eq!(pnl_of(d, "short")["unrealized_pnl"], "0.49950000");
    assert_eq!(pnl_of(d, "flat")["unrealized_pnl"], "0.00000000");
    assert_eq!(
        pnl_of(d, "flat")["mark_price"],
        Value::Null,
        "a bad mp is refused"
    );
    assert_eq!(pnl_of(d, "tie")["unrealized_pnl"], "0.00000002");
    assert_eq!(pnl_of(d, "nomark")["mark_price"], Value::Null);
    assert_eq!(
        pnl_of(d, "nomark")["unrealized_pnl"],
        Value::Null,
        "missing mark: no PnL, not zero"
    );
    assert_eq!(d["unrealized_pnl"], Value::Null);
    assert_eq!(d["equity"], Value::Null);
    let ids: Vec<_> = d["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["nomark", "short", "tie", "long", "flat"],
        "ordered by pair"
    );

    // ADA's mark arrives: (0.55 − 0.5) × 10 = 0.5. Total 1.053950025 → 1.05395002;
    // equity 1000.5 + 20.25 + 1.053950025 = 1021.803950025 → 1021.80395002.
    fake.emit_prices(&json!({"prices": {"B-ADA_USDT": {"mp": "0.55"}}}))
        .await;
    let f = pnl_where(&mut c, "totals", |d| d["unrealized_pnl"] != Value::Null).await;
    let d = &f["data"];
    assert_eq!(pnl_of(d, "nomark")["unrealized_pnl"], "0.50000000");
    assert_eq!(d["unrealized_pnl"], "1.05395002");
    assert_eq!(d["equity"], "1021.80395002");
    // A newcomer's snapshot carries the same values.
    let (c2, snapshot) = Client::connect_greeted(hub.addr).await;
    assert_eq!(snapshot["data"]["pnl"], *d, "snapshot.data.pnl");
    let (_, metrics) = http_get(hub.addr, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "hub_events_skipped_total{event=\"currentPrices@futures#update\",reason=\"bad_mark\"}"
        ),
        Some(1.0)
    );
    c2.close().await;
    c.close().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pnl_digits_by_hand_rust_socketio() {
    digits_by_hand("4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pnl_digits_by_hand_own_engineio_client() {
    digits_by_hand("3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_pnl_frame_per_second_under_100_updates_per_second() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    assert!(
        // Both joins: socketioxide handles each message in a task of its own, so the price
        // join can be counted before the private join put the socket in the account's room.
        wait_until(|| fake.joined_now() == 1 && fake.priced_now() == 1, T).await,
        "private and price channels joined"
    );
    fake.emit(
        "df-position-update",
        &event_arg(
            "df-position-update",
            &records(&format!("[{}]", position("p", "B-ETH_USDT", "1", "2000"))),
        ),
    )
    .await;
    assert_eq!(c.next_of_type("position", T).await["seq"], 1);

    // 300 updates at ~100/s, each a new mark: 2000.01, 2000.02, ... 2003.00.
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        loop {
            let f = c.next_of_type("pnl", T).await;
            let done = pnl_of(&f["data"], "p")["unrealized_pnl"] == "3.00000000";
            frames.push(f);
            if done {
                return (c, frames);
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 1..=300u32 {
        tick.tick().await;
        let mark = format!("{}.{:02}", 2000 + i / 100, i % 100);
        fake.emit_prices(&json!({"prices": {"B-ETH_USDT": {"mp": mark}}}))
            .await;
    }
    let (c, frames) = reader.await.unwrap();
    let stamps: Vec<chrono::DateTime<chrono::Utc>> = frames
        .iter()
        .map(|f| f["timestamp"].as_str().unwrap().parse().unwrap())
        .collect();
    eprintln!("{} pnl frames for 300 price updates", frames.len());
    assert!(
        frames.len() >= 2,
        "the PnL moved, so frames came: {}",
        frames.len()
    );
    for w in stamps.windows(2) {
        let gap = (w[1] - w[0]).num_milliseconds();
        assert!(gap >= 1000, "two pnl frames {gap} ms apart");
    }
    let span = (stamps[stamps.len() - 1] - stamps[0]).num_milliseconds();
    assert!(
        frames.len() as i64 <= span / 1000 + 1,
        "{} frames in {span} ms",
        frames.len()
    );
    // Only on change: nothing more once the marks stop moving.
    let mut c = c;
    if let Some(Incoming::Json(f, _)) = c.next(Duration::from_millis(1500)).await {
        assert_ne!(f["type"], "pnl", "a pnl frame without a change: {f}");
    }
    c.close().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_channel_left_with_the_last_client() {
    for eio in ["4", "3"] {
        let fake = FakeCoinDcx::start().await;
        let hub = start_hub(&fake, &[("COINDCX_EIO", eio)]).await;
        let (a, _) = Client::connect_greeted(hub.addr).await;
        let (b, _) = Client::connect_greeted(hub.addr).await;
        assert!(
            wait_until(|| fake.priced_now() == 1 && fake.joined_now() == 1, T).await,
            "EIO {eio}: joined"
        );
        a.close().await;
        assert_eq!(
            fake.price_leaves(),
            0,
            "EIO {eio}: one client still watches"
        );
        b.close().await;
        assert!(
            wait_until(|| fake.connected() == 0, T).await,
            "EIO {eio}: upstream closed"
        );
        assert_eq!(
            (fake.price_joins(), fake.price_leaves()),
            (1, 1),
            "EIO {eio}: price channel joined and left once"
        );
        assert_eq!(fake.leaves(), 1, "EIO {eio}: the private channel left too");
        hub.shutdown().await;
    }
}

/// `HUB_PNL=0`: only the private channel is joined and left, on both of our clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pnl_off_joins_only_the_private_channel() {
    for eio in ["4", "3"] {
        let fake = FakeCoinDcx::start().await;
        let hub = start_hub(&fake, &[("COINDCX_EIO", eio), ("HUB_PNL", "0")]).await;
        let (a, _) = Client::connect_greeted(hub.addr).await;
        assert!(
            wait_until(|| fake.joined_now() == 1, T).await,
            "EIO {eio}: joined"
        );
        a.close().await;
        assert!(
            wait_until(|| fake.connected() == 0, T).await,
            "EIO {eio}: upstream closed"
        );
        assert_eq!(
            (
                fake.joins(),
                fake.leaves(),
                fake.price_joins(),
                fake.price_leaves()
            ),
            (1, 1, 0, 0),
            "EIO {eio}: private channel only"
        );
        hub.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_gets_the_replay_then_the_current_pnl() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut c, snapshot) = Client::connect_greeted(hub.addr).await;
    let epoch = snapshot["epoch"].as_str().unwrap().to_string();
    assert!(
        // Both joins: socketioxide handles each message in a task of its own, so the price
        // join can be counted before the private join put the socket in the account's room.
        wait_until(|| fake.joined_now() == 1 && fake.priced_now() == 1, T).await,
        "private and price channels joined"
    );
    fake.emit(
        "df-position-update",
        &event_arg(
            "df-position-update",
            &records(&format!("[{}]", position("p", "B-ETH_USDT", "-2", "2000"))),
        ),
    )
    .await;
    assert_eq!(c.next_of_type("position", T).await["seq"], 1);
    fake.emit_prices(&json!({"prices": {"B-ETH_USDT": {"mp": "1999.5"}}}))
        .await;
    // Short: (1999.5 − 2000) × −2 = 1.
    pnl_where(&mut c, "the short's PnL", |d| {
        d["unrealized_pnl"] == "1.00000000"
    })
    .await;
    // A second client stays, so the upstream (and the marks) stay while the first resumes.
    let (keep, _) = Client::connect_greeted(hub.addr).await;
    c.close().await;
    let mut r = Client::connect(hub.addr, &format!("?since=0&epoch={epoch}")).await;
    let types: Vec<String> = {
        let mut t = Vec::new();
        for _ in 0..3 {
            t.push(r.next_json(T).await["type"].as_str().unwrap().to_string());
        }
        t
    };
    assert_eq!(
        types,
        ["system", "position", "pnl"],
        "replay, then the derived values"
    );
    keep.close().await;
    r.close().await;
    hub.shutdown().await;
}

/// The same against real socket.io servers (node): 2.4.1 (Engine.IO 3, what CoinDCX runs,
/// served by our own client) and 4.8.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_channel_joined_and_left_on_socketio_2_and_4() {
    for sio in [Sio::V2, Sio::V4] {
        let fake = NodeFake::start(sio).await;
        let hub = fake.start_hub(&[]).await;
        let (c, _) = Client::connect_greeted(hub.addr).await;
        assert_eq!(
            fake.wait_stat("price_joins", |n| n == 1, T).await,
            1,
            "{sio:?}: price join"
        );
        assert_eq!(
            fake.wait_stat("joins_ok", |n| n == 1, T).await,
            1,
            "{sio:?}: private join"
        );
        c.close().await;
        assert_eq!(
            fake.wait_stat("price_leaves", |n| n == 1, T).await,
            1,
            "{sio:?}: price leave"
        );
        assert_eq!(
            fake.wait_stat("leaves", |n| n == 1, T).await,
            1,
            "{sio:?}: private leave"
        );
        assert_eq!(
            fake.stat("joins_failed").await,
            0,
            "{sio:?}: the public join is no failed join"
        );
        hub.shutdown().await;
    }
}
