//! Signed CoinDCX futures REST client, used by the hub's reconciler and the example script.
//!
//! Every call builds its body once as compact JSON with `timestamp` (epoch ms) first, signs
//! exactly those bytes (HMAC-SHA256, lowercase hex) and sends exactly those bytes, also on the
//! one GET (wallets). Responses are parsed with serde_json's `arbitrary_precision`, so numbers
//! keep the exchange's digits. The secret and the signature are never logged.

use crate::signing::sign;
use serde_json::{Map, Value};
use std::time::Duration;

const FUTURES: &str = "/exchange/v1/derivatives/futures";
/// Page size used when listing everything.
const PAGE_SIZE: u32 = 100;
/// Upper bound on pages, so a misbehaving server cannot keep a listing going forever.
const MAX_PAGES: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The exchange answered with an error status; `message` comes from its envelope.
    #[error("exchange error {status}: {message}")]
    Exchange { status: u16, message: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("bad response: {0}")]
    Decode(String),
}

impl RestError {
    /// True for 401 (`Invalid credentials`): the key or secret is wrong or revoked.
    pub fn is_auth(&self) -> bool {
        matches!(self, RestError::Exchange { status: 401, .. })
    }
}

pub struct RestClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
    api_secret: String,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client for `base_url` (e.g. `https://api.coindcx.com`) with a 10 s timeout.
    pub fn new(base_url: &str, api_key: &str, api_secret: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        RestClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
        }
    }

    /// Place an order; `order` is the nested `"order"` object. Returns the created order.
    pub async fn create_order(&self, order: Value) -> Result<Value, RestError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/orders/create",
                vec![("order", order)],
            )
            .await?;
        match v {
            Value::Array(mut a) if !a.is_empty() => Ok(a.swap_remove(0)),
            Value::Object(_) => Ok(v),
            other => Err(RestError::Decode(format!("create returned {other}"))),
        }
    }

    pub async fn cancel_order(&self, id: &str) -> Result<Value, RestError> {
        self.call(
            reqwest::Method::POST,
            "/orders/cancel",
            vec![("id", Value::String(id.to_string()))],
        )
        .await
    }

    /// One page of orders; `statuses` is the exchange's comma string, `side` `buy`/`sell`.
    pub async fn list_orders(
        &self,
        statuses: &str,
        side: &str,
        page: u32,
        size: u32,
    ) -> Result<Vec<Value>, RestError> {
        let params = vec![
            ("status", Value::String(statuses.to_string())),
            ("side", Value::String(side.to_string())),
            ("page", Value::String(page.to_string())),
            ("size", Value::String(size.to_string())),
            // Both margin currencies: an INR-margined order is as much the account's as a USDT one.
            (
                "margin_currency_short_name",
                serde_json::json!(["USDT", "INR"]),
            ),
        ];
        let v = self.call(reqwest::Method::POST, "/orders", params).await?;
        rows(v)
    }

    /// Every open, partially filled and untriggered order, both sides.
    pub async fn open_orders(&self) -> Result<Vec<Value>, RestError> {
        let mut all = Vec::new();
        for side in ["buy", "sell"] {
            for page in 1..=MAX_PAGES {
                let rows = self
                    .list_orders("open,partially_filled,untriggered", side, page, PAGE_SIZE)
                    .await?;
                let short = rows.len() < PAGE_SIZE as usize;
                all.extend(rows);
                if short {
                    break;
                }
            }
        }
        Ok(all)
    }

    /// Every position row, USDT- and INR-margined.
    pub async fn positions(&self) -> Result<Vec<Value>, RestError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let params = vec![
                ("page", Value::String(page.to_string())),
                ("size", Value::String(PAGE_SIZE.to_string())),
                (
                    "margin_currency_short_name",
                    serde_json::json!(["INR", "USDT"]),
                ),
            ];
            let v = self
                .call(reqwest::Method::POST, "/positions", params)
                .await?;
            let rows = rows(v)?;
            let short = rows.len() < PAGE_SIZE as usize;
            all.extend(rows);
            if short {
                break;
            }
        }
        Ok(all)
    }

    /// Futures wallets (a GET with a signed body).
    pub async fn wallets(&self) -> Result<Vec<Value>, RestError> {
        let v = self.call(reqwest::Method::GET, "/wallets", vec![]).await?;
        rows(v)
    }

    /// Sign and send `{"timestamp":<ms>, params...}` to `FUTURES + path`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        params: Vec<(&str, Value)>,
    ) -> Result<Value, RestError> {
        let body = signed_body(chrono::Utc::now().timestamp_millis(), params);
        let signature = sign(&self.api_secret, body.as_bytes());
        let url = format!("{}{}{}", self.base, FUTURES, path);
        log::debug!(target: "rest", "{method} {url}");
        let resp = self
            .http
            .request(method, &url)
            .header("Content-Type", "application/json")
            .header("X-AUTH-APIKEY", &self.api_key)
            .header("X-AUTH-SIGNATURE", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| RestError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| RestError::Transport(e.without_url().to_string()))?;
        let parsed = serde_json::from_str::<Value>(&text);
        if !(200..300).contains(&status) {
            let message = parsed
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(RestError::Exchange { status, message });
        }
        parsed.map_err(|e| RestError::Decode(format!("{e}: {}", snippet(&text))))
    }
}

/// The compact body text with `timestamp` first, then `params` in the given order.
pub fn signed_body(timestamp_ms: i64, params: Vec<(&str, Value)>) -> String {
    let mut m = Map::new();
    m.insert("timestamp".into(), Value::from(timestamp_ms));
    for (k, v) in params {
        m.insert(k.to_string(), v);
    }
    Value::Object(m).to_string()
}

/// A list response; a bare object (seen from third parties) counts as one row.
fn rows(v: Value) -> Result<Vec<Value>, RestError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(_) => Ok(vec![v]),
        other => Err(RestError::Decode(format!("expected an array, got {other}"))),
    }
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_matches_the_signed_fixture_bytes() {
        let order: Value = serde_json::from_str(
            r#"{"side":"buy","pair":"B-ETH_USDT","order_type":"limit_order","price":"2050","total_quantity":0.02,"leverage":4,"notification":"no_notification","time_in_force":"good_till_cancel","margin_currency_short_name":"USDT"}"#,
        )
        .unwrap();
        let body = signed_body(1741605260000, vec![("order", order)]);
        assert_eq!(body.len(), 251);
        assert_eq!(
            sign("secret", body.as_bytes()),
            "835673988dc0e13a0995e1dcdd21f5e9b80eaf5336d2e89c3256cf688fb66bb8"
        );
        let cancel = signed_body(
            1741605301500,
            vec![("id", json!("9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13"))],
        );
        assert_eq!(
            sign("secret", cancel.as_bytes()),
            "01843081ef29bcb8137504ac5798f19b6c495bd02029a20fc958190b1cfd3752"
        );
        assert_eq!(
            signed_body(1741605000000, vec![]),
            r#"{"timestamp":1741605000000}"#
        );
    }

    #[test]
    fn auth_errors_are_recognised() {
        let e = RestError::Exchange {
            status: 401,
            message: "Invalid credentials".into(),
        };
        assert!(e.is_auth());
        assert_eq!(e.to_string(), "exchange error 401: Invalid credentials");
        assert!(!RestError::Transport("x".into()).is_auth());
    }
}
