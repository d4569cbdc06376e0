//! Fused groups: every member trains as it would alone.

use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use tch::Device;
use trainyard::spec::Spec;
use trainyard::train::data::{self, Data};
use trainyard::train::metrics::{EpochMetrics, VecSink};
use trainyard::train::{self, CheckpointStore, DirStore, GroupHost, GroupOptions, Outcome, TrainError, TrainOptions};

fn small_data() -> (tempfile::TempDir, Data) {
    let dir = tempfile::tempdir().unwrap();
    data::write_synthetic(dir.path(), 40, 100, 5).unwrap();
    let data = Data::load(&trainyard::dataset::CIFAR10, dir.path(), Device::Cpu).unwrap();
    (dir, data)
}

fn spec(v: serde_json::Value) -> Spec {
    Spec::parse(&v).unwrap()
}

fn alone(s: &Spec, data: &Data) -> Vec<EpochMetrics> {
    let mut sink = VecSink::default();
    let opts = TrainOptions { checkpoints: None, threads: Some(1) };
    assert_eq!(
        train::train(s, data, &opts, &mut sink, &AtomicBool::new(false)).unwrap(),
        Outcome::Finished { epochs: s.epochs }
    );
    sink.0
}

/// Equal up to float summation order: losses within 1e-3 relative, accuracies within
/// one sample in a hundred.
fn assert_same(label: &str, got: &[EpochMetrics], want: &[EpochMetrics]) {
    assert_eq!(got.len(), want.len(), "{label}: epochs {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.epoch, w.epoch, "{label}");
        assert_eq!(g.diverged, w.diverged, "{label}: epoch {}: {g:?} vs {w:?}", g.epoch);
        for (a, b) in [(g.train_loss, w.train_loss), (g.test_loss, w.test_loss)] {
            match (a, b) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{label}: epoch {}: {g:?} vs {w:?}", g.epoch)
                }
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{label}: epoch {}: {g:?} vs {w:?}", g.epoch),
            }
        }
        assert!((g.train_acc - w.train_acc).abs() <= 0.011, "{label}: epoch {}: {g:?} vs {w:?}", g.epoch);
        assert!((g.test_acc - w.test_acc).abs() <= 0.011, "{label}: epoch {}: {g:?} vs {w:?}", g.epoch);
    }
}

/// A host that keeps every member's epochs and result, stops members on cue and hands out
/// joiners at chosen epoch boundaries.
#[derive(Default)]
struct Host {
    epochs: BTreeMap<usize, Vec<EpochMetrics>>,
    results: BTreeMap<usize, Result<Outcome, String>>,
    /// key → (epoch, batches): raise its stop flag after that many batches of that pass.
    stop_at: HashMap<usize, (u32, usize)>,
    stopped: HashMap<usize, bool>,
    stores: HashMap<usize, DirStore>,
    /// Joiners, handed out at the n-th call of `join` (the first is before any pass).
    joins: BTreeMap<usize, Vec<(usize, Spec)>>,
    join_calls: usize,
    /// Members present in each pass, by the size of the group at its progress reports.
    sizes: Vec<usize>,
}

impl GroupHost for Host {
    fn stopped(&self, key: usize) -> bool {
        self.stopped.get(&key).copied().unwrap_or(false)
    }
    fn checkpoints(&self, key: usize) -> Option<&dyn CheckpointStore> {
        self.stores.get(&key).map(|s| s as &dyn CheckpointStore)
    }
    fn record_epoch(&mut self, key: usize, m: &EpochMetrics) -> anyhow::Result<()> {
        self.epochs.entry(key).or_default().push(m.clone());
        Ok(())
    }
    fn batch_done(&mut self, members: &[(usize, u32)], done: usize, _total: usize) {
        self.sizes.push(members.len());
        for (key, epoch) in members {
            if let Some(&(e, b)) = self.stop_at.get(key) {
                if *epoch == e && done >= b {
                    self.stopped.insert(*key, true);
                }
            }
        }
    }
    fn member_done(&mut self, key: usize, result: Result<Outcome, TrainError>) {
        assert!(self.results.insert(key, result.map_err(|e| e.to_string())).is_none(), "{key} ended twice");
    }
    fn join(&mut self, room: usize) -> Vec<(usize, Spec)> {
        let mut j = self.joins.remove(&self.join_calls).unwrap_or_default();
        self.join_calls += 1;
        j.truncate(room);
        j
    }
}

fn run_group(members: Vec<(usize, Spec)>, data: &Data, host: &mut Host) {
    train::train_group(members, data, &GroupOptions { threads: Some(1), max_members: 16, lent: None }, host);
}

