//! The upstream supervisor: a plain tokio task that owns the one exchange connection.
//!
//! The hub sends it [`Command`]s (start when the first client arrives, stop after the last one
//! leaves, reconcile after a gap) and never waits on it. It reports state changes and REST
//! reconcile results back as [`Report`]s. Policy, in one place:
//! - drops reconnect with exponential backoff and full jitter, 0.5 s to 30 s; the attempt count
//!   goes back to zero only after a join has held for [`STABLE_JOIN`] (a server that drops every
//!   join after a few seconds must see growing delays, not a reconnect and reconcile every 0.5 s);
//! - every attempt has a deadline ([`JOIN_TIMEOUT`]: TCP, TLS, Engine.IO open and Socket.IO
//!   Connect in all); one that passes it is a failed attempt like any drop;
//! - three disconnects within 2 s of `join` in a row, or a 401 from REST, mean bad credentials:
//!   state `auth_failed`, retried at most every 5 minutes while clients are connected;
//! - after every join, fetch the account over REST so nothing missed while away stays stale.
//!   The fetch starts [`JOIN_SETTLE`] after the join is emitted: CoinDCX never acknowledges a
//!   join, and an account change that lands after a fetch made before the server processed the
//!   join would be in neither the stream nor the fetch (seen against the simulator under load).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rand::Rng;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ConnSink, Connection, RecordTx, Signal, Transport, UpstreamState};
use crate::metrics::Metrics;

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A disconnect this soon after `join` counts towards "bad credentials".
const QUICK_DROP: Duration = Duration::from_secs(2);
const QUICK_DROPS_FOR_AUTH_FAILURE: u32 = 3;
const AUTH_RETRY: Duration = Duration::from_secs(300);
/// A connection that has not reached the Socket.IO Connect event by then is given up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A join that held this long was a working connection: the next drop starts the backoff over.
pub const STABLE_JOIN: Duration = Duration::from_secs(30);
/// How long after emitting `join` the post-join REST fetch starts (see the module docs).
pub const JOIN_SETTLE: Duration = Duration::from_secs(1);

/// What the hub asks of the supervisor.
#[derive(Debug)]
pub enum Command {
    /// Clients are watching: be connected.
    Start,
    /// Nobody is watching: `leave`, disconnect, stay idle.
    Stop,
    /// Records may have been missed: fetch the account over REST.
    Reconcile,
    /// The process is exiting: stop like `Stop`, then answer.
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

/// The account as the exchange's REST API reports it.
#[derive(Debug, Default, Clone)]
pub struct AccountView {
    pub open_orders: Vec<Value>,
    /// Recently finished orders, to settle orders that ended while the stream was away.
    pub recent_terminal_orders: Vec<Value>,
    pub positions: Vec<Value>,
    pub balances: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct FetchError {
    pub auth: bool,
    pub message: String,
}

/// Reads the account over REST (the real exchange, the simulator, or a test double).
pub trait AccountSource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'static, Result<AccountView, FetchError>>;
}

/// A REST fetch in flight: the view and when the fetch started.
type Fetch = tokio::task::JoinHandle<Result<(AccountView, DateTime<Utc>), FetchError>>;

/// What the supervisor tells the hub.
#[derive(Debug)]
pub enum Report {
    State {
        state: UpstreamState,
        detail: String,
        reconnects: u64,
    },
    Reconciled {
        view: AccountView,
        started_at: DateTime<Utc>,
    },
}

/// Handle the hub keeps; sending never waits.
#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Command>,
}

impl Supervisor {
    /// A handle whose commands arrive on the returned receiver: something that stands between
    /// the hub and the real supervisor (cluster mode's node) looks like one to the hub.
    pub fn channel() -> (Supervisor, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Supervisor { tx }, rx)
    }

    pub fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd);
    }
}

/// Channels between the supervisor, its connections and the hub.
pub struct Wiring {
    pub records: RecordTx,
    pub reports: mpsc::Sender<Report>,
    pub gap: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

/// The timing rules of the life cycle, in one value so tests can shorten them.
#[derive(Clone)]
pub(crate) struct Policy {
    pub quick_drop: Duration,
    pub stable_join: Duration,
    pub join_timeout: Duration,
    /// Turns a backoff ceiling into the delay actually waited (full jitter outside tests).
    pub jitter: Arc<dyn Fn(Duration) -> Duration + Send + Sync>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            quick_drop: QUICK_DROP,
            stable_join: STABLE_JOIN,
            join_timeout: JOIN_TIMEOUT,
            jitter: Arc::new(full_jitter),
        }
    }
}

/// Spawns the supervisor task on the current runtime.
pub fn spawn(
    transport: Arc<dyn Transport>,
    account: Option<Arc<dyn AccountSource>>,
    wiring: Wiring,
) -> Supervisor {
    spawn_with(transport, account, wiring, Policy::default())
}

