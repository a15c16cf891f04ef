//! Prometheus metrics: every drop, eviction and skip is counted here.
//!
//! One [`Metrics`] per hub (its own registry, so several hubs can live in one test process),
//! rendered as Prometheus text by `GET /metrics`, with the standard `process_*` series
//! (resident memory, CPU, open fds) on Linux.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub clients: IntGauge,
    /// 1 for the current upstream state, 0 for the others.
    pub upstream_state: IntGaugeVec,
    pub events_in: IntCounterVec,
    pub skipped: IntCounterVec,
    pub duplicates: IntCounter,
    pub deliveries: IntCounter,
    pub evictions: IntCounterVec,
    pub resumes: IntCounterVec,
    pub reconnects: IntCounter,
    pub upstream_gaps: IntCounter,
    pub reconcile_runs: IntCounterVec,
    pub reconcile_changes: IntCounter,
    pub rejected_upgrades: IntCounterVec,
    /// Requests refused before their handler ran, by route pattern and reason (`host`).
    pub rejected_requests: IntCounterVec,
    pub latency: Histogram,
    /// Known fields that could not be typed and were delivered as null, by event and field.
    pub bad_fields: IntCounterVec,
    /// Events the upstream could not queue for the hub, by the limit that bit (events/bytes).
    pub upstream_queue_full: IntCounterVec,
    /// Frames dropped from the resume history early because of `HUB_HISTORY_BYTES`.
    pub history_trimmed_by_bytes: IntCounter,
    /// Engine.IO revision of the exchange's last open packet (3 or 4; 0 before the first).
    pub upstream_eio: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once per registry");
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definition is valid");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let metrics = Metrics {
            clients: reg!(IntGauge::new("hub_clients", "Connected browser WebSockets")),
            upstream_state: reg!(IntGaugeVec::new(
                Opts::new("hub_upstream_state", "1 for the current upstream state"),
                &["state"]
            )),
            events_in: reg!(counter_vec(
                "hub_events_in_total",
                "Exchange records accepted, by type",
                &["type"]
            )),
            skipped: reg!(counter_vec(
                "hub_events_skipped_total",
                "Exchange input skipped, by event and reason",
                &["event", "reason"]
            )),
            duplicates: reg!(IntCounter::new(
                "hub_duplicates_dropped_total",
                "Repeated or stale exchange records not delivered"
            )),
            deliveries: reg!(IntCounter::new(
                "hub_deliveries_total",
                "Frames queued to clients"
            )),
            evictions: reg!(counter_vec(
                "hub_client_closes_total",
                "Client connections ended, by reason (gone: reset or EOF by the client)",
                &["reason"]
            )),
            resumes: reg!(counter_vec(
                "hub_resumes_total",
                "Resume requests, by result",
                &["result"]
            )),
            reconnects: reg!(IntCounter::new(
                "hub_upstream_reconnects_total",
                "Upstream reconnect attempts"
            )),
            upstream_gaps: reg!(IntCounter::new(
                "hub_upstream_gaps_total",
                "Records the upstream could not hand over (repaired by reconcile)"
            )),
            reconcile_runs: reg!(counter_vec(
                "hub_reconcile_runs_total",
                "REST reconcile runs, by result",
                &["result"]
            )),
            reconcile_changes: reg!(IntCounter::new(
                "hub_reconcile_changes_total",
                "Records found stale by a reconcile"
            )),
            rejected_upgrades: reg!(counter_vec(
                "hub_rejected_upgrades_total",
                "WebSocket upgrades refused, by reason",
                &["reason"]
            )),
            rejected_requests: reg!(counter_vec(
                "hub_rejected_requests_total",
                "Requests to account routes refused (the Host check), by route and reason",
                &["route", "reason"]
            )),
            latency: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "hub_exchange_to_send_seconds",
                    "From the record's updated_at to fan-out"
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ])
            )),
            bad_fields: reg!(counter_vec(
                "hub_bad_fields_total",
                "Record fields that could not be typed and were delivered as null",
                &["event", "field"]
            )),
            upstream_queue_full: reg!(counter_vec(
                "hub_upstream_queue_full_total",
                "Exchange events dropped because the hub's queue was full, by limit",
                &["limit"]
            )),
            history_trimmed_by_bytes: reg!(IntCounter::new(
                "hub_history_trimmed_by_bytes_total",
                "Frames dropped from the resume history early to stay under HUB_HISTORY_BYTES"
            )),
            upstream_eio: reg!(IntGauge::new(
                "hub_upstream_eio",
                "Engine.IO revision the exchange spoke at the last handshake (0: none yet)"
            )),
            registry,
        };
        metrics.preregister();
        metrics
    }

    /// Creates every known series at 0, so dashboards and `rate()` see them before the first event.
    fn preregister(&self) {
        for t in ["order", "position", "balance"] {
            self.events_in.with_label_values(&[t]);
        }
        for r in [
            "slow_consumer",
            "rate_limit",
            "bad_frame",
            "binary",
            "ping_timeout",
            "token_expired",
            "gone",
        ] {
            self.evictions.with_label_values(&[r]);
        }
        for r in ["ok", "resync"] {
            self.resumes.with_label_values(&[r]);
        }
        for r in ["ok", "error", "auth_failed"] {
            self.reconcile_runs.with_label_values(&[r]);
        }
        for r in [
            "token",
            "metrics_token",
            "origin",
            "capacity",
            "per_ip",
            "bad_query",
            "unknown_account",
            "account_scope",
            "per_user",
            "host",
        ] {
            self.rejected_upgrades.with_label_values(&[r]);
        }
        for l in ["events", "bytes"] {
            self.upstream_queue_full.with_label_values(&[l]);
        }
        for route in ["/", "/ws", "/ws/coindcx", "/metrics"] {
            self.rejected_requests.with_label_values(&[route, "host"]);
        }
        self.set_upstream_state("idle");
    }

    pub fn set_upstream_state(&self, state: &str) {
        for s in [
            "idle",
            "connecting",
            "joined",
            "reconnecting",
            "auth_failed",
        ] {
            self.upstream_state
                .with_label_values(&[s])
                .set(i64::from(s == state));
        }
    }

    /// This process's resident memory in MiB, as `/metrics` reports it (0 where unknown).
    pub fn resident_mib(&self) -> f64 {
        sample(&self.render(), "process_resident_memory_bytes").unwrap_or(0.0) / 1048576.0
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// One `/metrics` text for several accounts' registries: every account's series with an
/// `account` label, merged by name (Prometheus wants one family per name); `process_*` series
/// once, unlabelled. A single account renders exactly as [`Metrics::render`] does, so the
/// one-account setup keeps its series names and labels.
pub fn render_accounts(accounts: &[(&str, &Metrics)]) -> String {
    if let [(_, only)] = accounts {
        return only.render();
    }
    let mut merged: Vec<prometheus::proto::MetricFamily> = Vec::new();
    for (i, (name, metrics)) in accounts.iter().enumerate() {
        for mut family in metrics.registry.gather() {
            if family.name().starts_with("process_") {
                if i == 0 {
                    merged.push(family);
                }
                continue;
            }
            for metric in family.mut_metric().iter_mut() {
                let mut label = prometheus::proto::LabelPair::default();
                label.set_name("account".into());
                label.set_value(name.to_string());
                let mut labels = metric.take_label();
                labels.insert(0, label);
                metric.set_label(labels);
            }
            match merged.iter_mut().find(|f| f.name() == family.name()) {
                Some(existing) => {
                    for metric in family.take_metric().into_iter() {
                        existing.mut_metric().push(metric);
                    }
                }
                None => merged.push(family),
            }
        }
    }
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&merged, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The value of one series (`name` or `name{labels}`, exactly as rendered) in Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    })
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
