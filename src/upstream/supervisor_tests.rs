//! The supervisor's policy against a scripted [`Transport`]: the test plays the exchange by
//! signalling through each connection's sink, and reads the backoff ceilings the supervisor
//! computes (its jitter is replaced by a recorder that waits 1 ms), so no assertion depends on
//! how fast the machine is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::mpsc;

use super::*;

/// Every connection the supervisor opens hands its sink to the test; closes are counted.
struct Scripted {
    opened: mpsc::UnboundedSender<ConnSink>,
    closes: Arc<AtomicUsize>,
}

impl Transport for Scripted {
    fn open(&self, sink: ConnSink) -> Box<dyn Connection> {
        let _ = self.opened.send(sink);
        Box::new(ScriptedConn(self.closes.clone()))
    }
}

struct ScriptedConn(Arc<AtomicUsize>);

impl Connection for ScriptedConn {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        async {}.boxed()
    }
}

struct Rig {
    sup: Supervisor,
    opened: mpsc::UnboundedReceiver<ConnSink>,
    reports: mpsc::Receiver<Report>,
    closes: Arc<AtomicUsize>,
    /// Every backoff ceiling the supervisor computed, in order.
    ceilings: Arc<Mutex<Vec<Duration>>>,
    _records: crate::upstream::RecordRx,
}

/// A failure bound for one step, not an expected time.
const STEP: Duration = Duration::from_secs(20);

fn rig(quick_drop: Duration, stable_join: Duration, join_timeout: Duration) -> Rig {
    let (open_tx, opened) = mpsc::unbounded_channel();
    let closes = Arc::new(AtomicUsize::new(0));
    let ceilings = Arc::new(Mutex::new(Vec::new()));
    let (records_tx, records) = crate::upstream::record_queue(16, 1 << 20);
    let (reports_tx, reports) = mpsc::channel(256);
    let recorder = ceilings.clone();
    let policy = Policy {
        quick_drop,
        stable_join,
        join_timeout,
        jitter: Arc::new(move |ceiling| {
            recorder.lock().unwrap().push(ceiling);
            Duration::from_millis(1)
        }),
    };
    let transport = Arc::new(Scripted {
        opened: open_tx,
        closes: closes.clone(),
    });
    let wiring = Wiring {
        records: records_tx,
        reports: reports_tx,
        gap: Arc::new(AtomicBool::new(false)),
        metrics: Arc::new(Metrics::new()),
    };
    Rig {
        sup: spawn_with(transport, None, wiring, policy),
        opened,
        reports,
        closes,
        ceilings,
        _records: records,
    }
}

impl Rig {
    async fn next_open(&mut self) -> ConnSink {
        tokio::time::timeout(STEP, self.opened.recv())
            .await
            .expect("the supervisor opened a connection")
            .expect("transport alive")
    }

    /// The retry after a failure: a new connection, reported as `reconnecting`.
    async fn reopened(&mut self) -> ConnSink {
        let sink = self.next_open().await;
        assert_eq!(
            self.expect_state(UpstreamState::Reconnecting).await,
            "connecting"
        );
        sink
    }

    async fn next_state(&mut self) -> (UpstreamState, String) {
        loop {
            let report = tokio::time::timeout(STEP, self.reports.recv())
                .await
                .expect("a report within the step bound")
                .expect("supervisor alive");
            if let Report::State { state, detail, .. } = report {
                return (state, detail);
            }
        }
    }

    async fn expect_state(&mut self, want: UpstreamState) -> String {
        let (state, detail) = self.next_state().await;
        assert_eq!(state, want, "state report ({detail})");
        detail
    }

