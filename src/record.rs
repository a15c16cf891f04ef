//! Typed account records: one order, position or balance row, with its known fields checked.
//!
//! Each kind has a field table ([`Schema`]): which fields are decimals (become exact-digit
//! strings), which are epoch-ms timestamps (stay integers) and which key identifies the row.
//! Every other field is kept verbatim, so a new exchange field reaches the browser unchanged.
//! To add a decimal field, add its name to the table of its kind.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::decimal::ExactDecimal;
use crate::normalize::scan::{Field, Object, Span, Token};

/// The three kinds of account record the private stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Order,
    Position,
    Balance,
}

impl Kind {
    /// The frame `type` for records of this kind.
    pub fn frame_type(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Position => "position",
            Kind::Balance => "balance",
        }
    }

    /// The Socket.IO event that carries this kind.
    pub fn event_name(self) -> &'static str {
        match self {
            Kind::Order => "df-order-update",
            Kind::Position => "df-position-update",
            Kind::Balance => "balance-update",
        }
    }

    pub fn from_event(event: &str) -> Option<Kind> {
        match event {
            "df-order-update" => Some(Kind::Order),
            "df-position-update" => Some(Kind::Position),
            "balance-update" => Some(Kind::Balance),
            _ => None,
        }
    }

    fn schema(self) -> &'static Schema {
        match self {
            Kind::Order => &ORDER,
            Kind::Position => &POSITION,
            Kind::Balance => &BALANCE,
        }
    }
}

/// The known fields of one record kind.
struct Schema {
    /// Field whose string value identifies the row (latest state is kept per key).
    key: &'static str,
    decimals: &'static [&'static str],
    timestamps: &'static [&'static str],
}

const ORDER: Schema = Schema {
    key: "id",
    decimals: &[
        "price",
        "stop_price",
        "avg_price",
        "total_quantity",
        "remaining_quantity",
        "cancelled_quantity",
        "leverage",
        "maker_fee",
        "taker_fee",
        "fee_amount",
        "ideal_margin",
        "locked_margin",
        "liquidation_fee",
        "take_profit_price",
        "stop_loss_price",
        "settlement_currency_conversion_price",
    ],
    timestamps: &["created_at", "updated_at"],
};

const POSITION: Schema = Schema {
    key: "id",
    decimals: &[
        "active_pos",
        "inactive_pos_buy",
        "inactive_pos_sell",
        "avg_price",
        "liquidation_price",
        "locked_margin",
        "locked_user_margin",
        "locked_order_margin",
        "take_profit_trigger",
        "stop_loss_trigger",
        "leverage",
        "mark_price",
        "maintenance_margin",
        "settlement_currency_avg_price",
    ],
    timestamps: &["updated_at"],
};

const BALANCE: Schema = Schema {
    key: "currency_short_name",
    decimals: &[
        "balance",
        "locked_balance",
        "cross_order_margin",
        "cross_user_margin",
    ],
    timestamps: &[],
};

/// Order statuses (compared without regard to case; both spellings of cancelled accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Initial,
    Open,
    PartiallyFilled,
    Untriggered,
    Filled,
    Cancelled,
    PartiallyCancelled,
    Rejected,
    Other,
}

impl OrderStatus {
    pub fn parse(text: &str) -> OrderStatus {
        // Lower-cased on the stack (one status per order record: no allocation); longer
        // text is no known status.
        let mut buf = [0u8; 24];
        let Some(lower) = buf.get_mut(..text.len()) else {
            return OrderStatus::Other;
        };
        lower.copy_from_slice(text.as_bytes());
        lower.make_ascii_lowercase();
        match std::str::from_utf8(lower).unwrap_or("") {
            "initial" | "init" => OrderStatus::Initial,
            "open" => OrderStatus::Open,
            "partially_filled" => OrderStatus::PartiallyFilled,
            "untriggered" => OrderStatus::Untriggered,
            "filled" => OrderStatus::Filled,
            "cancelled" | "canceled" => OrderStatus::Cancelled,
            "partially_cancelled" | "partially_canceled" => OrderStatus::PartiallyCancelled,
            "rejected" => OrderStatus::Rejected,
            _ => OrderStatus::Other,
        }
    }

    /// A terminal order never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::PartiallyCancelled
                | OrderStatus::Rejected
        )
    }
}

