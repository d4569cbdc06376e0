//! The training engine, end to end on the tests' own small dataset.

use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Device, Kind, Tensor};
use trainyard::dataset::CIFAR10;
use trainyard::network::{parameter_count, Architecture};
use trainyard::spec::Spec;
use trainyard::train::augment::{self, AugmentParams, ImagePlan};
use trainyard::train::data::{self, Data, DataError};
use trainyard::train::metrics::{EpochMetrics, MetricSink, VecSink};
use trainyard::train::model::{self, GroupParams};
use trainyard::train::optim::adadelta::Adadelta;
use trainyard::train::optim::adagrad::Adagrad;
use trainyard::train::optim::adam::Adam;
use trainyard::train::optim::rmsprop::Rmsprop;
use trainyard::train::optim::sgd::{MemberHyper, Sgd};
use trainyard::train::optim::{self, Optimizer};
use trainyard::train::rng::EpochRng;
use trainyard::train::{self, CheckpointStore, DirStore, Outcome, TrainError, TrainOptions};

/// 5 × 100 training and 200 test images of the synthetic, learnable classes.
fn small_data() -> (tempfile::TempDir, Data) {
    let dir = tempfile::tempdir().unwrap();
    data::write_synthetic(dir.path(), 100, 200, 3).unwrap();
    let data = Data::load(&CIFAR10, dir.path(), Device::Cpu).unwrap();
    (dir, data)
}

fn spec(v: serde_json::Value) -> Spec {
    let mut v = v;
    v.as_object_mut().unwrap().entry("seed").or_insert(json!(11));
    Spec::parse(&v).unwrap()
}

