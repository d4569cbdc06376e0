//! Workers: claim → heartbeat → train → record.
//!
//! Each worker is an async task that talks to the queue, paired with one OS thread of its
//! own that trains (never on the async runtime). The training thread writes each epoch and
//! its checkpoint through `JobDb`, fenced on the job's attempt; a lost lease, a cancel or a
//! shutdown raises the job's stop flag, which training checks between mini-batches.

use crate::queue::{self, Claimed, Pool};
use crate::spec::Spec;
use crate::train::data::{Cifar10, DataError};
use crate::train::metrics::{EpochMetrics, MetricSink};
use crate::train::{self, CheckpointError, CheckpointStore, Outcome, TrainError, TrainOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::Device;
use tokio::sync::{oneshot, watch, Notify};
use tracing::{error, info, instrument, warn};

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
    /// Most running jobs per user (0: no limit).
    pub max_running_per_user: i64,
    /// Where `trainyard data fetch` gets the archive when the data directory is empty.
    pub fetch: crate::fetch::Source,
}

/// The stop flags of the jobs running in this process, so a cancel takes effect at once.
#[derive(Default)]
pub struct Running {
    flags: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl Running {
    /// Raises the stop flag of `id` if it runs here; true if it did.
    pub fn stop(&self, id: &str) -> bool {
        match self.flags.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Raises every flag (a shutdown); the workers then put their jobs back in the queue.
    pub fn stop_all(&self) {
        for flag in self.flags.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn insert(&self, id: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.flags.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_string(), flag.clone());
        flag
    }

    fn remove(&self, id: &str) {
        self.flags.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}

/// A dataset loaded on one device, read by every worker of that device.
///
/// N.B.: `tch::Tensor` is not `Sync`, but the tensors here are only ever read (index_select,
/// narrow), which libtorch allows from several threads at once; nothing writes them after
/// loading.
struct SharedData(Cifar10);
unsafe impl Sync for SharedData {}

/// What every worker of this process shares.
pub struct Shared {
    pub pool: Pool,
    pub settings: WorkerSettings,
    pub running: Arc<Running>,
    /// Woken when a job is queued, so an idle worker claims it at once.
    pub wake: Arc<Notify>,
    datasets: Mutex<HashMap<String, Arc<SharedData>>>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        pool: Pool,
        settings: WorkerSettings,
        running: Arc<Running>,
        wake: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Shared> {
        Arc::new(Shared { pool, settings, running, wake, datasets: Mutex::new(HashMap::new()), shutdown })
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The device's dataset, loaded on first need (fetching it into an empty data directory).
    fn dataset(&self, device: Device) -> Result<Arc<SharedData>, String> {
        let key = crate::device::device_name(device);
        let mut sets = self.datasets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = sets.get(&key) {
            return Ok(d.clone());
        }
        let dir = &self.settings.data_dir;
        let loaded = match Cifar10::load(dir, device) {
            Err(DataError::Missing { .. }) if crate::fetch::is_empty_dir(dir) => {
                info!(data.dir = %dir.display(), "data directory is empty; fetching CIFAR-10");
                crate::fetch::fetch(&self.settings.fetch, dir).map_err(|e| {
                    format!(
                        "CIFAR-10 is not in {} and fetching it failed ({e:#}); {}",
                        dir.display(),
                        crate::train::data::WHERE_TO_GET
                    )
                })?;
                Cifar10::load(dir, device)
            }
            other => other,
        };
        let data = Arc::new(SharedData(loaded.map_err(|e| e.to_string())?));
        sets.insert(key, data.clone());
        Ok(data)
    }
}

/// Why a job's training ended early.
enum Failure {
    /// Another worker (or a cancel) owns the job now, or the database stayed unwritable:
    /// write nothing more (an expired lease brings the job back).
    LeaseLost(String),
    /// The job failed for its own reasons: it fails with this message.
    Job(String),
}

/// One job handed to a training thread.
struct Assignment {
    claimed: Claimed,
    spec: Spec,
    stop: Arc<AtomicBool>,
    done: oneshot::Sender<Result<Outcome, Failure>>,
}

/// The OS thread that trains for one worker.
struct Trainer {
    jobs: std::sync::mpsc::Sender<Assignment>,
}

impl Trainer {
    fn spawn(shared: Arc<Shared>, device: Device, name: String) -> Trainer {
        let (tx, rx) = std::sync::mpsc::channel::<Assignment>();
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // N.B.: the thread must outlive any one job; a panic outside training
                    // (loading the data onto a device, say) fails that job, not the worker.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        train_one(&shared, &handle, device, &job)
                    }))
                    .unwrap_or_else(|_| Err(Failure::Job("the training thread panicked; see the server log".into())));
                    let _ = job.done.send(result);
                }
            })
            .expect("spawning a training thread");
        Trainer { jobs: tx }
    }
}

