//! `trainyard serve`: the API and the workers in one process, with a graceful shutdown.

use crate::api::{self, AppState};
use crate::config::ServeConfig;
use crate::hub::Hub;
use crate::queue;
use crate::worker::{plan_devices, Shared, Worker, WorkerSettings};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// A started server: its address, and a handle to stop it gracefully.
pub struct Server {
    pub addr: std::net::SocketAddr,
    pub pool: queue::Pool,
    /// The first admin this start created (no user existed), and where its token is.
    pub created_admin: Option<(String, std::path::PathBuf)>,
    hub: Arc<Hub>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Stops claiming, stops running jobs at a batch boundary (they go back to the queue),
    /// finishes in-flight requests; `wait` returns once all of that is done.
    pub fn shutdown(&self) {
        info!("shutting down: no new claims; running jobs stop at a batch boundary and go back to the queue");
        self.hub.close();
    }

    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }

    /// A guard that shuts the server down when dropped: what a test holds, so that its
    /// workers stop (at a batch boundary) when it ends, passed or failed, instead of
    /// training on inside libtorch while the process exits.
    pub fn shutdown_on_drop(&self) -> ShutdownOnDrop {
        ShutdownOnDrop(self.hub.clone())
    }
}

pub struct ShutdownOnDrop(Arc<Hub>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The workers of this process, and what they share with the API.
struct WorkerSet {
    workers: Vec<tokio::task::JoinHandle<()>>,
    devices: Vec<tch::Device>,
    hub: Arc<Hub>,
}

/// Starts the configured workers (none with `--no-workers`).
fn spawn_workers(cfg: &ServeConfig, pool: &queue::Pool, api: bool) -> WorkerSet {
    let hub = Hub::new(api);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let devices =
        if cfg.no_workers { Vec::new() } else { plan_devices(cfg.workers_per_gpu, cfg.cpu_workers.unwrap_or(cores)) };
    let cpu_workers = devices.iter().filter(|d| **d == tch::Device::Cpu).count().max(1);
    let threads = cfg.threads_per_worker.or(Some(((cores / cpu_workers).max(1)) as i32));
    let lease = Duration::from_secs_f64(cfg.lease_seconds.max(0.5));
    let settings = WorkerSettings {
        data_dir: cfg.data_dir.clone(),
        lease,
        heartbeat: (lease / 3).min(Duration::from_secs(1)),
        max_attempts: cfg.max_attempts.max(1),
        threads,
        lend_cores: cfg.threads_per_worker.is_none(),
        max_running_per_user: cfg.max_running_per_user,
        max_group: cfg.max_group.map(|g| g as usize),
        max_job_memory_mb: cfg.max_job_memory_mb,
        retry: Duration::from_secs_f64(cfg.retry_seconds.clamp(0.1, 3600.0)),
        alive_every: cfg.alive_every(),
        max_datasets_in_memory: cfg.datasets_in_memory as usize,
        workers: devices.len(),
        fetch: crate::fetch::Source {
            url: cfg.data_url.clone(),
            md5: cfg.data_md5.clone(),
            mirror: cfg.data_mirror.clone(),
        },
    };
    let shared = Shared::new(pool.clone(), settings, hub.clone());
    let host = host_name();
    let workers = devices
        .iter()
        .enumerate()
        .map(|(i, device)| {
            let name = format!("{host}/{}/{}#{i}", std::process::id(), crate::device::device_name(*device));
            tokio::spawn(Worker::new(shared.clone(), name, *device).run())
        })
        .collect();
    WorkerSet { workers, devices, hub }
}

/// What the API's handlers share.
fn app_state(cfg: &ServeConfig, pool: &queue::Pool, hub: &Arc<Hub>, workers: usize) -> AppState {
    AppState {
        pool: pool.clone(),
        hub: hub.clone(),
        limits: api::Limits {
            max_queued: cfg.max_queued_per_user,
            max_epochs: cfg.max_epochs_per_job,
            max_parameters: cfg.max_parameters,
            max_job_memory_mb: cfg.max_job_memory_mb,
            max_streams: cfg.max_streams_per_user,
        },
        limiter: Arc::new(api::auth::RateLimiter::new(cfg.rate_limit)),
        workers,
        live_window: cfg.live_window(),
        forget_workers: Duration::from_secs_f64(cfg.forget_workers_seconds.clamp(1.0, 1e9)),
        admin_token_file: cfg.admin_token_file.clone(),
        renders: api::Renders::new(api::MAX_RENDERS),
        data_dir: (workers > 0).then(|| cfg.data_dir.clone()),
        store: cfg.data_dir.clone(),
        class: api::ClassSettings { band: cfg.class_band, min_students: cfg.class_min_students as usize },
        class_cache: Default::default(),
    }
}

/// This machine's name, as its workers' names begin.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

/// Registers the lab's imported datasets found in the store, so their jobs' specs read; and
/// forgets this machine's fetches under way (a process killed while fetching left them: no
/// fetch of this machine runs before its workers start).
async fn scan_datasets(cfg: &ServeConfig, pool: &queue::Pool, workers: bool) {
    for (dir, why) in crate::dataset::scan(&cfg.data_dir) {
        warn!(dir = %dir.display(), error = %why, "a dataset's description does not read; its jobs cannot be trained");
    }
    if workers {
        if let Err(e) = queue::problems::clear_fetches(pool, &host_name()).await {
            warn!(error = %e, "forgetting this machine's unfinished fetches failed");
        }
    }
}

/// `trainyard worker`: workers only, no HTTP, on the given database, until SIGINT/SIGTERM.
/// A cancel made through an API in another process reaches them at their next heartbeat.
pub async fn run_workers(cfg: ServeConfig) -> anyhow::Result<()> {
    let pool = open_database(&cfg).await?;
    scan_datasets(&cfg, &pool, true).await;
    let w = spawn_workers(&ServeConfig { no_workers: false, ..cfg.clone() }, &pool, false);
    watch_database(&cfg, &w.hub);
    info!(
        workers = w.workers.len(),
        devices = ?w.devices.iter().map(|d| crate::device::device_name(*d)).collect::<Vec<_>>(),
        database = %queue::display_url(&cfg.database),
        "trainyard workers started"
    );
    if let Some(bind) = cfg.metrics_bind {
        // N.B.: only this process's counters; the box's state is the API's to export.
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind} (--metrics-bind, TRAINYARD_METRICS_BIND)"))?;
        info!("worker metrics on http://{}/metrics", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(api::telemetry::scrape_process))
            .with_state(app_state(&cfg, &pool, &w.hub, w.workers.len()));
        let hub = w.hub.clone();
        tokio::spawn(async move {
            api::serve::serve(listener, app, cfg.connections(), async move { hub.closed().await }).await
        });
    }
    wait_for_signal().await;
    info!("shutting down: no new claims; running jobs stop at a batch boundary and go back to the queue");
    w.hub.close();
    join_workers(w.workers).await;
    pool.close().await;
    info!("stopped");
    Ok(())
}

