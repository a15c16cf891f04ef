//! The normalizer's text path (records typed and written straight from the event's `data`
//! text) against the `Value` path (parse to `Value`, type the map, serialize it): the same
//! records, the same skipped elements and errors, and byte-for-byte the same frames, for the
//! fixtures and for hostile records.

use chrono::{TimeZone, Utc};
use coindcx_hub::hub::frame::record_frame_with_id;
use coindcx_hub::normalize::{normalize, normalize_records, normalize_text, Normalized};
use coindcx_hub::record::{Kind, Record};
use proptest::prelude::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../shared/coindcx/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .expect("fixture is JSON")
}

/// What the hub sends for `rec` (fixed id and time so two builds compare).
fn frame_of<D: serde::Serialize>(rec: &Record, data: D) -> String {
    record_frame_with_id(
        uuid::Uuid::nil(),
        "epoch",
        7,
        rec.kind.frame_type(),
        rec.kind.event_name(),
        Utc.timestamp_millis_opt(1_741_605_260_101).unwrap(),
        false,
        data,
    )
    .to_string()
}

/// The `Value` path for the array text `text`, as the normalizer ran before the text path.
fn value_path(kind: Kind, text: &str) -> Option<Normalized> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Array(items) => Some(normalize_records(kind, items)),
        _ => None,
    }
}

/// Both paths agree on `text`; returns whether the text path took it.
fn check_text(kind: Kind, text: &str) -> bool {
    let arg = json!({"event": kind.event_name(), "data": text});
    let fast = normalize_text(kind, text);
    if let Some(fast) = &fast {
        let old = value_path(kind, text).expect("the text path took only a valid array");
        assert_eq!(fast.records, old.records, "{text}");
        assert_eq!(fast.skipped, old.skipped, "{text}");
        for rec in &fast.records {
            let map = rec.data.to_map();
            assert_eq!(rec.data.as_str(), serde_json::to_string(&map).unwrap());
            assert_eq!(frame_of(rec, &rec.data), frame_of(rec, &map), "{text}");
        }
    }
    // Whatever path `normalize` takes, its answer is the Value path's.
    let got = normalize(kind.event_name(), &arg);
    match (got, value_path(kind, text)) {
        (Ok(got), Some(old)) => {
            assert_eq!(got.records, old.records, "{text}");
            assert_eq!(got.skipped, old.skipped, "{text}");
        }
        (Ok(_), None) => assert!(!text.trim_start().starts_with('['), "{text}"),
        (Err(_), Some(_)) => panic!("{text}: rejected, but the Value path takes it"),
        (Err(_), None) => {}
    }
    fast.is_some()
}

#[test]
fn fixtures_take_the_text_path_and_match() {
    for name in [
        "order-update-batch.json",
        "order-update-filled.json",
        "order-update-cancelled.json",
        "order-update-exponent.json",
        "position-update.json",
        "balance-update.json",
    ] {
        let arg = fixture(name);
        let kind = Kind::from_event(arg["event"].as_str().unwrap()).unwrap();
        let text = arg["data"].as_str().unwrap();
        assert!(check_text(kind, text), "{name}: not taken by the text path");
    }
    for (name, kind) in [
        ("rest-orders-list.json", Kind::Order),
        ("rest-positions.json", Kind::Position),
        ("rest-wallets.json", Kind::Balance),
    ] {
        let text = fixture(name).to_string();
        if text.starts_with('[') {
            assert!(
                check_text(kind, &text),
                "{name}: not taken by the text path"
            );
        }
    }
    for e in fixture("malformed.json").as_array().unwrap() {
        if let (Some(kind), Some(text)) = (
            e["event"].as_str().and_then(Kind::from_event),
            e["arg"]["data"].as_str(),
        ) {
            check_text(kind, text);
        }
    }
}

