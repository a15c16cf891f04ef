//! SPEC §4 under real faults (issue 10 items 1 and 2): an exchange address that accepts TCP and
//! never answers, and `leave` against real socket.io 4 and 2 servers (node), which drop an
//! event that arrives together with the disconnect.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The supervisor's deadline for one attempt (TCP + WS + Engine.IO open + Socket.IO Connect).
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(10);
/// The backoff ceiling after one failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Room for a loaded 2-core CI box on top of a deadline: a failure bound, not an expectation.
const SLACK: Duration = Duration::from_secs(5);

async fn upstream_state(addr: std::net::SocketAddr) -> String {
    status(addr).await["upstream"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Item 1: a stalled handshake is a failed attempt: retried after the deadline + backoff,
/// announced to browsers, and the last client leaving closes every socket and goes `idle`
/// within 2 s even while an attempt is stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshake_is_retried_reported_and_stopped() {
    let exchange = SilentListener::start().await;
    let hub = coindcx_hub::start(hub_config_for(&exchange.url(), &exchange.url(), &[]))
        .await
        .expect("hub starts");
    let (mut c, _) = Client::connect_greeted(hub.addr).await;
    assert!(
        wait_until(|| exchange.accepted() == 1, Duration::from_secs(10)).await,
        "the hub never opened a TCP connection"
    );
    assert_eq!(upstream_state(hub.addr).await, "connecting");

    // The attempt fails at its deadline and the browser is told.
    let sys = c
        .next_of_type("system", ATTEMPT_DEADLINE + SLACK + SLACK)
        .await;
    assert_eq!(
        sys["data"]["message"], "upstream unreachable; retrying with backoff",
        "{sys}"
    );
    assert_eq!(sys["data"]["upstream_state"], "reconnecting");
    assert_eq!(sys["data"]["coindcx_connected"], false);
    assert_eq!(sys["data"]["reason"], "no Socket.IO connect within 10 s");

    // A retry within the deadline + backoff, and the stalled socket is closed.
    assert!(
        wait_until(|| exchange.accepted() == 2, FIRST_BACKOFF + SLACK).await,
        "no retry after the stalled attempt"
    );
    let (first, second) = {
        let s = exchange.sockets.lock().unwrap();
        (s[0].0, s[1].0)
    };
    let gap = second - first;
    eprintln!("retry {gap:?} after the first attempt");
    // (The first accept can lag its attempt's start on a loaded box: 1 s of room below.)
    assert!(
        gap >= ATTEMPT_DEADLINE - Duration::from_secs(1),
        "retried after {gap:?}, before the attempt's deadline"
    );
    assert!(
        gap <= ATTEMPT_DEADLINE + FIRST_BACKOFF + SLACK,
        "retried after {gap:?}"
    );
    assert!(
        wait_until(
            || exchange.sockets.lock().unwrap()[0].1.is_some(),
            Duration::from_secs(2)
        )
        .await,
        "the stalled socket was not closed"
    );
    assert_eq!(upstream_state(hub.addr).await, "reconnecting");

    // The last client leaves while the retry is stalled: idle and every socket closed in 2 s.
    c.close().await;
    let left_at = Instant::now();
    let mut state = String::new();
    let mut settled = false;
    while left_at.elapsed() < Duration::from_secs(2) {
        state = upstream_state(hub.addr).await;
        if state == "idle" && exchange.open() == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        settled,
        "2 s after the last client left: state {state}, {} of {} sockets still open",
        exchange.open(),
        exchange.accepted()
    );
    eprintln!(
        "idle and closed {:?} after the last client left",
        left_at.elapsed()
    );
    assert_eq!(exchange.accepted(), 2);
    // No attempt survives the stop (absence can only be checked after some time).
    tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(500)).await;
    assert_eq!(
        exchange.accepted(),
        2,
        "an attempt survived the last client"
    );
    hub.shutdown().await;
}

/// Item 1: SIGTERM while an attempt is stalled: the process exits 0 within 2 s and the
/// stalled socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stalled_attempt_exits_within_2_s() {
    let exchange = SilentListener::start().await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = KillOnDrop(
        hub_command_for(&exchange.url(), &exchange.url(), addr, "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("hub binary runs"),
    );
    wait_healthy(addr, Duration::from_secs(20)).await;
    let (mut c, _) = Client::connect_greeted(addr).await;
    assert!(
        wait_until(|| exchange.accepted() == 1, Duration::from_secs(10)).await,
        "the hub never opened a TCP connection"
    );
    assert_eq!(upstream_state(addr).await, "connecting");

    sigterm(child.0.id());
    let signalled = Instant::now();
    // The browser answers the close like a real one would.
    let close = c.expect_close(Duration::from_secs(5)).await;
    assert_eq!(close, Some((1001, "shutting down".to_string())));
    drop(c);
    let exit = wait_exit(&mut child.0, Duration::from_secs(2)).await;
    eprintln!("exit {exit:?} {:?} after SIGTERM", signalled.elapsed());
    let exit = exit.expect("still running 2 s after SIGTERM with an attempt stalled");
    assert_eq!(exit.code(), Some(0));
    assert!(
        wait_until(|| exchange.open() == 0, Duration::from_secs(2)).await,
        "the stalled socket outlived the process"
    );
    assert_eq!(exchange.accepted(), 1);
}

