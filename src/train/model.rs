//! Networks as lists of layers, trained G at a time: a fused group of same-shaped models.
//!
//! A spec's model is planned as layers and parameter shapes in `crate::network`;
//! `GroupParams` holds the weights of G members of one architecture, and `forward` runs all
//! of them at once (horizontal fusion, as HFTA):
//! - a convolution is one grouped convolution over the members' channels side by side
//!   (input [B, G·Cin, H, W], weight [G·Cout, Cin, k, k], groups = G);
//! - a linear layer is one batched matmul (`baddbmm`, [G, B, in] × [G, in, out]);
//! - pooling and ReLU act per channel, so they need nothing.
//!
//! Convolutions run on channels-last activations ([B, H, W, C] in memory): libtorch's CPU
//! kernels for grouped convolutions with few channels per group are several times faster
//! so (measured: BENCHMARKS.md, "Fused groups"), and a single model's are too.
//!
//! N.B.: all weights live in one flat buffer laid out parameter by parameter, each
//! parameter a contiguous [G, …] block, so a layer's fused weight is a view and the
//! optimiser updates every member's every weight with a handful of operations. Each
//! parameter is a leaf tensor whose data is a view into that buffer. A single job is a
//! group of one, and then every operation is the plain one (a grouped convolution with
//! groups = 1 is a convolution).

use super::rng::EpochRng;
use crate::network::{Architecture, Layer};
use tch::{Device, Kind, Tensor};

/// PyTorch's default init for Linear and Conv2d: weights and biases uniform in
/// ±1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)), drawn from the seed's stream 0, as one
/// member's values in parameter order.
///
/// N.B.: an allocation that fails is an error, not an abort of the whole process: a worker
/// fails that one job and goes on.
pub fn initial_values(arch: &Architecture, seed: u64) -> Result<Vec<f32>, std::collections::TryReserveError> {
    let mut rng = EpochRng::new(seed, 0);
    let mut values = Vec::new();
    values.try_reserve_exact(arch.numel().max(0) as usize)?;
    for p in &arch.params {
        let bound = 1.0 / (p.fan_in as f32).sqrt();
        values.extend((0..p.numel()).map(|_| (rng.uniform() * 2.0 - 1.0) * bound));
    }
    Ok(values)
}

/// The weights of G members of one architecture in one flat buffer.
pub struct GroupParams {
    pub members: i64,
    /// [Σ G·numel], parameter by parameter, each a [G, numel] block.
    pub flat: Tensor,
    /// Each parameter as a leaf tensor viewing `flat`, shaped as the fused layer uses it.
    pub tensors: Vec<Tensor>,
    /// Where each parameter's block starts in `flat`.
    offsets: Vec<i64>,
}

impl GroupParams {
    /// Stacks members' values, each [P] in parameter order (as `member` returns them).
    ///
    /// N.B.: each parameter's leaf tensor is shaped as the fused layer uses it, so a step
    /// makes no reshapes: a convolution's weight is [G·Cout, Cin, k, k] and its bias [G·Cout];
    /// a linear layer's weight is [G, out, in] and its bias [G, 1, out], or for a group of one
    /// [out, in] and [out], as an unfused model's.
    pub fn from_members(arch: &Architecture, rows: &[Tensor], device: Device) -> GroupParams {
        let g = rows.len() as i64;
        let flat = stack_rows(arch, rows).to_device(device);
        let mut shapes: Vec<Vec<i64>> = arch.params.iter().map(|p| [&[g][..], &p.shape].concat()).collect();
        for layer in &arch.layers {
            match *layer {
                Layer::Conv2d { weight, cin, cout, k } => {
                    shapes[weight] = vec![g * cout, cin, k, k];
                    shapes[weight + 1] = vec![g * cout];
                }
                Layer::Linear { weight, inp, out } if g == 1 => {
                    shapes[weight] = vec![out, inp];
                    shapes[weight + 1] = vec![out];
                }
                Layer::Linear { weight, inp, out } => {
                    shapes[weight] = vec![g, out, inp];
                    shapes[weight + 1] = vec![g, 1, out];
                }
                _ => {}
            }
        }
        let mut offsets = Vec::with_capacity(arch.params.len());
        let mut at = 0;
        for p in &arch.params {
            offsets.push(at);
            at += g * p.numel();
        }
        let mut ps = GroupParams { members: g, flat, tensors: Vec::new(), offsets };
        ps.tensors = shapes
            .iter()
            .map(|shape| Tensor::zeros(shape.as_slice(), (Kind::Float, device)).set_requires_grad(true))
            .collect();
        for i in 0..ps.tensors.len() {
            let view = ps.view_of(&ps.flat, i);
            ps.tensors[i].set_data(&view);
        }
        ps
    }

    /// Parameter `i` of every member in a buffer laid out as `flat` (weights, gradients or an
    /// optimiser's state), shaped as its leaf tensor.
    pub fn view_of(&self, buffer: &Tensor, i: usize) -> Tensor {
        let t = &self.tensors[i];
        buffer.narrow(0, self.offsets[i], t.numel() as i64).view(t.size().as_slice())
    }

