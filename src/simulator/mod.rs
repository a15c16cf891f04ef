//! STUB (replaced by the sim branch).
use std::net::SocketAddr;
pub const DEMO_API_KEY: &str = "demo-key";
pub const DEMO_API_SECRET: &str = "demo-secret";
pub struct SimConfig {
    pub bind: SocketAddr,
    pub api_key: String,
    pub api_secret: String,
    pub rate: f64,
    pub seed: u64,
}
pub struct Simulator;
impl Simulator {
    pub async fn start(_cfg: SimConfig) -> std::io::Result<Simulator> {
        Err(std::io::Error::other("stub"))
    }
    pub fn url(&self) -> String {
        String::new()
    }
    pub async fn shutdown(self) {}
}
