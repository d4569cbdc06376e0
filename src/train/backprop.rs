//! A training step's backward pass written out by hand, without autograd's graph.
//!
//! On a CPU at the small batches of a class's runs, a step is dispatch bound: autograd records
//! a node per operation, packs the tensors each saves, runs its engine over the graph and
//! accumulates every gradient through a node of its own. For a plain chain of layers all of
//! that is known in advance, so `step` runs the forward pass without recording (keeping what
//! each layer's backward needs in a tape), and then each layer's backward in reverse: the very
//! kernels autograd's nodes call, in the same order on the same values, each weight's gradient
//! added into its `.grad` as autograd accumulates it. So a step's every gradient has autograd's
//! bits (tests compare them), and a fused member still equals its solo run.
//!
//! Measured: BENCHMARKS.md, "A backward pass without autograd". The loss (a few operations on
//! the logits) still runs through autograd, on a leaf made of the logits: whatever the loss,
//! the logits' gradient is the one autograd would give them.
//!
//! It takes the layer lists whose every layer it knows (`supports`): convolutions on
//! libtorch's own kernel (a single model's small ones, `ConvPath::Libtorch`, and a group's
//! member by member, `GroupConv::Members`) and a group's grouped ones (`GroupConv::Grouped`:
//! oneDNN's, the members' channels side by side, channels last), 2×2 max pooling at stride 2
//! (after a ReLU or not), average and global average pooling, batch normalisation (a group's
//! on features only), activations, dropout, flatten, linear layers and residual blocks of
//! these. Anything else (a single model's larger convolutions, oneDNN's on channels-last
//! activations; a group's normalisation of images; a GPU) trains through autograd as before.
//! `TRAINYARD_BACKWARD=autograd` turns it off (for benchmarks).

use super::model::{self, ConvPath, GroupConv, GroupParams, Images};
use super::native;
use crate::network::{ActKind, Architecture, Layer};
use tch::{Device, Kind, Tensor};

/// Whether `step` can train `arch` as a group of `g` on `device` at batches of at most
/// `batch` images per member, and `TRAINYARD_BACKWARD` (read once) does not say `autograd`.
pub fn supports(arch: &Architecture, g: i64, device: Device, batch: i64) -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let off = *OFF.get_or_init(|| std::env::var("TRAINYARD_BACKWARD").as_deref() == Ok("autograd"));
    !off && layers_supported(arch, g, device, batch)
}

/// `supports`, whatever the environment says.
pub fn layers_supported(arch: &Architecture, g: i64, device: Device, batch: i64) -> bool {
    device == Device::Cpu && g >= 1 && chain_supported(&arch.layers, g, device, batch, &mut false)
}

/// Whether every layer of `layers` is one `step` takes; `flat`: whether the activations are
/// features by then (a flatten came before).
fn chain_supported(layers: &[Layer], g: i64, device: Device, batch: i64, flat: &mut bool) -> bool {
    layers.iter().all(|layer| match layer {
        // A smaller batch (an epoch's last) has fewer multiply-adds, so takes the same path.
        &Layer::Conv2d { macs, .. } if g == 1 => ConvPath::on(device, batch, macs) == ConvPath::Libtorch,
        // A group's: member by member (`GroupConv::Members`) or grouped, the members' channels
        // side by side (`GroupConv::Grouped`).
        Layer::Conv2d { .. } => true,
        &Layer::MaxPool { k, stride } => k == 2 && stride == 2,
        // A group's normalisation of images puts the members' channels side by side, channels
        // last (as oneDNN's grouped convolutions take them): that layout stays with autograd.
        Layer::BatchNorm { .. } => g == 1 || *flat,
        Layer::Flatten => {
            *flat = true;
            true
        }
        Layer::Act(_) | Layer::Dropout { .. } | Layer::Linear { .. } | Layer::AvgPool { .. } | Layer::GlobalAvgPool => {
            true
        }
        Layer::Residual { layers, .. } => chain_supported(layers, g, device, batch, flat),
    })
}

