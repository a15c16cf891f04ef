//! Snapshot on connect, gap-free resume and the REST reconcile (SPEC §3, §4), against the
//! built-in simulator reached through the same Socket.IO client as the real exchange.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use coindcx_hub::rest::RestClient;
use coindcx_hub::simulator::{DEMO_API_KEY, DEMO_API_SECRET};
use coindcx_hub::RunningHub;
use common::{
    event_arg, fixture_records, metric, start_sim_hub, status, wait_until, Client, Incoming,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// Waits until the simulator has the hub's join and the first reconcile has run; returns the
/// seq it left. (CoinDCX never acknowledges a join, so the simulator's count is the only proof.)
async fn settled_seq(hub: &RunningHub) -> u64 {
    let sim = hub.simulator.as_ref().unwrap();
    assert!(
        wait_until(|| sim.joined_sockets() == 1, T).await,
        "simulator never saw the join"
    );
    let metrics = hub.hub.metrics.clone();
    assert!(
        wait_until(
            || metric(&metrics.render(), "hub_reconcile_runs_total{result=\"ok\"}") == Some(1.0),
            T
        )
        .await,
        "first reconcile did not run"
    );
    status(hub.addr).await["seq"].as_u64().unwrap()
}

/// An order record shaped like the fixture, with its own id, status and `updated_at`.
fn order(template: &Value, id: &str, status: &str, updated_at: i64) -> Value {
    let mut rec = template.clone();
    rec["id"] = json!(id);
    rec["status"] = json!(status);
    rec["updated_at"] = json!(updated_at);
    rec
}

/// 50 clients, 10,000 events, random disconnects and resumes: every client sees every event
/// exactly once, in seq order, counted. Every disconnect is the client's own: the queues hold
/// every event, so an eviction (close 1008) is a failure, not something to resume from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_stress_every_client_gets_every_event_once() {
    const CLIENTS: usize = 50;
    const EVENTS: u64 = 10_000;
    let hub = start_sim_hub(&[
        ("HUB_HISTORY", "20000"),
        ("HUB_CLIENT_QUEUE", "20000"),
        ("HUB_UPSTREAM_LINGER_MS", "600000"),
    ])
    .await;
    let addr = hub.addr;
    let mut greeted = Vec::new();
    for _ in 0..CLIENTS {
        greeted.push(Client::connect_greeted(addr).await);
    }
    let seq0 = settled_seq(&hub).await;
    let target = seq0 + EVENTS;
    let epoch = status(addr).await["epoch"].as_str().unwrap().to_string();

    let mut tasks = Vec::new();
    for (i, (client, snapshot)) in greeted.into_iter().enumerate() {
        let epoch = epoch.clone();
        let start = snapshot["data"]["seq"].as_u64().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + i as u64);
            let mut seen: Vec<u64> = Vec::new();
            let mut last = start.max(seq0);
            let mut client = Some(client);
            let mut resumes = 0;
            while last < target {
                let mut c = match client.take() {
                    Some(c) => c,
                    None => {
                        resumes += 1;
                        let mut c =
                            Client::connect(addr, &format!("?since={last}&epoch={epoch}")).await;
                        let system = c.next_json(T).await;
                        assert_eq!(system["type"], "system");
                        c
                    }
                };
                let budget = rng.gen_range(20..400);
                let mut read = 0;
                while read < budget && last < target {
                    match c.next(T).await {
                        Some(Incoming::Json(v, _)) => {
                            assert_ne!(v["type"], "resync", "client {i} was told to resync");
                            assert_ne!(
                                v["type"], "snapshot",
                                "client {i} got a snapshot on resume"
                            );
                            if let Some(seq) = v["seq"].as_u64() {
                                if seq <= seq0 {
                                    continue; // reconcile records from before the count started
                                }
                                assert_eq!(seq, last + 1, "client {i}: gap or duplicate");
                                seen.push(seq);
                                last = seq;
                                read += 1;
                            }
                        }
                        Some(Incoming::Close(c)) => {
                            panic!("client {i} was closed by the hub at seq {last}: {c:?}")
                        }
                        Some(Incoming::Gone(e)) => panic!("client {i} lost at seq {last}: {e}"),
                        None => panic!("client {i} stalled at seq {last}"),
                    }
                }
                drop(c);
                if rng.gen_bool(0.5) {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
                }
            }
            (seen, resumes)
        }));
    }

    let template = fixture_records("order-update-batch.json")[0].clone();
    let sim = hub.simulator.as_ref().unwrap();
    for batch in 0..(EVENTS / 10) {
        let records: Vec<Value> = (0..10)
            .map(|k| {
                let n = batch * 10 + k;
                order(
                    &template,
                    &format!("stress-{n}"),
                    "open",
                    1_700_000_000_000 + n as i64,
                )
            })
            .collect();
        sim.emit_raw("df-order-update", event_arg("df-order-update", &records));
        if batch % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    let mut total_resumes = 0;
    for task in tasks {
        let (seen, resumes) = task.await.expect("client task");
        assert_eq!(seen.len() as u64, EVENTS);
        assert!(
            seen.iter().copied().eq(seq0 + 1..=target),
            "not exactly seq0+1..=target in order"
        );
        total_resumes += resumes;
    }
    let text = hub.hub.metrics.render();
    assert_eq!(
        metric(&text, "hub_resumes_total{result=\"ok\"}"),
        Some(total_resumes as f64)
    );
    assert_eq!(
        metric(&text, "hub_resumes_total{result=\"resync\"}"),
        Some(0.0)
    );
    assert!(total_resumes >= CLIENTS, "only {total_resumes} resumes");
    assert_eq!(
        metric(&text, "hub_client_closes_total{reason=\"slow_consumer\"}"),
        Some(0.0),
        "a client was evicted"
    );
    println!(
        "resume stress: {CLIENTS} clients, {EVENTS} events, {total_resumes} resumes, all exact"
    );
    hub.shutdown().await;
}

