//! The REST reconcile settles every order that ended while the upstream was away (issue 10
//! item 4), against the built-in simulator reached through the real Socket.IO client.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use coindcx_hub::rest::RestClient;
use coindcx_hub::simulator::{DEMO_API_KEY, DEMO_API_SECRET};
use common::{start_sim_hub, wait_reconciles, wait_until, Client};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

fn limit(side: &str, price: &str) -> Value {
    json!({"side": side, "pair": "B-ETH_USDT", "order_type": "limit_order", "price": price,
           "total_quantity": 0.001, "notification": "no_notification",
           "time_in_force": "good_till_cancel", "margin_currency_short_name": "USDT"})
}

fn market(side: &str) -> Value {
    json!({"side": side, "pair": "B-ETH_USDT", "order_type": "market_order",
           "total_quantity": 0.001, "notification": "no_notification",
           "margin_currency_short_name": "USDT"})
}

const OPEN_STATUSES: [&str; 4] = ["initial", "open", "partially_filled", "untriggered"];

/// 60 open orders (both sides) cancelled while the upstream was down, behind 100 newer filled
/// ones (more than a first page of 50 per side): after the re-join's reconcile every one of
/// them is `cancelled`, delivered as a reconciled event, and a fresh snapshot holds none open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_that_ended_while_away_are_all_settled() {
    let hub = start_sim_hub(&[("HUB_UPSTREAM_LINGER_MS", "600000")]).await;
    let (mut client, _) = Client::connect_greeted(hub.addr).await;
    let sim = hub.simulator.as_ref().unwrap();
    assert!(wait_until(|| sim.joined_sockets() == 1, T).await);
    wait_reconciles(&hub, 1, T).await;
    let rest = RestClient::new(&sim.url(), DEMO_API_KEY, DEMO_API_SECRET);

    let mut ids = BTreeSet::new();
    for i in 0..60 {
        let (side, price) = if i % 2 == 0 {
            ("buy", "1500.00")
        } else {
            ("sell", "2700.00")
        };
        let o = rest.create_order(limit(side, price)).await.expect("create");
        ids.insert(o["id"].as_str().unwrap().to_string());
    }
    // Follow the stream until the hub holds all 60 as open.
    let mut open = BTreeSet::new();
    while open.len() < ids.len() {
        let f = client.next_json(T).await;
        if f["type"] == "order" && f["data"]["status"] == "open" {
            let id = f["data"]["id"].as_str().unwrap().to_string();
            if ids.contains(&id) {
                open.insert(id);
            }
        }
    }

    sim.set_accepting(false);
    loop {
        let f = client.next_json(T).await;
        if f["type"] == "system" && f["data"]["coindcx_connected"] == false {
            break;
        }
    }
    for id in &ids {
        rest.cancel_order(id).await.expect("cancel while away");
    }
    for i in 0..100 {
        let side = if i % 2 == 0 { "buy" } else { "sell" };
        rest.create_order(market(side)).await.expect("market order");
    }
    sim.set_accepting(true);

    // Every one of the 60 comes back cancelled, reconciled.
    let mut settled = BTreeSet::new();
    while settled.len() < ids.len() {
        let f = client.next_json(T).await;
        if f["type"] != "order" {
            continue;
        }
        let id = f["data"]["id"].as_str().unwrap().to_string();
        if ids.contains(&id) {
            assert_eq!(f["reconciled"], true, "{f}");
            assert_eq!(f["data"]["status"], "cancelled", "{f}");
            assert_eq!(f["data"].get("reconcile"), None, "found, not missing: {f}");
            settled.insert(id);
        }
    }
    wait_reconciles(&hub, 2, T).await;

    let (_, snap) = Client::connect_greeted(hub.addr).await;
    let orders = snap["data"]["orders"].as_array().unwrap();
    let still_open: Vec<&Value> = orders
        .iter()
        .filter(|o| OPEN_STATUSES.contains(&o["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(still_open.len(), 0, "{still_open:?}");
    let cancelled = orders
        .iter()
        .filter(|o| ids.contains(o["id"].as_str().unwrap()) && o["status"] == "cancelled")
        .count();
    assert_eq!(cancelled, 60);
    hub.shutdown().await;
}
