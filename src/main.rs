//! `coindcx-hub`: reads the configuration, starts the hub, stops cleanly on SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use coindcx_hub::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coindcx-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let mut running = match coindcx_hub::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coindcx-hub: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {
            log::info!(target: "hub", "signal received: shutting down");
            // Everything below is bounded; the outer timeout keeps the 5 s promise regardless.
            if tokio::time::timeout(Duration::from_millis(4500), running.shutdown()).await.is_err() {
                log::warn!(target: "hub", "shutdown took too long; exiting anyway");
            }
            ExitCode::SUCCESS
        }
        _ = running.wait() => {
            eprintln!("coindcx-hub: HTTP server stopped");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
