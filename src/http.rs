//! HTTP routes (SPEC §2) and the checks of SPEC §6: Host (on every route that serves account
//! data), then token, origin and capacity on upgrades.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::MessageBody;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::accounts::Registry;
use crate::config::Config;
use crate::hosts::{Authority, HostPolicy, OriginPolicy};
use crate::hub::{HubHandle, Resume};
use crate::signing::constant_time_eq;

/// The monitor page, embedded at build time.
const INDEX_HTML: &str = include_str!("../web/index.html");
/// uPlot (MIT, the npm package's dist files, web/vendor/) for the page's charts: inlined into
/// the page, so it makes no external fetch and the page's CSP stays `'self'` + inline.
const UPLOT_JS: &str = include_str!("../web/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../web/vendor/uPlot.min.css");
/// Where the page wants uPlot (tests/browser/mock-hub.mjs fills in the same marker).
pub const UPLOT_MARKER: &str =
    "<!--uplot: the hub puts uPlot's CSS and JS here (web/vendor, MIT), no external fetch-->";

/// The page as served: uPlot inlined at the marker, built once.
fn index_page() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        INDEX_HTML.replacen(
            UPLOT_MARKER,
            &format!("<style>{UPLOT_CSS}</style>\n<script>{UPLOT_JS}</script>"),
            1,
        )
    })
}

pub struct AppState {
    /// The first (default) account's hub: route-level counters (refusals) go to its metrics.
    pub hub: HubHandle,
    /// Every account's hub, by name.
    pub accounts: Registry,
    /// Open sessions per signed-token `sub` (only tracked when `HUB_MAX_CLIENTS_PER_USER` is set).
    pub per_user: Arc<Mutex<HashMap<String, usize>>>,
    pub config: Arc<Config>,
    /// Open sessions per client address (only tracked when `HUB_MAX_CLIENTS_PER_IP` is set).
    pub per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// `Host` values served (DNS-rebinding defence); built from the address actually bound.
    pub hosts: HostPolicy,
    pub origins: OriginPolicy,
}

impl AppState {
    /// `bound`: the listening address, with the real port when the configuration said 0.
    pub fn new(accounts: Registry, config: Arc<Config>, bound: SocketAddr) -> Self {
        AppState {
            hub: accounts.first().hub.clone(),
            accounts,
            per_user: Default::default(),
            hosts: HostPolicy::new(&config.allowed_hosts, bound),
            origins: OriginPolicy::new(&config.allowed_origins),
            config,
            per_ip: Default::default(),
        }
    }
}

/// What a presented credential grants. No token configured, or the static `HUB_AUTH_TOKEN`:
/// every account, no expiry, no user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// A signed token is valid until this UNIX time (seconds).
    pub until: Option<u64>,
    /// A signed token's `accounts` claim: only these may be opened. `None` = all.
    pub accounts: Option<Vec<String>>,
    /// A signed token's `sub`: the user `HUB_MAX_CLIENTS_PER_USER` counts.
    pub sub: Option<String>,
}

impl Grant {
    pub fn opens(&self, account: &str) -> bool {
        self.accounts
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == account))
    }
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
        .body(index_page())
}

async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.accounts.status_json())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Overall (every account ready) or, with `?account=NAME`, that account's readiness.
async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let account = query_param(req.query_string(), "account");
    match state.accounts.readiness(account.as_deref()) {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"ready": true})),
        Ok(Err(reason)) => {
            HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": reason}))
        }
        Err(crate::accounts::UnknownAccount) => unknown_account(),
    }
}