/// How long a shutdown waits for workers to put their jobs back. Training stops at the next
/// mini-batch (well under a second); a worker still busy past this (fetching the dataset,
/// retrying an unreachable database) is left behind: its jobs' leases expire and they go
/// back to the queue.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(8);

async fn join_workers(workers: Vec<tokio::task::JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for w in workers {
        if tokio::time::timeout_at(deadline, w).await.is_err() {
            return tracing::warn!(grace = ?SHUTDOWN_GRACE, "a worker is still busy after the grace period; stopping without it (its jobs return to the queue when their leases expire)");
        }
    }
}

/// Binds, migrates, starts the workers and the API.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Server> {
    // N.B.: bind first, so a busy port fails before anything is created.
    let listener = tokio::net::TcpListener::bind(cfg.bind)
        .await
        .with_context(|| format!("cannot listen on {} (--bind, TRAINYARD_BIND)", cfg.bind))?;
    let pool = open_database(&cfg).await?;
    scan_datasets(&cfg, &pool, !cfg.no_workers).await;
    let created_admin = bootstrap_admin(&pool, &cfg.admin_token_file).await?;
    let addr = listener.local_addr()?;
    let WorkerSet { workers, devices, hub } = spawn_workers(&cfg, &pool, true);
    watch_database(&cfg, &hub);

    let app = api::router(app_state(&cfg, &pool, &hub, workers.len()));
    info!(
        workers = workers.len(),
        devices = ?devices.iter().map(|d| crate::device::device_name(*d)).collect::<Vec<_>>(),
        database = %queue::display_url(&cfg.database),
        data_dir = %cfg.data_dir.display(),
        "trainyard listening on http://{addr}"
    );
    if cfg.keep_checkpoints_days > 0.0 {
        tokio::spawn(retention(pool.clone(), cfg.keep_checkpoints_days, hub.clone()));
    }
    let task_pool = pool.clone();
    let limits = cfg.connections();
    let closing = hub.clone();
    let task = tokio::spawn(async move {
        api::serve::serve(listener, app, limits, async move { closing.closed().await }).await?;
        join_workers(workers).await;
        task_pool.close().await;
        info!("stopped");
        Ok(())
    });
    Ok(Server { addr, pool, created_admin, hub, task })
}

