//! Property tests for exact decimals: digits in, the same digits out, through `ExactDecimal`,
//! `from_json` and a whole `df-order-update` event; exponent forms keep their value; and no
//! input text makes the parsers panic.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use coindcx_hub::decimal::ExactDecimal;
use coindcx_hub::normalize::normalize;
use coindcx_hub::session::answer;
use proptest::prelude::*;
use serde_json::{json, Value};

/// JSON number grammar without exponent, up to about 40 digits on each side.
const PLAIN: &str = r"-?(0|[1-9][0-9]{0,39})(\.[0-9]{1,40})?";

/// `d.ddde±k` with |k| ≤ 40 (either case of `e`, sign optional on positive exponents).
fn exponent_form() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        0u8..10,
        "[0-9]{1,20}",
        prop_oneof![Just("e"), Just("E")],
        prop_oneof![Just("-"), Just("+"), Just("")],
        0u32..=40,
    )
        .prop_map(|(neg, lead, frac, e, sign, k)| {
            format!("{}{lead}.{frac}{e}{sign}{k}", if neg { "-" } else { "" })
        })
}

/// True when `t` is a plain JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`.
fn is_plain(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits)
}

/// The Socket.IO argument of a `df-order-update` carrying one order with `price` = `number`.
fn order_event(number: &str) -> Value {
    let data = format!(
        r#"[{{"id":"3f6c1d2e-8a47-4b0e-9c52-7d1e0a9b4c61","status":"open","price":{number},"updated_at":1741604982805}}]"#
    );
    json!({"event": "df-order-update", "data": data})
}

/// The `price` of the single record that `order_event(number)` normalizes to.
fn normalized_price(number: &str) -> Value {
    let out = normalize("df-order-update", &order_event(number)).expect("event accepted");
    assert!(out.skipped.is_empty(), "skipped: {:?}", out.skipped);
    assert_eq!(out.records.len(), 1);
    out.records[0].data.to_map()["price"].clone()
}

/// Text of a JSON document like the exchange's, from bits that often appear in one.
const JSONISH: &str = r#"[\[\]{}":,.0-9eE+\- a-z\\]{0,80}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn plain_decimal_text_is_kept(t in PLAIN) {
        prop_assert_eq!(ExactDecimal::parse(&t).unwrap().as_str().to_string(), t);
    }

    #[test]
    fn plain_json_number_is_kept(t in PLAIN) {
        let v: Value = serde_json::from_str(&t).unwrap();
        prop_assert!(v.is_number());
        prop_assert_eq!(ExactDecimal::from_json(&v).unwrap().as_str().to_string(), t.clone());
        // And as a decimal string, as REST sends it.
        let from_string = ExactDecimal::from_json(&Value::String(t.clone())).unwrap();
        prop_assert_eq!(from_string.as_str(), t.as_str());
    }

    #[test]
    fn plain_number_survives_a_whole_order_event(t in PLAIN) {
        prop_assert_eq!(normalized_price(&t), Value::String(t.clone()));
        // A price sent as a decimal string comes out the same.
        prop_assert_eq!(normalized_price(&format!("\"{t}\"")), Value::String(t));
    }

    #[test]
    fn exponent_form_becomes_plain_digits_of_equal_value(t in exponent_form()) {
        let want = BigDecimal::from_str(&t).unwrap();
        let check = |got: &str| -> Result<(), TestCaseError> {
            prop_assert!(is_plain(got), "{t:?} -> {got:?} is not plain digits");
            prop_assert_eq!(BigDecimal::from_str(got).unwrap(), want.clone(), "{:?} -> {:?}", t, got);
            Ok(())
        };
        check(ExactDecimal::parse(&t).unwrap().as_str())?;
        let v: Value = serde_json::from_str(&t).unwrap();
        check(ExactDecimal::from_json(&v).unwrap().as_str())?;
        match normalized_price(&t) {
            Value::String(s) => check(&s)?,
            other => prop_assert!(false, "price became {other:?}"),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        exercise(&s);
    }

    #[test]
    fn jsonish_text_never_panics(s in JSONISH) {
        exercise(&s);
    }

    #[test]
    fn arbitrary_record_bodies_never_panic(body in JSONISH, field in "[a-z_]{1,24}") {
        // Text spliced into a record, in the place of a field value.
        let data = format!(r#"[{{"id":"x","{field}":{body}}}]"#);
        for event in ["df-order-update", "df-position-update", "balance-update"] {
            let _ = normalize(event, &json!({"data": data}));
        }
    }
}

/// Every text entry point, fed `s`; only a panic fails.
fn exercise(s: &str) {
    if let Ok(d) = ExactDecimal::parse(s) {
        // Whatever is accepted can be parsed again from its own output.
        assert!(ExactDecimal::parse(d.as_str()).is_ok(), "{s:?} -> {d:?}");
    }
    let _ = answer("e", s);
    for event in ["df-order-update", "df-position-update", "balance-update", s] {
        let _ = normalize(event, &Value::String(s.to_string()));
        let _ = normalize(event, &json!({"data": s}));
        if let Ok(v) = serde_json::from_str::<Value>(s) {
            let _ = ExactDecimal::from_json(&v);
            let _ = normalize(event, &v);
        }
    }
}

/// Found by `exponent_form_becomes_plain_digits_of_equal_value`: zero at a negative scale was
/// written by bigdecimal as `"00"`.
#[test]
fn zero_with_positive_exponent_is_plain_zero() {
    for (text, want) in [
        ("0.0e+2", "0"),
        ("0e5", "0"),
        ("-0.00E3", "0"),
        ("0.000e2", "0.0"),
        ("1.5e3", "1500"),
        ("-2.50e1", "-25.0"),
    ] {
        assert_eq!(ExactDecimal::parse(text).unwrap().as_str(), want, "{text}");
        assert_eq!(normalized_price(text), Value::String(want.into()), "{text}");
    }
}
