//! `trainyard serve`: the API and the workers in one process, with a graceful shutdown.

use crate::api::{self, AppState};
use crate::config::ServeConfig;
use crate::queue;
use crate::worker::{plan_devices, Running, Shared, Worker, WorkerSettings};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::info;

pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let pool = queue::connect(&cfg.database).await?;
    let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
    let running = Arc::new(Running::default());
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let devices = plan_devices(cfg.workers_per_gpu, cfg.cpu_workers);
    let cpu_workers = devices.iter().filter(|d| **d == tch::Device::Cpu).count().max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cfg.threads_per_worker.or(Some(((cores / cpu_workers).max(1)) as i32));
    let lease = Duration::from_secs_f64(cfg.lease_seconds.max(0.5));
    let settings = WorkerSettings {
        data_dir: cfg.data_dir.clone(),
        artifacts: cfg.artifacts.clone(),
        lease,
        heartbeat: (lease / 3).min(Duration::from_secs(1)),
        max_attempts: cfg.max_attempts.max(1),
        threads,
        fetch: crate::fetch::Source { url: cfg.data_url.clone(), md5: cfg.data_md5.clone() },
    };
    let shared = Shared::new(pool.clone(), settings, running.clone(), wake.clone(), stop_rx);
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "local".into());
    let mut workers = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        let name = format!("{host}/{}/{}#{i}", std::process::id(), crate::device::device_name(*device));
        workers.push(tokio::spawn(Worker::new(shared.clone(), name, *device).run()));
    }

    let app = api::router(AppState { pool: pool.clone(), running: running.clone(), wake });
    info!(
        addr = %listener.local_addr()?,
        workers = workers.len(),
        devices = ?devices.iter().map(|d| crate::device::device_name(*d)).collect::<Vec<_>>(),
        "trainyard listening on http://{}",
        listener.local_addr()?
    );
    let running_for_signal = running.clone();
    let shutdown = async move {
        wait_for_signal().await;
        info!("shutting down: no new claims; running jobs stop at a batch boundary and go back to the queue");
        let _ = stop_tx.send(true);
        running_for_signal.stop_all();
    };
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    for w in workers {
        let _ = w.await;
    }
    pool.close().await;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
