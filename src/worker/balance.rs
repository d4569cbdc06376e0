//! How many of its key's queued jobs a new group takes on a CPU where several workers share
//! the queue: as many as keep its work within an even part of all the queued work, by
//! estimates of each job's seconds and of what fusing saves on this CPU.
//!
//! Fusing pays on some CPUs and not on others: a group of 7 tutorial CNNs at batch 4 takes
//! 0.77 of its members' solo time where oneDNN has AVX-512 kernels for grouped
//! convolutions, and about all of it with AVX2 only, grouped or member by member
//! (BENCHMARKS.md, "Idle workers lend their cores, and groups sized by the work", "Fused
//! groups member by member"). An even share of the key's jobs per worker
//! (⌈queued ÷ workers⌉) splits the assignment's seven CNN jobs 4 + 2 + 1 on both, and the
//! group of 2 gains nothing; one group of seven holds one worker far longer than the rest of
//! the queue holds the other where fusing does not pay. So the group takes the most jobs n
//! whose fused time is at most an even part of the work: n·c·f(n) ≤ (n·c·f(n) + rest) ÷
//! workers, where c is a job's estimated time alone, f(n) what fusing n leaves of it, and
//! rest the other queued jobs' estimated times alone. A group that ends last is not left
//! alone with its members: the idle workers lend it their cores (`crate::train::cores`).

use crate::network::Architecture;
use crate::queue::{Claimed, QueuedKey};
use crate::spec::Spec;
use crate::train::model::{onednn_avx512, GroupConv};

/// A job's estimated seconds per epoch alone on one CPU thread. A model fitted to the
/// assignment's jobs on a 2-core AMD EPYC (linear, MLP and CNN at batch 4, the CNN at batch 1
/// and 1000): 0.156 ns per multiply-add of an image's forward pass (training's three passes
/// and evaluation's one included), and per training step 82 µs, 16.5 µs per layer and
/// 0.33 ns per parameter (the optimiser's pass over the weights). Only the ratios between
/// jobs matter here.
pub fn epoch_seconds(spec: &Spec) -> f64 {
    epoch_seconds_of(spec, &Architecture::of(spec))
}

/// `epoch_seconds` with the spec's network already planned.
fn epoch_seconds_of(spec: &Spec, arch: &Architecture) -> f64 {
    let (macs, layers) = arch.work_per_image();
    let data = spec.data();
    let images = spec.train_limit.map_or(data.train_images, |l| u64::from(l).min(data.train_images)) as f64;
    let steps = (images / f64::from(spec.batch_size.max(1))).ceil();
    let per_image = macs as f64 * 0.156e-9;
    let per_step = 82e-6 + 16.5e-6 * layers as f64 + 0.33e-9 * arch.numel() as f64;
    (images + data.test_images as f64 / 3.0) * per_image + steps * per_step
}

/// What a fused group of `n` CPU members takes of its members' time alone, by the path its
/// convolutions take here (`GroupConv::on`, so `TRAINYARD_GROUP_CONV` counts too): grouped
/// where oneDNN has its AVX-512 kernels, less (measured: 0.93 of it for 2 tutorial CNNs at
/// batch 4, 0.72–0.77 for 4 to 8); all of it otherwise and for networks without
/// convolutions. Member by member on a CPU with AVX2 only a group of 2 to 8 trained 0.72–1.4×
/// as fast as its members one after another, from one run to the next on the same box
/// (BENCHMARKS.md, "Fused groups member by member"), grouped there 0.91–1.0×, MLPs 0.86–1.0×:
/// each counted as 1, which errs toward smaller groups.
pub fn fused_part(n: usize, convolutional: bool) -> f64 {
    match n {
        _ if !convolutional || !grouped_convolutions_pay() => 1.0,
        0 | 1 => 1.0,
        2 | 3 => 0.93,
        _ => 0.77,
    }
}

/// Whether a CPU group's convolutions run grouped on oneDNN's AVX-512 kernels here: the path
/// (`GroupConv::on`) is `Grouped` and oneDNN has those kernels.
fn grouped_convolutions_pay() -> bool {
    GroupConv::on(tch::Device::Cpu) == GroupConv::Grouped && onednn_avx512()
}

/// How far past an even part of the work a fused group of at least `LENT_FROM` may run where
/// fusing pays and idle workers lend it their cores: such a group trains 1.6× faster on two
/// threads than on one (BENCHMARKS.md), so the part it runs after the others ran out of work
/// shrinks.
const LENT_TAIL: f64 = 1.15;
const LENT_FROM: usize = 4;

/// The most jobs n ≤ min(`cap`, `queued`) with n·c·f(n) ≤ (n·c·f(n) + rest) ÷ `workers`
/// (times `LENT_TAIL` for a group of `LENT_FROM` or more that fusing speeds up, f(n) < 1,
/// where idle cores are `lent`), at least 1: `queued` jobs of the head's key (the head included) of `c` seconds each,
/// `others` seconds of other queued work, the key's jobs left out counted alone.
pub fn group_size(
    c: f64,
    queued: usize,
    cap: usize,
    others: f64,
    workers: usize,
    lent: bool,
    f: impl Fn(usize) -> f64,
) -> usize {
    let workers = workers.max(1) as f64;
    // N.B.: not the first n that fails: the allowance from `LENT_FROM` on can let a larger
    // group fit where a smaller one did not.
    (1..=cap.min(queued))
        .filter(|&n| {
            let fused = n as f64 * c * f(n);
            let rest = others + (queued - n) as f64 * c;
            // N.B.: only where fusing pays: with AVX2 alone a group of 6 ran 1.1× its
            // members' time alone and ended last even with the lent core (BENCHMARKS.md).
            let tail = if lent && n >= LENT_FROM && f(n) < 1.0 { LENT_TAIL } else { 1.0 };
            fused <= (fused + rest) / workers * tail
        })
        .last()
        .unwrap_or(1)
}

