//! What one epoch measured, and the sink that receives it.

pub use crate::job::EpochMetrics;

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
