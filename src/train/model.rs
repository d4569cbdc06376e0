//! Networks as lists of layers, trained G at a time: a fused group of same-shaped models.
//!
//! A spec's network is planned as layers and tensor shapes in `crate::network`;
//! `GroupParams` holds the weights (and running statistics) of G members of one
//! architecture, and `forward` runs all of them at once (horizontal fusion, as HFTA):
//! - a convolution is one grouped convolution over the members' channels side by side
//!   (input [B, G·Cin, H, W], weight [G·Cout, Cin, k, k], groups = G) where oneDNN has its
//!   AVX-512 kernels, and elsewhere one autograd node that runs each member's on libtorch's
//!   own kernel, as alone (`GroupConv`);
//! - batch normalisation is one op over the members' channels (or features) side by side,
//!   so each member's statistics are its own;
//! - a linear layer is one batched matmul (`baddbmm`, [G, B, in] × [G, in, out]);
//! - dropout draws each member's mask from that member's own keys;
//! - pooling and activations act per channel, and a residual block adds per member, so they
//!   need nothing.
//!
//! Convolutions run on channels-last activations ([B, H, W, C] in memory): libtorch's CPU
//! kernels for grouped convolutions with few channels per group are several times faster
//! so (measured: BENCHMARKS.md, "Fused groups"), and a single model's larger ones are too. A
//! single model's small ones (the tutorial CNN at batch ≤ 4) run libtorch's own im2col kernel
//! on NCHW activations instead (`ConvPath`; BENCHMARKS.md, "Convolution paths"). Max pooling
//! runs a plain loop of ours on either layout (`native::max_pool2d`, the same values as
//! libtorch's, several times faster on these shapes; a ReLU before it runs in the same pass,
//! `native::relu_max_pool2d`), and a linear layer's backward adds its weight's gradient in
//! place in the weight's own order (`native::linear`; BENCHMARKS.md, "Max pooling, linear
//! layers and the allocator's decay"; a ReLU after it runs in the same autograd node,
//! `native::linear_relu`).
//!
//! N.B.: all weights live in one flat buffer laid out parameter by parameter, each
//! parameter a contiguous [G, …] block, so a layer's fused weight is a view and the
//! optimiser updates every member's every weight with a handful of operations. Each
//! parameter is a leaf tensor whose data is a view into that buffer. A single job is a
//! group of one, and then every operation is the plain one (a grouped convolution with
//! groups = 1 is a convolution).

use super::native;
use super::rng::EpochRng;
use crate::network::{ActKind, Architecture, Init, Layer, ParamSpec};
use tch::{Device, Kind, Tensor};

/// Batch normalisation's PyTorch defaults.
pub(crate) const BN_MOMENTUM: f64 = 0.1;
pub(crate) const BN_EPS: f64 = 1e-5;

/// PyTorch's default init: Linear and Conv2d weights and biases uniform in ±1/sqrt(fan_in)
/// (kaiming_uniform with a = sqrt(5)), drawn from the seed's stream 0 in parameter order;
/// batch normalisation's weight 1 and bias 0 (drawing nothing). One member's values in
/// parameter order.
///
/// N.B.: an allocation that fails is an error, not an abort of the whole process: a worker
/// fails that one job and goes on.
pub fn initial_values(arch: &Architecture, seed: u64) -> Result<Vec<f32>, std::collections::TryReserveError> {
    let mut rng = EpochRng::new(seed, 0);
    let mut values = Vec::new();
    values.try_reserve_exact(arch.numel().max(0) as usize)?;
    for p in &arch.params {
        match p.init {
            Init::Uniform { fan_in } => {
                let bound = 1.0 / (fan_in as f32).sqrt();
                values.extend((0..p.numel()).map(|_| (rng.uniform() * 2.0 - 1.0) * bound));
            }
            Init::Zeros => values.extend((0..p.numel()).map(|_| 0.0)),
            Init::Ones => values.extend((0..p.numel()).map(|_| 1.0)),
        }
    }
    Ok(values)
}

/// The running statistics a member starts with (means 0, variances 1), in order.
pub fn initial_stats(arch: &Architecture) -> Tensor {
    let values: Vec<f32> = arch
        .stats
        .iter()
        .flat_map(|s| std::iter::repeat_n(if s.init == Init::Ones { 1.0 } else { 0.0 }, s.numel() as usize))
        .collect();
    Tensor::from_slice(&values)
}

/// Every layer of `layers`, residual bodies included, in order.
fn each_layer<'a>(layers: &'a [Layer], out: &mut Vec<&'a Layer>) {
    for l in layers {
        out.push(l);
        if let Layer::Residual { layers, .. } = l {
            each_layer(layers, out);
        }
    }
}

/// Where each tensor's [G, numel] block starts in a flat buffer of `specs`.
fn offsets(specs: &[ParamSpec], g: i64) -> Vec<i64> {
    let mut at = 0;
    specs
        .iter()
        .map(|p| {
            let start = at;
            at += g * p.numel();
            start
        })
        .collect()
}

