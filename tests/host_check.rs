//! SPEC §6 Host check (DNS rebinding) and §1 `HUB_ALLOWED_HOSTS` / `HUB_ALLOWED_ORIGINS`: a page
//! that rebinds its own name to 127.0.0.1 sends `Host: evil.example:8000` and a matching
//! `Origin`; the account routes (`/ws`, `/ws/coindcx`, `/`, `/metrics`) must refuse it with
//! 403 `{"error":"host not allowed"}`, counted, while the loopback names with the bound port,
//! the bind address and the listed hosts are served, and the probes stay open.
//!
//! Every Host below is sent to the hub's real 127.0.0.1 address; only the header differs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);
const ACCOUNT_ROUTES: [&str; 4] = ["/ws", "/ws/coindcx", "/", "/metrics"];
const HOST_REFUSED: &str = r#"{"error":"host not allowed"}"#;

/// `hub_rejected_requests_total{route,reason="host"}`.
fn host_refusals(metrics: &str, route: &str) -> f64 {
    metric(
        metrics,
        &format!("hub_rejected_requests_total{{reason=\"host\",route=\"{route}\"}}"),
    )
    .unwrap_or_else(|| panic!("no host refusal series for {route}:\n{metrics}"))
}

fn rejected_upgrades(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!("hub_rejected_upgrades_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Upgrades `/ws/coindcx` with this `Host` (and `Origin`, if given).
async fn upgrade_as(addr: SocketAddr, host: &str, origin: Option<&str>) -> Result<Client, u16> {
    let mut headers = vec![("Host", host)];
    headers.extend(origin.map(|o| ("Origin", o)));
    ws_upgrade(addr, "/ws/coindcx", &headers).await
}

/// Asserts the upgrade with this Host (and Origin) is served: 101 and the greeting.
async fn served(addr: SocketAddr, host: &str, origin: Option<&str>) {
    let what = format!("Host {host:?}, Origin {origin:?}");
    let c = expect_greeted(upgrade_as(addr, host, origin).await, &what).await;
    c.close().await;
    let (code, body) = http_get_with(addr, "/", &[("Host", host)]).await;
    assert_eq!(code, 200, "GET / with {what}: {body}");
}

/// Asserts the upgrade with this Host (and Origin) gets exactly `code`.
async fn refused(addr: SocketAddr, host: &str, origin: Option<&str>, code: u16) {
    assert_eq!(
        upgrade_as(addr, host, origin).await.err(),
        Some(code),
        "Host {host:?}, Origin {origin:?}"
    );
}

/// Sends raw request bytes; returns the status code of the answer.
async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    s.write_all(request).await.expect("write request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match tokio::time::timeout(WAIT, s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            other => panic!("no status line: {other:?} after {head:?}"),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_attack_is_refused_on_every_account_route_and_counted() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let addr = hub.addr;
    const EVIL_HOST: &str = "evil.example:8000";
    const EVIL_ORIGIN: &str = "http://evil.example:8000";

    // The attack: a page on evil.example:8000, its name rebound to 127.0.0.1.
    const ROUNDS: usize = 3;
    for _ in 0..ROUNDS {
        for path in ["/ws", "/ws/coindcx"] {
            let headers = [("Host", EVIL_HOST), ("Origin", EVIL_ORIGIN)];
            assert_eq!(
                ws_upgrade(addr, path, &headers).await.err(),
                Some(403),
                "upgrade of {path} from a rebound page"
            );
        }
        for path in ["/", "/metrics"] {
            let (code, body) =
                http_get_with(addr, path, &[("Host", EVIL_HOST), ("Origin", EVIL_ORIGIN)]).await;
            assert_eq!((code, body.as_str()), (403, HOST_REFUSED), "GET {path}");
        }
    }
    // A plain GET on the upgrade route gets the same answer (the Host check runs first).
    let (code, body) = http_get_with(addr, "/ws", &[("Host", EVIL_HOST)]).await;
    assert_eq!((code, body.as_str()), (403, HOST_REFUSED), "GET /ws");

    // Nothing reached the exchange, no client was counted.
    assert_eq!(
        fake.connects(),
        0,
        "a refused page must not start the upstream"
    );
    assert_eq!(status(addr).await["active_connections"], 0);

    // The desk itself is served, and the refusals are counted exactly, per route.
    let same = format!("http://127.0.0.1:{}", addr.port());
    let desk = expect_greeted(
        ws_upgrade(addr, "/ws", &[("Origin", same.as_str())]).await,
        "the desk on 127.0.0.1",
    )
    .await;
    let (code, text) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let rounds = ROUNDS as f64;
    assert_eq!(host_refusals(&text, "/ws"), rounds + 1.0);
    assert_eq!(host_refusals(&text, "/ws/coindcx"), rounds);
    assert_eq!(host_refusals(&text, "/"), rounds);
    assert_eq!(host_refusals(&text, "/metrics"), rounds);
    assert_eq!(rejected_upgrades(&text, "host"), 2.0 * rounds + 1.0);
    assert_eq!(
        rejected_upgrades(&text, "origin"),
        0.0,
        "the Host check ran first"
    );
    desk.close().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_checked_before_the_token() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_AUTH_TOKEN", "s3cret")]).await;
    let addr = hub.addr;
    let evil = [("Host", "evil.example:8000")];
    assert_eq!(
        ws_upgrade(addr, "/ws/coindcx?token=s3cret", &evil)
            .await
            .err(),
        Some(403),
        "right token, rebound Host"
    );
    assert_eq!(
        ws_upgrade(addr, "/ws/coindcx?token=wrong", &evil)
            .await
            .err(),
        Some(403),
        "wrong token, rebound Host: no hint that a token is needed"
    );
    let (code, body) = http_get_with(addr, "/metrics?token=s3cret", &evil).await;
    assert_eq!((code, body.as_str()), (403, HOST_REFUSED));
    let (code, text) = http_get(addr, "/metrics?token=s3cret").await;
    assert_eq!(code, 200);
    assert_eq!(rejected_upgrades(&text, "host"), 2.0);
    assert_eq!(rejected_upgrades(&text, "token"), 0.0);
    assert_eq!(rejected_upgrades(&text, "metrics_token"), 0.0);
    assert_eq!(host_refusals(&text, "/metrics"), 1.0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_names_are_served_with_the_bound_port_only() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let addr = hub.addr;
    let port = addr.port();
    assert_ne!(port, 80, "the tests bind port 0");

    for name in ["localhost", "127.0.0.1", "[::1]", "LocalHost"] {
        let host = format!("{name}:{port}");
        served(addr, &host, None).await;
        let origin = format!("http://{name}:{port}");
        served(addr, &host, Some(&origin)).await;
    }
    let mut refusals = 0.0;
    for host in [
        format!("localhost:{}", port + 1),
        format!("127.0.0.1:{}", port - 1),
        format!("[::1]:{}", port + 1),
        "localhost".to_string(),
        "localhost:80".to_string(),
        format!("127.0.0.2:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("evil.example:{port}"),
    ] {
        // With and without a matching Origin: the Origin cannot vouch for a Host.
        refused(addr, &host, None, 403).await;
        refused(addr, &host, Some(&format!("http://{host}")), 403).await;
        let (code, body) = http_get_with(addr, "/metrics", &[("Host", &host)]).await;
        assert_eq!((code, body.as_str()), (403, HOST_REFUSED), "Host {host}");
        refusals += 2.0;
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(host_refusals(&text, "/ws/coindcx"), refusals);
    assert_eq!(host_refusals(&text, "/metrics"), refusals / 2.0);
    assert_eq!(host_refusals(&text, "/"), 0.0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bind_address_is_served() {
    let fake = FakeCoinDcx::start().await;
    // Another loopback address: not one of the loopback names, served because it is bound.
    let hub = start_hub(&fake, &[("HUB_BIND", "127.0.0.2:0")]).await;
    let addr = hub.addr;
    let port = addr.port();
    served(addr, &format!("127.0.0.2:{port}"), None).await;
    served(addr, &format!("localhost:{port}"), None).await;
    refused(addr, &format!("127.0.0.3:{port}"), None, 403).await;
    refused(addr, &format!("127.0.0.2:{}", port + 1), None, 403).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_with_and_without_port() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(
        &fake,
        &[(
            "HUB_ALLOWED_HOSTS",
            "Desk.Example, ops.example:8443,api.example:443",
        )],
    )
    .await;
    let addr = hub.addr;
    let port = addr.port();

    // Without a port: any port. With one: that port; a default port also matches a Host
    // without a port (the browser leaves 443 out).
    for host in [
        "desk.example",
        "desk.example:8000",
        "DESK.EXAMPLE:1",
        "ops.example:8443",
        "api.example",
        "api.example:443",
    ] {
        served(addr, host, None).await;
    }
    served(addr, &format!("localhost:{port}"), None).await;
    for host in [
        "ops.example",
        "ops.example:8444",
        "api.example:80",
        "api.example:8443",
        "desk.example.evil.example",
        "evil.example:8000",
    ] {
        refused(addr, host, None, 403).await;
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(host_refusals(&text, "/ws/coindcx"), 6.0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_turns_the_host_check_off() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_ALLOWED_HOSTS", "*")]).await;
    let addr = hub.addr;
    served(addr, "evil.example:8000", None).await;
    served(addr, "desk.internal", Some("http://desk.internal")).await;
    let (code, _) = http_get_with(addr, "/metrics", &[("Host", "anything.example")]).await;
    assert_eq!(code, 200);
    // The Origin check still holds: same host means the request's Host.
    refused(addr, "desk.internal", Some("http://evil.example"), 403).await;
    let (_, text) = http_get(addr, "/metrics").await;
    for route in ACCOUNT_ROUTES {
        assert_eq!(host_refusals(&text, route), 0.0, "{route}");
    }
    assert_eq!(rejected_upgrades(&text, "origin"), 1.0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_compare_with_default_ports_normalised() {
    let fake = FakeCoinDcx::start().await;
    // Same host: `http://desk.example` is `desk.example:80`, `https://desk.example` is `:443`.
    let hub = start_hub(&fake, &[("HUB_ALLOWED_HOSTS", "desk.example")]).await;
    let addr = hub.addr;
    for (host, origin) in [
        ("desk.example:80", "http://desk.example"),
        ("desk.example", "http://desk.example:80"),
        ("desk.example", "https://desk.example"),
        ("desk.example:443", "https://desk.example"),
        ("desk.example:8080", "http://DESK.example:8080/"),
    ] {
        served(addr, host, Some(origin)).await;
    }
    for (host, origin) in [
        ("desk.example:8080", "http://desk.example"),
        ("desk.example:80", "https://desk.example"),
        ("desk.example", "http://desk.example:443"),
        ("desk.example:80", "http://evil.example"),
        ("desk.example:80", "null"),
    ] {
        refused(addr, host, Some(origin), 403).await;
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(rejected_upgrades(&text, "origin"), 5.0);
    assert_eq!(rejected_upgrades(&text, "host"), 0.0);
    hub.shutdown().await;

    // A list: `https://desk.example:443` is what a browser sends as `https://desk.example`.
    let hub = start_hub(
        &fake,
        &[(
            "HUB_ALLOWED_ORIGINS",
            "https://desk.example:443,http://OPS.example",
        )],
    )
    .await;
    let addr = hub.addr;
    let host = format!("127.0.0.1:{}", addr.port());
    for origin in [
        "https://desk.example",
        "https://desk.example:443",
        "HTTPS://Desk.Example",
        "http://ops.example",
        "http://ops.example:80",
    ] {
        served(addr, &host, Some(origin)).await;
    }
    for origin in [
        "http://desk.example",
        "https://desk.example:8443",
        "https://ops.example",
        "https://desk.example.evil.example",
    ] {
        refused(addr, &host, Some(origin), 403).await;
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(rejected_upgrades(&text, "origin"), 4.0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_stay_open_and_a_missing_host_is_refused() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let addr = hub.addr;
    for path in ["/healthz", "/readyz", "/ws/status"] {
        let (code, body) = http_get_with(addr, path, &[("Host", "evil.example:8000")]).await;
        assert_eq!(code, 200, "{path} with a foreign Host: {body}");
        let req = format!("GET {path} HTTP/1.0\r\n\r\n");
        assert_eq!(
            raw_status(addr, req.as_bytes()).await,
            200,
            "{path} without Host"
        );
    }
    // Account routes: no Host is refused by the check; two Hosts already by actix's parser
    // (400, before any handler).
    let port = addr.port();
    for path in ACCOUNT_ROUTES {
        let req = format!("GET {path} HTTP/1.0\r\n\r\n");
        assert_eq!(
            raw_status(addr, req.as_bytes()).await,
            403,
            "{path} without Host"
        );
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example:8000\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            raw_status(addr, req.as_bytes()).await,
            400,
            "{path} with two Hosts"
        );
    }
    let (_, text) = http_get(addr, "/metrics").await;
    for route in ACCOUNT_ROUTES {
        assert_eq!(host_refusals(&text, route), 1.0, "{route}");
    }
    let v: Value = status(addr).await;
    assert_eq!(v["active_connections"], 0);
    hub.shutdown().await;
}

#[test]
fn entries_that_can_never_match_stop_the_start() {
    let config = |var: &str, value: &str| {
        let map = std::collections::HashMap::from([(var.to_string(), value.to_string())]);
        coindcx_hub::config::Config::from_lookup(|k| map.get(k).cloned())
    };
    for bad in [
        "desk.example:https",
        "desk.example:99999",
        "https://desk.example",
        "desk.example/",
        "user@desk.example",
        "::1",
    ] {
        let e = config("HUB_ALLOWED_HOSTS", bad).expect_err(bad);
        assert_eq!(e.var, "HUB_ALLOWED_HOSTS", "{bad}");
    }
    for ok in [
        "desk.example",
        "desk.example:8443, [::1]:9000",
        "*",
        "192.0.2.7",
    ] {
        assert!(config("HUB_ALLOWED_HOSTS", ok).is_ok(), "{ok}");
    }
    for bad in [
        "desk.example",
        "https://desk.example/app",
        "https://desk.example:port",
        "ftp://desk.example",
    ] {
        let e = config("HUB_ALLOWED_ORIGINS", bad).expect_err(bad);
        assert_eq!(e.var, "HUB_ALLOWED_ORIGINS", "{bad}");
    }
    for ok in ["https://desk.example:443", "http://desk.example/", "*"] {
        assert!(config("HUB_ALLOWED_ORIGINS", ok).is_ok(), "{ok}");
    }
}