pub(crate) fn spawn_with(
    transport: Arc<dyn Transport>,
    account: Option<Arc<dyn AccountSource>>,
    wiring: Wiring,
    policy: Policy,
) -> Supervisor {
    let (tx, rx) = mpsc::unbounded_channel();
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let task = Task {
        policy,
        transport,
        account,
        wiring,
        commands: rx,
        signals_tx: sig_tx,
        signals: sig_rx,
        conn: None,
        conn_id: 0,
        joined_at: None,
        join_deadline: None,
        wanted: false,
        state: UpstreamState::Idle,
        attempt: 0,
        quick_drops: 0,
        retry_at: None,
        auth_failure: None,
        reconnects: 0,
        reconcile: None,
    };
    tokio::spawn(task.run());
    Supervisor { tx }
}

struct Task {
    policy: Policy,
    transport: Arc<dyn Transport>,
    account: Option<Arc<dyn AccountSource>>,
    wiring: Wiring,
    commands: mpsc::UnboundedReceiver<Command>,
    signals_tx: mpsc::UnboundedSender<(u64, Signal)>,
    signals: mpsc::UnboundedReceiver<(u64, Signal)>,
    conn: Option<Box<dyn Connection>>,
    conn_id: u64,
    joined_at: Option<Instant>,
    join_deadline: Option<Instant>,
    wanted: bool,
    state: UpstreamState,
    attempt: u32,
    quick_drops: u32,
    retry_at: Option<Instant>,
    /// When (and why) credentials last failed; kept across stops so a browser that leaves
    /// and comes back cannot restart the attempts early. Cleared by a successful REST fetch.
    auth_failure: Option<(Instant, String)>,
    reconnects: u64,
    reconcile: Option<Fetch>,
}

