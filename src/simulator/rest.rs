//! The simulator's futures REST routes, signed and answered like CoinDCX.
//!
//! Checks run in the exchange's order: route and verb (404 `not_found`), API key and
//! HMAC of the exact body bytes (401 `Invalid credentials`), JSON (400 `bad_request`),
//! timestamp within ±10 s (400), then the route's own validation with the exchange's messages.
//! Every failure is the error envelope `{"code","message","status":"error"}`; nothing here
//! panics on input.

use super::account::{ApiError, NewOrder};
use super::book::{Side, Status};
use super::market::{dec, is_multiple, is_pair_format, pair_index, PAIRS};
use super::records;
use super::Shared;
use crate::signing::{constant_time_eq, sign};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bigdecimal::BigDecimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::Arc;

const BASE: &str = "/exchange/v1/derivatives/futures";
/// Allowed distance between the request's `timestamp` and the simulator's clock.
const SKEW_MS: u64 = 10_000;

fn envelope(status: u16, message: &str) -> Response {
    let mut body = json!({"code": status, "message": message, "status": "error"});
    if status == 401 {
        body["errorCode"] = json!("BFF-AUTH-001");
    }
    json_response(status, &body)
}

fn json_response(status: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string());
    (code, [("content-type", "application/json")], text).into_response()
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        envelope(e.status, &e.message)
    }
}

#[derive(Clone, Copy)]
enum Route {
    Create,
    Cancel,
    List,
    Positions,
    Wallets,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(BASE)?;
    let rest = rest.trim_end_matches('/');
    match (method.as_str(), rest) {
        ("POST", "/orders/create") => Some(Route::Create),
        ("POST", "/orders/cancel") => Some(Route::Cancel),
        ("POST", "/orders") => Some(Route::List),
        ("POST", "/positions") => Some(Route::Positions),
        ("GET", "/wallets") => Some(Route::Wallets),
        _ => None,
    }
}

/// The single entry point for every non-Socket.IO request.
pub async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(route) = route(&method, uri.path()) else {
        return envelope(404, "not_found");
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let key_ok = constant_time_eq(header("x-auth-apikey"), &shared.cfg.api_key);
    let sig_ok = constant_time_eq(
        header("x-auth-signature"),
        &sign(&shared.cfg.api_secret, &body),
    );
    if !(key_ok & sig_ok) {
        return envelope(401, "Invalid credentials");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return envelope(400, "bad_request");
    };
    let Some(ts) = req.get("timestamp").and_then(as_i64) else {
        return envelope(400, "Invalid Request.");
    };
    let now = super::now_ms();
    if now.abs_diff(ts) > SKEW_MS {
        return envelope(
            400,
            "Request timestamp is outside the permitted window of 10 seconds",
        );
    }
    let result = match route {
        Route::Create => create(&shared, &req, now),
        Route::Cancel => cancel(&shared, &req, now),
        Route::List => list(&shared, &req),
        Route::Positions => positions(&shared, &req),
        Route::Wallets => Ok(wallets(&shared)),
    };
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => e.into(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A decimal given as a JSON number or a string (the docs send `price` as a string).
fn decimal(v: &Value) -> Option<BigDecimal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    // Refuse absurd exponents (`1e999999999`): arithmetic on them would allocate without bound.
    BigDecimal::from_str(&text)
        .ok()
        .filter(|d| d.as_bigint_and_exponent().1.abs() <= 40 && d.digits() <= 40)
}

fn bad(status: u16, message: &str) -> ApiError {
    ApiError::new(status, message)
}

/// Static validation of the nested `order` object (the state checks are in `Exchange`).
pub fn parse_order(order: &Value) -> Result<NewOrder, ApiError> {
    let field = |k: &str| order.get(k).filter(|v| !v.is_null());
    let text = |k: &str| field(k).and_then(Value::as_str);
    let side = text("side")
        .and_then(Side::parse)
        .ok_or_else(|| bad(422, "Invalid side"))?;
    let pair_name = text("pair").ok_or_else(|| bad(422, "Pair can't be empty"))?;
    if !is_pair_format(pair_name) {
        return Err(bad(422, "Invalid pair"));
    }
    let pair = pair_index(pair_name).ok_or_else(|| bad(422, "Instrument not found"))?;
    let spec = &PAIRS[pair];
    let order_type = text("order_type").unwrap_or("");
    let market = match order_type {
        "limit_order" => false,
        "market_order" => true,
        "stop_limit" | "stop_market" | "take_profit_limit" | "take_profit_market" => {
            return Err(bad(422, "Order type is not supported by the simulator"))
        }
        _ => return Err(bad(422, "Invalid order type")),
    };
    if let Some(m) = text("margin_currency_short_name") {
        if m != "USDT" {
            return Err(bad(422, "Invalid margin currency"));
        }
    }
    let quantity = field("total_quantity")
        .and_then(decimal)
        .ok_or_else(|| bad(422, "Quantity can't be empty"))?;
    let min = dec(spec.min_qty);
    if quantity < min {
        return Err(bad(
            422,
            &format!("Quantity should be greater than {}", spec.min_qty),
        ));
    }
    if quantity > dec(spec.max_qty) {
        return Err(bad(
            422,
            &format!(
                "Quantity {} should be less than {}.0",
                quantity.normalized(),
                spec.max_qty
            ),
        ));
    }
    if !is_multiple(&quantity, &min) {
        return Err(bad(
            400,
            &format!("Quantity should be divisible by {}", spec.min_qty),
        ));
    }
    let price = match field("price") {
        Some(v) => Some(decimal(v).ok_or_else(|| bad(400, "Invalid price"))?),
        None => None,
    };
    if !market {
        let p = price
            .as_ref()
            .ok_or_else(|| bad(422, "Price can't be empty for limit_order Order"))?;
        if p <= &dec("0") {
            return Err(bad(400, "Price is out of permissible range"));
        }
        if !is_multiple(p, &dec(spec.price_tick)) {
            return Err(bad(
                400,
                &format!("Price should be divisible by {}", spec.price_tick),
            ));
        }
    }
    let leverage = match field("leverage") {
        None => None,
        Some(v) => {
            let l = decimal(v)
                .filter(|l| l.is_integer() && *l >= dec("1") && *l <= dec("20"))
                .and_then(|l| l.with_scale(0).to_string().parse::<u32>().ok())
                .ok_or_else(|| bad(422, "Invalid leverage"))?;
            Some(l)
        }
    };
    let notification = text("notification")
        .unwrap_or("no_notification")
        .to_string();
    Ok(NewOrder {
        pair,
        side,
        market,
        price,
        quantity,
        leverage,
        notification,
    })
}

fn create(shared: &Shared, req: &Value, now: i64) -> Result<Value, ApiError> {
    let order = req
        .get("order")
        .filter(|o| o.is_object())
        .ok_or_else(|| bad(400, "Invalid Request."))?;
    let new = parse_order(order)?;
    shared.with_exchange(|ex, publish| {
        let (created, emissions) = ex.create(new, now)?;
        publish(emissions);
        Ok(json!([records::order_rest_created(&created)]))
    })
}

fn cancel(shared: &Shared, req: &Value, now: i64) -> Result<Value, ApiError> {
    let id = req
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(422, "Invalid Request"))?;
    shared.with_exchange(|ex, publish| {
        publish(ex.cancel(id, now)?);
        Ok(json!({"message": "success", "status": 200, "code": 200}))
    })
}

