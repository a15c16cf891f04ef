//! The public price channel: every second, `currentPrices@futures#update` to the sockets in
//! `currentPrices@futures@rt`, carrying (like the exchange's own example) only the pairs whose
//! price moved since the last update, each with its mark (`mp`) and last (`ls`) price; every
//! [`FULL_EVERY`]th update carries every pair, so a socket that joined late learns them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use socketioxide::SocketIo;

use super::market::{sock_num, PAIRS};
use super::socket::PRICES_ROOM;
use super::{now_ms, Shared};

pub const PRICES_EVENT: &str = "currentPrices@futures#update";
const PERIOD: Duration = Duration::from_secs(1);
const FULL_EVERY: u64 = 5;

pub async fn run(shared: Arc<Shared>, io: SocketIo) {
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: HashMap<usize, i64> = HashMap::new();
    let mut version = 0u64;
    loop {
        ticker.tick().await;
        let full = version.is_multiple_of(FULL_EVERY);
        let moved: Vec<(usize, Value)> = {
            let ex = shared.exchange.lock().unwrap_or_else(|e| e.into_inner());
            let mut moved = Vec::new();
            for i in 0..PAIRS.len() {
                let ticks = ex.prices.ticks(i);
                if sent.insert(i, ticks) != Some(ticks) || full {
                    moved.push((i, sock_num(&ex.prices.price(i))));
                }
            }
            moved
        };
        if moved.is_empty() {
            continue;
        }
        version += 1;
        let mut prices = Map::new();
        for (i, price) in moved {
            prices.insert(PAIRS[i].pair.into(), json!({"mp": price, "ls": price}));
        }
        let now = now_ms();
        let data = json!({"vs": version, "ts": now, "pr": "futures", "pST": now, "prices": prices});
        let arg = json!({"event": PRICES_EVENT, "data": data.to_string()});
        if let Err(e) = io.to(PRICES_ROOM).emit(PRICES_EVENT, &arg).await {
            log::debug!(target: "simulator", "price emit failed for some sockets: {e}");
        }
    }
}