fn unknown_account() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "unknown account"}))
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
        .body(state.accounts.render_metrics())
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let reject = |reason: &str| {
        state
            .hub
            .metrics
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
    // Which account: unknown → 404, not granted → 403, both before anything is reserved.
    let Ok(account) = state
        .accounts
        .pick(query_param(req.query_string(), "account").as_deref())
    else {
        reject("unknown_account");
        return Ok(unknown_account());
    };
    if !grant.opens(&account.name) {
        reject("account_scope");
        return Ok(HttpResponse::Forbidden().json(json!({"error": "account not granted"})));
    }
    let hub = &account.hub;
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
    // Reserved on the account, compared with the sum over all accounts (HUB_MAX_CLIENTS is
    // hub-wide): two racing upgrades both count each other, so the sum never overshoots.
    let active = &hub.status.active;
    active.fetch_add(1, Ordering::SeqCst);
    if state.accounts.active() > state.config.max_clients {
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
    let per_user_cap = state.config.max_clients_per_user;
    let user = grant.sub.clone().filter(|_| per_user_cap > 0);
    if let Some(user) = &user {
        let mut counts = state.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(user.clone()).or_insert(0);
        if *n >= per_user_cap {
            drop(counts);
            active.fetch_sub(1, Ordering::SeqCst);
            release_ip(&state.per_ip, ip, per_ip_cap);
            reject("per_user");
            return Ok(HttpResponse::TooManyRequests()
                .json(json!({"error": "too many connections for this user"})));
        }
        *n += 1;
    }
    let per_user = state.per_user.clone();
    let per_ip = state.per_ip.clone();
    let status = hub.status.clone();
    let release = crate::session::Release::new(move || {
        status.active.fetch_sub(1, Ordering::SeqCst);
        release_ip(&per_ip, ip, per_ip_cap);
        if let Some(user) = user {
            release_count(&per_user, &user);
        }
    });
    let mut response = match actix_http::ws::handshake(req.head()) {
        Ok(response) => response,
        Err(e) => {
            drop(release);
            return Err(e.into());
        }
    };
    let expires = match grant.until {
        None => None,
        Some(exp) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Some(tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now)))
        }
    };
    // Joined before the 101 goes out: the body starts with the snapshot or the replay.
    let link = std::rc::Rc::new(crate::ws::Link::default());
    let (ws_body, entry) = match hub.join(resume).await {
        Some(joined) => {
            let (ws_body, gone) = crate::ws::Body::new(
                link.clone(),
                hub.status.clone(),
                joined.initial,
                Some(joined.frames),
            );
            let entry = crate::session::Entry {
                client_id: joined.client_id,
                close: joined.close,
            };
            (ws_body, (gone, Some(entry)))
        }
        None => {
            // Shutting down: the client gets the 101 and at once a 1001 close.
            link.close(crate::ws::Closing {
                reason: crate::hub::GOING_AWAY,
                drain: false,
            });
            let (ws_body, gone) =
                crate::ws::Body::new(link.clone(), hub.status.clone(), Vec::new(), None);
            (ws_body, (gone, None))
        }
    };
    let (gone, entry) = entry;
    let conn = crate::session::Conn {
        link,
        gone,
        reader: crate::ws::Reader::new(body.into_inner(), crate::session::MAX_CLIENT_FRAME),
        fd: req.conn_data::<crate::ws::ConnFd>().copied(),
    };
    actix_web::rt::spawn(crate::session::run(
        hub.clone(),
        conn,
        entry,
        expires,
        release,
    ));
    Ok(response.message_body(ws_body.boxed())?.into())
}

fn release_ip(per_ip: &Mutex<HashMap<IpAddr, usize>>, ip: Option<IpAddr>, cap: usize) {
    if let (Some(ip), true) = (ip, cap > 0) {
        release_count(per_ip, &ip);
    }
}

/// One session fewer for `key`; the entry goes when it reaches 0.
fn release_count<K: std::hash::Hash + Eq>(counts: &Mutex<HashMap<K, usize>>, key: &K) {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
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
        return Some(Grant::default());
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
            return Some(Grant::default());
        }
        if let Some(grant) = config
            .jwt_secret
            .as_deref()
            .and_then(|secret| jwt_grant(&given, secret))
        {
            return Some(grant);
        }
    }
    None
}

/// What a valid, unexpired HS256 token signed with `secret` grants (`exp`, and the optional
/// `accounts` and `sub`).
fn jwt_grant(token: &str, secret: &str) -> Option<Grant> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: u64,
        #[serde(default)]
        accounts: Option<Vec<String>>,
        #[serde(default)]
        sub: Option<String>,
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .ok()
        .map(|t| Grant {
            until: Some(t.claims.exp),
            accounts: t.claims.accounts,
            sub: t.claims.sub,
        })
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
    fn the_page_inlines_uplot() {
        assert!(INDEX_HTML.contains(UPLOT_MARKER));
        let page = index_page();
        assert!(!page.contains(UPLOT_MARKER));
        assert!(page.contains("uPlot"));
        assert!(!page.contains("src=\"http"), "no external script");
    }

    #[test]
    fn resume_query() {
        assert!(parse_resume("").unwrap().is_none());
        let r = parse_resume("since=41&epoch=abc").unwrap().unwrap();
        assert_eq!((r.since, r.epoch.as_str()), (41, "abc"));
        assert!(parse_resume("since=x").is_err());
    }
}
