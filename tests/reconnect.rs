//! SPEC §3/§4: an upstream drop is announced, re-joined with backoff and announced again;
//! bad credentials end in `auth_failed` without a reconnect loop.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoins_after_the_exchange_restarts() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, T).await);

    fake.emit_fixture("order-update-batch.json").await;
    for seq in 1..=3 {
        assert_eq!(c.next_json(T).await["seq"], seq);
    }

    // The exchange goes away mid-stream and comes back on the same port.
    fake.stop().await;
    let stopped = Instant::now();
    let down = c.next_of_type("system", T).await;
    let msg = down["data"]["message"].as_str().unwrap();
    assert!(msg.starts_with("upstream disconnected"), "{down}");
    assert_eq!(down["data"]["coindcx_connected"], false);
    eprintln!("drop announced {:?} after the stop", stopped.elapsed());
    let st = status(hub.addr).await;
    assert_eq!(st["upstream"]["state"], "reconnecting");
    assert_eq!(st["coindcx_connected"], false);

    fake.restart().await;
    let restarted = Instant::now();
    assert!(
        wait_until(|| fake.joins() == 2, T).await,
        "no re-join within 5 s of the restart"
    );
    eprintln!("re-joined {:?} after the restart", restarted.elapsed());
    let up = c.next_of_type("system", T).await;
    assert_eq!(up["data"]["message"], "upstream re-joined", "{up}");
    assert_eq!(up["data"]["coindcx_connected"], true);
    assert_eq!(fake.join_attempts(), 2);
    assert_eq!(fake.bad_joins(), 0);
    assert!(
        wait_until(
            || hub.hub.status.to_json()["upstream"]["state"] == "joined",
            T
        )
        .await
    );
    let st = status(hub.addr).await;
    assert!(st["upstream"]["reconnects"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(http_get(hub.addr, "/readyz").await.0, 200);

    // A later event is delivered, continuing the sequence.
    fake.emit_fixture("order-update-exponent.json").await;
    let f = c.next_json(T).await;
    assert_eq!(f["type"], "order", "{f}");
    assert_eq!(f["seq"], 4);
    assert_eq!(f["data"]["locked_margin"], "0.000000007009");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_means_auth_failed_without_a_loop() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("COINDCX_API_SECRET", "not-the-secret")]).await;
    let started = Instant::now();
    let (mut c, _) = Client::connect_greeted(hub.addr).await;

    // There is no join acknowledgement, so the first two quick drops look like ordinary drops
    // ("upstream disconnected", then "upstream re-joined" when the next join is sent); the third
    // quick drop in a row is declared an authentication failure.
    let mut messages = Vec::new();
    let sys = loop {
        let sys = c
            .next_of_type(
                "system",
                Duration::from_secs(12).saturating_sub(started.elapsed()),
            )
            .await;
        let msg = sys["data"]["message"].as_str().unwrap().to_string();
        messages.push(msg.clone());
        if msg.contains("authentication failed") {
            break sys;
        }
        assert!(
            msg.starts_with("upstream disconnected") || msg == "upstream re-joined",
            "unexpected system frame before auth_failed: {sys}"
        );
    };
    eprintln!("system frames: {messages:?}");
    assert_eq!(sys["data"]["upstream_state"], "auth_failed");
    eprintln!(
        "auth_failed announced {:?} after the first client",
        started.elapsed()
    );
    let st = status(hub.addr).await;
    assert_eq!(st["upstream"]["state"], "auth_failed", "{st}");
    assert_eq!(st["coindcx_connected"], false);
    let (code, body) = http_get(hub.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("auth_failed"), "{body}");
    let metrics = hub.hub.metrics.render();
    assert_eq!(
        metric(&metrics, r#"hub_upstream_state{state="auth_failed"}"#),
        Some(1.0)
    );

    // No reconnect loop: at most 3 join attempts in 15 s.
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(started.elapsed())).await;
    assert_eq!(fake.joins(), 0);
    assert!(
        fake.join_attempts() <= 3,
        "{} join attempts in 15 s",
        fake.join_attempts()
    );
    assert_eq!(
        fake.join_attempts(),
        3,
        "auth failure is declared after 3 quick drops"
    );
    assert_eq!(fake.connected(), 0);
    assert_eq!(status(hub.addr).await["upstream"]["state"], "auth_failed");

    // A browser that arrives while it lasts is told right after its snapshot.
    let (mut newcomer, _) = Client::connect_greeted(hub.addr).await;
    let sys = newcomer.next_json(Duration::from_secs(5)).await;
    assert_eq!(sys["type"], "system", "{sys}");
    assert_eq!(sys["data"]["upstream_state"], "auth_failed", "{sys}");
    assert!(
        sys["data"]["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{sys}"
    );
    newcomer.close().await;

    // A browser that leaves and comes back does not restart the attempts early.
    c.close().await;
    let (mut again, _) = Client::connect_greeted(hub.addr).await;
    let sys = again.next_of_type("system", Duration::from_secs(5)).await;
    assert_eq!(sys["data"]["upstream_state"], "auth_failed", "{sys}");
    assert_eq!(status(hub.addr).await["upstream"]["state"], "auth_failed");
    assert_eq!(fake.join_attempts(), 3);
    assert_eq!(fake.connected(), 0);
    hub.shutdown().await;
}

/// An exchange that cannot be reached at all: the client is told once, readiness says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_exchange_is_announced() {
    let fake = FakeCoinDcx::start().await;
    fake.stop().await;
    let hub = start_hub(&fake, &[]).await;
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    let sys = c.next_of_type("system", Duration::from_secs(10)).await;
    assert_eq!(
        sys["data"]["message"], "upstream unreachable; retrying with backoff",
        "{sys}"
    );
    assert_eq!(sys["data"]["coindcx_connected"], false);
    assert_eq!(sys["data"]["upstream_state"], "reconnecting");
    let (code, body) = http_get(hub.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("reconnecting"), "{body}");
    // Once the exchange is back, the hub joins and says so.
    fake.restart().await;
    let sys = c.next_of_type("system", Duration::from_secs(20)).await;
    assert_eq!(sys["data"]["message"], "upstream re-joined", "{sys}");
    assert!(wait_until(|| fake.joins() == 1, Duration::from_secs(5)).await);
    hub.shutdown().await;
}
