//! The normalizer: one exchange Socket.IO event in, typed records out.
//!
//! CoinDCX sends `{"event": name, "data": "<JSON text of an array>"}`. The `data` text is parsed
//! here (with serde_json's `arbitrary_precision`, so numbers keep their digits) and **every**
//! element becomes its own [`Record`], in array order. A bad element is skipped with a reason;
//! the others still go through. Lenient where PROTOCOL.md says to be: `data` that is already an
//! array, or a single object, is accepted too.

use serde_json::Value;

use crate::record::{Kind, Record, RecordError};

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
        Some(Value::String(text)) => parse_array_text(text)?,
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

fn parse_array_text(text: &str) -> Result<Vec<Value>, PayloadError> {
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