/// The weights of G members of one architecture in one flat buffer, and their running
/// statistics in another.
pub struct GroupParams {
    pub members: i64,
    /// [Σ G·numel], parameter by parameter, each a [G, numel] block.
    pub flat: Tensor,
    /// Each parameter as a leaf tensor viewing `flat`, shaped as the fused layer uses it.
    pub tensors: Vec<Tensor>,
    /// Where each parameter's block starts in `flat`.
    offsets: Vec<i64>,
    /// The running statistics, laid out as `flat` is (no gradient: training updates them).
    pub stats_flat: Tensor,
    /// Each statistic as a [G·C] view of `stats_flat`: the members' channels side by side.
    pub stats: Vec<Tensor>,
    stat_offsets: Vec<i64>,
}

impl GroupParams {
    /// Stacks members' values, each [P] in parameter order (as `member` returns them), and
    /// their running statistics, each [S] (as `member_stats` returns them).
    ///
    /// N.B.: each parameter's leaf tensor is shaped as the fused layer uses it, so a step
    /// makes no reshapes: a convolution's weight is [G·Cout, Cin, k, k] and its bias [G·Cout];
    /// batch normalisation's weight and bias [G·C]; a linear layer's weight is [G, out, in]
    /// and its bias [G, 1, out], or for a group of one [out, in] and [out], as an unfused
    /// model's.
    pub fn from_members(arch: &Architecture, rows: &[Tensor], stat_rows: &[Tensor], device: Device) -> GroupParams {
        let g = rows.len() as i64;
        let flat = stack(&arch.params, rows).to_device(device);
        let mut shapes: Vec<Vec<i64>> = arch.params.iter().map(|p| [&[g][..], &p.shape].concat()).collect();
        let mut all = Vec::new();
        each_layer(&arch.layers, &mut all);
        for layer in all {
            match *layer {
                Layer::Conv2d { weight, cin, cout, k, .. } => {
                    shapes[weight] = vec![g * cout, cin, k, k];
                    shapes[weight + 1] = vec![g * cout];
                }
                Layer::BatchNorm { weight, channels, .. } => {
                    shapes[weight] = vec![g * channels];
                    shapes[weight + 1] = vec![g * channels];
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
        let stats_flat = if arch.stats.is_empty() {
            Tensor::zeros([0], (Kind::Float, device))
        } else {
            stack(&arch.stats, stat_rows).to_device(device)
        };
        let stat_offsets = offsets(&arch.stats, g);
        let stats =
            arch.stats.iter().zip(&stat_offsets).map(|(s, &at)| stats_flat.narrow(0, at, g * s.numel())).collect();
        let mut ps = GroupParams {
            members: g,
            flat,
            tensors: Vec::new(),
            offsets: offsets(&arch.params, g),
            stats_flat,
            stats,
            stat_offsets,
        };
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

    /// Where each member's share of `flat` lies, in buffer order: `(start, len, member)` for
    /// every parameter and member (a parameter's block is its members' values one after
    /// another).
    pub fn member_runs(&self) -> Vec<(usize, usize, usize)> {
        let g = self.members.max(1) as usize;
        let mut runs = Vec::with_capacity(self.tensors.len() * g);
        for (t, &at) in self.tensors.iter().zip(&self.offsets) {
            let each = t.numel() / g;
            runs.extend((0..g).map(|m| (at as usize + m * each, each, m)));
        }
        runs
    }

    /// Member `m`'s slice of a buffer laid out as `flat` (weights, gradients or an
    /// optimiser's state), as its own [P] tensor in parameter order.
    pub fn member(&self, arch: &Architecture, buffer: &Tensor, m: i64) -> Tensor {
        member_of(&arch.params, &self.offsets, self.members, buffer, m)
    }

    /// Member `m`'s running statistics, [S] in order.
    pub fn member_stats(&self, arch: &Architecture, m: i64) -> Tensor {
        member_of(&arch.stats, &self.stat_offsets, self.members, &self.stats_flat, m)
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

fn member_of(specs: &[ParamSpec], offsets: &[i64], g: i64, buffer: &Tensor, m: i64) -> Tensor {
    if specs.is_empty() {
        return Tensor::zeros([0], (Kind::Float, buffer.device()));
    }
    let parts: Vec<Tensor> = specs
        .iter()
        .zip(offsets)
        .map(|(p, &at)| buffer.narrow(0, at, g * p.numel()).view([g, p.numel()]).get(m))
        .collect();
    Tensor::cat(&parts, 0)
}

/// Members' [P] rows → the tensor-by-tensor [G, numel] layout of `GroupParams::flat`.
fn stack(specs: &[ParamSpec], rows: &[Tensor]) -> Tensor {
    let mut blocks = Vec::with_capacity(specs.len());
    let mut at = 0;
    for p in specs {
        let parts: Vec<Tensor> = rows.iter().map(|r| r.narrow(0, at, p.numel())).collect();
        blocks.push(Tensor::stack(&parts, 0).reshape([-1]));
        at += p.numel();
    }
    Tensor::cat(&blocks, 0)
}

/// Members' [P] rows → the parameter-by-parameter [G, numel] layout of `GroupParams::flat`
/// (for the weights, or for an optimiser's buffer laid out alike).
pub fn stack_rows(arch: &Architecture, rows: &[Tensor]) -> Tensor {
    stack(&arch.params, rows)
}

/// How activations are laid out between layers.
enum Act {
    /// Member after member: [G·B, C, H, W] (a group of one: [B, C, H, W]).
    Stacked(Tensor),
    /// Members' channels side by side: [B, G·C, H, W], channels last in memory.
    Channels(Tensor),
    /// [G, B, F] (a group of one: [B, F]).
    Dense(Tensor),
}

impl Act {
    fn shallow(&self) -> Act {
        match self {
            Act::Stacked(x) => Act::Stacked(x.shallow_clone()),
            Act::Channels(x) => Act::Channels(x.shallow_clone()),
            Act::Dense(x) => Act::Dense(x.shallow_clone()),
        }
    }

    /// `f` applied to the values, the layout kept (an op that acts per channel or element).
    fn map(self, f: impl Fn(&Tensor) -> Tensor) -> Act {
        match self {
            Act::Stacked(x) => Act::Stacked(f(&x)),
            Act::Channels(x) => Act::Channels(f(&x)),
            Act::Dense(x) => Act::Dense(f(&x)),
        }
    }
}

/// Which CPU kernel trains a single model's convolution (a fused group's grouped one is always
/// oneDNN's on channels-last activations: several times faster than the alternatives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPath {
    /// oneDNN on channels-last activations (libtorch's choice for `conv2d` on CPU).
    OneDnn,
    /// libtorch's own im2col and matrix product (`thnn_conv2d`) on NCHW activations.
    Libtorch,
}

/// A single model's training convolution of at most this many multiply-adds per step (batch ×
/// output positions × output channels × input channels × kernel area) runs libtorch's own
/// kernel on CPU: below it oneDNN's per-call set-up costs more than its faster arithmetic saves
/// (the tutorial CNN's two at batch 4 are 1.41 M and 0.96 M, a 3×3 convolution from 3 to 16
/// channels on 32×32 images at batch 4 1.77 M; measured: BENCHMARKS.md,
/// "Convolution paths").
pub const LIBTORCH_CONV_MAX_MACS: i64 = 1_500_000;

impl ConvPath {
    /// The path for a single model's training convolution of `x` ([B, C, H, W]) by a layer of
    /// `macs` multiply-adds per image (`Layer::Conv2d`): by `TRAINYARD_CONV_PATH` (`onednn` or
    /// `libtorch`, read once; for benchmarks) or else `by_size`, on CPU.
    pub fn of(x: &Tensor, macs: i64) -> ConvPath {
        ConvPath::on(x.device(), x.size()[0], macs)
    }

    /// `of` for a batch of `batch` images on `device`.
    pub fn on(device: Device, batch: i64, macs: i64) -> ConvPath {
        static FORCED: std::sync::OnceLock<Option<ConvPath>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| match std::env::var("TRAINYARD_CONV_PATH").as_deref() {
            Ok("onednn") => Some(ConvPath::OneDnn),
            Ok("libtorch") => Some(ConvPath::Libtorch),
            _ => None,
        });
        if device != Device::Cpu {
            return ConvPath::OneDnn;
        }
        forced.unwrap_or_else(|| ConvPath::by_size(batch, macs))
    }

    /// libtorch's own kernel for at most `LIBTORCH_CONV_MAX_MACS` multiply-adds a step, else
    /// oneDNN's.
    pub fn by_size(batch: i64, macs: i64) -> ConvPath {
        if batch.saturating_mul(macs) <= LIBTORCH_CONV_MAX_MACS {
            ConvPath::Libtorch
        } else {
            ConvPath::OneDnn
        }
    }
}

/// How a fused group's training convolution runs on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupConv {
    /// One grouped convolution over the members' channels side by side, channels last
    /// (oneDNN's): several times faster than the alternatives where oneDNN has AVX-512.
    Grouped,
    /// Member by member on libtorch's own kernel, as one autograd node
    /// (`native::members_conv2d`): each member's bits as alone where its solo run takes
    /// libtorch's own kernel too (`ConvPath`: the tutorial CNN at batch ≤ 4). Without AVX-512, oneDNN's grouped
    /// backward spends most of its time in an im2col for few input channels per member
    /// (BENCHMARKS.md, "Fused groups member by member").
    Members,
}

impl GroupConv {
    /// The path on `device`: by `TRAINYARD_GROUP_CONV` (`grouped` or `members`, read once; for
    /// benchmarks), else `Grouped` where oneDNN has its AVX-512 kernels (`onednn_avx512`) and
    /// `Members` elsewhere on the CPU (measured on both kinds of machine: BENCHMARKS.md,
    /// "Fused groups member by member"); off the CPU always `Grouped`.
    pub fn on(device: Device) -> GroupConv {
        static FORCED: std::sync::OnceLock<Option<GroupConv>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| match std::env::var("TRAINYARD_GROUP_CONV").as_deref() {
            Ok("grouped") => Some(GroupConv::Grouped),
            Ok("members") => Some(GroupConv::Members),
            _ => None,
        });
        match (device, forced) {
            (Device::Cpu, Some(path)) => path,
            (Device::Cpu, None) if !onednn_avx512() => GroupConv::Members,
            _ => GroupConv::Grouped,
        }
    }
}

/// Whether oneDNN runs convolutions with its AVX-512 kernels here: the CPU has AVX-512 and
/// `ONEDNN_MAX_CPU_ISA` (oneDNN's own limit) does not hold it to less.
pub fn onednn_avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        let limit = std::env::var("ONEDNN_MAX_CPU_ISA").unwrap_or_default().to_ascii_uppercase();
        avx512 && (limit.is_empty() || limit.contains("AVX512") || limit.contains("AVX10") || limit == "ALL")
    })
}

