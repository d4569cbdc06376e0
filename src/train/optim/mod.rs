//! Optimisers for a fused group: one step updates every member's every weight, each member
//! with its own settings and its own state, as torch.optim's single-tensor update (the one
//! it runs on a CPU) would update that member alone.
//!
//! A member's state outside the group (while the group is rebuilt, in its checkpoint) is a
//! `MemberState`: named buffers, each [P] in the architecture's parameter order, as
//! torch.optim keeps per-parameter state (SGD's `momentum_buffer`, Adam's `exp_avg`), and
//! its step count. Which buffers a member keeps is `crate::optimizer::state_buffers`, so
//! checkpoints can read them back; adding an optimiser is a row in `crate::optimizer` (with
//! its buffers), a file here and its line in `for_members`.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod rmsprop;
pub mod sgd;

use super::model::GroupParams;
use crate::network::Architecture;
use crate::optimizer::OptimizerKind;

use crate::spec::Spec;
use tch::{Kind, Tensor};

pub use crate::optimizer::BUFFER_NAMES;

/// One member's optimiser state: its named buffers, each [P] in parameter order, and the
/// steps it has taken. No buffers for a member that has not stepped yet, or whose
/// optimiser keeps nothing.
#[derive(Default)]
pub struct MemberState {
    pub buffers: Vec<(String, Tensor)>,
    /// Updates applied so far (torch.optim's `state["step"]`): Adam's bias correction
    /// counts them.
    pub step: u64,
}

impl MemberState {
    /// The buffer called `name`, if the member has one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.buffers.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// What the engine asks of a group's optimiser.
pub trait Optimizer {
    /// Clears the gradients before the next backward pass.
    fn zero_grad(&mut self, params: &GroupParams);
    /// One update of every member from the gradients autograd left in the parameters.
    fn step(&mut self, params: &GroupParams);
    /// Each member's learning rate from now on (a schedule's, at an epoch's start).
    fn set_lrs(&mut self, arch: &Architecture, params: &GroupParams, lrs: &[f64]);
    /// Member `m`'s state, as it would carry it alone.
    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState;
}

/// The optimiser of the members with these specs (in member order, sharing one optimiser
/// kind: it is in the group key), each at its rate `lrs[m]` and resuming from its state
/// (empty: from the start).
pub fn for_members(
    arch: &Architecture,
    params: &GroupParams,
    specs: &[&Spec],
    lrs: &[f64],
    states: Vec<MemberState>,
) -> Box<dyn Optimizer> {
    let group = Group { arch, params, specs, lrs, states };
    match specs.first().map_or(OptimizerKind::Sgd, |s| s.optimizer) {
        OptimizerKind::Sgd => Box::new(sgd::Sgd::new(group)),
        OptimizerKind::Adam => Box::new(adam::Adam::new(group, false)),
        OptimizerKind::Adamw => Box::new(adam::Adam::new(group, true)),
        OptimizerKind::Rmsprop => Box::new(rmsprop::Rmsprop::new(group)),
        OptimizerKind::Adagrad => Box::new(adagrad::Adagrad::new(group)),
        OptimizerKind::Adadelta => Box::new(adadelta::Adadelta::new(group)),
    }
}

/// What an optimiser is built from: the group, each member's spec and rate, and each
/// member's state to resume from.
pub struct Group<'a> {
    pub arch: &'a Architecture,
    pub params: &'a GroupParams,
    pub specs: &'a [&'a Spec],
    pub lrs: &'a [f64],
    pub states: Vec<MemberState>,
}

impl Group<'_> {
    /// Each member's value of a setting.
    pub(crate) fn each(&self, f: impl Fn(&Spec) -> f64) -> Vec<f64> {
        self.specs.iter().map(|s| f(s)).collect()
    }

    /// The buffer `name` over the group, laid out as the parameters: each member's saved
    /// one, or zeros (torch.optim's initial state for every buffer here).
    pub(crate) fn buffer(&self, name: &str) -> Tensor {
        let device = self.params.flat.device();
        let rows: Vec<Tensor> = (0..self.specs.len())
            .map(|i| match self.states.get(i).and_then(|s| s.get(name)) {
                Some(t) => t.to_device(device),
                None => Tensor::zeros([self.arch.numel()], (Kind::Float, device)),
            })
            .collect();
        crate::train::model::stack_rows(self.arch, &rows).to_device(device)
    }

    /// Each member's step count.
    pub(crate) fn steps(&self) -> Vec<u64> {
        (0..self.specs.len()).map(|i| self.states.get(i).map_or(0, |s| s.step)).collect()
    }
}

