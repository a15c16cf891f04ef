//! SPEC §6 and §1: SIGTERM tells every client, closes them with 1001, leaves the upstream and
//! exits 0 within 5 s; a bad configuration value stops the process naming the variable.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let fake = FakeCoinDcx::start().await;
    let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let child = hub_command(&fake, addr, "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the hub binary");
    let mut child = KillOnDrop(child);
    let pid = child.0.id();

    // Up when /healthz answers.
    let up = wait_until(
        || std::net::TcpStream::connect(addr).is_ok(),
        Duration::from_secs(10),
    )
    .await;
    assert!(up, "the binary did not listen on {addr}");
    assert_eq!(http_get(addr, "/healthz").await.0, 200);

    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect_greeted(addr).await.0);
    }
    assert!(wait_until(|| fake.joins() == 1, Duration::from_secs(5)).await);
    assert_eq!(fake.connected(), 1);

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let notice = c.next_json(Duration::from_secs(5)).await;
                let close = c.next(Duration::from_secs(5)).await;
                (notice, close)
            })
        })
        .collect();
    for r in readers {
        let (notice, close) = r.await.unwrap();
        assert_eq!(notice["type"], "system", "{notice}");
        assert_eq!(notice["data"]["message"], "shutting down");
        match close {
            Some(Incoming::Close(Some((code, reason)))) => {
                assert_eq!(code, 1001, "close code");
                assert_eq!(reason, "shutting down");
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
    }

    // The process exits 0 within 5 s.
    let mut exit = None;
    let exited = wait_until(
        || {
            exit = child.0.try_wait().unwrap();
            exit.is_some()
        },
        Duration::from_secs(5).saturating_sub(signalled.elapsed()),
    )
    .await;
    assert!(exited, "still running 5 s after SIGTERM");
    eprintln!(
        "exited {:?} after SIGTERM with {:?}",
        signalled.elapsed(),
        exit
    );
    assert_eq!(exit.unwrap().code(), Some(0));

    // The upstream saw `leave` and the socket is gone.
    assert!(wait_until(|| fake.connected() == 0, Duration::from_secs(2)).await);
    assert_eq!(fake.leaves(), 1, "`leave` sent before disconnecting");
    assert_eq!(fake.connects(), 1);
}

/// The binary with a clean environment and no upstream settings.
fn bare_hub() -> Command {
    let mut cmd = Command::new(HUB_BIN);
    clean_env(&mut cmd, &std::env::temp_dir());
    cmd
}

#[test]
fn bad_config_exits_non_zero_naming_the_variable() {
    for (var, value) in [
        ("HUB_CLIENT_QUEUE", "abc"),
        ("HUB_BIND", "nowhere"),
        ("COINDCX_WS_URL", "ftp://x"),
    ] {
        let out = bare_hub()
            .env("HUB_BIND", "127.0.0.1:0")
            .env("COINDCX_API_KEY", API_KEY)
            .env("COINDCX_API_SECRET", API_SECRET)
            .env(var, value)
            .output()
            .expect("run the hub binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{var}={value}: exit {:?}",
            out.status
        );
        assert!(
            stderr.contains(var),
            "{var}={value}: stderr does not name it: {stderr}"
        );
    }
    // One credential without the other is a start-up error too.
    let out = bare_hub()
        .env("HUB_BIND", "127.0.0.1:0")
        .env("COINDCX_API_KEY", "k")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("COINDCX_API_SECRET"));
}
