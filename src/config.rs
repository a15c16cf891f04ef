//! The settings: one typed description ([`Settings`], a `clap` derive) that is at once the
//! command line, the environment variables and `--help`; [`Config`] is what the hub runs with.
//!
//! Every setting of SPEC §1 is a flag that also reads its variable. Precedence: flag, then
//! environment variable, then `.env` (loaded by `main` without overriding the environment),
//! then the default. An empty (or blank) value counts as unset, as it always has. A bad value is
//! a [`ConfigError`] naming the variable; `main` prints it and exits with status 2.
//!
//! To add a setting: one field in [`Settings`] (flag, variable, default, one line of help, a
//! value parser that names what is wrong); read it as `config.settings.NAME`. Give it a flat
//! [`Config`] field only when it is derived from several settings. `tests/cli.rs` then asks for
//! its row in the test's table, its line in `.env.example` and the README's `--help` block.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

mod parse;
use crate::accounts::{self, AccountCreds, DEFAULT_ACCOUNT};
use parse::{addr, boolean, count, eio, hosts, origins, rate, rest_url, text, whole, ws_url};

/// Where the hub gets its account stream from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamKind {
    /// The real exchange with these credentials.
    CoinDcx,
    /// The built-in simulator (no credentials configured).
    Simulator,
}

impl UpstreamKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            UpstreamKind::CoinDcx => "coindcx",
            UpstreamKind::Simulator => "simulator",
        }
    }
}

/// Which browser origins may open a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// The Origin's host:port must equal the request's Host.
    SameHost,
    Any,
    List(Vec<String>),
}

/// Which `Host` header values the account routes answer (DNS-rebinding defence, SPEC §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedHosts {
    /// `*`: no Host check (a proxy that rewrites `Host`).
    Any,
    /// Loopback names and the bind address (with the bound port), plus these extra entries
    /// (`desk.example` = any port, `desk.example:8443` = that port only), lower-case.
    List(Vec<String>),
}

/// Engine.IO revision spoken towards the exchange (`COINDCX_EIO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EioMode {
    /// Decide from the server's open packet (EIO4's carries `maxPayload`, EIO3's does not).
    Auto,
    /// Engine.IO 3 (socket.io 2): the client pings every `pingInterval`.
    V3,
    /// Engine.IO 4 (socket.io 3/4): the server pings.
    V4,
}

#[derive(Clone, Debug)]
pub struct SimulatorSettings {
    pub bind: SocketAddr,
    pub rate: f64,
    pub seed: u64,
}

/// `coindcx-hub --version`: the crate version and the git commit it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COINDCX_HUB_COMMIT"),
    ")"
);

const PRECEDENCE: &str = "Every setting is a flag and an environment variable. Precedence: flag, \
then environment variable, then .env (read from the working directory), then the default. An \
empty value counts as unset. A bad value stops the process with exit status 2, naming it.";

/// The command line: an optional subcommand and every setting.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "coindcx-hub",
    version = VERSION,
    about = "Streams a CoinDCX futures account (orders, positions, balances) to browser WebSockets \
             with exact decimals. Without credentials it runs the built-in simulator.",
    after_help = PRECEDENCE,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Validate the settings, print them (secrets masked), then make one signed REST call and
    /// one connect + join + leave against the exchange (the simulator without credentials),
    /// bounded to ~15 s; exit 0 only if everything passed
    CheckConfig,
    /// Print the version and the git commit it was built from
    Version,
}

