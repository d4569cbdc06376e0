//! The CPU cores a process's CPU workers share: a worker with nothing to train lends its
//! core to the groups still training, and a group takes the extra threads only where it
//! measures faster with them.
//!
//! Each CPU worker trains on its own OS thread with torch's intra-op threads set for that
//! thread alone (OpenMP's and MKL's counts are per thread). At the end of a busy spell one
//! worker often trains the last group while the others wait for work: their cores would
//! idle. Whether more threads help depends on the work: a fused group of several tutorial
//! CNNs at batch 4 trains 1.2–1.6× faster on two threads than on one, while one such CNN
//! alone trains 2× slower (BENCHMARKS.md, "Idle workers lend their cores, and groups sized
//! by the work"). So a group tries the lent threads for a few steps against as many steps
//! on its own, and keeps them only if they are faster; it hands them back at the next step
//! once a lender claims work, and tries again a few seconds after a trial found them slower
//! (the box's load changes).
//!
//! N.B.: more threads split some sums differently (a convolution's weight gradient over the
//! batch), so a run's last digits may differ with the box's load, as they differ between a
//! member's fused and solo runs. With `--threads-per-worker` set, nothing is lent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The CPU workers of one process, and how many of them have nothing to train.
#[derive(Debug)]
pub struct Cores {
    workers: usize,
    idle: AtomicUsize,
}

/// A worker's idle spell: its core is lent until this is dropped.
#[derive(Debug)]
pub struct Idle<'a>(&'a Cores);

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cores {
    pub fn new(workers: usize) -> Cores {
        Cores { workers: workers.max(1), idle: AtomicUsize::new(0) }
    }

    /// Marks one worker idle until the guard is dropped.
    pub fn idle(&self) -> Idle<'_> {
        self.idle.fetch_add(1, Ordering::Relaxed);
        Idle(self)
    }

    /// Threads a training worker of `base` threads may use now: its own and an even part of
    /// the idle workers' (rounded down).
    pub fn threads_for(&self, base: i32) -> i32 {
        let idle = self.idle.load(Ordering::Relaxed).min(self.workers - 1);
        let busy = (self.workers - idle) as i64;
        let lent = i64::from(base) * idle as i64 / busy;
        i32::try_from(i64::from(base) + lent).unwrap_or(base)
    }
}

/// Steps a measurement takes at least, and how long at least.
const MEASURE_STEPS: u32 = 16;
const MEASURE_TIME: Duration = Duration::from_millis(100);
/// Steps a trial skips before it measures (new thread teams, primitives made again).
const WARM_STEPS: u32 = 3;
/// A trial that found more threads slower is tried again after this long (the box's load
/// changes).
const RETRY: Duration = Duration::from_secs(3);
/// A trial's threads are kept only if its steps take at most this part of the base's.
const KEEP_BELOW: f64 = 0.95;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Running at `Tuner::current`, nothing measured.
    Steady,
    /// Measuring the base's steps before a trial of `threads`.
    Base { threads: i32, since: Instant, steps: u32 },
    /// Running at `threads`, after `Base` took `base_step` seconds a step.
    Trial { threads: i32, base_step: f64, since: Instant, steps: u32 },
}

/// A group's choice of threads, step by step: its base, or more while workers are idle and
/// the trial said they help this group.
#[derive(Debug)]
pub(super) struct Tuner<'a> {
    cores: Option<&'a Cores>,
    base: i32,
    current: i32,
    phase: Phase,
    /// Thread counts tried for the current members: whether each was faster, and when.
    verdicts: Vec<(i32, bool, Instant)>,
    /// When the last pass ended, while a measurement is under way.
    paused: Option<Instant>,
}

impl Drop for Tuner<'_> {
    /// The training thread goes back to its own threads when the group ends.
    fn drop(&mut self) {
        if self.cores.is_some() {
            self.set(self.base);
        }
    }
}