/// Resume outside history or from another epoch: `resync` then a fresh snapshot, never partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_outside_history_gets_resync_and_snapshot() {
    let hub = start_sim_hub(&[("HUB_HISTORY", "5"), ("HUB_UPSTREAM_LINGER_MS", "600000")]).await;
    let (mut watcher, _) = Client::connect_greeted(hub.addr).await;
    let seq0 = settled_seq(&hub).await;
    let template = fixture_records("order-update-batch.json")[0].clone();
    let records: Vec<Value> = (0..8)
        .map(|n| order(&template, &format!("h-{n}"), "open", 10 + n))
        .collect();
    hub.simulator
        .as_ref()
        .unwrap()
        .emit_raw("df-order-update", event_arg("df-order-update", &records));
    for n in 1..=8 {
        assert_eq!(
            watcher.next_of_type("order", T).await["seq"].as_u64(),
            Some(seq0 + n)
        );
    }
    let epoch = status(hub.addr).await["epoch"]
        .as_str()
        .unwrap()
        .to_string();

    // In history: exactly the missed ones.
    let mut ok = Client::connect(hub.addr, &format!("?since={}&epoch={epoch}", seq0 + 5)).await;
    assert_eq!(ok.next_json(T).await["type"], "system");
    for n in 6..=8 {
        let f = ok.next_json(T).await;
        assert_eq!(
            (f["type"].as_str(), f["seq"].as_u64()),
            (Some("order"), Some(seq0 + n))
        );
    }

    // Too old, and another epoch: resync + snapshot at the current seq.
    for query in [
        format!("?since={seq0}&epoch={epoch}"),
        format!("?since={}&epoch=other", seq0 + 7),
    ] {
        let mut c = Client::connect(hub.addr, &query).await;
        assert_eq!(c.next_json(T).await["type"], "system");
        assert_eq!(c.next_json(T).await["type"], "resync", "{query}");
        let snap = c.next_json(T).await;
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["data"]["seq"].as_u64(), Some(seq0 + 8));
        let ids: Vec<&str> = snap["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["id"].as_str())
            .collect();
        assert_eq!(ids.iter().filter(|id| id.starts_with("h-")).count(), 8);
    }
    let text = hub.hub.metrics.render();
    assert_eq!(metric(&text, "hub_resumes_total{result=\"ok\"}"), Some(1.0));
    assert_eq!(
        metric(&text, "hub_resumes_total{result=\"resync\"}"),
        Some(2.0)
    );
    hub.shutdown().await;
}

