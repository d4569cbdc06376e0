//! Training: blocking code only — no tokio, no SQL.
//!
//! One engine trains a group of G same-shaped models as one (`train_group`): a batch source
//! that gives each member its own batches (`data`), a fused model (`model`, from the plan in
//! `crate::network`; on a CPU its backward pass written out by hand where it knows every layer,
//! `backprop`), one optimiser step for all members (`optim`), metrics and checkpoints
//! per member. Every member trains as
//! it would alone — its own seed, data order, optimiser settings and learning-rate
//! schedule, loss, augmentation and epochs — and leaves the group on its own (finished, stopped, or its
//! writes refused) while the others go on; new members join at epoch boundaries. `train`
//! runs a single spec as a group of one. A group on a CPU may borrow the threads of idle
//! workers where they make its steps faster (`cores`).

pub mod augment;
pub mod backprop;
pub mod checkpoint;
pub mod cores;
pub mod data;
pub mod metrics;
pub mod model;
pub mod native;
pub mod optim;
pub mod rng;

use crate::network::Architecture;
use crate::spec::{Augmentation, LossKind, Spec};
use augment::AugmentParams;
use data::{Data, GroupBatches, MemberEpoch};
use metrics::{finite, EpochMetrics, MetricSink};
use model::GroupParams;
use optim::{MemberState, Optimizer};
use rng::EpochRng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

pub use checkpoint::{CheckpointError, CheckpointStore, DirStore};
pub use data::DataError;

/// Test images evaluated per forward pass.
const EVAL_CHUNK: i64 = 1000;

/// Where the dropout keys' random streams start (stream `DROPOUT_STREAMS + e` for epoch e),
/// far from the data streams (stream e) and the initialisation's (stream 0).
const DROPOUT_STREAMS: u64 = 1 << 32;

/// How a run is executed, apart from what it trains.
#[derive(Clone, Copy, Default)]
pub struct TrainOptions<'a> {
    /// Where the checkpoint is written after each epoch, and resumed from if one is there.
    pub checkpoints: Option<&'a dyn CheckpointStore>,
    /// torch's intra-op threads for this thread; `None` leaves torch's default.
    pub threads: Option<i32>,
}

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch of the spec is done.
    Finished { epochs: u32 },
    /// The stop flag was raised; `epochs_done` epochs are complete (and checkpointed).
    Stopped { epochs_done: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The metric sink refused an epoch (for the service: the job's lease was lost).
    #[error("recording metrics failed: {0:#}")]
    Sink(anyhow::Error),
    /// libtorch failed (for instance, the GPU ran out of memory).
    #[error("torch error: {0}")]
    Torch(String),
    /// Memory ran out for this member (its weights could not be made); the others go on.
    #[error("{0}")]
    OutOfMemory(String),
    /// The member cannot train in this group (another architecture, batch size or data).
    #[error("{0}")]
    Incompatible(String),
}

/// What a group's training needs from where it runs: each member's stop flag, checkpoint
/// store and metric sink, word of members that leave, and new members at epoch boundaries.
/// Members are named by a key the host chooses.
pub trait GroupHost {
    /// True once `key` must stop (cancelled, its lease lost, a shutdown).
    fn stopped(&self, key: usize) -> bool;
    /// Where `key`'s checkpoint is kept, if anywhere.
    fn checkpoints(&self, key: usize) -> Option<&dyn CheckpointStore>;
    /// Receives `key`'s finished epoch before its checkpoint is written. An error takes the
    /// member out of the group (a worker that lost its job's lease must not write on).
    fn record_epoch(&mut self, key: usize, metrics: &EpochMetrics) -> anyhow::Result<()>;
    /// Progress within the group's current pass, about a hundred times per pass: each
    /// member's (key, epoch), and batches done of the total.
    fn batch_done(&mut self, _members: &[(usize, u32)], _done: usize, _total: usize) {}
    /// Something `key`'s owner should know that does not end it (its checkpoint was damaged,
    /// so it trains again from the start).
    fn notice(&mut self, _key: usize, _message: &str) {}
    /// `key` left the group; called exactly once per member.
    fn member_done(&mut self, key: usize, result: Result<Outcome, TrainError>);
    /// At an epoch boundary: compatible members to add, at most `room`.
    fn join(&mut self, _room: usize) -> Vec<(usize, Spec)> {
        Vec::new()
    }
}

/// How a group runs, apart from what it trains.
#[derive(Debug, Clone, Copy)]
pub struct GroupOptions<'a> {
    /// torch's intra-op threads for this thread; `None` leaves torch's default.
    pub threads: Option<i32>,
    /// Most members at once (joins stop there).
    pub max_members: usize,
    /// The cores idle workers lend (`cores`); `None`, or no `threads`: the group keeps its
    /// threads.
    pub lent: Option<&'a cores::Cores>,
}

