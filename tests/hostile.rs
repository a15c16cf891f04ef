//! SPEC §6 under attack: the real binary, 50 honest clients reading a stream of 2,000 order
//! records, while 500 connections never finish their request head (silent, half a request
//! line, or a slow trickle of header bytes) and 100 send garbage (random bytes, bogus HTTP, an
//! oversized head, a WebSocket upgrade followed by junk).
//!
//! Asserts: every honest client gets every record exactly once, in seq order; the hub closes
//! every hostile connection itself (the request-head timeout is 5 s, so EOF must come within
//! 12 s of connecting); its RSS grows by less than 32 MiB from before the attack to after it.
//!
//! Why 32 MiB: each of the 600 hostile connections costs the hub a socket, a dispatcher and a
//! read buffer (actix grows it up to 32 KiB while it waits for a head); even if none of that
//! were returned to the OS after the connections close, 600 x 32 KiB is about 19 MiB. The
//! stream itself adds the 2,000 frames kept for resume (about 1 KiB each) and allocator slack
//! for 50 clients' queues: measured at about 6 MiB without the attack (13 MiB with it, on a
//! 2-core machine, debug build). A leak of ~50 KiB per hostile connection, or a head buffer
//! that grows without bound (the oversized heads send 256 KiB each), goes over.
//! The records cycle over 50 order ids so the order table stays small: 2,000 distinct open
//! orders would be legitimate state held for snapshots (measured ~24 KiB of RSS each in a
//! debug build) and would drown the figure this test is about.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const HONEST: usize = 50;
const SILENT: usize = 500;
const GARBAGE: usize = 100;
const RECORDS: usize = 2_000;
const PER_EVENT: usize = 20;
/// The records update this many orders in turn (newer `updated_at` each time), so the hub's
/// order table stays small and its RSS measures the attack and the history, not 2,000 open
/// orders held for snapshots.
const ORDERS: usize = 50;
/// Head timeout (5 s) plus slack for a loaded 2-core machine.
const CLOSE_WITHIN: Duration = Duration::from_secs(12);
const RSS_BOUND_KIB: u64 = 32 * 1024;

/// Soft `RLIMIT_NOFILE` of this process (the hub inherits it).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let soft = line.split_whitespace().nth(3).expect("soft limit");
    if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse().expect("soft limit is a number")
    }
}

/// The hub's resident memory in KiB, as its own `/metrics` reports it.
async fn rss_kib(addr: SocketAddr) -> u64 {
    let (code, text) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    (metric(&text, "process_resident_memory_bytes").expect("process metrics") / 1024.0) as u64
}