/// Member `m`'s share of the named buffers, with its step count.
pub(crate) fn member_buffers(
    arch: &Architecture,
    params: &GroupParams,
    m: i64,
    step: u64,
    buffers: &[(&str, &Tensor)],
) -> MemberState {
    let buffers = buffers.iter().map(|(name, t)| (name.to_string(), params.member(arch, t, m))).collect();
    MemberState { buffers, step }
}

/// A coefficient over the group's flat buffer: one number when every member has the same,
/// else each element its member's.
pub(crate) enum Coef {
    Same(f64),
    Each(Tensor),
}

impl Coef {
    /// `t · c`, a new tensor.
    pub(crate) fn times(&self, t: &Tensor) -> Tensor {
        match self {
            Coef::Same(v) => t * *v,
            Coef::Each(c) => t * c,
        }
    }

    /// `t + c`, a new tensor.
    pub(crate) fn plus(&self, t: &Tensor) -> Tensor {
        match self {
            Coef::Same(v) => t + *v,
            Coef::Each(c) => t + c,
        }
    }

    /// `t ← t · c`.
    pub(crate) fn scale(&self, t: &mut Tensor) {
        let _ = match self {
            Coef::Same(v) => t.g_mul_scalar_(*v),
            Coef::Each(c) => t.g_mul_(c),
        };
    }

    /// `t ← t + c`.
    pub(crate) fn add_to(&self, t: &mut Tensor) {
        let _ = match self {
            Coef::Same(v) => t.g_add_scalar_(*v),
            Coef::Each(c) => t.g_add_(c),
        };
    }

    /// `t ← t / c`.
    pub(crate) fn divide(&self, t: &mut Tensor) {
        let _ = match self {
            Coef::Same(v) => t.g_div_scalar_(*v),
            Coef::Each(c) => t.g_div_(c),
        };
    }

    /// `t ← lerp(t, end, c)`: torch's `t.lerp_(end, c)`.
    pub(crate) fn lerp(&self, t: &mut Tensor, end: &Tensor) {
        let _ = match self {
            Coef::Same(v) => t.lerp_(end, *v),
            Coef::Each(c) => t.lerp_tensor_(end, c),
        };
    }
}

/// Spreads per-member values over the flat buffer, by one gather with an index made once.
pub(crate) struct Spread {
    /// [Σ G·numel]: each element's member.
    index: Tensor,
}

impl Spread {
    pub(crate) fn new(arch: &Architecture, params: &GroupParams) -> Spread {
        let members: Vec<f64> = (0..params.members).map(|m| m as f64).collect();
        Spread { index: params.per_element(arch, &members).to_kind(Kind::Int64) }
    }

    /// The members' values as a `Coef`: one number when they agree.
    pub(crate) fn coef(&self, values: &[f64]) -> Coef {
        if values.windows(2).all(|w| w[0] == w[1]) {
            return Coef::Same(values.first().copied().unwrap_or(0.0));
        }
        let column: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        Coef::Each(Tensor::from_slice(&column).to_device(self.index.device()).index_select(0, &self.index))
    }

    /// The members' rates, negated (a step adds −lr·direction).
    pub(crate) fn neg_lr(&self, lrs: &[f64]) -> NegLr {
        let neg: Vec<f64> = lrs.iter().map(|l| -l).collect();
        NegLr { each: neg.iter().map(|&l| l as f32).collect(), coef: self.coef(&neg) }
    }

    /// True where the member's flag is set, as a mask over the flat buffer.
    pub(crate) fn mask(&self, flags: &[bool]) -> Tensor {
        let column: Vec<f32> = flags.iter().map(|&f| f32::from(u8::from(f))).collect();
        Tensor::from_slice(&column).to_device(self.index.device()).index_select(0, &self.index).to_kind(Kind::Bool)
    }
}

/// The members' rates, negated: as a `Coef` for the tensor operations, and as each member's
/// float32 number (the one libtorch's kernels apply) for a pass of ours.
pub(crate) struct NegLr {
    pub(crate) coef: Coef,
    pub(crate) each: Vec<f32>,
}

/// One hyperparameter over a group: a scalar when every member shares it, else a value per
/// element of the flat buffer.
pub(crate) enum Hyper {
    Same(Tensor),
    PerElement(Tensor),
}

