//! Live mark prices and unrealized PnL (SPEC §9), derived data: never sequenced, recomputed
//! from the account state and the latest marks whenever a client needs it.
//!
//! - [`Marks`]: the public `currentPrices@futures#update` event merged per pair. Updates are
//!   partial: a field an update lacks keeps its held value (a held mark is never dropped), a
//!   mark that is not a decimal is refused and counted, every other field is kept verbatim.
//! - [`compute`]: per position `(mark − avg_price) × active_pos` (USDT-margined linear
//!   contracts; `active_pos` is negative for a short), the account's total and its equity
//!   (USDT wallet `balance` + `locked_balance` + total), exact decimal arithmetic, rounded
//!   once at the end to [`SCALE`] places, half to even.
//! - [`Throttle`]: at most one `pnl` frame per second per account, and only on change.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use bigdecimal::{BigDecimal, RoundingMode, Zero};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::decimal::ExactDecimal;
use crate::hub::state::AccountState;

/// Decimal places of every PnL and equity value (half to even).
pub const SCALE: i64 = 8;
/// Minimum time between two `pnl` frames of one account.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Pairs held at most (the event is public input: a flood of invented pairs stays bounded).
const MAX_PAIRS: usize = 4096;
/// The wallet equity is counted in (the margin currency of USDT-margined contracts).
const MARGIN_CURRENCY: &str = "USDT";

/// Why a price event was not (fully) taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price event argument has no JSON `data` object")]
    NoData,
    #[error("price event has no `prices` object")]
    NoPrices,
}

#[derive(Default)]
struct PairPrices {
    /// Every field as last sent (merged over updates).
    fields: Map<String, Value>,
    /// `mp` as an exact decimal, when one was ever valid.
    mark: Option<ExactDecimal>,
}

/// The latest prices per pair.
#[derive(Default)]
pub struct Marks {
    pairs: HashMap<String, PairPrices>,
}

/// What one price event changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Pairs whose mark changed.
    pub marks_changed: usize,
    /// `mp` values refused (not decimals); the held mark stays.
    pub bad_marks: usize,
    /// Pairs dropped because [`MAX_PAIRS`] are already held, or not objects.
    pub skipped_pairs: usize,
}

impl Marks {
    /// Merges one `currentPrices@futures#update` argument (`{event, data: "<JSON text>"}`).
    pub fn merge(&mut self, arg: &Value) -> Result<Merged, PriceError> {
        let parsed;
        let data = match arg.get("data") {
            Some(Value::String(text)) => {
                parsed = serde_json::from_str::<Value>(text).map_err(|_| PriceError::NoData)?;
                &parsed
            }
            Some(obj @ Value::Object(_)) => obj,
            _ => return Err(PriceError::NoData),
        };
        let Some(prices) = data.get("prices").and_then(Value::as_object) else {
            return Err(PriceError::NoPrices);
        };
        let mut out = Merged::default();
        for (pair, update) in prices {
            let Some(update) = update.as_object() else {
                out.skipped_pairs += 1;
                continue;
            };
            if !self.pairs.contains_key(pair) && (self.pairs.len() >= MAX_PAIRS || pair.len() > 64)
            {
                out.skipped_pairs += 1;
                continue;
            }
            let held = self.pairs.entry(pair.clone()).or_default();
            for (field, value) in update {
                if field == "mp" {
                    match ExactDecimal::from_json(value) {
                        Ok(mark) => {
                            if held.mark.as_ref().is_none_or(|m| !m.same_value(&mark)) {
                                out.marks_changed += 1;
                            }
                            held.mark = Some(mark);
                        }
                        Err(_) => {
                            out.bad_marks += 1;
                            continue; // the held `mp` (and mark) stay
                        }
                    }
                }
                held.fields.insert(field.clone(), value.clone());
            }
        }
        Ok(out)
    }

    pub fn mark(&self, pair: &str) -> Option<&ExactDecimal> {
        self.pairs.get(pair)?.mark.as_ref()
    }