/// Reads and discards until the peer closes; `Err` if it is still open after `CLOSE_WITHIN`
/// from `since`. A reset counts as closed.
async fn await_eof(stream: &mut TcpStream, since: Instant) -> Result<Duration, String> {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::from_std(since + CLOSE_WITHIN);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {CLOSE_WITHIN:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(since.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Attack {
    Silent,
    HalfRequestLine,
    /// A complete request line, then one header byte every 300 ms.
    Trickle,
    RandomBytes,
    BogusHttp,
    OversizedHead,
    UpgradeThenJunk,
}

/// One hostile connection: how long until the hub closed it.
async fn attack(addr: SocketAddr, kind: Attack, n: u64) -> Result<Duration, String> {
    let started = Instant::now();
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    match kind {
        Attack::Silent => {}
        Attack::HalfRequestLine => {
            let _ = s.write_all(b"GET /ws/coindcx?tok").await;
        }
        Attack::Trickle => {
            let _ = s
                .write_all(b"GET /ws/coindcx HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await;
            let deadline = tokio::time::Instant::from_std(started + CLOSE_WITHIN);
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        if s.write_all(b"X").await.is_err() {
                            return Ok(started.elapsed());
                        }
                    }
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Ok(started.elapsed()),
                        Ok(_) => {} // a 408 before the close
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(format!("trickle still open after {CLOSE_WITHIN:?}"));
                    }
                }
            }
        }
        Attack::RandomBytes => {
            let len = rng.gen_range(1..4096);
            let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = s.write_all(&junk).await;
        }
        Attack::BogusHttp => {
            let variants: [&[u8]; 4] = [
                b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                b"GET /ws/coindcx HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 definitely not TLS\r\n\r\n",
                b"GET /ws/coindcx HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n\xff\xfe",
            ];
            let _ = s.write_all(variants[(n as usize) % variants.len()]).await;
        }
        Attack::OversizedHead => {
            let mut head = b"GET /ws/coindcx HTTP/1.1\r\nHost: x\r\nX-Fill: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 256 * 1024));
            head.extend_from_slice(b"\r\n\r\n");
            // The hub may close before taking it all: a write error is fine.
            let _ = s.write_all(&head).await;
        }
        Attack::UpgradeThenJunk => {
            let req = format!(
                "GET /ws/coindcx HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("write upgrade: {e}"))?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await {
                    Ok(Ok(1)) => head.push(byte[0]),
                    other => return Err(format!("no upgrade answer: {other:?}")),
                }
            }
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&head)
                ));
            }
            let len = rng.gen_range(16..2048);
            let mut junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // An unmasked binary frame header first, so even lucky junk is a protocol error.
            junk[0] = 0x82;
            junk[1] = 0x05;
            let _ = s.write_all(&junk).await;
        }
    }
    await_eof(&mut s, started).await
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    if times.is_empty() {
        return "none".into();
    }
    let pct = |p: usize| times[(times.len() - 1) * p / 100].as_secs_f64();
    format!(
        "n={} min {:.2} s, median {:.2} s, p99 {:.2} s, max {:.2} s",
        times.len(),
        pct(0),
        pct(50),
        pct(99),
        pct(100)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_connections_do_not_hurt_honest_clients() {
    let limit = open_files_limit();
    assert!(
        limit >= 2048,
        "RLIMIT_NOFILE soft limit is {limit}: this test needs >= 2048 open files (raise `ulimit -n`)"
    );
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("the hostile test must finish within 60 s");
}

async fn run() {
    let fake = FakeCoinDcx::start().await;
    let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let log_path =
        std::env::temp_dir().join(format!("coindcx-hub-hostile-{}.log", std::process::id()));
    let child = hub_command(&fake, addr, "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .expect("spawn the hub binary");
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    assert!(
        wait_until(
            || std::net::TcpStream::connect(addr).is_ok(),
            Duration::from_secs(10)
        )
        .await,
        "the binary did not listen on {addr}"
    );

    // Honest clients.
    let mut honest = Vec::new();
    for _ in 0..HONEST {
        honest.push(Client::connect_greeted(addr).await.0);
    }
    assert!(wait_until(|| fake.joins() == 1, Duration::from_secs(10)).await);
    assert_eq!(status(addr).await["active_connections"], HONEST as u64);
    let rss_before = rss_kib(addr).await;

    let mut progress = Vec::new();
    let readers: Vec<_> = honest
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            let (tx, rx) = tokio::sync::watch::channel(0u64);
            progress.push(rx);
            tokio::spawn(async move {
                let mut count = 0u64;
                while count < RECORDS as u64 {
                    let text =
                        match tokio::time::timeout(Duration::from_secs(20), c.ws.next()).await {
                            Ok(Some(Ok(Message::Text(t)))) => t,
                            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                            other => panic!("honest client {n} after {count} records: {other:?}"),
                        };
                    let v: Value = serde_json::from_str(&text).expect("JSON frame");
                    if v["type"] != "order" {
                        // system / ping / reconcile notices are not records.
                        continue;
                    }
                    assert_eq!(
                        v["seq"],
                        count + 1,
                        "honest client {n}: seq gap or duplicate: {text}"
                    );
                    assert_eq!(
                        v["data"]["id"],
                        order_id(count as usize % ORDERS),
                        "honest client {n}: wrong record"
                    );
                    count += 1;
                    let _ = tx.send(count);
                }
                (c, count)
            })
        })
        .collect();

    // The attack, all at once.
    let attack_started = Instant::now();
    let mut hostile = Vec::new();
    for i in 0..SILENT {
        let kind = match i % 5 {
            0 | 1 => Attack::Silent,
            2 | 3 => Attack::HalfRequestLine,
            _ => Attack::Trickle,
        };
        hostile.push((kind, tokio::spawn(attack(addr, kind, i as u64))));
    }
    for i in 0..GARBAGE {
        let kind = match i % 4 {
            0 => Attack::RandomBytes,
            1 => Attack::BogusHttp,
            2 => Attack::OversizedHead,
            _ => Attack::UpgradeThenJunk,
        };
        hostile.push((kind, tokio::spawn(attack(addr, kind, (SILENT + i) as u64))));
    }

    // Meanwhile the exchange streams 2,000 records, 20 per event, paced by the honest readers.
    let all = numbered_orders(0..RECORDS, ORDERS);
    let stream_started = Instant::now();
    emit_paced(
        &fake,
        &all,
        PER_EVENT,
        &mut progress,
        Duration::from_secs(20),
    )
    .await;
    let stream_time = stream_started.elapsed();

    let mut honest = Vec::new();
    for r in readers {
        let (c, count) = r.await.expect("honest reader");
        assert_eq!(count, RECORDS as u64);
        honest.push(c);
    }

    // Every hostile connection closed by the hub.
    let mut silent_times = Vec::new();
    let mut garbage_times = Vec::new();
    let mut failures = Vec::new();
    for (i, (kind, h)) in hostile.into_iter().enumerate() {
        match h.await.expect("attack task") {
            Ok(t) if i < SILENT => silent_times.push(t),
            Ok(t) => garbage_times.push(t),
            Err(e) => failures.push(format!("#{i} {kind:?}: {e}")),
        }
    }
    let attack_time = attack_started.elapsed();
    if !failures.is_empty() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!(
            "{} hostile connections not closed by the hub, e.g. {:?}\nhub log tail:\n{}",
            failures.len(),
            &failures[..failures.len().min(10)],
            log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
    }

    // The hub is back to exactly the honest clients and still serves.
    let mut active = Value::Null;
    for _ in 0..50 {
        active = status(addr).await["active_connections"].clone();
        if active == HONEST as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(active, HONEST as u64, "only the honest clients remain");
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &metrics,
            "hub_client_closes_total{reason=\"slow_consumer\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "no honest client was evicted"
    );
    assert_eq!(
        metric(&metrics, "hub_client_closes_total{reason=\"bad_frame\"}"),
        Some((GARBAGE / 4) as f64),
        "every upgrade followed by junk was closed with 1008 and counted"
    );
    let (_, late) = Client::connect_greeted(addr).await;
    assert_eq!(
        late["data"]["seq"], RECORDS as u64,
        "a new client starts after the stream"
    );

    let rss_after = rss_kib(addr).await;
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "hostile: {SILENT} head-less + {GARBAGE} garbage connections against {HONEST} honest clients"
    );
    eprintln!(
        "  {RECORDS} records in events of {PER_EVENT} delivered to all {HONEST} in {:.2} s",
        stream_time.as_secs_f64()
    );
    eprintln!("  head-less closed after: {}", summary(silent_times));
    eprintln!("  garbage closed after:   {}", summary(garbage_times));
    eprintln!(
        "  all hostile closed within {:.2} s of the attack",
        attack_time.as_secs_f64()
    );
    eprintln!(
        "  hub RSS before {:.1} MiB, after {:.1} MiB, growth {:.1} MiB (bound {} MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        growth as f64 / 1024.0,
        RSS_BOUND_KIB / 1024
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "hub RSS grew by {growth} KiB (bound {RSS_BOUND_KIB} KiB)"
    );

    for c in honest {
        c.close().await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = wait_until(
        || matches!(child.0.try_wait(), Ok(Some(_))),
        Duration::from_secs(6),
    )
    .await;
    let _ = std::fs::remove_file(&log_path);
}