#[test]
fn edge_cases_match() {
    for text in [
        "[]",
        " [ ] ",
        r#"[{"id":"a","price":"None","status":"None"}]"#,
        r#"[{"id":"None"}]"#,
        r#"[{"id":""}]"#,
        r#"[{"id":7}]"#,
        r#"[{"i\u0064":"x","price":1E5,"updated_at":-0}]"#,
        r#"[{"id":"x","updated_at":1.50,"created_at":1e3,"price":-0.0}]"#,
        r#"[{"id":"x","updated_at":"1","created_at":true,"price":[],"stop_price":{}}]"#,
        r#"[{"id":"x","updated_at":18446744073709551616,"created_at":-9223372036854775809}]"#,
        r#"[{"id":"x","updated_at":1e99999999999999999999,"price":1e400,"avg_price":7.009e-9}]"#,
        r#"[{"id":"x","note":"a\"b\\c\/d\u00e9\ud83d\ude00\n","é":"ü"}]"#,
        r#"[{"id":"x","note":"\ud800"}]"#,
        r#"[{"id":"x","trades":[ 1 , {"b":1,"a":2,"b":3} ],"meta":{ }}]"#,
        r#"[{"id":"x","id":"y"}]"#,
        r#"[{"id":"x","a":1,"a":2}]"#,
        r#"[{"id":"x"},{"id":"y"},{"id":"x","id":"z"}]"#,
        r#"[1, {"id":"x"}, "s", null, [], {"id":"y"}]"#,
        r#"[{"$serde_json::private::Number":"1"}]"#,
        r#"[{"id":"x"}] x"#,
        r#"[{"id":"x"}"#,
        r#"[{"id":"x","price":"1_000","leverage":"+1","maker_fee":" 1"}]"#,
        r#"[{"id":"x","status":"FILLED"},{"id":"y","status":"canceled"}]"#,
        r#"[{"currency_short_name":"USDT","balance":12.5,"locked_balance":"x","updated_at":5}]"#,
    ] {
        for kind in [Kind::Order, Kind::Position, Kind::Balance] {
            check_text(kind, text);
        }
    }
    let deep = format!(
        r#"[{{"id":"x","deep":{}1{}}}]"#,
        "[".repeat(125),
        "]".repeat(125)
    );
    let deeper = format!(
        r#"[{{"id":"x","deep":{}1{}}}]"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    let element = format!(r#"[{{"id":"x"}},{}1{}]"#, "[".repeat(200), "]".repeat(200));
    for text in [deep, deeper, element] {
        check_text(Kind::Order, &text);
    }
}

/// Field names the schemas know, and some they do not.
const NAMES: &[&str] = &[
    "id",
    "status",
    "price",
    "avg_price",
    "leverage",
    "updated_at",
    "created_at",
    "pair",
    "active_pos",
    "balance",
    "locked_balance",
    "currency_short_name",
    "trades",
    "note",
    "i\\u0064",
    "pr\\u0069ce",
    "\\n",
];

/// Value texts, hostile ones included.
const VALUES: &[&str] = &[
    "\"None\"",
    "\"2102.94\"",
    "2102.94",
    "0",
    "-0",
    "1e400",
    "1E5",
    "7.009e-9",
    "1.5E+3",
    "0.1000000000000000055511151231257827",
    "18446744073709551616",
    "-9223372036854775809",
    "1741605260101",
    "1741605260101.5",
    "\"1741605260101\"",
    "\"\"",
    "\" 1\"",
    "\"1_000\"",
    "\"abc\"",
    "\"filled\"",
    "\"CANCELLED\"",
    "\"a\\\"b\"",
    "\"\\u0041\\/\"",
    "\"é\\ud83d\\ude00\"",
    "\"\\ud800\"",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[ ]",
    "[1,{\"b\":1,\"a\":2}]",
    "{\"x\":[],\"x\":1}",
    "\"x\"",
    "\"42\"",
];

fn record_text() -> impl Strategy<Value = String> {
    prop::collection::vec((0..NAMES.len(), 0..VALUES.len(), 0..4u8), 0..8).prop_map(|fields| {
        let mut body = String::new();
        for (i, (n, v, spacing)) in fields.into_iter().enumerate() {
            let (comma, colon) = match spacing {
                0 => (",", ": "),
                1 => (", ", ":"),
                2 => ("\n,", " : "),
                _ => (",", ":"),
            };
            if i > 0 {
                body.push_str(comma);
            }
            body.push_str(&format!("\"{}\"{colon}{}", NAMES[n], VALUES[v]));
        }
        format!("{{{body}}}")
    })
}

fn element_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => record_text(),
        1 => (0..VALUES.len()).prop_map(|v| VALUES[v].to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hostile_records_match(elements in prop::collection::vec(element_text(), 0..5), kind in 0..3usize) {
        let kind = [Kind::Order, Kind::Position, Kind::Balance][kind];
        check_text(kind, &format!("[{}]", elements.join(",")));
    }

    #[test]
    fn shared_keys_match(first in record_text(), values in prop::collection::vec(0..VALUES.len(), 0..8)) {
        // Records with the keys of the one before (the common case the text path shortcuts).
        let second = values.iter().fold(first.clone(), |t, v| t.replacen("null", VALUES[*v], 1));
        check_text(Kind::Order, &format!("[{first},{second},{first}]"));
    }
}