    /// Every held field of `pair`, verbatim (last value of each).
    pub fn fields(&self, pair: &str) -> Option<&Map<String, Value>> {
        self.pairs.get(pair).map(|p| &p.fields)
    }

    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// `value` at [`SCALE`] places, half to even, as plain digits (`-0.00000000` never appears).
pub fn rounded(value: &BigDecimal) -> String {
    let r = value.with_scale_round(SCALE, RoundingMode::HalfEven);
    if r.is_zero() {
        return BigDecimal::zero().with_scale(SCALE).to_plain_string();
    }
    r.to_plain_string()
}

fn decimal(row: &Map<String, Value>, field: &str) -> Option<BigDecimal> {
    let text = row.get(field)?.as_str()?;
    BigDecimal::from_str(text).ok()
}

/// The `pnl` frame's data (SPEC §9):
/// `{"positions":[{"pair","id","mark_price","unrealized_pnl"}],"unrealized_pnl","equity"}`.
///
/// A position without a mark (or without a typed `avg_price`/`active_pos`) has
/// `unrealized_pnl: null`, not zero; a flat one (`active_pos` 0) makes exactly 0. The totals
/// are `null` while any non-flat position has no PnL (a partial sum would understate the
/// risk); `equity` is also `null` without a USDT wallet.
pub fn compute(state: &AccountState, marks: &Marks) -> Value {
    let mut rows = Vec::new();
    let mut total = Some(BigDecimal::zero());
    for row in state.position_rows() {
        let pair = row.get("pair").and_then(Value::as_str).unwrap_or("");
        let mark = marks.mark(pair);
        let size = decimal(&row, "active_pos");
        let pnl = match (&size, mark, decimal(&row, "avg_price")) {
            (Some(size), _, _) if size.is_zero() => Some(BigDecimal::zero()),
            (Some(size), Some(mark), Some(avg)) => Some((mark.to_big() - avg) * size),
            _ => None,
        };
        match &pnl {
            Some(p) => total = total.map(|t| t + p),
            None => total = None,
        }
        rows.push(json!({
            "pair": pair,
            "id": row.get("id").cloned().unwrap_or(Value::Null),
            "mark_price": mark.map(|m| Value::String(m.as_str().to_string())),
            "unrealized_pnl": pnl.as_ref().map(rounded),
        }));
    }
    let wallet = state.balance_row(MARGIN_CURRENCY).and_then(|b| {
        Some(decimal(&b, "balance")? + decimal(&b, "locked_balance").unwrap_or_default())
    });
    let equity = match (&wallet, &total) {
        (Some(w), Some(t)) => Some(rounded(&(w + t))),
        _ => None,
    };
    json!({
        "positions": rows,
        "unrealized_pnl": total.as_ref().map(rounded),
        "equity": equity,
    })
}

/// When the next `pnl` frame may go out, and what the last one said.
#[derive(Default)]
pub struct Throttle {
    last: Option<Value>,
    last_at: Option<Instant>,
    /// Something an inputs changed since the last check.
    dirty: bool,
}

impl Throttle {
    /// Inputs (marks, positions, balances) changed.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// When to check next: now when allowed, else one [`MIN_INTERVAL`] after the last frame;
    /// `None` when nothing changed.
    pub fn due(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        Some(match self.last_at {
            Some(at) => at + MIN_INTERVAL,
            None => Instant::now(),
        })
    }

    /// Takes `current` if it differs from the last value sent: `Some` = send it now.
    pub fn offer(&mut self, current: Value, now: Instant) -> Option<Value> {
        self.dirty = false;
        if self.last.as_ref() == Some(&current) {
            return None;
        }
        self.last = Some(current.clone());
        self.last_at = Some(now);
        Some(current)
    }

    /// Forgets what was sent (the marks were dropped: the next value is news).
    pub fn reset(&mut self) {
        self.last = None;
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(prices: Value) -> Value {
        json!({"event": "currentPrices@futures#update", "data": json!({"vs": 1, "prices": prices}).to_string()})
    }

    #[test]
    fn partial_updates_merge_and_never_drop_a_held_mark() {
        let mut marks = Marks::default();
        let first = marks
            .merge(&update(
                json!({"B-ETH_USDT": {"mp": 2102.96, "ls": 2103.1, "v": 7}}),
            ))
            .unwrap();
        assert_eq!(first.marks_changed, 1);
        // No `mp`: the mark stays, the other fields are replaced one by one.
        let second = marks
            .merge(&update(json!({"B-ETH_USDT": {"ls": 2104}})))
            .unwrap();
        assert_eq!(second, Merged::default());
        assert_eq!(marks.mark("B-ETH_USDT").unwrap().as_str(), "2102.96");
        let fields = marks.fields("B-ETH_USDT").unwrap();
        assert_eq!(fields["ls"].to_string(), "2104");
        assert_eq!(
            fields["v"].to_string(),
            "7",
            "a field the update lacks is kept"
        );
        // A bad mark is refused and counted; the held one stays.
        let third = marks
            .merge(&update(json!({"B-ETH_USDT": {"mp": "x"}, "B-BTC_USDT": 5})))
            .unwrap();
        assert_eq!((third.bad_marks, third.skipped_pairs), (1, 1));
        assert_eq!(marks.mark("B-ETH_USDT").unwrap().as_str(), "2102.96");
        assert_eq!(marks.len(), 1);
        // The same value in another notation is no change.
        let same = marks
            .merge(&update(json!({"B-ETH_USDT": {"mp": "2102.960"}})))
            .unwrap();
        assert_eq!(same.marks_changed, 0);
        assert_eq!(
            marks.merge(&json!({"data": "{}"})),
            Err(PriceError::NoPrices)
        );
        assert_eq!(
            marks.merge(&json!({"data": "not json"})),
            Err(PriceError::NoData)
        );
    }

    #[test]
    fn rounding_is_half_even_at_eight_places() {
        let r = |s: &str| rounded(&BigDecimal::from_str(s).unwrap());
        assert_eq!(r("0.000000025"), "0.00000002");
        assert_eq!(r("0.000000035"), "0.00000004");
        assert_eq!(r("-0.000000025"), "-0.00000002");
        assert_eq!(r("-0.000000004"), "0.00000000", "no negative zero");
        assert_eq!(r("1.05445"), "1.05445000");
        assert_eq!(r("12"), "12.00000000");
    }

    #[test]
    fn throttle_sends_only_changes_and_not_before_a_second() {
        let mut t = Throttle::default();
        assert_eq!(t.due(), None, "nothing changed");
        t.touch();
        let now = Instant::now();
        assert!(t.due().unwrap() <= Instant::now());
        assert_eq!(t.offer(json!(1), now), Some(json!(1)));
        t.touch();
        assert_eq!(t.due(), Some(now + MIN_INTERVAL));
        assert_eq!(
            t.offer(json!(1), now + MIN_INTERVAL),
            None,
            "same value: nothing"
        );
        assert_eq!(t.due(), None);
        t.touch();
        assert_eq!(t.offer(json!(2), now + MIN_INTERVAL), Some(json!(2)));
    }
}