/// Runs a queue call from a training thread, retrying database errors (a network blip, a
/// PostgreSQL restart) for about 6 s before giving up; the pool replaces broken connections.
/// A job whose writes still fail stops, and its expired lease sends it back to the queue.
fn with_retries<T, F, Fut>(handle: &tokio::runtime::Handle, mut call: F) -> Result<T, queue::QueueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, queue::QueueError>>,
{
    let mut delay = Duration::from_millis(100);
    for _ in 0..6 {
        match handle.block_on(call()) {
            Err(queue::QueueError::Db(e)) => {
                warn!(error = %e, retry_in = ?delay, "database call failed; retrying");
                std::thread::sleep(delay);
                delay *= 2;
            }
            done => return done,
        }
    }
    handle.block_on(call())
}

/// A running job's writes to the database from its training thread: its epochs (as the
/// metric sink) and its checkpoint (as the checkpoint store), each fenced on the attempt and
/// refused once the lease is lost. `Copy`, so one value can be both at once.
#[derive(Clone, Copy)]
struct JobDb<'a> {
    shared: &'a Shared,
    handle: &'a tokio::runtime::Handle,
    job: &'a Claimed,
}

impl MetricSink for JobDb<'_> {
    fn record_epoch(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        let json = serde_json::to_string(m)?;
        let lease = self.shared.settings.lease.as_millis() as i64;
        let ok = with_retries(self.handle, || {
            queue::record_epoch(
                &self.shared.pool,
                &self.job.id,
                self.job.attempt,
                m.epoch.into(),
                &json,
                queue::now_ms(),
                lease,
            )
        })?;
        anyhow::ensure!(ok, LEASE_LOST);
        Ok(())
    }
}

impl CheckpointStore for JobDb<'_> {
    fn place(&self) -> String {
        format!("the checkpoint of job {} in the database", self.job.id)
    }

    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        let got = with_retries(self.handle, || queue::checkpoints::get_checkpoint(&self.shared.pool, &self.job.id));
        got.map(|c| c.map(|(_, bytes)| bytes))
            .map_err(|e| CheckpointError::Store { place: self.place(), reason: e.to_string() })
    }

    fn write(&self, epoch: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let pool = &self.shared.pool;
        let (id, attempt) = (&self.job.id, self.job.attempt);
        match with_retries(self.handle, || {
            queue::checkpoints::save_checkpoint(pool, id, attempt, epoch.into(), bytes, queue::now_ms())
        }) {
            Ok(true) => Ok(()),
            Ok(false) => Err(CheckpointError::Refused { place: self.place(), reason: LEASE_LOST.into() }),
            Err(e) => Err(CheckpointError::Store { place: self.place(), reason: e.to_string() }),
        }
    }
}

const LEASE_LOST: &str = "the job's lease was lost (cancelled, or claimed by another worker)";

