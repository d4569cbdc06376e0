//! Workers: claim a group → heartbeat → train → record.
//!
//! Each worker is an async task that talks to the queue, paired with one OS thread of its
//! own that trains (never on the async runtime). A worker claims a group of compatible jobs
//! (the next job in the fair order, then jobs of its group key) and trains them as one
//! fused group; compatible jobs queued meanwhile join at epoch boundaries. A lost lease, a
//! cancel or a shutdown raises that member's stop flag, which training checks between
//! mini-batches.
//!
//! - this file: the settings, and each worker's async loop (claim, heartbeat, idle waits);
//! - `trainer`: the training thread each worker owns;
//! - `group_db`: that thread's side of the queue (fenced writes with retries, members' ends,
//!   joins), and `eta` the arithmetic of its progress reports;
//! - `datasets`: the data every worker of a device shares, and the back-off, per dataset,
//!   while one cannot be loaded;
//! - `balance`: how many of its key's queued jobs a new CPU group takes, by the queued
//!   work's estimated seconds.

mod balance;
mod datasets;
mod eta;
mod group_db;
mod trainer;

use crate::hub::Hub;
use crate::job::Progress;
use crate::queue::{self, Claimed, Lease, Pool};
use crate::spec::Spec;
use crate::train::cores::{Cores, Idle};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tch::Device;
use tokio::sync::oneshot;
use tracing::{error, instrument, warn};
use trainer::{Assignment, Leases, Trainer};

/// How workers behave; one set for the whole pool.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub data_dir: PathBuf,
    /// A lease not renewed for this long means the worker died.
    pub lease: Duration,
    /// How often a running job's lease is renewed (and a cancel from elsewhere noticed).
    pub heartbeat: Duration,
    /// Claims of one job before it fails for good.
    pub max_attempts: i64,
    /// torch's intra-op threads per worker; `None` leaves torch's default.
    pub threads: Option<i32>,
    /// Whether idle CPU workers lend their threads to the groups still training
    /// (`train::cores`); off where the threads per worker were set by hand.
    pub lend_cores: bool,
    /// Most running jobs per user (0: no limit).
    pub max_running_per_user: i64,
    /// Where `trainyard data fetch` gets the archive when the data directory is empty.
    pub fetch: crate::fetch::Source,
    /// Most jobs a worker trains as one fused group; `None`: the device kind's default.
    pub max_group: Option<usize>,
    /// Most memory one job may need (MB, by its estimate); a group's members together stay
    /// within it too.
    pub max_job_memory_mb: i64,
    /// How long workers wait before trying data that failed to load again (sooner if the
    /// data directory changes).
    pub retry: Duration,
    /// How often an idle worker says it is alive.
    pub alive_every: Duration,
    /// Datasets each device keeps in memory at once (the least recently used goes first).
    pub max_datasets_in_memory: usize,
    /// Workers in this process: a new group takes at most its share of its key's queued
    /// jobs (`queue::ClaimTerms::share`).
    pub workers: usize,
}

/// Group sizes chosen by measurement (BENCHMARKS.md, "Fused groups").
pub const DEFAULT_MAX_GROUP_CPU: usize = 8;
pub const DEFAULT_MAX_GROUP_GPU: usize = 32;
/// From this batch size on, a convolutional network trains alone on a CPU by default.
pub const CPU_ALONE_FROM_BATCH: u32 = 128;

impl WorkerSettings {
    /// The most members of a group of `spec`'s shape on `device`: the group size setting,
    /// and no more members than fit the per-job memory budget together (members of one
    /// group share their shape, so they need the same memory each).
    pub fn max_group_for(&self, device: Device, spec: &Spec) -> usize {
        let arch = crate::network::Architecture::of(spec);
        let convolutional = arch.convolutional();
        // N.B.: on a CPU, convolutions at a large batch are arithmetic, not dispatch, and the
        // grouped kernel is slower than G plain ones (BENCHMARKS.md, "Networks as layer
        // lists": the CNN at batch 1000 fused 4 at a time trains at 0.70× of one after
        // another), so by default such jobs train alone there.
        let default = match (device.is_cuda(), convolutional && spec.batch_size >= CPU_ALONE_FROM_BATCH) {
            (true, _) => DEFAULT_MAX_GROUP_GPU,
            (false, true) => 1,
            (false, false) => DEFAULT_MAX_GROUP_CPU,
        };
        let cap = self.max_group.unwrap_or(default);
        let each = arch.estimate(spec.batch_size.into(), crate::optimizer::values_per_parameter(spec)).bytes().max(1);
        let fit = (self.max_job_memory_mb.max(1).saturating_mul(1 << 20) / each).max(1) as usize;
        cap.min(fit).max(1)
    }

