//! Invariants of the simulated account, checked from the records it publishes.
//!
//! Over thousands of seeded steps: every fill moves the position by exactly the filled
//! quantity and the wallet total by exactly realized P&L minus the fee; the locked balance is
//! always the sum of live order margins and position margins; no order record follows a
//! terminal status.

use super::account::{Emission, Exchange, NewOrder};
use super::book::Side;
use super::market::{dec, round8};
use super::rest::parse_order;
use bigdecimal::{BigDecimal, Zero};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::str::FromStr;

fn num(v: &Value) -> BigDecimal {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("not a decimal: {other}"),
    };
    BigDecimal::from_str(&text).unwrap()
}

fn filled(o: &Value) -> BigDecimal {
    num(&o["total_quantity"]) - num(&o["remaining_quantity"]) - num(&o["cancelled_quantity"])
}

const TERMINAL: [&str; 4] = ["filled", "cancelled", "partially_cancelled", "rejected"];

#[derive(Default)]
struct Checker {
    orders: HashMap<String, Value>,
    positions: HashMap<String, Value>,
    pending: Vec<(String, BigDecimal, BigDecimal, BigDecimal)>, // pair, signed qty, price, fee
    expected_delta: BigDecimal,
    total: Option<BigDecimal>,
    fills: usize,
    partial_fills: usize,
    cancels: usize,
    records: usize,
}

impl Checker {
    fn apply(&mut self, e: &Emission) {
        for r in &e.records {
            self.records += 1;
            match e.event {
                "df-order-update" => self.order(r),
                "df-position-update" => self.position(r),
                "balance-update" => self.balance(r),
                other => panic!("unexpected event {other}"),
            }
        }
    }

    fn order(&mut self, r: &Value) {
        let id = r["id"].as_str().unwrap().to_string();
        let before = self.orders.get(&id);
        if let Some(prev) = before {
            let s = prev["status"].as_str().unwrap();
            assert!(!TERMINAL.contains(&s), "order {id} changed after {s}");
        }
        let prev_filled = before.map(filled).unwrap_or_else(BigDecimal::zero);
        let prev_fee = before
            .map(|p| num(&p["fee_amount"]))
            .unwrap_or_else(BigDecimal::zero);
        let q = filled(r) - prev_filled;
        assert!(q >= BigDecimal::zero());
        if !q.is_zero() {
            self.fills += 1;
            if r["status"] == "partially_filled" {
                self.partial_fills += 1;
            }
            let signed = if r["side"] == "buy" { q } else { -q };
            let fee = num(&r["fee_amount"]) - prev_fee;
            self.pending.push((
                r["pair"].as_str().unwrap().to_string(),
                signed,
                num(&r["price"]),
                fee,
            ));
        }
        if r["status"] == "cancelled" || r["status"] == "partially_cancelled" {
            self.cancels += 1;
        }
        self.orders.insert(id, r.clone());
    }

    fn position(&mut self, r: &Value) {
        let pair = r["pair"].as_str().unwrap().to_string();
        let (mut pos, avg) = match self.positions.get(&pair) {
            Some(p) => (num(&p["active_pos"]), num(&p["avg_price"])),
            None => (dec("0"), dec("0")),
        };
        let fills: Vec<_> = self
            .pending
            .iter()
            .filter(|f| f.0 == pair)
            .cloned()
            .collect();
        self.pending.retain(|f| f.0 != pair);
        assert!(fills.len() <= 1, "one position record per fill");
        for (_, q, price, fee) in fills {
            if !pos.is_zero() && pos.sign() != q.sign() {
                let close = if q.abs() < pos.abs() {
                    q.abs()
                } else {
                    pos.abs()
                };
                let dir = if pos > dec("0") { dec("1") } else { dec("-1") };
                self.expected_delta += round8(&(&close * (&price - &avg) * dir));
            }
            self.expected_delta -= fee;
            pos += q;
        }
        assert_eq!(
            num(&r["active_pos"]),
            pos,
            "position {pair} moved by the fill"
        );
        self.positions.insert(pair, r.clone());
    }

    fn balance(&mut self, r: &Value) {
        assert_eq!(r["currency_short_name"], "USDT");
        assert!(r["balance"].is_string() && r["locked_balance"].is_string());
        assert!(
            self.pending.is_empty(),
            "every fill is followed by its position"
        );
        let total = num(&r["balance"]) + num(&r["locked_balance"]);
        if let Some(prev) = &self.total {
            assert_eq!(
                total,
                prev + &self.expected_delta,
                "wallet total = P&L - fees"
            );
        }
        self.total = Some(total);
        self.expected_delta = BigDecimal::zero();
        let orders: BigDecimal = self
            .orders
            .values()
            .filter(|o| !TERMINAL.contains(&o["status"].as_str().unwrap()))
            .map(|o| num(&o["locked_margin"]))
            .sum();
        let positions: BigDecimal = self
            .positions
            .values()
            .map(|p| num(&p["locked_margin"]))
            .sum();
        assert_eq!(
            num(&r["locked_balance"]),
            orders + positions,
            "locked = margins"
        );
    }
}

