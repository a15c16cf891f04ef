//! SPEC §4: the exchange connection exists only while someone watches; a connection storm
//! opens exactly one upstream; the last client leaving closes it (after the linger).
//!
//! Every wait polls a condition with a deadline. The contract's bound (closed at most 2 s
//! after the linger) is asserted as such; the other deadlines are failure bounds for a loaded
//! 2-core box. Sleeps remain only where an absence is checked (no connection without clients).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_for_a_storm_and_none_without_clients() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;

    // No client: no exchange connection. (Absence can only be checked after some time.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.connects(),
        0,
        "hub connected upstream before any client"
    );
    let st = status(hub.addr).await;
    assert_eq!(st["upstream"]["state"], "idle");
    assert_eq!(st["active_connections"], 0);
    assert_eq!(st["coindcx_connected"], false);
    assert_eq!(
        http_get(hub.addr, "/readyz").await.0,
        200,
        "idle with no clients is ready"
    );

    // 200 clients at once.
    let started = Instant::now();
    let addr = hub.addr;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr, "").await;
                let system = c.next_json(Duration::from_secs(15)).await;
                let snapshot = c.next_json(Duration::from_secs(15)).await;
                (c, system, snapshot)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for t in tasks {
        let (c, system, snapshot) = t.await.unwrap();
        assert_eq!(system["type"], "system", "first frame: {system}");
        assert_eq!(system["data"]["message"], "connected");
        assert_eq!(system["data"]["upstream"], "coindcx");
        assert!(system["data"]["coindcx_connected"].is_boolean());
        assert!(system.get("seq").is_none(), "system frames carry no seq");
        assert_eq!(snapshot["type"], "snapshot", "second frame: {snapshot}");
        assert_eq!(snapshot["data"]["seq"], 0);
        for k in ["orders", "positions", "balances"] {
            assert!(snapshot["data"][k].is_array(), "snapshot.{k}");
        }
        clients.push(c);
    }
    eprintln!("200 clients greeted in {:?}", started.elapsed());
    assert!(
        wait_until(|| fake.joins() == 1, Duration::from_secs(20)).await,
        "no join within 20 s"
    );
    // Let any straggling second connection show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.connects(),
        1,
        "a storm of 200 clients must open exactly one upstream"
    );
    assert_eq!(fake.join_attempts(), 1, "exactly one join");
    assert_eq!(fake.joins(), 1, "the join is correctly signed");
    assert_eq!(fake.bad_joins(), 0);
    assert_eq!(fake.connected(), 1);
    let st = status(hub.addr).await;
    assert_eq!(st["active_connections"], 200);
    assert_eq!(st["upstream"]["state"], "joined");
    assert_eq!(st["coindcx_connected"], true);
    assert_eq!(http_get(hub.addr, "/readyz").await.0, 200);

    // Everybody leaves: upstream gone within 2 s of the last one (linger 0, SPEC §4).
    let closers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(c.close()))
        .collect();
    for c in closers {
        c.await.unwrap();
    }
    let left_at = Instant::now();
    assert!(
        wait_until(|| fake.connected() == 0, Duration::from_secs(2)).await,
        "upstream still connected 2 s after the last client left"
    );
    eprintln!(
        "upstream gone {:?} after the last client left",
        left_at.elapsed()
    );
    assert_eq!(
        fake.leaves(),
        1,
        "the hub sends `leave` before disconnecting"
    );
    assert!(
        wait_until(
            || hub.hub.status.to_json()["upstream"]["state"] == "idle",
            Duration::from_secs(2)
        )
        .await,
        "not idle 2 s after the last client left"
    );

    // No reconnect attempt survives.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.connected(), 0, "upstream came back without clients");
    assert_eq!(
        fake.connects(),
        1,
        "a reconnect attempt survived the last client"
    );
    let st = status(hub.addr).await;
    assert_eq!(st["active_connections"], 0);
    assert_eq!(st["upstream"]["state"], "idle");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_keeps_the_upstream_for_a_while() {
    const LINGER: Duration = Duration::from_millis(3000);
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_UPSTREAM_LINGER_MS", "3000")]).await;
    let clients_now = |n: u64| {
        let st = hub.hub.status.to_json();
        st["active_connections"] == n
    };

    let (c, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, Duration::from_secs(20)).await);
    let left_at = Instant::now();
    c.close().await;
    assert!(
        wait_until(|| clients_now(0), Duration::from_secs(10)).await,
        "the hub did not see the client leave"
    );

    // A client arriving during the linger reuses the connection.
    let (c, _) = Client::connect_greeted(hub.addr).await;
    let back_after = left_at.elapsed();
    assert!(
        back_after < LINGER,
        "the second client took {back_after:?}: the machine is too slow for this check"
    );
    assert_eq!(
        fake.connects(),
        1,
        "a client within the linger must not reopen the upstream"
    );
    assert_eq!(fake.leaves(), 0, "`leave` sent during the linger");
    assert_eq!(fake.connected(), 1);
    assert_eq!(hub.hub.status.to_json()["upstream"]["state"], "joined");

    // Closed no sooner than the linger after the last client, and within the linger + 2 s.
    let left_at = Instant::now();
    c.close().await;
    let closed_by = LINGER + Duration::from_secs(2);
    assert!(
        wait_until(
            || fake.connected() == 0,
            closed_by.saturating_sub(left_at.elapsed())
        )
        .await,
        "upstream not closed within the linger + 2 s"
    );
    let gone_after = left_at.elapsed();
    eprintln!(
        "with HUB_UPSTREAM_LINGER_MS=3000 the upstream closed {gone_after:?} after the last client"
    );
    assert!(
        gone_after >= LINGER,
        "closed after {gone_after:?}, before the linger"
    );
    assert_eq!(fake.connects(), 1);
    assert_eq!(fake.leaves(), 1);
    assert!(
        wait_until(
            || hub.hub.status.to_json()["upstream"]["state"] == "idle",
            Duration::from_secs(2)
        )
        .await,
        "not idle after the linger"
    );
    hub.shutdown().await;
}
