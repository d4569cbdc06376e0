//! Workers: claim a group → heartbeat → train → record.
//!
//! Each worker is an async task that talks to the queue, paired with one OS thread of its
//! own that trains (never on the async runtime). A worker claims a group of compatible jobs
//! (the next job in the fair order, then jobs of its group key) and trains them as one
//! fused group; compatible jobs queued meanwhile join at epoch boundaries. The training
//! thread writes each member's epochs and checkpoint through `GroupDb`, fenced on that
//! member's attempt, and records each member's end as soon as it leaves the group. A lost
//! lease, a cancel or a shutdown raises that member's stop flag, which training checks
//! between mini-batches.

use crate::hub::Hub;
use crate::job::{EpochMetrics, JobStatus, Progress};
use crate::queue::{self, Claimed, Lease, Pool};
use crate::spec::Spec;
use crate::train::data::{Cifar10, DataError};
use crate::train::{self, CheckpointError, CheckpointStore, GroupHost, GroupOptions, Outcome, TrainError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::Device;
use tokio::sync::oneshot;
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
}

/// The data directory's files as they are now (names, sizes, modification times), to notice
/// an admin's fix without reading the data.
fn data_fingerprint(dir: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let files = crate::train::data::TRAIN_FILES.iter().chain([&crate::train::data::TEST_FILE]);
    for f in files {
        f.hash(&mut h);
        if let Ok(m) = std::fs::metadata(dir.join(f)) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    h.finish()
}

/// Group sizes chosen by measurement (BENCHMARKS.md, "Fused groups").
pub const DEFAULT_MAX_GROUP_CPU: usize = 8;
pub const DEFAULT_MAX_GROUP_GPU: usize = 32;

impl WorkerSettings {
    /// The most members of a group of `spec`'s shape on `device`: the group size setting,
    /// and no more members than fit the per-job memory budget together (members of one
    /// group share their shape, so they need the same memory each).
    pub fn max_group_for(&self, device: Device, spec: &Spec) -> usize {
        let cap =
            self.max_group.unwrap_or(if device.is_cuda() { DEFAULT_MAX_GROUP_GPU } else { DEFAULT_MAX_GROUP_CPU });
        let each = crate::train::model::Architecture::of(spec).estimate(spec.batch_size.into()).bytes().max(1);
        let fit = (self.max_job_memory_mb.max(1).saturating_mul(1 << 20) / each).max(1) as usize;
        cap.min(fit).max(1)
    }

    /// As `max_group_for`, for a claimed job's stored spec (a spec that does not parse
    /// trains alone, and fails there).
    fn max_group_of(&self, device: Device, claimed: &Claimed) -> usize {
        parse_spec(&claimed.spec).map_or(1, |spec| self.max_group_for(device, &spec))
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
    /// Stop flags, the idle workers' wake-up, and word of every change to a job.
    pub hub: Arc<Hub>,
    datasets: Mutex<HashMap<String, Arc<SharedData>>>,
    /// Set when the data could not be loaded: until when workers hold off claiming, and the
    /// data directory as it was then (a change there, an admin's fix, ends the wait at once).
    data_blocked: Mutex<Option<(std::time::Instant, u64)>>,
}

impl Shared {
    pub fn new(pool: Pool, settings: WorkerSettings, hub: Arc<Hub>) -> Arc<Shared> {
        Arc::new(Shared { pool, settings, hub, datasets: Mutex::new(HashMap::new()), data_blocked: Mutex::new(None) })
    }

    fn shutting_down(&self) -> bool {
        self.hub.is_closing()
    }

    /// True while workers should not claim: the data failed to load less than the retry
    /// interval ago and its directory has not changed since.
    fn data_blocked(&self) -> bool {
        let mut blocked = self.data_blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *blocked {
            Some((until, seen))
                if std::time::Instant::now() < until && seen == data_fingerprint(&self.settings.data_dir) =>
            {
                true
            }
            Some(_) => {
                *blocked = None;
                false
            }
            None => false,
        }
    }

    fn block_data(&self) {
        let until = std::time::Instant::now() + self.settings.retry;
        *self.data_blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((until, data_fingerprint(&self.settings.data_dir)));
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

/// A running member's lease and stop flag, which the worker's async side renews and raises.
#[derive(Clone)]
struct MemberLease {
    lease: Lease,
    stop: Arc<AtomicBool>,
    /// Where it is inside its epoch, as the training thread last said; the heartbeat takes
    /// it to the database.
    progress: Arc<Mutex<Option<Progress>>>,
}

/// The leases of the group a worker trains; its training thread adds and removes members.
type Leases = Arc<Mutex<Vec<MemberLease>>>;

/// A claimed group handed to a training thread.
struct Assignment {
    group_id: String,
    first: Vec<Claimed>,
    leases: Leases,
    done: oneshot::Sender<()>,
}

/// The OS thread that trains for one worker.
struct Trainer {
    jobs: std::sync::mpsc::Sender<Assignment>,
}

impl Trainer {
    fn spawn(shared: Arc<Shared>, device: Device, name: String) -> Trainer {
        let (tx, rx) = std::sync::mpsc::channel::<Assignment>();
        let handle = tokio::runtime::Handle::current();
        let worker = name.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let mut host = GroupDb {
                        shared: &shared,
                        handle: &handle,
                        worker: &worker,
                        device,
                        group_id: job.group_id,
                        group_key: job.first.first().and_then(|c| c.group_key.clone()),
                        members: HashMap::new(),
                        next_key: 0,
                        leases: job.leases,
                        pass: (std::time::Instant::now(), 0),
                    };
                    // N.B.: the thread must outlive any one group; a panic outside training
                    // (loading the data onto a device, say) fails its members, not the worker.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.run(job.first)));
                    if ran.is_err() {
                        for key in host.members.keys().copied().collect::<Vec<_>>() {
                            let why = "the training thread panicked; see the server log".into();
                            host.member_done(key, Err(TrainError::Torch(why)));
                        }
                    }
                    let _ = job.done.send(());
                }
            })
            .expect("spawning a training thread");
        Trainer { jobs: tx }
    }
}

/// Runs a queue call from a training thread, retrying database errors (a network blip, a
/// PostgreSQL restart) for about 6 s before giving up; the pool replaces broken connections.
/// A failure that outlasts the retries is the box's trouble (`storage`): the job stops and
/// goes back to the queue uncharged once the database answers (`GroupDb::record_end`).
fn with_retries<T, F, Fut>(
    handle: &tokio::runtime::Handle,
    storage: &crate::storage::Storage,
    mut call: F,
) -> Result<T, queue::QueueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, queue::QueueError>>,
{
    let mut delay = Duration::from_millis(100);
    for _ in 0..6 {
        match handle.block_on(call()) {
            Err(queue::QueueError::Db(e)) => {
                tracing::debug!(error = %e, retry_in = ?delay, "database call failed; retrying");
                std::thread::sleep(delay);
                delay *= 2;
            }
            done => return done,
        }
    }
    let last = handle.block_on(call());
    if let Err(e) = &last {
        storage.failed("a training thread's write", e);
    }
    last
}

/// A running job's checkpoint in the database, written fenced on its attempt.
struct JobStore<'a> {
    shared: &'a Shared,
    handle: &'a tokio::runtime::Handle,
    lease: Lease,
}

