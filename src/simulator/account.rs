//! The simulated exchange's state machine: one account, its orders, positions and wallets.
//!
//! Every change returns the stream events it causes ([`Emission`]s, in order), so the caller
//! can publish them while still holding the state lock and the stream never shows two changes
//! out of order. Money is `BigDecimal`, rounded to 8 places where a division happens, and the
//! bookkeeping keeps two invariants that the tests check after every step:
//! `locked_balance = Σ live order margins + Σ position margins`, and
//! `balance + locked_balance` moves only by realized P&L minus fees.

use super::book::{Order, OrderExposure, Position, Side, Status, Wallet};
use super::market::{dec, round8, ticks_to_price, PriceBook, PAIRS};
use super::records;
use bigdecimal::{BigDecimal, Zero};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// Terminal orders kept for the list-orders route; older ones are forgotten.
const TERMINAL_KEPT: usize = 2000;
/// Starting USDT balance of the demo account.
const START_USDT: &str = "10000";

/// One socket event to publish: `event` with its records (one or more).
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub event: &'static str,
    pub records: Vec<Value>,
}

/// An error answered with the exchange's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// A validated create-order request.
pub struct NewOrder {
    pub pair: usize,
    pub side: Side,
    pub market: bool,
    pub price: Option<BigDecimal>,
    pub quantity: BigDecimal,
    pub leverage: Option<u32>,
    pub notification: String,
}

pub struct Exchange {
    pub prices: PriceBook,
    pub(super) orders: HashMap<String, Order>,
    /// Ids of non-terminal orders, oldest first.
    pub(super) live: Vec<String>,
    terminal: VecDeque<String>,
    pub(super) positions: Vec<Position>,
    /// USDT first, then INR (INR is never traded here).
    wallets: Vec<Wallet>,
    pub(super) rng: StdRng,
}