/// Every setting of SPEC §1: flag, variable, default and help in one place.
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// Listen address (a non-loopback one needs HUB_AUTH_TOKEN or HUB_ALLOW_ANONYMOUS=1)
    #[arg(long, env = "HUB_BIND", default_value = "127.0.0.1:8000", value_name = "ADDR",
          value_parser = addr, global = true, hide_env_values = true)]
    pub bind: SocketAddr,

    /// CoinDCX API key; key and secret both empty = built-in simulator, one of them empty = error
    #[arg(long, env = "COINDCX_API_KEY", value_name = "KEY", value_parser = text,
          global = true, hide_env_values = true)]
    pub api_key: Option<String>,

    /// CoinDCX API secret, empty with the key = simulator (prefer the environment or .env: flags
    /// show in `ps`)
    #[arg(long, env = "COINDCX_API_SECRET", value_name = "SECRET", value_parser = text,
          global = true, hide_env_values = true)]
    pub api_secret: Option<String>,

    /// Private Socket.IO stream: wss://, ws://, https:// or http://
    #[arg(long, env = "COINDCX_WS_URL", default_value = "wss://stream.coindcx.com",
          value_name = "URL", value_parser = ws_url, global = true, hide_env_values = true)]
    pub ws_url: String,

    /// REST base for the snapshot/reconcile and the example: https:// or http://
    #[arg(long, env = "COINDCX_API_URL", default_value = "https://api.coindcx.com",
          value_name = "URL", value_parser = rest_url, global = true, hide_env_values = true)]
    pub api_url: String,

    /// Engine.IO revision towards the exchange: auto (from the server's open packet), 3 or 4
    #[arg(long, env = "COINDCX_EIO", default_value = "auto", value_name = "auto|3|4",
          value_parser = eio, global = true, hide_env_values = true)]
    pub eio: EioMode,

    /// Join the exchange's public price channel for live unrealized PnL (`pnl` frames); 0 = off
    #[arg(long, env = "HUB_PNL", default_value = "1", default_missing_value = "1",
          num_args = 0..=1, value_name = "BOOL", value_parser = boolean,
          action = clap::ArgAction::Set, global = true, hide_env_values = true)]
    pub pnl: bool,

    /// Keep the exchange connection this long (ms) after the last browser leaves
    #[arg(long, env = "HUB_UPSTREAM_LINGER_MS", default_value = "0", value_name = "MS",
          value_parser = whole::<0, 86_400_000>, global = true, hide_env_values = true)]
    pub upstream_linger_ms: u64,

    /// Browsers must send ?token= (or Authorization: Bearer); /metrics too. Empty = no token
    #[arg(long, env = "HUB_AUTH_TOKEN", value_name = "TOKEN", value_parser = text,
          global = true, hide_env_values = true)]
    pub auth_token: Option<String>,

    /// HS256 secret for per-user signed tokens (JWT with exp). Empty = none
    #[arg(long, env = "HUB_JWT_SECRET", value_name = "SECRET", value_parser = text,
          global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Allow a non-loopback bind without a token (account data becomes public on that network)
    #[arg(long, env = "HUB_ALLOW_ANONYMOUS", default_value = "0", default_missing_value = "1",
          num_args = 0..=1, value_name = "BOOL", value_parser = boolean,
          action = clap::ArgAction::Set, global = true, hide_env_values = true)]
    pub allow_anonymous: bool,

    /// Comma list of allowed browser Origins (scheme://host:port), or *. Empty = same host only
    #[arg(long, env = "HUB_ALLOWED_ORIGINS", value_name = "LIST", value_parser = origins,
          global = true, hide_env_values = true)]
    pub allowed_origins: Option<AllowedOrigins>,

    /// Comma list of extra Host values served (desk.example, desk.example:8443), or * (no Host
    /// check). Empty = loopback names and the bind address only
    #[arg(long, env = "HUB_ALLOWED_HOSTS", value_name = "LIST", value_parser = hosts,
          global = true, hide_env_values = true)]
    pub allowed_hosts: Option<AllowedHosts>,

    /// Further WebSocket upgrades get HTTP 503
    #[arg(long, env = "HUB_MAX_CLIENTS", default_value = "10000", value_name = "N",
          value_parser = count::<1, 1_000_000>, global = true, hide_env_values = true)]
    pub max_clients: usize,

    /// TOML file naming several accounts, each with the names of the variables holding its key
    /// and secret (see accounts.example.toml). Empty = the one account `default` from
    /// COINDCX_API_KEY/COINDCX_API_SECRET
    #[arg(long, env = "HUB_ACCOUNTS_FILE", value_name = "PATH", value_parser = text,
          global = true, hide_env_values = true)]
    pub accounts_file: Option<String>,

    /// Connections per signed-token user (`sub`; HTTP 429 beyond); 0 = no cap
    #[arg(long, env = "HUB_MAX_CLIENTS_PER_USER", default_value = "0", value_name = "N",
          value_parser = count::<0, 1_000_000>, global = true, hide_env_values = true)]
    pub max_clients_per_user: usize,

    /// Connections per remote address (HTTP 429 beyond); 0 = no cap
    #[arg(long, env = "HUB_MAX_CLIENTS_PER_IP", default_value = "0", value_name = "N",
          value_parser = count::<0, 1_000_000>, global = true, hide_env_values = true)]
    pub max_clients_per_ip: usize,

    /// Batches (one per hub cycle, however many records) queued per client before it is evicted
    /// as a slow consumer (close 1008)
    #[arg(long, env = "HUB_CLIENT_QUEUE", default_value = "1024", value_name = "N",
          value_parser = count::<1, 1_000_000>, global = true, hide_env_values = true)]
    pub client_queue: usize,

    /// Events kept for ?since= resume
    #[arg(long, env = "HUB_HISTORY", default_value = "10000", value_name = "N",
          value_parser = count::<0, 10_000_000>, global = true, hide_env_values = true)]
    pub history: usize,

    /// Bytes of frame text the resume history may hold (oldest frames dropped first)
    #[arg(long, env = "HUB_HISTORY_BYTES", default_value = "67108864", value_name = "BYTES",
          value_parser = count::<1024, { 1 << 40 }>, global = true, hide_env_values = true)]
    pub history_bytes: usize,

    /// Bytes of exchange events that may wait for the hub; beyond, a gap repaired by a REST reconcile
    #[arg(long, env = "HUB_UPSTREAM_QUEUE_BYTES", default_value = "67108864", value_name = "BYTES",
          value_parser = count::<1024, { 1 << 40 }>, global = true, hide_env_values = true)]
    pub upstream_queue_bytes: usize,

    /// HTTP worker threads; the hub task runs on the first (1 measured best on 2 cores)
    #[arg(long, env = "HUB_WORKERS", default_value = "1", value_name = "N",
          value_parser = count::<1, 64>, global = true, hide_env_values = true)]
    pub workers: usize,

    /// Simulator address, Socket.IO and REST (only used without credentials)
    #[arg(long, env = "HUB_SIM_BIND", default_value = "127.0.0.1:8010", value_name = "ADDR",
          value_parser = addr, global = true, hide_env_values = true)]
    pub sim_bind: SocketAddr,

    /// Simulator background exchange records per second (0 = none)
    #[arg(long, env = "HUB_SIM_RATE", default_value = "2", value_name = "PER_SEC",
          value_parser = rate, global = true, hide_env_values = true)]
    pub sim_rate: f64,

    /// Simulator random seed (same seed, same activity)
    #[arg(long, env = "HUB_SIM_SEED", default_value = "42", value_name = "N",
          value_parser = whole::<0, { u64::MAX }>, global = true, hide_env_values = true)]
    pub sim_seed: u64,

    /// Cluster mode: several instances on this Redis act as one (redis://host:port/db). Empty =
    /// single process, no Redis
    #[arg(long, env = "HUB_REDIS_URL", value_name = "URL", value_parser = text,
          global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Key prefix in Redis: instances with the same prefix form one cluster
    #[arg(long, env = "HUB_REDIS_PREFIX", default_value = "coindcx-hub", value_name = "PREFIX",
          value_parser = text, global = true, hide_env_values = true)]
    pub redis_prefix: String,

    /// This instance's id in the cluster registry. Empty = a random one per start
    #[arg(long, env = "HUB_INSTANCE_ID", value_name = "ID", value_parser = text,
          global = true, hide_env_values = true)]
    pub instance_id: Option<String>,

    /// Log filter (env_logger syntax, e.g. info,upstream=debug)
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER",
          value_parser = text, global = true, hide_env_values = true)]
    pub log: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub upstream: UpstreamKind,
    pub api_key: String,
    pub api_secret: String,
    pub ws_url: String,
    pub api_url: String,
    pub linger: Duration,
    pub auth_token: Option<String>,
    /// HS256 secret for per-user signed tokens (JWT with `exp`).
    pub jwt_secret: Option<String>,
    pub allowed_origins: AllowedOrigins,
    pub allowed_hosts: AllowedHosts,
    pub eio: EioMode,
    /// Join the public price channel (live PnL).
    pub pnl: bool,
    pub max_clients: usize,
    /// 0 = no per-address cap.
    pub max_clients_per_ip: usize,
    pub client_queue: usize,
    pub history: usize,
    /// Bytes of frame text the resume history may hold.
    pub history_bytes: usize,
    /// Bytes of exchange events that may wait for the hub before the upstream records a gap.
    pub upstream_queue_bytes: usize,
    pub allow_anonymous: bool,
    /// The accounts served, in order (the first is the default). With the simulator: empty
    /// (it serves its own demo accounts).
    pub accounts: Vec<AccountCreds>,
    /// 0 = no per-user cap.
    pub max_clients_per_user: usize,
    pub simulator: SimulatorSettings,
    /// Every setting as parsed (new settings are read from here).
    pub settings: Settings,
    /// actix worker threads (`HUB_WORKERS`); the hub task runs on the first one.
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

