//! The hub in cluster mode: records it judged news go to the account's Redis stream instead of
//! being numbered here, and what the stream holds comes back numbered, on every instance alike.
//!
//! A hub trusts the stream's `seq`: an entry that is not exactly the next one (Redis lost its
//! data and started a new epoch, or this reader fell behind the trimmed stream) cannot be
//! covered, so every client gets a `resync` and a fresh snapshot, and the stream goes on from
//! there.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::history::History;
use super::{frame, Hub};
use crate::cluster::node::{ClusterLink, Incoming};
use crate::cluster::stream::{Entry, Loaded, Payload};
use crate::record::{Kind, Record};

pub(super) struct Side {
    sink: mpsc::UnboundedSender<(String, bool, Payload)>,
    source: mpsc::Receiver<Incoming>,
}

impl Side {
    /// Offers a record for the stream (published only while this instance leads).
    pub(super) fn offer(&self, rec: Record, at: DateTime<Utc>, reconciled: bool, missing: bool) {
        let key = format!("{}:{}", rec.kind.frame_type(), rec.key);
        // A finished order leaves Redis's current state; the stream keeps it for recent orders.
        let keep = !rec.status.is_some_and(|s| s.is_terminal());
        let payload = Payload {
            id: Uuid::new_v4(),
            kind: rec.kind.frame_type().into(),
            at: at.timestamp_millis(),
            reconciled,
            missing,
            data: Value::Object(rec.data.to_map()),
        };
        let _ = self.sink.send((key, keep, payload));
    }
}

/// The next thing from the cluster; never resolves in single mode.
pub(super) async fn next(side: &mut Option<Side>) -> Option<Incoming> {
    match side {
        Some(side) => side.source.recv().await,
        None => std::future::pending().await,
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    match name {
        "order" => Some(Kind::Order),
        "position" => Some(Kind::Position),
        "balance" => Some(Kind::Balance),
        _ => None,
    }
}

fn to_record(p: &Payload) -> Option<Record> {
    let kind = kind_of(&p.kind)?;
    match Record::from_value(kind, p.data.clone()) {
        Ok(rec) => Some(rec),
        Err(e) => {
            log::warn!(target: "cluster", "stream record {} unusable: {e}", p.id);
            None
        }
    }
}

impl Hub {
    /// Takes the stream's state, seq and history as they were at start, then follows it.
    pub(super) fn attach(&mut self, link: ClusterLink) {
        if let Some((loaded, history)) = link.initial {
            self.load(loaded, history);
        }
        self.cluster = Some(Side {
            sink: link.sink,
            source: link.source,
        });
    }

    /// Takes the stream's state, seq and history (at start, or once Redis first answers).
    fn load(&mut self, loaded: Loaded, history: Vec<Entry>) {
        {
            self.seq = loaded.seq;
            // Current records (any age) and the stream's recent ones, applied in seq order:
            // the latest per key wins, and recently finished orders are there for the snapshot.
            let mut records: Vec<(u64, &Payload)> =
                loaded.state.iter().map(|(seq, p)| (*seq, p)).collect();
            records.extend(history.iter().map(|e| (e.seq, &e.payload)));
            records.sort_by_key(|(seq, _)| *seq);
            records.dedup_by_key(|(seq, _)| *seq);
            for (_, payload) in records {
                if let Some(rec) = to_record(payload) {
                    self.store(rec, payload.received_at(), payload.missing);
                }
            }
            for entry in history {
                let frame = self.entry_frame(&entry);
                if let Some(frame) = frame {
                    self.history.push(entry.seq, frame);
                }
            }
            self.status
                .seq
                .store(self.seq, std::sync::atomic::Ordering::SeqCst);
            self.record_sizes();
        }
    }

    fn store(&mut self, rec: Record, at: DateTime<Utc>, missing: bool) {
        if missing {
            self.state.mark_missing(rec, at);
        } else {
            self.state.store(rec, at);
        }
    }

    fn entry_frame(&self, e: &Entry) -> Option<frame::Frame> {
        let kind = kind_of(&e.payload.kind)?;
        Some(frame::record_frame_with_id(
            e.payload.id,
            &e.epoch,
            e.seq,
            kind.frame_type(),
            kind.event_name(),
            e.payload.received_at(),
            e.payload.reconciled,
            &e.payload.data,
        ))
    }

    pub(super) fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Loaded(loaded, history) => {
                // This hub started while Redis was down: whatever its clients got so far was
                // numbered locally, so they start over from the cluster's stream.
                let old = (self.seq, self.settings.epoch.clone());
                self.settings.epoch = loaded.epoch.clone();
                self.status.set_epoch(&loaded.epoch);
                self.history = History::new(self.settings.history, self.settings.history_bytes);
                self.load(loaded, history);
                if !self.clients.is_empty() {
                    self.start_clients_over(
                        "joined the cluster's stream (Redis was down at start)",
                        old,
                    );
                }
            }
            Incoming::Entries(entries) => {
                for e in entries {
                    self.on_entry(e);
                }
            }
            Incoming::Redis(false) => self.broadcast_system(
                "redis unreachable",
                json!({"cluster": "redis_unreachable", "detail": "serving what this hub holds; events resume when Redis returns"}),
            ),
            Incoming::Redis(true) => {
                self.broadcast_system("redis reachable", json!({"cluster": "redis_ok"}))
            }
        }
    }

    fn on_entry(&mut self, e: Entry) {
        if e.epoch == self.settings.epoch && e.seq <= self.seq {
            return; // held already (the start load overlaps the first read)
        }
        let Some(rec) = to_record(&e.payload) else {
            return;
        };
        if e.epoch != self.settings.epoch || e.seq != self.seq + 1 {
            self.resync_all(&e);
        }
        self.seq = e.seq;
        let at = e.payload.received_at();
        self.commit(
            e.payload.id,
            rec,
            at,
            e.payload.reconciled,
            e.payload.missing,
        );
    }

    /// Tells every client that its `seq` values from `old` (seq, epoch) no longer hold: a
    /// `resync`, then a snapshot at the hub's current seq and epoch.
    fn start_clients_over(&mut self, reason: &str, old: (u64, String)) {
        let resync = frame::hub_frame(
            &self.settings.epoch,
            "resync",
            json!({"reason": reason, "since": old.0, "epoch": old.1}),
        );
        self.fan_out(&resync);
        let snapshot = frame::hub_frame(
            &self.settings.epoch,
            "snapshot",
            self.state.snapshot(self.seq),
        );
        self.fan_out(&snapshot);
    }

    /// The stream moved on without this hub (new epoch, or entries it can no longer read):
    /// every client starts over from a snapshot at the entry before `e`.
    fn resync_all(&mut self, e: &Entry) {
        let reason = if e.epoch != self.settings.epoch {
            "epoch differs: the cluster's stream started over (Redis lost its data)"
        } else {
            "the stream skipped events this hub could not read"
        };
        log::warn!(target: "cluster", "resync: {reason} (held {}@{}, stream at {}@{})", self.seq, self.settings.epoch, e.seq, e.epoch);
        let old = (self.seq, self.settings.epoch.clone());
        self.settings.epoch = e.epoch.clone();
        self.status.set_epoch(&e.epoch);
        self.seq = e.seq - 1;
        self.history = History::new(self.settings.history, self.settings.history_bytes);
        self.start_clients_over(reason, old);
        self.metrics
            .resumes
            .with_label_values(&["resync"])
            .inc_by(self.clients.len() as u64);
    }
}
