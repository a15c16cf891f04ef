//! Normalizer throughput: exchange event text → typed records with exact decimals, per kind.
//!
//! One event of 100 records (the fixture's records repeated), parsed from its `data` text as
//! the hub receives it. Criterion reports records/s (`Throughput::Elements`); the goal is
//! ≥ 1,000,000 order records/s on one core (issue 11).
//!
//! `cargo bench --bench normalize`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;

const RECORDS_PER_EVENT: usize = 100;

/// The fixture's records, repeated to `RECORDS_PER_EVENT`, as an event argument.
fn event_arg(fixture: &str) -> (String, Value) {
    let path = format!(
        "{}/../shared/coindcx/fixtures/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let arg: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let event = arg["event"]
        .as_str()
        .expect("fixture names its event")
        .to_string();
    let records: Vec<Value> =
        serde_json::from_str(arg["data"].as_str().expect("data is a string")).expect("array");
    let many: Vec<Value> = records
        .iter()
        .cycle()
        .take(RECORDS_PER_EVENT)
        .cloned()
        .collect();
    let data = serde_json::to_string(&many).expect("serializes");
    (
        event.clone(),
        serde_json::json!({"event": event, "data": data}),
    )
}

fn normalizer(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(RECORDS_PER_EVENT as u64));
    for (kind, fixture) in [
        ("order", "order-update-batch.json"),
        ("position", "position-update.json"),
        ("balance", "balance-update.json"),
    ] {
        let (event, arg) = event_arg(fixture);
        let check = coindcx_hub::normalize::normalize(&event, &arg).expect("fixture normalizes");
        assert_eq!(check.records.len(), RECORDS_PER_EVENT, "{kind}");
        assert!(check.skipped.is_empty(), "{kind}");
        group.bench_function(kind, |b| {
            b.iter(|| coindcx_hub::normalize::normalize(black_box(&event), black_box(&arg)))
        });
    }
    group.finish();
}

criterion_group!(benches, normalizer);
criterion_main!(benches);
