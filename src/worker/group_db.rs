//! A group's training thread's side of the queue: each member's epochs and checkpoint
//! written fenced on its own attempt (retried through a database blip), its end recorded as
//! soon as it leaves the group, and compatible queued jobs claimed into the group at epoch
//! boundaries.

use super::trainer::{Leases, MemberLease};
use super::{eta, Shared};
use crate::job::{EpochMetrics, JobStatus};
use crate::queue::{self, Claimed, Lease};
use crate::spec::Spec;
use crate::train::{self, CheckpointError, CheckpointStore, GroupHost, GroupOptions, Outcome, TrainError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tch::Device;
use tracing::{error, info, warn};

/// A running job's checkpoint in the database, written fenced on its attempt.
struct JobStore<'a> {
    at: &'a Thread,
    lease: Lease,
}

impl CheckpointStore for JobStore<'_> {
    fn place(&self) -> String {
        format!("the checkpoint of job {} in the database", self.lease.id)
    }

    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        let got = self.at.retrying(|| queue::checkpoints::get_checkpoint(&self.at.shared.pool, &self.lease.id));
        got.map(|c| c.map(|(_, bytes)| bytes))
            .map_err(|e| CheckpointError::Store { place: self.place(), reason: e.to_string() })
    }

    fn write(&self, epoch: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let pool = &self.at.shared.pool;
        match self.at.retrying(|| self.lease.save_checkpoint(pool, epoch.into(), bytes, queue::now_ms())) {
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
    /// A search's rule judges its epochs (it is a trial).
    judged: bool,
    /// Its search's early-stopping rule stopped it: it leaves as `stopped_early`.
    stopped_early: bool,
}

/// A training thread: what every group it trains shares.
pub(super) struct Thread {
    pub(super) shared: Arc<Shared>,
    pub(super) handle: tokio::runtime::Handle,
    /// The worker's name.
    pub(super) worker: String,
    pub(super) device: Device,
}

impl Thread {
    /// Runs a queue call from this thread, retrying database errors (a network blip, a
    /// PostgreSQL restart) for about 6 s before giving up; the pool replaces broken
    /// connections. A failure that outlasts the retries is the box's trouble (`storage`):
    /// the job stops and goes back to the queue uncharged once the database answers
    /// (`GroupDb::record_end`).
    fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, queue::QueueError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, queue::QueueError>>,
    {
        let mut delay = Duration::from_millis(100);
        for _ in 0..6 {
            match self.handle.block_on(call()) {
                Err(queue::QueueError::Db(e)) => {
                    tracing::debug!(error = %e, retry_in = ?delay, "database call failed; retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                done => return done,
            }
        }
        let last = self.handle.block_on(call());
        if let Err(e) = &last {
            self.shared.hub.storage.failed("a training thread's write", e);
        }
        last
    }
}

/// A group's training thread's view of the queue: each member's epochs and checkpoint
/// written fenced on its own attempt, its end recorded as soon as it leaves the group, and
/// compatible queued jobs claimed into the group at epoch boundaries.
pub(super) struct GroupDb<'a> {
    at: &'a Thread,
    group_id: String,
    group_key: Option<String>,
    members: HashMap<usize, MemberJob<'a>>,
    next_key: usize,
    leases: Leases,
    /// When the epoch pass under way began (about: the previous epoch's end), and how far
    /// it had come at the last report.
    pass: (std::time::Instant, usize),
    /// Whether an epoch pass has begun (joins wait for its end where workers share a key's
    /// jobs: see `join`).
    trained: bool,
}

impl<'a> GroupDb<'a> {
    pub(super) fn new(at: &'a Thread, group_id: String, group_key: Option<String>, leases: Leases) -> GroupDb<'a> {
        let (members, next_key, pass) = (HashMap::new(), 0, (std::time::Instant::now(), 0));
        GroupDb { at, group_id, group_key, members, next_key, leases, pass, trained: false }
    }

    /// The members still in the group.
    pub(super) fn member_keys(&self) -> Vec<usize> {
        self.members.keys().copied().collect()
    }

    #[tracing::instrument(skip_all, fields(group.id = %self.group_id, worker = %self.at.worker))]
    pub(super) fn run(&mut self, first: Vec<Claimed>) {
        let pool = &self.at.shared.pool;
        // A group trains on one dataset, its first member's (a stored spec that no longer
        // parses fails at admission, whatever is loaded).
        let dataset = first.iter().find_map(|c| c.spec.as_ref().ok()).map_or(crate::dataset::DEFAULT, Spec::data);
        let host = self.at.worker.split('/').next().unwrap_or_default();
        let problem = queue::problems::data_problem_key(dataset.name, host);
        let fetch_key = queue::problems::fetch_problem_key(dataset.name, host);
        let fetching = |on: bool| {
            let now = queue::now_ms();
            let home = dataset.home(&self.at.shared.settings.data_dir);
            let why = format!("{} is being fetched into {}", dataset.title, home.display());
            let _ = if on {
                self.at.handle.block_on(queue::problems::set_problem(pool, &fetch_key, &why, now))
            } else {
                self.at.handle.block_on(queue::problems::clear_problem(pool, &fetch_key))
            };
        };
        let data = match self.at.shared.datasets.get(dataset, self.at.device, &self.at.shared.settings, &fetching) {
            Ok(d) => d,
            Err(e) => {
                // N.B.: the box's fault, not the jobs': they go back to the queue uncharged,
                // and workers try again after the retry interval or once the data changes. The
                // failed load already holds the dataset (`Datasets::get`), so no worker of this
                // process claims them meanwhile.
                for c in first {
                    let _ = self.at.handle.block_on(c.lease().release(pool, queue::now_ms()));
                }
                let _ = self.at.handle.block_on(queue::problems::set_problem(pool, &problem, &e, queue::now_ms()));
                return warn!(group.id = %self.group_id, error = %e, retry_in = ?self.at.shared.settings.retry,
                    "the data cannot be loaded; the jobs wait in the queue");
            }
        };
        let _ = self.at.handle.block_on(queue::problems::clear_problem(pool, &problem));
        let _ = self.at.handle.block_on(queue::problems::clear_problem(pool, &fetch_key));
        // Before datasets had problems of their own, the data's was `data@HOST`.
        let _ = self.at.handle.block_on(queue::problems::clear_problem(pool, &format!("data@{host}")));
        let first = self.admit(first);
        let device = crate::device::device_name(self.at.device);
        let shared = self.at.shared.clone();
        let opts = GroupOptions {
            threads: shared.settings.threads,
            lent: shared.cores(self.at.device),
            max_members: first
                .first()
                .map_or(1, |(_, spec)| self.at.shared.settings.max_group_for(self.at.device, spec)),
        };
        info!(group.id = %self.group_id, worker = %self.at.worker, device = %device,
            members = ?self.members.values().map(|m| m.lease.lease.id.as_str()).collect::<Vec<_>>(), "group started");
        train::train_group(first, &data, &opts, self);
    }

    /// Registers claimed jobs as members; a job whose stored spec does not parse fails.
    fn admit(&mut self, claimed: Vec<Claimed>) -> Vec<(usize, Spec)> {
        let mut out = Vec::new();
        for c in claimed {
            let spec = match c.spec.clone() {
                Ok(spec) => spec,
                Err(e) => {
                    let lease = c.lease();
                    let _ = self.at.handle.block_on(lease.finish(
                        &self.at.shared.pool,
                        JobStatus::Failed,
                        Some(&e),
                        queue::now_ms(),
                    ));
                    continue;
                }
            };
            let stop = self.at.shared.hub.start(&c.id);
            if c.attempt == 1 {
                self.at.shared.hub.telemetry.job_claimed((c.started_at - c.created_at) as f64 / 1000.0);
            }
            if self.at.shared.shutting_down() {
                stop.store(true, Ordering::Relaxed);
            }
            let lease = MemberLease { lease: c.lease(), stop, progress: Arc::default() };
            self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(lease.clone());
            // N.B.: what cannot be read is judged all the same: the rule finds an earlier stop
            // when it next decides.
            let pool = &self.at.shared.pool;
            let judged = self.at.retrying(|| queue::search::is_judged(pool, &c.id)).unwrap_or_else(|e| {
                warn!(job.id = %c.id, error = %e, "could not read whether a search judges the job; it is judged");
                true
            });
            let store = JobStore { at: self.at, lease: c.lease() };
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
                    judged,
                    stopped_early: false,
                },
            );
            // N.B.: a trial its rule already stopped (the process died between the decision
            // and the job's end) leaves at once, before it trains a batch.
            let stopped = judged.then(|| self.at.retrying(|| queue::search::stop_decision(pool, &c.id)).ok()).flatten();
            if let Some(d) = stopped.flatten() {
                info!(job.id = %c.id, epoch = d.epoch, reason = %d.reason, "a trial stopped before; it ends so");
                self.stop_early(key);
            }
            out.push((key, spec));
        }
        out
    }

    /// Marks member `key` stopped by its search's rule: it leaves the group at this epoch's
    /// end (its checkpoint written first) and ends `stopped_early`.
    fn stop_early(&mut self, key: usize) {
        if let Some(m) = self.members.get_mut(&key) {
            m.stopped_early = true;
            m.lease.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Puts `job` back in the queue uncharged, trying until the database answers (or the
    /// process shuts down, when the lease's expiry does it); whether it was still ours.
    async fn release_when_writable(&self, job: &Lease) -> bool {
        let storage = &self.at.shared.hub.storage;
        loop {
            let released = job.release(&self.at.shared.pool, queue::now_ms()).await;
            storage.outcome("putting a stopped job back in the queue", &released);
            if let Ok(released) = released {
                return released;
            }
            if self.at.shared.shutting_down() {
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
        stopped_early: bool,
    ) -> Result<Option<JobStatus>, queue::QueueError> {
        let (pool, id, now) = (&self.at.shared.pool, job.id.as_str(), queue::now_ms());
        match *result {
            Ok(Outcome::Finished { epochs }) => {
                if job.finish(pool, JobStatus::Succeeded, None, now).await? {
                    info!(job.id = %id, epochs, group.id = %self.group_id, "job succeeded");
                    return Ok(Some(JobStatus::Succeeded));
                }
            }
            Ok(Outcome::Stopped { epochs_done }) if self.at.shared.shutting_down() => {
                if job.release(pool, now).await? {
                    info!(job.id = %id, epochs_done, "shutting down: job put back in the queue");
                }
            }
            Ok(Outcome::Stopped { epochs_done }) if stopped_early => {
                if job.finish(pool, JobStatus::StoppedEarly, None, now).await? {
                    info!(job.id = %id, epochs_done, group.id = %self.group_id, "trial stopped early; it left its group");
                    return Ok(Some(JobStatus::StoppedEarly));
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
        let lease = self.at.shared.settings.lease.as_millis() as i64;
        let ok =
            self.at.retrying(|| job.record_epoch(&self.at.shared.pool, m.epoch.into(), m, queue::now_ms(), lease))?;
        anyhow::ensure!(ok, LEASE_LOST);
        self.at.shared.hub.publish(&job.id);
        self.at.shared.hub.telemetry.epoch(m.seconds);
        // A search's rule judges the epoch just recorded; a trial it stops leaves the group
        // once its checkpoint is written. A failure to decide is logged, not charged: the
        // trial goes on, and the next rung judges it.
        let judged = self.members.get(&key).is_some_and(|m| m.judged);
        let decided =
            if judged { self.at.retrying(|| job.decide(&self.at.shared.pool, m, queue::now_ms())) } else { Ok(None) };
        let stop = match decided {
            Ok(d) => d.is_some_and(|d| !d.promoted),
            Err(e) => {
                warn!(job.id = %job.id, error = %e, "the early-stopping decision failed; the trial goes on");
                false
            }
        };
        if stop {
            self.stop_early(key);
        }
        if let Some(member) = self.members.get_mut(&key) {
            member.last = Some((m.seconds, m.train_seconds));
        }
        self.pass = (std::time::Instant::now(), 0);
        Ok(())
    }

    fn batch_done(&mut self, members: &[(usize, u32)], done: usize, total: usize) {
        self.trained = true;
        let now = std::time::Instant::now();
        if done < self.pass.1 {
            self.pass.0 = now; // a new pass began without an epoch recorded (a member left)
        }
        self.pass.1 = done;
        let elapsed = now.duration_since(self.pass.0).as_secs_f64().max(1e-3);
        let at_ms = queue::now_ms();
        for &(key, epoch) in members {
            let Some(m) = self.members.get(&key) else { continue };
            let member = eta::Member { epoch, epochs: m.epochs, batch: m.batch, last: m.last };
            let p = eta::estimate(&member, elapsed, done, total, at_ms);
            *m.lease.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
        }
    }

    fn notice(&mut self, key: usize, message: &str) {
        let Some(m) = self.members.get(&key) else { return };
        warn!(job.id = %m.lease.lease.id, notice = %message, "job notice");
        let pool = &self.at.shared.pool;
        if let Err(e) = self.at.retrying(|| m.lease.lease.set_notice(pool, message)) {
            warn!(job.id = %m.lease.lease.id, error = %e, "could not record the job's notice");
        }
    }

    fn member_done(&mut self, key: usize, result: Result<Outcome, TrainError>) {
        let Some(member) = self.members.remove(&key) else { return };
        let job = member.lease.lease;
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|l| l.lease != job);
        match self.at.retrying(|| self.record_end(&job, &result, member.stopped_early)) {
            Err(e) => {
                error!(job.id = %job.id, error = %e, "recording the job's end failed; its lease will bring it back")
            }
            Ok(Some(status)) => {
                let t = &self.at.shared.hub.telemetry;
                t.job_finished(status);
                t.job_ended((queue::now_ms() - member.started_at) as f64 / 1000.0);
            }
            Ok(None) => {}
        }
        self.at.shared.hub.ended(&job.id);
    }

    fn join(&mut self, room: usize) -> Vec<(usize, Spec)> {
        let Some(key) = self.group_key.clone() else { return Vec::new() };
        if self.at.shared.shutting_down() || room == 0 {
            return Vec::new();
        }
        // N.B.: where workers share a key's jobs, a new group took only its share and left
        // the rest for the others: it does not take them back before its first epoch ends
        // (the other worker may be free in a moment), only those still queued by then.
        if self.at.shared.settings.workers > 1 && !self.trained {
            return Vec::new();
        }
        let device = crate::device::device_name(self.at.device);
        let s = &self.at.shared.settings;
        let terms = queue::ClaimTerms {
            worker: &self.at.worker,
            device: &device,
            now: queue::now_ms(),
            lease_ms: s.lease.as_millis() as i64,
            max_running: s.max_running_per_user,
            // N.B.: the group key holds the dataset, so a joiner trains on the group's.
            datasets: None,
            // A joiner is the queue's next job anyway: the share is for new groups.
            share: 1,
            balance: None,
        };
        let claimed = match self.at.handle.block_on(queue::claim_joiners(
            &self.at.shared.pool,
            &terms,
            &key,
            &self.group_id,
            room,
        )) {
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
