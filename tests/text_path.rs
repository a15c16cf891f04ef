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

/// The order fixture's records as one compact array text, as the bench builds it.
fn order_batch_text() -> String {
    let arg = fixture("order-update-batch.json");
    arg["data"].as_str().unwrap().to_string()
}

/// Every kind, both paths.
fn check_all_kinds(text: &str) {
    for kind in [Kind::Order, Kind::Position, Kind::Balance] {
        check_text(kind, text);
    }
}

/// Inputs aimed at the byte scanner: the number grammar, control characters, escapes,
/// whitespace, structure. Each gives exactly what the `Value` path gives (records, skips,
/// or the error); the ones that are valid and plain are taken by the text path.
#[test]
fn scanner_hostile_inputs_match() {
    // Numbers, good and bad, in a decimal, a timestamp, a plain and the key field.
    let numbers = [
        "0",
        "-0",
        "1",
        "-1",
        "10",
        "1.5",
        "0.0",
        "-0.25",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1E-0",
        "1.5e10",
        "0e0",
        "-0.0e-0",
        "123456789012345678901234567890",
        "01",
        "-01",
        "00",
        "1.",
        "-",
        "1e",
        "1e+",
        "1E-",
        "+1",
        ".5",
        "-.5",
        "1.e5",
        "0x1",
        "1_0",
        "--1",
        "1.2.3",
        "NaN",
        "Infinity",
        "-Infinity",
        "1 2",
        "1ee5",
        "1e5.0",
        "0.",
        "1e1e1",
        "- 1",
        "1-",
        "٣",
    ];
    for n in numbers {
        for field in ["price", "updated_at", "pair", "id", "balance", "active_pos"] {
            let text = format!(r#"[{{"id":"x","{field}":{n},"currency_short_name":"U"}}]"#);
            check_all_kinds(&text);
            let text = format!(r#"[{{"id":"x","{field}":[{n}],"currency_short_name":"U"}}]"#);
            check_all_kinds(&text);
        }
        check_all_kinds(&format!("[{n}]"));
    }
    // Plain numbers are taken (the scanner does not just give up).
    assert!(check_text(
        Kind::Order,
        r#"[{"id":"x","price":-0.25,"updated_at":0,"n":1e5,"m":123456789012345678901234567890}]"#
    ));

    // Every control character (and DEL, which JSON allows) raw in a value, a key, a nested
    // string and outside strings.
    for c in (0u8..0x20).chain([0x7f]) {
        let c = c as char;
        for text in [
            format!(r#"[{{"id":"x","note":"a{c}b"}}]"#),
            format!(r#"[{{"id":"x{c}"}}]"#),
            format!(r#"[{{"id":"x","n{c}":1}}]"#),
            format!(r#"[{{"id":"x","t":["{c}"]}}]"#),
            format!(r#"[{{"id":"x","t":{{"{c}":1}}}}]"#),
            format!(r#"[{{"id":"x",{c}"n":1}}]"#),
            format!(r#"[{{"id":"x","n":1{c}}}]"#),
            format!(r#"{c}[{{"id":"x"}}]{c}"#),
        ] {
            check_all_kinds(&text);
        }
    }
    assert!(check_text(
        Kind::Order,
        "[{\"id\":\"x\",\"note\":\"a\u{7f}b\"}]"
    ));

    // Escapes, valid and not, in values (decoded by serde_json on the text path), keys (the
    // `Value` path) and nested values.
    for e in [
        r#"\""#,
        r"\\",
        r"\/",
        r"\b",
        r"\f",
        r"\n",
        r"\r",
        r"\t",
        r"\u0041",
        r"\u00e9",
        r"\u00E9",
        r"\u0000",
        r"\u001f",
        r"\uD83D\uDE00",
        r"\ud83d\ude00x",
        r"\ud800",
        r"\udc00",
        r"\ud800\u0041",
        r"\ud800\ud800",
        r"\ud800\",
        r"\x",
        r"\u12",
        r"\u12G4",
        r"\U0041",
        r"\'",
        r"\0",
        r"\u",
        r"\u004",
        "\\\u{1}",
        "\\\u{e9}",
        r"N\u006fne",
        r"\u0031\u0032",
    ] {
        for text in [
            format!(r#"[{{"id":"x","note":"{e}"}}]"#),
            format!(r#"[{{"id":"{e}"}}]"#),
            format!(r#"[{{"id":"x","price":"{e}","status":"{e}"}}]"#),
            format!(r#"[{{"id":"x","{e}":1}}]"#),
            format!(r#"[{{"id":"x","t":["{e}"],"u":{{"{e}":"{e}"}}}}]"#),
            format!(r#"[{{"id":"x","note":"{e}"}},{{"id":"y","note":"{e}"}}]"#),
            format!(r#"[{{"id":"x","note":"{e}}}]"#),
        ] {
            check_all_kinds(&text);
        }
    }
    assert!(check_text(
        Kind::Order,
        r#"[{"id":"x\u0041","note":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","price":"N\u006fne"}]"#
    ));

    // Structure: trailing garbage, missing or extra separators, truncation, other elements.
    for text in [
        "",
        " ",
        "[",
        "]",
        "[]",
        "[ ]",
        " \t\r\n[ \t\r\n] \t\r\n",
        "[]]",
        "[] []",
        "[],",
        "[]x",
        "[{}]",
        "[ { } ]",
        "[{},{}]",
        "[{} {}]",
        "[{},]",
        "[,{}]",
        "[{}",
        r#"[{"id":"x"}]]"#,
        r#"[{"id":"x"}]}"#,
        r#"[{"id":"x"}] x"#,
        r#"[{"id":"x"}]0"#,
        r#"[{"id":"x"}]"""#,
        r#"[{"id":"x"},]"#,
        r#"[{"id":"x",}]"#,
        r#"[{"id":"x"} {"id":"y"}]"#,
        r#"[{"id":"x" "n":1}]"#,
        r#"[{"id":"x","n":1 "m":2}]"#,
        r#"[{"id":"x","n"1}]"#,
        r#"[{"id":"x","n"::1}]"#,
        r#"[{"id":"x","n":}]"#,
        r#"[{"id":"x","n"}]"#,
        r#"[{"id":"x",n:1}]"#,
        r#"[{"id":"x",'n':1}]"#,
        r#"[{"id":"x","n":'a'}]"#,
        r#"[{"id":"x","n":tru}]"#,
        r#"[{"id":"x","n":True}]"#,
        r#"[{"id":"x","n":nulll}]"#,
        r#"[{"id":"x","n":falsey}]"#,
        r#"[{"id":"x","n":undefined}]"#,
        r#"[{"id":"x","n":[}]"#,
        r#"[{"id":"x","n":[1,]}]"#,
        r#"[{"id":"x","n":[1 2]}]"#,
        r#"[{"id":"x","n":{"a"}}]"#,
        r#"[{"id":"x","n":{"a":1,}}]"#,
        r#"[{"id":"x","n":[1}]}]"#,
        r#"[{"id":"x","n":{"a":1]}]"#,
        r#"[{"id":"x","n":[1,"]"}]"#,
        r#"[{"id":"x","n":["\"]"]}]"#,
        r#"[{"id":"x","n":[[[1]]}]"#,
        r#"[{"id":"x","n":[[],{},[{}],{"a":[]}]}]"#,
        r#"[{"id":"x","n":[ ],"m":{ },"o":[ [ ] ],"p":{"a" : { } }}]"#,
        r#"[{"id":"x","n":{"$serde_json::private::Number":"1"}}]"#,
        r#"[{"$serde_json::private::Number":"1"}]"#,
        r#"[{"id":"x","$serde_json::private::Number":"1"}]"#,
        r#"[{"$serde_json::private::Numbe":"1","id":"x"}]"#,
        r#"[{"$":"1","id":"x"}]"#,
        r#"[{"id":"x"},1,{"id":"y"}]"#,
        r#"[{"id":"x"},[],{"id":"y"}]"#,
        r#"[{"id":"x"},null]"#,
        r#"[{"id":"x","id":"x"}]"#,
        r#"[{"id":"x","n":1},{"id":"y","n":1,"n":2}]"#,
        r#"[{"id":"x","n":1},{"n":2,"id":"y"},{"id":"z","n":3}]"#,
        r#"[{"id":"x","ab":1},{"id":"y","a":1},{"id":"y","abc":1}]"#,
        r#"[{"id":"x","a":1},{"id":"y","a\"":1}]"#,
        r#"[{"id":"x","a":1},{"id":"y","a"#,
        r#"[{"id":"x","note":"é ü 中 😀"}]"#,
        "[{\"id\":\"x\",\"note\":\"\u{feff}\"}]",
        "\u{feff}[{\"id\":\"x\"}]",
        "[{\"id\":\"x\"}]\u{feff}",
        "[{\"id\":\"x\",\u{a0}\"n\":1}]",
        "[{\"id\":\"x\",\u{b}\"n\":1}]",
        "[{\"id\":\"x\",\u{c}\"n\":1}]",
        "[\u{2028}{\"id\":\"x\"}]",
    ] {
        check_all_kinds(text);
    }

    // Whitespace everywhere JSON allows it: the same records as compact text.
    let compact = order_batch_text();
    let records: Vec<Value> = serde_json::from_str(&compact).unwrap();
    let pretty = serde_json::to_string_pretty(&records).unwrap();
    let spaced = compact
        .replace(',', " \t, \r\n")
        .replace(':', "\n:\t ")
        .replace('{', "{ ")
        .replace('}', "\r }")
        .replace('[', " [\n")
        .replace(']', "\t]\n");
    let reference = normalize_text(Kind::Order, &compact).unwrap();
    for text in [&pretty, &spaced] {
        assert!(check_text(Kind::Order, text), "whitespace not taken");
        let got = normalize_text(Kind::Order, text).unwrap();
        assert_eq!(got.records, reference.records);
    }

    // Deep nesting: within a field up to the limit, past it, and elsewhere.
    for depth in [
        1, 2, 50, 99, 100, 101, 102, 125, 126, 127, 128, 129, 200, 1000,
    ] {
        let open = "[".repeat(depth);
        let close = "]".repeat(depth);
        let objects = r#"{"a":"#.repeat(depth);
        let objects_end = "}".repeat(depth);
        for text in [
            format!(r#"[{{"id":"x","deep":{open}1{close}}}]"#),
            format!(r#"[{{"id":"x","deep":{open}{close}}}]"#),
            format!(r#"[{{"id":"x","deep":{objects}null{objects_end}}}]"#),
            format!(r#"[{{"id":"x","deep":{open}1{close}]"#),
            format!(r#"[{{"id":"x"}},{open}1{close}]"#),
            format!(r#"{open}{{"id":"x"}}{close}"#),
        ] {
            check_text(Kind::Order, &text);
        }
    }
    assert!(check_text(
        Kind::Order,
        &format!(
            r#"[{{"id":"x","deep":{}1{}}}]"#,
            "[".repeat(100),
            "]".repeat(100)
        )
    ));
}

/// Bytes that matter to a JSON scanner, for mutating real event text.
const MUTATIONS: &[&str] = &[
    "\"", "\\", ",", ":", "[", "]", "{", "}", " ", "\n", "\t", "\r", "\u{1}", "\u{1f}", "\u{7f}",
    "0", "1", "9", "-", "+", ".", "e", "E", "u", "n", "t", "f", "x", "é", "\\u", "\\ud800", "null",
    "true", "\"None\"", "[]", "{}", "1e5", "",
];

/// A character boundary of `text` near `at`.
fn boundary(text: &str, mut at: usize) -> usize {
    at %= text.len() + 1;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The bench's event text with a few bytes inserted, replaced or removed anywhere: what
    /// a scanner bug would most likely get wrong (an off-by-one at a token's end, a missed
    /// check) shows up as a difference from the `Value` path.
    #[test]
    fn mutated_event_text_matches(
        edits in prop::collection::vec((any::<usize>(), 0..3u8, 0..MUTATIONS.len(), 0..4usize), 1..4),
        records in 1..4usize,
    ) {
        let all: Vec<Value> = serde_json::from_str(&order_batch_text()).unwrap();
        let mut text = serde_json::to_string(&all[..records]).unwrap();
        for (at, op, m, len) in edits {
            let at = boundary(&text, at);
            let end = boundary(&text, at + len).max(at);
            match op {
                0 => text.insert_str(at, MUTATIONS[m]),
                1 => text.replace_range(at..end, MUTATIONS[m]),
                _ => text.replace_range(at..end, ""),
            }
        }
        check_text(Kind::Order, &text);
        check_text(Kind::Position, &text);
    }
}