    /// As `max_group_for`, for a claimed job's stored spec (a spec that does not parse
    /// trains alone, and fails there).
    fn max_group_of(&self, device: Device, claimed: &Claimed) -> usize {
        claimed.spec.as_ref().map_or(1, |spec| self.max_group_for(device, spec))
    }
}

/// What every worker of this process shares.
pub struct Shared {
    pub pool: Pool,
    pub settings: WorkerSettings,
    /// Stop flags, the idle workers' wake-up, and word of every change to a job.
    pub hub: Arc<Hub>,
    datasets: datasets::Datasets,
    /// The CPU workers' cores, lent while they are idle.
    cores: Cores,
}

impl Shared {
    pub fn new(pool: Pool, settings: WorkerSettings, hub: Arc<Hub>) -> Arc<Shared> {
        let cores = Cores::new(settings.workers);
        Arc::new(Shared { pool, settings, hub, datasets: Default::default(), cores })
    }

    /// The cores this worker's groups may borrow, and lend while it is idle: CPU workers', where
    /// lending is on.
    fn cores(&self, device: Device) -> Option<&Cores> {
        (device == Device::Cpu && self.settings.lend_cores).then_some(&self.cores)
    }

    fn shutting_down(&self) -> bool {
        self.hub.is_closing()
    }
}

