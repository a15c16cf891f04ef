//! Account state: the latest record per order id, position id and currency.
//!
//! Updated in seq order by the hub task, it answers two questions: "is this record news?"
//! (exact repeats and stale updates are dropped; an order never leaves a terminal status) and
//! "what does a new client need?" (the snapshot). Terminal orders are kept only up to a cap.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::record::{Kind, OrderStatus, Record};

/// How an incoming record relates to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// New or changed: deliver it.
    Changed,
    /// Same id, status and `updated_at` (or identical balance): an exchange repeat.
    Duplicate,
    /// Older than what is held, or an update to a finished order.
    Stale,
}

struct Entry {
    data: Map<String, Value>,
    status: Option<OrderStatus>,
    updated_at: Option<i64>,
    /// When the stream last changed this row (REST results older than this lose).
    changed_at: DateTime<Utc>,
}

pub struct AccountState {
    orders: HashMap<String, Entry>,
    /// Terminal order ids, oldest first, capped.
    terminal: VecDeque<String>,
    terminal_cap: usize,
    positions: HashMap<String, Entry>,
    balances: BTreeMap<String, Entry>,
}

impl AccountState {
    pub fn new(terminal_cap: usize) -> Self {
        AccountState {
            orders: HashMap::new(),
            terminal: VecDeque::new(),
            terminal_cap,
            positions: HashMap::new(),
            balances: BTreeMap::new(),
        }
    }

    /// Decides whether `rec` is news, and if so stores it.
    #[cfg(test)]
    fn apply(&mut self, rec: &Record, at: DateTime<Utc>) -> Apply {
        let verdict = self.judge(rec);
        if verdict == Apply::Changed {
            self.store(rec.clone(), at);
        }
        verdict
    }

    /// Whether `rec` is news: new, changed, or a repeat / stale update to drop.
    pub fn judge(&self, rec: &Record) -> Apply {
        let Some(old) = self.table(rec.kind).get(&rec.key) else {
            return Apply::Changed;
        };
        match rec.kind {
            Kind::Order => {
                if old.status == rec.status && old.updated_at == rec.updated_at {
                    Apply::Duplicate
                } else if old.status.is_some_and(OrderStatus::is_terminal)
                    || older(rec.updated_at, old.updated_at)
                {
                    Apply::Stale
                } else {
                    Apply::Changed
                }
            }
            Kind::Position | Kind::Balance => {
                if old.data == rec.data {
                    Apply::Duplicate
                } else if older(rec.updated_at, old.updated_at) {
                    Apply::Stale
                } else {
                    Apply::Changed
                }
            }
        }
    }

    /// Keeps `rec` as the latest state of its row (after [`judge`](Self::judge) said it is news).
    pub fn store(&mut self, rec: Record, at: DateTime<Utc>) {
        let entry = Entry {
            data: rec.data,
            status: rec.status,
            updated_at: rec.updated_at,
            changed_at: at,
        };
        match rec.kind {
            Kind::Order => {
                let terminal = rec.status.is_some_and(OrderStatus::is_terminal);
                if terminal {
                    self.terminal.push_back(rec.key.clone());
                }
                self.orders.insert(rec.key, entry);
                if terminal {
                    while self.terminal.len() > self.terminal_cap {
                        if let Some(id) = self.terminal.pop_front() {
                            self.orders.remove(&id);
                        }
                    }
                }
            }
            Kind::Position => {
                self.positions.insert(rec.key, entry);
            }
            Kind::Balance => {
                self.balances.insert(rec.key, entry);
            }
        }
    }

