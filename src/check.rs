//! `coindcx-hub check-config`: is this configuration going to work?
//!
//! The settings are already valid when this runs (`main` parsed them). It prints them with
//! secrets masked, then asks the exchange (the built-in simulator when no credentials are
//! set) two things at once, each bounded so the whole check ends within [`BOUND`]:
//!
//! - one signed read-only REST call (wallets): reachable? signature accepted? how far is the
//!   server's clock (its `Date` header) from ours? CoinDCX rejects orders signed more than
//!   10 s ago, so a skew beyond [`MAX_SKEW`] fails;
//! - one stream connection through our [`Transport`] (the hub's own client): connect, `join`,
//!   hold for [`JOIN_HOLD`] (CoinDCX answers a bad join by disconnecting ~100 ms later, and
//!   never acknowledges a good one), then `leave` and disconnect.
//!
//! Every line says what worked; the caller exits 0 only if all of them passed. Without
//! credentials it starts its own simulator on a free port (a running hub may hold
//! `HUB_SIM_BIND`) and checks that the same way.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{Config, Effective, UpstreamKind, VERSION};
use crate::metrics::Metrics;
use crate::upstream::auto::AutoTransport;
use crate::upstream::{ConnSink, Signal, Transport};
use crate::{rest, signing, simulator};

/// The whole check ends within this, whatever the exchange does.
pub const BOUND: Duration = Duration::from_secs(15);
/// One REST call, connect to answer.
const REST_BOUND: Duration = Duration::from_secs(10);
/// Stream: TCP, TLS, Engine.IO open and Socket.IO Connect (when `join` is emitted).
const CONNECT_BOUND: Duration = Duration::from_secs(9);
/// A rejected join is dropped within ~2 s (SPEC §4), in practice ~100 ms.
pub const JOIN_HOLD: Duration = Duration::from_secs(2);
/// `leave` and disconnect.
const CLOSE_BOUND: Duration = Duration::from_millis(3500);
/// Beyond this the exchange may refuse signed requests as stale.
pub const MAX_SKEW: Duration = Duration::from_secs(5);

const WALLETS: &str = "/exchange/v1/derivatives/futures/wallets";

/// Where the checks go and with which credentials.
pub struct Target {
    pub ws_url: String,
    pub api_url: String,
    pub api_key: String,
    pub api_secret: String,
    /// `COINDCX_EIO`: the same transport choice the hub makes.
    pub eio: crate::config::EioMode,
}

/// One check's verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Outcome {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Prints the settings and every check to stdout; true if all passed.
pub async fn run(config: &Config, settings: &[Effective]) -> bool {
    let started = Instant::now();
    println!("coindcx-hub {VERSION}: check-config");
    println!("settings: valid");
    for s in settings {
        println!("  {:<24} {:<22} {:<8} {}", s.var, s.flag, s.source, s.value);
    }
    let (target, sim) = match config.upstream {
        UpstreamKind::CoinDcx => (
            Target {
                ws_url: config.ws_url.clone(),
                api_url: config.api_url.clone(),
                api_key: config.api_key.clone(),
                api_secret: config.api_secret.clone(),
                eio: config.eio,
            },
            None,
        ),
        UpstreamKind::Simulator => {
            let mut cfg = simulator::SimConfig::demo(([127, 0, 0, 1], 0).into());
            cfg.rate = 0.0;
            match simulator::Simulator::start(cfg).await {
                Ok(sim) => {
                    println!(
                        "upstream: no credentials, checking the built-in simulator (started on {} with the demo key)",
                        sim.url()
                    );
                    (
                        Target {
                            ws_url: sim.url(),
                            api_url: sim.url(),
                            api_key: simulator::DEMO_API_KEY.into(),
                            api_secret: simulator::DEMO_API_SECRET.into(),
                            eio: config.eio,
                        },
                        Some(sim),
                    )
                }
                Err(e) => {
                    println!("  FAIL  simulator: cannot start: {e}");
                    return false;
                }
            }
        }
    };
    if sim.is_none() {
        println!(
            "upstream: CoinDCX, stream {}, REST {}",
            target.ws_url, target.api_url
        );
    }
    let outcomes = check(&target).await;
    for o in &outcomes {
        let verdict = if o.ok { "ok  " } else { "FAIL" };
        println!("  {verdict}  {:<16} {}", o.name, o.detail);
    }
    if let Some(sim) = sim {
        let _ = tokio::time::timeout(Duration::from_secs(2), sim.shutdown()).await;
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    let took = started.elapsed().as_secs_f64();
    if failed == 0 {
        println!(
            "check-config: all {} checks passed ({took:.1} s)",
            outcomes.len()
        );
    } else {
        println!(
            "check-config: {failed} of {} checks FAILED ({took:.1} s)",
            outcomes.len()
        );
    }
    failed == 0
}

/// The REST and stream checks, side by side, within [`BOUND`].
pub async fn check(target: &Target) -> Vec<Outcome> {
    let both = async {
        let (mut rest, stream) = tokio::join!(rest_check(target), stream_check(target));
        rest.extend(stream);
        rest
    };
    match tokio::time::timeout(BOUND, both).await {
        Ok(outcomes) => outcomes,
        Err(_) => vec![Outcome::fail(
            "check",
            format!("did not finish within {} s", BOUND.as_secs()),
        )],
    }
}

/// Signed `GET .../wallets`: reachability, clock skew, signature.
async fn rest_check(t: &Target) -> Vec<Outcome> {
    let url = format!("{}{WALLETS}", t.api_url.trim_end_matches('/'));
    let http = match reqwest::Client::builder()
        .timeout(REST_BOUND)
        .connect_timeout(REST_BOUND)
        .build()
    {
        Ok(c) => c,
        Err(e) => return vec![Outcome::fail("REST", format!("no HTTP client: {e}"))],
    };
    let body = rest::signed_body(chrono::Utc::now().timestamp_millis(), vec![]);
    let signature = signing::sign(&t.api_secret, body.as_bytes());
    let sent = Instant::now();
    let sent_at = chrono::Utc::now();
    let resp = http
        .get(&url)
        .header("Content-Type", "application/json")
        .header("X-AUTH-APIKEY", &t.api_key)
        .header("X-AUTH-SIGNATURE", signature)
        .body(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                format!("no answer within {} s", REST_BOUND.as_secs())
            } else {
                e.without_url().to_string()
            };
            return vec![
                Outcome::fail("REST reachable", format!("GET {url}: {why}")),
                Outcome::fail("clock skew", "not checked (no answer)"),
                Outcome::fail("REST signature", "not checked (no answer)"),
            ];
        }
    };
    let rtt = sent.elapsed();
    let status = resp.status().as_u16();
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .map(str::to_string);
    let text = tokio::time::timeout(REST_BOUND, resp.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut out = vec![Outcome::pass(
        "REST reachable",
        format!("GET {url} answered HTTP {status} in {} ms", rtt.as_millis()),
    )];
    out.push(clock(date.as_deref(), sent_at, rtt));
    out.push(signature_verdict(status, &text));
    out
}

