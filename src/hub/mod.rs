//! The hub: one tokio task that owns the client table, the sequence counter, the account state
//! and the resume history. Everything reaches it as a message; it never awaits a client.
//!
//! - Sessions send [`Command`]s through a cloneable [`HubHandle`] (join, leave, shutdown).
//! - The upstream hands it raw exchange events (bounded channel) and supervisor [`Report`]s.
//! - Each frame is serialized once ([`frame`]); the frames of one hub cycle (every exchange
//!   event already queued, up to 257) form one shared [`Batch`], offered to every client's
//!   bounded queue (`HUB_CLIENT_QUEUE` batches) with `try_send`: one queue operation and one
//!   wake-up per client per cycle, not per frame. A full queue evicts that client (close 1008
//!   "slow consumer", counted). Bounding batches rather than frames means a client that reads
//!   is not evicted by one burst the hub absorbed in a single cycle.
//! - Because one task assigns seqs and serves joins, a new client's snapshot at seq N is always
//!   followed by exactly the events from N+1: no gap, no duplicate.

mod clustered;
mod finished;
pub mod frame;
pub mod history;
pub mod outbox;
pub mod pnl;
mod reports;
pub mod state;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::normalize::{normalize, PayloadError};
use crate::record::Record;
use crate::upstream::account::HeldOpen;
use crate::upstream::supervisor::{Command as UpCommand, Report, Supervisor};
use crate::upstream::{RawEvent, RecordRx, UpstreamState, PRICES_EVENT};
use frame::{Batch, Frame};
use history::History;
use state::{AccountState, Apply};
use status::Status;

/// How often the hub offers every client the heartbeat (an empty batch): one hub-wide timer
/// instead of one per client. Each session then checks its own deadlines (ws ping every 15 s,
/// app ping after 30 s of silence, closed after 45 s unheard), so they hold to within a sweep.
pub const HEARTBEAT_SWEEP: Duration = Duration::from_secs(5);

/// Terminal orders kept for snapshots ("recent orders").
const TERMINAL_ORDERS_KEPT: usize = 500;

/// Why a client is closed: the WebSocket close code and reason, and the
/// `hub_client_closes_total{reason}` label it is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
    pub metric: &'static str,
}

pub const SLOW_CONSUMER: CloseReason = CloseReason {
    code: 1008,
    reason: "slow consumer",
    metric: "slow_consumer",
};
pub const GOING_AWAY: CloseReason = CloseReason {
    code: 1001,
    reason: "shutting down",
    metric: "shutdown",
};

/// A resume request: `?since=<seq>&epoch=<epoch>`.
#[derive(Debug, Clone)]
pub struct Resume {
    pub since: u64,
    pub epoch: String,
}

/// What a joining session gets back.
pub struct Joined {
    pub client_id: u64,
    /// Frames to send first, in order (system, then snapshot or the replay).
    pub initial: Vec<Frame>,
    /// Live frames after `initial`, one batch per hub cycle. An empty batch is the hub-wide
    /// heartbeat ([`HEARTBEAT_SWEEP`]).
    pub frames: outbox::Receiver,
    /// Fires when the hub closes this client.
    pub close: oneshot::Receiver<CloseReason>,
}

pub enum Command {
    Join {
        resume: Option<Resume>,
        reply: oneshot::Sender<Joined>,
    },
    Leave {
        client_id: u64,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Cloneable handle for sessions and routes.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
}

impl HubHandle {
    /// Registers a client; `None` when the hub is shutting down.
    pub async fn join(&self, resume: Option<Resume>) -> Option<Joined> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Join { resume, reply }).await.ok()?;
        rx.await.ok()
    }

    pub async fn leave(&self, client_id: u64) {
        let _ = self.tx.send(Command::Leave { client_id }).await;
    }

    /// `leave` without awaiting, for `Drop` guards: a cancelled or panicking session still
    /// gives its place back. When the command queue is full the send finishes on a task.
    pub fn leave_now(&self, client_id: u64) {
        match self.tx.try_send(Command::Leave { client_id }) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let tx = self.tx.clone();
                    rt.spawn(async move {
                        let _ = tx.send(cmd).await;
                    });
                }
            }
        }
    }

    /// Tells every client, closes them with 1001 and stops the upstream.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

pub struct HubSettings {
    pub epoch: String,
    pub upstream_kind: &'static str,
    pub client_queue: usize,
    pub history: usize,
    pub history_bytes: usize,
    pub linger: Duration,
}

