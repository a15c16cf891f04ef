//! Typed account records: one order, position or balance row, with its known fields checked.
//!
//! Each kind has a field table ([`Schema`]): which fields are decimals (become exact-digit
//! strings), which are epoch-ms timestamps (stay integers) and which key identifies the row.
//! Every other field is kept verbatim, so a new exchange field reaches the browser unchanged.
//! To add a decimal field, add its name to the table of its kind.

use serde_json::{Map, Value};

use crate::decimal::ExactDecimal;

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
        match text.to_ascii_lowercase().as_str() {
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

/// One normalized record: its kind, row key and the typed field map sent to browsers.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub kind: Kind,
    /// Order id, position id, or balance currency.
    pub key: String,
    /// Order status (orders only).
    pub status: Option<OrderStatus>,
    /// `updated_at` in epoch ms when present.
    pub updated_at: Option<i64>,
    /// The record: decimals as exact strings, timestamps as integers, the rest verbatim.
    pub data: Map<String, Value>,
    /// Known fields whose value could not be typed (`"stop_price": ""`): they are null in
    /// `data`, and the hub counts them. One bad optional field never costs the whole record.
    pub bad_fields: Vec<String>,
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
            data,
            bad_fields,
        })
    }

    /// The decimal field `name`, if present and not null.
    pub fn decimal(&self, name: &str) -> Option<ExactDecimal> {
        self.data
            .get(name)
            .and_then(|v| v.as_str())
            .and_then(|s| ExactDecimal::parse(s).ok())
    }
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
