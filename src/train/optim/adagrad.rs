//! Adagrad, matching `torch.optim.Adagrad` (lr_decay 0, initial accumulator 0; its
//! single-tensor update) for every member of a group at once, each with its own lr, eps
//! and weight decay. On a CPU a step is two passes of ours with libtorch's square root
//! between them, which compute what the tensor operations do bit for bit
//! (`Adagrad::fused_step`; BENCHMARKS.md, "The other optimisers' steps, ReLU and pooling in
//! one pass").

use super::{member_buffers, one_pass_buffers, Coef, FlatGrads, Group, MemberState, NegLr, Optimizer, Spread};
use crate::network::Architecture;
use crate::train::model::GroupParams;
use tch::Tensor;

pub use crate::optimizer::SUM;

pub struct Adagrad {
    grads: FlatGrads,
    spread: Spread,
    steps: Vec<u64>,
    sum: Tensor,
    eps: Coef,
    neg_lr: NegLr,
    weight_decay: Option<Coef>,
    /// Each member's settings as float32 numbers, for the two-pass step.
    each: Vec<Each>,
    /// Where each member's values lie in the flat buffers (`GroupParams::member_runs`).
    runs: Vec<(usize, usize, usize)>,
    /// √sum by libtorch's own kernel, for the two-pass step (made at its first step).
    root: Option<Tensor>,
}

/// A member's settings for `Adagrad::fused_step`, as the float32 numbers libtorch's kernels
/// apply.
#[derive(Clone, Copy)]
struct Each {
    eps: f32,
    /// The L2 term's factor, when some member of the group decays (0 for one that does not).
    l2: Option<f32>,
}

impl Adagrad {
    pub fn new(group: Group) -> Adagrad {
        let spread = Spread::new(group.arch, group.params);
        let wds = group.each(|s| s.weight_decay);
        let eps = group.each(|s| s.eps);
        let decays = wds.iter().any(|&w| w != 0.0);
        Adagrad {
            grads: FlatGrads::new(group.params),
            eps: spread.coef(&eps),
            neg_lr: spread.neg_lr(group.lrs),
            weight_decay: decays.then(|| spread.coef(&wds)),
            sum: group.buffer(SUM),
            steps: group.steps(),
            each: (0..eps.len()).map(|m| Each { eps: eps[m] as f32, l2: decays.then_some(wds[m] as f32) }).collect(),
            runs: group.params.member_runs(),
            root: None,
            spread,
        }
    }

    /// One step by libtorch's tensor operations over the flat buffers, on any device; on a
    /// CPU `step` computes the same bit for bit in two passes, which tests compare with this.
    pub fn step_by_ops(&mut self, params: &GroupParams) {
        self.grads.update(params, self.weight_decay.as_ref(), |grad, flat| {
            let _ = self.sum.addcmul_(&*grad, &*grad);
            let mut std = self.sum.sqrt();
            self.eps.add_to(&mut std);
            let _ = flat.addcdiv_(&self.neg_lr.coef.times(grad), &std);
        });
        self.steps.iter_mut().for_each(|s| *s += 1);
    }

    /// `step_by_ops`'s update in two passes over the flat buffers and libtorch's square root
    /// between them, on an x86-64 CPU with AVX2 and FMA (`one_pass_buffers`): each value
    /// through the same float32 operations in the same order as libtorch's kernels there,
    /// the gradient zeroed as the second pass reads it. `false` (nothing done) elsewhere.
    fn fused_step(&mut self, params: &GroupParams) -> bool {
        if params.flat.device() != tch::Device::Cpu || !super::one_pass_cpu() {
            return false;
        }
        tch::no_grad(|| self.grads.bind(params));
        let root = self.root.get_or_insert_with(|| self.sum.zeros_like());
        let buffers = [&params.flat, &self.grads.grad, &self.sum, &*root];
        // SAFETY: the group's own weights, gradients and state (distinct buffers), which
        // nothing else touches while it steps.
        let Some(slices) = (unsafe { one_pass_buffers(&buffers, &self.runs) }) else { return false };
        let [w, g, sum, _]: [&mut [f32]; 4] = slices.try_into().expect("four buffers");
        // SAFETY: `one_pass_buffers` found AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            super::rmsprop::square_avg_fma(w, g, sum, &self.runs, &self.each, |_| (1.0, 1.0), |e: &Each| e.l2)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, g, sum);
        // N.B.: libtorch's float square root is not always the correctly rounded one, so its
        // own kernel takes it (as for Adam).
        let _ = self.sum.sqrt_out(root);
        let buffers = [&params.flat, &self.grads.grad, &*root];
        // SAFETY: as above. N.B.: the sum is updated by now, so the weights must be: the first
        // check passed these buffers.
        let slices = unsafe { one_pass_buffers(&buffers, &self.runs) }.expect("the buffers the first pass took");
        let [w, g, root]: [&mut [f32]; 3] = slices.try_into().expect("three buffers");
        for &(at, len, i) in &self.runs {
            let r = at..at + len;
            let (e, neg_lr) = (self.each[i], self.neg_lr.each[i]);
            for ((w, g), root) in w[r.clone()].iter_mut().zip(&mut g[r.clone()]).zip(&root[r]) {
                *w += (neg_lr * *g) / (*root + e.eps);
                *g = 0.0;
            }
        }
        self.grads.zeroed = true;
        self.steps.iter_mut().for_each(|s| *s += 1);
        true
    }
}

impl Optimizer for Adagrad {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
        if !self.fused_step(params) {
            self.step_by_ops(params);
        }
    }

    fn set_lrs(&mut self, _arch: &Architecture, _params: &GroupParams, lrs: &[f64]) {
        self.neg_lr = self.spread.neg_lr(lrs);
    }

    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState {
        member_buffers(arch, params, m, self.steps[m as usize], &[(SUM, &self.sum)])
    }
}