#[test]
fn thousands_of_seeded_steps_keep_the_books_consistent() {
    let mut ex = Exchange::new(42);
    let mut check = Checker::default();
    let mut now = 1_741_605_000_000;
    for _ in 0..5000 {
        now += 7;
        for e in ex.step(now) {
            assert!(!e.records.is_empty());
            check.apply(&e);
        }
        assert_eq!(ex.wallets()[0].locked_balance, ex.expected_locked());
    }
    let positions: Vec<String> = check
        .positions
        .values()
        .map(|p| p["active_pos"].to_string())
        .collect();
    eprintln!(
        "records {} fills {} partial {} cancels {} wallet {:?} positions {positions:?}",
        check.records, check.fills, check.partial_fills, check.cancels, check.total
    );
    assert!(check.records > 5000, "records {}", check.records);
    assert!(check.fills > 100, "fills {}", check.fills);
    assert!(
        check.partial_fills > 10,
        "partial fills {}",
        check.partial_fills
    );
    assert!(check.cancels > 50, "cancels {}", check.cancels);
}

#[test]
fn the_same_seed_gives_the_same_stream() {
    let run = |seed| {
        let mut ex = Exchange::new(seed);
        (0..300)
            .flat_map(|i| ex.step(1_000 + i))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

fn limit(price: &str) -> NewOrder {
    NewOrder {
        pair: 0,
        side: Side::Buy,
        market: false,
        price: Some(dec(price)),
        quantity: dec("0.02"),
        leverage: Some(4),
        notification: "no_notification".into(),
    }
}

#[test]
fn create_then_cancel_publishes_initial_open_cancelled() {
    let mut ex = Exchange::new(1);
    let (created, out) = ex.create(limit("2050"), 1000).unwrap();
    assert_eq!(created.status.as_str(), "initial");
    let statuses: Vec<_> = out
        .iter()
        .filter(|e| e.event == "df-order-update")
        .map(|e| e.records[0]["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["initial", "open"]);
    // 0.02 × 2050 / 4 + 0.059 % of 41 = 10.27419, as in rest-create-response.json.
    assert_eq!(created.ideal_margin, dec("10.27419"));
    let out = ex.cancel(&created.id, 2000).unwrap();
    assert_eq!(out[0].records[0]["status"], "cancelled");
    assert_eq!(out[0].records[0]["cancelled_quantity"].to_string(), "0.02");
    let again = ex.cancel(&created.id, 3000).unwrap_err();
    assert_eq!(
        (again.status, again.message.as_str()),
        (404, "Order not found")
    );
    assert_eq!(ex.wallets()[0].locked_balance, dec("0"));
}

#[test]
fn leverage_must_match_the_position() {
    let mut ex = Exchange::new(1);
    ex.create(limit("2050"), 1000).unwrap();
    let mut other = limit("2051");
    other.leverage = Some(10);
    let err = ex.create(other, 1001).err().unwrap();
    assert_eq!(
        err.message,
        "Order leverage must be equal to position leverage"
    );
}

#[test]
fn position_record_has_the_fixture_fields() {
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../shared/coindcx/fixtures/position-update.json"
    ))
    .unwrap();
    let fx: Value = serde_json::from_str(fixture["data"].as_str().unwrap()).unwrap();
    let mut ex = Exchange::new(3);
    let (_, out) = ex.create(limit("2050"), 1000).unwrap();
    let pos = &out
        .iter()
        .find(|e| e.event == "df-position-update")
        .unwrap()
        .records[0];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(pos), keys(&fx[0]));
    assert_eq!(pos["inactive_pos_buy"].to_string(), "0.02");
    assert_eq!(pos["leverage"].to_string(), "4");
}

#[test]
fn validation_messages_are_the_exchanges() {
    let msg = |o: Value| parse_order(&o).err().map(|e| (e.status, e.message));
    let base = json!({"side":"buy","pair":"B-ETH_USDT","order_type":"limit_order",
        "price":"2050","total_quantity":0.02,"leverage":4});
    assert!(msg(base.clone()).is_none());
    let with = |k: &str, v: Value| {
        let mut o = base.clone();
        o[k] = v;
        o
    };
    assert_eq!(
        msg(with("total_quantity", json!(0.0005))),
        Some((422, "Quantity should be greater than 0.001".into()))
    );
    assert_eq!(
        msg(with("price", json!("2050.005"))),
        Some((400, "Price should be divisible by 0.01".into()))
    );
    assert_eq!(
        msg(with("price", Value::Null)),
        Some((422, "Price can't be empty for limit_order Order".into()))
    );
    assert_eq!(
        msg(with("pair", json!("ETHUSDT"))),
        Some((422, "Invalid pair".into()))
    );
    assert_eq!(
        msg(with("pair", json!("B-XYZ_USDT"))),
        Some((422, "Instrument not found".into()))
    );
    assert!(msg(with("order_type", json!("market_order"))).is_none());
}
