//! Layer lists against PyTorch: the same list built in the venv's torch (`nn.Sequential` of
//! PyTorch's own layers), loaded with trainyard's initial weights, trained the same SGD
//! steps on the same batches (dropout keeping the values trainyard chose), agrees to float
//! precision: every step's loss, the weights and running statistics after, and the
//! evaluation-mode logits.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use trainyard::network::{Architecture, Layer, Shape};
use trainyard::spec::{LossKind, Spec};
use trainyard::train::model::{self, GroupParams};
use trainyard::train::optim::{self, MemberState};

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Builds the list in PyTorch, loads the exported weights, runs the exported steps and
/// prints what came out.
const SCRIPT: &str = r#"
import json, sys, torch, torch.nn as nn, torch.nn.functional as F
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
def load(name):
    e = m["tensors"][name]
    raw = bytearray(open(f"{d}/{name}.bin", "rb").read())
    return torch.frombuffer(raw, dtype=getattr(torch, e["dtype"])).reshape(e["shape"]).clone()
masks = []
class FixedDropout(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        # As PyTorch's dropout: the kept values scaled by 1/(1-p) (here trainyard's draw of
        # which to keep, as 0/1).
        return x * masks.pop(0).view(x.shape).div_(1 - self.p)
sys.path.insert(0, m["bench"])
from torch_layers import build
net = build(m["layers"], torch.zeros(2, 3, 32, 32), FixedDropout)
state = {k: load("w." + k) for k in m["names"]}
missing, unexpected = net.load_state_dict(state, strict=False)
assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
opt = torch.optim.SGD(net.parameters(), lr=m["lr"], momentum=m["momentum"])
losses = []
for s in range(m["steps"]):
    net.train()
    masks[:] = [load(f"mask.{s}.{k}") for k in range(m["dropouts"])]
    opt.zero_grad()
    loss = F.cross_entropy(net(load(f"x.{s}")), load(f"y.{s}"))
    loss.backward()
    opt.step()
    losses.append(loss.item())
net.eval()
with torch.no_grad():
    logits = net(load("x.eval"))
after = {k: v.flatten().tolist() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
print(json.dumps({"losses": losses, "eval": logits.flatten().tolist(), "after": after}))
"#;

struct Export {
    dir: tempfile::TempDir,
    tensors: serde_json::Map<String, Value>,
}

impl Export {
    fn put(&mut self, name: &str, t: &Tensor) {
        let t = t.to_device(Device::Cpu).contiguous();
        let (dtype, bytes): (&str, Vec<u8>) = match t.kind() {
            Kind::Int64 => (
                "int64",
                Vec::<i64>::try_from(t.flatten(0, -1)).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            _ => (
                "float32",
                Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        };
        std::fs::write(self.dir.path().join(format!("{name}.bin")), bytes).unwrap();
        self.tensors.insert(name.into(), json!({"dtype": dtype, "shape": t.size()}));
    }
}

/// Each dropout's p and the shape it acts on (per image), in slot order.
fn dropouts(layers: &[Layer], shapes: &[Shape], out: &mut Vec<(f64, Shape)>) {
    for (l, s) in layers.iter().zip(shapes) {
        match l {
            Layer::Dropout { p, .. } => out.push((*p, *s)),
            Layer::Residual { layers, shapes } => dropouts(layers, shapes, out),
            _ => {}
        }
    }
}

fn values(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Trains `layers` three SGD steps (lr 0.05, momentum 0.9) on batches of 8 in trainyard
/// and in PyTorch, and compares.
fn agrees_with_pytorch(layers: Value) {
    let spec =
        Spec::parse(&json!({"layers": layers, "seed": 7, "batch_size": 8, "lr": 0.05, "momentum": 0.9})).unwrap();
    let arch = Architecture::of(&spec);
    let mut ex = Export { dir: tempfile::tempdir().unwrap(), tensors: Default::default() };
    let w0 = Tensor::from_slice(&model::initial_values(&arch, spec.seed).unwrap());
    let mut at = 0;
    for p in &arch.params {
        ex.put(&format!("w.{}", p.name), &w0.narrow(0, at, p.numel()).view(p.shape.as_slice()));
        at += p.numel();
    }
    let s0 = model::initial_stats(&arch);
    let mut at = 0;
    for s in &arch.stats {
        ex.put(&format!("w.{}", s.name), &s0.narrow(0, at, s.numel()));
        at += s.numel();
    }
    let ps = GroupParams::from_members(&arch, &[w0], &[s0], Device::Cpu);
    let mut opt = optim::for_members(&arch, &ps, &[&spec], &[spec.lr], vec![MemberState::default()]);
    let mut drops = Vec::new();
    dropouts(&arch.layers, &arch.shapes, &mut drops);
    assert_eq!(drops.len(), arch.dropouts, "one per slot");
    tch::manual_seed(3);
    let mut losses = Vec::new();
    for step in 0..3 {
        let x = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(10, [8], (Kind::Int64, Device::Cpu));
        let keys: Vec<i64> =
            (0..drops.len()).map(|k| (step * 7919 + k as i64 * 104_729 + 12_345) % (1 << 32)).collect();
        let keys = Tensor::from_slice(&keys).view([1, -1]);
        for (k, &(p, shape)) in drops.iter().enumerate() {
            let mask = model::dropout_mask(&keys.select(1, k as i64), 8 * shape.numel(), p);
            ex.put(&format!("mask.{step}.{k}"), &mask.view([-1]).gt(0.0).to_kind(Kind::Float));
        }
        ex.put(&format!("x.{step}"), &x);
        ex.put(&format!("y.{step}"), &y);
        opt.zero_grad(&ps);
        let logits = model::forward(&arch, &ps, &x, (!drops.is_empty()).then_some(&keys));
        let loss = trainyard::train::loss_fn(LossKind::CrossEntropy, &logits, &y);
        loss.backward();
        opt.step(&ps);
        losses.push(loss.double_value(&[]));
    }
    let x_eval = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
    ex.put("x.eval", &x_eval);
    let logits = tch::no_grad(|| model::forward_member(&arch, &ps, 0, &x_eval));
    let names: Vec<&str> = arch.params.iter().chain(&arch.stats).map(|p| p.name.as_str()).collect();
    let manifest = json!({
        "layers": trainyard::network::layers_json(&spec.layers), "names": names, "tensors": ex.tensors,
        "steps": 3, "dropouts": drops.len(), "lr": spec.lr, "momentum": spec.momentum,
        "bench": Path::new(env!("CARGO_MANIFEST_DIR")).join("bench"),
    });
    std::fs::write(ex.dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let script = ex.dir.path().join("reference.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = std::process::Command::new(python()).arg(&script).arg(ex.dir.path()).output().expect("the venv's python");
    assert!(out.status.success(), "PyTorch failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = &spec.layers;
    // Float precision: convolutions and sums run in another order (channels-last, fused
    // kernels), which moves the last digits of float32 results, never more.
    let their_losses = values(&theirs["losses"]);
    for (i, (a, b)) in losses.iter().zip(&their_losses).enumerate() {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{label:?}: step {i} loss {a} vs PyTorch's {b}");
    }
    let ours_eval: Vec<f64> = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap().into_iter().map(f64::from).collect();
    let d = max_diff(&ours_eval, &values(&theirs["eval"]));
    assert!(d < 1e-4, "{label:?}: evaluation logits differ by {d}");
    let flat = |buffer: &Tensor, specs: &[trainyard::network::ParamSpec]| -> Vec<(String, Vec<f64>)> {
        let v: Vec<f32> = Vec::try_from(buffer.flatten(0, -1)).unwrap();
        let mut at = 0;
        specs
            .iter()
            .map(|p| {
                let n = p.numel() as usize;
                let part = v[at..at + n].iter().map(|&x| f64::from(x)).collect();
                at += n;
                (p.name.clone(), part)
            })
            .collect()
    };
    let weights = ps.member(&arch, &ps.flat, 0);
    let stats = ps.member_stats(&arch, 0);
    for (name, ours) in flat(&weights, &arch.params).into_iter().chain(flat(&stats, &arch.stats)) {
        let d = max_diff(&ours, &values(&theirs["after"][&name]));
        assert!(d < 1e-4, "{label:?}: {name} after training differs from PyTorch's by {d}");
    }
}

#[test]
fn the_issues_residual_list_with_batchnorm_and_dropout_trains_as_in_pytorch() {
    agrees_with_pytorch(json!([
      {"conv2d": {"out": 16, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool2d": 2},
      {"conv2d": {"out": 32, "kernel": 3, "padding": 1}}, "batchnorm", "relu",
      {"residual": [{"conv2d": {"out": 32, "kernel": 3, "padding": 1}}, "batchnorm", "relu"]},
      "global_avgpool", "flatten", {"dropout": 0.2}, {"linear": 10}
    ]));
}

#[test]
fn strided_convolutions_average_pooling_and_the_other_activations_train_as_in_pytorch() {
    agrees_with_pytorch(json!([
        {"conv2d": {"out": 8, "kernel": 3, "stride": 2, "padding": 1}}, "leaky_relu", {"avgpool2d": 2},
        "flatten", {"linear": 64}, "tanh", {"linear": 32}, "sigmoid", {"linear": 10}
    ]));
}

#[test]
fn same_padding_overlapping_pools_batchnorm_on_features_and_dropout_on_images_train_as_in_pytorch() {
    agrees_with_pytorch(json!([
        {"conv2d": {"out": 6, "kernel": 3, "padding": "same"}}, "gelu", {"dropout": 0.3},
        {"maxpool2d": {"kernel": 3, "stride": 2}}, {"avgpool2d": {"kernel": 2, "stride": 1}},
        {"residual": ["tanh", {"dropout": 0.1}]},
        "flatten", {"linear": 32}, "batchnorm", {"dropout": 0.5}, "relu", {"linear": 10}
    ]));
}

#[test]
fn the_named_models_train_as_the_tutorials_modules_do() {
    for model in ["linear", "mlp", "cnn"] {
        let spec = Spec::parse(&json!({"model": model})).unwrap();
        agrees_with_pytorch(trainyard::network::layers_json(&spec.layers));
    }
}

#[test]
fn dropout_keeps_each_value_with_probability_one_minus_p_and_members_draw_apart() {
    let keys = Tensor::from_slice(&[17i64, 4_000_000_000]);
    let mask = model::dropout_mask(&keys, 100_000, 0.3);
    for m in 0..2 {
        let kept = mask.get(m).gt(0.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        assert!((kept - 0.7).abs() < 0.01, "member {m} kept {kept}");
        let scale = mask.get(m).max().double_value(&[]);
        assert!((scale - 1.0 / 0.7).abs() < 1e-6, "kept values are scaled by 1/(1-p): {scale}");
    }
    let same = mask.get(0).eq_tensor(&mask.get(1)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    assert!((same - (0.7 * 0.7 + 0.3 * 0.3)).abs() < 0.01, "two keys give independent masks: {same} agree");
    assert!(model::dropout_mask(&keys, 10, 0.3).equal(&model::dropout_mask(&keys, 10, 0.3)), "a key's mask is fixed");
}
