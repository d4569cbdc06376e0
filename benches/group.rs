//! Fused groups: G CNN batch-4 members trained as one, against G solo runs one after the
//! other and against G solo workers side by side. `make bench-group` (BENCHMARKS.md).
//!
//! Environment: CIFAR_BIN (the binary CIFAR-10 directory; default
//! ~/.cache/cifar10/cifar-10-batches-bin), GROUP_SIZES (default "1 2 4 8 16"), TRAIN_LIMIT
//! (images per epoch, default 5000), THREADS (torch threads, default 2), DEVICE (cpu or
//! cuda, default cpu), MODEL (cnn, mlp or linear; default cnn), LAYERS (a JSON list of
//! layers, instead of MODEL), BATCH (default 4), OPTIMIZER (default sgd: the members'
//! optimiser at its own default rate, each member its own weight decay), LEND=1 (the fused
//! group may borrow the core of a second worker that lies idle: `train::cores`).

use serde_json::json;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use trainyard::spec::Spec;
use trainyard::train::data::Data;
use trainyard::train::metrics::{EpochMetrics, VecSink};
use trainyard::train::{self, CheckpointStore, GroupHost, GroupOptions, Outcome, TrainError, TrainOptions};

/// jemalloc, as the trainyard binary links it (src/main.rs): the engine's allocations are
/// libtorch's, and glibc's malloc churns on them (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

#[derive(Default)]
struct Collect {
    epochs: Vec<EpochMetrics>,
}

impl GroupHost for Collect {
    fn stopped(&self, _: usize) -> bool {
        false
    }
    fn checkpoints(&self, _: usize) -> Option<&dyn CheckpointStore> {
        None
    }
    fn record_epoch(&mut self, _: usize, m: &EpochMetrics) -> anyhow::Result<()> {
        self.epochs.push(m.clone());
        Ok(())
    }
    fn member_done(&mut self, key: usize, result: Result<Outcome, TrainError>) {
        if let Err(e) = result {
            panic!("member {key}: {e}");
        }
    }
}

/// A member's spec: `model` is a named model, or a JSON list of layers (`LAYERS`).
fn member(g: usize, limit: u32, model: &str, batch: u32) -> Spec {
    // The assignment's learning rates and a seed each: members differ as a class's jobs do.
    let lrs = [0.001, 0.1, 0.01, 0.0001, 0.003];
    let mut spec = json!({
        "batch_size": batch, "epochs": 1, "train_limit": limit, "lr": lrs[g % lrs.len()], "seed": g as u64 + 1,
    });
    let optimizer = env_or("OPTIMIZER", "sgd");
    if optimizer != "sgd" {
        spec["optimizer"] = json!(optimizer);
        spec.as_object_mut().expect("an object").remove("lr");
        spec["weight_decay"] = json!(g as f64 * 1e-5);
    }
    match serde_json::from_str::<serde_json::Value>(model) {
        Ok(layers @ serde_json::Value::Array(_)) => spec["layers"] = layers,
        _ => spec["model"] = json!(model),
    }
    Spec::parse(&spec).expect("a valid spec")
}

fn main() {
    let home = std::env::var("HOME").unwrap_or_default();
    let dir = env_or("CIFAR_BIN", &format!("{home}/.cache/cifar10/cifar-10-batches-bin"));
    let sizes: Vec<usize> =
        env_or("GROUP_SIZES", "1 2 4 8 16").split_whitespace().map(|s| s.parse().expect("a number")).collect();
    let limit: u32 = env_or("TRAIN_LIMIT", "5000").parse().expect("a number");
    let threads: i32 = env_or("THREADS", "2").parse().expect("a number");
    let model = std::env::var("LAYERS").unwrap_or_else(|_| env_or("MODEL", "cnn"));
    let batch: u32 = env_or("BATCH", "4").parse().expect("a number");
    let device = trainyard::device::parse_device(&env_or("DEVICE", "cpu")).expect("cpu or cuda[:N]");
    let data =
        Data::load(&trainyard::dataset::CIFAR10, std::path::Path::new(&dir), device).expect("CIFAR-10 in CIFAR_BIN");
    tch::set_num_threads(threads);
    println!(
        "{model} batch {batch}, {limit} training images per epoch, {} test images, {threads} torch threads, {}",
        data.test.len(),
        trainyard::device::device_name(device)
    );

    // One solo run, timed twice (the first warms up), for "G solo runs one after the other".
    let solo = |g: usize| {
        let mut sink = VecSink::default();
        let opts = TrainOptions { checkpoints: None, threads: Some(threads) };
        train::train(&member(g, limit, &model, batch), &data, &opts, &mut sink, &AtomicBool::new(false)).unwrap();
        sink.0[0].clone()
    };
    solo(0);
    let one = solo(0);
    let solo_train = one.train_seconds;
    let solo_epoch = one.seconds;
    println!(
        "solo: {:.2} s training ({:.0} samples/s), {:.2} s with evaluation",
        solo_train,
        limit as f64 / solo_train,
        solo_epoch
    );
    println!();
    println!("| G | fused: training s | fused: epoch s | samples/s per member | samples/s in all | G solo one after another: s | speed-up | G solo workers side by side: s | speed-up |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &g in &sizes {
        let mut host = Collect::default();
        let first: Vec<(usize, Spec)> = (0..g).map(|i| (i, member(i, limit, &model, batch))).collect();
        let t = Instant::now();
        // LEND=1: a second worker lies idle, so the group may borrow its core (train::cores).
        let cores = train::cores::Cores::new(2);
        let _idle = (std::env::var("LEND").as_deref() == Ok("1")).then(|| cores.idle());
        let lent = _idle.is_some().then_some(&cores);
        train::train_group(first, &data, &GroupOptions { threads: Some(threads), max_members: g, lent }, &mut host);
        let wall = t.elapsed().as_secs_f64();
        let train_s = host.epochs[0].train_seconds;
        let per_member = limit as f64 / train_s;
        // G solo workers: G threads, each training one member alone with threads/G torch
        // threads (at least 1), as `--cpu-workers G` would.
        let each = (threads / g as i32).max(1);
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 0..g {
                let data = &data;
                let model = &model;
                s.spawn(move || {
                    let mut sink = VecSink::default();
                    let opts = TrainOptions { checkpoints: None, threads: Some(each) };
                    let spec = member(i, limit, model, batch);
                    train::train(&spec, data, &opts, &mut sink, &AtomicBool::new(false)).unwrap();
                });
            }
        });
        let workers_wall = t.elapsed().as_secs_f64();
        tch::set_num_threads(threads);
        let sequential = g as f64 * solo_epoch;
        // N.B.: one solo worker is the solo run itself (timed above, on the main thread).
        let side_by_side =
            if g == 1 { "— | —".to_string() } else { format!("{workers_wall:.2} | {:.2}×", workers_wall / wall) };
        println!(
            "| {g} | {train_s:.2} | {wall:.2} | {per_member:.0} | {:.0} | {sequential:.2} | {:.2}× | {side_by_side} |",
            per_member * g as f64,
            sequential / wall,
        );
    }
}