/// The hub's inputs from the upstream side.
pub struct UpstreamInputs {
    pub records: RecordRx,
    pub reports: mpsc::Receiver<Report>,
    pub gap: Arc<AtomicBool>,
    pub supervisor: Supervisor,
    /// The order ids held as open, kept current here for the REST reconcile to read.
    pub held_open: HeldOpen,
}

struct Client {
    tx: outbox::Sender,
    close: oneshot::Sender<CloseReason>,
}

pub struct Hub {
    settings: HubSettings,
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    commands: mpsc::Receiver<Command>,
    upstream: UpstreamInputs,
    clients: HashMap<u64, Client>,
    next_client: u64,
    seq: u64,
    history: History,
    state: AccountState,
    linger_until: Option<Instant>,
    upstream_state: UpstreamState,
    /// The detail of the last upstream state report (why it is in that state).
    upstream_detail: String,
    /// Set after the upstream was lost, so the next join is announced as a re-join.
    was_lost: bool,
    unknown_events: std::collections::HashSet<String>,
    shutting_down: bool,
    /// Frames of the current hub cycle, sent to every client as one batch when it ends.
    pending: Vec<Frame>,
    /// Cluster mode: records go to the stream and come back from it sequenced (see `clustered`).
    cluster: Option<clustered::Side>,
    /// Records judged news and sent on (numbered here, or offered to the cluster's stream).
    delivered: u64,
    /// Latest mark prices (public channel) and the `pnl` frame throttle.
    marks: pnl::Marks,
    pnl: pnl::Throttle,
}

/// Spawns the hub task on the current runtime; returns its handle.
pub fn spawn(settings: HubSettings, metrics: Arc<Metrics>, upstream: UpstreamInputs) -> HubHandle {
    let (handle, task) = prepare(settings, metrics, upstream);
    tokio::spawn(task.run());
    handle
}

/// The hub task, not yet running: [`HubTask::run`] it on the runtime of your choice (the
/// server runs it on an actix worker, next to the sessions it feeds).
pub struct HubTask(Hub);

impl HubTask {
    pub async fn run(self) {
        self.0.run().await
    }
}

/// Builds the hub and its handle without starting it.
pub fn prepare(
    settings: HubSettings,
    metrics: Arc<Metrics>,
    upstream: UpstreamInputs,
) -> (HubHandle, HubTask) {
    prepare_with(settings, metrics, upstream, None)
}

/// [`prepare`], in cluster mode when `cluster` is given: `seq`, `epoch`, state and history come
/// from the account's Redis stream, and the records this hub judges news are offered to it.
pub fn prepare_with(
    mut settings: HubSettings,
    metrics: Arc<Metrics>,
    upstream: UpstreamInputs,
    cluster: Option<crate::cluster::node::ClusterLink>,
) -> (HubHandle, HubTask) {
    let initial = cluster.as_ref().and_then(|c| c.initial.as_ref());
    if let Some((loaded, _)) = initial {
        settings.epoch = loaded.epoch.clone();
    }
    let mut status = Status::new(settings.epoch.clone(), settings.upstream_kind);
    if let Some(c) = &cluster {
        status = status.with_cluster(c.view.clone());
    }
    let status = Arc::new(status);
    let (tx, commands) = mpsc::channel(1024);
    let hub = Hub {
        history: History::new(settings.history, settings.history_bytes),
        state: AccountState::with_limits(
            TERMINAL_ORDERS_KEPT,
            finished::FINISHED_IDS_KEPT,
            upstream.held_open.clone(),
        ),
        settings,
        status: status.clone(),
        metrics: metrics.clone(),
        commands,
        upstream,
        clients: HashMap::new(),
        next_client: 0,
        seq: 0,
        linger_until: None,
        upstream_state: UpstreamState::Idle,
        upstream_detail: String::new(),
        was_lost: false,
        unknown_events: Default::default(),
        shutting_down: false,
        pending: Vec::new(),
        cluster: None,
        delivered: 0,
        marks: Default::default(),
        pnl: Default::default(),
    };
    metrics.set_upstream_state("idle");
    let mut hub = hub;
    if let Some(link) = cluster {
        hub.attach(link);
    }
    let handle = HubHandle {
        tx,
        status,
        metrics,
    };
    (handle, HubTask(hub))
}

