//! Adadelta, matching `torch.optim.Adadelta` (its single-tensor update) for every member of
//! a group at once, each with its own lr, rho, eps and weight decay. A step is about a dozen
//! tensor operations over the group's flat buffer, or on a CPU two passes of ours with
//! libtorch's square root between them, which compute the same bit for bit
//! (`Adadelta::fused_step`; BENCHMARKS.md, "The other optimisers' steps, ReLU and pooling in
//! one pass").

use super::{
    member_buffers, one_pass_buffers, rmsprop::SQUARE_AVG, Coef, FlatGrads, Group, MemberState, NegLr, Optimizer,
    Spread,
};
use crate::network::Architecture;
use crate::train::model::GroupParams;
use tch::Tensor;

pub use crate::optimizer::ACC_DELTA;

pub struct Adadelta {
    grads: FlatGrads,
    spread: Spread,
    steps: Vec<u64>,
    square_avg: Tensor,
    acc_delta: Tensor,
    rho: Coef,
    one_minus_rho: Coef,
    eps: Coef,
    neg_lr: NegLr,
    weight_decay: Option<Coef>,
    /// Each member's settings as float32 numbers, for the two-pass step.
    each: Vec<Each>,
    /// Where each member's values lie in the flat buffers (`GroupParams::member_runs`).
    runs: Vec<(usize, usize, usize)>,
    /// [2n]: square_avg + eps, then acc_delta + eps, and their square roots by libtorch's
    /// kernel (each half on its own), for the two-pass step (made at its first step).
    roots: Option<Tensor>,
}

/// A member's settings for `Adadelta::fused_step`, as the float32 numbers libtorch's kernels
/// apply.
#[derive(Clone, Copy)]
struct Each {
    rho: f32,
    one_minus_rho: f32,
    eps: f32,
    /// The L2 term's factor, when some member of the group decays (0 for one that does not).
    l2: Option<f32>,
}

impl Adadelta {
    pub fn new(group: Group) -> Adadelta {
        let spread = Spread::new(group.arch, group.params);
        let rho = group.each(|s| s.rho);
        let wds = group.each(|s| s.weight_decay);
        let eps = group.each(|s| s.eps);
        let decays = wds.iter().any(|&w| w != 0.0);
        Adadelta {
            grads: FlatGrads::new(group.params),
            one_minus_rho: spread.coef(&rho.iter().map(|r| 1.0 - r).collect::<Vec<_>>()),
            rho: spread.coef(&rho),
            eps: spread.coef(&eps),
            neg_lr: spread.neg_lr(group.lrs),
            weight_decay: decays.then(|| spread.coef(&wds)),
            square_avg: group.buffer(SQUARE_AVG),
            acc_delta: group.buffer(ACC_DELTA),
            steps: group.steps(),
            each: (0..rho.len())
                .map(|m| Each {
                    rho: rho[m] as f32,
                    one_minus_rho: (1.0 - rho[m]) as f32,
                    eps: eps[m] as f32,
                    l2: decays.then_some(wds[m] as f32),
                })
                .collect(),
            runs: group.params.member_runs(),
            roots: None,
            spread,
        }
    }

    /// One step by libtorch's tensor operations over the flat buffers, on any device; on a
    /// CPU `step` computes the same bit for bit in two passes, which tests compare with this.
    pub fn step_by_ops(&mut self, params: &GroupParams) {
        self.grads.update(params, self.weight_decay.as_ref(), |grad, flat| {
            self.rho.scale(&mut self.square_avg);
            let _ = self.square_avg.addcmul_(&self.one_minus_rho.times(grad), &*grad);
            let mut std = self.eps.plus(&self.square_avg);
            let _ = std.sqrt_();
            let mut delta = self.eps.plus(&self.acc_delta);
            let _ = delta.sqrt_().g_div_(&std).g_mul_(grad);
            self.rho.scale(&mut self.acc_delta);
            let _ = self.acc_delta.addcmul_(&self.one_minus_rho.times(&delta), &delta);
            let _ = flat.g_add_(&self.neg_lr.coef.times(&delta));
        });
        self.steps.iter_mut().for_each(|s| *s += 1);
    }

