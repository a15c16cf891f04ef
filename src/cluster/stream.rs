//! The per-account event stream: cluster-wide gap-free `seq`, the stream's `epoch`, and the
//! latest-record-per-key state hash, all written by one script under the leader's fence.
//!
//! An entry's fields are `seq`, `epoch`, `by` (the lease value `<token>|<instance>` it was
//! published under) and `ev` (the [`Payload`] as JSON). Redis has no
//! persistence here: when it loses its data, seq and epoch go together, the next append
//! starts a new epoch at seq 1, and clients holding the old epoch get a `resync`.

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::Script;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{ClusterError, Keys};

/// KEYS: lease, seq, stream, epoch, state. ARGV: lease value, maxlen, candidate epoch, then
/// (state key, keep, payload) triples; keep = 0 drops the key from the state (a finished order:
/// the stream still has it for recent-order snapshots). Returns {first seq, epoch}.
const APPEND: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[4], epoch)
end
local first = 0
for i = 4, #ARGV, 3 do
  local seq = redis.call('INCR', KEYS[2])
  if first == 0 then first = seq end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'seq', seq, 'epoch', epoch, 'by', ARGV[1], 'ev', ARGV[i + 2])
  if ARGV[i + 1] == '1' then
    redis.call('HSET', KEYS[5], ARGV[i], seq .. '|' .. ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[5], ARGV[i])
  end
end
return {first, epoch}
"#;

/// KEYS: seq, stream, epoch, state. ARGV: candidate epoch. Returns {epoch, seq, last id, state}.
const LOAD: &str = r#"
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
end
local seq = redis.call('GET', KEYS[1]) or '0'
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
return {epoch, seq, last_id, redis.call('HVALS', KEYS[4])}
"#;

/// One record as the leader publishes it. `id` is the frame id every client sees.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Payload {
    pub id: Uuid,
    /// `order`, `position` or `balance`.
    pub kind: String,
    /// When the leader received it (ms since the Unix epoch).
    pub at: i64,
    #[serde(default)]
    pub reconciled: bool,
    /// A held-open order the reconcile could not account for.
    #[serde(default)]
    pub missing: bool,
    pub data: Value,
}

impl Payload {
    pub fn received_at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.at)
            .single()
            .unwrap_or_else(Utc::now)
    }
}

/// One stream entry as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The stream id (`ms-n`), where the next read continues.
    pub id: String,
    pub seq: u64,
    pub epoch: String,
    /// The lease value (`<token>|<instance>`) it was published under.
    pub by: String,
    pub payload: Payload,
}

/// The account's state at one point of the stream: everything a reader starts from.
#[derive(Debug)]
pub struct Loaded {
    pub epoch: String,
    pub seq: u64,
    /// Read on from here: every later entry is newer than this state.
    pub last_id: String,
    /// Latest record per key still current (finished orders are only in the stream), in seq order.
    pub state: Vec<(u64, Payload)>,
}

/// One account's stream.
#[derive(Clone)]
pub struct Stream {
    keys: Keys,
    account: String,
    /// Trim target (`MAXLEN ~`): about `HUB_HISTORY` entries.
    maxlen: usize,
}

impl Stream {
    pub fn new(keys: Keys, account: &str, maxlen: usize) -> Self {
        Stream {
            keys,
            account: account.to_string(),
            maxlen: maxlen.max(1),
        }
    }

