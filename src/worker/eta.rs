//! A running member's place inside its epoch and when it should end: the arithmetic behind
//! `job::Progress`, apart from where the numbers come from and go.

use crate::job::Progress;

/// What is known of one member when a pass reports.
pub(super) struct Member {
    /// The epoch it trains in this pass (1-based), and its spec's epochs and batch size.
    pub epoch: u32,
    pub epochs: u32,
    pub batch: u64,
    /// Its last epoch's (whole, training) seconds, if it has finished one here.
    pub last: Option<(f64, f64)>,
}

/// `m`'s progress after `done` of the pass's `total` batches in `elapsed` seconds, measured
/// at `at_ms` (ms since the Unix epoch).
///
/// The epoch's rest is the batches left at this pass's pace, plus evaluation as long as last
/// time (nothing known yet: none); each later epoch lasts as the last whole one did (or as
/// this one should).
pub(super) fn estimate(m: &Member, elapsed: f64, done: usize, total: usize, at_ms: i64) -> Progress {
    let per_batch = elapsed / done.max(1) as f64;
    let eval = m.last.map_or(0.0, |(whole, train)| (whole - train).max(0.0));
    let epoch_left = per_batch * (total - done) as f64 + eval;
    let epoch_whole = m.last.map_or(per_batch * total as f64 + eval, |(whole, _)| whole);
    let later = f64::from(m.epochs.saturating_sub(m.epoch)) * epoch_whole;
    Progress {
        epoch: m.epoch,
        batches_done: done as u64,
        batches_total: total as u64,
        samples_per_second: (done as u64 * m.batch) as f64 / elapsed,
        epoch_eta_ms: at_ms + (epoch_left * 1000.0) as i64,
        job_eta_ms: at_ms + ((epoch_left + later) * 1000.0) as i64,
        at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_the_epoch_goes_at_this_passs_pace_and_later_epochs_as_the_last() {
        // Half the batches in 10 s, evaluation took 2 s last time, 3 epochs after this one.
        let m = Member { epoch: 2, epochs: 5, batch: 4, last: Some((22.0, 20.0)) };
        let p = estimate(&m, 10.0, 50, 100, 1_000);
        assert_eq!((p.batches_done, p.batches_total, p.samples_per_second), (50, 100, 20.0));
        assert_eq!(p.epoch_eta_ms, 1_000 + 12_000, "10 s of batches left and 2 s of evaluation");
        assert_eq!(p.job_eta_ms, 1_000 + 12_000 + 3 * 22_000);
        // Nothing finished yet: the whole epoch at this pace, and no evaluation time.
        let first = estimate(&Member { last: None, epoch: 1, ..m }, 10.0, 50, 100, 0);
        assert_eq!((first.epoch_eta_ms, first.job_eta_ms), (10_000, 10_000 + 4 * 20_000));
    }
}
