//! Optimisers and schedules against PyTorch: the venv's `torch.optim` and
//! `torch.optim.lr_scheduler`, started from trainyard's initial weights and fed the same
//! gradients for 50 steps over 5 epochs, end with the same weights after every epoch (to
//! float precision) and use the same rate in each epoch, for every optimiser and schedule;
//! alone, and as members of one fused group of 4 with different settings, one of which
//! joins the group late with its own step count.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use trainyard::network::Architecture;
use trainyard::spec::Spec;
use trainyard::train::model::{self, GroupParams};
use trainyard::train::optim::{self, MemberState};

const STEPS_PER_EPOCH: usize = 10;
const EPOCHS: u32 = 5;

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

fn spec(v: Value) -> Spec {
    let mut v = v;
    v["layers"] = json!([{"conv2d": {"out": 2, "kernel": 3}}, "flatten", {"linear": 10}]);
    v["epochs"] = json!(EPOCHS);
    Spec::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// A member's run: its spec, its gradients [steps, P] (seeded by its own seed) and its
/// initial weights.
struct Run {
    spec: Spec,
    grads: Tensor,
    w0: Tensor,
}

fn run_of(arch: &Architecture, spec: Spec) -> Run {
    tch::manual_seed(spec.seed as i64);
    let steps = STEPS_PER_EPOCH as i64 * i64::from(EPOCHS);
    // Gradients of a few sizes, so eps and the squared averages matter.
    let scale = Tensor::from_slice(&[1e-3f32, 1.0, 30.0])
        .index_select(0, &Tensor::randint(3, [steps, arch.numel()], (Kind::Int64, Device::Cpu)).view([-1]));
    let grads = Tensor::randn([steps, arch.numel()], (Kind::Float, Device::Cpu)) * scale.view([steps, -1]);
    let w0 = Tensor::from_slice(&model::initial_values(arch, spec.seed).unwrap());
    Run { spec, grads, w0 }
}

/// Each run in PyTorch alone: its weights after each epoch [epoch][P], and each epoch's rate.
fn in_pytorch(arch: &Architecture, runs: &[Run]) -> Vec<(Vec<Vec<f64>>, Vec<f64>)> {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, t: &Tensor| {
        let v = Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.bin")),
            v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
        )
        .unwrap();
    };
    for (i, r) in runs.iter().enumerate() {
        put(&format!("w.{i}"), &r.w0);
        put(&format!("g.{i}"), &r.grads);
    }
    let manifest = json!({
        "members": runs.iter().map(|r| r.spec.to_json()).collect::<Vec<_>>(),
        "shapes": arch.params.iter().map(|p| p.shape.clone()).collect::<Vec<_>>(),
        "steps_per_epoch": STEPS_PER_EPOCH,
    });
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/torch_optim.py");
    let out = std::process::Command::new(python()).arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "PyTorch failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let floats = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| (m["after"].as_array().unwrap().iter().map(floats).collect(), floats(&m["lrs"])))
        .collect()
}

/// A member inside trainyard's group: where its run is, and its state between groups.
struct Member<'a> {
    run: &'a Run,
    /// The epoch it trains next.
    next: u32,
    weights: Tensor,
    state: MemberState,
    /// Its weights after each epoch, and each epoch's rate.
    after: Vec<Vec<f64>>,
    lrs: Vec<f64>,
}