/// The edges of resume: `since == seq` replays nothing and sends no snapshot (the next frame is
/// the next live event); `since` ahead of the hub's seq, and `since` without `epoch`, get a
/// `resync` and a fresh snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_boundaries_since_equal_ahead_and_without_epoch() {
    let hub = start_sim_hub(&[("HUB_UPSTREAM_LINGER_MS", "600000")]).await;
    let (mut watcher, _) = Client::connect_greeted(hub.addr).await;
    let seq0 = settled_seq(&hub).await;
    let template = fixture_records("order-update-batch.json")[0].clone();
    let sim = hub.simulator.as_ref().unwrap();
    let emit = |id: &str, at: i64| {
        let rec = order(&template, id, "open", at);
        sim.emit_raw("df-order-update", event_arg("df-order-update", &[rec]));
    };
    for n in 1..=3 {
        emit(&format!("b-{n}"), n);
        assert_eq!(
            watcher.next_of_type("order", T).await["seq"].as_u64(),
            Some(seq0 + n as u64)
        );
    }
    let seq = seq0 + 3;
    let epoch = status(hub.addr).await["epoch"]
        .as_str()
        .unwrap()
        .to_string();

    // since == seq: the system frame, then straight on with seq + 1.
    let mut same = Client::connect(hub.addr, &format!("?since={seq}&epoch={epoch}")).await;
    assert_eq!(same.next_json(T).await["type"], "system");
    assert!(
        wait_until(
            || metric(
                &hub.hub.metrics.render(),
                "hub_resumes_total{result=\"ok\"}"
            ) == Some(1.0),
            T
        )
        .await
    );
    emit("b-4", 4);
    let next = same.next_json(T).await;
    assert_eq!(
        (
            next["type"].as_str(),
            next["seq"].as_u64(),
            next["data"]["id"].as_str()
        ),
        (Some("order"), Some(seq + 1), Some("b-4")),
        "{next}"
    );
    let seq = seq + 1;

    // Ahead of the hub, and without an epoch: resync, then a snapshot at the current seq.
    for query in [
        format!("?since={}&epoch={epoch}", seq + 1),
        format!("?since={seq}"),
    ] {
        let mut c = Client::connect(hub.addr, &query).await;
        assert_eq!(c.next_json(T).await["type"], "system");
        let resync = c.next_json(T).await;
        assert_eq!(resync["type"], "resync", "{query}: {resync}");
        let snap = c.next_json(T).await;
        assert_eq!(snap["type"], "snapshot", "{query}");
        assert_eq!(snap["data"]["seq"].as_u64(), Some(seq), "{query}");
    }
    let text = hub.hub.metrics.render();
    assert_eq!(metric(&text, "hub_resumes_total{result=\"ok\"}"), Some(1.0));
    assert_eq!(
        metric(&text, "hub_resumes_total{result=\"resync\"}"),
        Some(2.0)
    );
    hub.shutdown().await;
}

