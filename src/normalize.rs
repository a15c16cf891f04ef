//! The normalizer: one exchange Socket.IO event in, typed records out.
//!
//! CoinDCX sends `{"event": name, "data": "<JSON text of an array>"}`. The `data` text is parsed
//! here (with serde_json's `arbitrary_precision`, so numbers keep their digits) and **every**
//! element becomes its own [`Record`], in array order. A bad element is skipped with a reason;
//! the others still go through. Lenient where PROTOCOL.md says to be: `data` that is already an
//! array, or a single object, is accepted too.

use serde_json::Value;

use crate::record::{Kind, Record, RecordError};

pub(crate) mod scan;

/// The records of one event, plus the elements that had to be skipped.
#[derive(Debug)]
pub struct Normalized {
    pub kind: Kind,
    pub records: Vec<Record>,
    /// `(index in the array, reason)` of each skipped element.
    pub skipped: Vec<(usize, RecordError)>,
}

/// Why a whole event was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("unknown event")]
    UnknownEvent,
    #[error("argument is not an object")]
    ArgNotObject,
    #[error("no `data` field")]
    NoData,
    #[error("`data` is not valid JSON: {0}")]
    BadJson(String),
    #[error("`data` is {0}, not an array of records")]
    WrongShape(&'static str),
}

/// Normalizes the first Socket.IO argument `arg` of event `event`.
pub fn normalize(event: &str, arg: &Value) -> Result<Normalized, PayloadError> {
    let kind = Kind::from_event(event).ok_or(PayloadError::UnknownEvent)?;
    let obj = arg.as_object().ok_or(PayloadError::ArgNotObject)?;
    let items = match obj.get("data") {
        None | Some(Value::Null) => return Err(PayloadError::NoData),
        Some(Value::String(text)) => match text_path::normalize_text(kind, text) {
            Some(done) => return Ok(done),
            None => parse_array_text(text)?,
        },
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(one)) => vec![Value::Object(one.clone())],
        Some(Value::Number(_)) => return Err(PayloadError::WrongShape("a number")),
        Some(Value::Bool(_)) => return Err(PayloadError::WrongShape("a boolean")),
    };
    Ok(normalize_records(kind, items))
}

/// Types a list of raw records (socket or REST) of one kind.
pub fn normalize_records(kind: Kind, items: Vec<Value>) -> Normalized {
    let mut records = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match Record::from_value(kind, item) {
            Ok(r) => records.push(r),
            Err(e) => skipped.push((i, e)),
        }
    }
    Normalized {
        kind,
        records,
        skipped,
    }
}

/// The array form straight from its text, without building a `Value` per record: `None` when
/// the text needs the `Value` path to come out exactly as there (it is not an array, is not
/// valid JSON, has an element that is not an object, a record with a repeated key, a deeply
/// nested field, ...). Public for the tests and benches that compare both paths.
#[doc(hidden)]
pub fn normalize_text(kind: Kind, text: &str) -> Option<Normalized> {
    text_path::normalize_text(kind, text)
}

/// The records of the array text scanned in place ([`scan`]): each record's fields as spans of
/// the text, typed and written out as text by [`Record::from_scanned`] (perf: building the
/// `Map<String, Value>` per record, one `String` per key and number, was most of the time, and
/// then serde_json's generic deserializer half of what was left).
mod text_path {
    use super::scan::{Field, Next, Scanner, Unusual};
    use super::Normalized;
    use crate::record::{self, Bail, Kind, Record};

    impl From<Bail> for Unusual {
        fn from(_: Bail) -> Unusual {
            Unusual
        }
    }

    pub fn normalize_text(kind: Kind, text: &str) -> Option<Normalized> {
        records(kind, text).ok()
    }

    fn records(kind: Kind, text: &str) -> Result<Normalized, Unusual> {
        let mut scanner = Scanner::new(text);
        let mut records = Vec::new();
        let mut skipped = Vec::new();
        let mut next = scanner.open_array()?;
        let mut fields: Vec<Field> = Vec::new();
        // The previous record's fields: records of one event mostly share their keys.
        let mut previous: Vec<Field> = Vec::new();
        let mut classes = Vec::new();
        // Each record is written here, then copied to a box of its size (cheaper than
        // shrinking a `String` sized by guess).
        let mut scratch = String::new();
        let mut index = 0;
        while next == Next::Element {
            let object = scanner.object(&mut fields, &previous)?;
            if !object.same_keys {
                if has_duplicates(text, &fields) {
                    return Err(Unusual);
                }
                classes.clear();
                classes.extend(
                    fields
                        .iter()
                        .map(|f| record::classify(kind, &text[f.key.start..f.key.end])),
                );
            }
            match Record::from_scanned(kind, text, &object, &fields, &classes, &mut scratch)? {
                Ok(record) => {
                    if records.capacity() == 0 {
                        // Records of one event are about the same size.
                        let span = object.span.end - object.span.start;
                        records.reserve(text.len() / span.max(1) + 1);
                    }
                    records.push(record);
                }
                Err(e) => skipped.push((index, e)),
            }
            index += 1;
            std::mem::swap(&mut fields, &mut previous);
            next = scanner.after_element()?;
        }
        scanner.finish()?;
        Ok(Normalized {
            kind,
            records,
            skipped,
        })
    }