impl<'a> Member<'a> {
    fn new(run: &'a Run) -> Member<'a> {
        Member {
            run,
            next: 1,
            weights: run.w0.shallow_clone(),
            state: MemberState::default(),
            after: vec![],
            lrs: vec![],
        }
    }
}

/// Trains `members` as one fused group for `passes` epochs (each member its own next
/// epoch), stepping the optimiser with each member's own exported gradients.
fn train_group(arch: &Architecture, members: &mut [Member], passes: u32) {
    let rows: Vec<Tensor> = members.iter().map(|m| m.weights.shallow_clone()).collect();
    let params = GroupParams::from_members(arch, &rows, &[], Device::Cpu);
    let specs: Vec<&Spec> = members.iter().map(|m| &m.run.spec).collect();
    let lrs: Vec<f64> = members.iter().map(|m| m.run.spec.lr_at(m.next)).collect();
    let states = members.iter_mut().map(|m| std::mem::take(&mut m.state)).collect();
    let mut opt = optim::for_members(arch, &params, &specs, &lrs, states);
    for _ in 0..passes {
        let lrs: Vec<f64> = members.iter().map(|m| m.run.spec.lr_at(m.next)).collect();
        opt.set_lrs(arch, &params, &lrs);
        for k in 0..STEPS_PER_EPOCH {
            opt.zero_grad(&params);
            let at = |m: &Member| (m.next as usize - 1) * STEPS_PER_EPOCH + k;
            let rows: Vec<Tensor> = members.iter().map(|m| m.run.grads.get(at(m) as i64)).collect();
            let flat = model::stack_rows(arch, &rows);
            // d/dw Σ w·g is g exactly: autograd leaves the exported gradient in .grad.
            let loss = (0..params.tensors.len())
                .map(|i| (&params.tensors[i] * params.view_of(&flat, i)).sum(Kind::Float))
                .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
            loss.backward();
            opt.step(&params);
        }
        for (i, m) in members.iter_mut().enumerate() {
            m.lrs.push(lrs[i]);
            m.after
                .push(Vec::<f64>::try_from(params.member(arch, &params.flat, i as i64).to_kind(Kind::Double)).unwrap());
            m.next += 1;
        }
    }
    for (i, m) in members.iter_mut().enumerate() {
        m.weights = params.member(arch, &params.flat, i as i64);
        m.state = opt.member_state(arch, &params, i as i64);
    }
}

/// Float precision over 50 steps: each weight within 5e-6 of PyTorch's, relative to the
/// larger of its size and the typical weight (the worst seen: 7.5e-7, RMSprop's; a step
/// count off by one in Adam's bias correction is 5e-2 apart).
fn assert_close(what: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().map(|x| x.abs()).sum::<f64>() / theirs.len() as f64;
    let (mut worst, mut at) = (0.0, 0);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let d = (a - b).abs() / b.abs().max(scale);
        if d > worst {
            (worst, at) = (d, i);
        }
    }
    assert!(worst < 5e-6, "{what}: weight {at} is {} here, {} in PyTorch ({worst:e} apart)", ours[at], theirs[at]);
}

/// Each epoch the member trained (from its first) against PyTorch's same epoch.
fn assert_member_matches(m: &Member, theirs: &(Vec<Vec<f64>>, Vec<f64>)) {
    let name = m.run.spec.to_json();
    for (k, (after, lr)) in m.after.iter().zip(&m.lrs).enumerate() {
        let e = k + 1;
        let their_lr = theirs.1[e - 1];
        assert!((lr - their_lr).abs() <= 1e-12 * their_lr.abs(), "{name}: epoch {e}'s rate {lr}, PyTorch's {their_lr}");
        assert_close(&format!("{name} after epoch {e}"), after, &theirs.0[e - 1]);
    }
}

