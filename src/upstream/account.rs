//! [`AccountSource`] over the signed REST API: what the reconcile compares the stream with.
//!
//! The open lists are read in full. An order the hub holds as open that is not among them has
//! ended while the stream was away (or is about to be reported): the finished-order lists of
//! both sides are paged, newest first, until every such id is found or [`MAX_TERMINAL_PAGES`]
//! pages of [`TERMINAL_PAGE`] per side have been read. The hub marks whatever is still
//! unaccounted for (see `hub::reports`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt};
use serde_json::Value;

use super::supervisor::{AccountSource, AccountView, FetchError};
use crate::rest::{RestClient, RestError};

/// Statuses of finished orders, to settle orders that ended while the stream was away.
const TERMINAL: &str = "filled,cancelled,partially_cancelled,rejected";
/// Rows per page of the finished-order lists.
pub const TERMINAL_PAGE: u32 = 50;
/// Pages per side read at most in one reconcile (20 × 50 = the 1,000 most recent per side).
pub const MAX_TERMINAL_PAGES: u32 = 20;

/// The order ids the hub holds as open, kept current by the hub's state and read by a
/// reconcile when it decides which finished orders to look for. Cloning shares the set.
#[derive(Clone, Default)]
pub struct HeldOpen(Arc<Mutex<HashSet<String>>>);

impl HeldOpen {
    /// Records whether order `id` is held as open.
    pub fn set(&self, id: &str, open: bool) {
        // A poisoned lock only means another thread panicked mid-update: the set is still usable.
        let mut ids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if open {
            if !ids.contains(id) {
                ids.insert(id.to_string());
            }
        } else {
            ids.remove(id);
        }
    }

    pub fn ids(&self) -> HashSet<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct RestAccount {
    rest: Arc<RestClient>,
    held_open: HeldOpen,
}

impl RestAccount {
    pub fn new(rest: Arc<RestClient>, held_open: HeldOpen) -> Self {
        RestAccount { rest, held_open }
    }
}

impl AccountSource for RestAccount {
    fn fetch(&self) -> BoxFuture<'static, Result<AccountView, FetchError>> {
        let rest = self.rest.clone();
        let held_open = self.held_open.clone();
        async move {
            let open_orders = rest.open_orders().await.map_err(fail)?;
            let positions = rest.positions().await.map_err(fail)?;
            let balances = rest.wallets().await.map_err(fail)?;
            let mut wanted = held_open.ids();
            for o in &open_orders {
                if let Some(id) = o.get("id").and_then(Value::as_str) {
                    wanted.remove(id);
                }
            }
            let recent_terminal_orders = finished_orders(&rest, wanted).await.map_err(fail)?;
            Ok(AccountView {
                open_orders,
                recent_terminal_orders,
                positions,
                balances,
            })
        }
        .boxed()
    }
}

/// Pages the finished-order lists of both sides until every id in `wanted` is seen, a short
/// page ends a side, or the page bound is reached. Returns every row read.
async fn finished_orders(
    rest: &RestClient,
    mut wanted: HashSet<String>,
) -> Result<Vec<Value>, RestError> {
    let mut rows = Vec::new();
    for side in ["buy", "sell"] {
        for page in 1..=MAX_TERMINAL_PAGES {
            if wanted.is_empty() {
                return Ok(rows);
            }
            let got = rest
                .list_orders(TERMINAL, side, page, TERMINAL_PAGE)
                .await?;
            let short = got.len() < TERMINAL_PAGE as usize;
            for o in &got {
                if let Some(id) = o.get("id").and_then(Value::as_str) {
                    wanted.remove(id);
                }
            }
            rows.extend(got);
            if short {
                break;
            }
        }
    }
    if !wanted.is_empty() {
        log::debug!(target: "upstream", "reconcile: {} held-open order(s) found in neither the open nor the finished lists", wanted.len());
    }
    Ok(rows)
}

fn fail(e: RestError) -> FetchError {
    FetchError {
        auth: e.is_auth(),
        message: e.to_string(),
    }
}
