//! Cluster mode (SPEC §10): several hub instances on one Redis act as one.
//!
//! Redis holds, per account: a lease with a fencing token ([`lease`]), a stream of sequenced
//! events with its epoch and a latest-record-per-key state hash ([`stream`]); and, cluster-wide,
//! the instance registry ([`registry`]). [`node`] ties them to a hub: the leader's records are
//! appended under its fence, and every instance (the leader too) reads the stream and fans out.
//!
//! Everything that must be atomic (fence check + seq + append, acquire + token) is one Lua
//! script, so a paused old leader that wakes up cannot publish between a check and a write.

pub mod lease;
pub mod node;
pub mod registry;
pub mod stream;

#[cfg(test)]
mod tests;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The append script refused: this instance's lease is gone or another instance holds it.
    #[error("fenced: the lease is no longer ours")]
    Fenced,
    #[error("bad stream entry: {0}")]
    BadEntry(String),
}

/// The Redis key names of one cluster (one prefix) and account.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn account(&self, account: &str, what: &str) -> String {
        format!("{}:acct:{account}:{what}", self.prefix)
    }

    /// `<token>|<instance>` of the current leader, with a TTL.
    pub fn lease(&self, account: &str) -> String {
        self.account(account, "lease")
    }

    /// INCR counter the fencing tokens come from.
    pub fn fence(&self, account: &str) -> String {
        self.account(account, "fence")
    }

    /// The last assigned `seq`.
    pub fn seq(&self, account: &str) -> String {
        self.account(account, "seq")
    }

    pub fn stream(&self, account: &str) -> String {
        self.account(account, "stream")
    }

    /// The stream's epoch: set once, gone with the rest when Redis loses its data.
    pub fn epoch(&self, account: &str) -> String {
        self.account(account, "epoch")
    }

    /// Latest record per `kind:key` (`<seq>|<payload>`), for snapshots older than the stream.
    pub fn state(&self, account: &str) -> String {
        self.account(account, "state")
    }

    /// The instances serving `account` (one registry per account: each account's node beats
    /// on its own, so two accounts of one instance never overwrite each other).
    pub fn instances(&self, account: &str) -> String {
        self.account(account, "instances")
    }

    pub fn instance_info(&self, account: &str) -> String {
        self.account(account, "instance_info")
    }
}

/// Response deadline for ordinary commands: a Redis that stops answering is "down" within it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A reconnecting connection that connects on first use (so an instance starts while Redis is
/// down). `response` must exceed any `BLOCK` used on it.
pub fn connect_lazy(url: &str, response: Duration) -> Result<ConnectionManager, ClusterError> {
    let client = redis::Client::open(url)?;
    Ok(ConnectionManager::new_lazy_with_config(
        client,
        manager_config(response),
    )?)
}

fn manager_config(response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// Opens a reconnecting connection. `response` must exceed any `BLOCK` used on it.
pub async fn connect(url: &str, response: Duration) -> Result<ConnectionManager, ClusterError> {
    let client = redis::Client::open(url)?;
    Ok(client
        .get_connection_manager_with_config(manager_config(response))
        .await?)
}

/// Milliseconds since the Unix epoch, for registry scores.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