/// Trains `first` and whoever joins as one group on `data`, until every member has left.
/// Each member's end comes back through `host.member_done`; a libtorch failure (a CUDA
/// out-of-memory, say) ends every member still in the group with `TrainError::Torch`
/// instead of unwinding through the caller.
pub fn train_group(first: Vec<(usize, Spec)>, data: &Data, opts: &GroupOptions, host: &mut dyn GroupHost) {
    if let Some(n) = opts.threads {
        // N.B.: torch sets a thread's count from the process-wide last one set at the
        // thread's first parallel operation; asking first makes that happen before ours.
        let _ = tch::get_num_threads();
        tch::set_num_threads(n);
    }
    flush_denormals();
    let tuner = cores::Tuner::new(opts.threads.and(opts.lent), opts.threads.unwrap_or(1));
    let mut engine = Engine { data, host, arch: None, members: Vec::new(), fused: None, tuner };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.run(first, opts.max_members.max(1))));
    if let Err(panic) = run {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        // tch's messages carry a C++ backtrace after the first line; keep the reason.
        let reason = msg.lines().next().unwrap_or_default().to_string();
        for m in std::mem::take(&mut engine.members) {
            engine.host.member_done(m.key, Err(TrainError::Torch(reason.clone())));
        }
    }
    // The group's tensors are freed; what the allocator kept of them for the next batches goes
    // back to the kernel now, not while the loop runs (src/alloc.rs).
    drop(engine);
    crate::alloc::release_freed_memory();
}

/// Makes this thread's float arithmetic treat denormal numbers (below 1.2e-38) as zero, as
/// `torch.set_flush_denormal(True)` does: Adam's and Adadelta's squared-gradient averages of
/// weights whose gradients are tiny become denormal, and each operation on them costs many
/// times a normal one (measured: the tutorial CNN at batch 4 with Adam trained 1.3× slower
/// without; BENCHMARKS.md, "Optimisers"). What a value that small changes in a weight is far
/// below float precision. x86-64 only (elsewhere a no-op).
fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sets the FTZ (bit 15) and DAZ (bit 6) flags of this thread's MXCSR; no memory
    // is touched and every other flag is kept.
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// Trains `spec` alone on `data`, sending every epoch to `sink`, until done or `stop` is
/// raised (checked between mini-batches). Resumes from `opts.checkpoints` when it holds a
/// checkpoint of the same spec.
pub fn train(
    spec: &Spec,
    data: &Data,
    opts: &TrainOptions,
    sink: &mut dyn MetricSink,
    stop: &AtomicBool,
) -> Result<Outcome, TrainError> {
    struct Solo<'a> {
        sink: &'a mut dyn MetricSink,
        stop: &'a AtomicBool,
        store: Option<&'a dyn CheckpointStore>,
        result: Option<Result<Outcome, TrainError>>,
    }
    impl GroupHost for Solo<'_> {
        fn stopped(&self, _: usize) -> bool {
            self.stop.load(Ordering::Relaxed)
        }
        fn checkpoints(&self, _: usize) -> Option<&dyn CheckpointStore> {
            self.store
        }
        fn record_epoch(&mut self, _: usize, m: &EpochMetrics) -> anyhow::Result<()> {
            self.sink.record_epoch(m)
        }
        fn batch_done(&mut self, members: &[(usize, u32)], done: usize, total: usize) {
            self.sink.batch_done(members.first().map_or(0, |m| m.1), done, total);
        }
        fn member_done(&mut self, _: usize, result: Result<Outcome, TrainError>) {
            self.result = Some(result);
        }
    }
    let mut solo = Solo { sink, stop, store: opts.checkpoints, result: None };
    let group = GroupOptions { threads: opts.threads, max_members: 1, lent: None };
    train_group(vec![(0, spec.clone())], data, &group, &mut solo);
    solo.result.unwrap_or_else(|| Err(TrainError::Torch("the run ended without a result".into())))
}