    /// Whether a key repeats.
    fn has_duplicates(text: &str, fields: &[Field]) -> bool {
        let mut keys: Vec<&str> = fields
            .iter()
            .map(|f| &text[f.key.start..f.key.end])
            .collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

fn parse_array_text(text: &str) -> Result<Vec<Value>, PayloadError> {
    if text.trim_start().starts_with('[') {
        return presized::parse_array(text).map_err(|e| PayloadError::BadJson(e.to_string()));
    }
    // serde_json stops at 128 levels of nesting, so hostile depth is an error, not a stack overflow.
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(Value::Object(one)) => Ok(vec![Value::Object(one)]),
        Ok(Value::String(_)) => Err(PayloadError::WrongShape("a string")),
        Ok(Value::Number(_)) => Err(PayloadError::WrongShape("a number")),
        Ok(Value::Bool(_)) => Err(PayloadError::WrongShape("a boolean")),
        Ok(Value::Null) => Err(PayloadError::NoData),
        Err(e) => Err(PayloadError::BadJson(e.to_string())),
    }
}

/// The array form, with each record's map allocated up front at the size of the record before
/// it (records of one event share their fields): growing `IndexMap`s field by field (rehash,
/// reallocate, free) was a fifth of the normalizer's time (perf, issue 11). Sizing from the
/// previous record, not a constant, keeps a small balance row as small as before. Everything
/// below the record level is an ordinary `Value`.
mod presized {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// The key serde_json (`arbitrary_precision`) uses to pass a number's text through a map.
    const NUMBER_TOKEN: &str = "$serde_json::private::Number";

    pub fn parse_array(text: &str) -> Result<Vec<Value>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let items = de.deserialize_seq(Records)?;
        de.end()?;
        Ok(items)
    }

    struct Records;

    impl<'de> Visitor<'de> for Records {
        type Value = Vec<Value>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of records")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            let mut fields = 0;
            while let Some(item) = seq.next_element_seed(Element(fields))? {
                if let Value::Object(record) = &item {
                    fields = record.len();
                }
                items.push(item);
            }
            Ok(items)
        }
    }

    /// One array element: a record map (pre-sized to this many fields) or any other value as
    /// serde_json builds it.
    struct Element(usize);

    impl<'de> DeserializeSeed<'de> for Element {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
            de.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Element {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<Value>()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let Some(first) = map.next_key::<String>()? else {
                return Ok(Value::Object(Map::new()));
            };
            if first == NUMBER_TOKEN {
                let digits: String = map.next_value()?;
                return digits
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(serde::de::Error::custom);
            }
            let mut record = Map::with_capacity(self.0);
            record.insert(first, map.next_value()?);
            while let Some(key) = map.next_key::<String>()? {
                record.insert(key, map.next_value()?);
            }
            Ok(Value::Object(record))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pre-sized parse builds exactly what serde_json's own `Value` parse builds, field
    /// order and number digits included, and fails where it fails.
    #[test]
    fn presized_parse_matches_serde_json() {
        for text in [
            "[]",
            " [{}]",
            r#"[{"b":1,"a":"x"},{"a":2.50,"b":null,"c":[1,{"d":1e400}]}]"#,
            r#"[1, 0.1000000000000000055511151231257827, -7, "s", true, null, [[]]]"#,
            r#"[{"id":"1","id":"2","x":{"y":{}}}]"#,
        ] {
            let ours = presized::parse_array(text).expect(text);
            let theirs = match serde_json::from_str::<Value>(text).expect(text) {
                Value::Array(items) => items,
                other => panic!("{other}"),
            };
            assert_eq!(ours, theirs, "{text}");
            let keys = |v: &[Value]| -> Vec<Vec<String>> {
                v.iter()
                    .filter_map(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .collect()
            };
            assert_eq!(keys(&ours), keys(&theirs), "{text}");
        }
        for bad in ["[", "[1,]", "[{\"a\":}]", "[1] x", "[{\"a\":1}"] {
            assert!(presized::parse_array(bad).is_err(), "{bad}");
            assert!(matches!(
                parse_array_text(bad),
                Err(PayloadError::BadJson(_))
            ));
        }
    }
}
