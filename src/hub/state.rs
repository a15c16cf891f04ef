//! Account state: the latest record per order id, position id and currency.
//!
//! Updated in seq order by the hub task, it answers two questions: "is this record news?"
//! (exact repeats and stale updates are dropped; an order never leaves a terminal status) and
//! "what does a new client need?" (the snapshot). Terminal orders are kept only up to a cap;
//! their ids are remembered much longer ([`FinishedIds`]) so a late repeat stays dropped.
//!
//! It also keeps the shared [`HeldOpen`] set current (the ids it holds as open), which the REST
//! reconcile reads to know which finished orders it must look for.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::finished::{FinishedIds, FINISHED_IDS_KEPT};
use crate::record::{Kind, OrderStatus, Record, RecordData};
use crate::upstream::account::HeldOpen;

/// The field a reconcile adds to an order that the exchange's REST API no longer lists as open
/// and that could not be found among its finished orders either (SPEC §3, README "Reconcile").
pub const RECONCILE_FIELD: &str = "reconcile";
pub const MISSING_FROM_REST: &str = "missing_from_rest";

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

/// The `snapshot` frame's payload (SPEC §3), serialized as it stands.
#[derive(serde::Serialize)]
pub struct Snapshot<'a> {
    pub orders: Vec<&'a RecordData>,
    pub positions: Vec<&'a RecordData>,
    pub balances: Vec<&'a RecordData>,
    pub seq: u64,
    /// The current PnL, where the hub has one to give.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pnl: Option<Value>,
}

struct Entry {
    data: RecordData,
    status: Option<OrderStatus>,
    updated_at: Option<i64>,
    /// When the stream last changed this row (REST results older than this lose).
    changed_at: DateTime<Utc>,
    /// An order a reconcile could not account for: no longer held as open, but a newer update
    /// from the exchange is still accepted.
    missing: bool,
}

impl Entry {
    fn is_finished(&self) -> bool {
        self.missing || self.status.is_some_and(OrderStatus::is_terminal)
    }
}

pub struct AccountState {
    orders: HashMap<String, Entry>,
    /// Terminal (and missing) order ids, oldest first, capped.
    terminal: VecDeque<String>,
    terminal_cap: usize,
    /// Every order id seen terminal, far beyond `terminal_cap`.
    finished: FinishedIds,
    /// The ids of `orders` held as open, shared with the REST reconcile.
    held_open: HeldOpen,
    positions: HashMap<String, Entry>,
    balances: BTreeMap<String, Entry>,
}

impl AccountState {
    pub fn new(terminal_cap: usize) -> Self {
        Self::with_limits(terminal_cap, FINISHED_IDS_KEPT, HeldOpen::default())
    }