/// One normalized record: its kind, row key and the typed record sent to browsers.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub kind: Kind,
    /// Order id, position id, or balance currency.
    pub key: String,
    /// Order status (orders only).
    pub status: Option<OrderStatus>,
    /// `updated_at` in epoch ms when present.
    pub updated_at: Option<i64>,
    /// The record as JSON object text: decimals as exact strings, timestamps as integers, the
    /// rest verbatim, in the exchange's key order. Written once; frames copy it as it is.
    pub data: RecordData,
    /// Known fields whose value could not be typed (`"stop_price": ""`): they are null in
    /// `data`, and the hub counts them. One bad optional field never costs the whole record.
    pub bad_fields: Vec<String>,
}

/// A normalized record's JSON object text, exactly as serde_json writes the record's map
/// (compact, keys unique and in order). It serializes verbatim, so a frame is built from it
/// without re-encoding; the few readers of single fields parse what they need.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordData(Box<str>);

/// serde_json's marker for text to write verbatim (what its own `RawValue` serializes as).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl RecordData {
    /// Only for text that is a compact JSON object as serde_json writes it.
    pub(crate) fn from_json_text(text: String) -> RecordData {
        RecordData(text.into_boxed_str())
    }

    /// The record written as serde_json writes a `Map`.
    pub fn from_map(map: &Map<String, Value>) -> RecordData {
        // Serializing strings, numbers and maps cannot fail.
        RecordData::from_json_text(serde_json::to_string(map).unwrap_or_else(|_| "{}".into()))
    }

    /// The JSON object text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every field, parsed.
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The value of field `name`, parsed, if present.
    pub fn get(&self, name: &str) -> Option<Value> {
        let fields: Vec<(Cow<str>, &RawValue)> = raw_fields(&self.0)?;
        let (_, raw) = fields.into_iter().find(|(k, _)| k == name)?;
        serde_json::from_str(raw.get()).ok()
    }

    /// The same fields and values, whatever the key order (as `Map` equality).
    pub fn same_fields(&self, other: &RecordData) -> bool {
        self.0 == other.0 || self.to_map() == other.to_map()
    }
}

impl std::fmt::Debug for RecordData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RecordData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // What `serde_json::value::RawValue` does: serde_json writes the text verbatim. (A
        // `RawValue` cannot be made from text without parsing it again.)
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        st.serialize_field(RAW_VALUE_TOKEN, &*self.0)?;
        st.end()
    }
}

/// The top-level fields of a JSON object text, borrowed where they can be.
fn raw_fields(text: &str) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    let map: Vec<(Cow<str>, &RawValue)> = serde_json::from_str::<OrderedPairs>(text).ok()?.0;
    Some(map)
}

/// An object's `(key, raw value)` pairs in order (duplicates kept).
struct OrderedPairs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for OrderedPairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = OrderedPairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key_seed(CowKey)? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(OrderedPairs(out))
            }
        }
        de.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON string as `Cow`: borrowed from the input unless it had escapes.
pub(crate) struct CowKey;

