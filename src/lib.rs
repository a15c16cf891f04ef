//! # coindcx-hub
//!
//! Bridges a CoinDCX futures account's private Socket.IO stream to any number of browser
//! WebSockets, with exact decimals, a snapshot on connect and gap-free resume. The exchange
//! connection exists only while someone watches.
//!
//! ## How a record flows (one way, one module per step)
//!
//! | step | module | what it does |
//! |---|---|---|
//! | settings | [`config`] | every setting as a flag + environment variable (`clap`), validated at start; [`check`] is `check-config` |
//! | exchange connection | [`upstream`] | our `Transport` trait, the `rust_socketio` client ([`upstream::socketio`]), our Engine.IO 3/4 client ([`upstream::engineio`]), the choice between them ([`upstream::auto`], `COINDCX_EIO`), the [`upstream::supervisor`] (lazy connect, backoff, auth failure, reconcile) |
//! | signing | [`signing`] | HMAC-SHA256 for `join` and REST bodies |
//! | REST | [`rest`] | signed futures REST client (reconcile, example script) |
//! | typed events | [`normalize`], [`record`], [`decimal`] | `data` text → one [`record::Record`] per array element; decimals as [`decimal::ExactDecimal`] |
//! | fan-out | [`hub`] | the hub task: seq, state, history, per-client bounded queues, eviction |
//! | browser socket | [`session`] | one actix-ws connection: frames out, pings, limits |
//! | routes | [`http`] | `/`, `/ws`, `/ws/coindcx`, `/ws/status`, `/healthz`, `/readyz`, `/metrics` |
//! | who may ask | [`hosts`] | the `Host` and `Origin` values served (DNS-rebinding defence) |
//! | observability | [`metrics`] | Prometheus counters for every drop, eviction and skip |
//! | simulator | [`simulator`] | a local CoinDCX look-alike (Socket.IO + REST) used when no credentials are set |
//!
//! To add a decimal field to orders, positions or balances: its kind's table in [`record`].

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

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use tokio::sync::mpsc;

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
    pub hub: HubHandle,
    pub simulator: Option<simulator::Simulator>,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningHub {
    /// Tells clients, closes them with 1001, leaves the upstream and stops serving.
    pub async fn shutdown(self) {
        self.hub.shutdown().await;
        self.server.stop(true).await;
        let _ = self.server_task.await;
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
    }

    /// Completes when the HTTP server stops by itself.
    pub async fn wait(&mut self) {
        let _ = (&mut self.server_task).await;
    }
}

/// Starts the hub (and the simulator when no credentials are configured) on the current
/// tokio runtime.
pub async fn start(config: Config) -> std::io::Result<RunningHub> {
    // Bound first: a taken port fails before anything is spawned, and the Host check needs the
    // real port (tests bind port 0).
    let listener = listen(config.bind)?;
    let addr = listener.local_addr()?;
    let (ws_url, api_url, key, secret, sim) = match config.upstream {
        UpstreamKind::CoinDcx => (
            config.ws_url.clone(),
            config.api_url.clone(),
            config.api_key.clone(),
            config.api_secret.clone(),
            None,
        ),
        UpstreamKind::Simulator => {
            let sim = simulator::Simulator::start(simulator::SimConfig {
                bind: config.simulator.bind,
                api_key: simulator::DEMO_API_KEY.into(),
                api_secret: simulator::DEMO_API_SECRET.into(),
                rate: config.simulator.rate,
                seed: config.simulator.seed,
            })
            .await?;
            log::warn!(
                target: "hub",
                "NO CoinDCX CREDENTIALS: streaming from the built-in SIMULATOR at {} (demo key {:?}); set COINDCX_API_KEY and COINDCX_API_SECRET for the real account",
                sim.url(),
                simulator::DEMO_API_KEY
            );
            (
                sim.url(),
                sim.url(),
                simulator::DEMO_API_KEY.to_string(),
                simulator::DEMO_API_SECRET.to_string(),
                Some(sim),
            )
        }
    };
    let metrics = Arc::new(Metrics::new());
    let (records_tx, records) = upstream::record_queue(UPSTREAM_QUEUE, config.upstream_queue_bytes);
    let held_open = upstream::account::HeldOpen::default();
    let (reports_tx, reports) = mpsc::channel(64);
    let gap = Arc::new(AtomicBool::new(false));
    let rest = Arc::new(rest::RestClient::new(&api_url, &key, &secret));
    let supervisor = supervisor::spawn(
        Arc::new(AutoTransport::new(
            config.eio,
            &ws_url,
            &key,
            &secret,
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
            let instance = config
                .settings
                .instance_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let gauge = metrics.clients.clone();
            let (link, supervisor) = cluster::node::start(
                cluster::node::ClusterSettings {
                    url,
                    prefix: config.settings.redis_prefix.clone(),
                    instance,
                    account: "default".into(),
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
    let (hub, hub_task) = hub::prepare_with(
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
    );
    let state = web::Data::new(http::AppState::new(
        hub.clone(),
        Arc::new(config.clone()),
        addr,
    ));
    // The hub task runs on the first actix worker that starts, beside the sessions: with one
    // worker (the default, what measured best on 2 cores) every hub → session wake-up stays on
    // one thread. The factory also runs once on this thread while binding: not a worker.
    let hub_task = Arc::new(std::sync::Mutex::new(Some(hub_task)));
    let starter = std::thread::current().id();
    let server = HttpServer::new(move || {
        if std::thread::current().id() != starter {
            let task = hub_task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                actix_web::rt::spawn(task.run());
            }
        }
        App::new().app_data(state.clone()).configure(http::routes)
    })
    .on_connect(|conn, _| {
        // Nagle's algorithm adds tens of ms to small frames.
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
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
    log::info!(target: "hub", "listening on http://{addr} (upstream: {})", config.upstream.as_str());
    Ok(RunningHub {
        addr,
        hub,
        simulator: sim,
        server: handle,
        server_task,
    })
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
