//! HTTP routes (SPEC §2) and the upgrade checks of SPEC §6: token, origin, capacity.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::config::{AllowedOrigins, Config};
use crate::hub::{HubHandle, Resume};
use crate::signing::constant_time_eq;

/// The monitor page, embedded at build time.
const INDEX_HTML: &str = include_str!("../web/index.html");

pub struct AppState {
    pub hub: HubHandle,
    pub config: Arc<Config>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/ws", web::get().to(upgrade))
        .route("/ws/coindcx", web::get().to(upgrade))
        .route("/ws/status", web::get().to(status))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn index() -> HttpResponse {
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
        Err(reason) => HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": reason})),
    }
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !token_ok(&req, &state.config) {
        state.hub.metrics.rejected_upgrades.with_label_values(&["metrics_token"]).inc();
        return unauthorized();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.hub.metrics.render())
}

async fn upgrade(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> actix_web::Result<HttpResponse> {
    let hub = &state.hub;
    let reject = |reason: &str| hub.metrics.rejected_upgrades.with_label_values(&[reason]).inc();
    if !token_ok(&req, &state.config) {
        reject("token");
        return Ok(unauthorized());
    }
    if !origin_ok(&req, &state.config.allowed_origins) {
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
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => {
            active.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    let hub = hub.clone();
    actix_web::rt::spawn(async move {
        let status = hub.status.clone();
        crate::session::run(hub, session, stream, resume, move || {
            status.active.fetch_sub(1, Ordering::SeqCst);
        })
        .await;
    });
    Ok(response)
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "missing or wrong token"}))
}

/// `?token=` or `Authorization: Bearer`, compared in constant time; open when no token is set.
fn token_ok(req: &HttpRequest, config: &Config) -> bool {
    let Some(expected) = config.auth_token.as_deref() else { return true };
    let from_query = query_param(req.query_string(), "token");
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    [from_query, from_header].into_iter().flatten().any(|given| constant_time_eq(&given, expected))
}

/// Browsers always send `Origin` on upgrades; other clients (probes, load tools) do not.
fn origin_ok(req: &HttpRequest, allowed: &AllowedOrigins) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let origin = origin.trim_end_matches('/');
    match allowed {
        AllowedOrigins::Any => true,
        AllowedOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        AllowedOrigins::SameHost => {
            let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or_default();
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn parse_resume(query: &str) -> Result<Option<Resume>, String> {
    let since = query_param(query, "since");
    let epoch = query_param(query, "epoch");
    match (since, epoch) {
        (None, _) => Ok(None),
        (Some(s), epoch) => {
            let since = s.parse::<u64>().map_err(|_| format!("since must be a sequence number, got {s:?}"))?;
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
