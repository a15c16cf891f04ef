//! SPEC §6 and §1: who may open a WebSocket, with the exact HTTP status of each refusal, the
//! close code of an expired signed token, the public-bind guard, and secrets kept out of logs.
//!
//! A refused upgrade is an ordinary HTTP answer before the switch, which tokio-tungstenite
//! reports as `Error::Http(response)`; `upgrade` (common's `ws_upgrade`) turns that into
//! `Err(status)`. The Host check (DNS rebinding) has its own file: tests/host_check.rs.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::MaybeTlsStream;

const TOKEN: &str = "s3cret";
const JWT_SECRET: &str = "jwtsecret";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers

use common::{expect_greeted as greeted, ws_upgrade as upgrade};

/// Same, from a chosen loopback source address (127.0.0.x).
async fn upgrade_from(source: [u8; 4], addr: SocketAddr, path: &str) -> Result<Client, u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    let stream = socket.connect(addr).await.expect("tcp connect");
    let req = ws_request(addr, path, &[]);
    let result = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("upgrade timed out");
    ws_outcome(result)
}

/// `GET` with optional extra header → (status, body).
async fn get(addr: SocketAddr, path: &str, header: Option<(&str, &str)>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    http_get_with(addr, path, &headers).await
}

fn rejected(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!("hub_rejected_upgrades_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

fn order_record(i: usize) -> Value {
    numbered_orders(i..i + 1, usize::MAX).remove(0)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt_with(alg: jsonwebtoken::Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode jwt")
}

fn jwt(secret: &str, exp: u64) -> String {
    jwt_with(
        jsonwebtoken::Algorithm::HS256,
        secret,
        &json!({"sub": "desk-1", "exp": exp}),
    )
}

// ---------------------------------------------------------------------------------------------
// HUB_AUTH_TOKEN

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_token_guards_upgrades_and_metrics_only() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_AUTH_TOKEN", TOKEN)]).await;
    let addr = hub.addr;

    // Open routes need no token.
    for path in ["/ws/status", "/healthz", "/readyz"] {
        let (code, body) = get(addr, path, None).await;
        assert_eq!(code, 200, "{path} without token: {body}");
    }
    // /metrics needs it.
    assert_eq!(get(addr, "/metrics", None).await.0, 401);
    assert_eq!(
        get(addr, "/metrics", Some(("Authorization", "Bearer nope")))
            .await
            .0,
        401
    );
    assert_eq!(get(addr, "/metrics?token=nope", None).await.0, 401);
    let bearer = format!("Bearer {TOKEN}");
    let (code, text) = get(addr, "/metrics", Some(("Authorization", &bearer))).await;
    assert_eq!(code, 200, "/metrics with Bearer");
    assert!(text.contains("hub_rejected_upgrades_total"), "{text}");
    assert_eq!(
        get(addr, &format!("/metrics?token={TOKEN}"), None).await.0,
        200
    );

    // The legitimate clients: ?token= and Authorization: Bearer, on both paths.
    let mut by_query = greeted(
        upgrade(addr, &format!("/ws/coindcx?token={TOKEN}"), &[]).await,
        "?token=",
    )
    .await;
    let mut by_header = greeted(
        upgrade(addr, "/ws", &[("Authorization", &bearer)]).await,
        "Bearer",
    )
    .await;
    assert!(
        wait_until(|| fake.joins() == 1, WAIT).await,
        "upstream joined"
    );

    // Interleave exchange events with refused upgrades: the legitimate clients get every event.
    const EVENTS: usize = 12;
    let refusals: [(&str, Option<(&str, &str)>); 9] = [
        ("/ws/coindcx", None),
        ("/ws", None),
        ("/ws/coindcx?token=", None),
        ("/ws/coindcx?token=wrong", None),
        ("/ws/coindcx?token=S3CRET", None),
        ("/ws/coindcx?token=s3cre", None),
        ("/ws/coindcx?token=s3cretx", None),
        ("/ws/coindcx", Some(("Authorization", "Bearer wrong"))),
        ("/ws/coindcx", Some(("Authorization", "Basic czNjcmV0"))),
    ];
    let mut refused = 0u64;
    for i in 0..EVENTS {
        fake.emit(
            "df-order-update",
            &event_arg("df-order-update", &[order_record(i)]),
        )
        .await;
        let (path, header) = refusals[i % refusals.len()];
        let headers: Vec<(&str, &str)> = header.into_iter().collect();
        match upgrade(addr, path, &headers).await {
            Err(code) => assert_eq!(code, 401, "{path} {header:?}"),
            Ok(_) => panic!("{path} {header:?}: upgrade accepted without the right token"),
        }
        refused += 1;
        for (name, c) in [("query", &mut by_query), ("bearer", &mut by_header)] {
            let ev = c.next_of_type("order", WAIT).await;
            assert_eq!(ev["seq"], (i + 1) as u64, "{name} client: {ev}");
            assert_eq!(ev["data"]["id"], order_id(i), "{name} client: {ev}");
        }
    }
    // The rest of the refusal list once more, without events.
    for (path, header) in refusals {
        let headers: Vec<(&str, &str)> = header.into_iter().collect();
        assert_eq!(
            upgrade(addr, path, &headers).await.err(),
            Some(401),
            "{path} {header:?}"
        );
        refused += 1;
    }
    // Nothing beyond the events emitted reached the legitimate clients.
    for c in [&mut by_query, &mut by_header] {
        while let Some(inc) = c.next(Duration::from_millis(300)).await {
            match inc {
                Incoming::Json(v, _) => assert_ne!(v["type"], "order", "extra order frame {v}"),
                other => panic!("legitimate client lost its socket: {other:?}"),
            }
        }
    }

    let (code, text) = get(addr, "/metrics", Some(("Authorization", &bearer))).await;
    assert_eq!(code, 200);
    assert_eq!(
        rejected(&text, "token"),
        refused as f64,
        "every refused upgrade is counted as reason=token"
    );
    assert_eq!(rejected(&text, "metrics_token"), 3.0, "/metrics refusals");
    assert_eq!(status(addr).await["active_connections"], 2);
    eprintln!(
        "token: {refused} upgrades refused with 401, {EVENTS} events delivered to both clients"
    );

    by_query.close().await;
    by_header.close().await;
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// HUB_JWT_SECRET

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tokens_are_checked_and_expire() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_JWT_SECRET", JWT_SECRET)]).await;
    let addr = hub.addr;

    let good = jwt(JWT_SECRET, now_secs() + 3600);
    let mut long_lived = greeted(
        upgrade(addr, &format!("/ws/coindcx?token={good}"), &[]).await,
        "valid jwt in query",
    )
    .await;
    let bearer = format!("Bearer {good}");
    let by_header = greeted(
        upgrade(addr, "/ws/coindcx", &[("Authorization", &bearer)]).await,
        "valid jwt in header",
    )
    .await;

    // Refusals: expired, bad signature, wrong algorithm, no exp, tampered payload, none.
    let expired = jwt(JWT_SECRET, now_secs() - 10);
    let bad_sig = jwt("not-the-secret", now_secs() + 3600);
    let hs512 = jwt_with(
        jsonwebtoken::Algorithm::HS512,
        JWT_SECRET,
        &json!({"exp": now_secs() + 3600}),
    );
    let no_exp = jwt_with(
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET,
        &json!({"sub": "x"}),
    );
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let other = jwt("not-the-secret", now_secs() + 7200);
        let other_payload = other.split('.').nth(1).unwrap().to_string();
        format!("{}.{}.{}", parts[0], other_payload, parts[2])
    };
    let mut refused = 0.0;
    for (what, token) in [
        ("expired", expired.as_str()),
        ("bad signature", bad_sig.as_str()),
        ("HS512", hs512.as_str()),
        ("no exp", no_exp.as_str()),
        ("tampered", tampered.as_str()),
        ("garbage", "a.b.c"),
        ("the jwt secret itself", JWT_SECRET),
    ] {
        assert_eq!(
            upgrade(addr, &format!("/ws/coindcx?token={token}"), &[])
                .await
                .err(),
            Some(401),
            "{what} in query"
        );
        let h = format!("Bearer {token}");
        assert_eq!(
            upgrade(addr, "/ws/coindcx", &[("Authorization", &h)])
                .await
                .err(),
            Some(401),
            "{what} in header"
        );
        refused += 2.0;
    }
    assert_eq!(upgrade(addr, "/ws/coindcx", &[]).await.err(), Some(401));
    refused += 1.0;

    // /metrics takes the signed token too.
    assert_eq!(get(addr, "/metrics", None).await.0, 401);
    let exp_bearer = format!("Bearer {expired}");
    assert_eq!(
        get(addr, "/metrics", Some(("Authorization", &exp_bearer)))
            .await
            .0,
        401
    );
    let (code, text) = get(addr, "/metrics", Some(("Authorization", &bearer))).await;
    assert_eq!(code, 200);
    assert_eq!(rejected(&text, "token"), refused);

    // A token that runs out in ~2 s: the socket is closed with 1008 "token expired" once it has.
    let exp = now_secs() + 2;
    let short = jwt(JWT_SECRET, exp);
    let mut short_lived = greeted(
        upgrade(addr, &format!("/ws/coindcx?token={short}"), &[]).await,
        "short-lived jwt",
    )
    .await;
    let close = short_lived.expect_close(Duration::from_secs(6)).await;
    let closed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(
        close,
        Some((1008, "token expired".to_string())),
        "close of an expired signed token"
    );
    assert!(
        closed_at + 0.05 >= exp as f64,
        "closed {:.3} s before exp",
        exp as f64 - closed_at
    );
    eprintln!(
        "short-lived token closed {:.3} s after its exp",
        closed_at - exp as f64
    );

    // The long-lived clients are untouched.
    long_lived.send_text("ping").await;
    let pong = long_lived.next_of_type("pong", WAIT).await;
    assert_eq!(pong["type"], "pong");
    assert!(wait_until(|| hub.hub.status.to_json()["active_connections"] == 2, WAIT).await);
    let (_, text) = get(addr, "/metrics", Some(("Authorization", &bearer))).await;
    assert_eq!(
        metric(&text, "hub_client_closes_total{reason=\"token_expired\"}"),
        Some(1.0)
    );

    long_lived.close().await;
    by_header.close().await;
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// HUB_ALLOWED_ORIGINS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_same_host_by_default() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let addr = hub.addr;
    let same = format!("http://127.0.0.1:{}", addr.port());

    greeted(
        upgrade(addr, "/ws/coindcx", &[("Origin", &same)]).await,
        "same host",
    )
    .await;
    greeted(
        upgrade(addr, "/ws/coindcx", &[("Origin", &format!("{same}/"))]).await,
        "same host, trailing slash",
    )
    .await;
    greeted(upgrade(addr, "/ws/coindcx", &[]).await, "no Origin").await;

    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1).max(1));
    let suffix = format!("{same}.evil.example");
    let mut refused = 0.0;
    for origin in [
        "http://evil.example",
        "https://evil.example:443",
        other_port.as_str(),
        suffix.as_str(),
        "null",
    ] {
        assert_eq!(
            upgrade(addr, "/ws/coindcx", &[("Origin", origin)])
                .await
                .err(),
            Some(403),
            "Origin {origin}"
        );
        refused += 1.0;
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(rejected(&text, "origin"), refused);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_list_and_wildcard() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(
        &fake,
        &[("HUB_ALLOWED_ORIGINS", "http://desk.example:8080")],
    )
    .await;
    let addr = hub.addr;
    let same = format!("http://127.0.0.1:{}", addr.port());
    greeted(
        upgrade(
            addr,
            "/ws/coindcx",
            &[("Origin", "http://desk.example:8080")],
        )
        .await,
        "listed origin",
    )
    .await;
    greeted(upgrade(addr, "/ws/coindcx", &[]).await, "no Origin").await;
    let mut refused = 0.0;
    for origin in [
        "http://evil.example",
        "http://desk.example:8081",
        "https://desk.example:8080",
        "http://desk.example",
        "http://desk.example:8080.evil.example",
        same.as_str(),
    ] {
        assert_eq!(
            upgrade(addr, "/ws/coindcx", &[("Origin", origin)])
                .await
                .err(),
            Some(403),
            "Origin {origin} with a list"
        );
        refused += 1.0;
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(rejected(&text, "origin"), refused);
    hub.shutdown().await;

    let hub = start_hub(&fake, &[("HUB_ALLOWED_ORIGINS", "*")]).await;
    for origin in ["http://evil.example", "null", "http://desk.example:8080"] {
        greeted(
            upgrade(hub.addr, "/ws/coindcx", &[("Origin", origin)]).await,
            origin,
        )
        .await;
    }
    let (_, text) = http_get(hub.addr, "/metrics").await;
    assert_eq!(rejected(&text, "origin"), 0.0);
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Capacity

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_answers_503_until_one_leaves() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_MAX_CLIENTS", "3")]).await;
    let addr = hub.addr;

    // Plain GETs on the upgrade route (not an upgrade) must not leak a slot.
    for _ in 0..5 {
        let (code, _) = http_get(addr, "/ws/coindcx").await;
        assert!(
            (400..500).contains(&code),
            "plain GET on /ws/coindcx: {code}"
        );
    }
    let mut clients = Vec::new();
    for n in 0..3 {
        clients.push(
            greeted(
                upgrade(addr, "/ws/coindcx", &[]).await,
                &format!("client {n}"),
            )
            .await,
        );
    }
    assert_eq!(upgrade(addr, "/ws/coindcx", &[]).await.err(), Some(503));
    assert_eq!(upgrade(addr, "/ws", &[]).await.err(), Some(503));

    clients.pop().unwrap().close().await;
    assert!(
        wait_until(|| hub.hub.status.to_json()["active_connections"] == 2, WAIT).await,
        "the slot is released"
    );
    clients.push(greeted(upgrade(addr, "/ws/coindcx", &[]).await, "after one left").await);
    assert_eq!(upgrade(addr, "/ws/coindcx", &[]).await.err(), Some(503));

    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(rejected(&text, "capacity"), 3.0);
    assert_eq!(status(addr).await["active_connections"], 3);
    for c in clients {
        c.close().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_per_ip_answers_429() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_MAX_CLIENTS_PER_IP", "2")]).await;
    let addr = hub.addr;
    const A: [u8; 4] = [127, 0, 0, 1];
    const B: [u8; 4] = [127, 0, 0, 2];

    let mut from_a = vec![
        greeted(upgrade_from(A, addr, "/ws/coindcx").await, "a1").await,
        greeted(upgrade_from(A, addr, "/ws/coindcx").await, "a2").await,
    ];
    assert_eq!(upgrade_from(A, addr, "/ws/coindcx").await.err(), Some(429));
    assert_eq!(upgrade(addr, "/ws", &[]).await.err(), Some(429));
    // Another address is not affected.
    let b1 = greeted(upgrade_from(B, addr, "/ws/coindcx").await, "b1").await;

    from_a.pop().unwrap().close().await;
    assert!(wait_until(|| hub.hub.status.to_json()["active_connections"] == 2, WAIT).await);
    from_a.push(greeted(upgrade_from(A, addr, "/ws/coindcx").await, "a3").await);
    assert_eq!(upgrade_from(A, addr, "/ws/coindcx").await.err(), Some(429));

    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(rejected(&text, "per_ip"), 3.0);
    assert_eq!(rejected(&text, "capacity"), 0.0);
    for c in from_a {
        c.close().await;
    }
    b1.close().await;
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Config

fn config(
    pairs: &[(&str, &str)],
) -> Result<coindcx_hub::config::Config, coindcx_hub::config::ConfigError> {
    common::try_config_from(pairs, &[])
}

#[test]
fn public_bind_without_token_is_refused() {
    for bind in ["0.0.0.0:0", "[::]:0", "192.0.2.10:8000"] {
        for extra in [
            vec![],
            vec![("HUB_AUTH_TOKEN", "  ")],
            vec![("HUB_ALLOW_ANONYMOUS", "0")],
        ] {
            let mut pairs = vec![("HUB_BIND", bind)];
            pairs.extend(extra.iter().copied());
            let e = config(&pairs).expect_err(&format!("{pairs:?} must be refused"));
            assert_eq!(e.var, "HUB_BIND", "{pairs:?}");
            assert!(e.to_string().contains("HUB_BIND"), "{e}");
        }
        for ok in [
            ("HUB_ALLOW_ANONYMOUS", "1"),
            ("HUB_ALLOW_ANONYMOUS", "true"),
            ("HUB_AUTH_TOKEN", "t"),
            ("HUB_JWT_SECRET", "j"),
        ] {
            assert!(config(&[("HUB_BIND", bind), ok]).is_ok(), "{bind} {ok:?}");
        }
    }
    for loopback in ["127.0.0.1:0", "[::1]:0", "127.1.2.3:0"] {
        assert!(config(&[("HUB_BIND", loopback)]).is_ok(), "{loopback}");
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets never logged

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_status() {
    const KEY: &str = "log-test-api-key";
    const SECRET: &str = "LOGTEST-api-secret-7f3a9c";
    const HUB_TOKEN: &str = "LOGTEST-hub-token-51d2e8";
    let signature = coindcx_hub::signing::join_signature(SECRET);
    let fake = FakeCoinDcx::start_with(KEY, SECRET).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = std::env::temp_dir();
    let out_path = dir.join(format!("coindcx-hub-auth-{}.out", std::process::id()));
    let err_path = dir.join(format!("coindcx-hub-auth-{}.err", std::process::id()));

    let child = hub_command(&fake, addr, "debug")
        .env("HUB_AUTH_TOKEN", HUB_TOKEN)
        .env("COINDCX_API_KEY", KEY)
        .env("COINDCX_API_SECRET", SECRET)
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .expect("spawn the hub binary");
    let mut child = KillOnDrop(child);
    assert!(
        wait_until(|| std::net::TcpStream::connect(addr).is_ok(), WAIT).await,
        "the binary did not listen on {addr}"
    );

    let mut c = greeted(
        upgrade(addr, &format!("/ws/coindcx?token={HUB_TOKEN}"), &[]).await,
        "token client",
    )
    .await;
    let bearer = format!("Bearer {HUB_TOKEN}");
    let mut c2 = greeted(
        upgrade(addr, "/ws", &[("Authorization", &bearer)]).await,
        "bearer client",
    )
    .await;
    assert!(
        wait_until(|| fake.joins() == 1, WAIT).await,
        "joined with the right signature"
    );
    fake.emit(
        "df-order-update",
        &event_arg("df-order-update", &[order_record(0)]),
    )
    .await;
    for cl in [&mut c, &mut c2] {
        let ev = cl.next_of_type("order", WAIT).await;
        assert_eq!(ev["data"]["id"], order_id(0));
    }
    assert_eq!(
        upgrade(addr, "/ws/coindcx?token=wrong-token", &[])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        upgrade(
            addr,
            "/ws/coindcx",
            &[("Authorization", "Bearer LOGTEST-hub-token-51d2e")]
        )
        .await
        .err(),
        Some(401)
    );
    let (code, status_body) = http_get(addr, "/ws/status").await;
    assert_eq!(code, 200);
    let (code, metrics_body) = get(addr, "/metrics", Some(("Authorization", &bearer))).await;
    assert_eq!(code, 200);

    let pid = child.0.id();
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let _ = c.expect_close(WAIT).await;
    let _ = c2.expect_close(WAIT).await;
    let mut exit = None;
    assert!(
        wait_until(
            || {
                exit = child.0.try_wait().unwrap();
                exit.is_some()
            },
            WAIT
        )
        .await,
        "the hub did not exit after SIGTERM"
    );
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let logs = format!("{stdout}{stderr}");
    eprintln!(
        "captured {} bytes of logs ({} lines) at RUST_LOG=debug; exit {exit:?}",
        logs.len(),
        logs.lines().count()
    );
    assert!(
        logs.contains("listening on"),
        "the capture holds the hub's log: {logs}"
    );
    assert!(logs.contains("DEBUG"), "debug logging was on");
    for (what, secret) in [
        ("API secret", SECRET),
        ("join signature", signature.as_str()),
        ("auth token", HUB_TOKEN),
    ] {
        for (place, text) in [
            ("stdout+stderr", logs.as_str()),
            ("/ws/status", status_body.as_str()),
            ("/metrics", metrics_body.as_str()),
        ] {
            if let Some(at) = text.find(secret) {
                let from = at.saturating_sub(300);
                let to = (at + secret.len() + 100).min(text.len());
                panic!(
                    "the {what} appears in {place}: ...{}...",
                    text.get(from..to).unwrap_or("<non-utf8 boundary>")
                );
            }
        }
    }
}
