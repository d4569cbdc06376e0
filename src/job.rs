//! One shape for a job's state, shared by the queue, the JSON API, the event streams, the
//! plots and reports, and Prometheus: its status, the row each finished epoch adds, and
//! where a running job is inside its epoch.

use serde::{Deserialize, Serialize};

/// A job's status, as stored (lower-case text) and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A search's early-stopping rule ended it at a rung: its epochs, metrics and checkpoint
    /// are kept, and its owner may resume it with more epochs.
    StoppedEarly,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::StoppedEarly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::StoppedEarly => "stopped_early",
        }
    }

    /// Succeeded, failed, cancelled or stopped early: nothing will change any more (unless its
    /// owner resumes a trial that stopped early).
    pub fn is_finished(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// The names, for error messages.
    pub fn names() -> String {
        JobStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobStatus::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| format!("no job status {s:?}"))
    }
}

impl TryFrom<String> for JobStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// One epoch's numbers. Losses are `None` (JSON `null`, never NaN) when they were not finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: u32,
    /// Mean per-sample loss over the epoch's training mini-batches, in train mode.
    pub train_loss: Option<f64>,
    /// Fraction 0..1 of training samples classified right while training.
    pub train_acc: f64,
    /// Mean per-sample loss over the whole test set, in eval mode.
    pub test_loss: Option<f64>,
    pub test_acc: f64,
    /// The whole epoch, evaluation included.
    pub seconds: f64,
    /// The training part of the epoch.
    pub train_seconds: f64,
    /// Training samples per second of `train_seconds`.
    pub samples_per_second: f64,
    /// A loss was not finite: the run goes on, but these numbers mean little.
    pub diverged: bool,
    /// The learning rate of this epoch (its schedule's); `None` in rows recorded before
    /// rates were.
    #[serde(default)]
    pub lr: Option<f64>,
}

impl EpochMetrics {
    /// The metrics with the wall-clock fields zeroed, for comparing two runs.
    pub fn without_timings(&self) -> EpochMetrics {
        EpochMetrics { seconds: 0.0, train_seconds: 0.0, samples_per_second: 0.0, ..self.clone() }
    }
}

/// Where a running job is inside its current epoch, as its worker last said (carried on the
/// lease heartbeat, so about a second old at most).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The epoch being trained (1-based).
    pub epoch: u32,
    pub batches_done: u64,
    pub batches_total: u64,
    /// Training samples per second in this epoch so far (the whole group's share of one job).
    pub samples_per_second: f64,
    /// When this epoch should end (ms since the Unix epoch), evaluation included.
    pub epoch_eta_ms: i64,
    /// When the job should end (ms since the Unix epoch).
    pub job_eta_ms: i64,
    /// When the worker measured this (ms since the Unix epoch).
    pub at_ms: i64,
}
