//! Background activity of the simulated market: what one random step does.
//!
//! A step moves one pair's price by a few ticks; resting orders the price has crossed fill
//! (half of what is left, half the time, so `partially_filled` happens); otherwise the step
//! places a limit or market order, cancels one of its own orders, or refreshes the mark
//! price. Orders placed through REST are never cancelled here. Positions are kept small by
//! leaning new orders against them.

use super::account::{Emission, Exchange, NewOrder};
use super::book::Side;
use super::market::{dec, ticks_to_price, PAIRS};
use bigdecimal::BigDecimal;
use rand::Rng;

/// Most background orders resting at once.
const MAX_RESTING: usize = 12;

impl Exchange {
    /// One step of background activity: the price of one pair moves, crossed orders fill,
    /// otherwise an order is placed, cancelled, or the position's mark price is refreshed.
    pub fn step(&mut self, now: i64) -> Vec<Emission> {
        let pair = self.rng.gen_range(0..PAIRS.len());
        self.prices.walk(pair, &mut self.rng);
        let ticks = self.prices.ticks(pair);
        let price = self.prices.price(pair);
        let crossed: Vec<String> = self
            .live
            .iter()
            .filter_map(|id| self.orders.get(id))
            .filter(|o| o.pair == pair && !o.market)
            .filter(|o| match o.side {
                Side::Buy => price <= o.price,
                Side::Sell => price >= o.price,
            })
            .map(|o| o.id.clone())
            .take(2)
            .collect();
        if !crossed.is_empty() {
            let mut out = Vec::new();
            for id in crossed {
                let qty = self.fill_quantity(&id);
                out.extend(self.fill(&id, &qty, now));
            }
            return out;
        }
        let roll: f64 = self.rng.gen();
        let background = self
            .live
            .iter()
            .filter(|id| self.orders[*id].background)
            .count();
        if roll < 0.45 && background < MAX_RESTING {
            if let Some(out) = self.place_background(pair, ticks, false, now) {
                return out;
            }
        } else if roll < 0.55 {
            if let Some(out) = self.place_background(pair, ticks, true, now) {
                return out;
            }
        } else if roll < 0.7 && background > 0 {
            let ids: Vec<String> = self
                .live
                .iter()
                .filter(|id| self.orders[*id].background)
                .cloned()
                .collect();
            let id = ids[self.rng.gen_range(0..ids.len())].clone();
            if let Ok(out) = self.cancel(&id, now) {
                return out;
            }
        }
        self.account_events(pair, now)[..1].to_vec()
    }

    /// Half of what is left (rounded to the quantity step) half the time, else all of it.
    fn fill_quantity(&mut self, id: &str) -> BigDecimal {
        let o = &self.orders[id];
        let step = dec(PAIRS[o.pair].min_qty);
        let steps = (&o.remaining / &step).with_scale(0);
        if steps > dec("1") && self.rng.gen_bool(0.5) {
            let half = (steps / BigDecimal::from(2)).with_scale(0);
            return half * step;
        }
        o.remaining.clone()
    }

    fn place_background(
        &mut self,
        pair: usize,
        ticks: i64,
        market: bool,
        now: i64,
    ) -> Option<Vec<Emission>> {
        let spec = &PAIRS[pair];
        let step = dec(spec.min_qty);
        let pos = &self.positions[pair].active_pos;
        // Lean against a large position so it stays small.
        let side = if pos.abs() > &step * BigDecimal::from(40) {
            if pos > &dec("0") {
                Side::Sell
            } else {
                Side::Buy
            }
        } else if self.rng.gen_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let away = self.rng.gen_range(0..=(spec.start_ticks / 2000).max(2));
        let order_ticks = match side {
            Side::Buy => ticks - away,
            Side::Sell => ticks + away,
        };
        let req = NewOrder {
            pair,
            side,
            market,
            price: Some(ticks_to_price(pair, order_ticks.max(1))),
            quantity: step * BigDecimal::from(self.rng.gen_range(1..=20)),
            leverage: None,
            notification: "no_notification".into(),
        };
        let (created, out) = self.create(req, now).ok()?;
        if let Some(o) = self.orders.get_mut(&created.id) {
            o.background = true;
        }
        Some(out)
    }
}