/// Trains `specs` as one group (keys in order) and checks that each finished with the
/// metrics it gets alone; the host, for more checks.
fn each_as_alone(specs: &[Spec], data: &Data) -> Host {
    let mut host = Host::default();
    run_group(specs.iter().cloned().enumerate().collect(), data, &mut host);
    for (key, s) in specs.iter().enumerate() {
        assert_eq!(host.results[&key], Ok(Outcome::Finished { epochs: s.epochs }), "member {key}");
        assert_same(&format!("member {key}"), &host.epochs[&key], &alone(s, data));
    }
    host
}

#[test]
fn each_member_of_a_group_gets_the_metrics_it_gets_alone() {
    let (_dir, data) = small_data();
    // The assignment's CNN batch-4 jobs: the members differ in everything that keeps shapes.
    let specs = [
        json!({"seed": 1, "epochs": 2}),
        json!({"seed": 2, "epochs": 2, "lr": 0.01, "momentum": 0.5}),
        json!({"seed": 3, "epochs": 3, "lr": 0.1, "momentum": 0.0, "weight_decay": 0.01}),
        json!({"seed": 4, "epochs": 2, "augment": true}),
        json!({"seed": 5, "epochs": 1, "loss": "mse", "lr": 0.05}),
        json!({"seed": 1, "epochs": 2, "augment": ["horizontal_flip"], "lr": 0.003}),
    ];
    let specs: Vec<Spec> = specs
        .into_iter()
        .map(|mut v| {
            v["train_limit"] = json!(100);
            spec(v)
        })
        .collect();
    let host = each_as_alone(&specs, &data);
    // The group shrank as members finished: 6 in the first pass, then 5, then 1.
    assert_eq!(host.sizes.first(), Some(&6));
    assert_eq!(host.sizes.last(), Some(&1));
    // A test that could not tell the members apart would pass here too: they differ.
    assert_ne!(host.epochs[&0][0].without_timings(), host.epochs[&5][0].without_timings());
}

#[test]
fn a_diverging_member_changes_nothing_for_the_others() {
    let (_dir, data) = small_data();
    let calm = spec(json!({"model": "mlp", "seed": 8, "epochs": 2, "lr": 0.01, "train_limit": 100}));
    let wild = spec(json!({"model": "mlp", "seed": 9, "epochs": 2, "lr": 10.0, "train_limit": 100}));
    let mse = spec(json!({"model": "mlp", "seed": 10, "epochs": 2, "lr": 0.05, "loss": "mse", "train_limit": 100}));
    let mut host = Host::default();
    run_group(vec![(0, calm.clone()), (1, wild.clone()), (2, mse.clone())], &data, &mut host);
    assert!(host.epochs[&1].last().unwrap().diverged, "{:?}", host.epochs[&1]);
    assert_same("calm", &host.epochs[&0], &alone(&calm, &data));
    assert_same("mse", &host.epochs[&2], &alone(&mse, &data));
    assert_same("wild", &host.epochs[&1], &alone(&wild, &data));
}

#[test]
fn a_stopped_member_leaves_mid_epoch_and_the_others_go_on() {
    let (_dir, data) = small_data();
    let a = spec(json!({"seed": 1, "epochs": 3, "train_limit": 200}));
    let b = spec(json!({"seed": 2, "epochs": 3, "train_limit": 200, "lr": 0.01}));
    let mut host = Host::default();
    host.stop_at.insert(1, (2, 10));
    run_group(vec![(0, a.clone()), (1, b)], &data, &mut host);
    assert_eq!(host.results[&1], Ok(Outcome::Stopped { epochs_done: 1 }));
    assert_eq!(host.epochs[&1].len(), 1, "no epoch after the stop");
    assert_eq!(host.results[&0], Ok(Outcome::Finished { epochs: 3 }));
    assert_same("the one that stayed", &host.epochs[&0], &alone(&a, &data));
    assert!(host.sizes.contains(&2) && host.sizes.contains(&1));
}

#[test]
fn a_job_joins_at_an_epoch_boundary_and_trains_as_alone() {
    let (_dir, data) = small_data();
    let first = spec(json!({"seed": 1, "epochs": 3, "train_limit": 100, "batch_size": 8}));
    let late = spec(json!({"seed": 7, "epochs": 2, "train_limit": 100, "batch_size": 8, "lr": 0.01}));
    let other_shape = spec(json!({"seed": 7, "epochs": 1, "train_limit": 100, "batch_size": 4}));
    let mut host = Host::default();
    // join() is asked before the first pass (call 0) and at each boundary after it.
    host.joins.insert(1, vec![(1, late.clone()), (2, other_shape)]);
    run_group(vec![(0, first.clone())], &data, &mut host);
    assert_same("first", &host.epochs[&0], &alone(&first, &data));
    assert_same("late", &host.epochs[&1], &alone(&late, &data));
    assert_eq!(host.epochs[&1].len(), 2);
    let err = host.results[&2].clone().unwrap_err();
    assert!(err.contains("cannot join"), "{err}");
    assert_eq!(host.sizes.iter().max(), Some(&2));
}

