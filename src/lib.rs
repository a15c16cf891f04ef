//! # coindcx-hub
//!
//! Bridges CoinDCX futures accounts' private Socket.IO streams to any number of browser
//! WebSockets, with exact decimals, a snapshot on connect, gap-free resume and live PnL. Each
//! account's exchange connection exists only while someone watches it.
//!
//! ## How a record flows (one way, one module per step)
//!
//! | step | module | what it does |
//! |---|---|---|
//! | accounts | [`accounts`] | `HUB_ACCOUNTS_FILE` and the registry: one hub + one upstream per named account |
//! | settings | [`config`] | every setting as a flag + environment variable (`clap`), validated at start; [`check`] is `check-config` |
//! | exchange connection | [`upstream`] | our `Transport` trait, the `rust_socketio` client ([`upstream::socketio`]), our Engine.IO 3/4 client ([`upstream::engineio`]), the choice between them ([`upstream::auto`], `COINDCX_EIO`), the [`upstream::supervisor`] (lazy connect, backoff, auth failure, reconcile) |
//! | signing | [`signing`] | HMAC-SHA256 for `join` and REST bodies |
//! | REST | [`rest`] | signed futures REST client (reconcile, example script) |
//! | typed events | [`normalize`], [`record`], [`decimal`] | `data` text → one [`record::Record`] per array element; decimals as [`decimal::ExactDecimal`] |
//! | fan-out | [`hub`] | the hub task: seq, state, history, per-client bounded queues, eviction; [`hub::pnl`]: live marks and unrealized PnL (`pnl` frames) |
//! | browser socket | [`ws`], [`session`] | one connection: [`ws::Body`] writes the hub's pre-encoded batches and the pings straight into the 101 response; the session task reads client frames, holds the deadlines and limits, decides closes |
//! | routes | [`http`] | `/`, `/ws`, `/ws/coindcx`, `/ws/status`, `/healthz`, `/readyz`, `/metrics` |
//! | who may ask | [`hosts`] | the `Host` and `Origin` values served (DNS-rebinding defence) |
//! | observability | [`metrics`] | Prometheus counters for every drop, eviction and skip |
//! | simulator | [`simulator`] | a local CoinDCX look-alike (Socket.IO + REST) used when no credentials are set |
//!
//! To add a decimal field to orders, positions or balances: its kind's table in [`record`].

pub mod accounts;
pub mod check;
pub mod cluster;
pub mod config;
pub mod decimal;
pub mod hosts;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod normalize;
pub mod record;
pub mod rest;
pub mod session;
pub mod signing;
pub mod simulator;
pub mod upstream;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use tokio::sync::mpsc;

use accounts::Registry;
use config::{Config, UpstreamKind};
use hub::{HubHandle, HubSettings, UpstreamInputs};
use metrics::Metrics;
use upstream::account::RestAccount;
use upstream::auto::AutoTransport;
use upstream::supervisor::{self, Wiring};

/// Exchange events waiting for the hub; beyond this (or `HUB_UPSTREAM_QUEUE_BYTES`) the upstream
/// records a gap and reconciles.
const UPSTREAM_QUEUE: usize = 65_536;