impl Config {
    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (tests pass a map); the process environment is not
    /// consulted. Blank values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // The settings' variables become flags, so `get` goes through exactly the parsers and
        // defaults the command line uses.
        let cmd = Cli::command().mut_args(|a| a.env(None));
        let mut argv: Vec<OsString> = vec!["coindcx-hub".into()];
        for (var, long) in variables() {
            if let Some(value) = get(var).filter(|v| !v.trim().is_empty()) {
                argv.push(format!("--{long}={value}").into());
            }
        }
        let matches = cmd
            .try_get_matches_from(argv)
            .map_err(|e| config_error(&e))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| config_error(&e))?;
        cli.settings.into_config_with(get)
    }
}

/// Every setting's variable and long flag, in `--help` order.
pub fn variables() -> Vec<(&'static str, &'static str)> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| {
            let var = a.get_env()?.to_str()?;
            let long = a.get_long()?;
            Some((leak(var), leak(long)))
        })
        .collect()
}

/// Names live as long as the process; leaked once per lookup of a setting's names, which
/// happens at start and on errors only.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The variable a clap error is about, with the validation message, as a [`ConfigError`].
/// `None` for errors that are not about one setting's value (unknown flag, `--help`, ...).
pub fn setting_error(e: &clap::Error) -> Option<ConfigError> {
    use clap::error::{ContextKind, ContextValue};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return None,
    };
    // "--client-queue <N>" → "client-queue"
    let long = arg.split_whitespace().next()?.trim_start_matches('-');
    let (var, _) = variables().into_iter().find(|(_, l)| *l == long)?;
    let message = match (
        std::error::Error::source(e),
        e.get(ContextKind::InvalidValue),
    ) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::String(v))) => format!("{v:?} is not accepted"),
        _ => e.kind().to_string(),
    };
    Some(err(var, format!("{message} (--{long})")))
}