    pub fn with_limits(terminal_cap: usize, finished_cap: usize, held_open: HeldOpen) -> Self {
        AccountState {
            orders: HashMap::new(),
            terminal: VecDeque::new(),
            terminal_cap,
            finished: FinishedIds::new(finished_cap),
            held_open,
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
            if rec.kind == Kind::Order && self.finished.contains(&rec.key) {
                // Finished long ago and evicted from the cache: a repeat, not a new order.
                return Apply::Stale;
            }
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
                if old.data.same_fields(&rec.data) {
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
            missing: false,
        };
        match rec.kind {
            Kind::Order => {
                let terminal = rec.status.is_some_and(OrderStatus::is_terminal);
                self.held_open.set(&rec.key, !terminal);
                if terminal {
                    self.finished.insert(&rec.key);
                }
                self.orders.insert(rec.key.clone(), entry);
                if terminal {
                    self.push_finished(rec.key);
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

    /// Queues a finished order for eviction from the snapshot cache, oldest out first.
    fn push_finished(&mut self, id: String) {
        self.terminal.push_back(id);
        while self.terminal.len() > self.terminal_cap {
            if let Some(id) = self.terminal.pop_front() {
                // A missing order that came back to life stays until it finishes again.
                if self.orders.get(&id).is_some_and(Entry::is_finished) {
                    self.orders.remove(&id);
                }
            }
        }
    }

    /// Held-open orders that the REST view accounts for nowhere (`found` holds every id it
    /// listed, open or finished), last changed by the stream before `fetched_at`: each comes
    /// back as its held record plus `"reconcile": "missing_from_rest"`, to be delivered and then
    /// stored with [`mark_missing`](Self::mark_missing). Oldest `updated_at` first.
    pub fn unaccounted_open_orders(
        &self,
        found: &std::collections::HashSet<&str>,
        fetched_at: DateTime<Utc>,
    ) -> Vec<Record> {
        let mut missing: Vec<(&String, &Entry)> = self
            .orders
            .iter()
            .filter(|(id, e)| {
                !e.is_finished() && e.changed_at <= fetched_at && !found.contains(id.as_str())
            })
            .collect();
        missing.sort_by_key(|(id, e)| (e.updated_at, id.as_str()));
        missing
            .into_iter()
            .map(|(id, e)| {
                let mut data = e.data.to_map();
                data.insert(RECONCILE_FIELD.into(), Value::from(MISSING_FROM_REST));
                Record {
                    kind: Kind::Order,
                    key: id.clone(),
                    status: e.status,
                    updated_at: e.updated_at,
                    data: RecordData::from_map(&data),
                    bad_fields: Vec::new(),
                }
            })
            .collect()
    }

    /// Stores an order from [`unaccounted_open_orders`](Self::unaccounted_open_orders): no
    /// longer held as open (nor searched for again), evictable like a finished one.
    pub fn mark_missing(&mut self, rec: Record, at: DateTime<Utc>) {
        let key = rec.key.clone();
        self.store(rec, at);
        if let Some(e) = self.orders.get_mut(&key) {
            e.missing = true;
        }
        self.held_open.set(&key, false);
        self.push_finished(key);
    }

    /// Whether a REST record fetched at `fetched_at` should override the state.
    pub fn rest_is_news(&self, rec: &Record, fetched_at: DateTime<Utc>) -> bool {
        match self.table(rec.kind).get(&rec.key) {
            None if rec.kind == Kind::Order && self.finished.contains(&rec.key) => false,
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
                        .get(f)
                        .as_ref()
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
        self.orders.get(id).is_some_and(|e| !e.is_finished())
    }

    /// The snapshot payload: open + recent orders, positions, balances, and the seq it reflects.
    /// The rows are the held record texts, written as they are (not parsed again per join).
    pub fn snapshot(&self, seq: u64) -> Snapshot<'_> {
        let mut orders: Vec<&Entry> = self.orders.values().collect();
        orders.sort_by_key(|e| std::cmp::Reverse(e.updated_at));
        let mut positions: Vec<(String, &RecordData)> = self
            .positions
            .values()
            .map(|e| (pair_of_data(&e.data), &e.data))
            .collect();
        positions.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            orders: orders.into_iter().map(|e| &e.data).collect(),
            positions: positions.into_iter().map(|(_, data)| data).collect(),
            balances: self.balances.values().map(|e| &e.data).collect(),
            seq,
            pnl: None,
        }
    }

    /// Every held position row, ordered by pair (what the PnL is computed from).
    pub fn position_rows(&self) -> Vec<Map<String, Value>> {
        let mut positions: Vec<Map<String, Value>> =
            self.positions.values().map(|e| e.data.to_map()).collect();
        let id = |m: &Map<String, Value>| {
            m.get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        positions.sort_by(|a, b| pair_of(a).cmp(pair_of(b)).then(id(a).cmp(&id(b))));
        positions
    }

    /// The held balance row of `currency` (`currency_short_name`).
    pub fn balance_row(&self, currency: &str) -> Option<Map<String, Value>> {
        self.balances.get(currency).map(|e| e.data.to_map())
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

/// A position's `pair`, read from its held text ("" when absent).
fn pair_of_data(data: &RecordData) -> String {
    match data.get("pair") {
        Some(Value::String(pair)) => pair,
        _ => String::new(),
    }
}

fn pair_of(row: &Map<String, Value>) -> &str {
    row.get("pair").and_then(Value::as_str).unwrap_or("")
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