/// A started hub: its address and handles to stop it.
pub struct RunningHub {
    pub addr: SocketAddr,
    /// The first (default) account's hub.
    pub hub: HubHandle,
    /// Every account's hub, by name.
    pub accounts: Registry,
    /// The first demo account's exchange (simulator mode only).
    pub simulator: Option<simulator::Simulator>,
    /// The other demo accounts' exchanges.
    pub more_simulators: Vec<simulator::Simulator>,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningHub {
    /// Tells clients, closes them with 1001, leaves the upstream and stops serving.
    pub async fn shutdown(self) {
        self.accounts.shutdown().await;
        self.server.stop(true).await;
        let _ = self.server_task.await;
        for sim in self.simulator.into_iter().chain(self.more_simulators) {
            sim.shutdown().await;
        }
    }

    /// Completes when the HTTP server stops by itself.
    pub async fn wait(&mut self) {
        let _ = (&mut self.server_task).await;
    }
}

/// Where one account's stream and REST come from.
struct Source {
    name: String,
    ws_url: String,
    api_url: String,
    key: String,
    secret: String,
}

/// The second demo account trades at half the first one's rate with another seed, so the two
/// differ at a glance.
const DEMO_ACCOUNTS: [&str; 2] = ["demo-a", "demo-b"];

/// Starts the hub (and the simulator when no credentials are configured) on the current
/// tokio runtime.
pub async fn start(config: Config) -> std::io::Result<RunningHub> {
    // Bound first: a taken port fails before anything is spawned, and the Host check needs the
    // real port (tests bind port 0).
    let listener = listen(config.bind)?;
    let addr = listener.local_addr()?;
    let mut sims = Vec::new();
    let sources: Vec<Source> = match config.upstream {
        UpstreamKind::CoinDcx => config
            .accounts
            .iter()
            .map(|a| Source {
                name: a.name.clone(),
                ws_url: a.ws_url.clone().unwrap_or_else(|| config.ws_url.clone()),
                api_url: a.api_url.clone().unwrap_or_else(|| config.api_url.clone()),
                key: a.key.clone(),
                secret: a.secret.clone(),
            })
            .collect(),
        UpstreamKind::Simulator => {
            let mut sources = Vec::new();
            for (i, name) in DEMO_ACCOUNTS.into_iter().enumerate() {
                // The first demo exchange listens where HUB_SIM_BIND says; the second on any
                // free port of the same address (it is only ever reached by this hub).
                let mut bind = config.simulator.bind;
                if i > 0 {
                    bind.set_port(0);
                }
                let sim = simulator::Simulator::start(simulator::SimConfig {
                    bind,
                    api_key: simulator::DEMO_API_KEY.into(),
                    api_secret: simulator::DEMO_API_SECRET.into(),
                    rate: config.simulator.rate / (i as f64 + 1.0),
                    seed: config.simulator.seed.wrapping_add(i as u64),
                })
                .await?;
                log::warn!(
                    target: "hub",
                    "NO CoinDCX CREDENTIALS: account {name:?} streams from the built-in SIMULATOR at {} (demo key {:?}); set COINDCX_API_KEY and COINDCX_API_SECRET (or HUB_ACCOUNTS_FILE) for real accounts",
                    sim.url(),
                    simulator::DEMO_API_KEY
                );
                sources.push(Source {
                    name: name.to_string(),
                    ws_url: sim.url(),
                    api_url: sim.url(),
                    key: simulator::DEMO_API_KEY.to_string(),
                    secret: simulator::DEMO_API_SECRET.to_string(),
                });
                sims.push(sim);
            }
            sources
        }
    };
    let mut tasks = Vec::new();
    let mut served = Vec::new();
    // One id per process for every account's node (cluster mode only).
    let instance = config
        .settings
        .instance_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    for source in sources {
        let (hub, task) = prepare_account(&config, &source, &instance).await?;
        tasks.push(task);
        served.push(accounts::registry::Account {
            hub,
            name: source.name,
        });
    }
    let accounts = Registry::new(served);
    let state = web::Data::new(http::AppState::new(
        accounts.clone(),
        Arc::new(config.clone()),
        addr,
    ));
    // The hub tasks (one per account) run on the first actix worker that starts, beside the
    // sessions: with one worker (the default, what measured best on 2 cores) every hub →
    // session wake-up stays on one thread. The factory also runs once on this thread while
    // binding: not a worker.
    let hub_tasks = Arc::new(std::sync::Mutex::new(Some(tasks)));
    let starter = std::thread::current().id();
    let server = HttpServer::new(move || {
        if std::thread::current().id() != starter {
            let tasks = hub_tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
            for task in tasks.into_iter().flatten() {
                actix_web::rt::spawn(task.run());
            }
        }
        App::new().app_data(state.clone()).configure(http::routes)
    })
    .on_connect(|conn, data| {
        // Nagle's algorithm adds tens of ms to small frames.
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
            data.insert(ws::ConnFd::of(tcp));
        }
    })
    // A connection that never completes its request head is dropped after this.
    .client_request_timeout(std::time::Duration::from_secs(5))
    .disable_signals()
    .shutdown_timeout(3)
    .workers(config.workers)
    .listen(listener)?;
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    log::info!(target: "hub", "listening on http://{addr} (upstream: {}, accounts: {})", config.upstream.as_str(), accounts.names().join(", "));
    let mut sims = sims.into_iter();
    Ok(RunningHub {
        addr,
        hub: accounts.first().hub.clone(),
        accounts,
        simulator: sims.next(),
        more_simulators: sims.collect(),
        server: handle,
        server_task,
    })
}

/// One account's hub (not yet running) and upstream supervisor, with their own metrics registry.
async fn prepare_account(
    config: &Config,
    source: &Source,
    instance: &str,
) -> std::io::Result<(HubHandle, hub::HubTask)> {
    let metrics = Arc::new(Metrics::new());
    let (records_tx, records) = upstream::record_queue(UPSTREAM_QUEUE, config.upstream_queue_bytes);
    let held_open = upstream::account::HeldOpen::default();
    let (reports_tx, reports) = mpsc::channel(64);
    let gap = Arc::new(AtomicBool::new(false));
    let rest = Arc::new(rest::RestClient::new(
        &source.api_url,
        &source.key,
        &source.secret,
    ));
    let supervisor = supervisor::spawn(
        Arc::new(AutoTransport::new(
            config.eio,
            &source.ws_url,
            &source.key,
            &source.secret,
            config.pnl,
            metrics.clone(),
        )),
        Some(Arc::new(RestAccount::new(rest, held_open.clone()))),
        Wiring {
            records: records_tx,
            reports: reports_tx,
            gap: gap.clone(),
            metrics: metrics.clone(),
        },
    );
    // Cluster mode: the node stands between the hub and the supervisor (only the lease
    // holder's upstream runs) and the account's Redis stream numbers and carries the events.
    let (supervisor, cluster) = match config.settings.redis_url.clone() {
        None => (supervisor, None),
        Some(url) => {
            let gauge = metrics.clients.clone();
            let (link, supervisor) = cluster::node::start(
                cluster::node::ClusterSettings {
                    url,
                    prefix: config.settings.redis_prefix.clone(),
                    instance: instance.to_string(),
                    account: source.name.clone(),
                    history: config.history,
                },
                supervisor,
                Arc::new(move || gauge.get().max(0) as usize),
            )
            .await
            .map_err(|e| std::io::Error::other(format!("HUB_REDIS_URL: {e}")))?;
            (supervisor, Some(link))
        }
    };
    Ok(hub::prepare_with(
        HubSettings {
            epoch: uuid::Uuid::new_v4().to_string(),
            upstream_kind: config.upstream.as_str(),
            client_queue: config.client_queue,
            history: config.history,
            history_bytes: config.history_bytes,
            linger: config.linger,
        },
        metrics,
        UpstreamInputs {
            records,
            reports,
            gap,
            supervisor,
            held_open,
        },
        cluster,
    ))
}

/// A listening socket like actix's own `bind` makes (address reuse, backlog 1024): connection
/// storms must not overflow the kernel's accept queue.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}
