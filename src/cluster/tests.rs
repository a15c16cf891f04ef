//! The primitives against a real Redis (`HUB_TEST_REDIS_URL`, default the local one), each test
//! under its own key prefix, deleted afterwards.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::json;
use uuid::Uuid;

use super::lease::{holder, Lease};
use super::registry::{clients_of, Registry};
use super::stream::{Payload, Stream};
use super::*;

fn url() -> String {
    std::env::var("HUB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A unique prefix whose keys are deleted when the test ends (also on panic).
struct Prefix(Keys);

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(url()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0.prefix()))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

async fn setup() -> (Prefix, ConnectionManager) {
    let prefix = Prefix(Keys::new(&format!("hubtest-{}", Uuid::new_v4())));
    let con = connect(&url(), COMMAND_TIMEOUT)
        .await
        .expect("a Redis at HUB_TEST_REDIS_URL or 127.0.0.1:6379");
    (prefix, con)
}

fn payload(kind: &str, id: &str, n: u64) -> (String, bool, Payload) {
    (
        format!("{kind}:{id}"),
        true,
        Payload {
            id: Uuid::new_v4(),
            kind: kind.into(),
            at: 1_700_000_000_000 + n as i64,
            reconciled: false,
            missing: false,
            data: json!({"id": id, "price": "2102.94", "n": n}),
        },
    )
}

#[tokio::test]
async fn lease_is_exclusive_and_tokens_increase() {
    let (p, mut con) = setup().await;
    let ttl = Duration::from_secs(10);
    let a = Lease::new(p.0.clone(), "default", "a", ttl);
    let b = Lease::new(p.0.clone(), "default", "b", ttl);
    let held_a = a.acquire(&mut con).await.unwrap().expect("free lease");
    assert_eq!(held_a.token, 1);
    assert_eq!(held_a.value, "1|a");
    assert_eq!(b.acquire(&mut con).await.unwrap(), None);
    assert!(a.renew(&mut con, &held_a).await.unwrap());
    assert_eq!(
        holder(&mut con, &p.0, "default").await.unwrap(),
        Some((1, "a".into()))
    );
    assert!(a.release(&mut con, &held_a).await.unwrap());
    assert_eq!(holder(&mut con, &p.0, "default").await.unwrap(), None);
    let held_b = b.acquire(&mut con).await.unwrap().expect("released lease");
    assert_eq!(held_b.token, 2);
    // The old holder can neither renew nor release what is now b's.
    assert!(!a.renew(&mut con, &held_a).await.unwrap());
    assert!(!a.release(&mut con, &held_a).await.unwrap());
    assert_eq!(
        holder(&mut con, &p.0, "default").await.unwrap(),
        Some((2, "b".into()))
    );
}

#[tokio::test]
async fn expired_leader_is_fenced_and_seq_continues_without_gap() {
    let (p, mut con) = setup().await;
    let stream = Stream::new(p.0.clone(), "default", 1000);
    let a = Lease::new(p.0.clone(), "default", "a", Duration::from_millis(200));
    let b = Lease::new(p.0.clone(), "default", "b", Duration::from_secs(10));
    let held_a = a.acquire(&mut con).await.unwrap().unwrap();
    let (first, epoch) = stream
        .append(
            &mut con,
            &held_a.value,
            &[payload("order", "o1", 1), payload("order", "o2", 2)],
        )
        .await
        .unwrap();
    assert_eq!(first, 1);
    // a "pauses" past its lease: the script refuses it even before anyone else takes over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while holder(&mut con, &p.0, "default").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = stream
        .append(&mut con, &held_a.value, &[payload("order", "o3", 3)])
        .await;
    assert!(matches!(refused, Err(ClusterError::Fenced)), "{refused:?}");
    let held_b = b.acquire(&mut con).await.unwrap().unwrap();
    assert_eq!(held_b.token, 2);
    let refused = stream
        .append(&mut con, &held_a.value, &[payload("order", "o3", 3)])
        .await;
    assert!(matches!(refused, Err(ClusterError::Fenced)), "{refused:?}");
    let (first, epoch_b) = stream
        .append(&mut con, &held_b.value, &[payload("order", "o4", 4)])
        .await
        .unwrap();
    assert_eq!((first, epoch_b.as_str()), (3, epoch.as_str()));
    let all = stream.read(&mut con, "0-0", 0, 100).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let ns: Vec<u64> = all
        .iter()
        .map(|e| e.payload.data["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ns,
        vec![1, 2, 4],
        "the fenced append never reached the stream"
    );
}

#[tokio::test]
async fn load_gives_latest_state_per_key_and_the_point_to_read_on_from() {
    let (p, mut con) = setup().await;
    let stream = Stream::new(p.0.clone(), "default", 1000);
    let lease = Lease::new(p.0.clone(), "default", "a", Duration::from_secs(10));
    let held = lease.acquire(&mut con).await.unwrap().unwrap();
    // Before any append: an epoch exists already and seq is 0.
    let empty = stream.load(&mut con).await.unwrap();
    assert_eq!(
        (empty.seq, empty.last_id.as_str(), empty.state.len()),
        (0, "0-0", 0)
    );
    let batch = vec![
        payload("order", "o1", 1),
        payload("position", "p1", 2),
        payload("order", "o1", 3),
    ];
    let (first, epoch) = stream.append(&mut con, &held.value, &batch).await.unwrap();
    assert_eq!(first, 1);
    assert_eq!(
        epoch, empty.epoch,
        "the epoch a reader saw first is the stream's"
    );
    let loaded = stream.load(&mut con).await.unwrap();
    assert_eq!(loaded.seq, 3);
    let state: Vec<(u64, u64)> = loaded
        .state
        .iter()
        .map(|(s, p)| (*s, p.data["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(state, vec![(2, 2), (3, 3)], "latest per key, in seq order");
    assert_eq!(loaded.state[1].1.data["price"], json!("2102.94"));
    // Nothing after the loaded point yet; the next append is exactly the next entry.
    assert!(stream
        .read(&mut con, &loaded.last_id, 0, 10)
        .await
        .unwrap()
        .is_empty());
    stream
        .append(&mut con, &held.value, &[payload("balance", "USDT", 4)])
        .await
        .unwrap();
    let next = stream
        .read(&mut con, &loaded.last_id, 1000, 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].seq, next[0].payload.kind.as_str()), (4, "balance"));
    let history = stream
        .range(&mut con, "0-0", &loaded.last_id)
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[tokio::test]
async fn a_record_not_kept_leaves_the_state_but_stays_in_the_stream() {
    let (p, mut con) = setup().await;
    let stream = Stream::new(p.0.clone(), "default", 1000);
    let lease = Lease::new(p.0.clone(), "default", "a", Duration::from_secs(10));
    let held = lease.acquire(&mut con).await.unwrap().unwrap();
    let (key, _, finished) = payload("order", "o1", 2);
    let batch = vec![
        payload("order", "o1", 1),
        (key, false, finished),
        payload("order", "o2", 3),
    ];
    stream.append(&mut con, &held.value, &batch).await.unwrap();
    let loaded = stream.load(&mut con).await.unwrap();
    let state: Vec<u64> = loaded.state.iter().map(|(s, _)| *s).collect();
    assert_eq!(state, vec![3], "o1 finished: only o2 is current");
    let all = stream
        .range(&mut con, "0-0", &loaded.last_id)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[tokio::test]
async fn stream_is_trimmed_near_the_history_size() {
    let (p, mut con) = setup().await;
    let stream = Stream::new(p.0.clone(), "default", 100);
    let lease = Lease::new(p.0.clone(), "default", "a", Duration::from_secs(10));
    let held = lease.acquire(&mut con).await.unwrap().unwrap();
    for chunk in 0..10u64 {
        let batch: Vec<_> = (0..100)
            .map(|i| payload("order", &format!("o{i}"), chunk * 100 + i))
            .collect();
        stream.append(&mut con, &held.value, &batch).await.unwrap();
    }
    let len: usize = redis::cmd("XLEN")
        .arg(p.0.stream("default"))
        .query_async(&mut con)
        .await
        .unwrap();
    // `MAXLEN ~` trims whole stream nodes (100 entries each by default): near, never below.
    assert!((100..=200).contains(&len), "XLEN {len}");
    let loaded = stream.load(&mut con).await.unwrap();
    assert_eq!((loaded.seq, loaded.state.len()), (1000, 100));
}

#[tokio::test]
async fn a_lost_redis_dataset_starts_a_new_epoch_at_seq_one() {
    let (p, mut con) = setup().await;
    let stream = Stream::new(p.0.clone(), "default", 100);
    let lease = Lease::new(p.0.clone(), "default", "a", Duration::from_secs(10));
    let held = lease.acquire(&mut con).await.unwrap().unwrap();
    let (_, epoch1) = stream
        .append(&mut con, &held.value, &[payload("order", "o", 1)])
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", p.0.prefix()))
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut con)
        .await
        .unwrap();
    let held = lease.acquire(&mut con).await.unwrap().unwrap();
    let (first, epoch2) = stream
        .append(&mut con, &held.value, &[payload("order", "o", 2)])
        .await
        .unwrap();
    assert_eq!(first, 1);
    assert_ne!(epoch1, epoch2);
}

#[tokio::test]
async fn registry_lists_live_instances_and_drops_silent_ones() {
    let (p, mut con) = setup().await;
    let a = Registry::new(p.0.clone(), "default", "a", Duration::from_millis(300));
    let b = Registry::new(p.0.clone(), "default", "b", Duration::from_millis(300));
    let mut clients = BTreeMap::new();
    clients.insert("default".to_string(), 3);
    a.beat(&mut con, &clients, &Default::default())
        .await
        .unwrap();
    clients.insert("default".to_string(), 4);
    let live = b
        .beat(&mut con, &clients, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        live.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(clients_of(&live, "default"), 7);
    assert_eq!(clients_of(&live, "other"), 0);
    // a stops beating: after the expiry b no longer sees it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let live = b
            .beat(&mut con, &clients, &Default::default())
            .await
            .unwrap();
        if live.len() == 1 {
            assert_eq!(live[0].id, "b");
            assert_eq!(clients_of(&live, "default"), 4);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