/// Server `Date` minus our clock at the middle of the request (whole seconds on the wire).
fn clock(date: Option<&str>, sent_at: chrono::DateTime<chrono::Utc>, rtt: Duration) -> Outcome {
    let Some(date) = date else {
        return Outcome::fail("clock skew", "the answer has no Date header");
    };
    let Ok(server) = chrono::DateTime::parse_from_rfc2822(date) else {
        return Outcome::fail("clock skew", format!("unreadable Date header {date:?}"));
    };
    let middle = sent_at + chrono::Duration::from_std(rtt / 2).unwrap_or_default();
    let skew_ms = (server.with_timezone(&chrono::Utc) - middle).num_milliseconds();
    // `Date` has whole seconds: up to 1 s of the skew is its rounding.
    let text = format!(
        "server clock {:+.1} s from this host (Date {date:?}, ±1 s resolution; limit {} s)",
        skew_ms as f64 / 1000.0,
        MAX_SKEW.as_secs()
    );
    if skew_ms.unsigned_abs() <= MAX_SKEW.as_millis() as u64 {
        Outcome::pass("clock skew", text)
    } else {
        Outcome::fail(
            "clock skew",
            format!("{text}: sync this host's clock (NTP)"),
        )
    }
}

fn signature_verdict(status: u16, text: &str) -> Outcome {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| text.chars().take(120).collect());
    match status {
        200..=299 => {
            let wallets = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len));
            match wallets {
                Some(n) => Outcome::pass("REST signature", format!("accepted ({n} wallets)")),
                None => Outcome::fail(
                    "REST signature",
                    "accepted, but the answer is not a wallet list",
                ),
            }
        }
        401 => Outcome::fail(
            "REST signature",
            format!("rejected: HTTP 401 {message:?} (COINDCX_API_SECRET does not match COINDCX_API_KEY, or the key is revoked)"),
        ),
        _ => Outcome::fail(
            "REST signature",
            format!("not checked: HTTP {status} {message:?} (is COINDCX_API_URL the futures REST host?)"),
        ),
    }
}