/// One worker: a name, a device and its training thread.
pub struct Worker {
    shared: Arc<Shared>,
    name: String,
    device: Device,
    trainer: Trainer,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, name: String, device: Device) -> Worker {
        let trainer = Trainer::spawn(shared.clone(), device, name.clone());
        Worker { shared, name, device, trainer }
    }

    /// Claims and trains at most one group; false when the queue had nothing.
    pub async fn run_once(&self) -> Result<bool, queue::QueueError> {
        self.claim_and_train(&mut None).await
    }

    /// As `run_once`; an idle spell in `idle` ends once a group is claimed.
    #[instrument(level = "debug", skip_all, fields(worker = %self.name))]
    async fn claim_and_train(&self, idle: &mut Option<Idle<'_>>) -> Result<bool, queue::QueueError> {
        let s = &self.shared;
        // N.B.: while the database is in trouble, and for a lease after, an expired lease may
        // be a live worker's whose heartbeats could not land: nobody is charged for it then.
        if !s.hub.storage.unsettled(s.settings.lease) {
            let (requeued, failed) = queue::requeue_expired(&s.pool, queue::now_ms(), s.settings.max_attempts).await?;
            if requeued + failed > 0 {
                warn!(requeued, failed, "jobs whose worker stopped responding were taken back");
            }
        }
        let device = crate::device::device_name(self.device);
        let datasets = s.datasets.claimable(&s.settings);
        if datasets.is_empty() {
            return Ok(false);
        }
        let (workers, lent) = (s.settings.workers, s.cores(self.device).is_some());
        let balance = move |head: &Claimed, cap: usize, queued: &[queue::QueuedKey]| {
            balance::for_head(head, cap, queued, workers, lent)
        };
        let terms = queue::ClaimTerms {
            worker: &self.name,
            device: &device,
            now: queue::now_ms(),
            lease_ms: s.settings.lease.as_millis() as i64,
            max_running: s.settings.max_running_per_user,
            datasets: Some(&datasets),
            share: s.settings.workers.max(1),
            balance: (self.device == Device::Cpu).then_some(&balance),
        };
        let group_id = uuid::Uuid::new_v4().to_string();
        let cap = |head: &Claimed| s.settings.max_group_of(self.device, head);
        let claimed = queue::claim_group(&s.pool, &terms, cap, &group_id).await?;
        if claimed.is_empty() {
            return Ok(false);
        }
        idle.take();
        self.run_group(group_id, claimed).await;
        Ok(true)
    }

    /// Hands the group to the training thread and renews its members' leases until it ends.
    #[instrument(skip_all, fields(group.id = %group_id, worker = %self.name))]
    async fn run_group(&self, group_id: String, claimed: Vec<Claimed>) {
        let s = &self.shared;
        let lease = s.settings.lease.as_millis() as i64;
        let leases: Leases = Arc::default();
        let (done_tx, mut done_rx) = oneshot::channel();
        let ids: Vec<String> = claimed.iter().map(|c| c.id.clone()).collect();
        let job = Assignment { group_id, first: claimed, leases: leases.clone(), done: done_tx };
        if self.trainer.jobs.send(job).is_err() {
            return error!("training thread is gone");
        }
        let mut shutdown = s.hub.closing();
        let current = || leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        loop {
            tokio::select! {
                _ = &mut done_rx => break,
                _ = tokio::time::sleep(s.settings.heartbeat) => {
                    let members = current();
                    let job = members.first().map(|m| m.lease.id.as_str()).or(ids.first().map(String::as_str));
                    let _ = queue::workers::worker_seen(&s.pool, &self.name, job, queue::now_ms()).await;
                    // N.B.: one transaction renews the whole group's leases and carries each
                    // member's progress: no write of its own per batch.
                    let leases: Vec<(Lease, Option<Progress>)> = members
                        .iter()
                        .map(|m| {
                            let news = m.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                            (m.lease.clone(), news)
                        })
                        .collect();
                    let renewed = queue::renew_leases(&s.pool, &leases, queue::now_ms(), lease).await;
                    s.hub.storage.outcome("renewing the running jobs' leases", &renewed);
                    for ((m, held), (_, news)) in members.iter().zip(renewed.unwrap_or_default()).zip(&leases) {
                        if !held {
                            m.stop.store(true, Ordering::Relaxed);
                        } else if news.is_some() {
                            s.hub.publish(&m.lease.id);
                        }
                    }
                }
                _ = shutdown.changed() => {
                    for m in current() {
                        m.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Claims groups until shutdown; idle, it waits for a wake-up or polls now and then.
    #[instrument(skip_all, fields(worker = %self.name))]
    pub async fn run(self) {
        let mut shutdown = self.shared.hub.closing();
        let pool = &self.shared.pool;
        let device = crate::device::device_name(self.device);
        let host = self.name.split('/').next().unwrap_or("").to_string();
        if let Err(e) = queue::workers::register_worker(pool, &self.name, &host, &device, queue::now_ms()).await {
            warn!(error = %e, "registering the worker failed");
        }
        let mut last_seen = std::time::Instant::now();
        // N.B.: idle from a claim that found nothing until one that finds a group, so a
        // lent core is not taken back for each look at the queue.
        let mut lent: Option<Idle<'_>> = None;
        loop {
            if self.shared.shutting_down() {
                break;
            }
            // Idle, a worker says it is alive every few seconds (running, every heartbeat).
            if last_seen.elapsed() >= self.shared.settings.alive_every {
                let _ = queue::workers::worker_seen(pool, &self.name, None, queue::now_ms()).await;
                last_seen = std::time::Instant::now();
            }
            let storage = &self.shared.hub.storage;
            let idle = if storage.is_lost().is_some() {
                true
            } else if storage.problem().is_some() {
                // N.B.: no claim while the database cannot be written (a job claimed now
                // could record nothing); a small write tells when it can again.
                storage.outcome("checking the database takes writes", &queue::problems::probe_write(pool).await);
                true
            } else {
                match self.claim_and_train(&mut lent).await {
                    Ok(did) => !did,
                    Err(e) => {
                        storage.failed("claiming a job", &e);
                        true
                    }
                }
            };
            if idle {
                if lent.is_none() {
                    lent = self.shared.cores(self.device).map(Cores::idle);
                }
                tokio::select! {
                    _ = self.shared.hub.wait_queued() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            } else {
                let _ = queue::workers::worker_seen(pool, &self.name, None, queue::now_ms()).await;
                last_seen = std::time::Instant::now();
            }
        }
        let _ = queue::workers::worker_stopped(pool, &self.name, queue::now_ms()).await;
    }
}

/// The devices to run workers on: `per_gpu` workers on each CUDA device, or `cpu` CPU
/// workers where there is none.
pub fn plan_devices(per_gpu: usize, cpu: usize) -> Vec<Device> {
    let gpus = tch::Cuda::device_count() as usize;
    if gpus > 0 {
        (0..gpus).flat_map(|i| std::iter::repeat_n(Device::Cuda(i), per_gpu)).collect()
    } else {
        vec![Device::Cpu; cpu]
    }
}