/// `HUB_HISTORY_BYTES` bounds the resume history even when `HUB_HISTORY` would keep more: a
/// resume from before the oldest frame kept is a `resync`, and the frames dropped are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_by_bytes() {
    let hub = start_sim_hub(&[
        ("HUB_HISTORY", "10000"),
        ("HUB_HISTORY_BYTES", "8192"),
        ("HUB_UPSTREAM_LINGER_MS", "600000"),
    ])
    .await;
    let (mut watcher, _) = Client::connect_greeted(hub.addr).await;
    let seq0 = settled_seq(&hub).await;
    let template = fixture_records("order-update-batch.json")[0].clone();
    let sim = hub.simulator.as_ref().unwrap();
    let mut sizes = Vec::new();
    for n in 1..=40u64 {
        let mut rec = order(&template, &format!("big-{n:02}"), "open", n as i64);
        rec["display_message"] = json!("x".repeat(1000));
        sim.emit_raw("df-order-update", event_arg("df-order-update", &[rec]));
        let (f, text) = loop {
            let (f, text) = watcher.next_json_text(T).await;
            // Skip what the first reconcile delivered before the count started.
            if f["seq"].as_u64().is_some_and(|s| s > seq0) {
                break (f, text);
            }
        };
        assert_eq!(f["seq"].as_u64(), Some(seq0 + n));
        sizes.push(text.len());
    }
    // What the history holds: the newest frames whose sizes add up to at most 8192 bytes.
    let mut kept = 0;
    let mut bytes = 0;
    for s in sizes.iter().rev() {
        if bytes + s > 8192 {
            break;
        }
        bytes += s;
        kept += 1;
    }
    assert!((2..=8).contains(&kept), "frames of ~2 KB: {kept} fit");
    let held = status(hub.addr).await["held"]["history"].as_u64().unwrap();
    assert_eq!(
        held, kept as u64,
        "history holds exactly the newest frames under 8 KiB"
    );
    assert_eq!(
        metric(
            &hub.hub.metrics.render(),
            "hub_history_trimmed_by_bytes_total"
        ),
        Some((seq0 + 40 - held) as f64)
    );
    let epoch = status(hub.addr).await["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    let last = seq0 + 40;
    let oldest_kept = last - kept as u64 + 1;
    let mut ok = Client::connect(
        hub.addr,
        &format!("?since={}&epoch={epoch}", oldest_kept - 1),
    )
    .await;
    assert_eq!(ok.next_json(T).await["type"], "system");
    assert_eq!(ok.next_json(T).await["seq"].as_u64(), Some(oldest_kept));
    let mut old = Client::connect(
        hub.addr,
        &format!("?since={}&epoch={epoch}", oldest_kept - 2),
    )
    .await;
    assert_eq!(old.next_json(T).await["type"], "system");
    assert_eq!(old.next_json(T).await["type"], "resync");
    hub.shutdown().await;
}

/// The account as a client sees it: snapshot, then every event applied by key.
#[derive(Default, Debug, PartialEq)]
struct View {
    orders: BTreeMap<String, Value>,
    positions: BTreeMap<String, Value>,
    balances: BTreeMap<String, Value>,
    seq: u64,
}

impl View {
    fn from_snapshot(data: &Value) -> View {
        let mut v = View {
            seq: data["seq"].as_u64().unwrap(),
            ..View::default()
        };
        for o in data["orders"].as_array().unwrap() {
            v.orders.insert(o["id"].as_str().unwrap().into(), o.clone());
        }
        for p in data["positions"].as_array().unwrap() {
            v.positions
                .insert(p["id"].as_str().unwrap().into(), p.clone());
        }
        for b in data["balances"].as_array().unwrap() {
            v.balances
                .insert(b["currency_short_name"].as_str().unwrap().into(), b.clone());
        }
        v
    }

    fn apply(&mut self, frame: &Value) {
        let Some(seq) = frame["seq"].as_u64() else {
            return;
        };
        assert_eq!(seq, self.seq + 1, "gap or duplicate after the snapshot");
        self.seq = seq;
        let data = frame["data"].clone();
        match frame["type"].as_str().unwrap() {
            "order" => self
                .orders
                .insert(data["id"].as_str().unwrap().into(), data),
            "position" => self
                .positions
                .insert(data["id"].as_str().unwrap().into(), data),
            "balance" => self
                .balances
                .insert(data["currency_short_name"].as_str().unwrap().into(), data),
            other => panic!("unexpected {other}"),
        };
    }
}