/// Connect, `join`, hold, `leave` + disconnect, through the hub's own transport.
async fn stream_check(t: &Target) -> Vec<Outcome> {
    let transport = AutoTransport::new(
        t.eio,
        &t.ws_url,
        &t.api_key,
        &t.api_secret,
        // The check is about the private stream; the price channel needs no credentials.
        false,
        Arc::new(Metrics::new()),
    );
    let (records_tx, mut records) = crate::upstream::record_queue(256, 1 << 20);
    let (signals_tx, mut signals) = mpsc::unbounded_channel();
    let sink = ConnSink::new(
        1,
        records_tx,
        signals_tx,
        Arc::new(AtomicBool::new(false)),
        Arc::new(Metrics::new()),
    );
    let started = Instant::now();
    let conn = transport.open(sink);
    let mut out = Vec::new();
    let joined = match tokio::time::timeout(CONNECT_BOUND, signals.recv()).await {
        Ok(Some((_, Signal::Joined))) => {
            out.push(Outcome::pass(
                "stream connect",
                format!(
                    "{} connected and `join` sent in {} ms",
                    t.ws_url,
                    started.elapsed().as_millis()
                ),
            ));
            true
        }
        Ok(Some((_, Signal::Closed(why)))) => {
            out.push(Outcome::fail(
                "stream connect",
                format!("{}: {why}", t.ws_url),
            ));
            false
        }
        Ok(None) => {
            out.push(Outcome::fail("stream connect", "the connection vanished"));
            false
        }
        Err(_) => {
            out.push(Outcome::fail(
                "stream connect",
                format!(
                    "{}: no Socket.IO connect within {} s (an address that accepts and never answers?)",
                    t.ws_url,
                    CONNECT_BOUND.as_secs()
                ),
            ));
            false
        }
    };
    if joined {
        let joined_at = Instant::now();
        let hold_until = tokio::time::Instant::now() + JOIN_HOLD;
        let mut events = 0usize;
        let verdict = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(hold_until) => break Outcome::pass(
                    "stream join",
                    format!("held {} s without a disconnect: join signature accepted ({events} events received)", JOIN_HOLD.as_secs()),
                ),
                signal = signals.recv() => match signal {
                    Some((_, Signal::Closed(why))) => break Outcome::fail(
                        "stream join",
                        format!("the server closed the connection {} ms after `join` ({why}): join signature or API key rejected", joined_at.elapsed().as_millis()),
                    ),
                    Some(_) => {}
                    None => break Outcome::fail("stream join", "the connection vanished after `join`"),
                },
                Some(raw) = records.recv() => {
                    // socket.io ports of the exchange (and our node fake) send `join-error`.
                    if raw.event.contains("error") {
                        break Outcome::fail(
                            "stream join",
                            format!("the server answered `join` with {:?} {}: join signature or API key rejected", raw.event, raw.arg),
                        );
                    }
                    events += 1;
                }
            }
        };
        out.push(verdict);
    } else {
        out.push(Outcome::fail(
            "stream join",
            "not checked (never connected)",
        ));
    }
    let closing = Instant::now();
    let closed = tokio::time::timeout(CLOSE_BOUND, conn.close())
        .await
        .is_ok();
    out.push(match (joined, closed) {
        (true, true) => Outcome::pass(
            "stream leave",
            format!(
                "`leave` sent and disconnected in {} ms",
                closing.elapsed().as_millis()
            ),
        ),
        (false, true) => Outcome::fail("stream leave", "not attempted (never joined)"),
        (_, false) => Outcome::fail(
            "stream leave",
            format!(
                "`leave` + disconnect did not finish within {} ms",
                CLOSE_BOUND.as_millis()
            ),
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skew_beyond_the_limit_fails() {
        let sent = chrono::DateTime::parse_from_rfc2822("Tue, 01 Dec 2026 15:00:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let rtt = Duration::from_millis(200);
        let same = clock(Some("Tue, 01 Dec 2026 15:00:00 GMT"), sent, rtt);
        assert!(same.ok, "{}", same.detail);
        assert!(same.detail.contains("-0.1 s"), "{}", same.detail);
        let ahead = clock(Some("Tue, 01 Dec 2026 15:00:05 GMT"), sent, rtt);
        assert!(ahead.ok, "4.9 s is within 5 s: {}", ahead.detail);
        let far = clock(Some("Tue, 01 Dec 2026 15:00:06 GMT"), sent, rtt);
        assert!(!far.ok && far.detail.contains("+5.9 s"), "{}", far.detail);
        assert!(!clock(None, sent, rtt).ok);
        assert!(!clock(Some("yesterday"), sent, rtt).ok);
    }

    #[test]
    fn signature_verdicts_name_the_cause() {
        let ok = signature_verdict(200, "[{\"id\":\"w\"},{\"id\":\"x\"}]");
        assert!(
            ok.ok && ok.detail == "accepted (2 wallets)",
            "{}",
            ok.detail
        );
        let bad = signature_verdict(
            401,
            r#"{"code":401,"message":"Invalid credentials","status":"error"}"#,
        );
        assert!(!bad.ok);
        assert!(
            bad.detail
                .starts_with("rejected: HTTP 401 \"Invalid credentials\""),
            "{}",
            bad.detail
        );
        assert!(!signature_verdict(404, "not found").ok);
        assert!(!signature_verdict(200, "{}").ok);
    }
}