fn config_error(e: &clap::Error) -> ConfigError {
    setting_error(e).unwrap_or_else(|| err("command line", e.to_string()))
}

impl Settings {
    /// Cross-setting checks and the derived values the hub runs with.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with(|k| std::env::var(k).ok())
    }

    /// [`Settings::into_config`] reading the accounts file's credential variables through `env`.
    pub fn into_config_with(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let s = self;
        let nonblank = |v: &Option<String>| v.clone().filter(|t| !t.is_empty());
        let api_key = nonblank(&s.api_key).unwrap_or_default();
        let api_secret = nonblank(&s.api_secret).unwrap_or_default();
        let upstream = match (api_key.is_empty(), api_secret.is_empty()) {
            (true, true) => UpstreamKind::Simulator,
            (false, false) => UpstreamKind::CoinDcx,
            (true, false) => {
                return Err(err(
                    "COINDCX_API_KEY",
                    "empty while COINDCX_API_SECRET is set",
                ))
            }
            (false, true) => {
                return Err(err(
                    "COINDCX_API_SECRET",
                    "empty while COINDCX_API_KEY is set",
                ))
            }
        };
        let accounts_file = nonblank(&s.accounts_file);
        let (upstream, accounts) =
            match (accounts_file, upstream) {
                (Some(path), UpstreamKind::Simulator) => {
                    let accounts = accounts::load(&path, env)
                        .map_err(|e| err("HUB_ACCOUNTS_FILE", e.to_string()))?;
                    (UpstreamKind::CoinDcx, accounts)
                }
                (Some(_), UpstreamKind::CoinDcx) => return Err(err(
                    "HUB_ACCOUNTS_FILE",
                    "set together with COINDCX_API_KEY/COINDCX_API_SECRET; use one or the other",
                )),
                (None, UpstreamKind::CoinDcx) => (
                    UpstreamKind::CoinDcx,
                    vec![AccountCreds {
                        name: DEFAULT_ACCOUNT.into(),
                        key: api_key.clone(),
                        secret: api_secret.clone(),
                        ws_url: None,
                        api_url: None,
                    }],
                ),
                (None, UpstreamKind::Simulator) => (UpstreamKind::Simulator, Vec::new()),
            };
        // `check-config` and the example script act for the first account.
        let (api_key, api_secret) = match accounts.first() {
            Some(first) => (first.key.clone(), first.secret.clone()),
            None => (api_key, api_secret),
        };
        let auth_token = nonblank(&s.auth_token);
        let jwt_secret = nonblank(&s.jwt_secret);
        if !s.bind.ip().is_loopback()
            && auth_token.is_none()
            && jwt_secret.is_none()
            && !s.allow_anonymous
        {
            return Err(err(
                "HUB_BIND",
                format!("{} is not a loopback address and HUB_AUTH_TOKEN is empty; account data is private (set HUB_AUTH_TOKEN, or HUB_ALLOW_ANONYMOUS=1)", s.bind),
            ));
        }
        Ok(Config {
            bind: s.bind,
            upstream,
            api_key,
            api_secret,
            ws_url: s.ws_url.clone(),
            api_url: s.api_url.clone(),
            linger: Duration::from_millis(s.upstream_linger_ms),
            auth_token,
            jwt_secret,
            allowed_origins: s
                .allowed_origins
                .clone()
                .unwrap_or(AllowedOrigins::SameHost),
            allowed_hosts: s
                .allowed_hosts
                .clone()
                .unwrap_or(AllowedHosts::List(Vec::new())),
            eio: s.eio,
            pnl: s.pnl,
            max_clients: s.max_clients,
            max_clients_per_ip: s.max_clients_per_ip,
            client_queue: s.client_queue,
            history: s.history,
            history_bytes: s.history_bytes,
            upstream_queue_bytes: s.upstream_queue_bytes,
            allow_anonymous: s.allow_anonymous,
            accounts,
            max_clients_per_user: s.max_clients_per_user,
            simulator: SimulatorSettings {
                bind: s.sim_bind,
                rate: s.sim_rate,
                seed: s.sim_seed,
            },
            workers: s.workers,
            settings: s,
        })
    }
}

