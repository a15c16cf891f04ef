//! Place a small limit order far from the market, show the exchange's answer, cancel it.
//!
//! ```text
//! cargo run --example place_test_order                       # against the simulator
//! cargo run --example place_test_order -- --price 1500 --live # real account (needs --live)
//! ```
//!
//! Reads the environment and `.env`: `COINDCX_API_KEY`, `COINDCX_API_SECRET`,
//! `COINDCX_API_URL`. Without credentials it talks to the hub's built-in simulator with the
//! demo key at `http://$HUB_SIM_BIND` (default `http://127.0.0.1:8010`; a `COINDCX_API_URL` that
//! is not the real exchange's overrides it). Flags (or env):
//! `--pair` (`TEST_ORDER_PAIR`, default `B-ETH_USDT`), `--side` (`TEST_ORDER_SIDE`, `buy`),
//! `--price` (`TEST_ORDER_PRICE`; simulator default `1000.00`, required with real credentials),
//! `--quantity` (`TEST_ORDER_QUANTITY`, `0.001`), `--wait-secs` (`TEST_ORDER_WAIT_SECS`, `3`),
//! `--live` (required with real credentials). Once the order exists it is always cancelled,
//! also on Ctrl-C. Exits non-zero with the exchange's message on any error.

use coindcx_hub::rest::RestClient;
use coindcx_hub::simulator::{DEMO_API_KEY, DEMO_API_SECRET};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

const SIM_URL: &str = "http://127.0.0.1:8010";
const REAL_URL: &str = "https://api.coindcx.com";

struct Options {
    pair: String,
    side: String,
    price: Option<String>,
    quantity: String,
    wait_secs: u64,
    live: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        pair: env("TEST_ORDER_PAIR").unwrap_or_else(|| "B-ETH_USDT".into()),
        side: env("TEST_ORDER_SIDE").unwrap_or_else(|| "buy".into()),
        price: env("TEST_ORDER_PRICE"),
        quantity: env("TEST_ORDER_QUANTITY").unwrap_or_else(|| "0.001".into()),
        wait_secs: 3,
        live: false,
    };
    if let Some(w) = env("TEST_ORDER_WAIT_SECS") {
        o.wait_secs = w
            .parse()
            .map_err(|_| format!("TEST_ORDER_WAIT_SECS: bad number {w:?}"))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pair" => o.pair = value()?,
            "--side" => o.side = value()?,
            "--price" => o.price = Some(value()?),
            "--quantity" => o.quantity = value()?,
            "--wait-secs" => {
                let v = value()?;
                o.wait_secs = v
                    .parse()
                    .map_err(|_| format!("--wait-secs: bad number {v:?}"))?;
            }
            "--live" => o.live = true,
            "-h" | "--help" => {
                return Err(
                    "usage: place_test_order [--pair P] [--side buy|sell] [--price X] \
                            [--quantity Q] [--wait-secs N] [--live]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.side != "buy" && o.side != "sell" {
        return Err(format!("--side must be buy or sell, not {:?}", o.side));
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let opts = parse_args()?;
    let (key, secret) = (env("COINDCX_API_KEY"), env("COINDCX_API_SECRET"));
    let (client, simulated) = match (key, secret) {
        (None, None) => {
            // The hub serves its simulator on HUB_SIM_BIND; a COINDCX_API_URL copied from
            // .env.example still names the real exchange, which the demo key cannot use.
            let url = match env("COINDCX_API_URL") {
                Some(url) if !url.contains("api.coindcx.com") => url,
                _ => env("HUB_SIM_BIND")
                    .map_or_else(|| SIM_URL.into(), |bind| format!("http://{bind}")),
            };
            println!(
                "No COINDCX_API_KEY/COINDCX_API_SECRET: using the simulator at {url} (demo key)."
            );
            (RestClient::new(&url, DEMO_API_KEY, DEMO_API_SECRET), true)
        }
        (Some(k), Some(s)) => {
            if !opts.live {
                return Err("real credentials are set: this places a REAL order; \
                            re-run with --live (and --price far from the market) to do so"
                    .into());
            }
            let url = env("COINDCX_API_URL").unwrap_or_else(|| REAL_URL.into());
            println!("LIVE: placing a real order on {url}.");
            (RestClient::new(&url, &k, &s), false)
        }
        _ => return Err("set both COINDCX_API_KEY and COINDCX_API_SECRET, or neither".into()),
    };
    let price = match (&opts.price, simulated) {
        (Some(p), _) => p.clone(),
        // The simulator's ETH walks around 2100; 1000.00 never fills.
        (None, true) => "1000.00".into(),
        (None, false) => return Err("--price is required against the real exchange".into()),
    };
    let quantity: Value = serde_json::from_str(&opts.quantity)
        .ok()
        .filter(Value::is_number)
        .ok_or_else(|| format!("--quantity: not a number: {:?}", opts.quantity))?;
    let order = json!({
        "side": opts.side,
        "pair": opts.pair,
        "order_type": "limit_order",
        "price": price,
        "total_quantity": quantity,
        "notification": "no_notification",
        "time_in_force": "good_till_cancel",
        "margin_currency_short_name": "USDT",
    });
    println!("Placing order:\n{}", pretty(&order));
    let created = client
        .create_order(order)
        .await
        .map_err(|e| format!("create failed: {e}"))?;
    println!("Exchange answered:\n{}", pretty(&created));
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .ok_or("the create response has no order id")?
        .to_string();
    println!("Order id: {id}");
    println!(
        "Waiting {} s before cancelling (Ctrl-C cancels now)...",
        opts.wait_secs
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(opts.wait_secs)) => {}
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: cancelling now."),
    }
    let answer = client
        .cancel_order(&id)
        .await
        .map_err(|e| format!("cancel of {id} failed: {e}"))?;
    println!("Cancelled {id}:\n{}", pretty(&answer));
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
