//! Instruments, the price walk, and how the simulated exchange writes numbers.
//!
//! Prices move in integer ticks (no floating point anywhere), so every price the simulator
//! prints is an exact multiple of the pair's price increment. The formatting helpers reproduce
//! the two notations CoinDCX uses: the socket writes the shortest number (`4`, `0`, `2102.51`),
//! REST writes Python floats (`4.0`, `0.0`, `2102.51`); balances are decimal strings.

use bigdecimal::{BigDecimal, Zero};
use rand::Rng;
use serde_json::{Number, Value};
use std::str::FromStr;

/// Static facts about one futures instrument.
pub struct PairSpec {
    pub pair: &'static str,
    pub base: &'static str,
    /// Price increment as text, e.g. `0.01`.
    pub price_tick: &'static str,
    /// Minimum quantity, also the quantity increment.
    pub min_qty: &'static str,
    pub max_qty: &'static str,
    /// Starting price in ticks (ETH: 210000 × 0.01 = 2100.00).
    pub start_ticks: i64,
    pub default_leverage: u32,
}

/// The instruments the simulator lists.
pub const PAIRS: &[PairSpec] = &[
    PairSpec {
        pair: "B-ETH_USDT",
        base: "ETH",
        price_tick: "0.01",
        min_qty: "0.001",
        max_qty: "9500",
        start_ticks: 210_000,
        default_leverage: 4,
    },
    PairSpec {
        pair: "B-BTC_USDT",
        base: "BTC",
        price_tick: "0.1",
        min_qty: "0.001",
        max_qty: "500",
        start_ticks: 842_500,
        default_leverage: 5,
    },
    PairSpec {
        pair: "B-SOL_USDT",
        base: "SOL",
        price_tick: "0.01",
        min_qty: "0.01",
        max_qty: "50000",
        start_ticks: 14_000,
        default_leverage: 10,
    },
];

/// Index of `pair` in [`PAIRS`].
pub fn pair_index(pair: &str) -> Option<usize> {
    PAIRS.iter().position(|p| p.pair == pair)
}

/// `B-<BASE>_USDT` with an upper-case alphanumeric base.
pub fn is_pair_format(pair: &str) -> bool {
    match pair
        .strip_prefix("B-")
        .and_then(|r| r.strip_suffix("_USDT"))
    {
        Some(base) => {
            !base.is_empty()
                && base
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }
        None => false,
    }
}

/// Parse a decimal literal we wrote ourselves (constants only).
pub fn dec(text: &str) -> BigDecimal {
    BigDecimal::from_str(text).unwrap_or_else(|_| BigDecimal::zero())
}

/// Current prices of every pair, in ticks, walking randomly but pulled back to the start.
pub struct PriceBook {
    ticks: Vec<i64>,
}

impl PriceBook {
    pub fn new() -> Self {
        PriceBook {
            ticks: PAIRS.iter().map(|p| p.start_ticks).collect(),
        }
    }

    /// One random step of pair `i`: up to ±(0.02 %) with a pull toward the start price, so
    /// ETH stays around 2100 for hours.
    pub fn walk(&mut self, i: usize, rng: &mut impl Rng) {
        let start = PAIRS[i].start_ticks;
        let step_max = (start / 5000).max(1);
        let mut step = rng.gen_range(-step_max..=step_max);
        let drift = self.ticks[i] - start;
        if drift.abs() > start / 50 {
            step = -drift.signum() * step.abs();
        }
        self.ticks[i] = (self.ticks[i] + step).max(1);
    }

    pub fn ticks(&self, i: usize) -> i64 {
        self.ticks[i]
    }

    /// The price of pair `i` as a decimal.
    pub fn price(&self, i: usize) -> BigDecimal {
        ticks_to_price(i, self.ticks[i])
    }
}

impl Default for PriceBook {
    fn default() -> Self {
        Self::new()
    }
}

/// `ticks × price_tick` for pair `i`.
pub fn ticks_to_price(i: usize, ticks: i64) -> BigDecimal {
    BigDecimal::from(ticks) * dec(PAIRS[i].price_tick)
}

/// True when `value` is a whole multiple of `step`.
pub fn is_multiple(value: &BigDecimal, step: &BigDecimal) -> bool {
    if step.is_zero() {
        return false;
    }
    (value / step).is_integer()
}

/// Shortest plain text of a decimal: `4`, `0`, `2102.51` (the socket's notation).
pub fn plain(value: &BigDecimal) -> String {
    if value.is_zero() {
        return "0".to_string();
    }
    value.normalized().to_plain_string()
}

/// Python-float text: always with a fraction (`4.0`, `0.0`, `2102.51`), REST's notation.
pub fn float_text(value: &BigDecimal) -> String {
    let s = plain(value);
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A JSON number with exactly `text` as its digits (serde_json `arbitrary_precision`).
pub fn number(text: &str) -> Value {
    match serde_json::from_str::<Number>(text) {
        Ok(n) => Value::Number(n),
        Err(_) => Value::Null,
    }
}

/// A socket-notation JSON number.
pub fn sock_num(value: &BigDecimal) -> Value {
    number(&plain(value))
}

/// A REST-notation JSON number.
pub fn rest_num(value: &BigDecimal) -> Value {
    number(&float_text(value))
}

/// Round to 8 decimal places, the precision of every amount the simulator stores.
pub fn round8(value: &BigDecimal) -> BigDecimal {
    value.with_scale_round(8, bigdecimal::RoundingMode::HalfEven)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn notations_match_the_exchange() {
        assert_eq!(
            serde_json::to_string(&sock_num(&dec("4.000"))).unwrap(),
            "4"
        );
        assert_eq!(
            serde_json::to_string(&sock_num(&dec("0.0000"))).unwrap(),
            "0"
        );
        assert_eq!(
            serde_json::to_string(&sock_num(&dec("2102.510"))).unwrap(),
            "2102.51"
        );
        assert_eq!(
            serde_json::to_string(&sock_num(&dec("2100.00"))).unwrap(),
            "2100"
        );
        assert_eq!(serde_json::to_string(&rest_num(&dec("4"))).unwrap(), "4.0");
        assert_eq!(serde_json::to_string(&rest_num(&dec("0"))).unwrap(), "0.0");
        assert_eq!(
            serde_json::to_string(&rest_num(&dec("84250.50"))).unwrap(),
            "84250.5"
        );
        assert_eq!(plain(&dec("0.000000007009")), "0.000000007009");
    }

    #[test]
    fn pair_format_and_multiples() {
        assert!(is_pair_format("B-ETH_USDT"));
        assert!(is_pair_format("B-1000PEPE_USDT"));
        assert!(!is_pair_format("ETH_USDT"));
        assert!(!is_pair_format("B-eth_USDT"));
        assert!(!is_pair_format("B-_USDT"));
        assert!(is_multiple(&dec("2050.01"), &dec("0.01")));
        assert!(!is_multiple(&dec("2050.015"), &dec("0.01")));
        assert_eq!(pair_index("B-SOL_USDT"), Some(2));
    }

    #[test]
    fn walk_is_seeded_and_stays_near_start() {
        let mut a = PriceBook::new();
        let mut b = PriceBook::new();
        let mut ra = rand::rngs::StdRng::seed_from_u64(7);
        let mut rb = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100_000 {
            a.walk(0, &mut ra);
            b.walk(0, &mut rb);
        }
        assert_eq!(a.ticks(0), b.ticks(0));
        assert!((a.ticks(0) - 210_000).abs() <= 210_000 / 50 + 42);
    }
}
