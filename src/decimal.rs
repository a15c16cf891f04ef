//! Exact decimals: a value that came from the exchange as a number can only ever be turned back
//! into the same digits.
//!
//! [`ExactDecimal`] keeps the exchange's text. It is built from a JSON number (read with
//! serde_json's `arbitrary_precision`, so the text never passed through `f64`) or a decimal
//! string, validated by `bigdecimal`, and serialized as a JSON string. Exponent notation
//! (`7.009e-9`) is written out in plain digits when that stays short; `1e400` stays as sent.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Plain-digit expansion is skipped beyond this exponent so `1e999999` cannot allocate a megabyte.
const MAX_EXPANDED_EXPONENT: i64 = 40;

/// A decimal quantity with exactly the exchange's digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExactDecimal(String);

/// Why a value is not a decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal: {0:?}")]
    NotDecimal(String),
    #[error("expected a number or decimal string, got {0}")]
    WrongType(&'static str),
}

impl ExactDecimal {
    /// Parses decimal text (`"2102.94"`, `"-0.5"`, `"7.009e-9"`).
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        Self::digits(text).map(|d| Self(d.into_owned()))
    }

    /// The exact digits [`parse`](Self::parse) keeps for `text`, borrowed when they are
    /// `text` itself (plain digits: no allocation).
    pub fn digits(text: &str) -> Result<Cow<'_, str>, DecimalError> {
        // Nearly every exchange value is plain digits: those need no big-number parse, and
        // the bigdecimal parse was most of the normalizer's time (issue 11).
        if is_plain_decimal(text) {
            return Ok(Cow::Borrowed(text));
        }
        Self::parse_slow(text).map(Cow::Owned)
    }

    fn parse_slow(text: &str) -> Result<String, DecimalError> {
        let bad = || DecimalError::NotDecimal(truncate(text));
        let t = text.trim();
        if t.is_empty() || t.len() > 400 || t != text {
            return Err(bad());
        }
        // bigdecimal accepts forms JSON never sends ("1_000", "+.5"); keep to the JSON grammar.
        let ok_chars = t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
        if !ok_chars || !t.bytes().any(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let value = BigDecimal::from_str(t).map_err(|_| bad())?;
        match exponent_of(t) {
            None => Ok(t.to_string()),
            Some(exp) if exp.abs() <= MAX_EXPANDED_EXPONENT => Ok(plain_digits(&value)),
            Some(_) => Ok(t.to_string()),
        }
    }

    /// Reads a JSON number (exact text) or a decimal string.
    pub fn from_json(value: &Value) -> Result<Self, DecimalError> {
        match value {
            Value::Number(n) => Self::parse(n.as_str()),
            Value::String(s) => Self::parse(s),
            Value::Null => Err(DecimalError::WrongType("null")),
            Value::Bool(_) => Err(DecimalError::WrongType("a boolean")),
            Value::Array(_) => Err(DecimalError::WrongType("an array")),
            Value::Object(_) => Err(DecimalError::WrongType("an object")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Numeric value, for comparisons and arithmetic (`"4"` equals `"4.0"`).
    pub fn to_big(&self) -> BigDecimal {
        // Validated at construction, so this parse succeeds.
        BigDecimal::from_str(&self.0).unwrap_or_default()
    }

    /// True when both denote the same number, whatever the notation.
    pub fn same_value(&self, other: &Self) -> bool {
        self.0 == other.0 || self.to_big() == other.to_big()
    }
}

/// `-?digits(.digits)?` within the length cap: a subset of what the full path accepts and
/// keeps verbatim, so taking this shortcut never changes a result.
fn is_plain_decimal(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || b.len() > 400 {
        return false;
    }
    let (int, frac) = match digits.iter().position(|&c| c == b'.') {
        Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
        None => (digits, None),
    };
    let all_digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    all_digits(int) && frac.is_none_or(all_digits)
}

/// Plain digits. A negative scale is brought to 0 first: bigdecimal writes zero at negative
/// scale with extra zeros (`0.0e+2` would become `"00"`).
fn plain_digits(value: &BigDecimal) -> String {
    if value.fractional_digit_count() < 0 {
        value.with_scale(0).to_plain_string()
    } else {
        value.to_plain_string()
    }
}

/// The exponent of `e`/`E` notation, if any (saturating for absurd exponents).
fn exponent_of(text: &str) -> Option<i64> {
    let pos = text.find(['e', 'E'])?;
    Some(text[pos + 1..].parse::<i64>().unwrap_or(i64::MAX))
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

impl fmt::Display for ExactDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ExactDecimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl From<ExactDecimal> for Value {
    fn from(d: ExactDecimal) -> Value {
        Value::String(d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON number")
    }

    #[test]
    fn numbers_keep_their_digits() {
        for text in [
            "2102.94",
            "20.0",
            "0",
            "4",
            "0.0186072135",
            "84250.5",
            "-0.045",
            "10.0",
        ] {
            assert_eq!(ExactDecimal::from_json(&num(text)).unwrap().as_str(), text);
        }
    }

    #[test]
    fn long_decimals_survive_where_f64_would_not() {
        let text = "265.01745775027309";
        assert_ne!(text.parse::<f64>().unwrap().to_string(), text);
        assert_eq!(ExactDecimal::from_json(&num(text)).unwrap().as_str(), text);
        assert_eq!(
            ExactDecimal::parse("0.1000000000000000055511151231257827")
                .unwrap()
                .as_str(),
            "0.1000000000000000055511151231257827"
        );
    }

    #[test]
    fn exponent_notation_is_written_out() {
        assert_eq!(
            ExactDecimal::from_json(&num("7.009e-9")).unwrap().as_str(),
            "0.000000007009"
        );
        assert_eq!(ExactDecimal::parse("1.5E3").unwrap().as_str(), "1500");
        // Too long to write out: kept in exponent form (serde_json spells the sign).
        assert_eq!(
            ExactDecimal::from_json(&num("1e400")).unwrap().as_str(),
            "1e+400"
        );
    }

    #[test]
    fn rejects_non_decimals() {
        for bad in [
            "abc", "", " 1", "1.2.3", "NaN", "inf", "0x10", "1_000", "--1",
        ] {
            assert!(ExactDecimal::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ExactDecimal::from_json(&Value::Bool(true)).is_err());
        assert!(ExactDecimal::from_json(&Value::Null).is_err());
    }

    #[test]
    fn plain_shortcut_agrees_with_the_full_parse() {
        for text in [
            "0", "-0.045", "84250.5", "007", "1.", ".5", "-", "1.2.3", "1e3", "+1",
        ] {
            if is_plain_decimal(text) {
                assert!(BigDecimal::from_str(text).is_ok(), "{text:?}");
                assert!(exponent_of(text).is_none(), "{text:?}");
            }
        }
        assert!(is_plain_decimal("-0.045") && is_plain_decimal("84250.5"));
        assert!(!is_plain_decimal("1.") && !is_plain_decimal(".5") && !is_plain_decimal("-"));
        assert!(!is_plain_decimal("1e3") && !is_plain_decimal("+1") && !is_plain_decimal("1.2.3"));
        assert!(!is_plain_decimal(&"9".repeat(401)));
        assert_eq!(
            ExactDecimal::parse(&"9".repeat(400))
                .unwrap()
                .as_str()
                .len(),
            400
        );
        assert!(ExactDecimal::parse(&"9".repeat(401)).is_err());
    }

    #[test]
    fn compares_by_value() {
        let a = ExactDecimal::parse("4").unwrap();
        let b = ExactDecimal::parse("4.0").unwrap();
        assert!(a.same_value(&b));
        assert_ne!(a, b);
    }
}
