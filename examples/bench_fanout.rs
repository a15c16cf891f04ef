//! Fan-out benchmark: N browser clients, E exchange records, end-to-end latency.
//!
//! Runs the hub in-process against the built-in simulator (Socket.IO over loopback, the same
//! path as the real exchange) with no background activity, injects E order records stamped with
//! their send time in an extra field (`bench_sent_ns`, passed through untouched like any unknown
//! exchange field), and measures at each WebSocket client: count, order, latency.
//!
//! `cargo run --release --example bench_fanout -- [clients] [records] [records_per_event] [rate]`
//! (defaults 100, 20000, 10, 2000 records/s; rate 0 = inject as fast as possible, a saturation
//! test where clients beyond `HUB_CLIENT_QUEUE` behind are evicted by design). Prints
//! throughput, latency percentiles, evictions and RSS.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coindcx_hub::metrics::sample;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = *args.first().unwrap_or(&100) as usize;
    let records = *args.get(1).unwrap_or(&20_000);
    let per_event = (*args.get(2).unwrap_or(&10)).max(1);
    let rate = *args.get(3).unwrap_or(&2_000);
    let env: HashMap<&str, String> = HashMap::from([
        ("HUB_BIND", "127.0.0.1:0".to_string()),
        ("HUB_SIM_BIND", "127.0.0.1:0".to_string()),
        ("HUB_SIM_RATE", "0".to_string()),
        ("HUB_CLIENT_QUEUE", "4096".to_string()),
        ("HUB_UPSTREAM_LINGER_MS", "60000".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ]);
    let config = coindcx_hub::config::Config::from_lookup(|k| env.get(k).cloned()).expect("config");
    let hub = coindcx_hub::start(config).await.expect("hub");
    let addr = hub.addr;
    let rss_start = hub.hub.metrics.resident_mib();

    let mut readers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    for _ in 0..clients {
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
                .await
                .expect("connect");
            let mut greeted = false;
            let mut lat_us = Vec::with_capacity(records as usize);
            let mut last_seq = 0u64;
            let mut in_order = true;
            while (lat_us.len() as u64) < records {
                let msg = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(m))) => m,
                    _ => break,
                };
                let Message::Text(text) = msg else { continue };
                let v: Value = serde_json::from_str(&text).expect("json");
                if v["type"] == "snapshot" && !greeted {
                    greeted = true;
                    let _ = ready.send(()).await;
                }
                let Some(sent) = v["data"]["bench_sent_ns"]
                    .as_str()
                    .and_then(|s| s.parse::<u128>().ok())
                else {
                    continue;
                };
                let seq = v["seq"].as_u64().unwrap_or(0);
                in_order &= last_seq == 0 || seq == last_seq + 1;
                last_seq = seq;
                lat_us.push(((now_ns().saturating_sub(sent)) / 1000) as u64);
            }
            (lat_us, in_order)
        }));
    }
    for _ in 0..clients {
        ready_rx.recv().await;
    }
    // Wait for the upstream join and its first reconcile before measuring.
    let t0 = Instant::now();
    while hub.hub.status.to_json()["upstream"]["state"] != "joined"
        && t0.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sim = hub.simulator.as_ref().expect("simulator");
    // The join has no acknowledgement: wait until the simulator has processed it.
    while sim.joined_sockets() == 0 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let the first reconcile pass
    let start = Instant::now();
    let mut n = 0u64;
    let mut pace = (rate > 0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(per_event as f64 / rate as f64)));
    while n < records {
        if let Some(p) = pace.as_mut() {
            p.tick().await;
        }
        let batch: Vec<Value> = (0..per_event.min(records - n))
            .map(|k| {
                let i = n + k;
                json!({"id": format!("bench-{i}"), "pair": "B-ETH_USDT", "side": "buy", "status": "open",
                       "order_type": "limit_order", "price": serde_json::from_str::<Value>("2102.94").unwrap(),
                       "total_quantity": serde_json::from_str::<Value>("0.001").unwrap(),
                       "created_at": 1_700_000_000_000i64 + i as i64, "updated_at": 1_700_000_000_000i64 + i as i64,
                       "bench_sent_ns": now_ns().to_string()})
            })
            .collect();
        n += batch.len() as u64;
        sim.emit_raw(
            "df-order-update",
            json!({"event": "df-order-update", "data": serde_json::to_string(&batch).unwrap()}),
        );
        if n.is_multiple_of(1000) {
            tokio::task::yield_now().await;
        }
    }
    let emit_done = start.elapsed();
    let mut all = Vec::new();
    let mut complete = 0;
    let mut ordered = 0;
    for r in readers {
        let (lat, in_order) = r.await.expect("reader");
        complete += usize::from(lat.len() as u64 == records);
        ordered += usize::from(in_order);
        all.extend(lat);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let metrics = hub.hub.metrics.render();
    let evictions = sample(
        &metrics,
        "hub_client_closes_total{reason=\"slow_consumer\"}",
    )
    .unwrap_or(0.0);
    let rate_text = if rate > 0 {
        format!("{rate} records/s")
    } else {
        "unpaced".into()
    };
    println!("bench_fanout: {clients} clients, {records} records ({per_event} per exchange event, {rate_text})");
    println!(
        "  injected in {:.2} s; all delivered in {:.2} s",
        emit_done.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  deliveries {} ({:.0}/s), events {:.0}/s",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64()
    );
    println!("  clients complete {complete}/{clients}, in seq order {ordered}/{clients}");
    println!(
        "  latency exchange-emit -> client (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(&all, 0.50),
        pct(&all, 0.90),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );
    println!("  slow-consumer evictions: {evictions}");
    println!(
        "  RSS {rss_start:.1} MiB at start, {:.1} MiB at end",
        hub.hub.metrics.resident_mib()
    );
    hub.shutdown().await;
}