/// `group_size` for a claimed head on a CPU, from the queued work by key (the head not
/// included in it).
pub fn for_head(head: &Claimed, cap: usize, queued: &[QueuedKey], workers: usize, lent: bool) -> usize {
    let Some(spec) = head.spec.as_ref().ok() else { return 1 };
    let each = |key: &QueuedKey| key.spec.0.as_ref().map_or(0.0, epoch_seconds) * key.epochs.max(0) as f64;
    let key = head.group_key.as_deref();
    let (mut mates, mut mate_epochs, mut others) = (0usize, 0i64, 0.0);
    for k in queued {
        if Some(k.key.as_str()) == key {
            mates = usize::try_from(k.jobs).unwrap_or(0);
            mate_epochs = k.epochs.max(0);
        } else {
            others += each(k);
        }
    }
    let queued_here = mates.saturating_add(1);
    // A job's time alone: the key's mean epochs left, the head's included.
    let epochs = (mate_epochs.saturating_add(i64::from(spec.epochs)) as f64) / queued_here as f64;
    let arch = Architecture::of(spec);
    let c = epoch_seconds_of(spec, &arch) * epochs;
    group_size(c, queued_here, cap, others, workers, lent, |n| fused_part(n, arch.convolutional()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seconds(v: serde_json::Value) -> f64 {
        epoch_seconds(&Spec::parse(&v).unwrap())
    }

    #[test]
    fn the_estimates_order_the_assignments_jobs_as_they_train() {
        // Measured alone in `serve` (s): linear 1.8, MLP 6.8, CNN 9.2, CNN at batch 1 19.3,
        // at batch 1000 5.1.
        let (linear, mlp, cnn) =
            (seconds(json!({"model": "linear"})), seconds(json!({"model": "mlp"})), seconds(json!({})));
        let (one, thousand) = (seconds(json!({"batch_size": 1})), seconds(json!({"batch_size": 1000})));
        for (estimate, measured) in [(linear, 1.8), (mlp, 6.8), (cnn, 9.2), (one, 19.3), (thousand, 5.1)] {
            assert!((estimate / measured - 1.0).abs() < 0.25, "{estimate} s estimated against {measured} s measured");
        }
        assert!(linear < thousand && thousand < mlp && mlp < cnn && cnn < one);
    }

    #[test]
    fn a_group_takes_what_fits_an_even_part_of_the_work() {
        let gains = |n: usize| if n >= 4 { 0.77 } else { 1.0 };
        // The assignment: seven CNN jobs of 9.2 s, 39 s of other work, two workers.
        assert_eq!(group_size(9.2, 7, 8, 39.0, 2, false, gains), 6);
        assert_eq!(group_size(9.2, 7, 8, 39.0, 2, false, |_| 1.0), 5, "fusing that saves nothing takes less");
        // With idle cores lent to the group that ends last, all seven where fusing pays.
        assert_eq!(group_size(9.2, 7, 8, 39.0, 2, true, gains), 7);
        assert_eq!(group_size(9.2, 7, 8, 39.0, 2, true, |_| 1.0), 5);
        // Nothing else queued: the key's jobs split between the workers.
        assert_eq!(group_size(9.2, 7, 8, 0.0, 2, true, gains), 4);
        assert_eq!(group_size(9.2, 7, 8, 0.0, 2, false, |_| 1.0), 3);
        assert_eq!(group_size(9.2, 8, 8, 0.0, 2, true, |_| 1.0), 4);
        assert_eq!(group_size(9.2, 7, 8, 0.0, 2, true, |_| 1.0), 3);
        // A worker alone takes all it may; the cap holds; one job is a group of one.
        assert_eq!(group_size(9.2, 20, 8, 0.0, 1, false, |_| 1.0), 8);
        assert_eq!(group_size(9.2, 7, 3, 1e6, 2, true, gains), 3);
        assert_eq!(group_size(9.2, 1, 8, 0.0, 2, true, gains), 1);
        // The last two jobs, with nothing else queued: one each (a group of two gains little
        // from lent cores).
        assert_eq!(group_size(9.2, 2, 8, 0.0, 2, true, gains), 1);
    }

    #[test]
    fn fusing_convolutions_saves_only_where_the_groups_run_on_grouped_avx512_kernels() {
        assert_eq!(fused_part(1, true), 1.0);
        assert_eq!(fused_part(8, false), 1.0);
        let pays = grouped_convolutions_pay();
        // Only oneDNN's AVX-512 grouped kernels, and not where a group is forced member by member.
        let forced_members = std::env::var("TRAINYARD_GROUP_CONV").as_deref() == Ok("members");
        assert_eq!(pays, crate::train::model::onednn_avx512() && !forced_members);
        assert_eq!(fused_part(8, true) < 1.0, pays);
        assert_eq!(fused_part(2, true) < 1.0, pays);
    }
}