/// A member between passes: where it is, and (while the group is being rebuilt) its state.
struct Member {
    key: usize,
    spec: Spec,
    /// The epoch it trains next.
    next: u32,
    history: Vec<EpochMetrics>,
    /// Its own plan of the group's network (its parameters' names are its own: a named
    /// model's `conv1`, a list's `0`), for its checkpoints.
    arch: Architecture,
    /// Its weights [P] while outside the fused buffer (joining, or the group rebuilding).
    weights: Option<Tensor>,
    /// Its running statistics [S] while outside the fused buffer.
    stats: Option<Tensor>,
    /// Its optimiser's state while outside the fused one.
    state: MemberState,
}

/// The fused state of the current members, in member order.
struct Fused {
    params: GroupParams,
    optim: Box<dyn Optimizer>,
    losses: Losses,
}

/// Each member's loss function over a batch.
enum Losses {
    CrossEntropy,
    Mse,
    /// [G], true where the member uses MSE.
    Mixed(Tensor),
}

impl Losses {
    fn new(specs: &[&Spec], device: Device) -> Losses {
        let mse: Vec<bool> = specs.iter().map(|s| s.loss == LossKind::Mse).collect();
        if mse.iter().all(|&m| m) {
            Losses::Mse
        } else if mse.iter().all(|&m| !m) {
            Losses::CrossEntropy
        } else {
            Losses::Mixed(Tensor::from_slice(&mse).to_device(device))
        }
    }

    /// Each member's mean loss over its batch — [G], or a scalar for a group of one — from
    /// logits [G·B, classes] and labels [G·B], member after member.
    ///
    /// N.B.: the sum of these is what the group backpropagates: each member's gradients are
    /// those of its own mean loss, and a NaN in one member's loss reaches no other member.
    fn batch_means(&self, logits: &Tensor, labels: &Tensor, g: i64) -> Tensor {
        if g == 1 {
            let kind = if matches!(self, Losses::Mse) { LossKind::Mse } else { LossKind::CrossEntropy };
            return loss_fn(kind, logits, labels);
        }
        let one_hot = || labels.one_hot(classes(logits)).to_kind(logits.kind());
        let ce = || {
            logits
                .cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0)
                .view([g, -1])
                .mean_dim(1, false, None)
        };
        let mse = || logits.mse_loss(&one_hot(), Reduction::None).view([g, -1]).mean_dim(1, false, None);
        match self {
            Losses::CrossEntropy => ce(),
            Losses::Mse => mse(),
            Losses::Mixed(mask) => mse().where_self(mask, &ce()),
        }
    }
}

/// The parameters' gradients, where this step can run its backward pass by hand
/// (`backprop::supports`) and a first step through autograd has made every one.
fn by_hand(arch: &Architecture, ps: &GroupParams, device: Device, batch: usize) -> Option<Vec<Tensor>> {
    if !backprop::supports(arch, ps.members, device, batch as i64) {
        return None;
    }
    let grads: Vec<Tensor> = ps.tensors.iter().map(|t| t.grad()).collect();
    grads.iter().all(|g| g.defined()).then_some(grads)
}

/// Keeps the items at `keep` (indices), in their order: per-member lists follow the members
/// who stay.
fn keep_only<T>(items: &mut Vec<T>, keep: &[usize]) {
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        keep.contains(&(i - 1))
    });
}

/// The loss of one model's logits [B, classes] against labels [B], as a scalar mean per
/// sample.
pub fn loss_fn(kind: LossKind, logits: &Tensor, labels: &Tensor) -> Tensor {
    match kind {
        LossKind::CrossEntropy => logits.cross_entropy_for_logits(labels),
        // Mean over all B×classes outputs, as nn.MSELoss() against one-hot targets.
        LossKind::Mse => logits.mse_loss(&labels.one_hot(classes(logits)).to_kind(logits.kind()), Reduction::Mean),
    }
}