impl CheckpointStore for JobStore<'_> {
    fn place(&self) -> String {
        format!("the checkpoint of job {} in the database", self.lease.id)
    }

    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        let got = with_retries(self.handle, &self.shared.hub.storage, || {
            queue::checkpoints::get_checkpoint(&self.shared.pool, &self.lease.id)
        });
        got.map(|c| c.map(|(_, bytes)| bytes))
            .map_err(|e| CheckpointError::Store { place: self.place(), reason: e.to_string() })
    }

    fn write(&self, epoch: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let pool = &self.shared.pool;
        match with_retries(self.handle, &self.shared.hub.storage, || {
            self.lease.save_checkpoint(pool, epoch.into(), bytes, queue::now_ms())
        }) {
            Ok(true) => Ok(()),
            Ok(false) => Err(CheckpointError::Refused { place: self.place(), reason: LEASE_LOST.into() }),
            Err(e) => Err(CheckpointError::Store { place: self.place(), reason: e.to_string() }),
        }
    }
}

const LEASE_LOST: &str = "the job's lease was lost (cancelled, or claimed by another worker)";

/// One member of a running group, as its training thread knows it.
struct MemberJob<'a> {
    lease: MemberLease,
    store: JobStore<'a>,
    /// Its spec's epochs and batch size, for its progress.
    epochs: u32,
    batch: u64,
    /// Its last epoch's (whole, training) seconds, for the estimates.
    last: Option<(f64, f64)>,
    /// When it first started (ms), for the duration metric.
    started_at: i64,
}