/// One setting as `check-config` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub var: String,
    pub flag: String,
    /// The value, or a mask for secrets.
    pub value: String,
    /// `flag`, `environment` (which includes `.env`) or `default`.
    pub source: &'static str,
}

/// The effective value of every setting in `matches`, secrets (`*_SECRET`, `*_TOKEN`,
/// `*_KEY`, `*_REDIS_URL`) masked.
pub fn effective(matches: &ArgMatches) -> Vec<Effective> {
    use clap::parser::ValueSource;
    let cmd = Cli::command();
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env().and_then(|v| v.to_str()), arg.get_long())
        else {
            continue;
        };
        let id = arg.get_id().as_str();
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = raw.join(",");
        // A Redis URL may carry a password (redis://:pw@host).
        let secret = ["_SECRET", "_TOKEN", "_KEY", "_REDIS_URL"]
            .iter()
            .any(|suffix| var.ends_with(suffix));
        let shown = match (value.trim().is_empty(), secret) {
            (true, _) => "(empty)".to_string(),
            (false, true) => format!("(set, {} characters, masked)", value.trim().chars().count()),
            (false, false) => value,
        };
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        out.push(Effective {
            var: var.to_string(),
            flag: format!("--{long}"),
            value: shown,
            source,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_select_the_simulator() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.upstream, UpstreamKind::Simulator);
        assert_eq!(
            (c.max_clients, c.client_queue, c.history),
            (10_000, 1024, 10_000)
        );
        assert_eq!(
            (c.history_bytes, c.upstream_queue_bytes),
            (64 << 20, 64 << 20)
        );
        assert_eq!(c.ws_url, "wss://stream.coindcx.com");
        assert_eq!(c.allowed_origins, AllowedOrigins::SameHost);
        assert_eq!(c.allowed_hosts, AllowedHosts::List(vec![]));
        assert_eq!(c.eio, EioMode::Auto);
        let c = cfg(&[
            ("HUB_ALLOWED_HOSTS", "Desk.Example, desk2:8443"),
            ("COINDCX_EIO", "3"),
        ])
        .unwrap();
        assert_eq!(
            c.allowed_hosts,
            AllowedHosts::List(vec!["desk.example".into(), "desk2:8443".into()])
        );
        assert_eq!(c.eio, EioMode::V3);
        assert_eq!(
            cfg(&[("HUB_ALLOWED_HOSTS", "*")]).unwrap().allowed_hosts,
            AllowedHosts::Any
        );
        let named = cfg(&[("HUB_BIND", "localhost:8123")]).unwrap();
        assert!(named.bind.ip().is_loopback() && named.bind.port() == 8123);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(cfg(&[("HUB_BIND", "nope")]).unwrap_err().var, "HUB_BIND");
        assert_eq!(
            cfg(&[("COINDCX_API_KEY", "k")]).unwrap_err().var,
            "COINDCX_API_SECRET"
        );
        assert_eq!(
            cfg(&[("COINDCX_API_SECRET", "s")]).unwrap_err().var,
            "COINDCX_API_KEY"
        );
        assert_eq!(
            cfg(&[("COINDCX_WS_URL", "ftp://x")]).unwrap_err().var,
            "COINDCX_WS_URL"
        );
        assert_eq!(
            cfg(&[("HUB_CLIENT_QUEUE", "0")]).unwrap_err().var,
            "HUB_CLIENT_QUEUE"
        );
        assert_eq!(
            cfg(&[("HUB_MAX_CLIENTS", "-1")]).unwrap_err().var,
            "HUB_MAX_CLIENTS"
        );
        assert_eq!(
            cfg(&[("HUB_ALLOWED_ORIGINS", "evil")]).unwrap_err().var,
            "HUB_ALLOWED_ORIGINS"
        );
        assert_eq!(
            cfg(&[("HUB_ALLOWED_HOSTS", "https://desk.example")])
                .unwrap_err()
                .var,
            "HUB_ALLOWED_HOSTS"
        );
        assert_eq!(cfg(&[("COINDCX_EIO", "5")]).unwrap_err().var, "COINDCX_EIO");
    }

    #[test]
    fn blank_values_are_unset_and_errors_name_variable_and_flag() {
        let c = cfg(&[
            ("HUB_CLIENT_QUEUE", "  "),
            ("HUB_AUTH_TOKEN", " "),
            ("HUB_BIND", " 127.0.0.1:9 "),
            ("HUB_ALLOW_ANONYMOUS", "yes"),
        ])
        .unwrap();
        assert_eq!(
            (
                c.client_queue,
                c.auth_token,
                c.bind.port(),
                c.allow_anonymous
            ),
            (1024, None, 9, true)
        );
        assert_eq!(c.settings.client_queue, 1024);
        assert_eq!(
            cfg(&[("HUB_CLIENT_QUEUE", "0")]).unwrap_err().to_string(),
            "invalid HUB_CLIENT_QUEUE: \"0\" is not a whole number between 1 and 1000000 (--client-queue)"
        );
        // A value that looks like a flag stays a value.
        assert_eq!(
            cfg(&[("HUB_HISTORY", "--help")]).unwrap_err().var,
            "HUB_HISTORY"
        );
    }

    #[test]
    fn every_setting_has_one_variable_and_one_flag() {
        let vars = variables();
        let mut names: Vec<&str> = vars.iter().map(|(v, _)| *v).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), vars.len(), "a variable names two settings");
        assert!(vars.len() >= 20);
        assert!(vars.contains(&("HUB_ALLOWED_HOSTS", "allowed-hosts")));
        assert!(vars.contains(&("COINDCX_EIO", "eio")));
        assert!(vars.contains(&("RUST_LOG", "log")));
    }

    #[test]
    fn public_bind_needs_a_token() {
        assert_eq!(
            cfg(&[("HUB_BIND", "0.0.0.0:8000")]).unwrap_err().var,
            "HUB_BIND"
        );
        assert!(cfg(&[("HUB_BIND", "0.0.0.0:8000"), ("HUB_AUTH_TOKEN", "t")]).is_ok());
        assert!(cfg(&[("HUB_BIND", "0.0.0.0:8000"), ("HUB_ALLOW_ANONYMOUS", "1")]).is_ok());
    }

    #[test]
    fn accepts_every_ws_scheme() {
        for url in [
            "wss://a.b",
            "ws://127.0.0.1:1",
            "https://a.b",
            "http://a.b/",
        ] {
            assert!(cfg(&[("COINDCX_WS_URL", url)]).is_ok(), "{url}");
        }
        let c = cfg(&[("HUB_ALLOWED_ORIGINS", "http://a:1, *")]).unwrap();
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
    }
}
