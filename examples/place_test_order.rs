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
//! is not the real exchange's overrides it). Flags (each also read from its variable):
//! `cargo run --example place_test_order -- --help`. Once the order exists it is always
//! cancelled, also on Ctrl-C. Exits non-zero with the exchange's message on any error.

use clap::Parser;
use coindcx_hub::rest::RestClient;
use coindcx_hub::simulator::{DEMO_API_KEY, DEMO_API_SECRET};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

const SIM_URL: &str = "http://127.0.0.1:8010";
const REAL_URL: &str = "https://api.coindcx.com";

/// Places a small limit order far from the market, prints the exchange's answer, cancels it.
///
/// Credentials come from COINDCX_API_KEY / COINDCX_API_SECRET (environment or .env); without
/// them it uses the hub's built-in simulator and its demo key.
#[derive(Parser, Debug)]
#[command(name = "place_test_order", after_help = AFTER_HELP)]
struct Options {
    /// Futures pair
    #[arg(long, env = "TEST_ORDER_PAIR", default_value = "B-ETH_USDT")]
    pair: String,
    /// Order side
    #[arg(long, env = "TEST_ORDER_SIDE", default_value = "buy",
          value_parser = ["buy", "sell"])]
    side: String,
    /// Limit price (simulator default 1000.00; required against the real exchange)
    #[arg(long, env = "TEST_ORDER_PRICE")]
    price: Option<String>,
    /// Quantity, as the exchange's decimal
    #[arg(long, env = "TEST_ORDER_QUANTITY", default_value = "0.001")]
    quantity: String,
    /// Seconds to wait before cancelling
    #[arg(long, env = "TEST_ORDER_WAIT_SECS", default_value_t = 3)]
    wait_secs: u64,
    /// Required with real credentials: this places a REAL order
    #[arg(long)]
    live: bool,
}

const AFTER_HELP: &str = "Environment: COINDCX_API_KEY, COINDCX_API_SECRET, COINDCX_API_URL \
(REST base), HUB_SIM_BIND (the simulator's address when no credentials are set). A .env file \
in the working directory is read; flags beat variables. Once the order exists it is always \
cancelled, also on Ctrl-C. Exits non-zero with the exchange's message on any error.";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    // --help exits 0, a bad flag exits 2 naming it (clap's conventions).
    let opts = Options::parse();
    match run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> Result<(), String> {
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