#[test]
fn members_at_different_epochs_resume_from_their_own_checkpoints() {
    let (_dir, data) = small_data();
    let a = spec(json!({"seed": 1, "epochs": 3, "train_limit": 100, "augment": true}));
    let b = spec(json!({"seed": 2, "epochs": 3, "train_limit": 100, "lr": 0.01, "momentum": 0.8}));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // a trains one epoch alone and stops; then a (resumed at epoch 2) and b (fresh) train as a group.
    let mut host = Host::default();
    host.stores.insert(0, DirStore::new(dirs[0].path()));
    host.stop_at.insert(0, (2, 1));
    run_group(vec![(0, a.clone())], &data, &mut host);
    assert_eq!(host.results[&0], Ok(Outcome::Stopped { epochs_done: 1 }));

    let mut host = Host::default();
    host.stores.insert(0, DirStore::new(dirs[0].path()));
    host.stores.insert(1, DirStore::new(dirs[1].path()));
    run_group(vec![(0, a.clone()), (1, b.clone())], &data, &mut host);
    assert_eq!(host.epochs[&0].iter().map(|m| m.epoch).collect::<Vec<_>>(), [2, 3]);
    let a_alone = alone(&a, &data);
    assert_same("resumed", &host.epochs[&0], &a_alone[1..]);
    assert_same("fresh", &host.epochs[&1], &alone(&b, &data));

    // b's own checkpoint, resumed alone, is b at epoch 3: nothing left to train.
    let mut sink = VecSink::default();
    let store = DirStore::new(dirs[1].path());
    let opts = TrainOptions { checkpoints: Some(&store), threads: Some(1) };
    assert_eq!(
        train::train(&b, &data, &opts, &mut sink, &AtomicBool::new(false)).unwrap(),
        Outcome::Finished { epochs: 3 }
    );
    assert!(sink.0.is_empty());
}

#[test]
fn members_with_batchnorm_dropout_and_residual_blocks_get_the_metrics_they_get_alone() {
    let (_dir, data) = small_data();
    let layers = json!([
        {"conv2d": {"out": 4, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"dropout": 0.3}, {"maxpool2d": 2},
        {"residual": [{"conv2d": {"out": 4, "kernel": 3, "padding": "same"}}, "batchnorm", "gelu"]},
        "flatten", {"linear": 16}, "batchnorm", {"dropout": 0.2}, "relu", {"linear": 10}
    ]);
    let specs: Vec<Spec> = [(1, 0.05, 2), (2, 0.01, 3), (3, 0.1, 2)]
        .iter()
        .map(|&(seed, lr, epochs)| {
            spec(json!({"layers": layers, "seed": seed, "lr": lr, "epochs": epochs, "batch_size": 10, "train_limit": 100}))
        })
        .collect();
    let host = each_as_alone(&specs, &data);
    assert_eq!(host.sizes.first(), Some(&3), "they trained as one group");
    assert_ne!(host.epochs[&0][0].without_timings(), host.epochs[&1][0].without_timings());
}

#[test]
fn a_named_model_and_its_own_list_are_one_network_and_train_as_one_group() {
    let (_dir, data) = small_data();
    let named = spec(json!({"model": "cnn", "seed": 4, "epochs": 2, "train_limit": 100}));
    let own = spec(
        json!({"layers": trainyard::network::layers_json(&named.layers), "seed": 4, "epochs": 2, "train_limit": 100}),
    );
    assert_eq!(own.model, trainyard::spec::ModelKind::Custom);
    assert_eq!(named.group_key(), own.group_key());
    assert_eq!(trainyard::network::parameter_count(&named), trainyard::network::parameter_count(&own));
    let timeless = |m: Vec<EpochMetrics>| m.iter().map(EpochMetrics::without_timings).collect::<Vec<_>>();
    assert_eq!(timeless(alone(&named, &data)), timeless(alone(&own, &data)), "the same run to the last digit");
    let mut host = Host::default();
    run_group(vec![(0, named.clone()), (1, own.clone())], &data, &mut host);
    assert_eq!(host.sizes.first(), Some(&2));
    assert_same("named", &host.epochs[&0], &alone(&named, &data));
    assert_same("own list", &host.epochs[&1], &alone(&own, &data));
}
