//! Background market activity at a configured rate of exchange records per second.
//!
//! The rate counts records (each becomes one hub event), not Socket.IO frames. At low rates
//! one exchange step is published per tick, and about one tick in five merges a few steps so
//! that several records share one event, as CoinDCX sometimes does. At high rates
//! (benchmarks: thousands per second) every event carries records from several steps, so the
//! rate is reachable without one Socket.IO frame per record. Seeded: `seed + 1` drives the
//! batching choices, the exchange itself uses `seed`.

use super::account::Emission;
use super::{now_ms, Shared};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Above this rate the activity ticks every [`FAST_TICK`] and batches.
const FAST_RATE: f64 = 200.0;
const FAST_TICK: Duration = Duration::from_millis(5);
/// Steps merged into one batch at high rates.
const STEPS_PER_BATCH: usize = 4;

/// Merge the emissions of several steps: one event per event name, records in order.
pub fn merge(emissions: Vec<Emission>) -> Vec<Emission> {
    let mut out: Vec<Emission> = Vec::new();
    for e in emissions {
        match out.iter_mut().find(|o| o.event == e.event) {
            Some(o) => o.records.extend(e.records),
            None => out.push(e),
        }
    }
    out
}

pub async fn run(shared: Arc<Shared>) {
    let rate = shared.cfg.rate;
    let mut rng = StdRng::seed_from_u64(shared.cfg.seed.wrapping_add(1));
    let fast = rate > FAST_RATE;
    let period = if fast {
        FAST_TICK
    } else {
        Duration::from_secs_f64(1.0 / rate)
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    // Records still owed; a step may overshoot, which the next ticks pay back.
    let mut budget = 1.0_f64;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        budget = (budget + rate * now.duration_since(last).as_secs_f64()).min(rate.max(1.0));
        last = now;
        let _ = shared.with_exchange(|ex, publish| {
            while budget > 0.0 {
                let batch = if fast {
                    STEPS_PER_BATCH
                } else if rng.gen_ratio(1, 5) {
                    rng.gen_range(2..=3)
                } else {
                    1
                };
                let mut emissions = Vec::new();
                for _ in 0..batch {
                    emissions.extend(ex.step(now_ms()));
                }
                let events = if batch > 1 {
                    merge(emissions)
                } else {
                    emissions
                };
                budget -= events.iter().map(|e| e.records.len()).sum::<usize>() as f64;
                publish(events);
                if !fast {
                    break;
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_record_order_per_event() {
        let e = |event, n| Emission {
            event,
            records: vec![json!(n)],
        };
        let merged = merge(vec![
            e("df-order-update", 1),
            e("balance-update", 2),
            e("df-order-update", 3),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].records, vec![json!(1), json!(3)]);
        assert_eq!(merged[1].records, vec![json!(2)]);
    }
}