/// One spec per optimiser and schedule, alone.
#[test]
fn every_optimiser_and_schedule_matches_torch_optim_alone() {
    let specs = [
        json!({"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": true, "weight_decay": 1e-4,
               "lr_schedule": {"step": {"every": 2, "gamma": 0.5}}, "seed": 1}),
        json!({"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "lr_schedule": "constant", "seed": 2}),
        json!({"optimizer": "adam", "lr_schedule": {"cosine": {"min_lr": 1e-5}}, "warmup_epochs": 1, "seed": 3}),
        json!({"optimizer": "adam", "weight_decay": 1e-3, "amsgrad": true, "betas": [0.8, 0.99], "seed": 4}),
        json!({"optimizer": "adamw", "amsgrad": true, "lr_schedule": {"exponential": 0.9}, "seed": 5}),
        json!({"optimizer": "rmsprop", "momentum": 0.5, "weight_decay": 1e-3,
               "lr_schedule": {"multistep": {"at": [1, 3], "gamma": 0.3}}, "seed": 6}),
        json!({"optimizer": "rmsprop", "alpha": 0.9, "eps": 1e-6, "warmup_epochs": 2, "seed": 7}),
        json!({"optimizer": "adagrad", "weight_decay": 1e-2, "lr_schedule": "cosine", "seed": 8}),
        json!({"optimizer": "adadelta", "lr_schedule": {"step": {"every": 1, "gamma": 0.7}}, "seed": 9}),
        json!({"optimizer": "adadelta", "rho": 0.5, "weight_decay": 1e-3, "seed": 10}),
    ];
    let specs: Vec<Spec> = specs.into_iter().map(spec).collect();
    let arch = Architecture::of(&specs[0]);
    let runs: Vec<Run> = specs.into_iter().map(|s| run_of(&arch, s)).collect();
    let theirs = in_pytorch(&arch, &runs);
    for (run, theirs) in runs.iter().zip(&theirs) {
        let mut m = [Member::new(run)];
        train_group(&arch, &mut m, EPOCHS);
        assert_member_matches(&m[0], theirs);
    }
}

/// Four members of one optimiser with different settings and schedules train as one group;
/// the fourth trains two epochs alone first and joins the others at their epoch 1 (its
/// epoch 3), carrying its state and step count.
fn a_fused_group_of_four_matches_torch_optim(members: [Value; 4]) {
    let specs: Vec<Spec> = members.into_iter().map(spec).collect();
    let arch = Architecture::of(&specs[0]);
    let runs: Vec<Run> = specs.into_iter().map(|s| run_of(&arch, s)).collect();
    let theirs = in_pytorch(&arch, &runs);
    let mut late = [Member::new(&runs[3])];
    train_group(&arch, &mut late, 2);
    let [late] = late;
    assert_eq!(late.state.step, 2 * STEPS_PER_EPOCH as u64, "its own step count");
    let mut group = vec![Member::new(&runs[0]), Member::new(&runs[1]), Member::new(&runs[2]), late];
    train_group(&arch, &mut group, 3);
    assert_eq!(group[3].after.len(), 5, "the late member's two epochs alone, then three in the group");
    for (m, theirs) in group.iter().zip(&theirs) {
        assert_member_matches(m, theirs);
    }
}

#[test]
fn a_fused_group_of_four_adams_matches_torch_optim() {
    a_fused_group_of_four_matches_torch_optim([
        json!({"optimizer": "adam", "seed": 11}),
        json!({"optimizer": "adam", "lr": 3e-3, "betas": [0.5, 0.9], "eps": 1e-6, "amsgrad": true, "seed": 12}),
        json!({"optimizer": "adam", "weight_decay": 1e-2, "lr_schedule": {"exponential": 0.8}, "seed": 13}),
        json!({"optimizer": "adam", "lr_schedule": "cosine", "warmup_epochs": 1, "seed": 14}),
    ]);
}

#[test]
fn a_fused_group_of_four_adamws_matches_torch_optim() {
    a_fused_group_of_four_matches_torch_optim([
        json!({"optimizer": "adamw", "seed": 21}),
        json!({"optimizer": "adamw", "weight_decay": 0.1, "amsgrad": true, "seed": 22}),
        json!({"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0, "seed": 23}),
        json!({"optimizer": "adamw", "betas": [0.9, 0.9], "lr_schedule": {"step": 1}, "seed": 24}),
    ]);
}

#[test]
fn a_fused_group_of_four_sgds_matches_torch_optim() {
    a_fused_group_of_four_matches_torch_optim([
        json!({"optimizer": "sgd", "seed": 31}),
        json!({"optimizer": "sgd", "momentum": 0, "lr": 0.05, "seed": 32}),
        json!({"optimizer": "sgd", "nesterov": true, "weight_decay": 1e-3, "seed": 33}),
        json!({"optimizer": "sgd", "momentum": 0.5, "nesterov": true, "lr_schedule": {"multistep": [2]}, "seed": 34}),
    ]);
}

#[test]
fn a_fused_group_of_four_rmsprops_matches_torch_optim() {
    a_fused_group_of_four_matches_torch_optim([
        json!({"optimizer": "rmsprop", "seed": 41}),
        json!({"optimizer": "rmsprop", "momentum": 0.9, "seed": 42}),
        json!({"optimizer": "rmsprop", "alpha": 0.5, "weight_decay": 1e-2, "lr": 1e-3, "seed": 43}),
        json!({"optimizer": "rmsprop", "momentum": 0.3, "lr_schedule": {"exponential": 0.5}, "seed": 44}),
    ]);
}

#[test]
fn a_fused_group_of_four_adagrads_and_adadeltas_match_torch_optim() {
    a_fused_group_of_four_matches_torch_optim([
        json!({"optimizer": "adagrad", "seed": 51}),
        json!({"optimizer": "adagrad", "lr": 0.1, "eps": 1e-3, "seed": 52}),
        json!({"optimizer": "adagrad", "weight_decay": 0.5, "seed": 53}),
        json!({"optimizer": "adagrad", "lr_schedule": {"step": 2}, "warmup_epochs": 1, "seed": 54}),
    ]);
    a_fused_group_of_four_matches_torch_optim([
        json!({"optimizer": "adadelta", "seed": 61}),
        json!({"optimizer": "adadelta", "rho": 0.95, "eps": 1e-8, "seed": 62}),
        json!({"optimizer": "adadelta", "lr": 0.5, "weight_decay": 1e-2, "seed": 63}),
        json!({"optimizer": "adadelta", "lr_schedule": {"step": {"every": 1, "gamma": 0.7}}, "seed": 64}),
    ]);
}
