//! Configuration from environment variables (and `.env`), validated at start.
//!
//! Every variable of SPEC §1 is read here and nowhere else. A bad value is a [`ConfigError`]
//! naming the variable; `main` prints it and exits non-zero.

use std::net::SocketAddr;
use std::time::Duration;

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
    pub max_clients: usize,
    /// 0 = no per-address cap.
    pub max_clients_per_ip: usize,
    pub client_queue: usize,
    pub history: usize,
    pub allow_anonymous: bool,
    pub simulator: SimulatorSettings,
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

    /// Reads configuration through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let bind = parse_addr("HUB_BIND", var("HUB_BIND"), "127.0.0.1:8000")?;
        let api_key = var("COINDCX_API_KEY").unwrap_or_default();
        let api_secret = var("COINDCX_API_SECRET").unwrap_or_default();
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
        let ws_url = parse_url(
            "COINDCX_WS_URL",
            var("COINDCX_WS_URL"),
            "wss://stream.coindcx.com",
            &["wss", "ws", "https", "http"],
        )?;
        let api_url = parse_url(
            "COINDCX_API_URL",
            var("COINDCX_API_URL"),
            "https://api.coindcx.com",
            &["https", "http"],
        )?;
        let linger = Duration::from_millis(parse_num(
            "HUB_UPSTREAM_LINGER_MS",
            var("HUB_UPSTREAM_LINGER_MS"),
            0,
            0,
            86_400_000,
        )?);
        let auth_token = var("HUB_AUTH_TOKEN");
        let jwt_secret = var("HUB_JWT_SECRET");
        let allowed_origins = parse_origins(var("HUB_ALLOWED_ORIGINS"))?;
        let allowed_hosts = parse_hosts(var("HUB_ALLOWED_HOSTS"))?;
        let eio = match var("COINDCX_EIO").as_deref() {
            None | Some("auto") => EioMode::Auto,
            Some("3") => EioMode::V3,
            Some("4") => EioMode::V4,
            Some(other) => {
                return Err(err("COINDCX_EIO", format!("{other:?} is not auto, 3 or 4")))
            }
        };
        let max_clients = parse_num(
            "HUB_MAX_CLIENTS",
            var("HUB_MAX_CLIENTS"),
            10_000,
            1,
            1_000_000,
        )? as usize;
        let max_clients_per_ip = parse_num(
            "HUB_MAX_CLIENTS_PER_IP",
            var("HUB_MAX_CLIENTS_PER_IP"),
            0,
            0,
            1_000_000,
        )? as usize;
        let client_queue = parse_num(
            "HUB_CLIENT_QUEUE",
            var("HUB_CLIENT_QUEUE"),
            1024,
            1,
            1_000_000,
        )? as usize;
        let history = parse_num("HUB_HISTORY", var("HUB_HISTORY"), 10_000, 0, 10_000_000)? as usize;
        let allow_anonymous = parse_bool("HUB_ALLOW_ANONYMOUS", var("HUB_ALLOW_ANONYMOUS"))?;
        let workers = parse_num("HUB_WORKERS", var("HUB_WORKERS"), 1, 1, 64)? as usize;
        if !bind.ip().is_loopback()
            && auth_token.is_none()
            && jwt_secret.is_none()
            && !allow_anonymous
        {
            return Err(err(
                "HUB_BIND",
                format!("{bind} is not a loopback address and HUB_AUTH_TOKEN is empty; account data is private (set HUB_AUTH_TOKEN, or HUB_ALLOW_ANONYMOUS=1)"),
            ));
        }
        let simulator = SimulatorSettings {
            bind: parse_addr("HUB_SIM_BIND", var("HUB_SIM_BIND"), "127.0.0.1:8010")?,
            rate: parse_rate(var("HUB_SIM_RATE"))?,
            seed: parse_num("HUB_SIM_SEED", var("HUB_SIM_SEED"), 42, 0, u64::MAX)?,
        };
        Ok(Config {
            bind,
            upstream,
            api_key,
            api_secret,
            ws_url,
            api_url,
            linger,
            auth_token,
            jwt_secret,
            allowed_origins,
            allowed_hosts,
            eio,
            max_clients,
            max_clients_per_ip,
            client_queue,
            history,
            allow_anonymous,
            simulator,
            workers,
        })
    }
}

fn parse_addr(
    var: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    // `localhost:8000` is what people write; resolve names once, at start.
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(text.as_str())
        .ok()
        .and_then(|mut addrs| addrs.next());
    resolved.ok_or(()).map_err(|_| {
        err(
            var,
            format!("{text:?} is not an address like 127.0.0.1:8000"),
        )
    })
}

fn parse_url(
    var: &'static str,
    value: Option<String>,
    default: &str,
    schemes: &[&str],
) -> Result<String, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    let scheme = text.split("://").next().unwrap_or_default();
    let rest = text.split_once("://").map(|(_, r)| r).unwrap_or_default();
    if !schemes.contains(&scheme) || rest.is_empty() || rest.starts_with('/') {
        return Err(err(
            var,
            format!(
                "{text:?} must start with one of {}",
                schemes
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn parse_num(
    var: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(err(
            var,
            format!("{text:?} is not a whole number between {min} and {max}"),
        )),
    }
}

fn parse_bool(var: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(err(var, format!("{other:?} is not 1/0/true/false"))),
    }
}

fn parse_rate(value: Option<String>) -> Result<f64, ConfigError> {
    let Some(text) = value else { return Ok(2.0) };
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=1_000_000.0).contains(&r) => Ok(r),
        _ => Err(err(
            "HUB_SIM_RATE",
            format!("{text:?} is not a rate in events/s (0 to 1000000)"),
        )),
    }
}

fn parse_origins(value: Option<String>) -> Result<AllowedOrigins, ConfigError> {
    let Some(text) = value else {
        return Ok(AllowedOrigins::SameHost);
    };
    let items: Vec<String> = text
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if items.iter().any(|s| s == "*") {
        return Ok(AllowedOrigins::Any);
    }
    for item in &items {
        if !(item.starts_with("http://") || item.starts_with("https://")) {
            return Err(err(
                "HUB_ALLOWED_ORIGINS",
                format!("{item:?} is not an origin like https://desk.example:443"),
            ));
        }
    }
    Ok(AllowedOrigins::List(items))
}

fn parse_hosts(value: Option<String>) -> Result<AllowedHosts, ConfigError> {
    let Some(text) = value else {
        return Ok(AllowedHosts::List(Vec::new()));
    };
    let items: Vec<String> = text
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if items.iter().any(|s| s == "*") {
        return Ok(AllowedHosts::Any);
    }
    for item in &items {
        if item.contains("://") || item.contains('/') || item.contains(char::is_whitespace) {
            return Err(err(
                "HUB_ALLOWED_HOSTS",
                format!("{item:?} is not a host like desk.example or desk.example:8443"),
            ));
        }
    }
    Ok(AllowedHosts::List(items))
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