    /// Whether a REST record fetched at `fetched_at` should override the state.
    pub fn rest_is_news(&self, rec: &Record, fetched_at: DateTime<Utc>) -> bool {
        match self.table(rec.kind).get(&rec.key) {
            None => true,
            Some(old) if old.changed_at > fetched_at => false,
            Some(old) => match rec.kind {
                Kind::Order => {
                    !old.status.is_some_and(OrderStatus::is_terminal)
                        && newer(rec.updated_at, old.updated_at)
                }
                Kind::Position => newer(rec.updated_at, old.updated_at),
                // Balances carry no timestamp: compare the amounts by value ("4" equals "4.0").
                Kind::Balance => ["balance", "locked_balance"].iter().any(|f| {
                    let a = rec.decimal(f).map(|d| d.to_big());
                    let b = old
                        .data
                        .get(*f)
                        .and_then(Value::as_str)
                        .and_then(|s| crate::decimal::ExactDecimal::parse(s).ok())
                        .map(|d| d.to_big());
                    a != b
                }),
            },
        }
    }

    /// True when the order is held and not terminal.
    pub fn order_is_open(&self, id: &str) -> bool {
        self.orders
            .get(id)
            .is_some_and(|e| !e.status.is_some_and(OrderStatus::is_terminal))
    }

    /// The snapshot payload: open + recent orders, positions, balances, and the seq it reflects.
    pub fn snapshot(&self, seq: u64) -> Value {
        let mut orders: Vec<&Entry> = self.orders.values().collect();
        orders.sort_by_key(|e| std::cmp::Reverse(e.updated_at));
        let mut positions: Vec<&Entry> = self.positions.values().collect();
        positions.sort_by(|a, b| pair_of(a).cmp(pair_of(b)));
        let rows = |v: Vec<&Entry>| {
            Value::Array(
                v.into_iter()
                    .map(|e| Value::Object(e.data.clone()))
                    .collect(),
            )
        };
        serde_json::json!({
            "orders": rows(orders),
            "positions": rows(positions),
            "balances": rows(self.balances.values().collect()),
            "seq": seq,
        })
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.orders.len(),
            self.terminal.len(),
            self.positions.len(),
            self.balances.len(),
        )
    }

    fn table(&self, kind: Kind) -> TableRef<'_> {
        match kind {
            Kind::Order => TableRef::Hash(&self.orders),
            Kind::Position => TableRef::Hash(&self.positions),
            Kind::Balance => TableRef::Tree(&self.balances),
        }
    }
}

enum TableRef<'a> {
    Hash(&'a HashMap<String, Entry>),
    Tree(&'a BTreeMap<String, Entry>),
}

impl<'a> TableRef<'a> {
    fn get(&self, key: &str) -> Option<&'a Entry> {
        match self {
            TableRef::Hash(m) => m.get(key),
            TableRef::Tree(m) => m.get(key),
        }
    }
}

fn pair_of(e: &Entry) -> &str {
    e.data.get("pair").and_then(Value::as_str).unwrap_or("")
}

fn older(new: Option<i64>, old: Option<i64>) -> bool {
    matches!((new, old), (Some(n), Some(o)) if n < o)
}

fn newer(new: Option<i64>, old: Option<i64>) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n > o,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(id: &str, status: &str, updated_at: i64) -> Record {
        Record::from_value(
            Kind::Order,
            json!({"id": id, "status": status, "updated_at": updated_at, "price": 1}),
        )
        .unwrap()
    }

    #[test]
    fn drops_repeats_and_never_leaves_terminal() {
        let mut s = AccountState::new(10);
        let now = Utc::now();
        assert_eq!(s.apply(&order("a", "open", 1), now), Apply::Changed);
        assert_eq!(s.apply(&order("a", "open", 1), now), Apply::Duplicate);
        assert_eq!(
            s.apply(&order("a", "partially_filled", 2), now),
            Apply::Changed
        );
        assert_eq!(s.apply(&order("a", "open", 1), now), Apply::Stale);
        assert_eq!(s.apply(&order("a", "filled", 3), now), Apply::Changed);
        assert_eq!(s.apply(&order("a", "open", 4), now), Apply::Stale);
        assert!(!s.order_is_open("a"));
    }

    #[test]
    fn terminal_orders_are_capped() {
        let mut s = AccountState::new(3);
        let now = Utc::now();
        for i in 0..10 {
            s.apply(&order(&format!("o{i}"), "cancelled", i), now);
        }
        s.apply(&order("live", "open", 1), now);
        assert_eq!(s.counts(), (4, 3, 0, 0));
    }
}
