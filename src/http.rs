//! HTTP routes (SPEC §2) and the checks of SPEC §6: Host (on every route that serves account
//! data), then token, origin and capacity on upgrades.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::config::Config;
use crate::hosts::{Authority, HostPolicy, OriginPolicy};
use crate::hub::{HubHandle, Resume};
use crate::signing::constant_time_eq;

/// The monitor page, embedded at build time.
const INDEX_HTML: &str = include_str!("../web/index.html");

pub struct AppState {
    pub hub: HubHandle,
    pub config: Arc<Config>,
    /// Open sessions per client address (only tracked when `HUB_MAX_CLIENTS_PER_IP` is set).
    pub per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// `Host` values served (DNS-rebinding defence); built from the address actually bound.
    pub hosts: HostPolicy,
    pub origins: OriginPolicy,
}

impl AppState {
    /// `bound`: the listening address, with the real port when the configuration said 0.
    pub fn new(hub: HubHandle, config: Arc<Config>, bound: SocketAddr) -> Self {
        AppState {
            hub,
            hosts: HostPolicy::new(&config.allowed_hosts, bound),
            origins: OriginPolicy::new(&config.allowed_origins),
            config,
            per_ip: Default::default(),
        }
    }
}

/// What a presented credential grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No token configured, or the static `HUB_AUTH_TOKEN`: no expiry.
    Open,
    /// A signed token valid until this UNIX time (seconds).
    Until(u64),
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/ws", web::get().to(upgrade))
        .route("/ws/coindcx", web::get().to(upgrade))
        .route("/ws/status", web::get().to(status))
        // Probes may use HEAD.
        .service(
            web::resource("/healthz")
                .route(web::get().to(healthz))
                .route(web::head().to(healthz)),
        )
        .service(
            web::resource("/readyz")
                .route(web::get().to(readyz))
                .route(web::head().to(readyz)),
        )
        .route("/metrics", web::get().to(metrics));
}

async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refused) = refuse_host(&req, &state) {
        return refused;
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:"))
        .body(INDEX_HTML)
}

async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.hub.status.to_json())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.hub.status.readiness() {
        Ok(()) => HttpResponse::Ok().json(json!({"ready": true})),
        Err(reason) => {
            HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": reason}))
        }
    }
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refused) = refuse_host(&req, &state) {
        return refused;
    }
    if authorize(&req, &state.config).is_none() {
        state
            .hub
            .metrics
            .rejected_upgrades
            .with_label_values(&["metrics_token"])
            .inc();
        return unauthorized();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.hub.metrics.render())
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let hub = &state.hub;
    let reject = |reason: &str| {
        hub.metrics
            .rejected_upgrades
            .with_label_values(&[reason])
            .inc()
    };
    // The Host check comes first: a rebound page learns nothing, not even whether a token is
    // needed.
    if let Some(refused) = refuse_host(&req, &state) {
        reject("host");
        return Ok(refused);
    }
    let Some(grant) = authorize(&req, &state.config) else {
        reject("token");
        return Ok(unauthorized());
    };
    // An Origin that is not text is present but matches nothing (not treated as absent).
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("not-text://"));
    if !state.origins.allows(origin, request_host(&req).as_ref()) {
        reject("origin");
        return Ok(HttpResponse::Forbidden().json(json!({"error": "origin not allowed"})));
    }
    let resume = match parse_resume(req.query_string()) {
        Ok(r) => r,
        Err(msg) => {
            reject("bad_query");
            return Ok(HttpResponse::BadRequest().json(json!({"error": msg})));
        }
    };
    // Reserve a slot before upgrading so a storm cannot overshoot the cap.
    let active = &hub.status.active;
    if active.fetch_add(1, Ordering::SeqCst) >= state.config.max_clients {
        active.fetch_sub(1, Ordering::SeqCst);
        reject("capacity");
        return Ok(HttpResponse::ServiceUnavailable().json(json!({"error": "too many clients"})));
    }
    let ip = req.peer_addr().map(|a| a.ip());
    let per_ip_cap = state.config.max_clients_per_ip;
    if let (Some(ip), true) = (ip, per_ip_cap > 0) {
        let mut counts = state.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= per_ip_cap {
            drop(counts);
            active.fetch_sub(1, Ordering::SeqCst);
            reject("per_ip");
            return Ok(HttpResponse::TooManyRequests()
                .json(json!({"error": "too many connections from this address"})));
        }
        *n += 1;
    }
    let per_ip = state.per_ip.clone();
    let status = hub.status.clone();
    let release = crate::session::Release::new(move || {
        status.active.fetch_sub(1, Ordering::SeqCst);
        if let (Some(ip), true) = (ip, per_ip_cap > 0) {
            let mut counts = per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
    });
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => {
            drop(release);
            return Err(e);
        }
    };
    let expires = match grant {
        Grant::Open => None,
        Grant::Until(exp) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Some(tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now)))
        }
    };
    let hub = hub.clone();
    actix_web::rt::spawn(crate::session::run(
        hub, session, stream, resume, expires, release,
    ));
    Ok(response)
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "missing or wrong token"}))
}