impl Hub {
    async fn run(mut self) {
        let mut sweep = tokio::time::interval(HEARTBEAT_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Empty: a static `Bytes`, so queueing it costs no reference count.
        let heartbeat = bytes::Bytes::new();
        loop {
            // Whatever the last branch produced goes out now, as one batch per client.
            self.flush();
            let linger = self.linger_until;
            // Derived data goes only to someone watching.
            let pnl_due = self.pnl.due().filter(|_| !self.clients.is_empty());
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                Some(raw) = self.upstream.records.recv() => {
                    self.on_raw(raw);
                    // Drain what is already queued in one go, but let commands in regularly.
                    for _ in 0..256 {
                        match self.upstream.records.try_recv() {
                            Some(raw) => self.on_raw(raw),
                            None => break,
                        }
                    }
                    self.check_gap();
                }
                Some(report) = self.upstream.reports.recv() => self.on_report(report),
                Some(incoming) = clustered::next(&mut self.cluster) => self.on_incoming(incoming),
                _ = sweep.tick() => {
                    if !self.clients.is_empty() {
                        self.offer(heartbeat.clone(), 0);
                    }
                }
                _ = sleep_until_opt(linger) => {
                    self.linger_until = None;
                    if self.clients.is_empty() {
                        log::info!(target: "hub", "last client gone: stopping the upstream");
                        self.upstream.supervisor.send(UpCommand::Stop);
                        // Marks stop arriving with the price channel: none is better than stale.
                        self.marks.clear();
                        self.pnl.reset();
                    }
                }
                _ = sleep_until_opt(pnl_due) => self.send_pnl(),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Join { resume, reply } => {
                if self.shutting_down {
                    return; // dropping `reply` tells the session
                }
                let joined = self.join(resume);
                if let Err(joined) = reply.send(joined) {
                    // The session went away before its reply: forget it again.
                    self.remove(joined.client_id);
                }
            }
            Command::Leave { client_id } => {
                self.remove(client_id);
            }
            Command::Shutdown { reply } => {
                self.shutting_down = true;
                self.flush();
                let frame = frame::system_frame(&self.settings.epoch, "shutting down", json!({}));
                let notice = Batch::new(vec![frame]).wire().clone();
                for (_, client) in self.clients.drain() {
                    let _ = client.tx.try_send(notice.clone());
                    let _ = client.close.send(GOING_AWAY);
                }
                self.metrics.clients.set(0);
                self.linger_until = None;
                // The supervisor answers once `leave` is sent and the connection is gone.
                self.upstream.supervisor.send(UpCommand::Shutdown(reply));
            }
        }
    }

    fn join(&mut self, resume: Option<Resume>) -> Joined {
        self.next_client += 1;
        let client_id = self.next_client;
        let mut initial = vec![frame::system_frame(
            &self.settings.epoch,
            "connected",
            json!({"coindcx_connected": self.upstream_state == UpstreamState::Joined, "upstream": self.settings.upstream_kind}),
        )];
        let replay = resume.as_ref().and_then(|r| {
            if r.epoch == self.settings.epoch {
                self.history.after(r.since, self.seq)
            } else {
                None
            }
        });
        let replayed = replay.is_some();
        match (resume, replay) {
            (Some(_), Some(frames)) => {
                self.metrics.resumes.with_label_values(&["ok"]).inc();
                initial.extend(frames);
            }
            (resume, _) => {
                if let Some(r) = resume {
                    self.metrics.resumes.with_label_values(&["resync"]).inc();
                    initial.push(frame::hub_frame(
                        &self.settings.epoch,
                        "resync",
                        json!({"reason": resync_reason(&r, &self.settings.epoch), "since": r.since, "epoch": r.epoch}),
                    ));
                }
                let mut snapshot = self.state.snapshot(self.seq);
                snapshot.pnl = Some(self.current_pnl());
                initial.push(frame::hub_frame(&self.settings.epoch, "snapshot", snapshot));
            }
        }
        if replayed && !self.marks.is_empty() {
            // A replay carries no PnL (derived, never sequenced): the current values follow it.
            initial.push(frame::hub_frame(
                &self.settings.epoch,
                "pnl",
                self.current_pnl(),
            ));
        }
        if self.upstream_state == UpstreamState::AuthFailed {
            // Whoever arrives now learns it at once, not only those present when it happened.
            initial.push(frame::system_frame(
                &self.settings.epoch,
                reports::AUTH_FAILED,
                reports::auth_failed_data(&self.upstream_detail),
            ));
        }
        let (tx, frames) = outbox::channel(self.settings.client_queue);
        let (close_tx, close) = oneshot::channel();
        self.clients.insert(
            client_id,
            Client {
                tx,
                close: close_tx,
            },
        );
        self.metrics.clients.set(self.clients.len() as i64);
        self.linger_until = None;
        if self.clients.len() == 1 {
            self.upstream.supervisor.send(UpCommand::Start);
        }
        Joined {
            client_id,
            initial,
            frames,
            close,
        }
    }

    fn remove(&mut self, client_id: u64) -> Option<Client> {
        let client = self.clients.remove(&client_id)?;
        self.metrics.clients.set(self.clients.len() as i64);
        if self.clients.is_empty() {
            self.linger_until = Some(Instant::now() + self.settings.linger);
        }
        Some(client)
    }

    fn on_raw(&mut self, raw: RawEvent) {
        if raw.event == PRICES_EVENT {
            return self.on_prices(&raw.arg);
        }
        let normalized = match normalize(&raw.event, &raw.arg) {
            Ok(n) => n,
            Err(PayloadError::UnknownEvent) => {
                self.metrics
                    .skipped
                    .with_label_values(&["unknown", "unknown_event"])
                    .inc();
                if self.unknown_events.len() < 100 && self.unknown_events.insert(raw.event.clone())
                {
                    log::info!(target: "hub", "ignoring unknown exchange event {:?}", raw.event);
                }
                return;
            }
            Err(e) => {
                self.metrics
                    .skipped
                    .with_label_values(&[&raw.event, reason_label(&e)])
                    .inc();
                log::warn!(target: "hub", "skipped {} event: {e}", raw.event);
                return;
            }
        };
        for (index, e) in &normalized.skipped {
            self.metrics
                .skipped
                .with_label_values(&[&raw.event, "bad_record"])
                .inc();
            log::warn!(target: "hub", "skipped {} record #{index}: {e}", raw.event);
        }
        for rec in normalized.records {
            for field in &rec.bad_fields {
                let counter = self
                    .metrics
                    .bad_fields
                    .with_label_values(&[&raw.event, field]);
                counter.inc();
                // Once per event and field: an exchange that always sends it would flood the log.
                if counter.get() == 1 {
                    log::warn!(target: "hub", "{} record {}: field {field:?} could not be typed; delivered as null (counted in hub_bad_fields_total from now on)", raw.event, rec.key);
                }
            }
            self.publish(rec, raw.received_at, false);
        }
    }

    /// Applies one record to the state and, when it is news, sequences and fans it out.
    fn publish(&mut self, rec: Record, at: DateTime<Utc>, reconciled: bool) {
        match self.state.judge(&rec) {
            Apply::Changed => {}
            Apply::Duplicate | Apply::Stale => {
                self.metrics.duplicates.inc();
                return;
            }
        }
        self.deliver(rec, at, reconciled, false);
    }

    /// Sequences, stores, records in history and fans out a record already judged news.
    /// `missing`: a held-open order the reconcile could not account for (see `reports`).
    fn deliver(&mut self, rec: Record, at: DateTime<Utc>, reconciled: bool, missing: bool) {
        self.delivered += 1;
        if let Some(side) = &self.cluster {
            // The stream numbers it; it comes back through `on_incoming` on every instance.
            side.offer(rec, at, reconciled, missing);
            return;
        }
        self.seq += 1;
        self.commit(uuid::Uuid::new_v4(), rec, at, reconciled, missing);
    }

    /// Stores, records in history and fans out a record numbered `self.seq`.
    fn commit(
        &mut self,
        id: uuid::Uuid,
        rec: Record,
        at: DateTime<Utc>,
        reconciled: bool,
        missing: bool,
    ) {
        let kind = rec.kind;
        let updated_at = rec.updated_at;
        let bytes = frame::record_frame_with_id(
            id,
            &self.settings.epoch,
            self.seq,
            kind.frame_type(),
            kind.event_name(),
            at,
            reconciled,
            &rec.data,
        );
        // Serialized from the record above; now the state takes it without a copy.
        if missing {
            self.state.mark_missing(rec, at);
        } else {
            self.state.store(rec, at);
        }
        let trimmed = self.history.push(self.seq, bytes.clone());
        if trimmed > 0 {
            self.metrics.history_trimmed_by_bytes.inc_by(trimmed as u64);
        }
        if kind != crate::record::Kind::Order && !self.marks.is_empty() {
            self.pnl.touch();
        }
        self.status.record_event(self.seq, at);
        self.record_sizes();
        self.metrics
            .events_in
            .with_label_values(&[kind.frame_type()])
            .inc();
        // Only live stream records measure exchange-to-send latency: a reconciled record's
        // `updated_at` is when the exchange changed it, possibly long before the hub was back.
        // The timestamp is exchange input: saturate rather than overflow on hostile values.
        if let (Some(updated_at), false) = (updated_at, reconciled) {
            let lag_ms = Utc::now().timestamp_millis().saturating_sub(updated_at);
            if (0..86_400_000).contains(&lag_ms) {
                self.metrics.latency.observe(lag_ms as f64 / 1000.0);
            }
        }
        self.fan_out(&bytes);
    }

    /// Adds a frame to this cycle's batch; it goes to every client when the cycle ends.
    fn fan_out(&mut self, bytes: &Frame) {
        self.pending.push(bytes.clone());
    }

    /// Ends the cycle: offers its frames as one shared batch to every client.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch: Batch = self.pending.drain(..).collect();
        self.offer(batch.wire().clone(), batch.len());
    }