/// A group's training thread's view of the queue: each member's epochs and checkpoint
/// written fenced on its own attempt, its end recorded as soon as it leaves the group, and
/// compatible queued jobs claimed into the group at epoch boundaries.
struct GroupDb<'a> {
    shared: &'a Shared,
    handle: &'a tokio::runtime::Handle,
    worker: &'a str,
    device: Device,
    group_id: String,
    group_key: Option<String>,
    members: HashMap<usize, MemberJob<'a>>,
    next_key: usize,
    leases: Leases,
    /// When the epoch pass under way began (about: the previous epoch's end), and how far
    /// it had come at the last report.
    pass: (std::time::Instant, usize),
}

impl<'a> GroupDb<'a> {
    fn run(&mut self, first: Vec<Claimed>) {
        let problem = format!("data@{}", self.worker.split('/').next().unwrap_or_default());
        let pool = &self.shared.pool;
        let data = match self.shared.dataset(self.device) {
            Ok(d) => d,
            Err(e) => {
                // N.B.: the box's fault, not the jobs': they go back to the queue uncharged,
                // and workers try again after the retry interval or once the data changes.
                for c in first {
                    let _ = self.handle.block_on(c.lease().release(pool));
                }
                let _ = self.handle.block_on(queue::problems::set_problem(pool, &problem, &e, queue::now_ms()));
                self.shared.block_data();
                return warn!(group.id = %self.group_id, error = %e, retry_in = ?self.shared.settings.retry,
                    "the data cannot be loaded; the jobs wait in the queue");
            }
        };
        let _ = self.handle.block_on(queue::problems::clear_problem(pool, &problem));
        let first = self.admit(first);
        let device = crate::device::device_name(self.device);
        let opts = GroupOptions {
            threads: self.shared.settings.threads,
            max_members: first.first().map_or(1, |(_, spec)| self.shared.settings.max_group_for(self.device, spec)),
        };
        info!(group.id = %self.group_id, worker = %self.worker, device = %device,
            members = ?self.members.values().map(|m| m.lease.lease.id.as_str()).collect::<Vec<_>>(), "group started");
        train::train_group(first, &data.0, &opts, self);
    }

    /// Registers claimed jobs as members; a job whose stored spec does not parse fails.
    fn admit(&mut self, claimed: Vec<Claimed>) -> Vec<(usize, Spec)> {
        let mut out = Vec::new();
        for c in claimed {
            let spec = match parse_spec(&c.spec) {
                Ok(spec) => spec,
                Err(e) => {
                    let lease = c.lease();
                    let _ = self.handle.block_on(lease.finish(
                        &self.shared.pool,
                        JobStatus::Failed,
                        Some(&e),
                        queue::now_ms(),
                    ));
                    continue;
                }
            };
            let stop = self.shared.hub.start(&c.id);
            if c.attempt == 1 {
                self.shared.hub.telemetry.job_claimed((c.started_at - c.created_at) as f64 / 1000.0);
            }
            if self.shared.shutting_down() {
                stop.store(true, Ordering::Relaxed);
            }
            let lease = MemberLease { lease: c.lease(), stop, progress: Arc::default() };
            self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(lease.clone());
            let store = JobStore { shared: self.shared, handle: self.handle, lease: c.lease() };
            let key = self.next_key;
            self.next_key += 1;
            self.members.insert(
                key,
                MemberJob {
                    lease,
                    store,
                    epochs: spec.epochs,
                    batch: spec.batch_size.into(),
                    last: None,
                    started_at: c.started_at,
                },
            );
            out.push((key, spec));
        }
        out
    }

