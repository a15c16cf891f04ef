//! The instance registry: who is up (last seen within the expiry) and how many clients each
//! has per account. One script beats and lists, so a dead instance drops out by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::{now_ms, ClusterError, Keys};

/// KEYS: zset (id → last seen ms), hash (id → info). ARGV: id, now, info, expiry ms.
const BEAT: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[4])))
for _, d in ipairs(dead) do
  redis.call('ZREM', KEYS[1], d)
  redis.call('HDEL', KEYS[2], d)
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  table.insert(out, live[i])
  table.insert(out, live[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], live[i]) or '{}')
end
return out
"#;

/// One live instance.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// Clients per account.
    pub clients: BTreeMap<String, usize>,
    /// Last heartbeat (ms since the Unix epoch).
    pub last_seen: i64,
    /// Accounts whose upstream it wants (it has clients, or lingers).
    pub wants: BTreeSet<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct Info {
    #[serde(default)]
    clients: BTreeMap<String, usize>,
    #[serde(default)]
    wants: BTreeSet<String>,
}

#[derive(Clone)]
pub struct Registry {
    keys: Keys,
    account: String,
    instance: String,
    expiry: Duration,
}

impl Registry {
    pub fn new(keys: Keys, account: &str, instance: &str, expiry: Duration) -> Self {
        Registry {
            keys,
            account: account.to_string(),
            instance: instance.to_string(),
            expiry,
        }
    }

    /// Records this instance as alive with its clients; returns every live instance, by id.
    pub async fn beat(
        &self,
        con: &mut ConnectionManager,
        clients: &BTreeMap<String, usize>,
        wants: &BTreeSet<String>,
    ) -> Result<Vec<Instance>, ClusterError> {
        let info = serde_json::to_string(&Info {
            clients: clients.clone(),
            wants: wants.clone(),
        })
        .map_err(|e| ClusterError::BadEntry(e.to_string()))?;
        let flat: Vec<String> = Script::new(BEAT)
            .key(self.keys.instances(&self.account))
            .key(self.keys.instance_info(&self.account))
            .arg(&self.instance)
            .arg(now_ms())
            .arg(info)
            .arg(self.expiry.as_millis() as u64)
            .invoke_async(con)
            .await?;
        let mut out = Vec::with_capacity(flat.len() / 3);
        for chunk in flat.chunks(3) {
            let [id, seen, info] = chunk else { continue };
            let info: Info = serde_json::from_str(info).unwrap_or_default();
            out.push(Instance {
                id: id.clone(),
                clients: info.clients,
                wants: info.wants,
                last_seen: seen.parse::<f64>().map(|s| s as i64).unwrap_or(0),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// Clients of `account` across `instances`.
pub fn clients_of(instances: &[Instance], account: &str) -> usize {
    instances
        .iter()
        .map(|i| i.clients.get(account).copied().unwrap_or(0))
        .sum()
}
