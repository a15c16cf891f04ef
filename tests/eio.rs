//! SPEC §4: the upstream holds against an Engine.IO 3 server (socket.io 2: the client must ping)
//! and an Engine.IO 4 one (socket.io 4: the server pings), chosen by `COINDCX_EIO`
//! (`auto` reads the server's open packet). Real socket.io servers under node
//! (tests/fake-coindcx), not socketioxide: the exchange runs socket.io.

mod common;

use std::time::{Duration, Instant};

use common::{http_get, metric, status, Client, Incoming, NodeFake, Sio};
use serde_json::{json, Value};

/// How long each connection must hold: past two socket.io 2 drop points (25 s + 20 s each).
const HOLD: Duration = Duration::from_secs(120);

/// `hub_upstream_eio` from `/metrics`.
async fn eio_gauge(addr: std::net::SocketAddr) -> f64 {
    let (code, text) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{text}");
    metric(&text, "hub_upstream_eio").expect("hub_upstream_eio is exported")
}

/// `GET /logs` of the node fake: recent `leaves`, `disconnects`..., each with `at` (unix ms).
async fn fake_logs(fake: &NodeFake) -> Value {
    reqwest::Client::new()
        .get(format!("{}/logs", fake.ctl_url()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET /logs")
        .json()
        .await
        .expect("/logs is JSON")
}

/// One balance event (two wallets) with these USDT and INR balances, exact digits.
fn balances(usdt: &str, inr: &str) -> Value {
    json!({
        "event": "balance-update",
        "data": [
            {"id": "7d3a5c10-a622-11ee-bd36-479d3cf6751b", "balance": usdt,
             "locked_balance": "34.15153435", "currency_id": "c19c38d1-3ebb-47ab-9207-62d043be7447",
             "currency_short_name": "USDT"},
            {"id": "102a7916-a622-11ee-bd36-479d3cf6751b", "balance": inr,
             "locked_balance": "258.600771", "currency_id": "cfe01e2a-f1af-4e52-9696-9a19d9a8eb4f",
             "currency_short_name": "INR"}
        ]
    })
}

/// Emits `balances(usdt, inr)` and reads the two `balance` frames it becomes (skipping
/// reconciled copies): USDT then INR, with exactly these digits.
async fn emit_and_receive(
    fake: &NodeFake,
    client: &mut Client,
    usdt: &str,
    inr: &str,
    label: &str,
) {
    let answer = fake.post("/emit", balances(usdt, inr)).await;
    assert_eq!(answer["room_size"], 1, "{label}: {answer}");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match client.next(left).await {
            Some(Incoming::Json(v, _)) => v,
            other => panic!("{label}: balance frames {got:?} so far, then {other:?}"),
        };
        assert_ne!(
            frame["type"], "system",
            "{label}: upstream changed state: {frame}"
        );
        if frame["type"] == "balance" && frame.get("reconciled").is_none() {
            got.push((
                frame["data"]["currency_short_name"].clone(),
                frame["data"]["balance"].clone(),
            ));
        }
    }
    assert_eq!(
        got,
        vec![(json!("USDT"), json!(usdt)), (json!("INR"), json!(inr))],
        "{label}"
    );
}

/// One hub on `sio` with `COINDCX_EIO=eio`: joins once, reports `want_eio`, holds [`HOLD`] with
/// the default 25 s / 20 s heartbeat without a drop, delivers events before and after, and
/// sends `leave` (answered, counted) before disconnecting when the last client leaves.
async fn hold(sio: Sio, eio: &str, want_eio: f64) {
    let label = format!("{sio:?} with COINDCX_EIO={eio}");
    let fake = NodeFake::start(sio).await;
    let hub = fake.start_hub(&[("COINDCX_EIO", eio)]).await;
    let (mut client, _) = Client::connect_greeted(hub.addr).await;
    let joins = fake
        .wait_stat("joins_ok", |n| n == 1, Duration::from_secs(30))
        .await;
    assert_eq!(joins, 1, "{label}: joined");
    emit_and_receive(
        &fake,
        &mut client,
        "412.39080417",
        "265.01745775027309",
        &label,
    )
    .await;

    let start = Instant::now();
    while start.elapsed() < HOLD {
        // Reading keeps the browser socket alive (WebSocket pings are answered while reading).
        match client.next(Duration::from_secs(5)).await {
            None => {}
            Some(Incoming::Json(v, _)) => {
                assert_ne!(v["type"], "system", "{label}: upstream changed state: {v}")
            }
            other => panic!("{label}: browser socket ended: {other:?}"),
        }
        let stats = fake.stats().await;
        assert_eq!(
            (&stats["total_connects"], &stats["total_disconnects"]),
            (&json!(1), &json!(0)),
            "{label}: dropped after {:?}: {stats}",
            start.elapsed()
        );
    }
    assert_eq!(status(hub.addr).await["upstream"]["state"], "joined");
    assert_eq!(eio_gauge(hub.addr).await, want_eio, "{label}");
    // Both change: an unchanged balance is a repeat, and repeats are not delivered.
    emit_and_receive(&fake, &mut client, "412.00000001", "0.10", &label).await;

    client.close().await;
    let disconnects = fake
        .wait_stat("total_disconnects", |n| n >= 1, Duration::from_secs(15))
        .await;
    assert_eq!(disconnects, 1, "{label}: disconnected once");
    let stats = fake.stats().await;
    assert_eq!(stats["leaves"], 1, "{label}: leave counted: {stats}");
    assert_eq!(
        stats["last_leave"]["payload"],
        json!({"channelName": "coindcx"})
    );
    assert_eq!(
        (
            &stats["total_connects"],
            &stats["joins_ok"],
            &stats["room_size"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{label}: {stats}"
    );
    let logs = fake_logs(&fake).await;
    let (left, gone) = (&logs["leaves"][0]["at"], &logs["disconnects"][0]["at"]);
    assert!(
        left.is_u64() && left.as_u64() <= gone.as_u64(),
        "{label}: leave at {left} after disconnect at {gone}"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_two_minutes_against_socketio_2_and_4() {
    // In parallel, so the suite pays the two minutes once.
    tokio::join!(
        hold(Sio::V2, "auto", 3.0),
        hold(Sio::V4, "auto", 4.0),
        // Our own client speaking Engine.IO 4 to socket.io 4 (the server pings).
        hold(Sio::V4, "3", 4.0),
    );
}

/// `auto` reads the open packet: socket.io 2 → 3, socket.io 4 → 4; a probe against socket.io 4
/// is not a connection on the server (exactly one connect), and against socket.io 2 the probe
/// is the connection itself (exactly one connect too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_servers_revision() {
    async fn pick(sio: Sio) -> (f64, u64, u64) {
        let fake = NodeFake::start(sio).await;
        let hub = fake.start_hub(&[]).await;
        assert_eq!(
            eio_gauge(hub.addr).await,
            0.0,
            "no handshake before a client"
        );
        let (client, _) = Client::connect_greeted(hub.addr).await;
        let joins = fake
            .wait_stat("joins_ok", |n| n == 1, Duration::from_secs(30))
            .await;
        let picked = eio_gauge(hub.addr).await;
        let connects = fake.stat("total_connects").await;
        client.close().await;
        fake.wait_stat("total_disconnects", |n| n == 1, Duration::from_secs(15))
            .await;
        hub.shutdown().await;
        (picked, joins, connects)
    }
    let (two, four) = tokio::join!(pick(Sio::V2), pick(Sio::V4));
    assert_eq!(two, (3.0, 1, 1), "socket.io 2: (eio, joins, connects)");
    assert_eq!(four, (4.0, 1, 1), "socket.io 4: (eio, joins, connects)");
}

/// A scripted Engine.IO server on 127.0.0.1 that never answers heartbeats: it sends `open`,
/// then (EIO3) `40` unprompted or (EIO4) `40{"sid":..}` after the client's `40`, and (EIO4) one
/// ping `2` after `join`. Each connection's client messages, in order, are sent on the channel
/// when the client closes it.
async fn silent_server(
    open: &'static str,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let eio4 = open.contains("maxPayload");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _ = ws.send(Message::Text(open.into())).await;
                if !eio4 {
                    let _ = ws.send(Message::Text("40".into())).await;
                }
                let mut seen = Vec::new();
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    if eio4 && text == "40" {
                        let _ = ws.send(Message::Text(r#"40{"sid":"ns1"}"#.into())).await;
                    }
                    // One ping, after the private join (not again after the price channel's).
                    if eio4 && text.starts_with(r#"42["join",{"channelName":"coindcx""#) {
                        let _ = ws.send(Message::Text("2".into())).await;
                    }
                    seen.push(text);
                }
                let _ = tx.send(seen);
            });
        }
    });
    (addr, rx)
}

