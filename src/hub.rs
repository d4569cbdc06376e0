//! The process's event hub. Workers publish what happens to their jobs (a claim, progress
//! on the heartbeat, an epoch, an end), the API publishes submissions and cancels; the event
//! streams, cancels (each running job's stop flag), the idle workers' wake-up and telemetry
//! read it. What happened is in the database's event log (`queue::events`), so streams see
//! other processes' changes too; the hub only tells this process's streams to look now
//! instead of at their next poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{broadcast, watch, Notify};

pub struct Hub {
    /// Ids of jobs whose state changed in this process.
    changed: broadcast::Sender<String>,
    /// Stop flags of the jobs this process trains.
    stops: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Woken when a job is queued, so an idle worker claims it at once.
    queued: Notify,
    /// Raised at shutdown: streams end.
    closing: watch::Sender<bool>,
    /// Open event streams per user.
    streams: Mutex<HashMap<i64, usize>>,
    /// What this process counts for Prometheus.
    pub telemetry: crate::telemetry::Telemetry,
    /// Whether the database takes writes, as this process last found.
    pub storage: crate::storage::Storage,
}

impl Hub {
    /// A hub whose telemetry exports the box's state too (`box_state`: the API's process).
    pub fn new(box_state: bool) -> Arc<Hub> {
        Arc::new(Hub {
            changed: broadcast::channel(1024).0,
            stops: Mutex::default(),
            queued: Notify::new(),
            closing: watch::channel(false).0,
            streams: Mutex::default(),
            telemetry: crate::telemetry::Telemetry::new(box_state),
            storage: crate::storage::Storage::default(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Says that `job` changed (its event is already in the database's log).
    pub fn publish(&self, job: &str) {
        let _ = self.changed.send(job.to_string());
    }

    /// Says that jobs were queued: one idle worker of this process claims at once.
    pub fn queued(&self, job: &str) {
        self.publish(job);
        self.queued.notify_one();
    }

    /// Says that many jobs were queued (a sweep): every idle worker looks.
    pub fn queued_many(&self) {
        self.queued.notify_waiters();
    }

    /// Waits until a job is queued in this process.
    pub async fn wait_queued(&self) {
        self.queued.notified().await
    }

    /// The ids of jobs that change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }

    /// A stop flag for `job`, which a worker of this process starts training.
    pub fn start(&self, job: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        lock(&self.stops).insert(job.to_string(), flag.clone());
        self.publish(job);
        flag
    }

    /// `job` left its worker (finished, stopped, released).
    pub fn ended(&self, job: &str) {
        lock(&self.stops).remove(job);
        self.publish(job);
    }

    /// Raises the stop flag of `job` if it trains here; true if it did.
    pub fn stop(&self, job: &str) -> bool {
        lock(&self.stops).get(job).map(|f| f.store(true, Ordering::Relaxed)).is_some()
    }

    /// The process's one shutdown signal: workers stop claiming, every stop flag is raised
    /// (the workers then put their jobs back in the queue), streams end, the HTTP servers
    /// stop accepting.
    pub fn close(&self) {
        // N.B.: closing first, so a worker that sees its flag also sees the shutdown and
        // releases its job instead of taking the stop for a cancel or a lost lease.
        self.closing.send_replace(true);
        for flag in lock(&self.stops).values() {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// True once the process is shutting down.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Becomes true at shutdown.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Resolves at shutdown.
    pub async fn closed(&self) {
        let _ = self.closing().wait_for(|c| *c).await;
    }

    /// Opens an event stream for `user` unless they have `cap` open already; the stream
    /// counts as open until the guard drops.
    pub fn open_stream(self: &Arc<Self>, user: i64, cap: usize) -> Option<StreamGuard> {
        let mut open = lock(&self.streams);
        let n = open.entry(user).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(StreamGuard { hub: self.clone(), user })
    }

    /// Event streams open now, all users together.
    pub fn open_streams(&self) -> usize {
        lock(&self.streams).values().sum()
    }
}

/// An open event stream; dropping it closes it in the count.
pub struct StreamGuard {
    hub: Arc<Hub>,
    user: i64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.hub.streams);
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}