    /// `step_by_ops`'s update in two passes over the flat buffers, libtorch's square root of
    /// both sums between them, on an x86-64 CPU with AVX2 and FMA (`one_pass_buffers`): each
    /// value through the same float32 operations in the same order as libtorch's kernels
    /// there, the gradient zeroed as the second pass reads it. `false` (nothing done)
    /// elsewhere.
    fn fused_step(&mut self, params: &GroupParams) -> bool {
        if params.flat.device() != tch::Device::Cpu || !super::one_pass_cpu() {
            return false;
        }
        tch::no_grad(|| self.grads.bind(params));
        let n = params.flat.numel() as i64;
        let roots =
            self.roots.get_or_insert_with(|| Tensor::zeros([2 * n], (params.flat.kind(), params.flat.device())));
        let (mut std, mut delta) = (roots.narrow(0, 0, n), roots.narrow(0, n, n));
        let buffers = [&params.flat, &self.grads.grad, &self.square_avg, &self.acc_delta, &std, &delta];
        // SAFETY: the group's own weights, gradients and state, and the roots' two halves
        // (distinct buffers), which nothing else touches while it steps.
        let Some(slices) = (unsafe { one_pass_buffers(&buffers, &self.runs) }) else { return false };
        let [w, g, sq, acc, std_in, delta_in]: [&mut [f32]; 6] = slices.try_into().expect("six buffers");
        // SAFETY: `one_pass_buffers` found AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            adadelta_sums_fma(w, g, sq, acc, std_in, delta_in, &self.runs, &self.each)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, g, sq, acc, std_in, delta_in);
        // N.B.: libtorch's float square root is not always the correctly rounded one, so its
        // own kernel takes it (as for Adam), over each half as over the n values the tensor
        // operations root: its vector loop and scalar tail fall on the same positions.
        let _ = std.sqrt_();
        let _ = delta.sqrt_();
        let buffers = [&params.flat, &self.grads.grad, &self.acc_delta, &std, &delta];
        // SAFETY: as above. N.B.: square_avg is updated by now, so the rest must be: the
        // first check passed these buffers.
        let slices = unsafe { one_pass_buffers(&buffers, &self.runs) }.expect("the buffers the first pass took");
        let [w, g, acc, std, delta]: [&mut [f32]; 5] = slices.try_into().expect("five buffers");
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            adadelta_update_fma(w, g, acc, std, delta, &self.runs, &self.each, &self.neg_lr.each)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, g, acc, std, delta);
        self.grads.zeroed = true;
        self.steps.iter_mut().for_each(|s| *s += 1);
        true
    }
}

impl Optimizer for Adadelta {
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
        let buffers = [(SQUARE_AVG, &self.square_avg), (ACC_DELTA, &self.acc_delta)];
        member_buffers(arch, params, m, self.steps[m as usize], &buffers)
    }
}

/// `Adadelta::fused_step`'s first pass, compiled for AVX2 and FMA. Per value, as the tensor
/// operations: the gradient plus the L2 term (the product rounded, then the sum), left in
/// the gradient's place for the second pass; `square_avg *= ρ`, then `addcmul_((1 − ρ)·g,
/// g)`, a fused multiply-add of the rounded product; `square_avg + eps` and `acc_delta + eps`
/// into the halves of the buffer whose square roots libtorch then takes.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn adadelta_sums_fma(
    w: &[f32],
    g: &mut [f32],
    sq: &mut [f32],
    acc: &[f32],
    std_in: &mut [f32],
    delta_in: &mut [f32],
    runs: &[(usize, usize, usize)],
    each: &[Each],
) {
    for &(at, len, i) in runs {
        let r = at..at + len;
        let e = each[i];
        let (w, g, sq, acc) = (&w[r.clone()], &mut g[r.clone()], &mut sq[r.clone()], &acc[r.clone()]);
        let (std_in, delta_in) = (&mut std_in[r.clone()], &mut delta_in[r]);
        for (((((w, g), sq), acc), s), d) in
            w.iter().zip(g.iter_mut()).zip(sq.iter_mut()).zip(acc).zip(std_in.iter_mut()).zip(delta_in.iter_mut())
        {
            if let Some(l2) = e.l2 {
                *g += *w * l2;
            }
            *sq *= e.rho;
            *sq = (e.one_minus_rho * *g).mul_add(*g, *sq);
            *s = *sq + e.eps;
            *d = *acc + e.eps;
        }
    }
}

/// `Adadelta::fused_step`'s second pass, compiled for AVX2 and FMA: `delta = √(acc + eps) ÷
/// √(square_avg + eps) · g`, `acc_delta *= ρ` then `addcmul_((1 − ρ)·delta, delta)`, and
/// `w + (−lr)·delta`, each operation rounded as libtorch's; the gradient zeroed.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn adadelta_update_fma(
    w: &mut [f32],
    g: &mut [f32],
    acc: &mut [f32],
    std: &[f32],
    delta: &[f32],
    runs: &[(usize, usize, usize)],
    each: &[Each],
    neg_lr: &[f32],
) {
    for &(at, len, i) in runs {
        let r = at..at + len;
        let (e, neg_lr) = (each[i], neg_lr[i]);
        let (w, g, acc, std, delta) =
            (&mut w[r.clone()], &mut g[r.clone()], &mut acc[r.clone()], &std[r.clone()], &delta[r]);
        for ((((w, g), acc), s), d) in w.iter_mut().zip(g.iter_mut()).zip(acc.iter_mut()).zip(std).zip(delta) {
            let step = *d / *s * *g;
            *g = 0.0;
            *acc *= e.rho;
            *acc = (e.one_minus_rho * step).mul_add(step, *acc);
            *w += neg_lr * step;
        }
    }
}