/// Clients connecting during a burst: snapshot + deltas equal the hub's final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_plus_deltas_equal_final_state() {
    let hub = start_sim_hub(&[("HUB_UPSTREAM_LINGER_MS", "600000")]).await;
    let (_anchor, _) = Client::connect_greeted(hub.addr).await;
    let seq0 = settled_seq(&hub).await;
    let orders = fixture_records("order-update-batch.json");
    let position = fixture_records("position-update.json")[0].clone();
    let balances = fixture_records("balance-update.json");
    let statuses = ["initial", "open", "partially_filled"];
    let sim = hub.simulator.as_ref().unwrap();
    let addr = hub.addr;

    let joiners = tokio::spawn(async move {
        let mut views = Vec::new();
        for _ in 0..20 {
            let mut c = Client::connect(addr, "").await;
            assert_eq!(c.next_json(T).await["type"], "system");
            let snap = c.next_json(T).await;
            assert_eq!(snap["type"], "snapshot");
            views.push((c, View::from_snapshot(&snap["data"])));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        views
    });
    let mut emitted = 0u64;
    for step in 0..300i64 {
        let recs: Vec<Value> = (0..5)
            .map(|k| {
                let t = &orders[(k % 3) as usize];
                order(
                    t,
                    &format!("race-{}", (step * 5 + k) % 40),
                    statuses[(step % 3) as usize],
                    1_000 + step,
                )
            })
            .collect();
        emitted += recs.len() as u64;
        sim.emit_raw("df-order-update", event_arg("df-order-update", &recs));
        let mut p = position.clone();
        p["active_pos"] = json!(format!("0.{:03}", step + 1).parse::<Value>().unwrap());
        p["updated_at"] = json!(2_000 + step);
        sim.emit_raw("df-position-update", event_arg("df-position-update", &[p]));
        let mut b = balances[0].clone();
        b["balance"] = json!(format!("{}.{:02}", 400 + step, step % 100));
        sim.emit_raw("balance-update", event_arg("balance-update", &[b]));
        emitted += 2;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut views = joiners.await.unwrap();
    let final_seq = seq0 + emitted;
    assert!(
        wait_until(
            || hub.hub.status.seq.load(std::sync::atomic::Ordering::SeqCst) == final_seq,
            T
        )
        .await
    );
    let (_, final_snap) = Client::connect_greeted(addr).await;
    let truth = View::from_snapshot(&final_snap["data"]);
    assert_eq!(truth.seq, final_seq);
    for (c, view) in views.iter_mut() {
        while view.seq < final_seq {
            match c.next(T).await {
                Some(Incoming::Json(v, _)) => view.apply(&v),
                other => panic!("client ended early: {other:?}"),
            }
        }
        assert_eq!(
            *view, truth,
            "snapshot + deltas differ from the final snapshot"
        );
    }
    assert_eq!(
        truth
            .orders
            .keys()
            .filter(|k| k.starts_with("race-"))
            .count(),
        40
    );
    hub.shutdown().await;
}

/// Upstream gone for 3 s while the account changes: after the re-join the reconciled state
/// equals the simulator's REST view, and clients were told about the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_after_upstream_gap_matches_rest() {
    let hub = start_sim_hub(&[]).await;
    let (mut client, snap) = Client::connect_greeted(hub.addr).await;
    let mut view = View::from_snapshot(&snap["data"]);
    let sim = hub.simulator.as_ref().unwrap();
    let rest = RestClient::new(&sim.url(), DEMO_API_KEY, DEMO_API_SECRET);
    // The post-join fetch starts 1 s after the first join; had the outage begun before it ran,
    // that fetch (not the one after the re-join) would report the changes made while away.
    common::wait_reconciles(&hub, 1, T).await;
    let place = |price: &str| {
        json!({"side":"buy","pair":"B-ETH_USDT","order_type":"limit_order","price":price,"total_quantity":0.001,
               "notification":"no_notification","time_in_force":"good_till_cancel","margin_currency_short_name":"USDT"})
    };
    let first = rest.create_order(place("1500.00")).await.expect("create");
    let first_id = first["id"].as_str().unwrap().to_string();
    // Follow the stream until the order is open.
    loop {
        let f = client.next_json(T).await;
        view.apply(&f);
        if f["data"]["id"] == first_id.as_str() && f["data"]["status"] == "open" {
            break;
        }
    }

    sim.set_accepting(false);
    loop {
        let f = client.next_json(T).await;
        view.apply(&f);
        if f["type"] == "system" {
            assert_eq!(f["data"]["coindcx_connected"], false, "{f}");
            break;
        }
    }
    let second = rest
        .create_order(place("1400.00"))
        .await
        .expect("create while away");
    let third = rest
        .create_order(place("1300.00"))
        .await
        .expect("create while away");
    rest.cancel_order(&first_id)
        .await
        .expect("cancel while away");
    tokio::time::sleep(Duration::from_secs(3)).await; // the outage itself, not a wait for an event
    sim.set_accepting(true);

    loop {
        let f = client.next_json(Duration::from_secs(40)).await;
        view.apply(&f);
        if f["type"] == "system" && f["data"]["message"] == "upstream re-joined" {
            break;
        }
    }
    let metrics = hub.hub.metrics.clone();
    assert!(
        wait_until(
            || metric(&metrics.render(), "hub_reconcile_runs_total{result=\"ok\"}") == Some(2.0),
            T
        )
        .await
    );
    let final_seq = status(hub.addr).await["seq"].as_u64().unwrap();
    let mut reconciled = 0;
    while view.seq < final_seq {
        let f = client.next_json(T).await;
        if f["reconciled"] == true {
            reconciled += 1;
        }
        view.apply(&f);
    }
    // The two new orders, the cancel, and the balance they moved.
    assert!(reconciled >= 4, "only {reconciled} reconciled events");
    // Everything after the re-join came from REST; compare with REST now.
    let open = rest.open_orders().await.unwrap();
    let open_ids: BTreeMap<String, Value> = open
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_string(), o.clone()))
        .collect();
    for id in [
        second["id"].as_str().unwrap(),
        third["id"].as_str().unwrap(),
    ] {
        assert!(open_ids.contains_key(id));
        assert_eq!(view.orders[id]["status"], open_ids[id]["status"]);
    }
    assert_eq!(view.orders[&first_id]["status"], "cancelled");
    let client_open: Vec<&String> = view
        .orders
        .iter()
        .filter(|(_, o)| {
            matches!(
                o["status"].as_str(),
                Some("initial" | "open" | "partially_filled" | "untriggered")
            )
        })
        .map(|(id, _)| id)
        .collect();
    assert_eq!(client_open, open_ids.keys().collect::<Vec<_>>());
    let same = |a: &Value, b: &Value| {
        let a: bigdecimal::BigDecimal =
            a.as_str().unwrap_or_else(|| panic!("{a}")).parse().unwrap();
        let b: bigdecimal::BigDecimal = b.to_string().trim_matches('"').parse().unwrap();
        a == b
    };
    for w in rest.wallets().await.unwrap() {
        let cur = w["currency_short_name"].as_str().unwrap();
        assert!(
            same(&view.balances[cur]["balance"], &w["balance"]),
            "{cur} balance"
        );
        assert!(
            same(&view.balances[cur]["locked_balance"], &w["locked_balance"]),
            "{cur} locked"
        );
    }
    for p in rest.positions().await.unwrap() {
        let id = p["id"].as_str().unwrap();
        assert!(
            same(&view.positions[id]["active_pos"], &p["active_pos"]),
            "position {id}"
        );
    }
    hub.shutdown().await;
}