impl Exchange {
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let positions = PAIRS
            .iter()
            .enumerate()
            .map(|(i, p)| Position {
                id: uuid_from(&mut rng),
                pair: i,
                active_pos: dec("0"),
                avg_price: dec("0"),
                locked_margin: dec("0"),
                leverage: p.default_leverage,
                mark_price: ticks_to_price(i, p.start_ticks),
                updated_at: 0,
            })
            .collect();
        let wallet = |currency, balance: &str, rng: &mut StdRng| Wallet {
            id: uuid_from(rng),
            currency_id: uuid_from(rng),
            currency,
            balance: dec(balance),
            locked_balance: dec("0"),
        };
        let wallets = vec![
            wallet("USDT", START_USDT, &mut rng),
            wallet("INR", "0", &mut rng),
        ];
        Exchange {
            prices: PriceBook::new(),
            orders: HashMap::new(),
            live: Vec::new(),
            terminal: VecDeque::new(),
            positions,
            wallets,
            rng,
        }
    }

    /// Stamp every position row with `now` (the rows exist from the start, flat).
    pub fn stamp(&mut self, now: i64) {
        for p in &mut self.positions {
            p.updated_at = now;
        }
    }

    pub fn order(&self, id: &str) -> Option<&Order> {
        self.orders.get(id)
    }

    pub fn wallets(&self) -> &[Wallet] {
        &self.wallets
    }

    /// Every order the list route may show, newest first.
    pub fn orders_newest_first(&self) -> Vec<&Order> {
        let mut all: Vec<&Order> = self.orders.values().collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        all
    }

    pub fn positions_rest(&self) -> Vec<Value> {
        let mut rows: Vec<&Position> = self.positions.iter().collect();
        rows.sort_by_key(|p| PAIRS[p.pair].pair);
        rows.iter()
            .map(|p| records::position_rest(p, &self.exposure(p.pair)))
            .collect()
    }

    /// Place an order: `initial`, then `open` (limit) or `filled` (market) on the stream.
    /// Returns the order as the create response shows it (status `initial`).
    pub fn create(&mut self, req: NewOrder, now: i64) -> Result<(Order, Vec<Emission>), ApiError> {
        let pos_lev = self.positions[req.pair].leverage;
        let has_exposure = !self.positions[req.pair].active_pos.is_zero()
            || self.live.iter().any(|id| self.orders[id].pair == req.pair);
        let leverage = match req.leverage {
            Some(l) if l != pos_lev && has_exposure => {
                return Err(ApiError::new(
                    422,
                    "Order leverage must be equal to position leverage",
                ))
            }
            Some(l) => l,
            None => pos_lev,
        };
        let market_price = self.prices.price(req.pair);
        let price = match (&req.price, req.market) {
            (Some(p), false) => p.clone(),
            _ => market_price.clone(),
        };
        if !req.market && (price < &market_price * dec("0.2") || price > &market_price * dec("5")) {
            return Err(ApiError::new(400, "Price is out of permissible range"));
        }
        let notional = &price * &req.quantity;
        let ideal = round8(
            &(&notional / BigDecimal::from(leverage) + &notional * dec("0.059") / dec("100")),
        );
        if ideal > self.wallets[0].balance {
            return Err(ApiError::new(400, "Insufficient funds"));
        }
        self.positions[req.pair].leverage = leverage;
        let order = Order {
            id: uuid_from(&mut self.rng),
            pair: req.pair,
            side: req.side,
            market: req.market,
            price,
            total: req.quantity.clone(),
            remaining: req.quantity,
            cancelled: dec("0"),
            avg_price: dec("0"),
            fee_amount: dec("0"),
            leverage,
            ideal_margin: ideal.clone(),
            locked_margin: dec("0"),
            status: Status::Initial,
            notification: req.notification,
            display_message: None,
            created_at: now,
            updated_at: now,
            background: false,
        };
        let created = order.clone();
        let id = order.id.clone();
        let mut out = vec![order_event(&order)];
        self.orders.insert(id.clone(), order);
        self.live.push(id.clone());
        // Reserve the margin and rest (or fill at once, for a market order).
        self.wallets[0].lock(&ideal);
        if let Some(o) = self.orders.get_mut(&id) {
            o.locked_margin = ideal;
            o.status = Status::Open;
            o.updated_at = now;
        }
        if req.market {
            let qty = created.total.clone();
            out.extend(self.fill(&id, &qty, now));
        } else {
            out.push(order_event(&self.orders[&id]));
            out.extend(self.account_events(req.pair, now));
        }
        Ok((created, out))
    }

    /// Cancel a live order: `cancelled`, or `partially_cancelled` after a partial fill.
    pub fn cancel(&mut self, id: &str, now: i64) -> Result<Vec<Emission>, ApiError> {
        let Some(o) = self.orders.get_mut(id) else {
            return Err(ApiError::new(404, "Order not found"));
        };
        if o.status.is_terminal() {
            return Err(ApiError::new(404, "Order not found"));
        }
        let release = std::mem::replace(&mut o.locked_margin, dec("0"));
        o.cancelled = std::mem::replace(&mut o.remaining, dec("0"));
        o.status = if o.filled().is_zero() {
            Status::Cancelled
        } else {
            Status::PartiallyCancelled
        };
        o.updated_at = now;
        let pair = o.pair;
        let mut out = vec![order_event(o)];
        self.wallets[0].lock(&-release);
        self.retire(id);
        out.extend(self.account_events(pair, now));
        Ok(out)
    }

    /// Fill `qty` of a live order at its price and move position and wallet accordingly.
    pub(super) fn fill(&mut self, id: &str, qty: &BigDecimal, now: i64) -> Vec<Emission> {
        let Some(o) = self.orders.get_mut(id) else {
            return Vec::new();
        };
        let release = if qty == &o.remaining {
            o.locked_margin.clone()
        } else {
            round8(&(&o.locked_margin * qty / &o.remaining))
        };
        let fee_rate = if o.market { "0.059" } else { "0.0236" };
        let fee = round8(&(qty * &o.price * dec(fee_rate) / dec("100")));
        o.locked_margin -= &release;
        o.fee_amount += &fee;
        o.remaining -= qty;
        o.avg_price = o.price.clone();
        o.updated_at = now;
        o.status = if o.remaining.is_zero() {
            let base = PAIRS[o.pair].base;
            let kind = if o.market { "market" } else { "limit" };
            o.display_message = Some(format!("{base} {kind} {} order filled!", o.side.as_str()));
            Status::Filled
        } else {
            Status::PartiallyFilled
        };
        let (pair, side, price, terminal) =
            (o.pair, o.side, o.price.clone(), o.status.is_terminal());
        let mut out = vec![order_event(o)];
        let w = &mut self.wallets[0];
        w.lock(&-release);
        w.balance -= &fee;
        self.trade_position(pair, side, qty, &price);
        if terminal {
            self.retire(id);
        }
        out.extend(self.account_events(pair, now));
        out
    }

    /// Apply a fill to the pair's position: close against it first, then open with the rest.
    fn trade_position(&mut self, pair: usize, side: Side, qty: &BigDecimal, price: &BigDecimal) {
        let signed = match side {
            Side::Buy => qty.clone(),
            Side::Sell => -qty.clone(),
        };
        let p = &mut self.positions[pair];
        let w = &mut self.wallets[0];
        let size = p.active_pos.abs();
        let mut open_qty = qty.clone();
        if !p.active_pos.is_zero() && (p.active_pos.sign() != signed.sign()) {
            let close = if qty < &size {
                qty.clone()
            } else {
                size.clone()
            };
            let release = if close == size {
                p.locked_margin.clone()
            } else {
                round8(&(&p.locked_margin * &close / &size))
            };
            let direction = if p.active_pos > dec("0") {
                dec("1")
            } else {
                dec("-1")
            };
            let pnl = round8(&(&close * (price - &p.avg_price) * direction));
            p.locked_margin -= &release;
            w.lock(&-release);
            w.balance += pnl;
            p.active_pos += if signed > dec("0") {
                close.clone()
            } else {
                -close.clone()
            };
            if p.active_pos.is_zero() {
                p.avg_price = dec("0");
            }
            open_qty -= close;
        }
        if !open_qty.is_zero() {
            let cur = p.active_pos.abs();
            let margin = round8(&(&open_qty * price / BigDecimal::from(p.leverage)));
            p.avg_price = round8(&((&cur * &p.avg_price + &open_qty * price) / (&cur + &open_qty)));
            p.locked_margin += &margin;
            w.lock(&margin);
            p.active_pos += if signed > dec("0") {
                open_qty
            } else {
                -open_qty
            };
        }
    }

    fn retire(&mut self, id: &str) {
        self.live.retain(|x| x != id);
        self.terminal.push_back(id.to_string());
        while self.terminal.len() > TERMINAL_KEPT {
            if let Some(old) = self.terminal.pop_front() {
                self.orders.remove(&old);
            }
        }
    }

    fn exposure(&self, pair: usize) -> OrderExposure {
        let mut x = OrderExposure {
            inactive_buy: dec("0"),
            inactive_sell: dec("0"),
            locked_order_margin: dec("0"),
        };
        for o in self.live.iter().filter_map(|id| self.orders.get(id)) {
            if o.pair != pair {
                continue;
            }
            match o.side {
                Side::Buy => x.inactive_buy += &o.remaining,
                Side::Sell => x.inactive_sell += &o.remaining,
            }
            x.locked_order_margin += &o.locked_margin;
        }
        x
    }

    /// The position of `pair` and the USDT wallet as they are now.
    pub(super) fn account_events(&mut self, pair: usize, now: i64) -> Vec<Emission> {
        let mark = self.prices.price(pair);
        let exposure = self.exposure(pair);
        let p = &mut self.positions[pair];
        p.mark_price = mark;
        p.updated_at = now;
        let pos = records::position_socket(p, &exposure);
        vec![
            Emission {
                event: "df-position-update",
                records: vec![pos],
            },
            self.balance_event(),
        ]
    }

    fn balance_event(&self) -> Emission {
        Emission {
            event: "balance-update",
            records: vec![records::wallet_socket(&self.wallets[0])],
        }
    }

    /// Sum of live order margins plus position margins (the wallet's locked balance).
    pub fn expected_locked(&self) -> BigDecimal {
        let orders: BigDecimal = self
            .live
            .iter()
            .filter_map(|id| self.orders.get(id))
            .map(|o| o.locked_margin.clone())
            .sum();
        let positions: BigDecimal = self.positions.iter().map(|p| p.locked_margin.clone()).sum();
        orders + positions
    }
}

fn order_event(o: &Order) -> Emission {
    Emission {
        event: "df-order-update",
        records: vec![records::order_socket(o)],
    }
}

/// A v4 UUID drawn from the seeded generator, so a seed repeats the same ids.
pub fn uuid_from(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}