/// A group of `g`'s convolution by `path`: `Grouped` gives the members' channels side by side
/// (`Act::Channels`), `Members` member after member (`Act::Stacked`).
fn group_conv(path: GroupConv, xs: Act, w: &Tensor, b: &Tensor, g: i64, stride: i64, pad: i64) -> Act {
    match path {
        GroupConv::Members => {
            Act::Stacked(native::members_conv2d(&to_stacked(xs, g).contiguous(), w, b, g, stride, pad))
        }
        GroupConv::Grouped => Act::Channels(grouped_conv2d(&to_channels(xs, g), w, b, g, stride, pad)),
    }
}

/// A group's grouped convolution of `x` ([B, G·Cin, H, W], its members' channels side by side,
/// channels last) by `w` ([G·Cout, Cin, kh, kw]) in g groups: oneDNN's. `backprop`'s step
/// makes the same call, and its backward the call autograd's node makes for it.
pub(crate) fn grouped_conv2d(x: &Tensor, w: &Tensor, b: &Tensor, g: i64, stride: i64, pad: i64) -> Tensor {
    x.conv2d(w, Some(b), [stride, stride], [pad, pad], [1, 1], g)
}

/// A group's image activation `x` as features, as a flatten gives them: [B, F] for a group of
/// one, else [G, B, F], from [G·B, C, H, W] member after member or, with `side`, from
/// [B, G·C, H, W] with its members' channels side by side.
pub(crate) fn flatten_images(x: &Tensor, g: i64, side: bool) -> Tensor {
    match (g, side) {
        (1, _) => x.flatten(1, -1),
        (_, false) => x.view([g, x.size()[0] / g, -1]),
        (_, true) => x.reshape([x.size()[0], g, -1]).transpose(0, 1),
    }
}