    fn ceilings_ms(&self) -> Vec<u128> {
        self.ceilings
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Issue 10 item 7: every join dropped after a while (longer than a "quick" drop, shorter than
/// a stable join): the delays grow 0.5, 1, 2, 4, 8, 16, 30, 30 s instead of 0.5 s forever.
#[tokio::test]
async fn backoff_grows_when_every_join_is_dropped_after_a_while() {
    // Scaled: a quick drop is < 50 ms, each join holds 100 ms (the 2.5 s of the issue).
    let mut r = rig(Duration::from_millis(50), HOUR, HOUR);
    r.sup.send(Command::Start);
    let mut sink = r.next_open().await;
    r.expect_state(UpstreamState::Connecting).await;
    for n in 1..=8 {
        sink.signal(Signal::Joined);
        r.expect_state(UpstreamState::Joined).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        sink.signal(Signal::Closed("server dropped the join".into()));
        let detail = r.expect_state(UpstreamState::Reconnecting).await;
        assert_eq!(detail, "server dropped the join", "drop {n}");
        sink = r.reopened().await;
    }
    assert_eq!(
        r.ceilings_ms(),
        vec![500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
    );
    assert_eq!(r.closes.load(Ordering::SeqCst), 8, "one close per drop");
    r.sup.send(Command::Stop);
    r.expect_state(UpstreamState::Idle).await;
    assert_eq!(r.closes.load(Ordering::SeqCst), 9);
}

/// A join that held for the stable time was a working connection: its drop starts over at 0.5 s.
/// Failed attempts before it (no join at all) grow the delay as before.
#[tokio::test]
async fn a_join_that_held_resets_the_backoff() {
    let mut r = rig(Duration::from_millis(50), Duration::from_millis(300), HOUR);
    r.sup.send(Command::Start);
    let mut sink = r.next_open().await;
    r.expect_state(UpstreamState::Connecting).await;
    for _ in 0..3 {
        sink.signal(Signal::Closed("connect failed: refused".into()));
        r.expect_state(UpstreamState::Reconnecting).await;
        sink = r.reopened().await;
    }
    assert_eq!(r.ceilings_ms(), vec![500, 1000, 2000]);
    sink.signal(Signal::Joined);
    r.expect_state(UpstreamState::Joined).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    sink.signal(Signal::Closed("transport closed".into()));
    r.expect_state(UpstreamState::Reconnecting).await;
    let sink = r.reopened().await;
    assert_eq!(r.ceilings_ms(), vec![500, 1000, 2000, 500]);
    // And it grows again from there.
    sink.signal(Signal::Closed("connect failed: refused".into()));
    let _ = r.next_open().await;
    assert_eq!(r.ceilings_ms(), vec![500, 1000, 2000, 500, 1000]);
}

/// Kept: three drops right after `join` in a row mean bad credentials, without a 4th attempt.
#[tokio::test]
async fn three_quick_drops_are_auth_failed() {
    let mut r = rig(HOUR, HOUR, HOUR);
    r.sup.send(Command::Start);
    let mut sink = r.next_open().await;
    r.expect_state(UpstreamState::Connecting).await;
    for n in 1..=3 {
        sink.signal(Signal::Joined);
        r.expect_state(UpstreamState::Joined).await;
        sink.signal(Signal::Closed("server disconnected".into()));
        if n < 3 {
            r.expect_state(UpstreamState::Reconnecting).await;
            sink = r.reopened().await;
        }
    }
    let detail = r.expect_state(UpstreamState::AuthFailed).await;
    assert_eq!(
        detail,
        "server disconnected right after join 3 times in a row"
    );
    assert_eq!(r.ceilings_ms(), vec![500, 1000], "no retry after the 3rd");
    assert!(r.opened.try_recv().is_err(), "no 4th connection");
}

/// Issue 10 item 1 (policy side): an attempt that never reaches Connect is closed at its
/// deadline, reported as `reconnecting` and retried; a stop during the retry closes it and
/// goes `idle` at once.
#[tokio::test]
async fn a_stalled_attempt_is_closed_at_its_deadline_and_retried() {
    let mut r = rig(HOUR, HOUR, Duration::from_millis(200));
    r.sup.send(Command::Start);
    let _stalled = r.next_open().await;
    r.expect_state(UpstreamState::Connecting).await;
    let detail = r.expect_state(UpstreamState::Reconnecting).await;
    assert_eq!(detail, "no Socket.IO connect within 200 ms");
    assert_eq!(
        r.closes.load(Ordering::SeqCst),
        1,
        "the stalled attempt is closed"
    );
    let _retry = r.reopened().await;
    assert_eq!(r.ceilings_ms(), vec![500]);
    r.sup.send(Command::Stop);
    r.expect_state(UpstreamState::Idle).await;
    assert_eq!(
        r.closes.load(Ordering::SeqCst),
        2,
        "the retry is closed by the stop"
    );
}