impl Task {
    async fn run(mut self) {
        loop {
            let retry_at = self.retry_at;
            let join_deadline = self.join_deadline;
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        // The hub is gone (shutdown): leave and disconnect.
                        self.close_conn().await;
                        return;
                    }
                },
                Some((id, signal)) = self.signals.recv() => {
                    if id == self.conn_id && self.conn.is_some() {
                        self.on_signal(signal).await;
                    }
                }
                _ = sleep_until_opt(retry_at) => {
                    self.retry_at = None;
                    if self.wanted && self.conn.is_none() {
                        self.open().await;
                    }
                }
                _ = sleep_until_opt(join_deadline) => {
                    self.join_deadline = None;
                    let limit = human(self.policy.join_timeout);
                    self.on_signal(Signal::Closed(format!("no Socket.IO connect within {limit}"))).await;
                }
                done = join_opt(&mut self.reconcile) => {
                    self.reconcile = None;
                    self.on_reconciled(done).await;
                }
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start => {
                self.wanted = true;
                if self.conn.is_some() || self.retry_at.is_some() {
                    return;
                }
                match self.auth_failure.clone() {
                    Some((at, why)) if at.elapsed() < AUTH_RETRY => {
                        self.retry_at = Some(at + AUTH_RETRY);
                        self.set_state(UpstreamState::AuthFailed, &why).await;
                    }
                    _ => self.open().await,
                }
            }
            Command::Shutdown(done) => {
                Box::pin(self.on_command(Command::Stop)).await;
                let _ = done.send(());
            }
            Command::Stop => {
                self.wanted = false;
                self.retry_at = None;
                self.close_conn().await;
                if let Some(r) = self.reconcile.take() {
                    r.abort();
                }
                self.attempt = 0;
                self.quick_drops = 0;
                self.set_state(UpstreamState::Idle, "no clients").await;
            }
            Command::Reconcile => {
                if self.state == UpstreamState::Joined {
                    self.start_reconcile(Duration::ZERO);
                }
            }
        }
    }

    async fn open(&mut self) {
        self.conn_id += 1;
        self.joined_at = None;
        self.join_deadline = Some(Instant::now() + self.policy.join_timeout);
        let sink = ConnSink {
            conn_id: self.conn_id,
            records: self.wiring.records.clone(),
            signals: self.signals_tx.clone(),
            gap: self.wiring.gap.clone(),
            metrics: self.wiring.metrics.clone(),
        };
        if self.attempt > 0 || self.state == UpstreamState::AuthFailed {
            self.reconnects += 1;
            self.wiring.metrics.reconnects.inc();
        }
        log::info!(target: "upstream", "connecting (attempt {})", self.attempt + 1);
        self.conn = Some(self.transport.open(sink));
        // While auth has failed the state stays `auth_failed` until a join proves otherwise.
        if self.state != UpstreamState::AuthFailed {
            let state = if self.attempt == 0 {
                UpstreamState::Connecting
            } else {
                UpstreamState::Reconnecting
            };
            self.set_state(state, "connecting").await;
        }
    }

    async fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::Joined => {
                // `attempt` is not reset here: only a join that holds (see `Closed`) does.
                self.joined_at = Some(Instant::now());
                self.join_deadline = None;
                log::info!(target: "upstream", "joined channel coindcx");
                self.set_state(UpstreamState::Joined, "joined").await;
                self.start_reconcile(JOIN_SETTLE);
            }
            Signal::Closed(reason) => {
                let held = self.joined_at.map(|t| t.elapsed());
                let quick = held.is_some_and(|h| h < self.policy.quick_drop);
                if held.is_some_and(|h| h >= self.policy.stable_join) {
                    self.attempt = 0;
                }
                self.close_conn().await;
                self.quick_drops = if quick { self.quick_drops + 1 } else { 0 };
                // After an auth failure one more quick drop is enough: retry once per 5 minutes.
                let threshold = if self.state == UpstreamState::AuthFailed {
                    1
                } else {
                    QUICK_DROPS_FOR_AUTH_FAILURE
                };
                if self.quick_drops >= threshold {
                    self.auth_failed(&format!(
                        "server disconnected right after join {} times in a row",
                        self.quick_drops
                    ))
                    .await;
                    return;
                }
                self.attempt += 1;
                let delay = (self.policy.jitter)(backoff_ceiling(self.attempt));
                log::warn!(target: "upstream", "upstream lost ({reason}); reconnecting in {} ms", delay.as_millis());
                self.retry_at = Some(Instant::now() + delay);
                if self.state != UpstreamState::AuthFailed {
                    self.set_state(UpstreamState::Reconnecting, &reason).await;
                }
            }
        }
    }

    async fn auth_failed(&mut self, why: &str) {
        log::error!(target: "upstream", "bad credentials: {why}; retrying at most every 5 minutes while clients are connected");
        self.close_conn().await;
        self.quick_drops = 0;
        self.attempt = 0;
        self.retry_at = Some(Instant::now() + AUTH_RETRY);
        self.auth_failure = Some((Instant::now(), why.to_string()));
        self.set_state(UpstreamState::AuthFailed, why).await;
    }

    /// Fetches the account over REST after `delay`, replacing any fetch still running.
    fn start_reconcile(&mut self, delay: Duration) {
        let Some(account) = self.account.clone() else {
            return;
        };
        if let Some(r) = self.reconcile.take() {
            r.abort();
        }
        self.reconcile = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let started_at = Utc::now();
            account.fetch().await.map(|view| (view, started_at))
        }));
    }

    async fn on_reconciled(
        &mut self,
        done: Result<Result<(AccountView, DateTime<Utc>), FetchError>, tokio::task::JoinError>,
    ) {
        match done {
            Ok(Ok((view, started_at))) => {
                // A signed REST call went through: the credentials are good.
                self.auth_failure = None;
                self.wiring
                    .metrics
                    .reconcile_runs
                    .with_label_values(&["ok"])
                    .inc();
                let _ = self
                    .wiring
                    .reports
                    .send(Report::Reconciled { view, started_at })
                    .await;
            }
            Ok(Err(e)) if e.auth => {
                self.wiring
                    .metrics
                    .reconcile_runs
                    .with_label_values(&["auth_failed"])
                    .inc();
                self.auth_failed(&format!("REST answered 401: {}", e.message))
                    .await;
            }
            Ok(Err(e)) => {
                self.wiring
                    .metrics
                    .reconcile_runs
                    .with_label_values(&["error"])
                    .inc();
                log::warn!(target: "upstream", "reconcile failed: {}", e.message);
            }
            Err(_) => {} // aborted by a stop or a newer reconcile
        }
    }

    async fn close_conn(&mut self) {
        self.joined_at = None;
        self.join_deadline = None;
        if let Some(conn) = self.conn.take() {
            conn.close().await;
            log::info!(target: "upstream", "disconnected");
        }
    }

    async fn set_state(&mut self, state: UpstreamState, detail: &str) {
        self.state = state;
        self.wiring.metrics.set_upstream_state(state.as_str());
        let _ = self
            .wiring
            .reports
            .send(Report::State {
                state,
                detail: detail.to_string(),
                reconnects: self.reconnects,
            })
            .await;
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)], at least 50 ms.
pub fn backoff(attempt: u32) -> Duration {
    full_jitter(backoff_ceiling(attempt))
}

/// The most a retry after `attempt` failed attempts in a row waits: 0.5 s doubling to 30 s.
pub fn backoff_ceiling(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP)
}

/// Uniform in [50 ms, ceiling].
fn full_jitter(ceiling: Duration) -> Duration {
    let ms = rand::thread_rng().gen_range(50..=ceiling.as_millis().max(50) as u64);
    Duration::from_millis(ms)
}

/// `10 s`, or `200 ms` when not whole seconds.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn join_opt<T>(
    handle: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match handle {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_bounds() {
        for attempt in 1..40 {
            let cap = (500u64 << (attempt - 1).min(16)).min(30_000);
            for _ in 0..50 {
                let d = backoff(attempt).as_millis() as u64;
                assert!((50..=cap.max(50)).contains(&d), "attempt {attempt}: {d} ms");
            }
        }
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod scripted;
