//! SPEC §3: each array element is its own event, in order, with one seq and one id shared by
//! every client; decimals keep the exchange's exact digits; unknown fields pass unchanged.

mod common;

use std::time::Duration;

use coindcx_hub::normalize::{normalize, normalize_records, PayloadError};
use coindcx_hub::record::{Kind, RecordError};
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

fn assert_timestamp(v: &Value) {
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    // 2026-11-23T10:15:02.123Z
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_become_typed_events_with_exact_digits() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut a, snap_a) = Client::connect_greeted(hub.addr).await;
    let (mut b, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, T).await);
    let epoch = status(hub.addr).await["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    let n = snap_a["data"]["seq"].as_u64().unwrap() + 1;
    assert_eq!(n, 1);

    // One event with 3 records → 3 order frames, in array order, seq n..n+2, ids shared.
    fake.emit_fixture("order-update-batch.json").await;
    let expected_ids = [
        "3f6c1d2e-8a47-4b0e-9c52-7d1e0a9b4c61",
        "9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13",
        "e7d05b38-2c9f-4a16-b3e4-5f81a0c6d279",
    ];
    let mut frames = Vec::new();
    for (i, id) in expected_ids.iter().enumerate() {
        let fa = a.next_json(T).await;
        let fb = b.next_json(T).await;
        for f in [&fa, &fb] {
            assert_eq!(f["type"], "order", "{f}");
            assert_eq!(f["event"], "df-order-update");
            assert_eq!(f["seq"], n + i as u64);
            assert_eq!(f["epoch"], epoch.as_str());
            assert_eq!(f["data"]["id"], *id);
            assert!(
                f.get("reconciled").is_none(),
                "live events are not marked reconciled"
            );
            assert_timestamp(f);
        }
        assert_eq!(fa["id"], fb["id"], "one event has one id for every client");
        uuid::Uuid::parse_str(fa["id"].as_str().unwrap()).expect("id is a uuid");
        assert_eq!(
            uuid::Uuid::parse_str(fa["id"].as_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
        frames.push(fa);
    }
    assert_ne!(frames[0]["id"], frames[1]["id"]);
    assert_ne!(frames[1]["id"], frames[2]["id"]);
    let st = status(hub.addr).await;
    assert_eq!(st["seq"], n + 2, "/ws/status seq is the last seq assigned");
    assert_eq!(st["epoch"], epoch.as_str());

    let initial = &frames[0]["data"];
    assert_eq!(initial["status"], "initial");
    assert_eq!(initial["total_quantity"], "0.02");
    assert_eq!(initial["remaining_quantity"], "0.02");
    assert_eq!(initial["leverage"], "4");
    assert_eq!(initial["price"], "2050");
    assert_eq!(initial["maker_fee"], "0.0236");
    assert_eq!(initial["ideal_margin"], "10.27419");
    assert_eq!(initial["avg_price"], "0");
    assert_eq!(initial["settlement_currency_conversion_price"], "1");
    assert_eq!(initial["created_at"], json!(1741605260101u64));
    assert!(initial["created_at"].is_u64() && initial["updated_at"].is_u64());
    assert_eq!(initial["stop_loss_price"], Value::Null);
    assert_eq!(initial["trades"], json!([]));
    let btc = &frames[1]["data"];
    assert_eq!(btc["price"], "84250.5");
    assert_eq!(btc["pair"], "B-BTC_USDT");
    assert_eq!(btc["leverage"], "5");
    assert_eq!(btc["locked_margin"], "33.79961559");
    assert_eq!(btc["total_quantity"], "0.002");
    let partial = &frames[2]["data"];
    assert_eq!(partial["status"], "partially_filled");
    assert_eq!(partial["fee_amount"], "0.0148776996");
    assert_eq!(partial["ideal_margin"], "26.329115415");
    assert_eq!(partial["total_quantity"], "0.05");
    assert_eq!(partial["avg_price"], "2101.37");
    // 34 fields in, 34 fields out.
    assert_eq!(
        partial.as_object().unwrap().len(),
        fixture_records("order-update-batch.json")[2]
            .as_object()
            .unwrap()
            .len()
    );

    // Exponent notation, fee digits, integer price.
    fake.emit_fixture("order-update-exponent.json").await;
    for c in [&mut a, &mut b] {
        let f = c.next_json(T).await;
        assert_eq!(f["seq"], n + 3);
        let d = &f["data"];
        assert_eq!(
            d["locked_margin"], "0.000000007009",
            "7.009e-9 written out exactly"
        );
        assert_eq!(d["fee_amount"], "0.0186072135");
        assert_eq!(d["price"], "2103");
        assert_eq!(d["avg_price"], "2102.51");
        assert_eq!(d["cancelled_quantity"], "0.015");
        assert_eq!(d["remaining_quantity"], "0");
        assert_eq!(d["status"], "partially_cancelled");
        assert_eq!(d["updated_at"], json!(1741605349876u64));
    }

    // An unknown field reaches the browser unchanged (checked on the frame's text).
    let mut rec = fixture_records("order-update-filled.json").remove(0);
    let extra: Value =
        serde_json::from_str(r#"{"x":[1,2.50,"y",null],"nested":{"deep":1e-7}}"#).unwrap();
    rec["brand_new_field"] = extra;
    rec["brand_new_number"] = serde_json::from_str("1.10").unwrap();
    fake.emit("df-order-update", &event_arg("df-order-update", &[rec]))
        .await;
    for c in [&mut a, &mut b] {
        let (f, text) = c.next_json_text(T).await;
        assert_eq!(f["seq"], n + 4);
        assert_eq!(f["data"]["price"], "2102.94");
        assert_eq!(f["data"]["display_message"], "ETH market buy order filled!");
        assert!(
            text.contains(r#""brand_new_field":{"x":[1,2.50,"y",null],"nested":{"deep":1e-7}}"#),
            "{text}"
        );
        assert!(text.contains(r#""brand_new_number":1.10"#), "{text}");
    }

    // Balances: strings stay exactly as sent, one event per row.
    fake.emit_fixture("balance-update.json").await;
    for c in [&mut a, &mut b] {
        let usdt = c.next_json(T).await;
        let inr = c.next_json(T).await;
        assert_eq!(
            (usdt["type"].as_str(), usdt["seq"].as_u64()),
            (Some("balance"), Some(n + 5))
        );
        assert_eq!(
            (inr["type"].as_str(), inr["seq"].as_u64()),
            (Some("balance"), Some(n + 6))
        );
        assert_eq!(usdt["event"], "balance-update");
        assert_eq!(usdt["data"]["currency_short_name"], "USDT");
        assert_eq!(usdt["data"]["balance"], "412.39080417");
        assert_eq!(usdt["data"]["locked_balance"], "34.15153435");
        assert_eq!(inr["data"]["currency_short_name"], "INR");
        assert_eq!(inr["data"]["balance"], "265.01745775027309");
        assert_eq!(inr["data"]["locked_balance"], "258.600771");
        assert_eq!(
            inr["data"]["currency_id"],
            "cfe01e2a-f1af-4e52-9696-9a19d9a8eb4f"
        );
    }

    // Position digits.
    fake.emit_fixture("position-update.json").await;
    for c in [&mut a, &mut b] {
        let f = c.next_json(T).await;
        assert_eq!(f["type"], "position");
        assert_eq!(f["event"], "df-position-update");
        assert_eq!(f["seq"], n + 7);
        let d = &f["data"];
        assert_eq!(d["id"], "8c0e4b7a-fd3e-11ef-9a61-6b2d03c1e4f2");
        assert_eq!(d["active_pos"], "0.045");
        assert_eq!(d["inactive_pos_buy"], "0.02");
        assert_eq!(d["inactive_pos_sell"], "0");
        assert_eq!(d["avg_price"], "2101.75");
        assert_eq!(d["liquidation_price"], "1590.37");
        assert_eq!(d["locked_margin"], "23.6446875");
        assert_eq!(d["locked_user_margin"], "23.6446875");
        assert_eq!(d["locked_order_margin"], "10.50685");
        assert_eq!(d["leverage"], "4");
        assert_eq!(d["mark_price"], "2102.96");
        assert_eq!(d["maintenance_margin"], "0.47316");
        assert_eq!(d["settlement_currency_avg_price"], "1");
        assert_eq!(d["take_profit_trigger"], Value::Null);
        assert_eq!(d["updated_at"], json!(1741605260233u64));
        assert_eq!(d["margin_type"], "isolated");
    }
    let st = status(hub.addr).await;
    assert_eq!(st["seq"], n + 7);
    assert_eq!(st["events_total"], n + 7);

    // A new client's snapshot holds the latest state per key, at the last seq.
    let (_c, snap) = Client::connect_greeted(hub.addr).await;
    let s = &snap["data"];
    assert_eq!(s["seq"], n + 7);
    assert_eq!(s["orders"].as_array().unwrap().len(), 5);
    assert_eq!(s["positions"].as_array().unwrap().len(), 1);
    assert_eq!(s["balances"].as_array().unwrap().len(), 2);
    let inr = s["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency_short_name"] == "INR")
        .unwrap();
    assert_eq!(inr["balance"], "265.01745775027309");
    hub.shutdown().await;
}

// ---- the normalizer itself, on every fixture --------------------------------------------------

fn norm(name: &str) -> coindcx_hub::normalize::Normalized {
    let arg = fixture(name);
    normalize(arg["event"].as_str().unwrap(), &arg).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn normalize_order_fixtures() {
    let batch = norm("order-update-batch.json");
    assert_eq!(batch.kind, Kind::Order);
    assert!(batch.skipped.is_empty());
    let keys: Vec<_> = batch.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "3f6c1d2e-8a47-4b0e-9c52-7d1e0a9b4c61",
            "9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13",
            "e7d05b38-2c9f-4a16-b3e4-5f81a0c6d279"
        ]
    );
    assert_eq!(batch.records[1].data.to_map()["price"], "84250.5");
    assert_eq!(batch.records[2].updated_at, Some(1741605260107));

    let filled = norm("order-update-filled.json");
    assert_eq!(filled.records.len(), 1);
    let d = &filled.records[0].data.to_map();
    assert_eq!(d.len(), 34);
    assert_eq!(d["price"], "2102.94");
    assert_eq!(d["avg_price"], "2102.51");
    assert_eq!(d["total_quantity"], "0.015");
    assert_eq!(d["ideal_margin"], "7.904636019");
    assert_eq!(d["taker_fee"], "0.059");
    assert_eq!(d["leverage"], "4");
    assert_eq!(d["stop_price"], "0");
    assert_eq!(d["created_at"], json!(1741604982805u64));
    assert_eq!(
        filled.records[0].status,
        Some(coindcx_hub::record::OrderStatus::Filled)
    );

    let cancelled = norm("order-update-cancelled.json");
    let d = &cancelled.records[0].data.to_map();
    assert_eq!(d["status"], "cancelled");
    assert_eq!(d["cancelled_quantity"], "0.002");
    assert_eq!(d["remaining_quantity"], "0");
    assert_eq!(d["price"], "84250.5");

    let exp = norm("order-update-exponent.json");
    let d = &exp.records[0].data.to_map();
    assert_eq!(d["locked_margin"], "0.000000007009");
    assert_eq!(d["fee_amount"], "0.0186072135");
    assert_eq!(d["price"], "2103");
}

#[test]
fn normalize_position_and_balance_fixtures() {
    let pos = norm("position-update.json");
    assert_eq!(pos.kind, Kind::Position);
    let d = &pos.records[0].data.to_map();
    assert_eq!(d["active_pos"], "0.045");
    assert_eq!(d["liquidation_price"], "1590.37");
    assert_eq!(d["maintenance_margin"], "0.47316");
    assert_eq!(d["updated_at"], json!(1741605260233u64));

    let bal = norm("balance-update.json");
    assert_eq!(bal.kind, Kind::Balance);
    let keys: Vec<_> = bal.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["USDT", "INR"]);
    assert_eq!(
        bal.records[1].data.to_map()["balance"],
        "265.01745775027309"
    );
    assert_eq!(
        bal.records[0].data.to_map()["locked_balance"],
        "34.15153435"
    );
}

#[test]
fn normalize_rest_fixtures() {
    let create = normalize_records(
        Kind::Order,
        fixture("rest-create-response.json")
            .as_array()
            .unwrap()
            .clone(),
    );
    assert!(create.skipped.is_empty());
    let d = &create.records[0].data.to_map();
    assert_eq!(
        create.records[0].key,
        "3f6c1d2e-8a47-4b0e-9c52-7d1e0a9b4c61"
    );
    assert_eq!(d["leverage"], "4.0", "REST floats keep their digits");
    for f in [
        "order_category",
        "group_id",
        "display_message",
        "group_status",
    ] {
        if d.contains_key(f) {
            assert_ne!(d[f], "None", "{f}: the string None means null");
        }
    }
    let list = normalize_records(
        Kind::Order,
        fixture("rest-orders-list.json").as_array().unwrap().clone(),
    );
    assert_eq!(list.records.len(), 2);
    assert!(list.skipped.is_empty());
    let pos = normalize_records(
        Kind::Position,
        fixture("rest-positions.json").as_array().unwrap().clone(),
    );
    assert_eq!(pos.records.len(), 2);
    let wallets = normalize_records(
        Kind::Balance,
        fixture("rest-wallets.json").as_array().unwrap().clone(),
    );
    assert_eq!(wallets.records.len(), 2);
    assert!(wallets
        .records
        .iter()
        .all(|r| r.data.to_map()["balance"].is_string()));
}

#[test]
fn normalize_every_malformed_fixture() {
    let entries = fixture("malformed.json");
    let mut seen = 0;
    for e in entries.as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let event = e["event"].as_str().unwrap();
        let result = normalize(event, &e["arg"]);
        seen += 1;
        match name {
            "data-not-json" | "deeply-nested" => assert!(
                matches!(result, Err(PayloadError::BadJson(_))),
                "{name}: {result:?}"
            ),
            "data-null" | "data-missing" => {
                assert_eq!(result.unwrap_err(), PayloadError::NoData, "{name}")
            }
            "arg-is-string" => assert_eq!(result.unwrap_err(), PayloadError::ArgNotObject),
            "unknown-event" => assert_eq!(result.unwrap_err(), PayloadError::UnknownEvent),
            "data-empty-array" => {
                let n = result.unwrap();
                assert!(n.records.is_empty() && n.skipped.is_empty());
            }
            "data-object-not-array" => {
                // Lenient: a single object is taken as a one-record array.
                let n = result.unwrap();
                assert_eq!(n.records.len(), 1);
                assert_eq!(n.records[0].data.to_map()["price"], "2102.94");
            }
            "record-not-object" => {
                let n = result.unwrap();
                assert!(n.records.is_empty());
                let idx: Vec<_> = n.skipped.iter().map(|(i, _)| *i).collect();
                assert_eq!(idx, [0, 1, 2]);
                assert!(n
                    .skipped
                    .iter()
                    .all(|(_, e)| matches!(e, RecordError::NotObject(_))));
            }
            "string-in-number-field" => {
                // Issue 10 item 8: one bad field does not cost the record; it is null, named.
                let n = result.unwrap();
                assert!(n.skipped.is_empty(), "{:?}", n.skipped);
                assert_eq!(n.records.len(), 1);
                assert_eq!(n.records[0].data.to_map()["price"], Value::Null);
                assert_eq!(n.records[0].bad_fields, ["price"]);
                assert_eq!(n.records[0].data.to_map()["avg_price"], "2102.51");
            }
            "record-without-id" => {
                let n = result.unwrap();
                assert!(n.records.is_empty());
                assert_eq!(n.skipped[0].1, RecordError::MissingKey("id"));
            }
            "balance-number-not-string" => {
                // Choice: a balance sent as a JSON number is still usable; delivered as "12.5".
                let n = result.unwrap();
                assert_eq!(n.records.len(), 1);
                assert_eq!(n.records[0].data.to_map()["balance"], "12.5");
                assert_eq!(n.records[0].data.to_map()["locked_balance"], Value::Null);
            }
            "near-max-payload" => {
                let n = result.unwrap();
                assert_eq!(n.records.len(), 1);
                assert!(
                    n.records[0].data.to_map()["display_message"]
                        .as_str()
                        .unwrap()
                        .len()
                        > 800_000
                );
            }
            "number-overflow" => {
                // Choice: a number beyond f64 range is delivered as a decimal string in exponent
                // form (too large to write out). serde_json's arbitrary_precision reader spells the
                // exponent with an explicit sign, so the text is "1e+400": same digits, same value.
                let n = result.unwrap();
                assert_eq!(n.records.len(), 1);
                let data = n.records[0].data.to_map();
                let price = data["price"].as_str().unwrap();
                assert!(price == "1e400" || price == "1e+400", "{price}");
            }
            other => panic!("malformed.json has an entry this test does not know: {other}"),
        }
    }
    assert_eq!(seen, 14);
}

/// Issue 10 item 8: a known field that cannot be typed is null and named; the record (and its
/// status) still goes through. Only the key is required.
#[test]
fn a_bad_optional_field_is_null_and_named_not_fatal() {
    let mut rec = fixture_records("order-update-filled.json").remove(0);
    rec["stop_price"] = json!("");
    rec["updated_at"] = json!("soon");
    rec["leverage"] = json!({"x": 1});
    let n = normalize_records(Kind::Order, vec![rec.clone()]);
    assert!(n.skipped.is_empty(), "{:?}", n.skipped);
    let r = &n.records[0];
    assert_eq!(r.data.to_map()["status"], "filled");
    assert_eq!(
        (
            &r.data.to_map()["stop_price"],
            &r.data.to_map()["updated_at"],
            &r.data.to_map()["leverage"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let mut bad = r.bad_fields.clone();
    bad.sort();
    assert_eq!(bad, ["leverage", "stop_price", "updated_at"]);
    assert_eq!(r.updated_at, None);
    assert_eq!(r.data.to_map()["price"], rec["price"].to_string());
    rec["id"] = json!(42);
    let n = normalize_records(Kind::Order, vec![rec]);
    assert_eq!(n.skipped[0].1, RecordError::MissingKey("id"));
}
