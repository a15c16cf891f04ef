//! The name → per-account hub table and what the routes read across all accounts.

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};

use crate::hub::HubHandle;

/// One served account: its name and its own hub (which owns its own upstream supervisor).
#[derive(Clone)]
pub struct Account {
    pub name: String,
    pub hub: HubHandle,
}

/// A client named an account the hub does not serve (HTTP 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown account")]
pub struct UnknownAccount;

/// Every account, in configuration order; the first is the default. Fixed at start.
#[derive(Clone)]
pub struct Registry {
    accounts: Vec<Account>,
}

impl Registry {
    /// `accounts` must not be empty (the configuration always yields one at least).
    pub fn new(accounts: Vec<Account>) -> Self {
        assert!(!accounts.is_empty(), "a hub serves one account at least");
        Registry { accounts }
    }

    /// The account a client asked for; `None` (no name) = the first. `Err` = unknown name.
    pub fn pick(&self, name: Option<&str>) -> Result<&Account, UnknownAccount> {
        match name {
            None => Ok(&self.accounts[0]),
            Some(n) => self
                .accounts
                .iter()
                .find(|a| a.name == n)
                .ok_or(UnknownAccount),
        }
    }

    pub fn first(&self) -> &Account {
        &self.accounts[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }

    pub fn names(&self) -> Vec<&str> {
        self.accounts.iter().map(|a| a.name.as_str()).collect()
    }

    /// Open sessions over all accounts.
    pub fn active(&self) -> usize {
        self.accounts
            .iter()
            .map(|a| a.hub.status.active.load(Ordering::SeqCst))
            .sum()
    }

    /// `/ws/status`: the first account's document as before (top-level fields unchanged, the
    /// connection count summed over all accounts) plus `accounts: {NAME: {...}}`.
    pub fn status_json(&self) -> Value {
        let mut doc = self.first().hub.status.to_json();
        let mut accounts = Map::new();
        let mut leaders = Map::new();
        for a in &self.accounts {
            let one = a.hub.status.to_json();
            // Cluster mode: each account has its own leader; the top-level view names them all.
            if let Some(leader) = one["cluster"]["leaders"].get(&a.name) {
                leaders.insert(a.name.clone(), leader.clone());
            }
            accounts.insert(
                a.name.clone(),
                json!({
                    "clients": one["active_connections"],
                    "upstream": one["upstream"],
                    "coindcx_connected": one["coindcx_connected"],
                    "seq": one["seq"],
                    "epoch": one["epoch"],
                    "events_total": one["events_total"],
                    "held": one["held"],
                }),
            );
        }
        if doc["cluster"].is_object() {
            doc["cluster"]["leaders"] = Value::Object(leaders);
        }
        doc["active_connections"] = json!(self.active());
        doc["accounts"] = Value::Object(accounts);
        doc
    }

    /// `/readyz`: one account's readiness, or every account's (the first reason that fails).
    pub fn readiness(&self, name: Option<&str>) -> Result<Result<(), String>, UnknownAccount> {
        if let Some(name) = name {
            return Ok(self.pick(Some(name))?.hub.status.readiness());
        }
        let several = self.accounts.len() > 1;
        for a in &self.accounts {
            if let Err(reason) = a.hub.status.readiness() {
                return Ok(Err(if several {
                    format!("account {}: {reason}", a.name)
                } else {
                    reason
                }));
            }
        }
        Ok(Ok(()))
    }

    /// `/metrics` text: one account as before, several with an `account` label.
    pub fn render_metrics(&self) -> String {
        let parts: Vec<(&str, &crate::metrics::Metrics)> = self
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.hub.metrics.as_ref()))
            .collect();
        crate::metrics::render_accounts(&parts)
    }

    /// Tells every account's clients and leaves every upstream, concurrently.
    pub async fn shutdown(&self) {
        let all = self.accounts.iter().map(|a| a.hub.shutdown());
        futures_util::future::join_all(all).await;
    }
}