/// An image activation member after member: [G·B, C, H, W].
fn to_stacked(xs: Act, g: i64) -> Tensor {
    match xs {
        Act::Stacked(x) => x,
        Act::Channels(x) => {
            let s = x.size();
            let c = s[1] / g;
            x.reshape([s[0], g, c, s[2], s[3]]).transpose(0, 1).reshape([g * s[0], c, s[2], s[3]])
        }
        Act::Dense(_) => panic!("an image layer after a flatten"),
    }
}

/// An image activation with the members' channels side by side, channels last in memory.
fn to_channels(xs: Act, g: i64) -> Tensor {
    match xs {
        Act::Channels(x) => x,
        Act::Stacked(x) if g == 1 => x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]),
        Act::Stacked(x) => side_by_side(&x, g),
        Act::Dense(_) => panic!("an image layer after a flatten"),
    }
}

/// Images or activations member after member, [G·B, C, H, W] (contiguous), as [B, G·C, H, W]
/// with the members' channels side by side and the channels last in memory.
pub fn side_by_side(x: &Tensor, g: i64) -> Tensor {
    let s = x.size();
    let b = s[0] / g;
    let nhwc = x.view([g, b, s[1], s[2], s[3]]).permute([1, 3, 4, 0, 2]).contiguous();
    nhwc.view([b, s[2], s[3], g * s[1]]).permute([0, 3, 1, 2])
}

pub(crate) fn activation(a: ActKind, x: &Tensor) -> Tensor {
    match a {
        ActKind::Relu => x.relu(),
        ActKind::LeakyRelu => x.leaky_relu(),
        ActKind::Tanh => x.tanh(),
        ActKind::Sigmoid => x.sigmoid(),
        ActKind::Gelu => x.gelu("none"),
    }
}