/// What a layer's backward needs from its forward.
enum Saved {
    /// A convolution (for a group member by member, or `grouped` with its members' channels
    /// side by side): its input, and whether that needs a gradient (the images do not).
    Conv { x: Tensor, weight: usize, stride: i64, pad: i64, needs_gx: bool, grouped: bool },
    /// A 2×2 max pooling (after a ReLU or not): its input and indices.
    Pool { x: Tensor, indices: Tensor },
    /// An average pooling: its input.
    AvgPool { x: Tensor, k: i64, stride: i64 },
    /// A global average pooling (a mean over each plane): its input's shape.
    Mean { shape: Vec<i64> },
    /// Batch normalisation: its input as the kernel took it (a group's features: [B, G·F], the
    /// members' side by side, from [G, B, F]), the batch's mean and inverse deviation.
    Norm { x: Tensor, weight: usize, stats: usize, saved: [Tensor; 2], grouped: Option<[i64; 3]>, needs_gx: bool },
    /// An activation: its output (ReLU, tanh, sigmoid) or input (leaky ReLU, GELU), as
    /// PyTorch's derivative of it reads.
    Act { kind: ActKind, saved: Tensor },
    /// A dropout's scaled mask.
    Dropout { mask: Tensor },
    /// A flatten: the input's shape, and whether its members' channels were side by side.
    Reshape { shape: Vec<i64>, side: bool },
    /// A linear layer (and the ReLU after it, with its output): its input.
    Linear { x: Tensor, weight: usize, relu: Option<Tensor>, needs_gx: bool },
    /// A residual block: its layers' tape; its input's gradient is theirs plus the output's.
    Residual { tape: Vec<Saved>, needs_gx: bool },
}

/// One training step's forward and backward of a group whose layers `supports` takes, from
/// its images in either layout (`model::Images`): each member's gradients added into its
/// parameters' `.grad` (all defined: a first step through autograd makes them), and its
/// running statistics updated. `loss` maps the logits ([G·B, classes], member after member; a
/// leaf that requires a gradient) to what the engine records and backpropagates: each
/// member's mean loss ([G], summed for the backward pass; a scalar for a group of one).
/// Returns the logits (without a graph) and `loss`'s result.
pub fn step(
    arch: &Architecture,
    ps: &GroupParams,
    images: &Images,
    keys: Option<&Tensor>,
    grads: &[Tensor],
    loss: impl FnOnce(&Tensor) -> Tensor,
) -> (Tensor, Tensor) {
    let g = ps.members;
    let mut tape = Vec::with_capacity(arch.layers.len());
    let (x, side) = match images {
        Images::Stacked(x) => (x.shallow_clone(), false),
        Images::SideBySide(x) => (x.shallow_clone(), true),
    };
    let mut flow = Flow { needs: false, side };
    let out = tch::no_grad(|| forward(&arch.layers, ps, g, x, keys, &mut tape, &mut flow));
    // [G, B, classes] → [G·B, classes], as `model::forward_images` gives them.
    let logits = if g == 1 { out.shallow_clone() } else { out.reshape([-1, out.size()[2]]) };
    let leaf = logits.detach().set_requires_grad(true);
    let means = loss(&leaf);
    backward_of_means(&means, g);
    let up = leaf.grad().view(out.size().as_slice());
    tch::no_grad(|| {
        backward(&tape, ps, g, up, grads);
    });
    (logits, means)
}

/// Autograd's backward pass from each member's mean loss (`step`'s `loss`): a group of one's
/// scalar, or the sum of a group's [G], so that each member gets the gradients of its own.
pub fn backward_of_means(means: &Tensor, g: i64) {
    if g == 1 {
        means.backward();
    } else {
        means.sum(Kind::Float).backward();
    }
}

/// What `forward` knows of its activations as it goes.
struct Flow {
    /// Whether they depend on a weight (before the first layer with weights, nothing needs a
    /// gradient).
    needs: bool,
    /// Whether a group's images or activations are [B, G·C, H, W], its members' channels side
    /// by side, channels last in memory (as a grouped convolution takes and gives them), rather
    /// than member after member.
    side: bool,
}