/// Opens the database; a missing SQLite file that this machine created before is an error
/// unless `--init` (`storage::check_database_file`).
async fn open_database(cfg: &ServeConfig) -> anyhow::Result<queue::Pool> {
    let state = cfg.state_dir.as_deref();
    crate::storage::check_database_file(&cfg.database, cfg.init, state)?;
    let pool = queue::connect(&cfg.database).await?;
    crate::storage::remember_database_file(&cfg.database, state);
    Ok(pool)
}

/// Notices the SQLite file being deleted or replaced under this process.
fn watch_database(cfg: &ServeConfig, hub: &Arc<Hub>) {
    if let Some(file) = queue::sqlite_file(&cfg.database) {
        let closing = hub.clone();
        tokio::spawn(crate::storage::watch_database_file(file, hub.clone(), async move { closing.closed().await }));
    }
}

/// Drops the checkpoints of jobs finished more than `days` ago, at start and then hourly
/// (more often only for a keep shorter than four hours), until the server stops
/// (`--keep-checkpoints-days`).
async fn retention(pool: queue::Pool, days: f64, hub: Arc<Hub>) {
    let every = Duration::from_secs_f64((days * 86_400.0 / 4.0).clamp(1.0, 3600.0));
    loop {
        let before = queue::now_ms() - (days * 86_400_000.0) as i64;
        match queue::checkpoints::drop_checkpoints_before(&pool, before).await {
            Ok((0, _)) => {}
            Ok((n, bytes)) => {
                info!(checkpoints = n, mb = bytes as f64 / 1e6, days, "retention: dropped old checkpoints")
            }
            Err(e) => tracing::warn!(error = %e, "retention: dropping old checkpoints failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = hub.closed() => return,
        }
    }
}

/// With no users at all, makes an admin and writes its token to `path`, readable by its
/// owner only, so the README's curl session can read it; the admin's name and the path when
/// it did. The token itself is never printed or logged (a service's output ends up in logs).
async fn bootstrap_admin(
    pool: &queue::Pool,
    path: &std::path::Path,
) -> anyhow::Result<Option<(String, std::path::PathBuf)>> {
    if queue::users::count_users(pool).await? > 0 {
        return Ok(None);
    }
    let (user, token) = queue::users::add_user(pool, "admin", queue::users::Role::Admin, queue::now_ms()).await?;
    crate::token_file::write(path, &token)
        .with_context(|| format!("writing the first admin's token to {}", path.display()))?;
    info!(user = %user.name, token_file = %path.display(), "created the first admin user");
    Ok(Some((user.name, path.to_path_buf())))
}

impl Server {
    /// Runs until SIGINT or SIGTERM, then shuts down gracefully (`trainyard serve`).
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await;
        self.shutdown();
        self.wait().await
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