    /// Puts `job` back in the queue uncharged, trying until the database answers (or the
    /// process shuts down, when the lease's expiry does it); whether it was still ours.
    async fn release_when_writable(&self, job: &Lease) -> bool {
        let storage = &self.shared.hub.storage;
        loop {
            let released = job.release(&self.shared.pool).await;
            storage.outcome("putting a stopped job back in the queue", &released);
            if let Ok(released) = released {
                return released;
            }
            if self.shared.shutting_down() {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Ends `job`'s attempt in the queue as `result` says; the final status this wrote, if
    /// it ended the job (a cancel is the API's to count).
    async fn record_end(
        &self,
        job: &Lease,
        result: &Result<Outcome, TrainError>,
    ) -> Result<Option<JobStatus>, queue::QueueError> {
        let (pool, id, now) = (&self.shared.pool, job.id.as_str(), queue::now_ms());
        match *result {
            Ok(Outcome::Finished { epochs }) => {
                if job.finish(pool, JobStatus::Succeeded, None, now).await? {
                    info!(job.id = %id, epochs, group.id = %self.group_id, "job succeeded");
                    return Ok(Some(JobStatus::Succeeded));
                }
            }
            Ok(Outcome::Stopped { epochs_done }) if self.shared.shutting_down() => {
                if job.release(pool).await? {
                    info!(job.id = %id, epochs_done, "shutting down: job put back in the queue");
                }
            }
            Ok(Outcome::Stopped { epochs_done }) => {
                let status = queue::get_job(pool, id).await?.map(|j| j.status);
                if status == Some(JobStatus::Cancelled) {
                    info!(job.id = %id, epochs_done, "job cancelled; it left its group");
                } else {
                    warn!(job.id = %id, epochs_done, "job stopped: its lease was lost (another worker may run it)");
                }
            }
            // N.B.: a database that stays unwritable past the retries is not the job's fault:
            // the job stops and goes back to the queue uncharged, as soon as the database
            // answers (a lost lease: the release finds nothing to release).
            Err(
                ref e @ (TrainError::Sink(_)
                | TrainError::Checkpoint(CheckpointError::Refused { .. } | CheckpointError::Store { .. })),
            ) => {
                warn!(job.id = %id, reason = %e, "job stopped: its lease is lost or the database unwritable");
                if self.release_when_writable(job).await {
                    info!(job.id = %id, "job put back in the queue (the database's trouble is not charged to it)");
                }
            }
            Err(ref e) => {
                let e = e.to_string();
                if job.finish(pool, JobStatus::Failed, Some(&e), now).await? {
                    warn!(job.id = %id, error = %e, "job failed");
                    return Ok(Some(JobStatus::Failed));
                }
            }
        }
        Ok(None)
    }
}

impl GroupHost for GroupDb<'_> {
    fn stopped(&self, key: usize) -> bool {
        self.members.get(&key).is_none_or(|m| m.lease.stop.load(Ordering::Relaxed))
    }

    fn checkpoints(&self, key: usize) -> Option<&dyn CheckpointStore> {
        self.members.get(&key).map(|m| &m.store as &dyn CheckpointStore)
    }

    fn record_epoch(&mut self, key: usize, m: &EpochMetrics) -> anyhow::Result<()> {
        let job = &self.members.get(&key).ok_or_else(|| anyhow::anyhow!("no member {key}"))?.lease.lease;
        let json = serde_json::to_string(m)?;
        let lease = self.shared.settings.lease.as_millis() as i64;
        let ok = with_retries(self.handle, &self.shared.hub.storage, || {
            job.record_epoch(&self.shared.pool, m.epoch.into(), &json, queue::now_ms(), lease)
        })?;
        anyhow::ensure!(ok, LEASE_LOST);
        self.shared.hub.publish(&job.id);
        self.shared.hub.telemetry.epoch(m.seconds);
        if let Some(member) = self.members.get_mut(&key) {
            member.last = Some((m.seconds, m.train_seconds));
        }
        self.pass = (std::time::Instant::now(), 0);
        Ok(())
    }

    fn batch_done(&mut self, members: &[(usize, u32)], done: usize, total: usize) {
        let now = std::time::Instant::now();
        if done < self.pass.1 {
            self.pass.0 = now; // a new pass began without an epoch recorded (a member left)
        }
        self.pass.1 = done;
        let elapsed = now.duration_since(self.pass.0).as_secs_f64().max(1e-3);
        let per_batch = elapsed / done.max(1) as f64;
        let at_ms = queue::now_ms();
        for &(key, epoch) in members {
            let Some(m) = self.members.get(&key) else { continue };
            // Evaluation as long as last time (its share of the epoch); nothing known yet: none.
            let eval = m.last.map_or(0.0, |(whole, train)| (whole - train).max(0.0));
            let epoch_left = per_batch * (total - done) as f64 + eval;
            let epoch_whole = m.last.map_or(per_batch * total as f64 + eval, |(whole, _)| whole);
            let later = f64::from(m.epochs.saturating_sub(epoch)) * epoch_whole;
            let p = Progress {
                epoch,
                batches_done: done as u64,
                batches_total: total as u64,
                samples_per_second: (done as u64 * m.batch) as f64 / elapsed,
                epoch_eta_ms: at_ms + (epoch_left * 1000.0) as i64,
                job_eta_ms: at_ms + ((epoch_left + later) * 1000.0) as i64,
                at_ms,
            };
            *m.lease.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
        }
    }

    fn notice(&mut self, key: usize, message: &str) {
        let Some(m) = self.members.get(&key) else { return };
        warn!(job.id = %m.lease.lease.id, notice = %message, "job notice");
        let pool = &self.shared.pool;
        if let Err(e) = with_retries(self.handle, &self.shared.hub.storage, || m.lease.lease.set_notice(pool, message))
        {
            warn!(job.id = %m.lease.lease.id, error = %e, "could not record the job's notice");
        }
    }

    fn member_done(&mut self, key: usize, result: Result<Outcome, TrainError>) {
        let Some(member) = self.members.remove(&key) else { return };
        let job = member.lease.lease;
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|l| l.lease != job);
        match with_retries(self.handle, &self.shared.hub.storage, || self.record_end(&job, &result)) {
            Err(e) => {
                error!(job.id = %job.id, error = %e, "recording the job's end failed; its lease will bring it back")
            }
            Ok(Some(status)) => {
                let t = &self.shared.hub.telemetry;
                t.job_finished(status);
                t.job_ended((queue::now_ms() - member.started_at) as f64 / 1000.0);
            }
            Ok(None) => {}
        }
        self.shared.hub.ended(&job.id);
    }

    fn join(&mut self, room: usize) -> Vec<(usize, Spec)> {
        let Some(key) = self.group_key.clone() else { return Vec::new() };
        if self.shared.shutting_down() || room == 0 {
            return Vec::new();
        }
        let device = crate::device::device_name(self.device);
        let s = &self.shared.settings;
        let terms = queue::ClaimTerms {
            worker: self.worker,
            device: &device,
            now: queue::now_ms(),
            lease_ms: s.lease.as_millis() as i64,
            max_running: s.max_running_per_user,
        };
        let claimed =
            match self.handle.block_on(queue::claim_joiners(&self.shared.pool, &terms, &key, &self.group_id, room)) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "claiming jobs to join the group failed");
                    return Vec::new();
                }
            };
        if !claimed.is_empty() {
            info!(group.id = %self.group_id, joined = ?claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), "jobs joined the group");
        }
        self.admit(claimed)
    }
}