/// A server that stops answering is dead after the heartbeat says so (EIO3: no pong within
/// pingTimeout of our ping; EIO4: no ping within pingInterval + pingTimeout), and the hub
/// reconnects: the exact client transcript of the first connection shows who pinged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_dead_by_its_heartbeat() {
    const OPEN3: &str = r#"0{"sid":"s3","upgrades":[],"pingInterval":300,"pingTimeout":300}"#;
    const OPEN4: &str =
        r#"0{"sid":"s4","upgrades":[],"pingInterval":300,"pingTimeout":300,"maxPayload":1000000}"#;
    let _ = env_logger::builder().is_test(true).try_init();
    let join = format!(
        r#"42["join",{{"channelName":"coindcx","authSignature":"{}","apiKey":"{}"}}]"#,
        coindcx_hub::signing::join_signature(common::API_SECRET),
        common::API_KEY
    );
    // SPEC §9: the public price channel is joined right after the private one.
    let prices = r#"42["join",{"channelName":"currentPrices@futures@rt"}]"#.to_string();
    for (open, eio, want) in [
        (
            OPEN3,
            "auto",
            vec![join.clone(), prices.clone(), "2".to_string()],
        ),
        (
            OPEN3,
            "3",
            vec![join.clone(), prices.clone(), "2".to_string()],
        ),
        (
            OPEN4,
            "3",
            vec![
                "40".to_string(),
                join.clone(),
                prices.clone(),
                "3".to_string(),
            ],
        ),
    ] {
        let (addr, mut transcripts) = silent_server(open).await;
        let hub = scripted_hub(addr, eio).await;
        let (mut client, _) = Client::connect_greeted(hub.addr).await;
        let first = tokio::time::timeout(Duration::from_secs(30), transcripts.recv())
            .await
            .expect("the hub gives up on a silent server")
            .unwrap();
        assert_eq!(first, want, "{open} with COINDCX_EIO={eio}");
        let down = client.next_of_type("system", Duration::from_secs(30)).await;
        assert_eq!(down["data"]["coindcx_connected"], false, "{down}");
        // It reconnects (and is dropped again the same way).
        let second = tokio::time::timeout(Duration::from_secs(30), transcripts.recv())
            .await
            .expect("the hub reconnects")
            .unwrap();
        assert_eq!(
            second, want,
            "second connection, {open} with COINDCX_EIO={eio}"
        );
        assert_eq!(
            eio_gauge(hub.addr).await,
            if eio4(open) { 4.0 } else { 3.0 }
        );
        client.close().await;
        hub.shutdown().await;
    }
}