/// `page`/`size` are mandatory strings on the exchange.
fn paging(req: &Value, mandatory: bool) -> Result<(usize, usize), ApiError> {
    let get = |k: &str, default: usize| -> Result<usize, ApiError> {
        match req.get(k) {
            Some(Value::String(s)) => s
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad(422, "Invalid Request")),
            None if !mandatory => Ok(default),
            _ => Err(bad(422, "Invalid Request")),
        }
    };
    Ok((get("page", 1)?, get("size", 10)?.min(1000)))
}

fn list(shared: &Shared, req: &Value) -> Result<Value, ApiError> {
    let statuses = match req.get("status") {
        Some(Value::String(s)) => s
            .split(',')
            .map(|x| match x.trim() {
                // Valid filter; the simulator has no stop orders, so it matches nothing.
                "untriggered" => Ok(None),
                other => Status::parse(other)
                    .map(Some)
                    .ok_or_else(|| bad(422, "Invalid Request")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad(422, "Invalid Request")),
    };
    let side = match req.get("side") {
        Some(Value::String(s)) => Side::parse(s).ok_or_else(|| bad(422, "Invalid Request"))?,
        _ => return Err(bad(422, "Invalid Request")),
    };
    let (page, size) = paging(req, true)?;
    shared.with_exchange(|ex, _| {
        let rows: Vec<Value> = ex
            .orders_newest_first()
            .into_iter()
            .filter(|o| o.side == side && statuses.contains(&Some(o.status)))
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .map(records::order_rest_listed)
            .collect();
        Ok(Value::Array(rows))
    })
}

fn positions(shared: &Shared, req: &Value) -> Result<Value, ApiError> {
    let (page, size) = paging(req, false)?;
    let currencies: Vec<String> = match req.get("margin_currency_short_name") {
        None => vec!["USDT".into()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(_) => return Err(bad(422, "Invalid Request")),
    };
    let list = |k: &str| {
        req.get(k).and_then(Value::as_str).map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        })
    };
    let (pairs, ids) = (list("pairs"), list("position_ids"));
    shared.with_exchange(|ex, _| {
        if !currencies.iter().any(|c| c == "USDT") {
            return Ok(json!([]));
        }
        let mut rows = Vec::new();
        for row in ex.positions_rest() {
            let id = row["id"].as_str().unwrap_or_default().to_string();
            let pair = row["pair"].as_str().unwrap_or_default().to_string();
            let wanted = pairs.as_ref().is_none_or(|p| p.contains(&pair))
                && ids.as_ref().is_none_or(|i| i.contains(&id));
            if wanted {
                rows.push(row);
            }
        }
        Ok(Value::Array(
            rows.into_iter()
                .skip((page - 1).saturating_mul(size))
                .take(size)
                .collect(),
        ))
    })
}

fn wallets(shared: &Shared) -> Value {
    shared
        .with_exchange(|ex, _| {
            Ok(Value::Array(
                ex.wallets().iter().map(records::wallet_rest).collect(),
            ))
        })
        .unwrap_or_else(|_: ApiError| json!([]))
}