impl Hyper {
    pub(crate) fn new(arch: &Architecture, params: &GroupParams, values: &[f64]) -> Hyper {
        if values.windows(2).all(|w| w[0] == w[1]) {
            Hyper::Same(Tensor::from(values.first().copied().unwrap_or(0.0) as f32).to_device(params.flat.device()))
        } else {
            Hyper::PerElement(params.per_element(arch, values))
        }
    }

    pub(crate) fn tensor(&self) -> &Tensor {
        match self {
            Hyper::Same(t) | Hyper::PerElement(t) => t,
        }
    }
}

/// The group's gradients in one flat buffer laid out as the parameters, so an update is a
/// handful of operations over all of it.
pub(crate) struct FlatGrads {
    pub(crate) grad: Tensor,
    bound: bool,
    /// A one-pass step zeroed the gradients as it read them: `zero` has nothing to do.
    pub(crate) zeroed: bool,
}

impl FlatGrads {
    pub(crate) fn new(params: &GroupParams) -> FlatGrads {
        FlatGrads { grad: params.flat.zeros_like(), bound: false, zeroed: false }
    }

    /// Makes every parameter's `.grad` a view into the flat buffer (once, after the first
    /// backward pass made them), so that autograd accumulates into it in place from then on.
    pub(crate) fn bind(&mut self, params: &GroupParams) {
        if self.bound {
            return;
        }
        for (i, t) in params.tensors.iter().enumerate() {
            let mut g = t.grad();
            let mut slot = params.view_of(&self.grad, i);
            if g.defined() {
                slot.copy_(&g);
                g.set_data(&slot);
            }
        }
        self.bound = true;
    }

    /// One update without autograd: `f(gradient, weights)` over the flat buffers, the
    /// gradient first given the L2 term `l2·w` when there is one (torch's
    /// `grad.add(param, alpha=weight_decay)`).
    pub(crate) fn update(&mut self, params: &GroupParams, l2: Option<&Coef>, f: impl FnOnce(&mut Tensor, &mut Tensor)) {
        tch::no_grad(|| {
            self.bind(params);
            let mut flat = params.flat.shallow_clone();
            if let Some(wd) = l2 {
                let _ = self.grad.g_add_(&wd.times(&flat));
            }
            f(&mut self.grad, &mut flat);
        });
    }

    pub(crate) fn zero(&mut self, params: &GroupParams) {
        if std::mem::take(&mut self.zeroed) {
            return;
        }
        if self.bound {
            let _ = self.grad.zero_();
        } else {
            for t in &params.tensors {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
    }
}

/// Whether this CPU can take the one-pass steps (`one_pass_buffers`): x86-64 with AVX2 and
/// FMA. Elsewhere every optimiser steps by tensor operations.
pub fn one_pass_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The flat buffers (weights, gradients, an optimiser's state: each [n]) as float32 slices,
/// for a step of ours in one pass over them, on an x86-64 CPU with AVX2 and FMA (the
/// kernels libtorch's elementwise operations run there, fused multiply-adds and all, so the
/// pass can apply the same float32 operations); `None` elsewhere, or when a buffer is not a
/// contiguous float32 CPU tensor of n values, or `runs` (`GroupParams::member_runs`) reach
/// past n. `Some` also says the CPU has AVX2 and FMA.
///
/// # Safety
/// The buffers must be distinct, and nothing else may read or write them while the slices
/// live (autograd's pass has ended; the group trains on this thread alone).
// N.B.: a tensor is a handle; the slices are its data, which the caller vouches is used by
// nobody else meanwhile.
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn one_pass_buffers<'a>(
    buffers: &[&'a Tensor],
    runs: &[(usize, usize, usize)],
) -> Option<Vec<&'a mut [f32]>> {
    #[cfg(target_arch = "x86_64")]
    {
        if !one_pass_cpu() {
            return None;
        }
        let n = buffers.first()?.numel();
        let fits = |t: &Tensor| {
            t.device() == tch::Device::Cpu
                && t.kind() == Kind::Float
                && t.is_contiguous()
                && t.dim() == 1
                && t.numel() == n
        };
        if !buffers.iter().all(|t| fits(t)) || runs.last().is_some_and(|&(at, len, _)| at + len > n) {
            return None;
        }
        // SAFETY: contiguous float32 CPU tensors of n values each (checked above); the
        // caller vouches that they are distinct and used by nobody else meanwhile.
        Some(buffers.iter().map(|t| unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) }).collect())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (buffers, runs);
        None
    }
}
