//! Several accounts in one hub: a [`Registry`] of today's per-account hub (one hub task, one
//! upstream supervisor each), looked up by name. Nothing is shared between two accounts but
//! the HTTP server, so nothing of one can reach the other's clients.
//!
//! - [`file`] reads `HUB_ACCOUNTS_FILE` (names and the variables holding each key and secret)
//! - [`registry`] is the name → hub table, the combined `/ws/status`, `/readyz` and `/metrics`

pub mod file;
pub mod registry;

pub use file::{load, valid_name, AccountCreds, AccountsFileError};
pub use registry::{Registry, UnknownAccount};

/// The one account of the `COINDCX_API_KEY`/`COINDCX_API_SECRET` setup.
pub const DEFAULT_ACCOUNT: &str = "default";
