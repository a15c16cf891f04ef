//! `coindcx-hub`: parses the command line and environment ([`config::Cli`]), then serves the
//! hub until SIGINT/SIGTERM, checks the configuration (`check-config`) or prints the version.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use coindcx_hub::config::{self, Cli, Command, Config};

fn main() -> ExitCode {
    // `.env` never overrides the environment, which the flags override in turn.
    let _ = dotenvy::dotenv();
    forget_blank_settings();
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            if let Some(setting) = config::setting_error(&e) {
                eprintln!("coindcx-hub: {setting}");
                return ExitCode::from(2);
            }
            // --help and --version print and exit 0; an unknown flag exits 2 naming it.
            e.exit();
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if cli.command == Some(Command::Version) {
        println!("coindcx-hub {}", config::VERSION);
        return ExitCode::SUCCESS;
    }
    let mut logger = env_logger::Builder::new();
    logger.parse_filters(&cli.settings.log);
    if let Ok(style) = std::env::var("RUST_LOG_STYLE") {
        logger.parse_write_style(&style);
    }
    logger.init();
    let config = match cli.settings.clone().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coindcx-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coindcx-hub: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.command == Some(Command::CheckConfig) {
        let settings = config::effective(&matches);
        let passed = runtime.block_on(coindcx_hub::check::run(&config, &settings));
        // A connection attempt that never finished may still hold a thread: the verdict is
        // printed, so leave without waiting for it.
        std::process::exit(if passed { 0 } else { 1 });
    }
    runtime.block_on(serve(config))
}

/// An empty or blank variable counts as unset, as it always has (clap would hand `""` to the
/// setting's parser). Runs before any thread exists.
fn forget_blank_settings() {
    for (var, _) in config::variables() {
        if std::env::var_os(var).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            std::env::remove_var(var);
        }
    }
}

async fn serve(config: Config) -> ExitCode {
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
