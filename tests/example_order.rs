//! The newcomer's path, end to end: `coindcx-hub` with no credentials (built-in simulator),
//! then `examples/place_test_order`: a WebSocket client on `/ws` sees that order's events
//! (initial, open, then cancelled) with the id the example printed.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{clean_env, Client, Incoming, KillOnDrop, HUB_BIN};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// Builds the example as a newcomer's `cargo run --example` would (a no-op when it is fresh;
/// `cargo test` itself only builds examples as test harnesses) and returns its path.
fn build_example() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "place_test_order",
            "--manifest-path",
            manifest,
        ])
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo build --example place_test_order failed"
    );
    std::path::Path::new(HUB_BIN)
        .parent()
        .unwrap()
        .join("examples")
        .join("place_test_order")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_order_appears_on_the_stream_and_is_cancelled() {
    // Built before the hub starts and the client connects: a client that does not read while
    // cargo compiles answers no pings, and the hub would close it after its 45 s deadline.
    let example = tokio::task::spawn_blocking(build_example).await.unwrap();
    let dir = std::env::temp_dir().join(format!("coindcx-hub-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hub_port, sim_port) = (common::free_port(), common::free_port());
    let hub = KillOnDrop(
        clean_env(&mut Command::new(HUB_BIN), &dir)
            .env("RUST_LOG", "warn")
            .env("HUB_BIND", format!("127.0.0.1:{hub_port}"))
            .env("HUB_SIM_BIND", format!("127.0.0.1:{sim_port}"))
            .env("HUB_SIM_RATE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hub starts"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{hub_port}").parse().unwrap();
    assert!(
        common::wait_until(|| std::net::TcpStream::connect(addr).is_ok(), T).await,
        "hub did not listen"
    );

    let mut client = Client::connect(addr, "").await;
    let system = client.next_json(T).await;
    assert_eq!(system["data"]["upstream"], "simulator");
    assert_eq!(client.next_json(T).await["type"], "snapshot");
    // The simulator must have the hub's join before the order, or the stream would miss it
    // (and only the reconcile would bring it): wait for the upstream to be joined.
    let deadline = tokio::time::Instant::now() + T;
    while common::status(addr).await["upstream"]["state"] != "joined" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream never joined"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let run = tokio::task::spawn_blocking(move || {
        clean_env(&mut Command::new(example), &dir)
            .env("RUST_LOG", "warn")
            .env("HUB_SIM_BIND", format!("127.0.0.1:{sim_port}"))
            // What a newcomer who copied .env.example has: the real REST host, no credentials.
            .env("COINDCX_API_URL", "https://api.coindcx.com")
            .args(["--wait-secs", "1"])
            .output()
            .expect("example runs")
    });
    tokio::pin!(run);
    // The client keeps reading (and so answering the hub's pings) while the example runs;
    // every order frame is kept until the example has printed which id is its own.
    let mut output = None;
    let mut orders: Vec<Value> = Vec::new();
    let id = loop {
        if let Some(out) = &output {
            let id = example_order_id(out);
            let cancelled = orders
                .iter()
                .any(|o| o["data"]["id"] == id.as_str() && o["data"]["status"] == "cancelled");
            if cancelled {
                break id;
            }
        }
        tokio::select! {
            out = &mut run, if output.is_none() => output = Some(out.expect("example task")),
            frame = client.next(T) => match frame {
                Some(Incoming::Json(frame, _)) => {
                    if frame["type"] == "order" {
                        orders.push(frame);
                    }
                }
                other => panic!(
                    "stream ended before the cancel: {other:?}; example done: {}; saw {orders:?}",
                    output.is_some()
                ),
            },
        }
    };

    let mine: Vec<&Value> = orders
        .iter()
        .filter(|o| o["data"]["id"] == id.as_str())
        .collect();
    let statuses: Vec<&str> = mine
        .iter()
        .map(|o| o["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["initial", "open", "cancelled"]);
    let seqs: Vec<u64> = mine.iter().map(|o| o["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for o in &mine {
        assert_eq!(o["data"]["pair"], "B-ETH_USDT");
        assert_eq!(o["data"]["total_quantity"], "0.001");
    }
    drop(hub);
}

/// The id the example printed, after checking it succeeded and cancelled that order.
fn example_order_id(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "example failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Order id: "))
        .unwrap_or_else(|| panic!("no order id printed:\n{stdout}"))
        .trim()
        .to_string();
    assert!(stdout.contains(&format!("Cancelled {id}")), "{stdout}");
    id
}

#[test]
fn example_help_lists_its_flags_and_a_bad_flag_exits_2() {
    let example = build_example();
    let out = Command::new(&example).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--pair",
        "--side",
        "--price",
        "--quantity",
        "--wait-secs",
        "--live",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let out = Command::new(&example)
        .args(["--side", "hold"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--side"));
}
