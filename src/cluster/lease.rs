//! The per-account leader lease: `SET NX PX` with a fencing token from `INCR`, renewed while held.
//!
//! The lease value is `<token>|<instance>`; the append script compares it verbatim, so an
//! instance whose lease expired (paused, partitioned) is refused even before anyone else took it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::{ClusterError, Keys};

const ACQUIRE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], t .. '|' .. ARGV[1], 'PX', ARGV[2])
return t
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// A held lease: what the append script checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub token: u64,
    /// `<token>|<instance>`, the exact lease value.
    pub value: String,
}

/// The lease of one account as seen by one instance.
#[derive(Clone)]
pub struct Lease {
    keys: Keys,
    account: String,
    instance: String,
    ttl: Duration,
}

impl Lease {
    pub fn new(keys: Keys, account: &str, instance: &str, ttl: Duration) -> Self {
        Lease {
            keys,
            account: account.to_string(),
            instance: instance.to_string(),
            ttl,
        }
    }

    /// Takes the lease if nobody holds it; `None` when someone does.
    pub async fn acquire(&self, con: &mut ConnectionManager) -> Result<Option<Held>, ClusterError> {
        let token: u64 = Script::new(ACQUIRE)
            .key(self.keys.lease(&self.account))
            .key(self.keys.fence(&self.account))
            .arg(&self.instance)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok((token > 0).then(|| Held {
            token,
            value: format!("{token}|{}", self.instance),
        }))
    }

    /// Extends the lease; `false` when it is no longer ours (expired, taken over).
    pub async fn renew(
        &self,
        con: &mut ConnectionManager,
        held: &Held,
    ) -> Result<bool, ClusterError> {
        let ok: i64 = Script::new(RENEW)
            .key(self.keys.lease(&self.account))
            .arg(&held.value)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok(ok == 1)
    }

    /// Gives the lease up (only if still ours), so another instance need not wait for the TTL.
    pub async fn release(
        &self,
        con: &mut ConnectionManager,
        held: &Held,
    ) -> Result<bool, ClusterError> {
        let ok: i64 = Script::new(RELEASE)
            .key(self.keys.lease(&self.account))
            .arg(&held.value)
            .invoke_async(con)
            .await?;
        Ok(ok == 1)
    }
}

/// Who leads `account`: `(token, instance)`, or `None` when nobody does.
pub async fn holder(
    con: &mut ConnectionManager,
    keys: &Keys,
    account: &str,
) -> Result<Option<(u64, String)>, ClusterError> {
    let value: Option<String> = redis::cmd("GET")
        .arg(keys.lease(account))
        .query_async(con)
        .await?;
    Ok(value.and_then(|v| parse_value(&v)))
}

fn parse_value(value: &str) -> Option<(u64, String)> {
    let (token, instance) = value.split_once('|')?;
    Some((token.parse().ok()?, instance.to_string()))
}