fn run(spec: &Spec, data: &Data, ckpt: Option<&Path>) -> Vec<EpochMetrics> {
    let mut sink = VecSink::default();
    let store = ckpt.map(DirStore::new);
    let opts = TrainOptions { checkpoints: store.as_ref().map(|s| s as &dyn CheckpointStore), threads: Some(1) };
    let outcome = train::train(spec, data, &opts, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(outcome, Outcome::Finished { epochs: spec.epochs });
    sink.0
}

fn timeless(m: &[EpochMetrics]) -> Vec<EpochMetrics> {
    m.iter().map(EpochMetrics::without_timings).collect()
}

#[test]
fn each_model_learns_well_above_chance_in_a_few_epochs() {
    let (_dir, data) = small_data();
    // N.B.: 8 epochs, not 4: after 4 the CNN is still erratic (its test accuracy at epoch 4
    // ranged 52–100% over seeds and CPUs); from about epoch 6 every seed tried is at 100%.
    for model in ["linear", "mlp", "cnn"] {
        let m = run(&spec(json!({"model": model, "epochs": 8, "batch_size": 8, "lr": 0.01})), &data, None);
        assert_eq!(m.iter().map(|e| e.epoch).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
        let last = m.last().unwrap();
        eprintln!("{model}: test accuracy {:.3} after 8 epochs", last.test_acc);
        assert!(last.test_acc > 0.6, "{model} reached only {} test accuracy (chance is 0.1)", last.test_acc);
        assert!(last.train_loss.unwrap() < m[0].train_loss.unwrap(), "{model}: loss did not fall: {m:?}");
        assert!(last.samples_per_second > 0.0 && last.seconds >= last.train_seconds);
    }
}

#[test]
fn the_three_models_have_the_assignments_parameter_counts() {
    assert_eq!(parameter_count(&spec(json!({"model": "linear"}))), 30_730);
    assert_eq!(parameter_count(&spec(json!({"model": "mlp"}))), 379_774);
    assert_eq!(parameter_count(&spec(json!({"model": "mlp", "activation": "none"}))), 379_774);
    assert_eq!(parameter_count(&spec(json!({"model": "cnn"}))), 62_006);
    assert_eq!(parameter_count(&spec(json!({"model": "mlp", "hidden": [10]}))), 3072 * 10 + 10 + 10 * 10 + 10);
    for model in ["linear", "mlp", "cnn"] {
        let s = spec(json!({"model": model}));
        let made = one(&s).tensors.iter().map(|t| t.numel() as i64).sum::<i64>();
        assert_eq!(made, parameter_count(&s), "{model}");
    }
}

#[test]
fn the_memory_estimate_counts_state_and_the_larger_of_training_and_evaluation_activations() {
    let cnn = Architecture::of(&spec(json!({"model": "cnn"})));
    let e = cnn.estimate(4, 3);
    assert_eq!(e.parameters, 62_006);
    assert_eq!(e.state_bytes, 62_006 * 12, "weights, gradients and momentum in f32");
    // Evaluation (1,000 images) outweighs a batch of 4; a batch of 50,000 outweighs it.
    assert_eq!(e.activation_bytes, cnn.estimate(1, 3).activation_bytes);
    let big = cnn.estimate(50_000, 3);
    assert!(big.activation_bytes > 100 * e.activation_bytes, "{big:?} vs {e:?}");
    assert!(big.bytes() > 2_000_000_000 && big.bytes() < 8_000_000_000, "{big:?}");
}

#[test]
fn a_group_holds_no_more_members_than_fit_the_per_job_memory_budget_together() {
    let settings = |max_group, mb| trainyard::worker::WorkerSettings {
        data_dir: "x".into(),
        lease: std::time::Duration::from_secs(1),
        heartbeat: std::time::Duration::from_secs(1),
        max_attempts: 1,
        threads: None,
        max_running_per_user: 0,
        fetch: trainyard::fetch::Source { url: String::new(), md5: String::new(), mirror: None },
        max_group,
        max_job_memory_mb: mb,
        retry: std::time::Duration::from_secs(60),
        alive_every: std::time::Duration::from_secs(1),
        max_datasets_in_memory: 3,
        lend_cores: false,
        workers: 1,
    };
    let cnn = spec(json!({"model": "cnn"}));
    assert_eq!(settings(None, 4096).max_group_for(Device::Cpu, &cnn), 8, "the CPU default");
    assert_eq!(settings(None, 4096).max_group_for(Device::Cuda(0), &cnn), 32, "the GPU default");
    assert_eq!(settings(Some(3), 4096).max_group_for(Device::Cpu, &cnn), 3);
    // An MLP of 4096 hidden units at batch 1000 needs about 210 MB: 4 fit in 1 GB.
    let wide = spec(json!({"model": "mlp", "hidden": [4096], "batch_size": 1000}));
    let each = Architecture::of(&wide).estimate(1000, 3).bytes();
    assert_eq!(settings(None, 1024).max_group_for(Device::Cpu, &wide) as i64, (1024 << 20) / each);
    assert!((2..8).contains(&settings(None, 1024).max_group_for(Device::Cpu, &wide)));
    assert_eq!(settings(None, 1).max_group_for(Device::Cpu, &wide), 1, "always at least the job itself");
    // Convolutions at a large batch train alone on a CPU (fusing them is slower there), unless
    // the admin says otherwise; a GPU fuses them.
    let big = spec(json!({"model": "cnn", "batch_size": 1000}));
    assert_eq!(settings(None, 4096).max_group_for(Device::Cpu, &big), 1);
    assert_eq!(settings(Some(4), 4096).max_group_for(Device::Cpu, &big), 4);
    assert!(settings(None, 40_960).max_group_for(Device::Cuda(0), &big) > 1);
    assert_eq!(settings(None, 4096).max_group_for(Device::Cpu, &spec(json!({"model": "cnn", "batch_size": 64}))), 8);
    let mlp = spec(json!({"model": "mlp", "batch_size": 1000}));
    assert!(settings(None, 4096).max_group_for(Device::Cpu, &mlp) > 1, "linear layers still fuse");
}

/// The spec's model with its initial weights, as a group of one.
fn one(s: &Spec) -> GroupParams {
    let arch = Architecture::of(s);
    let weights = Tensor::from_slice(&model::initial_values(&arch, s.seed).unwrap());
    GroupParams::from_members(&arch, &[weights], &[model::initial_stats(&arch)], Device::Cpu)
}

fn forward_one(s: &Spec, x: &Tensor) -> Tensor {
    model::forward_member(&Architecture::of(s), &one(s), 0, x)
}

#[test]
fn relu_and_no_activation_give_different_networks_from_the_same_weights() {
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let with = forward_one(&spec(json!({"model": "mlp"})), &x);
    let without = forward_one(&spec(json!({"model": "mlp", "activation": "none"})), &x);
    assert!(with.allclose(&with.copy(), 0.0, 0.0, false));
    assert!(!with.allclose(&without, 1e-4, 1e-4, false), "activation none must remove the ReLUs");
}

/// A 1×3×32×32 image whose value at (y, x) is x + 32·y, channel-independent.
fn coordinates_image() -> Tensor {
    Tensor::arange(32 * 32, (Kind::Float, Device::Cpu)).view([1, 1, 32, 32]).repeat([1, 3, 1, 1])
}

#[test]
fn a_full_box_with_flip_mirrors_the_image_exactly() {
    let img = coordinates_image();
    let flipped = augment::apply(&img, &[ImagePlan { flip: true, ..ImagePlan::whole(32, 32) }]);
    assert_eq!(flipped.size(), [1, 3, 32, 32]);
    let expected = img.flip([3]);
    assert!(flipped.allclose(&expected, 1e-4, 1e-3, false), "max diff {}", (flipped - expected).abs().max());
    let same = augment::apply(&img, &[ImagePlan::whole(32, 32)]);
    assert!(same.allclose(&img, 1e-4, 1e-3, false));
}

#[test]
fn a_crop_box_is_scaled_back_to_32_by_32_from_inside_the_box() {
    // Top-left 20×20 is +1, the rest -1: a 16×16 box at the corner sees only +1.
    let img = Tensor::full([1, 3, 32, 32], -1.0, (Kind::Float, Device::Cpu));
    let _ = img.narrow(2, 0, 20).narrow(3, 0, 20).fill_(1.0);
    let plan = ImagePlan { top: 0, left: 0, height: 16, width: 16, flip: false };
    let out = augment::apply(&img, &[plan]);
    assert_eq!(out.size(), [1, 3, 32, 32]);
    assert!(out.allclose(&Tensor::ones_like(&out), 1e-5, 1e-5, false), "min {}", out.min());
    // A box on the bottom-right corner sees only -1, though +1 pixels border it.
    let out = augment::apply(&img, &[ImagePlan { top: 20, left: 20, height: 12, width: 12, flip: false }]);
    assert_eq!(out.max().double_value(&[]), -1.0);
    // Two images in one batch, each with its own box.
    let two = Tensor::cat(&[&img, &img], 0);
    let out = augment::apply(&two, &[plan, ImagePlan { top: 20, left: 20, height: 12, width: 12, flip: true }]);
    assert_eq!(out.get(0).min().double_value(&[]), 1.0);
    assert_eq!(out.get(1).max().double_value(&[]), -1.0);
    // On the coordinates image, a crop of columns 8..24 starts near column 8 and ends near 23.
    let out =
        augment::apply(&coordinates_image(), &[ImagePlan { top: 0, left: 8, height: 32, width: 16, flip: false }]);
    // As torchvision's resize of the crop: output column d samples crop column (d + 0.5)/2 - 0.5,
    // clamped to the crop's first and last pixel.
    let row0 = out.get(0).get(0).get(0);
    for d in 0..32 {
        let expected = 8.0 + ((d as f64 + 0.5) / 2.0 - 0.5).clamp(0.0, 15.0);
        assert!((row0.double_value(&[d]) - expected).abs() < 1e-4, "column {d}: {row0}");
    }
}

#[test]
fn random_crops_follow_torchvisions_scale_and_ratio_and_flips_are_fair() {
    let params = AugmentParams { crop: true, flip: true, height: 32, width: 32 };
    let plans = params.sample(&mut EpochRng::new(1, 1), 4000);
    let mut flips = 0;
    let mut small = 0;
    for p in &plans {
        let area = (p.width * p.height) as f64 / 1024.0;
        let ratio = p.width as f64 / p.height as f64;
        assert!((0.06..=1.0).contains(&area), "{p:?}");
        assert!((0.6..=1.45).contains(&ratio), "{p:?}");
        assert!(p.top >= 0 && p.left >= 0 && p.top + p.height <= 32 && p.left + p.width <= 32, "{p:?}");
        flips += p.flip as usize;
        small += (area < 0.5) as usize;
    }
    assert!((1800..2200).contains(&flips), "{flips} flips of 4000");
    assert!(small > 1000, "scale 0.08–1 makes many small crops, got {small}");
}

#[test]
fn augmented_batches_keep_shape_and_value_range_and_differ_from_the_input() {
    let (_dir, data) = small_data();
    let x = data.train.images_from(0, 64);
    let plans = AugmentParams { crop: true, flip: true, height: 32, width: 32 }.sample(&mut EpochRng::new(2, 1), 64);
    let y = augment::apply(&x, &plans);
    assert_eq!(y.size(), x.size());
    assert!(y.min().double_value(&[]) >= -1.0 - 1e-5 && y.max().double_value(&[]) <= 1.0 + 1e-5);
    assert!((&y - &x).abs().mean(Kind::Float).double_value(&[]) > 0.01);
}

#[test]
fn augmentation_trains_and_changes_the_run() {
    let (_dir, data) = small_data();
    let plain = run(&spec(json!({"epochs": 2, "batch_size": 16})), &data, None);
    let aug = run(&spec(json!({"epochs": 2, "batch_size": 16, "augment": true})), &data, None);
    assert_ne!(timeless(&plain), timeless(&aug));
    assert!(aug.iter().all(|m| m.train_loss.is_some() && !m.diverged));
}

#[test]
fn both_losses_compute_what_they_should_and_train() {
    let labels = Tensor::from_slice(&[3i64, 7]);
    let zeros = Tensor::zeros([2, 10], (Kind::Float, Device::Cpu));
    let ce = train::loss_fn(trainyard::spec::LossKind::CrossEntropy, &zeros, &labels).double_value(&[]);
    assert!((ce - 10f64.ln()).abs() < 1e-6, "uniform logits give ln 10, got {ce}");
    let mse = train::loss_fn(trainyard::spec::LossKind::Mse, &zeros, &labels).double_value(&[]);
    assert!((mse - 0.1).abs() < 1e-7, "zero outputs against one-hot: 2 ones in 20 values, got {mse}");

    let (_dir, data) = small_data();
    let m = run(&spec(json!({"model": "mlp", "loss": "mse", "epochs": 3, "batch_size": 8, "lr": 0.05})), &data, None);
    assert!(m[2].train_loss.unwrap() < m[0].train_loss.unwrap(), "{m:?}");
    assert!(m[2].test_acc > 0.5, "{m:?}");
}

#[test]
fn learning_rate_10_diverges_but_runs_to_its_last_epoch_with_null_losses() {
    let (_dir, data) = small_data();
    // The MLP with lr 10 overflows to NaN in its first epoch (the CNN's ReLUs die first, finitely).
    let m = run(&spec(json!({"model": "mlp", "lr": 10.0, "epochs": 3, "batch_size": 4})), &data, None);
    assert_eq!(m.len(), 3);
    let last = &m[2];
    assert!(last.diverged, "{last:?}");
    assert_eq!(last.train_loss, None);
    let text = serde_json::to_string(&m).unwrap();
    assert!(text.contains("\"train_loss\":null"), "{text}");
    assert!(!text.contains("NaN") && !text.contains("inf"));
    let back: Vec<EpochMetrics> = serde_json::from_str(&text).unwrap();
    assert_eq!(back.len(), 3);
}

#[test]
fn the_same_spec_and_seed_give_identical_metrics_and_another_seed_does_not() {
    let (_dir, data) = small_data();
    let s = spec(json!({"epochs": 2, "augment": true, "batch_size": 8}));
    let a = run(&s, &data, None);
    let b = run(&s, &data, None);
    assert_eq!(timeless(&a), timeless(&b));
    let c = run(&Spec { seed: s.seed + 1, ..s.clone() }, &data, None);
    assert_ne!(timeless(&a), timeless(&c));
}

/// Raises the stop flag once `after` epochs are recorded.
struct StopAfter<'a> {
    inner: VecSink,
    after: u32,
    stop: &'a AtomicBool,
}

impl MetricSink for StopAfter<'_> {
    fn record_epoch(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        self.inner.record_epoch(m)?;
        if m.epoch >= self.after {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_metrics_as_an_uninterrupted_run() {
    let (_dir, data) = small_data();
    let s = spec(json!({"epochs": 4, "augment": true, "batch_size": 8, "weight_decay": 0.001}));
    let straight = run(&s, &data, None);

    let ckpt = tempfile::tempdir().unwrap();
    let first = stopped_after_two_epochs(&s, &data, ckpt.path());
    assert!(ckpt.path().join(train::checkpoint::FILE).exists());

    let resumed = run(&s, &data, Some(ckpt.path()));
    assert_eq!(resumed.iter().map(|m| m.epoch).collect::<Vec<_>>(), [3, 4], "only the missing epochs run");
    assert_eq!(timeless(&straight[2..]), timeless(&resumed));
    assert_eq!(timeless(&straight[..2]), timeless(&first));
    // A finished run resumed again trains nothing.
    assert!(run(&s, &data, Some(ckpt.path())).is_empty());
}

#[test]
fn each_optimiser_resumed_mid_schedule_gives_the_rows_of_an_uninterrupted_run() {
    let (_dir, data) = small_data();
    for o in [
        json!({"optimizer": "adam", "amsgrad": true, "lr_schedule": "cosine", "warmup_epochs": 1}),
        json!({"optimizer": "adamw", "lr_schedule": {"step": {"every": 1, "gamma": 0.5}}}),
        json!({"optimizer": "rmsprop", "momentum": 0.5, "lr_schedule": {"exponential": 0.7}}),
        json!({"optimizer": "adagrad", "lr_schedule": {"multistep": [2]}}),
        json!({"optimizer": "adadelta", "lr_schedule": {"step": 1}}),
        json!({"optimizer": "sgd", "nesterov": true, "lr_schedule": "cosine"}),
    ] {
        let mut v = o.clone();
        v["epochs"] = json!(4);
        v["batch_size"] = json!(16);
        v["model"] = json!("linear");
        let s = spec(v);
        let straight = run(&s, &data, None);
        let rates: Vec<f64> = straight.iter().map(|m| m.lr.unwrap()).collect();
        assert_eq!(rates, (1..=4).map(|e| s.lr_at(e)).collect::<Vec<_>>(), "{o}: each row its epoch's rate");
        assert!(rates.windows(2).any(|w| w[0] != w[1]), "{o}: the schedule moves the rate");
        let ckpt = tempfile::tempdir().unwrap();
        let first = stopped_after_two_epochs(&s, &data, ckpt.path());
        let bytes = std::fs::read(ckpt.path().join(train::checkpoint::FILE)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for buffer in trainyard::optimizer::state_buffers(&s) {
            assert!(st.tensor(&format!("{buffer}.fc.weight")).is_ok(), "{o}: {buffer} is checkpointed");
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let steps = meta.metadata().as_ref().unwrap()["optimizer_step"].clone();
        assert_eq!(steps, (2 * data.train.len().div_ceil(16)).to_string(), "{o}: the step count after two epochs");
        let resumed = run(&s, &data, Some(ckpt.path()));
        assert_eq!(timeless(&straight[..2]), timeless(&first), "{o}");
        assert_eq!(timeless(&straight[2..]), timeless(&resumed), "{o}: state, step count and schedule resumed");
    }
}

#[test]
fn an_sgd_checkpoint_from_before_step_counts_and_checksums_still_resumes_exactly() {
    let (_dir, data) = small_data();
    let s = spec(json!({"model": "linear", "epochs": 4, "batch_size": 16}));
    let straight = run(&s, &data, None);
    let ckpt = tempfile::tempdir().unwrap();
    stopped_after_two_epochs(&s, &data, ckpt.path());
    // The file as an older trainyard wrote it: no optimizer_step, no sha256, and the spec as
    // it was stored then (no optimiser fields).
    let path = ckpt.path().join(train::checkpoint::FILE);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    assert!(meta.remove("optimizer_step").is_some() && meta.remove("sha256").is_some());
    let mut old: serde_json::Value = serde_json::from_str(&meta["spec"]).unwrap();
    for field in ["optimizer", "nesterov", "lr_schedule", "warmup_epochs"] {
        old.as_object_mut().unwrap().remove(field);
    }
    meta.insert("spec".into(), old.to_string());
    let tensors = st.tensors();
    assert!(tensors.iter().any(|(n, _)| n == "momentum.fc.weight"));
    std::fs::write(&path, safetensors::tensor::serialize(tensors, &Some(meta)).unwrap()).unwrap();
    let resumed = run(&s, &data, Some(ckpt.path()));
    assert_eq!(resumed.iter().map(|m| m.epoch).collect::<Vec<_>>(), [3, 4], "resumed, not started again");
    assert_eq!(timeless(&straight[2..]), timeless(&resumed), "its momentum resumed");
}

#[test]
fn a_network_with_batchnorm_and_dropout_resumes_its_running_statistics_and_masks_exactly() {
    let (_dir, data) = small_data();
    let layers = json!([{"conv2d": {"out": 4, "kernel": 5}}, "batchnorm", "relu", {"maxpool2d": 2}, "flatten",
        {"dropout": 0.25}, {"linear": 32}, "batchnorm", "tanh", {"linear": 10}]);
    let s = spec(json!({"layers": layers, "epochs": 4, "batch_size": 10}));
    let straight = run(&s, &data, None);
    let ckpt = tempfile::tempdir().unwrap();
    let first = stopped_after_two_epochs(&s, &data, ckpt.path());
    let bytes = std::fs::read(ckpt.path().join(train::checkpoint::FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    assert!(names.contains(&"1.running_mean".to_string()) && names.contains(&"7.running_var".to_string()), "{names:?}");
    assert!(names.contains(&"momentum.0.weight".to_string()), "{names:?}");
    let resumed = run(&s, &data, Some(ckpt.path()));
    assert_eq!(timeless(&straight[..2]), timeless(&first));
    assert_eq!(timeless(&straight[2..]), timeless(&resumed), "statistics, momentum and dropout keys resumed");
}

#[test]
fn a_batchnorm_that_would_meet_a_last_batch_of_one_on_the_data_loaded_is_refused_with_why() {
    // 500 training images in batches of 499 leave one: batch norm on features cannot train on it
    // (the spec was fine on CIFAR-10's 50,000).
    let (_dir, data) = small_data();
    let s = spec(json!({"layers": ["flatten", "batchnorm", {"linear": 10}], "batch_size": 499, "epochs": 1}));
    let err = train::train(&s, &data, &TrainOptions::default(), &mut VecSink::default(), &AtomicBool::new(false))
        .unwrap_err();
    assert!(matches!(err, TrainError::Incompatible(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("layers[1]: batchnorm needs more than one value") && msg.contains("has 500 training images"),
        "{msg}"
    );
    let fine = spec(json!({"layers": ["flatten", "batchnorm", {"linear": 10}], "batch_size": 250, "epochs": 1}));
    assert!(run(&fine, &data, None)[0].test_loss.is_some_and(f64::is_finite));
}

#[test]
fn a_checkpoint_of_another_spec_is_refused_and_one_given_more_epochs_trains_on() {
    let (_dir, data) = small_data();
    let ckpt = tempfile::tempdir().unwrap();
    let first = run(&spec(json!({"epochs": 1, "model": "linear"})), &data, Some(ckpt.path()));
    let mut sink = VecSink::default();
    let store = DirStore::new(ckpt.path());
    let opts = TrainOptions { checkpoints: Some(&store), threads: Some(1) };
    let other = spec(json!({"epochs": 2, "model": "linear", "lr": 0.01}));
    let err = train::train(&other, &data, &opts, &mut sink, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains("another experiment spec"), "{err}");
    // The same experiment with more epochs (a trial resumed after it stopped early) goes on
    // from its checkpoint: epoch 2 only, after the same epoch 1 as the two-epoch run's.
    let more = spec(json!({"epochs": 2, "model": "linear"}));
    let out = train::train(&more, &data, &opts, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(out, Outcome::Finished { epochs: 2 });
    let epochs: Vec<u32> = sink.0.iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, [2], "only the epoch it had not done");
    let whole = run(&more, &data, None);
    assert_eq!(first[0].without_timings(), whole[0].without_timings());
    assert_eq!(sink.0[0].without_timings(), whole[1].without_timings(), "as if it had run two epochs at once");
}

/// Raises the stop flag on the first progress report inside an epoch.
struct StopMidEpoch<'a>(&'a AtomicBool);

impl MetricSink for StopMidEpoch<'_> {
    fn record_epoch(&mut self, _: &EpochMetrics) -> anyhow::Result<()> {
        panic!("no epoch may finish after the stop flag");
    }
    fn batch_done(&mut self, _epoch: u32, _done: usize, _total: usize) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn the_stop_flag_ends_a_run_between_mini_batches() {
    let (_dir, data) = small_data();
    let stop = AtomicBool::new(false);
    let opts = TrainOptions::default();
    let t = std::time::Instant::now();
    let out = train::train(&spec(json!({"epochs": 50})), &data, &opts, &mut StopMidEpoch(&stop), &stop).unwrap();
    assert_eq!(out, Outcome::Stopped { epochs_done: 0 });
    assert!(t.elapsed().as_secs() < 5);
}

/// Raises the stop flag when the training pass of the first epoch ends, so it is up while
/// the test split is evaluated.
struct StopBeforeEvaluation<'a>(&'a AtomicBool);

impl MetricSink for StopBeforeEvaluation<'_> {
    fn record_epoch(&mut self, _: &EpochMetrics) -> anyhow::Result<()> {
        panic!("an epoch whose evaluation was stopped may not be recorded");
    }
    fn batch_done(&mut self, _epoch: u32, done: usize, total: usize) {
        if done == total {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn the_stop_flag_ends_a_run_during_evaluation_too() {
    let (_dir, data) = small_data();
    let stop = AtomicBool::new(false);
    let out = train::train(
        &spec(json!({"epochs": 3, "model": "linear"})),
        &data,
        &TrainOptions::default(),
        &mut StopBeforeEvaluation(&stop),
        &stop,
    )
    .unwrap();
    assert_eq!(out, Outcome::Stopped { epochs_done: 0 });
}

#[test]
fn a_sink_error_stops_the_run_with_that_error() {
    struct Refuse;
    impl MetricSink for Refuse {
        fn record_epoch(&mut self, _: &EpochMetrics) -> anyhow::Result<()> {
            anyhow::bail!("lease lost")
        }
    }
    let (_dir, data) = small_data();
    let err = train::train(
        &spec(json!({"epochs": 3})),
        &data,
        &TrainOptions::default(),
        &mut Refuse,
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Sink(_)) && err.to_string().contains("lease lost"), "{err}");
}

#[test]
fn a_torch_failure_comes_back_as_an_error_not_a_panic() {
    let (_dir, data) = small_data();
    // Labels past the classes make libtorch's loss fail.
    let mut labels = data.train.labels();
    let _ = labels.fill_(12);
    let bad = Data { train: data::Split::new(data.train.raw_images(), labels, &CIFAR10), ..data };
    let err = train::train(
        &spec(json!({"epochs": 1})),
        &bad,
        &TrainOptions::default(),
        &mut VecSink::default(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Torch(_)), "{err}");
    assert!(!err.to_string().is_empty());
}

#[test]
fn our_sgd_matches_libtorchs_sgd_for_each_member_with_its_own_settings() {
    let s = spec(json!({"model": "linear"}));
    let arch = Architecture::of(&s);
    let x = Tensor::randn([2, 8, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7]);
    let hyper = [
        MemberHyper { lr: 0.05, momentum: 0.9, weight_decay: 0.01, nesterov: false },
        MemberHyper { lr: 0.2, momentum: 0.0, weight_decay: 0.0, nesterov: false },
    ];
    let rows: Vec<Tensor> =
        [1, 2].iter().map(|&seed| Tensor::from_slice(&model::initial_values(&arch, seed).unwrap())).collect();
    let ours = GroupParams::from_members(&arch, &rows, &[], Device::Cpu);
    let mut opt = Sgd::from_hyper(&arch, &ours, &hyper);
    use tch::nn::OptimizerConfig;
    let theirs: Vec<_> = hyper
        .iter()
        .enumerate()
        .map(|(m, h)| {
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let w = vs.root().var_copy("w", &ours.tensors[0].get(m as i64));
            let b = vs.root().var_copy("b", &ours.tensors[1].get(m as i64));
            let cfg = tch::nn::Sgd { momentum: h.momentum, dampening: 0.0, wd: h.weight_decay, nesterov: false };
            (w, b, cfg.build(&vs, h.lr).unwrap(), vs)
        })
        .collect();
    let mut theirs = theirs;
    for _ in 0..4 {
        opt.zero_grad(&ours);
        let logits = model::forward(&arch, &ours, &x.view([16, 3, 32, 32]), None).view([2, 8, 10]);
        (logits.get(0).cross_entropy_for_logits(&y) + logits.get(1).cross_entropy_for_logits(&y)).backward();
        opt.step(&ours);
        for (m, (w, b, o, _)) in theirs.iter_mut().enumerate() {
            o.zero_grad();
            x.get(m as i64).flatten(1, -1).linear(&*w, Some(&*b)).cross_entropy_for_logits(&y).backward();
            o.step();
        }
    }
    for (m, (w, b, _, _)) in theirs.iter().enumerate() {
        let ow = ours.tensors[0].get(m as i64);
        assert!(ow.allclose(w, 1e-5, 1e-6, false), "member {m}: max diff {}", (ow - w).abs().max());
        assert!(ours.tensors[1].get(m as i64).allclose(b, 1e-5, 1e-6, false));
    }
}

#[test]
fn the_one_pass_sgd_step_equals_the_tensor_operations_bit_for_bit_and_leaves_the_gradients_zero() {
    let s = spec(json!({"model": "cnn"}));
    let arch = Architecture::of(&s);
    let h = |lr, momentum, weight_decay, nesterov| MemberHyper { lr, momentum, weight_decay, nesterov };
    let settings = [
        // The assignment's: momentum 0.9, members at different rates.
        vec![h(0.001, 0.9, 0.0, false), h(0.1, 0.9, 0.0, false), h(0.01, 0.9, 0.0, false)],
        // Each member its own momentum, Nesterov flag and weight decay.
        vec![h(0.05, 0.9, 0.01, true), h(0.2, 0.0, 0.0, false), h(0.01, 0.5, 1e-4, false)],
        // All Nesterov, one setting.
        vec![h(0.03, 0.8, 0.001, true), h(0.03, 0.8, 0.001, true), h(0.03, 0.8, 0.001, true)],
        // No momentum at all.
        vec![h(0.1, 0.0, 0.0, false), h(0.01, 0.0, 0.1, false), h(0.3, 0.0, 0.0, false)],
    ];
    let x = Tensor::randn([12, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    for hyper in settings {
        let rows: Vec<Tensor> =
            [1, 2, 3].iter().map(|&seed| Tensor::from_slice(&model::initial_values(&arch, seed).unwrap())).collect();
        let one_pass = GroupParams::from_members(&arch, &rows, &[], Device::Cpu);
        let by_ops = GroupParams::from_members(&arch, &rows, &[], Device::Cpu);
        let mut a = Sgd::from_hyper(&arch, &one_pass, &hyper);
        let mut b = Sgd::from_hyper(&arch, &by_ops, &hyper);
        for step in 0..5 {
            for (ps, opt) in [(&one_pass, &mut a), (&by_ops, &mut b)] {
                opt.zero_grad(ps);
                let logits = model::forward(&arch, ps, &x, None);
                logits.cross_entropy_for_logits(&y).backward();
            }
            a.step(&one_pass);
            b.step_by_ops(&by_ops);
            assert!(one_pass.flat.equal(&by_ops.flat), "{hyper:?}, step {step}: weights differ");
            for t in &one_pass.tensors {
                assert_eq!(t.grad().abs().max().double_value(&[]), 0.0, "{hyper:?}: a gradient left after the step");
            }
            assert_ne!(by_ops.tensors[0].grad().abs().max().double_value(&[]), 0.0);
        }
        assert!(!one_pass.flat.equal(&GroupParams::from_members(&arch, &rows, &[], Device::Cpu).flat));
    }
}

#[test]
fn the_one_pass_adam_step_equals_the_tensor_operations_bit_for_bit_and_leaves_the_gradients_zero() {
    let member = |v: serde_json::Value| spec(v);
    let groups = [
        // Adam, each member its own rate, betas (one above ½ for β1's lerp), eps and L2 decay.
        vec![
            member(json!({"optimizer": "adam", "lr": 0.001})),
            member(json!({"optimizer": "adam", "lr": 0.01, "betas": [0.4, 0.99], "eps": 1e-6, "weight_decay": 0.01})),
            member(json!({"optimizer": "adam", "lr": 0.003, "betas": [0.8, 0.9], "weight_decay": 0.001})),
        ],
        // AdamW, one setting for all.
        vec![
            member(json!({"optimizer": "adamw", "lr": 0.002})),
            member(json!({"optimizer": "adamw", "lr": 0.002})),
            member(json!({"optimizer": "adamw", "lr": 0.002})),
        ],
        // AdamW, decays of their own.
        vec![
            member(json!({"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1})),
            member(json!({"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0})),
            member(json!({"optimizer": "adamw", "lr": 0.005, "betas": [0.5, 0.95]})),
        ],
    ];
    for specs in &groups {
        let adamw = specs[0].optimizer == trainyard::optimizer::OptimizerKind::Adamw;
        passes_equal_the_tensor_operations(specs, |g| Adam::new(g, adamw), Adam::step_by_ops);
    }
}

/// Five steps of a group of three tutorial CNNs with `specs`' optimiser, one copy stepped by
/// `Optimizer::step` (on an x86-64 CPU with AVX2 and FMA, passes of ours) and one by the
/// tensor operations (`by_ops`), the rates changed after the second (as a schedule does): the
/// same weights bit for bit after every step, no gradient left by the passes, and the same
/// state for every member at the end.
fn passes_equal_the_tensor_operations<O: Optimizer>(
    specs: &[Spec],
    make: impl Fn(optim::Group) -> O,
    by_ops: impl Fn(&mut O, &GroupParams),
) {
    let arch = Architecture::of(&specs[0]);
    let refs: Vec<&Spec> = specs.iter().collect();
    let lrs: Vec<f64> = specs.iter().map(|s| s.lr).collect();
    let x = Tensor::randn([12, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    let rows: Vec<Tensor> =
        [1, 2, 3].iter().map(|&seed| Tensor::from_slice(&model::initial_values(&arch, seed).unwrap())).collect();
    let one_pass = GroupParams::from_members(&arch, &rows, &[], Device::Cpu);
    let reference = GroupParams::from_members(&arch, &rows, &[], Device::Cpu);
    let group = |params| optim::Group { arch: &arch, params, specs: &refs, lrs: &lrs, states: Vec::new() };
    let (mut a, mut b) = (make(group(&one_pass)), make(group(&reference)));
    for step in 0..5 {
        a.zero_grad(&one_pass);
        b.zero_grad(&reference);
        for ps in [&one_pass, &reference] {
            model::forward(&arch, ps, &x, None).cross_entropy_for_logits(&y).backward();
        }
        if step == 2 {
            let halved: Vec<f64> = lrs.iter().map(|l| l / 2.0).collect();
            a.set_lrs(&arch, &one_pass, &halved);
            b.set_lrs(&arch, &reference, &halved);
        }
        a.step(&one_pass);
        by_ops(&mut b, &reference);
        let diff = (&one_pass.flat - &reference.flat).abs().max().double_value(&[]);
        assert!(
            one_pass.flat.equal(&reference.flat),
            "{:?}, step {step}: weights differ by up to {diff}",
            specs[0].optimizer
        );
        for t in one_pass.tensors.iter().filter(|_| optim::one_pass_cpu()) {
            assert_eq!(t.grad().abs().max().double_value(&[]), 0.0, "a gradient left after the step");
        }
        let left: f64 = reference.tensors.iter().map(|t| t.grad().abs().max().double_value(&[])).sum();
        assert_ne!(left, 0.0, "the tensor operations leave the gradients");
    }
    assert!(!one_pass.flat.equal(&GroupParams::from_members(&arch, &rows, &[], Device::Cpu).flat));
    for m in 0..3 {
        let (sa, sb) = (a.member_state(&arch, &one_pass, m), b.member_state(&arch, &reference, m));
        assert_eq!(sa.step, sb.step);
        assert_eq!(sa.buffers.len(), sb.buffers.len());
        for ((name, x), (_, y)) in sa.buffers.iter().zip(&sb.buffers) {
            assert!(x.equal(y), "member {m}'s {name} differs");
        }
    }
}

#[test]
fn the_two_pass_rmsprop_adagrad_and_adadelta_steps_equal_the_tensor_operations_bit_for_bit() {
    let members = |vs: [serde_json::Value; 3]| vs.map(spec);
    // RMSprop: each member its own rate, alpha, eps, momentum (one without) and L2 decay;
    // one setting for all without momentum; and all with momentum.
    for specs in [
        members([
            json!({"optimizer": "rmsprop", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
            json!({"optimizer": "rmsprop", "lr": 0.001, "alpha": 0.9, "eps": 1e-6}),
            json!({"optimizer": "rmsprop", "lr": 0.003, "momentum": 0.5, "alpha": 0.95}),
        ]),
        members([
            json!({"optimizer": "rmsprop", "lr": 0.002}),
            json!({"optimizer": "rmsprop", "lr": 0.002}),
            json!({"optimizer": "rmsprop", "lr": 0.002}),
        ]),
        members([
            json!({"optimizer": "rmsprop", "momentum": 0.9}),
            json!({"optimizer": "rmsprop", "momentum": 0.9}),
            json!({"optimizer": "rmsprop", "momentum": 0.3, "lr": 0.05}),
        ]),
    ] {
        passes_equal_the_tensor_operations(&specs, Rmsprop::new, Rmsprop::step_by_ops);
    }
    // Adagrad: rates, eps and L2 decay of their own; one setting for all.
    for specs in [
        members([
            json!({"optimizer": "adagrad", "lr": 0.1, "weight_decay": 0.001}),
            json!({"optimizer": "adagrad", "lr": 0.01, "eps": 1e-6}),
            json!({"optimizer": "adagrad", "lr": 0.05}),
        ]),
        members([json!({"optimizer": "adagrad"}), json!({"optimizer": "adagrad"}), json!({"optimizer": "adagrad"})]),
    ] {
        passes_equal_the_tensor_operations(&specs, Adagrad::new, Adagrad::step_by_ops);
    }
    // Adadelta: the preset's lr 1.0; rho, eps and L2 decay of their own.
    for specs in [
        members([
            json!({"optimizer": "adadelta", "lr": 1.0}),
            json!({"optimizer": "adadelta", "lr": 0.5, "rho": 0.95, "eps": 1e-5, "weight_decay": 0.01}),
            json!({"optimizer": "adadelta", "lr": 2.0, "rho": 0.3}),
        ]),
        members([json!({"optimizer": "adadelta"}), json!({"optimizer": "adadelta"}), json!({"optimizer": "adadelta"})]),
    ] {
        passes_equal_the_tensor_operations(&specs, Adadelta::new, Adadelta::step_by_ops);
    }
}

fn load_err(dir: &Path) -> String {
    match Data::load(&CIFAR10, dir, Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_bad_data_directory_gives_its_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let shown = d.display().to_string();

    let e = load_err(d);
    assert!(
        e.contains("data_batch_1.bin is missing") && e.contains(&shown) && e.contains("cifar-10-binary.tar.gz"),
        "{e}"
    );

    data::write_synthetic(d, 10, 10, 1).unwrap();
    std::fs::remove_file(d.join("test_batch.bin")).unwrap();
    let e = load_err(d);
    assert!(e.contains("test_batch.bin is missing"), "{e}");

    data::write_synthetic(d, 10, 10, 1).unwrap();
    let f = d.join("data_batch_3.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(d);
    assert!(e.contains("data_batch_3.bin") && e.contains("not a whole number") && e.contains(&shown), "{e}");
    assert!(matches!(Data::load(&CIFAR10, d, Device::Cpu), Err(DataError::Truncated { .. })));

    std::fs::write(&f, []).unwrap();
    assert!(load_err(d).contains("data_batch_3.bin in"));

    let mut bad_label = bytes.clone();
    bad_label[data::record_bytes(&CIFAR10) * 2] = 10;
    std::fs::write(&f, &bad_label).unwrap();
    let e = load_err(d);
    assert!(e.contains("label 10 in record 2") && e.contains("data_batch_3.bin"), "{e}");

    std::fs::write(&f, &bytes).unwrap();
    let data = Data::load(&CIFAR10, d, Device::Cpu).unwrap();
    assert_eq!(data.train.len(), 50);
    assert_eq!(data.test.len(), 10);
    assert_eq!(data.train.raw_images().size(), [50, 3, 32, 32]);
    assert_eq!(data.train.raw_images().kind(), Kind::Uint8);
}

#[test]
fn the_loader_reads_records_as_label_then_channel_planes() {
    let dir = tempfile::tempdir().unwrap();
    let mut record = vec![7u8];
    record.extend((0..3072).map(|i| (i / 1024 * 50 + i % 7) as u8));
    for f in CIFAR10.train_files.iter().chain(CIFAR10.test_files) {
        std::fs::write(dir.path().join(f), &record).unwrap();
    }
    let d = Data::load(&CIFAR10, dir.path(), Device::Cpu).unwrap();
    assert_eq!(d.train.labels().int64_value(&[3]), 7);
    assert_eq!(d.train.raw_images().int64_value(&[0, 0, 0, 0]), 0);
    assert_eq!(d.train.raw_images().int64_value(&[0, 1, 0, 1]), 50 + 1025 % 7);
    assert_eq!(d.train.raw_images().int64_value(&[0, 2, 31, 31]), (100 + 3071 % 7) as i64);
    let n = d.train.images_from(0, 1);
    assert!((n.double_value(&[0, 1, 0, 1]) - (53.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
}

#[test]
fn train_limit_trains_on_only_the_first_images() {
    let (_dir, data) = small_data();
    let m = run(&spec(json!({"epochs": 1, "train_limit": 40, "batch_size": 4, "model": "linear"})), &data, None);
    let full = run(&spec(json!({"epochs": 1, "batch_size": 4, "model": "linear"})), &data, None);
    assert_ne!(timeless(&m), timeless(&full));
    // 40 images at batch 4: accuracy is a multiple of 1/40.
    assert!((m[0].train_acc * 40.0 - (m[0].train_acc * 40.0).round()).abs() < 1e-9);
}

#[test]
fn a_checkpoint_with_damaged_weights_is_never_resumed_from() {
    let (_dir, data) = small_data();
    let s = spec(json!({"epochs": 3, "model": "linear", "batch_size": 10}));
    let straight = run(&s, &data, None);
    let ckpt = tempfile::tempdir().unwrap();
    stopped_after_two_epochs(&s, &data, ckpt.path());
    // One byte inside the weights (the tensors follow the header): a header still parses.
    let path = ckpt.path().join(train::checkpoint::FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = train::checkpoint::export_weights("the test's checkpoint".into(), bytes.clone()).unwrap_err();
    assert!(matches!(err, train::CheckpointError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("is damaged"), "{err}");
    // Resuming trains every epoch again from the seed: the same run as one without a stop.
    let again = run(&s, &data, Some(ckpt.path()));
    assert_eq!(again.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2, 3], "from the start, not from epoch 2");
    assert_eq!(timeless(&straight), timeless(&again));
    // An undamaged checkpoint still resumes (the checksum matches what was written).
    assert!(run(&s, &data, Some(ckpt.path())).is_empty());
}

/// Trains `s` with its checkpoint in `ckpt`, stopped after two epochs; those epochs.
fn stopped_after_two_epochs(s: &Spec, data: &Data, ckpt: &Path) -> Vec<EpochMetrics> {
    let stop = AtomicBool::new(false);
    let mut first = StopAfter { inner: VecSink::default(), after: 2, stop: &stop };
    let store = DirStore::new(ckpt);
    let opts = TrainOptions { checkpoints: Some(&store), threads: Some(1) };
    assert_eq!(train::train(s, data, &opts, &mut first, &stop).unwrap(), Outcome::Stopped { epochs_done: 2 });
    assert_eq!(first.inner.0.len(), 2);
    first.inner.0
}