impl<'de> serde::de::DeserializeSeed<'de> for CowKey {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CowKey {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Why one record was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0}, not an object")]
    NotObject(&'static str),
    #[error("record has no string `{0}`")]
    MissingKey(&'static str),
    #[error("field `{field}`: {reason}")]
    BadField { field: String, reason: String },
}

impl Record {
    /// Types one exchange record (socket or REST form) of `kind`.
    pub fn from_value(kind: Kind, value: Value) -> Result<Record, RecordError> {
        let mut data = match value {
            Value::Object(map) => map,
            other => return Err(RecordError::NotObject(json_type(&other))),
        };
        let schema = kind.schema();
        let mut bad_fields = Vec::new();
        for (name, field) in data.iter_mut() {
            if let Err(e) = normalize_field(schema, name, field) {
                // The key is needed to place the record; anything else degrades to null.
                if name == schema.key {
                    return Err(e);
                }
                log::debug!(target: "record", "{} record: {e}; kept with the field null", kind.frame_type());
                *field = Value::Null;
                bad_fields.push(name.clone());
            }
        }
        let key = match data.get(schema.key) {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            _ => return Err(RecordError::MissingKey(schema.key)),
        };
        let status = match (kind, data.get("status")) {
            (Kind::Order, Some(Value::String(s))) => Some(OrderStatus::parse(s)),
            _ => None,
        };
        let updated_at = data.get("updated_at").and_then(Value::as_i64);
        Ok(Record {
            kind,
            key,
            status,
            updated_at,
            data: RecordData::from_map(&data),
            bad_fields,
        })
    }

    /// The field `name` as sent to browsers, null when absent (like indexing a `Value`).
    pub fn field(&self, name: &str) -> Value {
        self.data.get(name).unwrap_or(Value::Null)
    }

    /// The decimal field `name`, if present and not null.
    pub fn decimal(&self, name: &str) -> Option<ExactDecimal> {
        self.data
            .get(name)
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|s| ExactDecimal::parse(s).ok())
    }
}

/// The record needs the `Value` path ([`Record::from_value`]) to come out exactly as there:
/// something the text path does not handle (a malformed escape or nested value).
#[derive(Debug)]
pub(crate) struct Bail;

impl Record {
    /// Types one record scanned from `text` (its keys unique and without escapes), writing the
    /// normalized record straight to text: what [`from_value`](Self::from_value) makes of the
    /// same record, without building a map. `Err(Bail)`: use `from_value` for this input.
    /// `classes`: [`classify`] of each field, in order.
    pub(crate) fn from_scanned(
        kind: Kind,
        text: &str,
        object: &Object,
        fields: &[Field],
        classes: &[FieldClass],
        out: &mut String,
    ) -> Result<Result<Record, RecordError>, Bail> {
        let schema = kind.schema();
        out.clear();
        let mut bad_fields = Vec::new();
        let mut key: Option<Cow<str>> = None;
        let mut status = None;
        let mut updated_at = None;
        let mut w = FieldWriter::start(out, text, object);
        for (i, (field, class)) in fields.iter().zip(classes).enumerate() {
            let raw = text
                .as_bytes()
                .get(field.value.start..field.value.end)
                .ok_or(Bail)?;
            // The common cases, from the token and the field's class alone: `Some(quoted)`,
            // the value is written as sent (`false`) or as sent in quotes (a decimal sent as a
            // number). The same answers as the general typing below gives them.
            let quick = match (field.token, class.typing, class.role) {
                (Token::Null, _, _) => Some(false),
                (Token::True | Token::False | Token::Empty, Typing::Verbatim, _) => Some(false),
                (Token::Str, Typing::Verbatim, Role::Other) if raw != b"\"None\"" => Some(false),
                (Token::Number, Typing::Verbatim, Role::Other) => Some(false),
                // Grammar-checked and without exponent: plain digits.
                (Token::Number, Typing::Decimal, Role::Other) if raw.len() <= 400 => Some(true),
                (Token::Number, Typing::Timestamp, Role::Other | Role::UpdatedAt) => {
                    match small_integer(raw) {
                        Some(ms) => {
                            if class.role == Role::UpdatedAt {
                                updated_at = Some(ms);
                            }
                            Some(false)
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            if quick == Some(false) && object.compact {
                continue;
            }
            let value = text.get(field.value.start..field.value.end).ok_or(Bail)?;
            let name = text.get(field.key.start..field.key.end).ok_or(Bail)?;
            if let Some(quoted) = quick {
                if w.open(i == 0, name, field.value, !quoted)? {
                    w.out.push('"');
                    w.out.push_str(value);
                    w.out.push('"');
                }
                continue;
            }
            let typed = match type_token(class.typing, name, field.token, value)? {
                Ok(typed) => typed,
                Err(e) => {
                    if class.role == Role::Key {
                        return Ok(Err(e));
                    }
                    log::debug!(target: "record", "{} record: {e}; kept with the field null", kind.frame_type());
                    bad_fields.push(name.to_string());
                    Typed::Null
                }
            };
            // Whether the value is written as sent.
            let same = match &typed {
                Typed::Null => field.token == Token::Null,
                Typed::Verbatim => true,
                Typed::Str(s, verbatim) => {
                    match class.role {
                        Role::Key => key = Some(s.clone()),
                        Role::Status => status = Some(OrderStatus::parse(s)),
                        Role::UpdatedAt | Role::Other => {}
                    }
                    *verbatim
                }
                // Plain digits of a string without escapes are that string's contents.
                Typed::Decimal(d) => field.token == Token::Str && matches!(d, Cow::Borrowed(_)),
                Typed::Number(n) => {
                    if class.role == Role::UpdatedAt {
                        updated_at = n.parse::<i64>().ok();
                    }
                    matches!(n, Cow::Borrowed(_))
                }
                Typed::Nested(_) => false,
            };
            if !w.open(i == 0, name, field.value, same)? {
                continue;
            }
            match typed {
                Typed::Null => w.out.push_str("null"),
                Typed::Verbatim => w.out.push_str(value),
                Typed::Str(s, _) => w
                    .out
                    .push_str(&serde_json::to_string(&*s).map_err(|_| Bail)?),
                Typed::Decimal(d) => {
                    w.out.push('"');
                    w.out.push_str(&d);
                    w.out.push('"');
                }
                Typed::Number(n) => w.out.push_str(&n),
                Typed::Nested(v) => w.out.push_str(&v),
            }
        }
        w.finish(object)?;
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Ok(Err(RecordError::MissingKey(schema.key)));
        };
        Ok(Ok(Record {
            kind,
            key: key.into_owned(),
            status,
            updated_at,
            data: RecordData(Box::from(out.as_str())),
            bad_fields,
        }))
    }
}

/// Writes one record being normalized: a compact record is copied from its text
/// with only the changed values written in between (`text[copied..]` is not written yet);
/// otherwise each field is written on its own (separator, key, value).
struct FieldWriter<'a> {
    out: &'a mut String,
    text: &'a str,
    compact: bool,
    copied: usize,
}

impl<'a> FieldWriter<'a> {
    fn start(out: &'a mut String, text: &'a str, object: &Object) -> Self {
        if !object.compact {
            out.push('{');
        }
        FieldWriter {
            out,
            text,
            compact: object.compact,
            copied: object.span.start,
        }
    }

    /// The rest of a compact record's text, or the closing brace.
    fn finish(self, object: &Object) -> Result<(), Bail> {
        if self.compact {
            let rest = self.text.get(self.copied..object.span.end).ok_or(Bail)?;
            self.out.push_str(rest);
        } else {
            self.out.push('}');
        }
        Ok(())
    }

    /// Writes what comes before the value of the field at `value` and, when it stays `as_sent`,
    /// the value too. `Ok(true)`: the caller writes the new value next.
    fn open(&mut self, first: bool, name: &str, value: Span, as_sent: bool) -> Result<bool, Bail> {
        if self.compact {
            if as_sent {
                return Ok(false);
            }
            self.out
                .push_str(self.text.get(self.copied..value.start).ok_or(Bail)?);
            self.copied = value.end;
            return Ok(true);
        }
        if !first {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        if as_sent {
            self.out
                .push_str(self.text.get(value.start..value.end).ok_or(Bail)?);
            return Ok(false);
        }
        Ok(true)
    }
}

/// How the text path treats one field (worked out once per key layout: the records of one
/// event share their keys, and comparing each name with the schema tables was a quarter of
/// the time).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldClass {
    typing: Typing,
    role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Typing {
    Decimal,
    Timestamp,
    Verbatim,
}

/// What the record takes from a field besides its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Key,
    /// `status` of an order.
    Status,
    UpdatedAt,
    Other,
}

/// The [`FieldClass`] of field `name` in records of `kind`.
pub(crate) fn classify(kind: Kind, name: &str) -> FieldClass {
    let schema = kind.schema();
    let typing = if schema.decimals.contains(&name) {
        Typing::Decimal
    } else if schema.timestamps.contains(&name) {
        Typing::Timestamp
    } else {
        Typing::Verbatim
    };
    let role = if name == schema.key {
        Role::Key
    } else if name == "status" && kind == Kind::Order {
        Role::Status
    } else if name == "updated_at" {
        Role::UpdatedAt
    } else {
        Role::Other
    };
    FieldClass { typing, role }
}

/// A field's normalized value, as it is written.
enum Typed<'a> {
    Null,
    /// The field's text as sent (`true`, `[]`, ...).
    Verbatim,
    /// A string (decoded); `true`: its text as sent is already how serde_json writes it.
    Str(Cow<'a, str>, bool),
    /// Exact digits.
    Decimal(Cow<'a, str>),
    /// A number's text as serde_json writes it.
    Number(Cow<'a, str>),
    /// A nested array or object as serde_json writes it.
    Nested(String),
}

/// [`normalize_field`] on one scanned value (`text`: its token as sent).
fn type_token<'a>(
    typing: Typing,
    name: &str,
    token: Token,
    text: &'a str,
) -> Result<Result<Typed<'a>, RecordError>, Bail> {
    let bad = |reason: String| {
        Ok(Err(RecordError::BadField {
            field: name.to_string(),
            reason,
        }))
    };
    let value = match token {
        Token::Str => {
            let s = text.get(1..text.len() - 1).ok_or(Bail)?;
            if s == "None" {
                // REST writes null as the string "None" in several fields.
                return Ok(Ok(Typed::Null));
            }
            Typed::Str(Cow::Borrowed(s), true)
        }
        Token::EscapedStr => {
            // serde_json checks the escapes (a lone surrogate, `\x`: the `Value` path's error).
            let s: String = serde_json::from_str(text).map_err(|_| Bail)?;
            if s == "None" {
                return Ok(Ok(Typed::Null));
            }
            Typed::Str(Cow::Owned(s), false)
        }
        Token::Number => Typed::Number(Cow::Borrowed(text)),
        Token::ExpNumber => Typed::Number(Cow::Owned(exp_number(text)?)),
        Token::Null => Typed::Null,
        Token::True | Token::False | Token::Empty => Typed::Verbatim,
        Token::Nested => Typed::Nested(nested(text)?),
    };
    if typing == Typing::Decimal {
        let parsed = match value {
            Typed::Null => return Ok(Ok(Typed::Null)),
            // The scanner checked the number grammar: without exponent that is plain digits.
            Typed::Number(Cow::Borrowed(s)) if s.len() <= 400 => Ok(Cow::Borrowed(s)),
            Typed::Str(Cow::Borrowed(s), _) | Typed::Number(Cow::Borrowed(s)) => {
                ExactDecimal::digits(s)
            }
            Typed::Str(Cow::Owned(s), _) | Typed::Number(Cow::Owned(s)) => {
                ExactDecimal::digits(&s).map(|d| Cow::Owned(d.into_owned()))
            }
            _ => Err(crate::decimal::DecimalError::WrongType(token_type(text))),
        };
        return match parsed {
            Ok(d) => Ok(Ok(Typed::Decimal(d))),
            Err(e) => bad(e.to_string()),
        };
    }
    if typing == Typing::Timestamp {
        let ok = match &value {
            Typed::Null => true,
            Typed::Number(n) => {
                n.parse::<i64>().is_ok()
                    || n.parse::<u64>().is_ok()
                    // A fractional millisecond value is kept as a number, digit for digit.
                    || ExactDecimal::parse(n).is_ok()
            }
            _ => false,
        };
        if !ok {
            return bad(format!("expected epoch ms, got {}", token_type(text)));
        }
    }
    Ok(Ok(value))
}

/// An integer number token (grammar-checked by the scanner) of at most 18 digits, which fits
/// an `i64`: what `str::parse::<i64>` gives for it.
fn small_integer(raw: &[u8]) -> Option<i64> {
    let (negative, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(d - b'0');
    }
    Some(if negative { -value } else { value })
}

/// [`json_type`] of a value from its text.
fn token_type(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// A number with an exponent as serde_json (`arbitrary_precision`) keeps it (`1E5` is
/// `1e+5`... as its `Number` spells it).
fn exp_number(text: &str) -> Result<String, Bail> {
    let n: serde_json::Number = serde_json::from_str(text).map_err(|_| Bail)?;
    Ok(n.as_str().to_string())
}

/// A nested array or object (at most [`MAX_FIELD_DEPTH`](crate::normalize::scan::MAX_FIELD_DEPTH)
/// deep: the scanner checked) parsed by serde_json and re-written as it writes its `Value`.
fn nested(text: &str) -> Result<String, Bail> {
    let value: Value = serde_json::from_str(text).map_err(|_| Bail)?;
    serde_json::to_string(&value).map_err(|_| Bail)
}

fn normalize_field(schema: &Schema, name: &str, field: &mut Value) -> Result<(), RecordError> {
    let bad = |reason: String| RecordError::BadField {
        field: name.to_string(),
        reason,
    };
    // REST writes null as the string "None" in several fields.
    if field.as_str() == Some("None") {
        *field = Value::Null;
        return Ok(());
    }
    if schema.decimals.contains(&name) {
        if !field.is_null() {
            *field = ExactDecimal::from_json(field)
                .map_err(|e| bad(e.to_string()))?
                .into();
        }
    } else if schema.timestamps.contains(&name) {
        match field {
            Value::Null => {}
            Value::Number(n) if n.is_i64() || n.is_u64() => {}
            // A fractional millisecond value is kept as a number, digit for digit.
            Value::Number(n) if ExactDecimal::parse(n.as_str()).is_ok() => {}
            other => return Err(bad(format!("expected epoch ms, got {}", json_type(other)))),
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