impl<'a> Tuner<'a> {
    /// `base` is the thread count the group was started with; no `cores`: it keeps it.
    pub fn new(cores: Option<&'a Cores>, base: i32) -> Tuner<'a> {
        Tuner { cores, base, current: base, phase: Phase::Steady, verdicts: Vec::new(), paused: None }
    }

    /// The members changed: what was measured no longer holds, and the group is back on its
    /// own threads until it measures again.
    pub fn members_changed(&mut self) {
        self.verdicts.clear();
        self.phase = Phase::Steady;
        self.paused = None;
        self.set(self.base);
    }

    /// A training pass ended (evaluation comes next): a trial's threads go back for the
    /// evaluation, and so do kept ones once the lender has claimed work; a measurement under
    /// way goes on in the next pass, the time between left out.
    pub fn pass_ended(&mut self) {
        let Some(cores) = self.cores else { return };
        if matches!(self.phase, Phase::Trial { .. }) || cores.threads_for(self.base) < self.current {
            self.set(self.base);
        }
        self.paused = Some(Instant::now());
    }

    /// Called before each training step: sets the threads the step runs with.
    pub fn before_step(&mut self) {
        let Some(cores) = self.cores else { return };
        let want = cores.threads_for(self.base);
        let now = Instant::now();
        if let Some(paused) = self.paused.take() {
            // Resuming after an evaluation: a base measurement leaves the gap out; a trial
            // takes its threads again and warms up again.
            self.phase = match self.phase {
                Phase::Base { threads, since, steps } => Phase::Base { threads, since: since + (now - paused), steps },
                Phase::Trial { threads, base_step, .. } if threads == want => {
                    self.set(threads);
                    Phase::Trial { threads, base_step, since: now, steps: 0 }
                }
                phase => phase,
            };
        }
        self.phase = match self.phase {
            Phase::Base { threads, .. } | Phase::Trial { threads, .. } if threads != want => {
                self.set(self.base);
                Phase::Steady
            }
            Phase::Base { threads, since, steps } => {
                // `steps` steps ran since `since`.
                let steps = steps + 1;
                if steps >= MEASURE_STEPS && now - since >= MEASURE_TIME {
                    let base_step = (now - since).as_secs_f64() / f64::from(steps);
                    self.set(threads);
                    Phase::Trial { threads, base_step, since: now, steps: 0 }
                } else {
                    Phase::Base { threads, since, steps }
                }
            }
            Phase::Trial { threads, base_step, since, steps } => {
                let steps = steps + 1;
                let since = if steps == WARM_STEPS { now } else { since };
                let measured = steps.saturating_sub(WARM_STEPS);
                if measured >= MEASURE_STEPS && now - since >= MEASURE_TIME {
                    let step = (now - since).as_secs_f64() / f64::from(measured);
                    let faster = step <= base_step * KEEP_BELOW;
                    tracing::debug!(threads, base = self.base, step, base_step, faster, "lent threads measured");
                    self.verdicts.retain(|v| v.0 != threads);
                    self.verdicts.push((threads, faster, now));
                    if !faster {
                        self.set(self.base);
                    }
                    Phase::Steady
                } else {
                    Phase::Trial { threads, base_step, since, steps }
                }
            }
            Phase::Steady if want == self.current => Phase::Steady,
            Phase::Steady if want <= self.base => {
                self.set(self.base);
                Phase::Steady
            }
            Phase::Steady => match self.verdicts.iter().find(|v| v.0 == want && (v.1 || now - v.2 < RETRY)) {
                Some(&(_, faster, _)) => {
                    self.set(if faster { want } else { self.base });
                    Phase::Steady
                }
                None if self.current == self.base => Phase::Base { threads: want, since: now, steps: 0 },
                None => {
                    self.set(self.base);
                    Phase::Steady
                }
            },
        };
    }

    fn set(&mut self, threads: i32) {
        if threads != self.current {
            tch::set_num_threads(threads);
            self.current = threads;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_workers_lend_their_threads_evenly_to_the_busy_ones() {
        let cores = Cores::new(4);
        assert_eq!(cores.threads_for(1), 1);
        let a = cores.idle();
        assert_eq!(cores.threads_for(1), 1, "one idle core among three busy workers: none gets it");
        let b = cores.idle();
        assert_eq!((cores.threads_for(1), cores.threads_for(2)), (2, 4));
        let c = cores.idle();
        assert_eq!(cores.threads_for(1), 4);
        let d = cores.idle();
        assert_eq!(cores.threads_for(1), 4, "never more idle workers than all but one");
        drop((a, b, c, d));
        assert_eq!(cores.threads_for(1), 1);
    }

    /// Runs steps that take `fast` with more than one thread and `slow` with one, until
    /// `done` says so or 2,000 steps ran; the steps run.
    fn steps(tuner: &mut Tuner, slow: Duration, fast: Duration, done: impl Fn(&Tuner) -> bool) -> usize {
        for i in 0..2000 {
            if done(tuner) {
                return i;
            }
            tuner.before_step();
            std::thread::sleep(if tch::get_num_threads() > 1 { fast } else { slow });
        }
        2000
    }

    #[test]
    fn a_group_keeps_lent_threads_only_where_its_steps_run_faster_and_hands_them_back() {
        let cores = Cores::new(2);
        tch::set_num_threads(1);
        let mut tuner = Tuner::new(Some(&cores), 1);
        let ms = Duration::from_millis;
        tuner.before_step();
        assert_eq!(tch::get_num_threads(), 1, "nobody idle: nothing lent");
        let idle = cores.idle();
        // Faster with two threads: measured, then kept.
        let ran = steps(&mut tuner, ms(4), ms(2), |t| !t.verdicts.is_empty());
        assert!(ran < 2000 && tuner.verdicts[0].1, "{:?}", tuner.verdicts);
        assert_eq!((tch::get_num_threads(), tuner.current), (2, 2));
        // New members: back on its own threads, measured again.
        tuner.members_changed();
        assert_eq!((tch::get_num_threads(), tuner.verdicts.len()), (1, 0));
        tuner.before_step();
        assert!(matches!(tuner.phase, Phase::Base { threads: 2, .. }), "{:?}", tuner.phase);
        let ran = steps(&mut tuner, ms(4), ms(2), |t| !t.verdicts.is_empty());
        assert!(ran < 2000 && tch::get_num_threads() == 2);
        // The lender claims work: the threads go back at the next step.
        drop(idle);
        tuner.before_step();
        assert_eq!(tch::get_num_threads(), 1);
        // New members, slower with two threads: tried once, then left alone.
        tuner.members_changed();
        let idle = cores.idle();
        let ran = steps(&mut tuner, ms(2), ms(4), |t| !t.verdicts.is_empty());
        assert!(ran < 2000 && !tuner.verdicts[0].1, "{:?}", tuner.verdicts);
        assert_eq!(tch::get_num_threads(), 1);
        let n = std::cell::Cell::new(0);
        steps(&mut tuner, ms(1), ms(1), |_| n.replace(n.get() + 1) >= 200);
        assert_eq!((tch::get_num_threads(), tuner.verdicts.len()), (1, 1), "not tried again within {RETRY:?}");
        drop(idle);
    }

    #[test]
    fn a_measurement_goes_on_across_an_evaluation_and_the_group_ends_on_its_own_threads() {
        let cores = Cores::new(2);
        tch::set_num_threads(1);
        let idle = cores.idle();
        let mut tuner = Tuner::new(Some(&cores), 1);
        let ms = Duration::from_millis;
        // Into the trial, then a pass ends: its threads go back for the evaluation.
        steps(&mut tuner, ms(4), ms(2), |t| matches!(t.phase, Phase::Trial { .. }));
        assert_eq!(tch::get_num_threads(), 2);
        tuner.pass_ended();
        assert_eq!(tch::get_num_threads(), 1);
        std::thread::sleep(ms(150));
        // The next pass takes them again and finishes the trial; the evaluation's time is not
        // counted against them.
        tuner.before_step();
        assert_eq!(tch::get_num_threads(), 2);
        steps(&mut tuner, ms(4), ms(2), |t| !t.verdicts.is_empty());
        assert!(tuner.verdicts[0].1, "{:?}", tuner.verdicts);
        drop(tuner);
        assert_eq!(tch::get_num_threads(), 1, "the group ended: back to its own threads");
        drop(idle);
    }
}
