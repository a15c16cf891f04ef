//! Value parsers of the settings: each trims its input and says what is wrong with it (clap
//! puts the message after the flag; `config` turns it into a `ConfigError` naming the variable).

use std::net::SocketAddr;

use super::{AllowedHosts, AllowedOrigins, EioMode};

pub(super) fn text(s: &str) -> Result<String, String> {
    Ok(s.trim().to_string())
}

pub(super) fn addr(s: &str) -> Result<SocketAddr, String> {
    let text = s.trim();
    // `localhost:8000` is what people write; resolve names once, at start.
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("{text:?} is not an address like 127.0.0.1:8000"))
}

pub(super) fn url(s: &str, schemes: &[&str]) -> Result<String, String> {
    let text = s.trim();
    let scheme = text.split("://").next().unwrap_or_default();
    let rest = text.split_once("://").map(|(_, r)| r).unwrap_or_default();
    if !schemes.contains(&scheme) || rest.is_empty() || rest.starts_with('/') {
        return Err(format!(
            "{text:?} must start with one of {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}

pub(super) fn ws_url(s: &str) -> Result<String, String> {
    url(s, &["wss", "ws", "https", "http"])
}

pub(super) fn rest_url(s: &str) -> Result<String, String> {
    url(s, &["https", "http"])
}

pub(super) fn whole<const MIN: u64, const MAX: u64>(s: &str) -> Result<u64, String> {
    let text = s.trim();
    match text.parse::<u64>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a whole number between {MIN} and {MAX}"
        )),
    }
}

pub(super) fn count<const MIN: usize, const MAX: usize>(s: &str) -> Result<usize, String> {
    let text = s.trim();
    match text.parse::<usize>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a whole number between {MIN} and {MAX}"
        )),
    }
}

pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" => Ok(false),
        "1" | "true" | "yes" => Ok(true),
        other => Err(format!("{other:?} is not 1/0/true/false")),
    }
}

pub(super) fn rate(s: &str) -> Result<f64, String> {
    let text = s.trim();
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=1_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a rate in events/s (0 to 1000000)")),
    }
}

pub(super) fn eio(s: &str) -> Result<EioMode, String> {
    match s.trim() {
        "" | "auto" => Ok(EioMode::Auto),
        "3" => Ok(EioMode::V3),
        "4" => Ok(EioMode::V4),
        other => Err(format!("{other:?} is not auto, 3 or 4")),
    }
}

pub(super) fn origins(s: &str) -> Result<AllowedOrigins, String> {
    let items: Vec<String> = s
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(AllowedOrigins::SameHost);
    }
    if items.iter().any(|s| s == "*") {
        return Ok(AllowedOrigins::Any);
    }
    for item in &items {
        if crate::hosts::Origin::parse(item).is_none() {
            return Err(format!(
                "{item:?} is not an origin like https://desk.example:443"
            ));
        }
    }
    Ok(AllowedOrigins::List(items))
}

pub(super) fn hosts(s: &str) -> Result<AllowedHosts, String> {
    let items: Vec<String> = s
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if items.iter().any(|s| s == "*") {
        return Ok(AllowedHosts::Any);
    }
    for item in &items {
        if crate::hosts::Authority::parse(item).is_none() {
            return Err(format!(
                "{item:?} is not a host like desk.example or desk.example:8443"
            ));
        }
    }
    Ok(AllowedHosts::List(items))
}
