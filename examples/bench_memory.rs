//! Memory bound: push 1,000,000 exchange records through the hub and watch RSS.
//!
//! Every order opens and fills, so the hub's history (`HUB_HISTORY`, default 10,000) and its
//! terminal-order cache (500) must stay at their caps while the count grows. The records go
//! through the built-in simulator's Socket.IO server, the same path as the real exchange.
//!
//! `cargo run --release --example bench_memory -- [records] [open]` (default 1000000). With
//! `open`, every record is a distinct order left open instead, to see what each open order
//! held for snapshots costs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let all_open = std::env::args().nth(2).as_deref() == Some("open");
    let env: HashMap<&str, &str> = HashMap::from([
        ("HUB_BIND", "127.0.0.1:0"),
        ("HUB_SIM_BIND", "127.0.0.1:0"),
        ("HUB_SIM_RATE", "0"),
        ("HUB_UPSTREAM_LINGER_MS", "600000"),
    ]);
    let config = coindcx_hub::config::Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
        .expect("config");
    let hub = coindcx_hub::start(config).await.expect("hub");
    // One client makes the hub connect upstream; it leaves at once, the linger keeps the upstream.
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", hub.addr))
        .await
        .expect("connect");
    let started = Instant::now();
    while hub.hub.status.to_json()["upstream"]["state"] != "joined"
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ws);
    let sim = hub.simulator.as_ref().expect("simulator");
    // The join has no acknowledgement: wait until the simulator has processed it.
    while sim.joined_sockets() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seq_before = hub.hub.status.to_json()["seq"].as_u64().unwrap_or(0);
    println!(
        "bench_memory: {total} records; RSS {:.1} MiB after start",
        hub.hub.metrics.resident_mib()
    );
    let start = Instant::now();
    let mut sent = 0u64;
    let step = total / 10;
    while sent < total {
        let batch: Vec<Value> = (sent..(sent + 100).min(total))
            .map(|i| {
                let (id, status) = match (all_open, i % 2) {
                    (true, _) => (format!("m-{i}"), "open"),
                    (false, 0) => (format!("m-{}", i / 2), "open"),
                    (false, _) => (format!("m-{}", i / 2), "filled"),
                };
                json!({"id": id, "pair": "B-ETH_USDT", "side": "buy", "status": status,
                       "price": serde_json::from_str::<Value>("2102.94").unwrap(),
                       "total_quantity": serde_json::from_str::<Value>("0.001").unwrap(),
                       "created_at": 1_700_000_000_000i64 + i as i64, "updated_at": 1_700_000_000_000i64 + i as i64})
            })
            .collect();
        sent += batch.len() as u64;
        sim.emit_raw(
            "df-order-update",
            json!({"event": "df-order-update", "data": serde_json::to_string(&batch).unwrap()}),
        );
        // Keep the simulator's outgoing queue short: wait for the hub to catch up every 10,000.
        if sent.is_multiple_of(10_000) {
            while hub.hub.status.to_json()["seq"].as_u64().unwrap_or(0) < seq_before + sent {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if step > 0 && sent.is_multiple_of(step) {
            let s = hub.hub.status.to_json();
            println!(
                "  {:>8} records  RSS {:>6.1} MiB  history {:>6}  orders held {:>4} (terminal {:>3})  {:.1} s",
                sent,
                hub.hub.metrics.resident_mib(),
                s["held"]["history"],
                s["held"]["orders"],
                s["held"]["terminal_orders"],
                start.elapsed().as_secs_f64()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  {total} records in {secs:.1} s ({:.0} records/s through Socket.IO + hub)",
        total as f64 / secs
    );
    hub.shutdown().await;
}