/// CoinDCX repeats frames: the same (id, status, updated_at) is delivered once, and an order
/// never leaves a terminal status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_exchange_frames_are_delivered_once() {
    let hub = start_sim_hub(&[]).await;
    let (mut client, _) = Client::connect_greeted(hub.addr).await;
    let seq0 = settled_seq(&hub).await;
    let sim = hub.simulator.as_ref().unwrap();
    let batch = common::fixture("order-update-batch.json");
    let cancelled = common::fixture("order-update-cancelled.json");
    sim.emit_raw("df-order-update", batch.clone());
    sim.emit_raw("df-order-update", batch.clone()); // exact repeat: 3 duplicates
    sim.emit_raw("df-order-update", cancelled.clone()); // the BTC order ends
    sim.emit_raw("df-order-update", cancelled); // repeat: 1 duplicate
    sim.emit_raw("df-order-update", batch); // BTC back to "open" after cancelled: stale; others repeats
    let template = fixture_records("order-update-batch.json")[0].clone();
    let marker = order(&template, "marker", "open", 1);
    sim.emit_raw("df-order-update", event_arg("df-order-update", &[marker]));

    let mut got = Vec::new();
    loop {
        let f = client.next_of_type("order", T).await;
        got.push((
            f["seq"].as_u64().unwrap() - seq0,
            f["data"]["id"].as_str().unwrap().to_string(),
            f["data"]["status"].as_str().unwrap().to_string(),
        ));
        if f["data"]["id"] == "marker" {
            break;
        }
    }
    let ids: Vec<(u64, &str, &str)> = got
        .iter()
        .map(|(s, i, st)| (*s, &i[..4], st.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            (1, "3f6c", "initial"),
            (2, "9b2e", "open"),
            (3, "e7d0", "partially_filled"),
            (4, "9b2e", "cancelled"),
            (5, "mark", "open")
        ]
    );
    assert_eq!(
        metric(&hub.hub.metrics.render(), "hub_duplicates_dropped_total"),
        Some(7.0)
    );
    hub.shutdown().await;
}