    /// Offers a batch to every client without waiting; evicts those whose queue is full.
    fn offer(&mut self, batch: bytes::Bytes, frames: usize) {
        let mut evicted = Vec::new();
        let mut delivered = 0u64;
        for (id, client) in &self.clients {
            match client.tx.try_send(batch.clone()) {
                Ok(()) => delivered += frames as u64,
                Err(outbox::TrySendError::Full | outbox::TrySendError::Closed) => evicted.push(*id),
            }
        }
        self.metrics.deliveries.inc_by(delivered);
        for id in evicted {
            if let Some(client) = self.remove(id) {
                if !client.tx.is_closed() {
                    log::info!(target: "hub", "client {id} evicted: slow consumer");
                    self.metrics
                        .evictions
                        .with_label_values(&["slow_consumer"])
                        .inc();
                    let _ = client.close.send(SLOW_CONSUMER);
                }
            }
        }
    }

    /// One public price event: merged into the marks; the PnL is re-checked (throttled).
    fn on_prices(&mut self, arg: &Value) {
        match self.marks.merge(arg) {
            Ok(merged) => {
                if merged.bad_marks > 0 {
                    self.metrics
                        .skipped
                        .with_label_values(&[PRICES_EVENT, "bad_mark"])
                        .inc_by(merged.bad_marks as u64);
                }
                if merged.marks_changed > 0 {
                    self.pnl.touch();
                }
            }
            Err(e) => {
                self.metrics
                    .skipped
                    .with_label_values(&[PRICES_EVENT, "wrong_shape"])
                    .inc();
                log::debug!(target: "hub", "skipped price event: {e}");
            }
        }
    }

