//! Input: first line = Socket.IO event name, rest = the event argument as JSON text.
//! The argument is normalized as parsed; the rest is also tried as raw `data` text.
#![no_main]

use coindcx_hub::decimal::ExactDecimal;
use coindcx_hub::normalize::{normalize, Normalized};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let (event, rest) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(arg) = serde_json::from_str::<Value>(rest) {
        check(normalize(event, &arg));
    }
    check(normalize(event, &json!({ "data": rest })));
    if let Ok(d) = ExactDecimal::parse(rest) {
        assert!(ExactDecimal::parse(d.as_str()).is_ok(), "{rest:?} -> {d:?}");
    }
});

/// Every record serializes, and every decimal it holds as text parses again unchanged.
fn check(out: Result<Normalized, coindcx_hub::normalize::PayloadError>) {
    let Ok(out) = out else { return };
    for record in &out.records {
        assert!(!record.key.is_empty());
        let text = serde_json::to_string(&record.data).expect("record serializes");
        assert_eq!(text, record.data.as_str(), "written verbatim");
        let back: Value = serde_json::from_str(&text).expect("record re-parses");
        let map = record.data.to_map();
        assert_eq!(serde_json::to_string(&map).unwrap(), text, "as serde_json writes it");
        assert_eq!(back, Value::Object(map.clone()));
        for (name, value) in &map {
            if let Some(d) = record.decimal(name) {
                assert_eq!(Some(d.as_str()), value.as_str());
            }
        }
    }
}