/// Each member's dropout mask over `n` values, already scaled by 1/(1−p): [G, n] float, from
/// the members' keys ([G] int64, each below 2^32).
///
/// N.B.: a counter-based hash of (key, position) on the device, so a member's mask depends
/// on its key and its own activation's shape alone: the same alone as in any group, and no
/// random numbers cross from the host per value. The hash is a 32-bit integer mixer
/// (xorshift-multiply, twice) whose products stay below 2^59, so int64 arithmetic is exact.
pub fn dropout_mask(keys: &Tensor, n: i64, p: f64) -> Tensor {
    const M: i64 = 0x4_5d9f3b;
    const LOW: i64 = 0xFFFF_FFFF;
    let idx = Tensor::arange(n, (Kind::Int64, keys.device())).view([1, n]);
    let mut x = idx.bitwise_xor_tensor(&keys.view([-1, 1]));
    for _ in 0..2 {
        x = (x.bitwise_right_shift_tensor_scalar(16).bitwise_xor_tensor(&x) * M).bitwise_and(LOW);
    }
    x = x.bitwise_right_shift_tensor_scalar(16).bitwise_xor_tensor(&x);
    let threshold = (p * 4_294_967_296.0).round() as i64;
    x.ge(threshold).to_kind(Kind::Float) * (1.0 / (1.0 - p))
}

/// Each member's `dropout_mask` for a group's activation `x`, laid out as `x`: member after
/// member ([G·B, …] or [G, B, F]), each member's mask in its own order, as is; or, with `side`,
/// [B, G·C, H, W] with its members' channels side by side: each member's mask over its own
/// [B, C, H, W], then side by side.
pub(crate) fn dropout_mask_like(keys: &Tensor, x: &Tensor, g: i64, p: f64, side: bool) -> Tensor {
    let s = x.size();
    if !side {
        return dropout_mask(keys, x.numel() as i64 / g, p).view(s.as_slice());
    }
    let c = s[1] / g;
    let mask = dropout_mask(keys, s[0] * c * s[2] * s[3], p).view([g, s[0], c, s[2], s[3]]);
    mask.permute([1, 0, 2, 3, 4]).reshape([s[0], g * c, s[2], s[3]])
}

/// A mini-batch's images for every member of a group.
pub enum Images {
    /// Member after member: [G·B, C, H, W].
    Stacked(Tensor),
    /// The members' channels side by side, channels last in memory: [B, G·C, H, W], as a fused
    /// group's convolution takes them (a group of two or more whose first layer is one:
    /// `takes_side_by_side`).
    SideBySide(Tensor),
}

/// Whether a group of `g` on `device` takes its images with the members' channels side by
/// side, so that its batches can come so (`Images::SideBySide`): where its first layer is a
/// convolution that runs grouped (`GroupConv`).
pub fn takes_side_by_side(arch: &Architecture, g: i64, device: Device) -> bool {
    g > 1 && matches!(arch.layers.first(), Some(Layer::Conv2d { .. })) && GroupConv::on(device) == GroupConv::Grouped
}

/// Logits of every member, member after member: [G·B, classes], from each member's own
/// images, member after member: [G·B, C, H, W]. `keys` ([G, dropouts] int64) are this
/// step's dropout keys, one per member and dropout layer.
pub fn forward(arch: &Architecture, ps: &GroupParams, images: &Tensor, keys: Option<&Tensor>) -> Tensor {
    forward_images(arch, ps, &Images::Stacked(images.shallow_clone()), keys)
}

/// `forward` of images in either layout.
pub fn forward_images(arch: &Architecture, ps: &GroupParams, images: &Images, keys: Option<&Tensor>) -> Tensor {
    let g = ps.members;
    let xs = match images {
        Images::Stacked(x) => Act::Stacked(x.shallow_clone()),
        Images::SideBySide(x) => Act::Channels(x.shallow_clone()),
    };
    match block(&arch.layers, ps, g, xs, keys) {
        Act::Dense(x) if g == 1 => x,
        Act::Dense(x) => x.reshape([-1, x.size()[2]]),
        _ => panic!("a model must end in features"),
    }
}

fn block(layers: &[Layer], ps: &GroupParams, g: i64, mut xs: Act, keys: Option<&Tensor>) -> Act {
    let mut i = 0;
    while i < layers.len() {
        if let (Some((k, stride)), false) = (relu_then_max_pool(&layers[i..]), matches!(xs, Act::Dense(_))) {
            xs = xs.map(|x| native::relu_max_pool2d(x, k, stride));
            i += 2;
            continue;
        }
        if let ([Layer::Linear { weight, .. }, Layer::Act(ActKind::Relu), ..], Act::Dense(x)) = (&layers[i..], &xs) {
            // One autograd node for both (`native::linear_relu`, the same bits).
            xs = Act::Dense(native::linear_relu(x, &ps.tensors[*weight], &ps.tensors[*weight + 1]));
            i += 2;
            continue;
        }
        xs = fused_layer(&layers[i], ps, g, xs, keys);
        i += 1;
    }
    xs
}