/// A stored spec, parsed and checked again.
fn parse_spec(stored: &str) -> Result<Spec, String> {
    serde_json::from_str(stored).map_err(|e| e.to_string()).and_then(|v| Spec::parse(&v).map_err(|e| e.to_string()))
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
        let terms = queue::ClaimTerms {
            worker: &self.name,
            device: &device,
            now: queue::now_ms(),
            lease_ms: s.settings.lease.as_millis() as i64,
            max_running: s.settings.max_running_per_user,
        };
        let group_id = uuid::Uuid::new_v4().to_string();
        let cap = |head: &Claimed| s.settings.max_group_of(self.device, head);
        let claimed = queue::claim_group(&s.pool, &terms, cap, &group_id).await?;
        if claimed.is_empty() {
            return Ok(false);
        }
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
                    let leases: Vec<(Lease, Option<String>)> = members
                        .iter()
                        .map(|m| {
                            let news = m.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                            (m.lease.clone(), news.and_then(|p| serde_json::to_string(&p).ok()))
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
    pub async fn run(self) {
        let mut shutdown = self.shared.hub.closing();
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
            if last_seen.elapsed() >= self.shared.settings.alive_every {
                let _ = queue::workers::worker_seen(pool, &self.name, None, queue::now_ms()).await;
                last_seen = std::time::Instant::now();
            }
            let storage = &self.shared.hub.storage;
            let idle = if self.shared.data_blocked() || storage.is_lost().is_some() {
                true
            } else if storage.problem().is_some() {
                // N.B.: no claim while the database cannot be written (a job claimed now
                // could record nothing); a small write tells when it can again.
                storage.outcome("checking the database takes writes", &queue::problems::probe_write(pool).await);
                true
            } else {
                match self.run_once().await {
                    Ok(did) => !did,
                    Err(e) => {
                        storage.failed("claiming a job", &e);
                        true
                    }
                }
            };
            if idle {
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
