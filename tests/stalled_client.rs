//! Browser sessions that can never pin the hub (issue 10 items 6 and 12, SPEC §6).
//!
//! - A client that resumes a long replay and then never reads (4 KiB receive buffer, raw
//!   upgrade by hand) is closed within the heartbeat deadline even on a quiet stream: its slot
//!   is released, its connection reset, and, once the reading client leaves too, the exchange
//!   connection goes idle.
//! - A TCP reset or a plain EOF from a client is counted as `gone`, never as `bad_frame`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;

/// Records in the stream before the stalled client resumes from seq 1.
const RECORDS: usize = 10_000;
const PER_EVENT: usize = 100;
/// The hub's heartbeat deadline (`session::CLIENT_TIMEOUT`).
const HEARTBEAT: Duration = coindcx_hub::session::CLIENT_TIMEOUT;

fn active(hub: &coindcx_hub::RunningHub) -> u64 {
    hub.hub.status.to_json()["active_connections"]
        .as_u64()
        .unwrap()
}

fn closes(hub: &coindcx_hub::RunningHub, reason: &str) -> f64 {
    let m = hub.hub.metrics.render();
    metric(
        &m,
        &format!("hub_client_closes_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(-1.0)
}

/// Upgrades by hand on a socket with a 4 KiB receive buffer and reads only the 101 head: from
/// then on the client never reads, so the hub's writes to it stall.
async fn stalled_client(addr: SocketAddr, query: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /ws/coindcx{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                tcp.read(&mut byte).await.unwrap(),
                1,
                "hub closed the upgrade"
            );
            head.push(byte[0]);
        }
    })
    .await
    .expect("upgrade answered");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_closed_within_the_heartbeat_deadline() {
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[("HUB_UPSTREAM_LINGER_MS", "200")]).await;

    // The reading client: reports every seq and the byte size of every order frame.
    let (mut reader, _) = Client::connect_greeted(hub.addr).await;
    assert!(wait_until(|| fake.joins() == 1, Duration::from_secs(10)).await);
    let (progress_tx, progress) = tokio::sync::watch::channel(0u64);
    let reading = tokio::spawn(async move {
        let mut bytes = 0usize;
        let mut last = 0u64;
        while last <= RECORDS as u64 {
            match reader.next(Duration::from_secs(180)).await {
                Some(Incoming::Json(v, text)) if v["type"] == "order" => {
                    let seq = v["seq"].as_u64().unwrap();
                    assert_eq!(seq, last + 1, "reader: gap or duplicate");
                    last = seq;
                    if seq >= 2 {
                        bytes += text.len();
                    }
                    let _ = progress_tx.send(seq);
                }
                Some(Incoming::Json(..)) => {}
                other => panic!("reader after seq {last}: {other:?}"),
            }
        }
        (reader, bytes)
    });
    let all = numbered_orders(0..RECORDS, RECORDS);
    emit_paced(
        &fake,
        &all,
        PER_EVENT,
        &mut [progress.clone()],
        Duration::from_secs(60),
    )
    .await;
    let epoch = hub.hub.status.epoch.clone();

    // The stalled client resumes from seq 1: a replay of RECORDS - 1 frames it never reads.
    let stalled = stalled_client(hub.addr, &format!("?since=1&epoch={epoch}")).await;
    assert!(wait_until(|| active(&hub) == 2, Duration::from_secs(10)).await);
    let stalled_at = std::time::Instant::now();

    // Closed by the heartbeat deadline although the stream is quiet (no eviction can happen).
    assert!(
        wait_until(|| active(&hub) == 1, HEARTBEAT + Duration::from_secs(30)).await,
        "the stalled client is still counted {:?} after it stopped reading",
        stalled_at.elapsed()
    );
    eprintln!("stalled client released after {:?}", stalled_at.elapsed());
    assert!(
        wait_until(
            || closes(&hub, "ping_timeout") == 1.0,
            Duration::from_secs(10)
        )
        .await
    );
    assert_eq!(closes(&hub, "slow_consumer"), 0.0);
    assert_eq!(closes(&hub, "gone"), 0.0);

    // The reading client is unaffected: it gets the next record, in order.
    fake.emit(
        "df-order-update",
        &event_arg(
            "df-order-update",
            &numbered_orders(RECORDS..RECORDS + 1, RECORDS + 1),
        ),
    )
    .await;
    let (reader, replay_bytes) = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("reader gets the record after the stalled client's close")
        .unwrap();
    // The replay really was more than the kernel's socket buffers can take (4 MiB send buffer
    // at most, 4 KiB receive): the hub's writes to the stalled client were stuck.
    assert!(
        replay_bytes > 8 << 20,
        "replay of only {replay_bytes} bytes"
    );

    reader.close().await;
    assert!(wait_until(|| active(&hub) == 0, Duration::from_secs(10)).await);
    assert!(
        wait_until(
            || hub.hub.status.to_json()["upstream"]["state"] == "idle" && fake.joined_now() == 0,
            Duration::from_secs(20)
        )
        .await,
        "upstream not released: {}",
        hub.hub.status.to_json()
    );
    assert_eq!(fake.connects(), 1);

    // Its connection is torn down (reset), not left to actix, which would go on flushing the
    // replay to it for as long as it stays connected. The client reads at most what its
    // socket buffer held, then the reset.
    let mut stalled = stalled;
    let mut read = 0usize;
    let torn = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    assert!(
        torn.is_ok(),
        "the stalled connection is still open after {read} bytes"
    );
    assert!(
        read < 1 << 20,
        "the hub kept sending after the close: {read} bytes"
    );
    hub.shutdown().await;
}

/// The TCP stream under a test client.
fn tcp_of(c: &Client) -> &TcpStream {
    match c.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("tests use plain ws://"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_eofs_are_counted_as_gone_not_bad_frame() {
    const RESETS: usize = 6;
    const EOFS: usize = 6;
    let fake = FakeCoinDcx::start().await;
    let hub = start_hub(&fake, &[]).await;
    // One client stays for the whole test, so the upstream is not cycled.
    let (_stay, _) = Client::connect_greeted(hub.addr).await;
    for n in 0..RESETS + EOFS {
        let (c, _) = Client::connect_greeted(hub.addr).await;
        assert!(wait_until(|| active(&hub) == 2, Duration::from_secs(10)).await);
        if n < RESETS {
            // SO_LINGER 0: closing sends a TCP RST (a dropped network, a killed browser). With a
            // zero timeout the close does not block, which is what the deprecation warns about.
            #[allow(deprecated)]
            tcp_of(&c).set_linger(Some(Duration::ZERO)).unwrap();
        }
        // Dropped without a close frame: RST with linger 0, else a plain FIN (EOF).
        drop(c);
        assert!(
            wait_until(|| active(&hub) == 1, Duration::from_secs(20)).await,
            "abrupt disconnect {n} not noticed"
        );
    }
    assert!(
        wait_until(
            || closes(&hub, "gone") == (RESETS + EOFS) as f64,
            Duration::from_secs(10)
        )
        .await
    );
    let m = hub.hub.metrics.render();
    for reason in [
        "bad_frame",
        "ping_timeout",
        "rate_limit",
        "binary",
        "slow_consumer",
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("hub_client_closes_total{{reason=\"{reason}\"}}")
            ),
            Some(0.0),
            "{reason}: {m}"
        );
    }
    assert_eq!(closes(&hub, "gone"), (RESETS + EOFS) as f64);
    hub.shutdown().await;
}