/// The window and stride of a max pooling that follows a ReLU at the head of `layers`: the
/// two run as one pass (`native::relu_max_pool2d`, the same values and gradients bit for bit).
pub(crate) fn relu_then_max_pool(layers: &[Layer]) -> Option<(i64, i64)> {
    match layers {
        [Layer::Act(ActKind::Relu), Layer::MaxPool { k, stride }, ..] => Some((*k, *stride)),
        _ => None,
    }
}

fn fused_layer(layer: &Layer, ps: &GroupParams, g: i64, xs: Act, keys: Option<&Tensor>) -> Act {
    match (layer, xs) {
        (&Layer::Conv2d { weight, stride, pad, macs, .. }, xs) => {
            let (w, b) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
            match xs {
                // N.B.: libtorch's own kernel takes NCHW (its backward fails on channels-last).
                Act::Stacked(x) | Act::Channels(x) if g == 1 && ConvPath::of(&x, macs) == ConvPath::Libtorch => {
                    Act::Stacked(native::thnn_conv2d(&x.contiguous(), w, Some(b), stride, pad))
                }
                // A single model's larger convolution: oneDNN's (`ConvPath`), never member by member.
                xs if g == 1 => group_conv(GroupConv::Grouped, xs, w, b, g, stride, pad),
                xs => group_conv(GroupConv::on(w.device()), xs, w, b, g, stride, pad),
            }
        }
        (&Layer::MaxPool { k, stride }, xs) => xs.map(|x| native::max_pool2d(x, k, stride)),
        (&Layer::AvgPool { k, stride }, xs) => {
            xs.map(|x| x.avg_pool2d([k, k], [stride, stride], [0, 0], false, true, None::<i64>))
        }
        (Layer::GlobalAvgPool, xs) => xs.map(|x| x.adaptive_avg_pool2d([1, 1])),
        (&Layer::BatchNorm { weight, stats, .. }, xs) => {
            let bn = |x: &Tensor| {
                x.batch_norm(
                    Some(&ps.tensors[weight]),
                    Some(&ps.tensors[weight + 1]),
                    Some(&ps.stats[stats]),
                    Some(&ps.stats[stats + 1]),
                    true,
                    BN_MOMENTUM,
                    BN_EPS,
                    true,
                )
            };
            match xs {
                Act::Dense(x) if g == 1 => Act::Dense(bn(&x)),
                Act::Dense(x) => {
                    // [G, B, F] → [B, G·F]: the members' features side by side.
                    let s = x.size();
                    let side = x.transpose(0, 1).reshape([s[1], g * s[2]]);
                    Act::Dense(bn(&side).view([s[1], g, s[2]]).transpose(0, 1))
                }
                Act::Stacked(x) if g == 1 => Act::Stacked(bn(&x)),
                xs => Act::Channels(bn(&to_channels(xs, g))),
            }
        }
        (&Layer::Dropout { p, slot }, xs) if p > 0.0 => {
            let keys = keys.expect("dropout keys").select(1, slot as i64);
            let side = matches!(xs, Act::Channels(_));
            xs.map(|x| x * dropout_mask_like(&keys, x, g, p, side))
        }
        (Layer::Dropout { .. }, xs) => xs,
        (Layer::Flatten, Act::Stacked(x)) => Act::Dense(flatten_images(&x, g, false)),
        (Layer::Flatten, Act::Channels(x)) => Act::Dense(flatten_images(&x, g, true)),
        (Layer::Flatten, xs @ Act::Dense(_)) => xs,
        (&Layer::Linear { weight, .. }, Act::Dense(x)) => {
            let (w, bias) = (&ps.tensors[weight], &ps.tensors[weight + 1]);
            Act::Dense(native::linear(&x, w, bias))
        }
        (&Layer::Act(a), xs) => xs.map(|x| activation(a, x)),
        (Layer::Residual { layers, .. }, xs) => {
            let input = xs.shallow();
            match (block(layers, ps, g, xs, keys), input) {
                (Act::Channels(y), Act::Channels(x)) => Act::Channels(y + x),
                (Act::Channels(y), x @ Act::Stacked(_)) => Act::Channels(y + to_channels(x, g)),
                (Act::Stacked(y), Act::Stacked(x)) => Act::Stacked(y + x),
                (y @ Act::Stacked(_), Act::Channels(x)) => Act::Channels(to_channels(y, g) + x),
                (Act::Dense(y), Act::Dense(x)) => Act::Dense(y + x),
                _ => panic!("a residual block changed its layout"),
            }
        }
        (layer, _) => panic!("layer {layer:?} does not fit its input"),
    }
}