/// The leave and disconnect entries of `/logs` for one socket id: (leave at, disconnect at).
fn leave_then_disconnect(logs: &Value, sid: &str) -> (Option<u64>, Option<u64>) {
    let at = |list: &str| {
        logs[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["sid"] == sid)
            .and_then(|e| e["at"].as_u64())
    };
    (at("leaves"), at("disconnects"))
}

/// Checks run `n` against the node fake: `leave` counted exactly once per run so far, and
/// logged before the disconnect of the same socket.
async fn assert_left_before_disconnect(fake: &NodeFake, n: u64, how: &str) {
    let leaves = fake
        .wait_stat("leaves", |v| v >= n, Duration::from_secs(10))
        .await;
    assert_eq!(
        leaves, n,
        "{how} run {n}: `leave` not counted by {:?}",
        fake.sio
    );
    let logs = fake.logs().await;
    let sid = logs["leaves"][n as usize - 1]["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("{how} run {n}: no leave #{n} in {logs}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (left, gone) = loop {
        let logs = fake.logs().await;
        if let (Some(left), Some(gone)) = leave_then_disconnect(&logs, &sid) {
            break (left, gone);
        }
        assert!(
            Instant::now() < deadline,
            "{how} run {n}: {sid} not disconnected: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        left <= gone,
        "{how} run {n}: leave at {left}, disconnect at {gone}"
    );
    assert_eq!(fake.stat("joins_ok").await, n, "{how} run {n}: joins");
    assert_eq!(fake.stat("room_size").await, 0, "{how} run {n}: room");
    if fake.sio == Sio::V4 {
        // (socket.io 2 counts an extra connect for an Engine.IO 4 client's default namespace.)
        assert_eq!(
            fake.stat("total_connects").await,
            n,
            "{how} run {n}: connects"
        );
        let disconnects = fake
            .wait_stat("total_disconnects", |v| v >= n, Duration::from_secs(10))
            .await;
        assert_eq!(disconnects, n, "{how} run {n}: disconnects");
    }
}

/// One in-process hub, `runs` times: a client arrives (join), leaves (leave, then disconnect).
async fn last_client_leaves_runs(sio: Sio, runs: u64) {
    let fake = NodeFake::start(sio).await;
    let hub = fake.start_hub(&[]).await;
    for n in 1..=runs {
        let (c, _) = Client::connect_greeted(hub.addr).await;
        let joins = fake
            .wait_stat("joins_ok", |v| v >= n, Duration::from_secs(20))
            .await;
        assert_eq!(joins, n, "run {n}: join");
        c.close().await;
        assert_left_before_disconnect(&fake, n, "last-client-leaves").await;
        assert!(
            wait_until(
                || hub.hub.status.to_json()["upstream"]["state"] == "idle",
                Duration::from_secs(10)
            )
            .await,
            "run {n}: not idle"
        );
    }
    hub.shutdown().await;
}

/// A hub subprocess per run against one fake: join, SIGTERM, `leave` counted before the
/// disconnect, exit 0.
async fn sigterm_runs(sio: Sio, runs: u64) {
    let fake = NodeFake::start(sio).await;
    for n in 1..=runs {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = KillOnDrop(
            hub_command_for(&fake.url(), &fake.ctl_url(), addr, "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("hub binary runs"),
        );
        wait_healthy(addr, Duration::from_secs(20)).await;
        let (mut c, _) = Client::connect_greeted(addr).await;
        let joins = fake
            .wait_stat("joins_ok", |v| v >= n, Duration::from_secs(20))
            .await;
        assert_eq!(joins, n, "run {n}: join");
        sigterm(child.0.id());
        let close = c.expect_close(Duration::from_secs(5)).await;
        assert_eq!(close, Some((1001, "shutting down".to_string())), "run {n}");
        drop(c);
        let exit = wait_exit(&mut child.0, Duration::from_secs(5)).await;
        assert_eq!(
            exit.and_then(|e| e.code()),
            Some(0),
            "run {n}: exit after SIGTERM"
        );
        assert_left_before_disconnect(&fake, n, "SIGTERM").await;
    }
}

/// Item 2: against socket.io 4.8, 20 last-client-leaves in a row each deliver `leave`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_reaches_socketio_4_when_the_last_client_leaves() {
    last_client_leaves_runs(Sio::V4, 20).await;
}

/// Item 2: against socket.io 4.8, 20 SIGTERMs in a row each deliver `leave`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_reaches_socketio_4_on_sigterm() {
    sigterm_runs(Sio::V4, 20).await;
}

/// Item 2: and once each against socket.io 2.4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_reaches_socketio_2() {
    last_client_leaves_runs(Sio::V2, 1).await;
    sigterm_runs(Sio::V2, 1).await;
}
