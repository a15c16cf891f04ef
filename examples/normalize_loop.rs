//! Runs the normalize bench's order event (100 records) N times, for instruction counts that
//! do not drift with machine load:
//! `valgrind --tool=callgrind target/release/examples/normalize_loop 200` or
//! `perf stat -e instructions:u,task-clock target/release/examples/normalize_loop 20000`.

use serde_json::Value;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let path = format!(
        "{}/../shared/coindcx/fixtures/order-update-batch.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let arg: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let records: Vec<Value> = serde_json::from_str(arg["data"].as_str().unwrap()).unwrap();
    let many: Vec<Value> = records.iter().cycle().take(100).cloned().collect();
    let arg = serde_json::json!({"event": "df-order-update", "data": serde_json::to_string(&many).unwrap()});
    let start = std::time::Instant::now();
    let mut kept = 0;
    for _ in 0..n {
        let out = coindcx_hub::normalize::normalize("df-order-update", std::hint::black_box(&arg))
            .expect("normalizes");
        kept += out.records.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{kept} records in {secs:.3} s: {:.0} records/s",
        kept as f64 / secs
    );
}
