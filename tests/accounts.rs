//! SPEC §9: several accounts in one hub. Each account is today's hub on its own: one lazy
//! upstream opened by its first client and closed by its last, its own seq, and nothing of one
//! account reaches another's clients. Signed tokens scope accounts and cap connections per user.
//!
//! Each account points at its own in-process fake exchange (the accounts file's per-account
//! `ws_url`/`api_url`), so "one upstream per account" is counted on each exchange separately.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);
const EVENTS: usize = 1000;

/// Writes an accounts file naming `alpha` (at `a`) and `beta` (at `b`); returns its path (kept
/// alive by the returned directory guard).
fn accounts_file(a: &FakeCoinDcx, b: &FakeCoinDcx) -> (TempDir, String) {
    let dir = TempDir::new();
    let path = dir.0.join("accounts.toml");
    let text = format!(
        "[[account]]\nname = \"alpha\"\nkey_env = \"ALPHA_KEY\"\nsecret_env = \"ALPHA_SECRET\"\nws_url = \"{a}\"\napi_url = \"{a}\"\n\n\
         [[account]]\nname = \"beta\"\nkey_env = \"BETA_KEY\"\nsecret_env = \"BETA_SECRET\"\nws_url = \"{b}\"\napi_url = \"{b}\"\n",
        a = a.url(),
        b = b.url()
    );
    std::fs::write(&path, text).expect("write accounts file");
    (dir, path.to_string_lossy().into_owned())
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("hub-accounts-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A hub serving `alpha` and `beta`; `beta_secret` is what the hub signs beta's join with.
async fn two_account_hub(
    a: &FakeCoinDcx,
    b: &FakeCoinDcx,
    beta_secret: &str,
    extra: &[(&str, &str)],
) -> (coindcx_hub::RunningHub, TempDir) {
    let _ = env_logger::builder().is_test(true).try_init();
    let (dir, path) = accounts_file(a, b);
    let base = [
        ("HUB_BIND", "127.0.0.1:0"),
        ("HUB_ACCOUNTS_FILE", path.as_str()),
        ("ALPHA_KEY", "key-a"),
        ("ALPHA_SECRET", "secret-a"),
        ("BETA_KEY", "key-b"),
        ("BETA_SECRET", beta_secret),
    ];
    let config = config_from(&base, extra);
    (coindcx_hub::start(config).await.expect("hub starts"), dir)
}

/// Reads `n` order frames; returns their (seq, id) in arrival order.
async fn read_orders(c: &mut Client, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let f = c.next_json(T).await;
        match f["type"].as_str() {
            Some("order") => got.push((
                f["seq"].as_u64().expect("seq"),
                f["data"]["id"].as_str().expect("id").to_string(),
            )),
            Some("system") | Some("pnl") => {}
            _ => panic!("unexpected frame {f}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_one_upstream_each_and_only_their_own_events() {
    let fa = FakeCoinDcx::start_with("key-a", "secret-a").await;
    let fb = FakeCoinDcx::start_with("key-b", "secret-b").await;
    let (hub, _dir) = two_account_hub(&fa, &fb, "secret-b", &[("HUB_CLIENT_QUEUE", "4096")]).await;
    let addr = hub.addr;

    let st = status(addr).await;
    assert_eq!(st["accounts"].as_object().unwrap().len(), 2, "{st}");
    assert_eq!(st["accounts"]["alpha"]["upstream"]["state"], "idle");
    assert_eq!(st["accounts"]["beta"]["upstream"]["state"], "idle");
    assert_ne!(
        st["accounts"]["alpha"]["epoch"],
        st["accounts"]["beta"]["epoch"]
    );
    // An unknown account is refused before the upgrade.
    assert_eq!(
        ws_upgrade(addr, "/ws?account=gamma", &[]).await.err(),
        Some(404)
    );
    assert_eq!(http_get(addr, "/readyz?account=gamma").await.0, 404);

    // The first alpha client opens alpha's upstream only.
    let mut a1 = expect_greeted(
        ws_upgrade(addr, "/ws/coindcx?account=alpha", &[]).await,
        "a1",
    )
    .await;
    assert!(wait_until(|| fa.joined_now() == 1, T).await, "alpha joined");
    assert_eq!(
        (fb.connects(), fb.join_attempts()),
        (0, 0),
        "beta has no client yet"
    );
    // No name = the first account.
    let mut a2 = expect_greeted(ws_upgrade(addr, "/ws", &[]).await, "a2").await;
    let mut b1 = expect_greeted(ws_upgrade(addr, "/ws?account=beta", &[]).await, "b1").await;
    let mut b2 = expect_greeted(
        ws_upgrade(addr, "/ws/coindcx?account=beta", &[]).await,
        "b2",
    )
    .await;
    assert!(wait_until(|| fb.joined_now() == 1, T).await, "beta joined");
    assert_eq!(
        (fa.connects(), fb.connects()),
        (1, 1),
        "one upstream per account"
    );

    // 1,000 events on each exchange, interleaved.
    let on_a = numbered_orders(0..EVENTS, EVENTS);
    let on_b = numbered_orders(EVENTS..2 * EVENTS, 2 * EVENTS);
    for (ca, cb) in on_a.chunks(50).zip(on_b.chunks(50)) {
        fa.emit("df-order-update", &event_arg("df-order-update", ca))
            .await;
        fb.emit("df-order-update", &event_arg("df-order-update", cb))
            .await;
    }
    let expect = |range: std::ops::Range<usize>| -> Vec<(u64, String)> {
        range
            .clone()
            .enumerate()
            .map(|(i, n)| (i as u64 + 1, order_id(n)))
            .collect()
    };
    for (name, c) in [("a1", &mut a1), ("a2", &mut a2)] {
        assert_eq!(
            read_orders(c, EVENTS).await,
            expect(0..EVENTS),
            "{name}: exactly alpha's, seq 1..1000"
        );
    }
    for (name, c) in [("b1", &mut b1), ("b2", &mut b2)] {
        assert_eq!(
            read_orders(c, EVENTS).await,
            expect(EVENTS..2 * EVENTS),
            "{name}: exactly beta's, seq 1..1000"
        );
    }
    // Nothing more for anyone (a 1,001st frame would be another account's).
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        if let Some(Incoming::Json(f, _)) = c.next(Duration::from_millis(300)).await {
            assert_ne!(f["type"], "order", "extra frame {f}");
        }
    }
    let st = status(addr).await;
    assert_eq!(st["active_connections"], 4, "summed over accounts: {st}");
    for name in ["alpha", "beta"] {
        assert_eq!(st["accounts"][name]["clients"], 2, "{st}");
        assert_eq!(st["accounts"][name]["seq"], EVENTS as u64, "{st}");
        assert_eq!(st["accounts"][name]["events_total"], EVENTS as u64, "{st}");
    }
    assert_eq!(
        st["seq"], EVENTS as u64,
        "top-level fields are the first account's"
    );
    let (_, metrics) = http_get(addr, "/metrics").await;
    for name in ["alpha", "beta"] {
        assert_eq!(
            metric(
                &metrics,
                &format!("hub_events_in_total{{account=\"{name}\",type=\"order\"}}")
            ),
            Some(EVENTS as f64),
            "{metrics}"
        );
    }

    // Beta's last client leaves: beta's upstream closes, alpha's stays.
    b1.close().await;
    b2.close().await;
    assert!(
        wait_until(|| fb.connected() == 0, T).await,
        "beta's upstream closed by its last client"
    );
    assert_eq!(fb.leaves(), 1, "beta left before disconnecting");
    assert_eq!(fa.joined_now(), 1, "alpha still joined");
    a1.close().await;
    assert_eq!(
        fa.connected(),
        1,
        "alpha keeps its upstream for its remaining client"
    );
    a2.close().await;
    assert!(
        wait_until(|| fa.connected() == 0, T).await,
        "alpha's upstream closed by its last client"
    );
    assert_eq!(
        (fa.connects(), fb.connects()),
        (1, 1),
        "never a second upstream"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_on_one_account_leaves_the_other_joined() {
    let fa = FakeCoinDcx::start_with("key-a", "secret-a").await;
    let fb = FakeCoinDcx::start_with("key-b", "secret-b").await;
    let (hub, _dir) = two_account_hub(&fa, &fb, "not-beta's-secret", &[]).await;
    let addr = hub.addr;
    let mut a = expect_greeted(ws_upgrade(addr, "/ws?account=alpha", &[]).await, "a").await;
    let mut b = expect_greeted(ws_upgrade(addr, "/ws?account=beta", &[]).await, "b").await;
    let failed = loop {
        let sys = b.next_of_type("system", T).await;
        if sys["data"]["upstream_state"] == "auth_failed" {
            break sys;
        }
    };
    assert!(
        failed["data"]["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{failed}"
    );
    assert!(wait_until(|| fa.joined_now() == 1, T).await, "alpha joined");
    let st = status(addr).await;
    assert_eq!(
        st["accounts"]["beta"]["upstream"]["state"], "auth_failed",
        "{st}"
    );
    assert_eq!(
        st["accounts"]["alpha"]["upstream"]["state"], "joined",
        "{st}"
    );
    assert_eq!(fb.joins(), 0, "beta never joined");
    assert_eq!(http_get(addr, "/readyz?account=alpha").await.0, 200);
    assert_eq!(http_get(addr, "/readyz?account=beta").await.0, 503);
    assert_eq!(
        http_get(addr, "/readyz").await.0,
        503,
        "overall: every account"
    );
    // Alpha still streams, and its client heard nothing of beta's failure.
    fa.emit(
        "df-order-update",
        &event_arg("df-order-update", &numbered_orders(0..1, 1)),
    )
    .await;
    loop {
        let f = a.next_json(T).await;
        assert_ne!(
            f["data"]["upstream_state"], "auth_failed",
            "beta's failure reached alpha: {f}"
        );
        if f["type"] == "order" {
            assert_eq!(f["seq"], 1);
            break;
        }
    }
    hub.shutdown().await;
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"jwt-secret"),
    )
    .expect("encode jwt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_and_the_per_user_cap() {
    let fa = FakeCoinDcx::start_with("key-a", "secret-a").await;
    let fb = FakeCoinDcx::start_with("key-b", "secret-b").await;
    let (hub, _dir) = two_account_hub(
        &fa,
        &fb,
        "secret-b",
        &[
            ("HUB_JWT_SECRET", "jwt-secret"),
            ("HUB_AUTH_TOKEN", "static-token"),
            ("HUB_MAX_CLIENTS_PER_USER", "5"),
        ],
    )
    .await;
    let addr = hub.addr;
    let only_alpha = token(json!({"sub": "trader-1", "exp": now() + 600, "accounts": ["alpha"]}));

    // A token for alpha: 403 on beta (named or not), alpha opens.
    assert_eq!(
        ws_upgrade(addr, &format!("/ws?account=beta&token={only_alpha}"), &[])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        ws_upgrade(
            addr,
            &format!("/ws/coindcx?account=beta&token={only_alpha}"),
            &[]
        )
        .await
        .err(),
        Some(403)
    );
    // Unknown stays 404 whatever the token.
    assert_eq!(
        ws_upgrade(addr, &format!("/ws?account=gamma&token={only_alpha}"), &[])
            .await
            .err(),
        Some(404)
    );
    // The static token and a token without `accounts` see every account.
    let any = token(json!({"sub": "trader-2", "exp": now() + 600}));
    let s = expect_greeted(
        ws_upgrade(addr, "/ws?account=beta&token=static-token", &[]).await,
        "static",
    )
    .await;
    let t = expect_greeted(
        ws_upgrade(addr, &format!("/ws?account=beta&token={any}"), &[]).await,
        "unscoped",
    )
    .await;

    // Five connections for trader-1, the sixth is 429; trader-2 is not affected.
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(
            expect_greeted(
                ws_upgrade(addr, &format!("/ws?account=alpha&token={only_alpha}"), &[]).await,
                &format!("trader-1 #{}", i + 1),
            )
            .await,
        );
    }
    assert_eq!(
        ws_upgrade(addr, &format!("/ws?account=alpha&token={only_alpha}"), &[])
            .await
            .err(),
        Some(429),
        "sixth"
    );
    let t2 = expect_greeted(
        ws_upgrade(addr, &format!("/ws?account=alpha&token={any}"), &[]).await,
        "trader-2 on alpha",
    )
    .await;
    // A refused scope does not use up a slot, and closing one frees one.
    mine.pop().unwrap().close().await;
    assert!(
        wait_until(
            || hub
                .accounts
                .pick(Some("alpha"))
                .unwrap()
                .hub
                .status
                .active
                .load(std::sync::atomic::Ordering::SeqCst)
                == 5,
            T
        )
        .await,
        "the closed session is released"
    );
    mine.push(
        expect_greeted(
            ws_upgrade(addr, &format!("/ws?account=alpha&token={only_alpha}"), &[]).await,
            "trader-1 again",
        )
        .await,
    );
    let (_, metrics) = http_get(addr, "/metrics?token=static-token").await;
    for (reason, n) in [
        ("account_scope", 2.0),
        ("per_user", 1.0),
        ("unknown_account", 1.0),
    ] {
        assert_eq!(
            metric(
                &metrics,
                &format!("hub_rejected_upgrades_total{{account=\"alpha\",reason=\"{reason}\"}}")
            ),
            Some(n),
            "{reason}"
        );
    }
    for c in mine.into_iter().chain([s, t, t2]) {
        c.close().await;
    }
    hub.shutdown().await;
}