    /// Appends records under the fence `lease_value`: `(state key, keep in state, payload)`. Returns the
    /// seq of the first and the stream's epoch; [`ClusterError::Fenced`] when the lease is not ours.
    pub async fn append(
        &self,
        con: &mut ConnectionManager,
        lease_value: &str,
        records: &[(String, bool, Payload)],
    ) -> Result<(u64, String), ClusterError> {
        let a = &self.account;
        let script = Script::new(APPEND);
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.lease(a))
            .key(self.keys.seq(a))
            .key(self.keys.stream(a))
            .key(self.keys.epoch(a))
            .key(self.keys.state(a))
            .arg(lease_value)
            .arg(self.maxlen)
            .arg(Uuid::new_v4().to_string());
        for (key, keep, payload) in records {
            let json = serde_json::to_string(payload)
                .map_err(|e| ClusterError::BadEntry(e.to_string()))?;
            inv.arg(key).arg(if *keep { "1" } else { "0" }).arg(json);
        }
        match inv.invoke_async::<(u64, String)>(con).await {
            Ok(r) => Ok(r),
            Err(e) if e.to_string().contains("FENCED") => Err(ClusterError::Fenced),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the current epoch, seq, last stream id and state in one atomic step.
    pub async fn load(&self, con: &mut ConnectionManager) -> Result<Loaded, ClusterError> {
        let a = &self.account;
        let (epoch, seq, last_id, raw): (String, u64, String, Vec<String>) = Script::new(LOAD)
            .key(self.keys.seq(a))
            .key(self.keys.stream(a))
            .key(self.keys.epoch(a))
            .key(self.keys.state(a))
            .arg(Uuid::new_v4().to_string())
            .invoke_async(con)
            .await?;
        let mut state = Vec::with_capacity(raw.len());
        for item in raw {
            let (seq, json) = item
                .split_once('|')
                .ok_or_else(|| ClusterError::BadEntry("state value without seq".into()))?;
            let seq: u64 = seq
                .parse()
                .map_err(|_| ClusterError::BadEntry("state seq".into()))?;
            state.push((seq, parse_payload(json)?));
        }
        state.sort_by_key(|(seq, _)| *seq);
        Ok(Loaded {
            epoch,
            seq,
            last_id,
            state,
        })
    }

    /// Entries with ids in `(after, upto]`, oldest first (the history a new reader warms up with).
    pub async fn range(
        &self,
        con: &mut ConnectionManager,
        after: &str,
        upto: &str,
    ) -> Result<Vec<Entry>, ClusterError> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.stream(&self.account))
            .arg(format!("({after}"))
            .arg(upto)
            .query_async(con)
            .await?;
        reply.ids.iter().map(parse_entry).collect()
    }

    /// Entries after `after`, waiting up to `block_ms` for the first one (0: not at all). Use a connection of
    /// its own: a blocked XREAD holds its connection.
    pub async fn read(
        &self,
        con: &mut ConnectionManager,
        after: &str,
        block_ms: u64,
        count: usize,
    ) -> Result<Vec<Entry>, ClusterError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count);
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        let reply: Option<StreamReadReply> = cmd
            .arg("STREAMS")
            .arg(self.keys.stream(&self.account))
            .arg(after)
            .query_async(con)
            .await?;
        let Some(reply) = reply else {
            return Ok(Vec::new());
        };
        reply
            .keys
            .iter()
            .flat_map(|k| k.ids.iter())
            .map(parse_entry)
            .collect()
    }
}

fn parse_payload(json: &str) -> Result<Payload, ClusterError> {
    serde_json::from_str(json).map_err(|e| ClusterError::BadEntry(e.to_string()))
}

fn parse_entry(id: &StreamId) -> Result<Entry, ClusterError> {
    let seq: String = id
        .get("seq")
        .ok_or_else(|| ClusterError::BadEntry(format!("{}: no seq", id.id)))?;
    let epoch: String = id
        .get("epoch")
        .ok_or_else(|| ClusterError::BadEntry(format!("{}: no epoch", id.id)))?;
    let by: String = id.get("by").unwrap_or_default();
    let ev: String = id
        .get("ev")
        .ok_or_else(|| ClusterError::BadEntry(format!("{}: no ev", id.id)))?;
    Ok(Entry {
        id: id.id.clone(),
        seq: seq
            .parse()
            .map_err(|_| ClusterError::BadEntry(format!("{}: seq {seq:?}", id.id)))?,
        epoch,
        by,
        payload: parse_payload(&ev)?,
    })
}
