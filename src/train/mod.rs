//! Training: blocking code only — no tokio, no SQL. A run is put together from separable
//! parts so that a fused group of models can later stand where one model stands:
//! a batch source (`data`), a model (`model`), an optimiser step (`sgd`), a metric sink
//! (`metrics`), and checkpoints (`checkpoint`). `train` is the one entry point; the service
//! calls it from its own OS thread with a stop flag.

pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod metrics;
pub mod model;
pub mod rng;
pub mod sgd;

use crate::spec::{Augmentation, LossKind, Spec};
use augment::AugmentParams;
use data::{normalise, BatchSource, Cifar10, Split};
use metrics::{finite, EpochMetrics, MetricSink};
use model::Net;
use rng::EpochRng;
use sgd::Sgd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

pub use checkpoint::{CheckpointError, CheckpointStore, DirStore};
pub use data::DataError;

/// Test images evaluated per forward pass.
const EVAL_CHUNK: i64 = 1000;

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
}

/// The loss of logits [B, 10] against labels [B], as a scalar mean per sample.
pub fn loss_fn(kind: LossKind, logits: &Tensor, labels: &Tensor) -> Tensor {
    match kind {
        LossKind::CrossEntropy => logits.cross_entropy_for_logits(labels),
        // Mean over all B×10 outputs, as nn.MSELoss() against one-hot targets.
        LossKind::Mse => logits.mse_loss(&labels.one_hot(data::CLASSES).to_kind(logits.kind()), Reduction::Mean),
    }
}

pub use model::parameter_count;

/// Trains `spec` on `data`, sending every epoch to `sink`, until done or `stop` is raised
/// (checked between mini-batches). Resumes from `opts.checkpoints` when it holds a
/// checkpoint of the same spec. libtorch errors (a CUDA out-of-memory, say) come back as
/// `TrainError::Torch` instead of unwinding through the caller.
pub fn train(
    spec: &Spec,
    data: &Cifar10,
    opts: &TrainOptions,
    sink: &mut dyn MetricSink,
    stop: &AtomicBool,
) -> Result<Outcome, TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(spec, data, opts, sink, stop))).unwrap_or_else(
        |panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            // tch's messages carry a C++ backtrace after the first line; keep the reason.
            Err(TrainError::Torch(msg.lines().next().unwrap_or_default().to_string()))
        },
    )
}

fn run(
    spec: &Spec,
    data: &Cifar10,
    opts: &TrainOptions,
    sink: &mut dyn MetricSink,
    stop: &AtomicBool,
) -> Result<Outcome, TrainError> {
    if let Some(n) = opts.threads {
        tch::set_num_threads(n);
    }
    let net = Net::new(spec, data.device);
    let mut opt = Sgd::new(&net.params, spec.lr, spec.momentum, spec.weight_decay);
    let mut history = Vec::new();
    let mut first = 1;
    if let Some(store) = opts.checkpoints {
        if let Some(restored) = checkpoint::load(store, spec, &net.params, &mut opt)? {
            first = restored.epoch + 1;
            history = restored.metrics;
        }
    }
    let augment = (!spec.augment.is_empty()).then(|| AugmentParams {
        crop: spec.has(Augmentation::RandomResizedCrop),
        flip: spec.has(Augmentation::HorizontalFlip),
    });
    let limit = spec.train_limit.map_or(usize::MAX, |l| l as usize);

    for epoch in first..=spec.epochs {
        let started = Instant::now();
        let source = BatchSource::new(
            &data.train,
            limit,
            spec.batch_size as usize,
            augment,
            EpochRng::new(spec.seed, epoch.into()),
        );
        let Some((train_loss, train_acc)) = train_epoch(spec, &net, &mut opt, source, epoch, sink, stop) else {
            return Ok(Outcome::Stopped { epochs_done: epoch - 1 });
        };
        let train_seconds = started.elapsed().as_secs_f64();
        let samples = limit.min(data.train.len());
        let Some((test_loss, test_acc)) = evaluate(spec, &net, &data.test, stop) else {
            return Ok(Outcome::Stopped { epochs_done: epoch - 1 });
        };
        let m = EpochMetrics {
            epoch,
            train_loss: finite(train_loss),
            train_acc,
            test_loss: finite(test_loss),
            test_acc,
            seconds: started.elapsed().as_secs_f64(),
            train_seconds,
            samples_per_second: samples as f64 / train_seconds.max(1e-9),
            diverged: !train_loss.is_finite() || !test_loss.is_finite(),
        };
        sink.record_epoch(&m).map_err(TrainError::Sink)?;
        history.push(m);
        if let Some(store) = opts.checkpoints {
            checkpoint::save(store, spec, epoch, &net.params, &opt, &history)?;
        }
    }
    Ok(Outcome::Finished { epochs: spec.epochs })
}

/// One pass over the training batches; `None` if stopped. Returns (mean loss, accuracy).
fn train_epoch(
    spec: &Spec,
    net: &Net,
    opt: &mut Sgd,
    source: BatchSource,
    epoch: u32,
    sink: &mut dyn MetricSink,
    stop: &AtomicBool,
) -> Option<(f64, f64)> {
    let device = net.params.flat.device();
    let total = source.batches();
    let samples = source.samples();
    let full = spec.batch_size as usize;
    let report_every = (total / 100).max(1);
    // N.B.: running sums stay on the device (reading them per batch would sync a GPU), and
    // each costs one operation per step: the loss sum counts full batches as 1, and each
    // prediction lands in its slot of `predicted`, compared with the labels once per epoch.
    let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
    let predicted = Tensor::zeros([samples as i64], (Kind::Int64, device));
    let labels = source.labels_in_order();
    for (i, batch) in source.enumerate() {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        opt.zero_grad(&net.params);
        let logits = net.forward_t(&batch.images, true);
        let loss = loss_fn(spec.loss, &logits, &batch.labels);
        loss.backward();
        opt.step(&net.params);
        tch::no_grad(|| {
            if batch.len == full {
                let _ = loss_sum.g_add_(&loss);
            } else {
                let _ = loss_sum.g_add_(&(&loss * (batch.len as f64 / full as f64)));
            }
            let _ = logits.argmax_out(&predicted.narrow(0, batch.start as i64, batch.len as i64), 1, false);
        });
        if (i + 1) % report_every == 0 || i + 1 == total {
            sink.batch_done(epoch, i + 1, total);
        }
    }
    let n = samples.max(1) as f64;
    let correct = predicted.eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
    Some((loss_sum.double_value(&[]) * full as f64 / n, correct as f64 / n))
}

/// The whole test split in eval mode without gradients; `None` if stopped.
fn evaluate(spec: &Spec, net: &Net, test: &Split, stop: &AtomicBool) -> Option<(f64, f64)> {
    let n = test.len() as i64;
    tch::no_grad(|| {
        let mut loss_sum = 0f64;
        let mut correct = 0i64;
        let mut at = 0;
        while at < n {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let len = EVAL_CHUNK.min(n - at);
            let images = normalise(&test.images.narrow(0, at, len));
            let labels = test.labels.narrow(0, at, len);
            let logits = net.forward_t(&images, false);
            loss_sum += loss_fn(spec.loss, &logits, &labels).double_value(&[]) * len as f64;
            correct += logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
            at += len;
        }
        Some((loss_sum / n.max(1) as f64, correct as f64 / n.max(1) as f64))
    })
}