fn train_one(
    shared: &Shared,
    handle: &tokio::runtime::Handle,
    device: Device,
    job: &Assignment,
) -> Result<Outcome, Failure> {
    let data = shared.dataset(device).map_err(Failure::Job)?;
    let store = JobDb { shared, handle, job: &job.claimed };
    let opts = TrainOptions { checkpoints: Some(&store), threads: shared.settings.threads };
    let mut sink = store;
    train::train(&job.spec, &data.0, &opts, &mut sink, &job.stop).map_err(|e| match e {
        TrainError::Sink(e) => Failure::LeaseLost(format!("{e:#}")),
        // N.B.: a database that stays unwritable past the retries is not the job's fault: the
        // job stops, and its expired lease brings it back to the queue.
        TrainError::Checkpoint(e @ (CheckpointError::Refused { .. } | CheckpointError::Store { .. })) => {
            Failure::LeaseLost(e.to_string())
        }
        other => Failure::Job(other.to_string()),
    })
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

    /// Claims and runs at most one job; false when the queue had none.
    pub async fn run_once(&self) -> Result<bool, queue::QueueError> {
        let s = &self.shared;
        let lease = s.settings.lease.as_millis() as i64;
        let (requeued, failed) = queue::requeue_expired(&s.pool, queue::now_ms(), s.settings.max_attempts).await?;
        if requeued + failed > 0 {
            warn!(requeued, failed, "jobs whose worker stopped responding were taken back");
        }
        let device = crate::device::device_name(self.device);
        let Some(claimed) = queue::claim_next_job(
            &s.pool,
            &self.name,
            &device,
            queue::now_ms(),
            lease,
            s.settings.max_running_per_user,
        )
        .await?
        else {
            return Ok(false);
        };
        self.run_job(claimed).await?;
        Ok(true)
    }

    #[instrument(skip_all, fields(job.id = %claimed.id, job.attempt = claimed.attempt, worker = %self.name))]
    async fn run_job(&self, claimed: Claimed) -> Result<(), queue::QueueError> {
        let s = &self.shared;
        let lease = s.settings.lease.as_millis() as i64;
        let spec = match serde_json::from_str(&claimed.spec)
            .map_err(|e| e.to_string())
            .and_then(|v| Spec::parse(&v).map_err(|e| e.to_string()))
        {
            Ok(spec) => spec,
            Err(e) => {
                queue::finish_job(&s.pool, &claimed.id, claimed.attempt, "failed", Some(&e), queue::now_ms()).await?;
                return Ok(());
            }
        };
        info!("training started");
        let stop = s.running.insert(&claimed.id);
        let (done_tx, mut done_rx) = oneshot::channel();
        let job = Assignment { claimed: claimed.clone(), spec, stop: stop.clone(), done: done_tx };
        if self.trainer.jobs.send(job).is_err() {
            s.running.remove(&claimed.id);
            error!("training thread is gone");
            return Ok(());
        }
        if self.shared.shutting_down() {
            stop.store(true, Ordering::Relaxed);
        }
        let mut shutdown = s.shutdown.clone();
        let result = loop {
            tokio::select! {
                r = &mut done_rx => break r.unwrap_or_else(|_| Err(Failure::Job("training thread ended unexpectedly".into()))),
                _ = tokio::time::sleep(s.settings.heartbeat) => {
                    let _ = queue::workers::worker_seen(&s.pool, &self.name, Some(&claimed.id), queue::now_ms()).await;
                    match queue::heartbeat(&s.pool, &claimed.id, claimed.attempt, queue::now_ms(), lease).await {
                        Ok(true) => {}
                        Ok(false) => stop.store(true, Ordering::Relaxed),
                        Err(e) => warn!(error = %e, "heartbeat failed"),
                    }
                }
                _ = shutdown.changed() => stop.store(true, Ordering::Relaxed),
            }
        };
        s.running.remove(&claimed.id);
        let now = queue::now_ms();
        match result {
            Ok(Outcome::Finished { epochs }) => {
                if queue::finish_job(&s.pool, &claimed.id, claimed.attempt, "succeeded", None, now).await? {
                    info!(epochs, "job succeeded");
                }
            }
            Ok(Outcome::Stopped { epochs_done }) if self.shared.shutting_down() => {
                if queue::release_job(&s.pool, &claimed.id, claimed.attempt).await? {
                    info!(epochs_done, "shutting down: job put back in the queue");
                }
            }
            Ok(Outcome::Stopped { epochs_done }) => info!(epochs_done, "job stopped (cancelled or lease lost)"),
            Err(Failure::LeaseLost(e)) => {
                warn!(reason = %e, "job stopped: its lease is lost or the database unwritable")
            }
            Err(Failure::Job(e)) => {
                if queue::finish_job(&s.pool, &claimed.id, claimed.attempt, "failed", Some(&e), now).await? {
                    warn!(error = %e, "job failed");
                }
            }
        }
        Ok(())
    }

    /// Claims jobs until shutdown; idle, it waits for a wake-up or polls now and then.
    pub async fn run(self) {
        let mut shutdown = self.shared.shutdown.clone();
        let pool = &self.shared.pool;
        let device = crate::device::device_name(self.device);
        let host = self.name.split('/').next().unwrap_or("").to_string();
        if let Err(e) = queue::workers::register_worker(pool, &self.name, &host, &device, queue::now_ms()).await {
            warn!(error = %e, "registering the worker failed");
        }
        let mut last_seen = std::time::Instant::now();
        loop {
            if self.shared.shutting_down() {
                break;
            }
            // Idle, a worker says it is alive every few seconds (running, every heartbeat).
            if last_seen.elapsed() >= Duration::from_secs(5) {
                let _ = queue::workers::worker_seen(pool, &self.name, None, queue::now_ms()).await;
                last_seen = std::time::Instant::now();
            }
            let idle = match self.run_once().await {
                Ok(did) => !did,
                Err(e) => {
                    error!(error = %e, worker = %self.name, "queue error");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
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
