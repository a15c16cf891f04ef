//! STUB (replaced by the sim branch).
use serde_json::Value;
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("exchange error {status}: {message}")]
    Exchange { status: u16, message: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("bad response: {0}")]
    Decode(String),
}
impl RestError {
    pub fn is_auth(&self) -> bool {
        matches!(self, RestError::Exchange { status: 401, .. })
    }
}
pub struct RestClient;
impl RestClient {
    pub fn new(_b: &str, _k: &str, _s: &str) -> Self {
        RestClient
    }
    pub async fn list_orders(&self, _st: &str, _side: &str, _p: u32, _s: u32) -> Result<Vec<Value>, RestError> {
        Err(RestError::Transport("stub".into()))
    }
    pub async fn open_orders(&self) -> Result<Vec<Value>, RestError> {
        Err(RestError::Transport("stub".into()))
    }
    pub async fn positions(&self) -> Result<Vec<Value>, RestError> {
        Err(RestError::Transport("stub".into()))
    }
    pub async fn wallets(&self) -> Result<Vec<Value>, RestError> {
        Err(RestError::Transport("stub".into()))
    }
}