/// Classes of logits [B, classes].
fn classes(logits: &Tensor) -> i64 {
    logits.size().last().copied().unwrap_or(0)
}

struct Engine<'a> {
    data: &'a Data,
    host: &'a mut dyn GroupHost,
    arch: Option<Architecture>,
    members: Vec<Member>,
    /// `None` when membership changed since it was built.
    fused: Option<Fused>,
    tuner: cores::Tuner<'a>,
}

impl Engine<'_> {
    fn run(&mut self, first: Vec<(usize, Spec)>, max_members: usize) {
        let mut joining = first;
        loop {
            if self.members.is_empty() && joining.is_empty() {
                // N.B.: a group that has emptied ends; its worker goes back to the queue.
                return;
            }
            if self.members.len() + joining.len() < max_members {
                joining.extend(self.host.join(max_members - self.members.len() - joining.len()));
            }
            for (key, spec) in joining.drain(..) {
                self.admit(key, spec);
            }
            if self.members.is_empty() {
                return;
            }
            self.pass();
        }
    }

    /// Takes a member in: its initial weights, or its checkpoint's state.
    fn admit(&mut self, key: usize, spec: Spec) {
        if spec.data() != self.data.dataset {
            let why =
                format!("cannot train on {}: this group's data is {}", spec.data().title, self.data.dataset.title);
            return self.host.member_done(key, Err(TrainError::Incompatible(why)));
        }
        // N.B.: the spec was planned on the dataset's nominal size; the data loaded here may be
        // smaller (a lab's copy, the synthetic stand-in), and a batch norm must not meet a
        // step of one value per channel (libtorch would make its running variance NaN).
        let images = self.data.train.len();
        let arch = match Architecture::on_images(&spec, images as u64) {
            Ok(arch) => arch,
            Err(errors) => {
                let why = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; ");
                let n = spec.train_limit.map_or(images, |l| (l as usize).min(images));
                let why = format!("{why} (this server's copy of {} has {n} training images)", spec.data().title);
                return self.host.member_done(key, Err(TrainError::Incompatible(why)));
            }
        };
        if let Some(first) = self.members.first() {
            if first.spec.group_key() != spec.group_key() {
                let why = format!("cannot join a group of {}", first.spec.group_key());
                return self.host.member_done(key, Err(TrainError::Incompatible(why)));
            }
        }
        let mut m = Member {
            key,
            next: 1,
            history: Vec::new(),
            arch: arch.clone(),
            weights: None,
            stats: None,
            state: MemberState::default(),
            spec,
        };
        let loaded = self.host.checkpoints(key).map(|store| checkpoint::load(store, &m.spec, &arch));
        if let Some(loaded) = loaded {
            match loaded {
                // N.B.: never resume from damaged weights: the run starts again from its
                // seed (the same epochs come out), and its owner is told.
                Err(e @ CheckpointError::Damaged { .. }) => {
                    let why = format!("{e}; training started again from epoch 1");
                    self.host.notice(key, &why);
                }
                Err(e) => return self.host.member_done(key, Err(e.into())),
                Ok(Some(r)) => {
                    m.next = r.epoch + 1;
                    m.history = r.metrics;
                    m.weights = Some(r.weights);
                    m.stats = r.stats;
                    m.state = r.state;
                }
                Ok(None) => {}
            }
        }
        if m.next > m.spec.epochs {
            return self.host.member_done(key, Ok(Outcome::Finished { epochs: m.spec.epochs }));
        }
        if m.weights.is_none() {
            let made = model::initial_values(&arch, m.spec.seed).map_err(|e| e.to_string()).and_then(|values| {
                Tensor::f_from_slice(&values).map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
            });
            match made {
                Ok(w) => m.weights = Some(w),
                Err(why) => {
                    let why = format!("out of memory making the model's {} weights: {why}", arch.numel());
                    return self.host.member_done(key, Err(TrainError::OutOfMemory(why)));
                }
            }
        }
        self.arch.get_or_insert(arch);
        self.unfuse();
        self.members.push(m);
    }

    /// Moves every member's state out of the fused buffers, so membership can change.
    fn unfuse(&mut self) {
        let (Some(f), Some(arch)) = (self.fused.take(), &self.arch) else { return };
        for (i, m) in self.members.iter_mut().enumerate() {
            m.weights = Some(f.params.member(arch, &f.params.flat, i as i64));
            m.stats = Some(f.params.member_stats(arch, i as i64));
            m.state = f.optim.member_state(arch, &f.params, i as i64);
        }
    }

    /// The fused state of the current members (built again after membership changed), with
    /// their architecture.
    fn fuse(&mut self) -> (&Architecture, &mut Fused) {
        let arch = self.arch.as_ref().expect("a member set it");
        let device = self.data.device;
        if self.fused.is_none() {
            self.tuner.members_changed();
        }
        let fused = self.fused.get_or_insert_with(|| {
            // N.B.: every row on the device first: a joiner's state is made (or read) on the
            // host, the others' are slices of the last fused buffer on the device.
            let rows: Vec<Tensor> =
                self.members.iter_mut().map(|m| m.weights.take().expect("unfused").to_device(device)).collect();
            let stats: Vec<Tensor> = self
                .members
                .iter_mut()
                .map(|m| m.stats.take().unwrap_or_else(|| model::initial_stats(arch)).to_device(device))
                .collect();
            let params = GroupParams::from_members(arch, &rows, &stats, device);
            let states: Vec<MemberState> = self.members.iter_mut().map(|m| std::mem::take(&mut m.state)).collect();
            let specs: Vec<&Spec> = self.members.iter().map(|m| &m.spec).collect();
            let lrs: Vec<f64> = self.members.iter().map(|m| m.spec.lr_at(m.next)).collect();
            let optim = optim::for_members(arch, &params, &specs, &lrs, states);
            Fused { params, optim, losses: Losses::new(&specs, device) }
        });
        (arch, fused)
    }

    /// Takes the members at `leaving` (ascending indices) out, each with its result, and
    /// narrows each per-member tensor (first dimension = member) to those who stay.
    fn leave(
        &mut self,
        leaving: Vec<(usize, Result<Outcome, TrainError>)>,
        per_member: &mut [&mut Tensor],
    ) -> Vec<usize> {
        self.unfuse();
        let out: Vec<usize> = leaving.iter().map(|(i, _)| *i).collect();
        let keep: Vec<usize> = (0..self.members.len()).filter(|i| !out.contains(i)).collect();
        for (i, result) in leaving.into_iter().rev() {
            let m = self.members.remove(i);
            self.host.member_done(m.key, result);
        }
        if !keep.is_empty() {
            let idx =
                Tensor::from_slice(&keep.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(self.data.device);
            for t in per_member {
                **t = t.index_select(0, &idx);
            }
        }
        keep
    }

    /// Members whose stop flag is up, as `leave` takes them.
    fn stopped(&self) -> Vec<(usize, Result<Outcome, TrainError>)> {
        (self.members.iter().enumerate())
            .filter(|(_, m)| self.host.stopped(m.key))
            .map(|(i, m)| (i, Ok(Outcome::Stopped { epochs_done: m.next - 1 })))
            .collect()
    }

    /// One epoch of every member (each its own next epoch), evaluated and recorded.
    fn pass(&mut self) {
        let started = Instant::now();
        let data = self.data;
        let spec0 = self.members[0].spec.clone();
        let limit = spec0.train_limit.map_or(usize::MAX, |l| l as usize);
        let full = spec0.batch_size as usize;
        let epochs: Vec<MemberEpoch> = self
            .members
            .iter()
            .map(|m| MemberEpoch {
                rng: EpochRng::new(m.spec.seed, m.next.into()),
                augment: (!m.spec.augment.is_empty()).then(|| AugmentParams {
                    crop: m.spec.has(Augmentation::RandomResizedCrop),
                    flip: m.spec.has(Augmentation::HorizontalFlip),
                    height: data.dataset.height,
                    width: data.dataset.width,
                }),
            })
            .collect();
        let members = self.members.len() as i64;
        let side_by_side = self.arch.as_ref().is_some_and(|a| model::takes_side_by_side(a, members, data.device));
        let mut source = GroupBatches::new(&data.train, limit, full, epochs).side_by_side(side_by_side);
        // Each member's dropout keys come from a stream of its own (seed, epoch), one per
        // dropout layer and step, whatever group it trains in.
        let dropouts = self.arch.as_ref().map_or(0, |a| a.dropouts);
        let mut drop_rngs: Vec<EpochRng> =
            self.members.iter().map(|m| EpochRng::new(m.spec.seed, DROPOUT_STREAMS + u64::from(m.next))).collect();
        let (total, samples) = (source.batches(), source.samples());
        let report_every = (total / 100).max(1);
        let mut where_: Vec<(usize, u32)> = self.members.iter().map(|m| (m.key, m.next)).collect();
        // N.B.: each batch's mean losses and predictions land in epoch-long buffers on the
        // device (reading them per batch would sync a GPU) and are reduced once per epoch.
        let g = self.members.len() as i64;
        let device = data.device;
        let mut losses = Tensor::zeros([g, total as i64], (Kind::Float, device));
        let mut predicted = Tensor::zeros([g, samples as i64], (Kind::Int64, device));
        let mut labels = source.labels_in_order();
        // Each member's rate for its epoch (a schedule moves it once per epoch).
        let lrs: Vec<f64> = self.members.iter().map(|m| m.spec.lr_at(m.next)).collect();
        let (arch, f) = self.fuse();
        f.optim.set_lrs(arch, &f.params, &lrs);
        let mut done = 0;
        loop {
            let stopped = self.stopped();
            if !stopped.is_empty() {
                let keep = self.leave(stopped, &mut [&mut losses, &mut predicted, &mut labels]);
                if keep.is_empty() {
                    return;
                }
                source.retain(&keep);
                keep_only(&mut drop_rngs, &keep);
                where_ = self.members.iter().map(|m| (m.key, m.next)).collect();
            }
            let Some(batch) = source.next() else { break };
            self.tuner.before_step();
            let keys = (dropouts > 0).then(|| {
                let keys: Vec<i64> = drop_rngs
                    .iter_mut()
                    .flat_map(|r| (0..dropouts).map(|_| r.below(1 << 32) as i64).collect::<Vec<_>>())
                    .collect();
                Tensor::from_slice(&keys).to_device(device).view([-1, dropouts as i64])
            });
            let (arch, f) = self.fuse();
            f.optim.zero_grad(&f.params);
            let g = f.params.members;
            let (logits, means) = match by_hand(arch, &f.params, device, full) {
                Some(grads) => {
                    let losses = &f.losses;
                    backprop::step(arch, &f.params, &batch.images, keys.as_ref(), &grads, |z| {
                        losses.batch_means(z, &batch.labels, g)
                    })
                }
                None => {
                    let logits = model::forward_images(arch, &f.params, &batch.images, keys.as_ref());
                    let means = f.losses.batch_means(&logits, &batch.labels, g);
                    backprop::backward_of_means(&means, g);
                    (logits, means)
                }
            };
            f.optim.step(&f.params);
            tch::no_grad(|| {
                let (at, len) = (batch.start as i64, batch.len as i64);
                let mut slot = losses.narrow(1, done as i64, 1);
                if g == 1 {
                    slot.copy_(&means);
                    let _ = logits.argmax_out(&predicted.narrow(1, at, len).view([-1]), -1, false);
                } else {
                    slot.copy_(&means.view([g, 1]));
                    predicted.narrow(1, at, len).copy_(&logits.argmax(-1, false).view([g, len]));
                }
            });
            done += 1;
            if done % report_every == 0 || done == total {
                self.host.batch_done(&where_, done, total);
            }
        }
        self.tuner.pass_ended();
        let train_seconds = started.elapsed().as_secs_f64();
        let n = samples.max(1) as f64;
        // Each batch's mean weighs by its size (the last one may be short).
        let sizes: Vec<f64> = (0..total).map(|i| (full.min(samples - i * full)) as f64 / n).collect();
        let weights = Tensor::from_slice(&sizes).to_device(device);
        let train_loss = (losses.to_kind(Kind::Double) * weights).sum_dim_intlist(1, false, None);
        let train_correct = predicted.eq_tensor(&labels).sum_dim_intlist(1, false, Kind::Int64);
        let mut per_member = [train_loss, train_correct];
        let Some((test_loss, test_correct)) = self.evaluate(&mut per_member) else { return };
        let [train_loss, train_correct] = per_member;
        let test_n = data.test.len().max(1) as f64;
        let seconds = started.elapsed().as_secs_f64();
        let mut leaving = Vec::new();
        for i in 0..self.members.len() {
            let (tl, te) = (train_loss.double_value(&[i as i64]), test_loss.double_value(&[i as i64]) / test_n);
            let m = EpochMetrics {
                epoch: self.members[i].next,
                train_loss: finite(tl),
                train_acc: train_correct.int64_value(&[i as i64]) as f64 / n,
                test_loss: finite(te),
                test_acc: test_correct.int64_value(&[i as i64]) as f64 / test_n,
                seconds,
                train_seconds,
                samples_per_second: samples as f64 / train_seconds.max(1e-9),
                diverged: !tl.is_finite() || !te.is_finite(),
                lr: Some(self.members[i].spec.lr_at(self.members[i].next)),
            };
            if let Err(e) = self.record(i, m) {
                leaving.push((i, Err(e)));
            } else if self.members[i].next > self.members[i].spec.epochs {
                let epochs = self.members[i].spec.epochs;
                leaving.push((i, Ok(Outcome::Finished { epochs })));
            } else if self.host.stopped(self.members[i].key) {
                // N.B.: stopped at the boundary (a search's rule, a cancel during
                // evaluation): it leaves now, so its place is free for a joiner this epoch.
                leaving.push((i, Ok(Outcome::Stopped { epochs_done: self.members[i].next - 1 })));
            }
        }
        if !leaving.is_empty() {
            self.leave(leaving, &mut []);
        }
    }

    /// Sends member `i`'s epoch to the host and writes its checkpoint.
    fn record(&mut self, i: usize, m: EpochMetrics) -> Result<(), TrainError> {
        let key = self.members[i].key;
        self.host.record_epoch(key, &m).map_err(TrainError::Sink)?;
        let member = &mut self.members[i];
        member.history.push(m);
        member.next += 1;
        if let (Some(store), Some(f), Some(arch)) = (self.host.checkpoints(key), &self.fused, &self.arch) {
            let weights = f.params.member(arch, &f.params.flat, i as i64);
            let stats = f.params.member_stats(arch, i as i64);
            let state = f.optim.member_state(arch, &f.params, i as i64);
            let saved = checkpoint::Saved { weights: &weights, stats: &stats, state: &state };
            checkpoint::save(store, &member.spec, &member.arch, member.next - 1, &saved, &member.history)?;
        }
        Ok(())
    }

    /// The whole test split in eval mode without gradients for every member: each one's
    /// summed loss and correct count, or `None` once no member is left. Members stopped
    /// meanwhile leave, and `per_member` is narrowed with them.
    fn evaluate(&mut self, per_member: &mut [Tensor; 2]) -> Option<(Tensor, Tensor)> {
        let test = &self.data.test;
        let n = test.len() as i64;
        let device = self.data.device;
        let g = self.members.len() as i64;
        let mut loss_sum = Tensor::zeros([g], (Kind::Double, device));
        let mut correct = Tensor::zeros([g], (Kind::Int64, device));
        let mut at = 0;
        while at < n {
            let stopped = self.stopped();
            if !stopped.is_empty() {
                let [a, b] = per_member;
                if self.leave(stopped, &mut [&mut loss_sum, &mut correct, a, b]).is_empty() {
                    return None;
                }
            }
            let len = EVAL_CHUNK.min(n - at);
            let images = test.images_from(at, len);
            let labels = test.labels_from(at, len);
            let kinds: Vec<LossKind> = self.members.iter().map(|m| m.spec.loss).collect();
            let (arch, f) = self.fuse();
            tch::no_grad(|| {
                for (m, kind) in kinds.iter().enumerate() {
                    let logits = model::forward_member(arch, &f.params, m as i64, &images);
                    let loss = loss_fn(*kind, &logits, &labels).to_kind(Kind::Double) * len as f64;
                    let _ = loss_sum.get(m as i64).g_add_(&loss);
                    let hits = logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
                    let _ = correct.get(m as i64).g_add_(&hits);
                }
            });
            at += len;
        }
        Some((loss_sum, correct))
    }
}
