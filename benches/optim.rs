//! The optimiser step alone: one step of G tutorial-CNN members' SGD (momentum), Adam,
//! RMSprop, Adagrad and Adadelta over the group's flat buffer, members with different
//! settings, against torch.optim's own step over the same G models' tensors (`bench/optim_torch.py`, run
//! beside it). `cargo bench --bench optim` (BENCHMARKS.md, "Optimisers").
//!
//! Environment: GROUP_SIZES (default "1 8 32"), STEPS (default 200), THREADS (default 2),
//! DEVICE (cpu or cuda, default cpu), OPTIMIZERS (default "sgd adam rmsprop adagrad adadelta").

use serde_json::json;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainyard::network::Architecture;
use trainyard::spec::Spec;
use trainyard::train::model::{self, GroupParams};
use trainyard::train::optim;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let sizes: Vec<i64> = env_or("GROUP_SIZES", "1 8 32").split_whitespace().map(|s| s.parse().unwrap()).collect();
    let steps: usize = env_or("STEPS", "200").parse().unwrap();
    let threads: i32 = env_or("THREADS", "2").parse().unwrap();
    let device = trainyard::device::parse_device(&env_or("DEVICE", "cpu")).expect("cpu or cuda[:N]");
    tch::set_num_threads(threads);
    println!(
        "optimiser step, tutorial CNN (62,006 parameters per member), {threads} threads, {}",
        trainyard::device::device_name(device)
    );
    println!("{:<10} {:>4} {:>12} {:>16}", "optimizer", "G", "µs/step", "µs/step/member");
    let chosen = env_or("OPTIMIZERS", "sgd adam rmsprop adagrad adadelta");
    for name in chosen.split_whitespace() {
        let extra = if name == "sgd" { json!({}) } else { json!({ "optimizer": name }) };
        for &g in &sizes {
            // Members differ as a class's do: their own weight decay (so per-element settings).
            let specs: Vec<Spec> = (0..g)
                .map(|m| {
                    let mut v = extra.clone();
                    v["seed"] = json!(m + 1);
                    v["weight_decay"] = json!(m as f64 * 1e-5);
                    Spec::parse(&v).unwrap()
                })
                .collect();
            let arch = Architecture::of(&specs[0]);
            let rows: Vec<Tensor> =
                specs.iter().map(|s| Tensor::from_slice(&model::initial_values(&arch, s.seed).unwrap())).collect();
            let params = GroupParams::from_members(&arch, &rows, &[], device);
            let refs: Vec<&Spec> = specs.iter().collect();
            let lrs: Vec<f64> = specs.iter().map(|s| s.lr).collect();
            let states = (0..g).map(|_| Default::default()).collect();
            let mut opt = optim::for_members(&arch, &params, &refs, &lrs, states);
            // Gradients once (autograd leaves them in place); every step reuses them. (SGD's
            // one-pass step on a CPU zeroes them as it reads them, as `zero_grad` would: the
            // later steps add zeros, in the same time.)
            let scale: f64 = env_or("GRAD_SCALE", "1e-2").parse().unwrap();
            let grads = Tensor::randn([params.flat.numel() as i64], (Kind::Float, device)) * scale;
            opt.zero_grad(&params);
            let loss = (0..params.tensors.len())
                .map(|i| (&params.tensors[i] * params.view_of(&grads, i)).sum(Kind::Float))
                .fold(Tensor::zeros([], (Kind::Float, device)), |a, b| a + b);
            loss.backward();
            let sync = || {
                if let Device::Cuda(_) = device {
                    tch::Cuda::synchronize(0);
                }
            };
            for _ in 0..20 {
                opt.step(&params);
            }
            sync();
            let t = Instant::now();
            for _ in 0..steps {
                opt.step(&params);
            }
            sync();
            let us = t.elapsed().as_secs_f64() * 1e6 / steps as f64;
            println!("{name:<10} {g:>4} {us:>12.1} {:>16.1}", us / g as f64);
        }
    }
}