    /// Member `m`'s slice of a buffer laid out as `flat` (weights, gradients or an
    /// optimiser's state), as its own [P] tensor in parameter order.
    pub fn member(&self, arch: &Architecture, buffer: &Tensor, m: i64) -> Tensor {
        let parts: Vec<Tensor> = arch
            .params
            .iter()
            .zip(&self.offsets)
            .map(|(p, &at)| buffer.narrow(0, at, self.members * p.numel()).view([self.members, p.numel()]).get(m))
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// A buffer laid out as `flat` whose every element holds its member's value of `per_member`.
    pub fn per_element(&self, arch: &Architecture, per_member: &[f64]) -> Tensor {
        let column = Tensor::from_slice(&per_member.iter().map(|&v| v as f32).collect::<Vec<_>>())
            .to_device(self.flat.device())
            .view([self.members, 1]);
        let blocks: Vec<Tensor> =
            arch.params.iter().map(|p| column.expand([self.members, p.numel()], false).reshape([-1])).collect();
        Tensor::cat(&blocks, 0)
    }
}

/// Members' [P] rows → the parameter-by-parameter [G, numel] layout of `GroupParams::flat`
/// (for the weights, or for an optimiser's buffer laid out alike).
pub fn stack_rows(arch: &Architecture, rows: &[Tensor]) -> Tensor {
    let mut blocks = Vec::with_capacity(arch.params.len());
    let mut at = 0;
    for p in &arch.params {
        let parts: Vec<Tensor> = rows.iter().map(|r| r.narrow(0, at, p.numel())).collect();
        blocks.push(Tensor::stack(&parts, 0).reshape([-1]));
        at += p.numel();
    }
    Tensor::cat(&blocks, 0)
}

/// How activations are laid out between layers.
enum Act {
    /// Member after member: [G·B, C, H, W] (a group of one: [B, C, H, W]).
    Stacked(Tensor),
    /// Members' channels side by side: [B, G·C, H, W].
    Channels(Tensor),
    /// [G, B, F] (a group of one: [B, F]).
    Dense(Tensor),
}

/// Logits of every member, member after member: [G·B, classes], from each member's own
/// images, member after member: [G·B, C, H, W].
pub fn forward(arch: &Architecture, ps: &GroupParams, images: &Tensor) -> Tensor {
    let g = ps.members;
    let mut xs = Act::Stacked(images.shallow_clone());
    for layer in &arch.layers {
        xs = match (*layer, xs) {
            (Layer::Conv2d { weight, .. }, xs) => {
                let x = match xs {
                    Act::Channels(x) => x,
                    Act::Stacked(x) if g == 1 => x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]),
                    Act::Stacked(x) => {
                        // [G·B, C, H, W] → [B, G·C, H, W] with the channels last in memory.
                        let s = x.size();
                        let b = s[0] / g;
                        let nhwc = x.view([g, b, s[1], s[2], s[3]]).permute([1, 3, 4, 0, 2]).contiguous();
                        nhwc.view([b, s[2], s[3], g * s[1]]).permute([0, 3, 1, 2])
                    }
                    Act::Dense(_) => panic!("a convolution after a flatten"),
                };
                let (w, b) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
                Act::Channels(x.conv2d(w, Some(b), [1, 1], [0, 0], [1, 1], g))
            }
            (Layer::MaxPool2, Act::Channels(x)) => Act::Channels(x.max_pool2d_default(2)),
            (Layer::MaxPool2, Act::Stacked(x)) => Act::Stacked(x.max_pool2d_default(2)),
            (Layer::Flatten, Act::Stacked(x) | Act::Channels(x)) if g == 1 => Act::Dense(x.flatten(1, -1)),
            (Layer::Flatten, Act::Stacked(x)) => {
                let b = x.size()[0] / g;
                Act::Dense(x.view([g, b, -1]))
            }
            (Layer::Flatten, Act::Channels(x)) => {
                let b = x.size()[0];
                Act::Dense(x.reshape([b, g, -1]).transpose(0, 1))
            }
            (Layer::Linear { weight, .. }, Act::Dense(x)) => {
                let (w, bias) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
                if g == 1 {
                    Act::Dense(x.linear(w, Some(bias)))
                } else {
                    Act::Dense(bias.baddbmm(&x, &w.transpose(1, 2), 1, 1))
                }
            }
            (Layer::Relu, Act::Stacked(x)) => Act::Stacked(x.relu()),
            (Layer::Relu, Act::Channels(x)) => Act::Channels(x.relu()),
            (Layer::Relu, Act::Dense(x)) => Act::Dense(x.relu()),
            (layer, _) => panic!("layer {layer:?} does not fit its input"),
        };
    }
    match xs {
        Act::Dense(x) if g == 1 => x,
        Act::Dense(x) => x.view([-1, x.size()[2]]),
        _ => panic!("a model must end in a linear layer"),
    }
}

/// Logits [B, classes] of member `m` alone, through views of its weights: evaluation, where a
/// batch is large and every member sees the same images, runs each member's plain layers
/// (measured faster than the fused ones on CPU: BENCHMARKS.md, "Fused groups").
pub fn forward_member(arch: &Architecture, ps: &GroupParams, m: i64, x: &Tensor) -> Tensor {
    let g = ps.members;
    let mut xs = x.shallow_clone();
    let mut channels_last = false;
    for layer in &arch.layers {
        xs = match *layer {
            Layer::Conv2d { weight, cout, .. } => {
                if !channels_last {
                    xs = xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                    channels_last = true;
                }
                let w = ps.tensors[weight].narrow(0, m * cout, cout);
                let b = ps.tensors[weight + 1].narrow(0, m * cout, cout);
                xs.conv2d(&w, Some(&b), [1, 1], [0, 0], [1, 1], 1)
            }
            Layer::MaxPool2 => xs.max_pool2d_default(2),
            Layer::Flatten => xs.flatten(1, -1),
            Layer::Linear { weight, .. } if g == 1 => xs.linear(&ps.tensors[weight], Some(&ps.tensors[weight + 1])),
            Layer::Linear { weight, .. } => {
                xs.linear(&ps.tensors[weight].get(m), Some(ps.tensors[weight + 1].get(m).reshape([-1])))
            }
            Layer::Relu => xs.relu(),
        };
    }
    xs
}
