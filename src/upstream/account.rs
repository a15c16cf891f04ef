//! [`AccountSource`] over the signed REST API: what the reconcile compares the stream with.

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};

use super::supervisor::{AccountSource, AccountView, FetchError};
use crate::rest::{RestClient, RestError};

/// Statuses of finished orders, to settle orders that ended while the stream was away.
const TERMINAL: &str = "filled,cancelled,partially_cancelled,rejected";

pub struct RestAccount(pub Arc<RestClient>);

impl AccountSource for RestAccount {
    fn fetch(&self) -> BoxFuture<'static, Result<AccountView, FetchError>> {
        let rest = self.0.clone();
        async move {
            let open_orders = rest.open_orders().await.map_err(fail)?;
            let positions = rest.positions().await.map_err(fail)?;
            let balances = rest.wallets().await.map_err(fail)?;
            let mut recent_terminal_orders = rest
                .list_orders(TERMINAL, "buy", 1, 50)
                .await
                .map_err(fail)?;
            recent_terminal_orders.extend(
                rest.list_orders(TERMINAL, "sell", 1, 50)
                    .await
                    .map_err(fail)?,
            );
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

fn fail(e: RestError) -> FetchError {
    FetchError {
        auth: e.is_auth(),
        message: e.to_string(),
    }
}