/// Checks `?token=` or `Authorization: Bearer` against `HUB_AUTH_TOKEN` (constant time) or, with
/// `HUB_JWT_SECRET`, as an HS256 JWT with `exp`. `None` = refused.
fn authorize(req: &HttpRequest, config: &Config) -> Option<Grant> {
    if config.auth_token.is_none() && config.jwt_secret.is_none() {
        return Some(Grant::Open);
    }
    let from_query = query_param(req.query_string(), "token");
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    for given in [from_query, from_header].into_iter().flatten() {
        if config
            .auth_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(&given, t))
        {
            return Some(Grant::Open);
        }
        if let Some(exp) = config
            .jwt_secret
            .as_deref()
            .and_then(|secret| jwt_expiry(&given, secret))
        {
            return Some(Grant::Until(exp));
        }
    }
    None
}

/// The `exp` of a valid, unexpired HS256 token signed with `secret`.
fn jwt_expiry(token: &str, secret: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: u64,
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .ok()
        .map(|t| t.claims.exp)
}

/// The request's `Host` (`None` when missing, repeated or not `host[:port]`).
fn request_host(req: &HttpRequest) -> Option<Authority> {
    let mut values = req.headers().get_all(header::HOST);
    let host = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Authority::parse(host.to_str().ok()?)
}

/// 403 for a request whose `Host` we do not serve (DNS rebinding, SPEC §6), counted by route.
fn refuse_host(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if state.hosts.allows(request_host(req).as_ref()) {
        return None;
    }
    let route = req.match_pattern();
    let route = route.as_deref().unwrap_or("other");
    // Debug only: a rebinding page can send these as fast as it likes.
    log::debug!(target: "http", "refused {route} for Host {:?}", req.headers().get(header::HOST));
    state
        .hub
        .metrics
        .rejected_requests
        .with_label_values(&[route, "host"])
        .inc();
    Some(HttpResponse::Forbidden().json(json!({"error": "host not allowed"})))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn parse_resume(query: &str) -> Result<Option<Resume>, String> {
    let since = query_param(query, "since");
    let epoch = query_param(query, "epoch");
    match (since, epoch) {
        (None, _) => Ok(None),
        (Some(s), epoch) => {
            let since = s
                .parse::<u64>()
                .map_err(|_| format!("since must be a sequence number, got {s:?}"))?;
            Ok(Some(Resume {
                since,
                epoch: epoch.unwrap_or_default(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_query() {
        assert!(parse_resume("").unwrap().is_none());
        let r = parse_resume("since=41&epoch=abc").unwrap().unwrap();
        assert_eq!((r.since, r.epoch.as_str()), (41, "abc"));
        assert!(parse_resume("since=x").is_err());
    }
}