/// Logits [B, classes] of member `m` alone, in evaluation mode (running statistics, no
/// dropout), through views of its weights: evaluation, where a batch is large and every
/// member sees the same images, runs each member's plain layers (measured faster than the
/// fused ones on CPU: BENCHMARKS.md, "Fused groups").
pub fn forward_member(arch: &Architecture, ps: &GroupParams, m: i64, x: &Tensor) -> Tensor {
    let mut channels_last = false;
    member_block(&arch.layers, ps, m, x.shallow_clone(), &mut channels_last)
}

fn member_block(layers: &[Layer], ps: &GroupParams, m: i64, mut xs: Tensor, channels_last: &mut bool) -> Tensor {
    let g = ps.members;
    let mut i = 0;
    while i < layers.len() {
        let layer = &layers[i];
        i += 1;
        if let (Some((k, stride)), 4) = (relu_then_max_pool(&layers[i - 1..]), xs.dim()) {
            xs = native::relu_max_pool2d(&xs, k, stride);
            i += 1;
            continue;
        }
        xs = match *layer {
            Layer::Conv2d { weight, cout, stride, pad, .. } => {
                if !*channels_last {
                    xs = xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                    *channels_last = true;
                }
                let w = ps.tensors[weight].narrow(0, m * cout, cout);
                let b = ps.tensors[weight + 1].narrow(0, m * cout, cout);
                xs.conv2d(&w, Some(&b), [stride, stride], [pad, pad], [1, 1], 1)
            }
            Layer::MaxPool { k, stride } => native::max_pool2d(&xs, k, stride),
            Layer::AvgPool { k, stride } => xs.avg_pool2d([k, k], [stride, stride], [0, 0], false, true, None::<i64>),
            Layer::GlobalAvgPool => xs.adaptive_avg_pool2d([1, 1]),
            Layer::BatchNorm { weight, stats, channels } => {
                let own = |t: &Tensor| t.narrow(0, m * channels, channels);
                xs.batch_norm(
                    Some(&own(&ps.tensors[weight])),
                    Some(&own(&ps.tensors[weight + 1])),
                    Some(&own(&ps.stats[stats])),
                    Some(&own(&ps.stats[stats + 1])),
                    false,
                    BN_MOMENTUM,
                    BN_EPS,
                    true,
                )
            }
            Layer::Dropout { .. } => xs,
            Layer::Flatten => xs.flatten(1, -1),
            Layer::Linear { weight, .. } if g == 1 => xs.linear(&ps.tensors[weight], Some(&ps.tensors[weight + 1])),
            Layer::Linear { weight, .. } => {
                xs.linear(&ps.tensors[weight].get(m), Some(ps.tensors[weight + 1].get(m).reshape([-1])))
            }
            Layer::Act(a) => activation(a, &xs),
            Layer::Residual { ref layers, .. } => {
                let y = member_block(layers, ps, m, xs.shallow_clone(), channels_last);
                y + xs
            }
        };
    }
    xs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use serde_json::json;

    /// Each convolution's multiply-adds per image, as planned for the spec.
    fn conv_macs(spec: serde_json::Value) -> Vec<i64> {
        let arch = Architecture::of(&Spec::parse(&spec).unwrap());
        arch.layers.iter().filter_map(|l| if let Layer::Conv2d { macs, .. } = l { Some(*macs) } else { None }).collect()
    }

    /// A group's convolution by `path` from `x` (member after member, laid out by `layout`),
    /// with `up` as the gradient of its output (member after member): the output member after
    /// member and the gradients of x, w and b.
    fn conv_and_grads(path: GroupConv, x: &Tensor, side: bool, w: &Tensor, b: &Tensor, up: &Tensor) -> [Tensor; 4] {
        let g = 3;
        let leaves: Vec<Tensor> = [x, w, b].iter().map(|t| t.detach().set_requires_grad(true)).collect();
        let input = if side {
            Act::Channels(to_channels(Act::Stacked(leaves[0].shallow_clone()), g))
        } else {
            Act::Stacked(leaves[0].shallow_clone())
        };
        let y = to_stacked(group_conv(path, input, &leaves[1], &leaves[2], g, 2, 1), g);
        (&y * up).sum(Kind::Float).backward();
        [y.detach(), leaves[0].grad(), leaves[1].grad(), leaves[2].grad()]
    }

    #[test]
    fn a_groups_convolution_member_by_member_gives_each_member_its_solo_bits_and_the_grouped_values() {
        let opts = (Kind::Float, Device::Cpu);
        tch::manual_seed(11);
        let (g, batch, cout) = (3, 2, 4);
        let x = Tensor::randn([g * batch, 5, 9, 9], opts);
        let w = Tensor::randn([g * cout, 5, 3, 3], opts);
        let b = Tensor::randn([g * cout], opts);
        let up = Tensor::randn([g * batch, cout, 5, 5], opts);
        let grouped = conv_and_grads(GroupConv::Grouped, &x, false, &w, &b, &up);
        for side in [false, true] {
            let members = conv_and_grads(GroupConv::Members, &x, side, &w, &b, &up);
            for (name, (a, e)) in ["output", "input's gradient", "weight's gradient", "bias's gradient"]
                .iter()
                .zip(members.iter().zip(&grouped))
            {
                assert_eq!(a.size(), e.size(), "{name}");
                let d = (a - e).abs().max().double_value(&[]);
                assert!(
                    d <= 1e-5 * (1.0 + e.abs().max().double_value(&[])),
                    "{name} differs from the grouped one by {d}"
                );
            }
            // Each member's slice: the bits of its own `thnn_conv2d`, alone.
            for m in 0..g {
                let own = |t: &Tensor, n: i64| t.narrow(0, m * n, n).detach().set_requires_grad(true);
                let (xm, wm, bm) = (own(&x, batch), own(&w, cout), own(&b, cout));
                let y = native::thnn_conv2d(&xm, &wm, Some(&bm), 2, 1);
                (&y * up.narrow(0, m * batch, batch)).sum(Kind::Float).backward();
                let alone = [y.detach(), xm.grad(), wm.grad(), bm.grad()];
                for (i, n) in [batch, batch, cout, cout].into_iter().enumerate() {
                    assert!(
                        members[i].narrow(0, m * n, n).equal(&alone[i]),
                        "member {m}'s {i}th result differs from alone"
                    );
                }
            }
        }
        // An input without a gradient (a group's images) gets none; the weights theirs.
        let (wl, bl) = (w.detach().set_requires_grad(true), b.detach().set_requires_grad(true));
        let y = to_stacked(group_conv(GroupConv::Members, Act::Stacked(x.shallow_clone()), &wl, &bl, g, 1, 0), g);
        assert_eq!(y.size(), [g * batch, cout, 7, 7]);
        y.sum(Kind::Float).backward();
        assert!(!x.grad().defined());
        assert_eq!((wl.grad().size(), bl.grad().size()), (w.size(), b.size()));
        // A stride of 0 is an error, not a division by zero.
        let r = std::panic::catch_unwind(|| native::members_conv2d(&x, &w, &b, g, 0, 0));
        let msg = r.err().and_then(|e| e.downcast_ref::<String>().cloned()).unwrap_or_default();
        assert!(msg.starts_with("members_conv2d: "), "{msg}");
    }

    #[test]
    fn a_groups_images_side_by_side_give_the_logits_of_its_images_member_after_member() {
        let arch = Architecture::of(&Spec::parse(&json!({"model": "cnn"})).unwrap());
        let rows: Vec<Tensor> = (0..3).map(|s| Tensor::from_slice(&initial_values(&arch, s).unwrap())).collect();
        let ps = GroupParams::from_members(&arch, &rows, &[], Device::Cpu);
        tch::manual_seed(2);
        let x = Tensor::randn([3 * 4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let side =
            x.view([3, 4, 3, 32, 32]).permute([1, 3, 4, 0, 2]).contiguous().view([4, 32, 32, 9]).permute([0, 3, 1, 2]);
        let stacked = forward(&arch, &ps, &x, None);
        assert_eq!(stacked.size(), [12, 10]);
        assert!(stacked.equal(&forward_images(&arch, &ps, &Images::SideBySide(side), None)));
    }

    #[test]
    fn small_convolutions_take_libtorchs_own_kernel_and_larger_ones_onednns() {
        // The tutorial CNN's two: 1.41 M and 0.96 M multiply-adds at batch 4.
        let cnn = conv_macs(json!({"model": "cnn"}));
        assert_eq!(cnn, [6 * 28 * 28 * 3 * 25, 16 * 10 * 10 * 6 * 25]);
        for batch in [1, 4] {
            assert!(cnn.iter().all(|&m| ConvPath::by_size(batch, m) == ConvPath::Libtorch), "batch {batch}");
        }
        // Its first at batch 8 (2.8 M).
        assert_eq!(ConvPath::by_size(8, cnn[0]), ConvPath::OneDnn);
        // A 3×3 from 3 to 16 channels, padded, at batch 4 (1.77 M); strided, it has a quarter
        // of the output positions, and with them of the work.
        let plain = json!({"layers": [{"conv2d": {"out": 16, "kernel": 3, "padding": 1}}, "flatten", {"linear": 10}]});
        let strided = json!({"layers": [{"conv2d": {"out": 16, "kernel": 3, "stride": 2, "padding": 1}}, "flatten", {"linear": 10}]});
        assert_eq!(conv_macs(plain.clone()), [16 * 32 * 32 * 3 * 9]);
        assert_eq!(ConvPath::by_size(4, conv_macs(plain)[0]), ConvPath::OneDnn);
        assert_eq!(ConvPath::by_size(4, conv_macs(strided)[0]), ConvPath::Libtorch);
        // Counts past i64 are large, not small.
        assert_eq!(ConvPath::by_size(i64::MAX, i64::MAX), ConvPath::OneDnn);
    }
}