/// The layers' forward pass without a graph, from `x`, recording in `tape` what the backward
/// needs, `flow` updated for the output. Returns the output as the autograd path
/// (`model::forward_images`) lays it out: for the last layer, logits [G, B, classes], or
/// [B, classes] for a group of one.
fn forward(
    layers: &[Layer],
    ps: &GroupParams,
    g: i64,
    mut x: Tensor,
    keys: Option<&Tensor>,
    tape: &mut Vec<Saved>,
    flow: &mut Flow,
) -> Tensor {
    // Our pooling takes NCHW or channels-last; a grouped convolution's activations are the latter.
    let contiguous = |x: Tensor, side: bool| if side { x } else { x.contiguous() };
    let mut i = 0;
    while i < layers.len() {
        if let (Some((k, stride)), 4) = (model::relu_then_max_pool(&layers[i..]), x.dim()) {
            debug_assert!(k == 2 && stride == 2);
            let xc = contiguous(x, flow.side);
            let (y, indices) = native::max_pool2d_indexed(&xc, true);
            if flow.needs {
                tape.push(Saved::Pool { x: xc, indices });
            }
            x = y;
            i += 2;
            continue;
        }
        match (&layers[i], layers.get(i + 1)) {
            (&Layer::Linear { weight, .. }, next) => {
                let relu = matches!(next, Some(Layer::Act(ActKind::Relu)));
                let (w, b) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
                let y = if relu { native::linear_relu(&x, w, b) } else { native::linear(&x, w, b) };
                tape.push(Saved::Linear { x, weight, relu: relu.then(|| y.shallow_clone()), needs_gx: flow.needs });
                x = y;
                flow.needs = true;
                i += if relu { 2 } else { 1 };
                continue;
            }
            (&Layer::Conv2d { weight, stride, pad, .. }, _) => {
                let (w, b) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
                let grouped = g > 1 && GroupConv::on(Device::Cpu) == GroupConv::Grouped;
                let (xc, y) = if grouped {
                    // As `model`'s grouped convolution; only the images (pooled or dropped out,
                    // maybe) come member after member, where a member augments them, and they
                    // need no gradient.
                    debug_assert!(flow.side || !flow.needs);
                    let xs = if flow.side { x } else { model::side_by_side(&x, g) };
                    let y = model::grouped_conv2d(&xs, w, b, g, stride, pad);
                    (xs, y)
                } else {
                    let xc = x.contiguous();
                    let y = if g == 1 {
                        native::thnn_conv2d(&xc, w, Some(b), stride, pad)
                    } else {
                        native::members_conv2d(&xc, w, b, g, stride, pad)
                    };
                    (xc, y)
                };
                tape.push(Saved::Conv { x: xc, weight, stride, pad, needs_gx: flow.needs, grouped });
                x = y;
                flow.needs = true;
                flow.side = grouped;
            }
            (&Layer::MaxPool { .. }, _) => {
                let xc = contiguous(x, flow.side);
                let (y, indices) = native::max_pool2d_indexed(&xc, false);
                if flow.needs {
                    tape.push(Saved::Pool { x: xc, indices });
                }
                x = y;
            }
            (&Layer::AvgPool { k, stride }, _) => {
                let y = x.avg_pool2d([k, k], [stride, stride], [0, 0], false, true, None::<i64>);
                if flow.needs {
                    tape.push(Saved::AvgPool { x, k, stride });
                }
                x = y;
            }
            (Layer::GlobalAvgPool, _) => {
                let y = x.adaptive_avg_pool2d([1, 1]);
                if flow.needs {
                    tape.push(Saved::Mean { shape: x.size() });
                }
                x = y;
            }
            (&Layer::BatchNorm { weight, stats, .. }, _) => {
                let (w, b) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
                let (rm, rv) = (&ps.stats[stats], &ps.stats[stats + 1]);
                // A group's features [G, B, F] → [B, G·F], the members' side by side (as
                // `model`'s fused layer).
                let grouped = (g > 1).then(|| {
                    let s = x.size();
                    [s[0], s[1], s[2]]
                });
                let input = match grouped {
                    Some([_, b, f]) => x.transpose(0, 1).reshape([b, g * f]),
                    None => x,
                };
                let (y, mean, invstd) = input.native_batch_norm(
                    Some(w),
                    Some(b),
                    Some(rm),
                    Some(rv),
                    true,
                    model::BN_MOMENTUM,
                    model::BN_EPS,
                );
                x = match grouped {
                    Some([_, b, f]) => y.view([b, g, f]).transpose(0, 1),
                    None => y,
                };
                tape.push(Saved::Norm {
                    x: input,
                    weight,
                    stats,
                    saved: [mean, invstd],
                    grouped,
                    needs_gx: flow.needs,
                });
                flow.needs = true;
            }
            (&Layer::Act(kind), _) => {
                let y = model::activation(kind, &x);
                if flow.needs {
                    let saved = match kind {
                        ActKind::Relu | ActKind::Tanh | ActKind::Sigmoid => y.shallow_clone(),
                        ActKind::LeakyRelu | ActKind::Gelu => x,
                    };
                    tape.push(Saved::Act { kind, saved });
                }
                x = y;
            }
            (&Layer::Dropout { p, slot }, _) if p > 0.0 => {
                let keys = keys.expect("dropout keys").select(1, slot as i64);
                let mask = model::dropout_mask_like(&keys, &x, g, p, flow.side);
                x = &x * &mask;
                if flow.needs {
                    tape.push(Saved::Dropout { mask });
                }
            }
            (Layer::Dropout { .. }, _) => {}
            (Layer::Flatten, _) if x.dim() == 4 => {
                let shape = x.size();
                x = model::flatten_images(&x, g, flow.side);
                if flow.needs {
                    tape.push(Saved::Reshape { shape, side: flow.side });
                }
                flow.side = false;
            }
            (Layer::Flatten, _) => {}
            (Layer::Residual { layers, .. }, _) => {
                let (needs_gx, side) = (flow.needs, flow.side);
                let mut inner = Vec::with_capacity(layers.len());
                let y = forward(layers, ps, g, x.shallow_clone(), keys, &mut inner, flow);
                // A block whose grouped convolution is a group's first puts its images side by
                // side for the sum too, as `model`'s; they need no gradient.
                debug_assert!(side || !flow.side || !needs_gx);
                x = if flow.side && !side { y + model::side_by_side(&x, g) } else { y + x };
                if flow.needs {
                    tape.push(Saved::Residual { tape: inner, needs_gx });
                }
            }
        }
        i += 1;
    }
    x
}