    /// The current `pnl` values (`null` before any mark arrived).
    fn current_pnl(&self) -> Value {
        if self.marks.is_empty() {
            return Value::Null;
        }
        pnl::compute(&self.state, &self.marks)
    }

    /// Sends a `pnl` frame if the values changed since the last one.
    fn send_pnl(&mut self) {
        let current = pnl::compute(&self.state, &self.marks);
        if let Some(data) = self.pnl.offer(current, Instant::now()) {
            let bytes = frame::hub_frame(&self.settings.epoch, "pnl", data);
            self.fan_out(&bytes);
        }
    }

    fn broadcast_system(&mut self, message: &str, extra: Value) {
        let bytes = frame::system_frame(&self.settings.epoch, message, extra);
        self.fan_out(&bytes);
    }

    fn record_sizes(&self) {
        let (orders, terminal, positions, balances) = self.state.counts();
        let held = &self.status.held;
        held.history.store(self.history.len(), Ordering::Relaxed);
        held.orders.store(orders, Ordering::Relaxed);
        held.terminal_orders.store(terminal, Ordering::Relaxed);
        held.positions.store(positions, Ordering::Relaxed);
        held.balances.store(balances, Ordering::Relaxed);
    }

    fn check_gap(&mut self) {
        if self.upstream.gap.swap(false, Ordering::SeqCst) {
            log::warn!(target: "hub", "records were dropped upstream; reconciling over REST");
            self.upstream.supervisor.send(UpCommand::Reconcile);
        }
    }
}

fn resync_reason(r: &Resume, epoch: &str) -> &'static str {
    if r.epoch.is_empty() {
        "no epoch given: a seq means nothing without the epoch it belongs to"
    } else if r.epoch != epoch {
        "epoch differs: the hub restarted, seq values start over"
    } else {
        "history does not reach back to since"
    }
}

fn reason_label(e: &PayloadError) -> &'static str {
    match e {
        PayloadError::UnknownEvent => "unknown_event",
        PayloadError::ArgNotObject => "arg_not_object",
        PayloadError::NoData => "no_data",
        PayloadError::BadJson(_) => "bad_json",
        PayloadError::WrongShape(_) => "wrong_shape",
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
