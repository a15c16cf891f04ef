//! Run the built-in CoinDCX simulator on its own (the hub normally starts it itself).
//!
//! `HUB_SIM_BIND` (default `127.0.0.1:8010`), `SIM_RATE` (events/s, default 2),
//! `SIM_SEED` (default 42). Stops on Ctrl-C.

use coindcx_hub::simulator::{SimConfig, Simulator, DEMO_API_KEY};
use std::process::ExitCode;

fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: bad value {v:?}")),
        _ => Ok(default),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cfg = (|| -> Result<SimConfig, String> {
        let mut cfg = SimConfig::demo(var(
            "HUB_SIM_BIND",
            "127.0.0.1:8010".parse().map_err(|_| "")?,
        )?);
        cfg.rate = var("SIM_RATE", 2.0)?;
        cfg.seed = var("SIM_SEED", 42)?;
        Ok(cfg)
    })();
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sim = match Simulator::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "simulator at {} (api key {DEMO_API_KEY}); Ctrl-C stops it",
        sim.url()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