fn eio4(open: &str) -> bool {
    open.contains("maxPayload")
}

/// SIGTERM against a socket.io 2 server (our Engine.IO 3 client): `leave` is counted before the
/// disconnect and the process exits 0, five runs in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_a_socketio_2_server_first() {
    let fake = NodeFake::start(Sio::V2).await;
    for run in 1..=5u64 {
        fake.post("/reset", json!({})).await;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let mut cmd = std::process::Command::new(common::HUB_BIN);
        common::clean_env(&mut cmd, &std::env::temp_dir())
            .env("RUST_LOG", "warn")
            .env("HUB_BIND", addr.to_string())
            .env("COINDCX_API_KEY", common::API_KEY)
            .env("COINDCX_API_SECRET", common::API_SECRET)
            .env("COINDCX_WS_URL", fake.url())
            .env("COINDCX_API_URL", fake.ctl_url())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = common::KillOnDrop(cmd.spawn().expect("spawn the hub binary"));
        let up = common::wait_until(
            || std::net::TcpStream::connect(addr).is_ok(),
            Duration::from_secs(20),
        )
        .await;
        assert!(up, "run {run}: the binary did not listen on {addr}");
        let (mut client, _) = Client::connect_greeted(addr).await;
        let joins = fake
            .wait_stat("joins_ok", |n| n == 1, Duration::from_secs(30))
            .await;
        assert_eq!(joins, 1, "run {run}: joined");

        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        assert!(
            matches!(
                client.expect_close(Duration::from_secs(10)).await,
                Some((1001, _))
            ),
            "run {run}: close 1001"
        );
        let mut exit = None;
        let exited = common::wait_until(
            || {
                exit = child.0.try_wait().unwrap();
                exit.is_some()
            },
            Duration::from_secs(10),
        )
        .await;
        assert!(exited, "run {run}: still running 10 s after SIGTERM");
        assert_eq!(exit.unwrap().code(), Some(0), "run {run}");

        let disconnects = fake
            .wait_stat("total_disconnects", |n| n >= 1, Duration::from_secs(10))
            .await;
        let stats = fake.stats().await;
        assert_eq!(
            (disconnects, &stats["leaves"], &stats["total_connects"]),
            (1, &json!(1), &json!(1)),
            "run {run}: {stats}"
        );
        let logs = fake_logs(&fake).await;
        let (left, gone) = (&logs["leaves"][0]["at"], &logs["disconnects"][0]["at"]);
        assert!(
            left.is_u64() && left.as_u64() <= gone.as_u64(),
            "run {run}: leave at {left}, disconnect at {gone}"
        );
    }
}

