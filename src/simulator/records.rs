//! Writes orders, positions and wallets the way CoinDCX does, field for field.
//!
//! Socket records follow `fixtures/order-update-filled.json` (34 fields, alphabetical),
//! `position-update.json` and `balance-update.json`; REST rows follow `rest-*.json` (Python
//! floats such as `4.0`, the string `"None"` for some nulls). Nothing here is shared with the
//! hub's own models, so a normalizer bug cannot hide behind a matching simulator bug.

use super::book::{Order, OrderExposure, Position, Wallet};
use super::market::{dec, float_text, plain, rest_num, sock_num, PAIRS};
use bigdecimal::BigDecimal;
use serde_json::{json, Map, Value};

const MAKER_FEE: &str = "0.0236";
const TAKER_FEE: &str = "0.059";
/// Maintenance margin rate used for the liquidation price.
pub const MAINTENANCE_RATE: &str = "0.005";

fn opt_str(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn none_str(v: &Option<String>) -> Value {
    Value::String(v.clone().unwrap_or_else(|| "None".to_string()))
}

fn obj(fields: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

/// A `df-order-update` record (socket notation).
pub fn order_socket(o: &Order) -> Value {
    let lev = BigDecimal::from(o.leverage);
    obj(vec![
        ("avg_price", sock_num(&o.avg_price)),
        ("cancelled_quantity", sock_num(&o.cancelled)),
        ("created_at", json!(o.created_at)),
        ("display_message", opt_str(&o.display_message)),
        ("fee_amount", sock_num(&o.fee_amount)),
        ("group_id", Value::Null),
        ("group_status", Value::Null),
        ("id", json!(o.id)),
        ("ideal_margin", sock_num(&o.ideal_margin)),
        ("leverage", sock_num(&lev)),
        ("liquidation_fee", Value::Null),
        ("locked_margin", sock_num(&o.locked_margin)),
        ("maker_fee", sock_num(&dec(MAKER_FEE))),
        ("margin_currency_short_name", json!("USDT")),
        ("metatags", Value::Null),
        ("notification", json!(o.notification)),
        ("order_category", Value::Null),
        ("order_type", json!(order_type(o))),
        ("pair", json!(PAIRS[o.pair].pair)),
        ("position_margin_type", json!("isolated")),
        ("price", sock_num(&o.price)),
        ("remaining_quantity", sock_num(&o.remaining)),
        ("settlement_currency_conversion_price", sock_num(&dec("1"))),
        ("side", json!(o.side.as_str())),
        ("stage", json!("default")),
        ("status", json!(o.status.as_str())),
        ("stop_loss_price", Value::Null),
        ("stop_price", sock_num(&dec("0"))),
        ("stop_trigger_instruction", json!("last_price")),
        ("take_profit_price", Value::Null),
        ("taker_fee", sock_num(&dec(TAKER_FEE))),
        ("total_quantity", sock_num(&o.total)),
        ("trades", json!([])),
        ("updated_at", json!(o.updated_at)),
    ])
}

fn order_type(o: &Order) -> &'static str {
    if o.market {
        "market_order"
    } else {
        "limit_order"
    }
}

/// The create-order response row (`fixtures/rest-create-response.json`).
pub fn order_rest_created(o: &Order) -> Value {
    obj(vec![
        ("id", json!(o.id)),
        ("pair", json!(PAIRS[o.pair].pair)),
        ("side", json!(o.side.as_str())),
        ("status", json!(o.status.as_str())),
        ("order_type", json!(order_type(o))),
        ("notification", json!(o.notification)),
        ("leverage", rest_num(&BigDecimal::from(o.leverage))),
        ("maker_fee", rest_num(&dec(MAKER_FEE))),
        ("taker_fee", rest_num(&dec(TAKER_FEE))),
        ("fee_amount", rest_num(&o.fee_amount)),
        ("price", rest_num(&o.price)),
        ("avg_price", rest_num(&o.avg_price)),
        ("total_quantity", rest_num(&o.total)),
        ("remaining_quantity", rest_num(&o.remaining)),
        ("cancelled_quantity", rest_num(&o.cancelled)),
        ("ideal_margin", rest_num(&o.ideal_margin)),
        ("order_category", json!("None")),
        ("stage", json!("default")),
        ("group_id", json!("None")),
        ("take_profit_price", Value::Null),
        ("stop_loss_price", Value::Null),
        ("liquidation_fee", Value::Null),
        ("position_margin_type", json!("isolated")),
        ("display_message", none_str(&o.display_message)),
        ("group_status", json!("None")),
        ("margin_currency_short_name", json!("USDT")),
        ("settlement_currency_conversion_price", rest_num(&dec("1"))),
        ("created_at", json!(o.created_at)),
        ("updated_at", json!(o.updated_at)),
    ])
}

/// A list-orders row (`fixtures/rest-orders-list.json`).
pub fn order_rest_listed(o: &Order) -> Value {
    obj(vec![
        ("id", json!(o.id)),
        ("pair", json!(PAIRS[o.pair].pair)),
        ("side", json!(o.side.as_str())),
        ("status", json!(o.status.as_str())),
        ("order_type", json!(order_type(o))),
        ("stop_trigger_instruction", json!("last_price")),
        ("notification", json!(o.notification)),
        ("leverage", rest_num(&BigDecimal::from(o.leverage))),
        ("maker_fee", rest_num(&dec(MAKER_FEE))),
        ("taker_fee", rest_num(&dec(TAKER_FEE))),
        ("fee_amount", rest_num(&o.fee_amount)),
        ("price", rest_num(&o.price)),
        ("stop_price", rest_num(&dec("0"))),
        ("avg_price", rest_num(&o.avg_price)),
        ("total_quantity", rest_num(&o.total)),
        ("remaining_quantity", rest_num(&o.remaining)),
        ("cancelled_quantity", rest_num(&o.cancelled)),
        ("ideal_margin", rest_num(&o.ideal_margin)),
        ("locked_margin", rest_num(&o.locked_margin)),
        ("order_category", json!("None")),
        ("stage", json!("default")),
        ("group_id", json!("None")),
        ("group_status", json!("None")),
        ("display_message", none_str(&o.display_message)),
        ("take_profit_price", Value::Null),
        ("stop_loss_price", Value::Null),
        ("liquidation_fee", Value::Null),
        ("metatags", Value::Null),
        ("position_margin_type", json!("isolated")),
        ("trades", json!([])),
        ("margin_currency_short_name", json!("USDT")),
        ("settlement_currency_conversion_price", rest_num(&dec("1"))),
        ("created_at", json!(o.created_at)),
        ("updated_at", json!(o.updated_at)),
    ])
}

/// Liquidation price and maintenance margin of an isolated position (0 when flat).
pub fn risk(p: &Position) -> (BigDecimal, BigDecimal) {
    if p.active_pos == dec("0") {
        return (dec("0"), dec("0"));
    }
    let mm = dec(MAINTENANCE_RATE);
    let inv_lev = dec("1") / BigDecimal::from(p.leverage);
    let factor = if p.active_pos > dec("0") {
        dec("1") - inv_lev + &mm
    } else {
        dec("1") + inv_lev - &mm
    };
    let liq = (&p.avg_price * factor).with_scale_round(2, bigdecimal::RoundingMode::HalfEven);
    let maint = super::market::round8(&(p.active_pos.abs() * &p.mark_price * mm));
    (liq, maint)
}

/// Numbers of a position row, shared by both notations.
fn position_fields(
    p: &Position,
    x: &OrderExposure,
    num: fn(&BigDecimal) -> Value,
) -> Vec<(&'static str, Value)> {
    let (liq, maint) = risk(p);
    vec![
        ("id", json!(p.id)),
        ("pair", json!(PAIRS[p.pair].pair)),
        ("active_pos", num(&p.active_pos)),
        ("inactive_pos_buy", num(&x.inactive_buy)),
        ("inactive_pos_sell", num(&x.inactive_sell)),
        ("avg_price", num(&p.avg_price)),
        ("liquidation_price", num(&liq)),
        ("locked_margin", num(&p.locked_margin)),
        ("locked_user_margin", num(&p.locked_margin)),
        ("locked_order_margin", num(&x.locked_order_margin)),
        ("leverage", num(&BigDecimal::from(p.leverage))),
        ("mark_price", num(&p.mark_price)),
        ("maintenance_margin", num(&maint)),
    ]
}

/// A `df-position-update` record (field order of `position-update.json`).
pub fn position_socket(p: &Position, x: &OrderExposure) -> Value {
    let f = position_fields(p, x, sock_num);
    let mut out: Vec<(&str, Value)> = f[..10].to_vec();
    out.push(("take_profit_trigger", Value::Null));
    out.push(("stop_loss_trigger", Value::Null));
    out.extend(f[10..].iter().cloned());
    out.push(("updated_at", json!(p.updated_at)));
    out.push(("margin_type", json!("isolated")));
    out.push(("margin_currency_short_name", json!("USDT")));
    out.push(("settlement_currency_avg_price", sock_num(&dec("1"))));
    obj(out)
}

/// A positions-list row (`rest-positions.json`; triggers `0.0`).
pub fn position_rest(p: &Position, x: &OrderExposure) -> Value {
    let f = position_fields(p, x, rest_num);
    let mut out: Vec<(&str, Value)> = f[..10].to_vec();
    out.push(("take_profit_trigger", rest_num(&dec("0"))));
    out.push(("stop_loss_trigger", rest_num(&dec("0"))));
    out.push(f[10].clone());
    out.push(f[12].clone());
    out.push(f[11].clone());
    out.push(("margin_type", json!("isolated")));
    out.push(("settlement_currency_avg_price", rest_num(&dec("1"))));
    out.push(("margin_currency_short_name", json!("USDT")));
    out.push(("updated_at", json!(p.updated_at)));
    obj(out)
}

/// A decimal string as balances are written (`"412.39080417"`, `"0.0"`).
fn amount(v: &BigDecimal) -> Value {
    let s = plain(v);
    Value::String(if s.contains('.') { s } else { float_text(v) })
}

/// A `balance-update` record.
pub fn wallet_socket(w: &Wallet) -> Value {
    obj(vec![
        ("id", json!(w.id)),
        ("balance", amount(&w.balance)),
        ("locked_balance", amount(&w.locked_balance)),
        ("currency_id", json!(w.currency_id)),
        ("currency_short_name", json!(w.currency)),
    ])
}

/// A wallets-list row (`rest-wallets.json`).
pub fn wallet_rest(w: &Wallet) -> Value {
    obj(vec![
        ("id", json!(w.id)),
        ("currency_short_name", json!(w.currency)),
        ("balance", amount(&w.balance)),
        ("locked_balance", amount(&w.locked_balance)),
        ("cross_order_margin", json!("0.0")),
        ("cross_user_margin", json!("0.0")),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::book::{Side, Status};
    use super::*;

    fn sample() -> Order {
        Order {
            id: "bf2f3834-e7ac-48c1-b0e5-1110bf4dee0e".into(),
            pair: 0,
            side: Side::Buy,
            market: true,
            price: dec("2102.94"),
            total: dec("0.015"),
            remaining: dec("0"),
            cancelled: dec("0"),
            avg_price: dec("2102.51"),
            fee_amount: dec("0.0186072135"),
            leverage: 4,
            ideal_margin: dec("7.904636019"),
            locked_margin: dec("0"),
            status: Status::Filled,
            notification: "no_notification".into(),
            display_message: Some("ETH market buy order filled!".into()),
            created_at: 1741604982805,
            updated_at: 1741604983355,
            background: false,
        }
    }

    #[test]
    fn socket_order_matches_the_fixture_byte_for_byte() {
        let fixture = include_str!("../../../shared/coindcx/fixtures/order-update-filled.json");
        let arg: Value = serde_json::from_str(fixture).unwrap();
        let expected = arg["data"].as_str().unwrap();
        let ours = serde_json::to_string(&vec![order_socket(&sample())]).unwrap();
        assert_eq!(ours, expected);
    }

    #[test]
    fn rest_rows_have_the_fixture_field_sets() {
        let fx: Value = serde_json::from_str(include_str!(
            "../../../shared/coindcx/fixtures/rest-orders-list.json"
        ))
        .unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&order_rest_listed(&sample())), keys(&fx[0]));
        let fx: Value = serde_json::from_str(include_str!(
            "../../../shared/coindcx/fixtures/rest-create-response.json"
        ))
        .unwrap();
        assert_eq!(keys(&order_rest_created(&sample())), keys(&fx[0]));
        let row = order_rest_created(&sample());
        assert_eq!(serde_json::to_string(&row["leverage"]).unwrap(), "4.0");
        assert_eq!(row["group_id"], "None");
    }
}
