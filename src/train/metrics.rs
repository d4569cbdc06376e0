//! What one epoch measured, and the sink that receives it.

use serde::{Deserialize, Serialize};

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
}

impl EpochMetrics {
    /// The metrics with the wall-clock fields zeroed, for comparing two runs.
    pub fn without_timings(&self) -> EpochMetrics {
        EpochMetrics { seconds: 0.0, train_seconds: 0.0, samples_per_second: 0.0, ..self.clone() }
    }
}

/// Where a run's results go: a file, a database, a progress bar.
pub trait MetricSink {
    /// Receives each finished epoch before its checkpoint is written. An error stops the run
    /// (a worker that lost its job's lease must not write on).
    fn record_epoch(&mut self, metrics: &EpochMetrics) -> anyhow::Result<()>;

    /// Progress within an epoch, called about a hundred times per epoch.
    fn batch_done(&mut self, _epoch: u32, _done: usize, _total: usize) {}
}

/// Keeps the epochs in memory.
#[derive(Default)]
pub struct VecSink(pub Vec<EpochMetrics>);

impl MetricSink for VecSink {
    fn record_epoch(&mut self, metrics: &EpochMetrics) -> anyhow::Result<()> {
        self.0.push(metrics.clone());
        Ok(())
    }
}

pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