/// An in-process hub against a scripted server at `addr` with `COINDCX_EIO=eio`. REST goes
/// nowhere: the reconcile fails and is logged, which is not under test here.
async fn scripted_hub(addr: std::net::SocketAddr, eio: &str) -> coindcx_hub::RunningHub {
    let url = format!("http://{addr}");
    let rest = format!("http://127.0.0.1:{}", common::free_port());
    let config = common::hub_config_for(&url, &rest, &[("COINDCX_EIO", eio)]);
    coindcx_hub::start(config).await.unwrap()
}

/// A scripted Engine.IO 4 server that behaves: `40{"sid":..}` after the client's `40`, a ping
/// every 200 ms, `Left Channel` after `leave`. While `cuts` is above zero it closes a joined
/// connection (and counts one down). Each connection's client messages arrive on the channel
/// when it ends: a probe is an empty transcript.
async fn eio4_server(
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
) {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::atomic::Ordering;
    use tokio_tungstenite::tungstenite::Message;
    const OPEN: &str =
        r#"0{"sid":"p4","upgrades":[],"pingInterval":200,"pingTimeout":5000,"maxPayload":1000000}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, cuts) = (tx.clone(), cuts.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _ = ws.send(Message::Text(OPEN.into())).await;
                let mut seen: Vec<String> = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        msg = ws.next() => {
                            let Some(Ok(msg)) = msg else { break };
                            let Message::Text(text) = msg else { continue };
                            let reply = match text.as_str() {
                                "40" => Some(r#"40{"sid":"n4"}"#),
                                t if t.starts_with(r#"42["leave""#) => {
                                    Some(r#"42["Left Channel",{"channelName":"coindcx"}]"#)
                                }
                                _ => None,
                            };
                            seen.push(text);
                            if let Some(reply) = reply {
                                let _ = ws.send(Message::Text(reply.into())).await;
                            }
                        }
                        _ = tick.tick() => {
                            if !seen.iter().any(|m| m.starts_with(r#"42["join""#)) {
                                continue;
                            }
                            let cut = cuts
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                                .is_ok();
                            if cut {
                                let _ = ws.close(None).await;
                                break;
                            }
                            let _ = ws.send(Message::Text("2".into())).await;
                        }
                    }
                }
                let _ = tx.send(seen);
            });
        }
    });
    (addr, rx)
}

/// The transcript of the next connection that ends.
async fn ended(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<String>>) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a connection ended within 30 s")
        .expect("the server runs")
}

/// `auto` probes once, remembers "EIO4" while things go well (a desk that comes back after the
/// upstream went idle connects without a probe), and probes again after a drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_remembers_eio4_until_a_drop() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _ = env_logger::builder().is_test(true).try_init();
    let cuts = std::sync::Arc::new(AtomicUsize::new(0));
    let (addr, mut transcripts) = eio4_server(cuts.clone()).await;
    let hub = scripted_hub(addr, "auto").await;
    // rust_socketio's session: the namespace connect and the join (it may pong first).
    let session = |t: &[String]| {
        t.iter().any(|m| m == "40") && t.iter().any(|m| m.starts_with(r#"42["join""#))
    };
    let joined =
        |hub: &coindcx_hub::RunningHub| hub.hub.status.to_json()["upstream"]["state"] == "joined";

    // First desk: probe (closed without a message), then rust_socketio's session.
    let (client, _) = Client::connect_greeted(hub.addr).await;
    assert_eq!(
        ended(&mut transcripts).await,
        Vec::<String>::new(),
        "the probe sends nothing"
    );
    assert!(common::wait_until(|| joined(&hub), Duration::from_secs(30)).await);
    client.close().await;
    let first = ended(&mut transcripts).await;
    assert!(session(&first), "{first:?}");
    assert!(
        first.iter().any(|m| m.starts_with(r#"42["leave""#)),
        "{first:?}"
    );

    // Second desk after the upstream went idle: no probe, straight to the session.
    let (mut client, _) = Client::connect_greeted(hub.addr).await;
    assert!(common::wait_until(|| joined(&hub), Duration::from_secs(30)).await);
    cuts.store(1, Ordering::SeqCst);
    let second = ended(&mut transcripts).await;
    assert!(
        session(&second),
        "no probe before the second session: {second:?}"
    );
    let down = client.next_of_type("system", Duration::from_secs(30)).await;
    assert_eq!(down["data"]["coindcx_connected"], false, "{down}");

    // The server dropped it: the reconnect probes again, then connects.
    assert_eq!(
        ended(&mut transcripts).await,
        Vec::<String>::new(),
        "probe after the drop"
    );
    let up = client.next_of_type("system", Duration::from_secs(30)).await;
    assert_eq!(up["data"]["message"], "upstream re-joined", "{up}");
    client.close().await;
    let third = ended(&mut transcripts).await;
    assert!(session(&third), "{third:?}");
    assert_eq!(eio_gauge(hub.addr).await, 4.0);
    hub.shutdown().await;
}