/// Each layer's backward in reverse, from the gradient of the last one's output: the kernels
/// autograd's nodes call for it, each weight's gradient added into `grads`. Returns the
/// gradient of the first layer's input, where that needs one.
fn backward(tape: &[Saved], ps: &GroupParams, g: i64, mut up: Tensor, grads: &[Tensor]) -> Option<Tensor> {
    for saved in tape.iter().rev() {
        up = match saved {
            Saved::Conv { x, weight, stride, pad, needs_gx, grouped } => {
                let (w, gw, gb) = (&ps.tensors[*weight], &grads[*weight], &grads[*weight + 1]);
                native::conv2d_backward(&up, x, w, gw, gb, g, *stride, *pad, *needs_gx, *grouped)?
            }
            Saved::Pool { x, indices } => native::max_pool2d_backward(&up, indices, x),
            Saved::AvgPool { x, k, stride } => {
                x.avg_pool2d_backward(&up, [*k, *k], [*stride, *stride], [0, 0], false, true, None::<i64>)
            }
            // A mean's backward: the gradient spread over the plane, divided by its size.
            Saved::Mean { shape } => up.expand(shape.as_slice(), false) / (shape[2] * shape[3]),
            Saved::Norm { x, weight, stats, saved, grouped, needs_gx } => {
                let up = match grouped {
                    Some([_, b, f]) => up.transpose(0, 1).reshape([*b, g * f]),
                    None => up,
                };
                let stats = [&ps.stats[*stats], &ps.stats[*stats + 1]];
                let (w, gw, gb) = (&ps.tensors[*weight], &grads[*weight], &grads[*weight + 1]);
                let saved = [&saved[0], &saved[1]];
                let gx = native::batch_norm_backward(&up, x, w, stats, saved, model::BN_EPS, gw, gb, *needs_gx)?;
                match grouped {
                    Some([_, b, f]) => gx.view([*b, g, *f]).transpose(0, 1),
                    None => gx,
                }
            }
            Saved::Act { kind, saved } => match kind {
                ActKind::Relu => saved.threshold_backward(&up, 0),
                ActKind::LeakyRelu => saved.leaky_relu_backward(&up, 0.01, false),
                ActKind::Tanh => Tensor::tanh_backward(&up, saved),
                ActKind::Sigmoid => Tensor::sigmoid_backward(&up, saved),
                ActKind::Gelu => saved.gelu_backward(&up, "none"),
            },
            Saved::Dropout { mask } => &up * mask,
            // [G, B, C·H·W] → [B, G·C, H, W] for a group's members side by side.
            Saved::Reshape { shape, side: true } => up.transpose(0, 1).reshape(shape.as_slice()),
            Saved::Reshape { shape, side: false } => up.reshape(shape.as_slice()),
            Saved::Linear { x, weight, relu, needs_gx } => {
                let up = match relu {
                    Some(y) => y.threshold_backward(&up, 0),
                    None => up,
                };
                let w = &ps.tensors[*weight];
                let (mut gw, mut gb) = (grads[*weight].shallow_clone(), grads[*weight + 1].shallow_clone());
                // As linear.cpp's backward: x's gradient, the weight's product added in place
                // in its own order, the bias's sum.
                let gx = needs_gx.then(|| if w.dim() == 2 { up.mm(w) } else { up.bmm(w) });
                if w.dim() == 2 {
                    let _ = gw.addmm_(&up.tr(), x);
                    let _ = gb.g_add_(&up.sum_dim_intlist(0, false, None));
                } else {
                    let _ = gw.baddbmm_(&up.transpose(1, 2), x);
                    let _ = gb.g_add_(&up.sum_dim_intlist(1, true, None));
                }
                gx?
            }
            Saved::Residual { tape, needs_gx } => {
                let through = backward(tape, ps, g, up.shallow_clone(), grads);
                if !needs_gx {
                    return None;
                }
                // The skip's gradient and the block's, summed as autograd sums a tensor's two.
                match through {
                    Some(t) => t + up,
                    None => up,
                }
            }
        };
    }
    Some(up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use crate::train::model::{forward_images, initial_stats, initial_values, side_by_side, takes_side_by_side};
    use serde_json::json;
    use tch::Reduction;

    /// Each member's mean loss, as the engine's: cross-entropy or MSE against one-hot labels.
    fn means(z: &Tensor, labels: &Tensor, g: i64, mse: bool) -> Tensor {
        match (g, mse) {
            (1, false) => z.cross_entropy_for_logits(labels),
            (1, true) => z.mse_loss(&labels.one_hot(10).to_kind(Kind::Float), Reduction::Mean),
            (_, false) => z
                .cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0)
                .view([g, -1])
                .mean_dim(1, false, None),
            (_, true) => z
                .mse_loss(&labels.one_hot(10).to_kind(Kind::Float), Reduction::None)
                .view([g, -1])
                .mean_dim(1, false, None),
        }
    }

    /// A group of `g` members of `layers` (seeds 0…g−1), trained two steps through autograd
    /// and by hand from the same weights: the logits, losses and every gradient of each step
    /// must be the same bits; from images member after member, and where a group takes them
    /// so (`takes_side_by_side`), with its members' channels side by side.
    fn same_bits(layers: serde_json::Value, g: i64, batch: i64, mse: bool) {
        let arch = Architecture::of(&Spec::parse(&json!({ "layers": layers })).unwrap());
        assert!(
            layers_supported(&arch, g, Device::Cpu, batch),
            "{layers} for {g}: the engine trains it through autograd"
        );
        same_bits_from(&arch, &layers, g, batch, mse, false);
        if takes_side_by_side(&arch, g, Device::Cpu) {
            same_bits_from(&arch, &layers, g, batch, mse, true);
        }
    }

    /// `same_bits` from images side by side (`side`) or member after member.
    fn same_bits_from(arch: &Architecture, layers: &serde_json::Value, g: i64, batch: i64, mse: bool, side: bool) {
        let rows: Vec<Tensor> = (0..g as u64).map(|s| Tensor::from_slice(&initial_values(arch, s).unwrap())).collect();
        let stats: Vec<Tensor> = (0..g).map(|_| initial_stats(arch)).collect();
        let by_autograd = GroupParams::from_members(arch, &rows, &stats, Device::Cpu);
        let by_hand = GroupParams::from_members(arch, &rows, &stats, Device::Cpu);
        // The engine's first step makes the gradients; here a zero one does.
        for t in &by_hand.tensors {
            (t * 0.0).sum(Kind::Float).backward();
        }
        tch::manual_seed(5);
        for step_no in 0..2 {
            let images = Tensor::randn([g * batch, 3, 32, 32], (Kind::Float, Device::Cpu));
            let labels = Tensor::randint(10, [g * batch], (Kind::Int64, Device::Cpu));
            let keys = (arch.dropouts > 0)
                .then(|| Tensor::randint(1 << 32, [g, arch.dropouts as i64], (Kind::Int64, Device::Cpu)));
            for ps in [&by_autograd, &by_hand] {
                for t in &ps.tensors {
                    let mut gr = t.grad();
                    if gr.defined() {
                        let _ = gr.zero_();
                    }
                }
            }
            let images = if side { Images::SideBySide(side_by_side(&images, g)) } else { Images::Stacked(images) };
            let logits = forward_images(arch, &by_autograd, &images, keys.as_ref());
            let expected = means(&logits, &labels, g, mse);
            backward_of_means(&expected, g);
            let grads: Vec<Tensor> = by_hand.tensors.iter().map(|t| t.grad()).collect();
            let (z, got) = step(arch, &by_hand, &images, keys.as_ref(), &grads, |z| means(z, &labels, g, mse));
            let at = format!("{layers} for {g} at batch {batch} (side by side: {side}), step {step_no}");
            assert!(z.equal(&logits.detach()), "{at}: logits");
            assert!(got.detach().equal(&expected.detach()), "{at}: losses");
            assert!(by_hand.stats_flat.equal(&by_autograd.stats_flat), "{at}: running statistics");
            for (i, (a, e)) in grads.iter().zip(&by_autograd.tensors).enumerate() {
                let e = e.grad();
                assert!(a.equal(&e), "{at}: parameter {i}'s gradient differs by {}", (a - &e).abs().max());
                assert!(e.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{at}: parameter {i} has no gradient");
            }
        }
    }

    fn cnn() -> serde_json::Value {
        json!([{"conv2d": {"out": 6, "kernel": 5}}, "relu", {"maxpool2d": 2}, {"conv2d": {"out": 16, "kernel": 5}},
               "relu", {"maxpool2d": 2}, "flatten", {"linear": 120}, "relu", {"linear": 84}, "relu", {"linear": 10}])
    }

    /// Runs this module's test `name` again in a child process of this test binary, with
    /// `TRAINYARD_GROUP_CONV` set to the path for a group's convolutions (`GroupConv`) that this
    /// machine does not take, so that both are checked on every machine; in a process where
    /// that already names a path, does nothing.
    fn and_on_the_other_group_path(name: &str) {
        if matches!(std::env::var("TRAINYARD_GROUP_CONV").as_deref(), Ok("grouped" | "members")) {
            return;
        }
        let other = match GroupConv::on(Device::Cpu) {
            GroupConv::Grouped => "members",
            GroupConv::Members => "grouped",
        };
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([format!("train::backprop::tests::{name}").as_str(), "--exact", "--test-threads=1"])
            .env("TRAINYARD_GROUP_CONV", other)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} with TRAINYARD_GROUP_CONV={other}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_tutorial_cnns_step_by_hand_has_autograds_bits() {
        for batch in [1, 4, 3] {
            same_bits(cnn(), 1, batch, false);
        }
        same_bits(cnn(), 1, 4, true);
        // A group's, member by member or grouped (this machine's path, then the other).
        same_bits(cnn(), 3, 4, false);
        same_bits(cnn(), 2, 1, true);
        and_on_the_other_group_path("the_tutorial_cnns_step_by_hand_has_autograds_bits");
    }

    #[test]
    fn every_activation_dropout_and_plain_pooling_by_hand_have_autograds_bits() {
        let mlp = json!(["flatten", {"linear": 32}, "tanh", {"linear": 24}, "sigmoid", {"linear": 20}, "gelu",
                         {"linear": 16}, "leaky_relu", {"dropout": 0.3}, {"linear": 16}, "relu", {"linear": 10}]);
        // Pooling and dropout on the images come before any weight: nothing to backpropagate.
        let convs = json!([{"dropout": 0.2}, {"maxpool2d": 2}, {"conv2d": {"out": 5, "kernel": 3, "stride": 2, "padding": 1}},
                           {"maxpool2d": 2}, "tanh", {"dropout": 0.5}, {"conv2d": {"out": 4, "kernel": 3, "padding": "same"}},
                           "gelu", "flatten", {"dropout": 0.1}, {"linear": 10}]);
        for g in [1, 3] {
            same_bits(mlp.clone(), g, 4, false);
            same_bits(json!(["flatten", {"linear": 10}]), g, 2, g == 3);
            same_bits(convs.clone(), g, 4, false);
        }
        // Pooling without a ReLU, average pooling and dropout after a group's convolution.
        let pooled = json!([{"conv2d": {"out": 4, "kernel": 3}}, {"maxpool2d": 2}, "relu", {"dropout": 0.3},
                            {"conv2d": {"out": 3, "kernel": 3}}, {"avgpool2d": 2}, "global_avgpool", "flatten", {"linear": 10}]);
        same_bits(pooled, 2, 3, false);
        and_on_the_other_group_path("every_activation_dropout_and_plain_pooling_by_hand_have_autograds_bits");
    }

    #[test]
    fn normalisation_average_pooling_and_residual_blocks_by_hand_have_autograds_bits() {
        let conv = |out: i64| json!({"conv2d": {"out": out, "kernel": 3, "padding": 1}});
        // A small ResNet: normalised convolutions, blocks with a skip, average pooling.
        let resnet = json!([conv(4), "batchnorm", "relu",
            {"residual": [conv(4), "batchnorm", "relu", conv(4), "batchnorm"]}, "relu", {"avgpool2d": 2},
            {"residual": [conv(4), "tanh"]}, "global_avgpool", "flatten", {"linear": 10}]);
        same_bits(resnet, 1, 4, false);
        // A block and an average pooling before any weight; normalised features.
        let mixed = json!([{"residual": ["relu", {"avgpool2d": {"kernel": 1, "stride": 1}}]}, {"avgpool2d": 4},
            "flatten", {"linear": 24}, "batchnorm", "relu", {"residual": [{"linear": 24}, "batchnorm", "gelu"]},
            {"dropout": 0.2}, {"linear": 10}]);
        for g in [1, 3] {
            same_bits(mixed.clone(), g, 4, g == 3);
        }
        // A group's blocks of convolutions; the first convolution in a block.
        let blocks = json!([conv(3), "relu", {"residual": [conv(3), "relu", conv(3)]}, {"maxpool2d": 2},
            {"avgpool2d": 2}, "global_avgpool", "flatten", {"linear": 10}]);
        same_bits(blocks, 3, 2, false);
        let first = json!([{"residual": [conv(3), "relu"]}, {"maxpool2d": 2}, "flatten", {"linear": 10}]);
        same_bits(first, 2, 2, false);
        and_on_the_other_group_path("normalisation_average_pooling_and_residual_blocks_by_hand_have_autograds_bits");
    }

    #[test]
    fn layers_autograd_trains_are_left_to_it() {
        let arch = |layers: serde_json::Value| Architecture::of(&Spec::parse(&json!({ "layers": layers })).unwrap());
        let cnn = arch(cnn());
        assert!(layers_supported(&cnn, 1, Device::Cpu, 4));
        // A single model's larger convolutions run oneDNN's on channels-last activations.
        let small = ConvPath::on(Device::Cpu, 64, 6 * 28 * 28 * 75) == ConvPath::Libtorch;
        assert_eq!(layers_supported(&cnn, 1, Device::Cpu, 64), small);
        // A group's, member by member or grouped.
        assert!(layers_supported(&cnn, 8, Device::Cpu, 4));
        assert!(!layers_supported(&cnn, 1, Device::Cuda(0), 4));
        // A group's normalisation of images lays its channels side by side: autograd's.
        let normalised = arch(json!([{"conv2d": {"out": 4, "kernel": 3}}, "batchnorm", "flatten", {"linear": 10}]));
        assert!(layers_supported(&normalised, 1, Device::Cpu, 4));
        assert!(!layers_supported(&normalised, 2, Device::Cpu, 4));
        let in_a_block = arch(
            json!([{"residual": [{"conv2d": {"out": 3, "kernel": 3, "padding": 1}}, "batchnorm"]}, "flatten", {"linear": 10}]),
        );
        assert!(layers_supported(&in_a_block, 1, Device::Cpu, 4));
        assert!(!layers_supported(&in_a_block, 2, Device::Cpu, 4));
        let features = arch(json!(["flatten", {"linear": 8}, "batchnorm", {"linear": 10}]));
        assert!(layers_supported(&features, 5, Device::Cpu, 4));
        // A pooling other than 2×2 at stride 2 takes libtorch's kernel, through autograd.
        assert!(!layers_supported(&arch(json!([{"maxpool2d": 3}, "flatten", {"linear": 10}])), 1, Device::Cpu, 4));
    }
}
