//! What the upstream supervisor reports, as the hub handles it: state changes (told to every
//! client as `system` frames) and REST reconcile results (every record that differs from the
//! stream's view goes out marked `"reconciled": true`).
//!
//! A reconcile is applied only after every stream record queued before its fetch started:
//! records and reports travel on separate channels, and a balance carries no timestamp, so an
//! older queued balance applied after the REST view would silently undo it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Hub;
use crate::normalize::normalize_records;
use crate::record::{Kind, Record};
use crate::upstream::supervisor::{AccountView, Report};
use crate::upstream::UpstreamState;

/// The `system` notice for bad credentials: broadcast when it happens, and repeated to every
/// client that connects while it lasts (it needs someone to fix the configuration).
pub(super) const AUTH_FAILED: &str =
    "upstream authentication failed: check COINDCX_API_KEY / COINDCX_API_SECRET";

pub(super) fn auth_failed_data(detail: &str) -> Value {
    json!({"coindcx_connected": false, "upstream_state": "auth_failed", "reason": detail})
}

impl Hub {
    pub(super) fn on_report(&mut self, report: Report) {
        match report {
            Report::State {
                state,
                detail,
                reconnects,
            } => {
                self.status.set_upstream(state, &detail, reconnects);
                let before = self.upstream_state;
                self.upstream_state = state;
                self.upstream_detail.clone_from(&detail);
                if before == state {
                    return;
                }
                log::info!(target: "hub", "upstream {} ({detail})", state.as_str());
                match state {
                    UpstreamState::Joined if self.was_lost => {
                        self.was_lost = false;
                        self.broadcast_system(
                            "upstream re-joined",
                            json!({"coindcx_connected": true, "upstream_state": "joined"}),
                        );
                    }
                    UpstreamState::Reconnecting if before == UpstreamState::Joined => {
                        self.was_lost = true;
                        self.broadcast_system(
                            "upstream disconnected; events may be delayed until it re-joins and reconciles",
                            json!({"coindcx_connected": false, "upstream_state": "reconnecting", "reason": detail}),
                        );
                    }
                    UpstreamState::Reconnecting if before == UpstreamState::Connecting => {
                        // Never joined yet: say so once, or the feed just stays quiet.
                        self.was_lost = true;
                        self.broadcast_system(
                            "upstream unreachable; retrying with backoff",
                            json!({"coindcx_connected": false, "upstream_state": "reconnecting", "reason": detail}),
                        );
                    }
                    UpstreamState::AuthFailed => {
                        self.was_lost = true;
                        self.broadcast_system(AUTH_FAILED, auth_failed_data(&detail));
                    }
                    UpstreamState::Idle => self.was_lost = false,
                    _ => {}
                }
            }
            Report::Reconciled { view, started_at } => {
                self.drain_records_before(started_at);
                self.reconcile(view, started_at);
            }
        }
    }

    /// Applies every queued stream record received before `at` (and at most the first one
    /// after it: the queue is in arrival order, so nothing older is behind it).
    fn drain_records_before(&mut self, at: DateTime<Utc>) {
        while let Some(raw) = self.upstream.records.try_recv() {
            let later = raw.received_at > at;
            self.on_raw(raw);
            if later {
                break;
            }
        }
        self.check_gap();
    }

    /// Merges the exchange's REST view; every record that differs goes out marked reconciled.
    /// A held-open order that REST lists nowhere goes out with `"reconcile": "missing_from_rest"`.
    fn reconcile(&mut self, view: AccountView, fetched_at: DateTime<Utc>) {
        let now = Utc::now();
        // Counted as delivered, not by seq: in cluster mode the stream numbers them later.
        let before = self.delivered;
        let mut candidates: Vec<Record> = Vec::new();
        for (kind, items) in [
            (Kind::Order, view.open_orders),
            (Kind::Position, view.positions),
            (Kind::Balance, view.balances),
        ] {
            let n = normalize_records(kind, items);
            for (i, e) in n.skipped {
                self.metrics
                    .skipped
                    .with_label_values(&["rest", "bad_record"])
                    .inc();
                log::warn!(target: "hub", "skipped REST {} #{i}: {e}", kind.frame_type());
            }
            candidates.extend(n.records);
        }
        let finished = normalize_records(Kind::Order, view.recent_terminal_orders);
        let listed: HashSet<String> = candidates
            .iter()
            .chain(finished.records.iter())
            .filter(|r| r.kind == Kind::Order)
            .map(|r| r.key.clone())
            .collect();
        candidates.extend(
            finished
                .records
                .into_iter()
                .filter(|r| self.state.order_is_open(&r.key)),
        );
        for rec in candidates {
            if self.state.rest_is_news(&rec, fetched_at) {
                self.publish(rec, now, true);
            }
        }
        let found: HashSet<&str> = listed.iter().map(String::as_str).collect();
        let missing = self.state.unaccounted_open_orders(&found, fetched_at);
        if !missing.is_empty() {
            log::warn!(target: "hub", "reconcile: {} order(s) held as open are listed by REST neither as open nor as finished; delivered with \"reconcile\":\"missing_from_rest\"", missing.len());
        }
        for rec in missing {
            self.deliver(rec, now, true, true);
        }
        let changes = self.delivered - before;
        self.metrics.reconcile_changes.inc_by(changes);
        log::info!(target: "hub", "reconcile: {changes} record(s) differed from the stream");
    }
}
