//! The hub's publish path: one exchange event of one order record in, one frame in every
//! client's queue out (normalize, judge, sequence, serialize once, history, fan-out), in µs per
//! publish at 1, 100 and 10,000 joined clients.
//!
//! The hub runs on a current-thread runtime with the bench: an iteration hands it one raw
//! event and yields until `hub_deliveries_total` shows the frame queued for every client; the
//! client queues are drained outside the timed part. The upstream is a transport that never
//! connects, so nothing but the bench feeds the hub.
//!
//! `cargo bench --bench publish`

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use coindcx_hub::hub::{self, HubSettings, Joined, UpstreamInputs};
use coindcx_hub::metrics::Metrics;
use coindcx_hub::upstream::supervisor::{self, Wiring};
use coindcx_hub::upstream::{ConnSink, Connection, RawEvent, Transport};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// An exchange that never answers: the hub gets its records only from the bench.
struct Silent;
struct SilentConnection;

impl Transport for Silent {
    fn open(&self, _sink: ConnSink) -> Box<dyn Connection> {
        Box::new(SilentConnection)
    }
}

impl Connection for SilentConnection {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The fixture's first order, updated at `n` (each publish is news to the hub).
fn order_event(template: &Value, n: u64) -> RawEvent {
    let mut rec = template.clone();
    rec["updated_at"] = json!(1_741_605_260_101u64 + n);
    RawEvent {
        event: "df-order-update".into(),
        arg: json!({"event": "df-order-update", "data": serde_json::to_string(&[rec]).unwrap()}),
        received_at: Utc::now(),
        size: 0,
    }
}

fn publish(c: &mut Criterion) {
    let path = format!(
        "{}/../shared/coindcx/fixtures/order-update-batch.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let arg: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template: Value = serde_json::from_str::<Vec<Value>>(arg["data"].as_str().unwrap())
        .unwrap()
        .remove(0);
    let mut group = c.benchmark_group("publish");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for clients in [1usize, 100, 10_000] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (records_tx, mut joined, metrics, _handle) = rt.block_on(async {
            let metrics = Arc::new(Metrics::new());
            let (records_tx, records) = coindcx_hub::upstream::record_queue(65_536, 1 << 30);
            let (reports_tx, reports) = mpsc::channel(64);
            let gap = Arc::new(AtomicBool::new(false));
            let supervisor = supervisor::spawn(
                Arc::new(Silent),
                None,
                Wiring {
                    records: records_tx.clone(),
                    reports: reports_tx,
                    gap: gap.clone(),
                    metrics: metrics.clone(),
                },
            );
            let handle = hub::spawn(
                HubSettings {
                    epoch: "bench".into(),
                    upstream_kind: "coindcx",
                    client_queue: 1024,
                    history: 10_000,
                    history_bytes: 64 << 20,
                    linger: Duration::from_secs(60),
                },
                metrics.clone(),
                UpstreamInputs {
                    records,
                    reports,
                    gap,
                    supervisor,
                    held_open: Default::default(),
                },
            );
            let mut joined: Vec<Joined> = Vec::with_capacity(clients);
            for _ in 0..clients {
                joined.push(handle.join(None).await.expect("hub accepts"));
            }
            // The handle stays alive: the hub stops when its last handle is dropped.
            (records_tx, joined, metrics, handle)
        });
        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::from_parameter(clients),
            &clients,
            |b, &clients| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let raw = order_event(&template, n);
                        let target = metrics.deliveries.get() + clients as u64;
                        let started = Instant::now();
                        rt.block_on(async {
                            assert!(records_tx.try_send(raw).is_ok(), "queue has room");
                            while metrics.deliveries.get() < target {
                                tokio::task::yield_now().await;
                            }
                        });
                        spent += started.elapsed();
                        for j in &mut joined {
                            while j.frames.try_recv().is_ok() {}
                        }
                    }
                    spent
                })
            },
        );
        drop(joined);
        drop(records_tx);
    }
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
