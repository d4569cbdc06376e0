//! RMSprop, matching `torch.optim.RMSprop` (not centred; its single-tensor update) for every
//! member of a group at once, each with its own lr, alpha, eps, momentum and weight decay.
//! On a CPU a step is two passes of ours with libtorch's square root between them, which
//! compute what the tensor operations do bit for bit (`Rmsprop::fused_step`; BENCHMARKS.md,
//! "The other optimisers' steps, ReLU and pooling in one pass").

use super::{
    member_buffers, one_pass_buffers, sgd::MOMENTUM, Coef, FlatGrads, Group, MemberState, NegLr, Optimizer, Spread,
};
use crate::network::Architecture;
use crate::train::model::GroupParams;
use tch::Tensor;

pub use crate::optimizer::SQUARE_AVG;

pub struct Rmsprop {
    grads: FlatGrads,
    spread: Spread,
    steps: Vec<u64>,
    momenta: Vec<f64>,
    square_avg: Tensor,
    /// The momentum buffer, when some member uses momentum.
    buf: Option<Tensor>,
    alpha: Coef,
    one_minus_alpha: Coef,
    eps: Coef,
    momentum: Coef,
    neg_lr: NegLr,
    weight_decay: Option<Coef>,
    /// Each member's settings as float32 numbers, for the two-pass step.
    each: Vec<Each>,
    /// Where each member's values lie in the flat buffers (`GroupParams::member_runs`).
    runs: Vec<(usize, usize, usize)>,
    /// √square_avg by libtorch's own kernel, for the two-pass step (made at its first step).
    root: Option<Tensor>,
}

/// A member's settings for `Rmsprop::fused_step`, as the float32 numbers libtorch's kernels
/// apply.
#[derive(Clone, Copy)]
struct Each {
    alpha: f32,
    one_minus_alpha: f32,
    eps: f32,
    momentum: f32,
    /// The L2 term's factor, when some member of the group decays (0 for one that does not).
    l2: Option<f32>,
}

impl Rmsprop {
    pub fn new(group: Group) -> Rmsprop {
        let spread = Spread::new(group.arch, group.params);
        let alpha = group.each(|s| s.alpha);
        let momenta = group.each(|s| s.momentum);
        let wds = group.each(|s| s.weight_decay);
        let eps = group.each(|s| s.eps);
        let decays = wds.iter().any(|&w| w != 0.0);
        Rmsprop {
            grads: FlatGrads::new(group.params),
            one_minus_alpha: spread.coef(&alpha.iter().map(|a| 1.0 - a).collect::<Vec<_>>()),
            alpha: spread.coef(&alpha),
            eps: spread.coef(&eps),
            momentum: spread.coef(&momenta),
            neg_lr: spread.neg_lr(group.lrs),
            weight_decay: decays.then(|| spread.coef(&wds)),
            square_avg: group.buffer(SQUARE_AVG),
            buf: momenta.iter().any(|&m| m > 0.0).then(|| group.buffer(MOMENTUM)),
            steps: group.steps(),
            each: (0..alpha.len())
                .map(|m| Each {
                    alpha: alpha[m] as f32,
                    one_minus_alpha: (1.0 - alpha[m]) as f32,
                    eps: eps[m] as f32,
                    momentum: momenta[m] as f32,
                    l2: decays.then_some(wds[m] as f32),
                })
                .collect(),
            runs: group.params.member_runs(),
            root: None,
            momenta,
            spread,
        }
    }

    /// One step by libtorch's tensor operations over the flat buffers, on any device; on a
    /// CPU `step` computes the same bit for bit in two passes, which tests compare with this.
    pub fn step_by_ops(&mut self, params: &GroupParams) {
        self.grads.update(params, self.weight_decay.as_ref(), |grad, flat| {
            self.alpha.scale(&mut self.square_avg);
            let _ = self.square_avg.addcmul_(&self.one_minus_alpha.times(grad), &*grad);
            let mut avg = self.square_avg.sqrt();
            self.eps.add_to(&mut avg);
            match &mut self.buf {
                // N.B.: a member without momentum keeps 0·buf + g/avg: its own update.
                Some(buf) => {
                    self.momentum.scale(buf);
                    let _ = buf.addcdiv_(&*grad, &avg);
                    let _ = flat.g_add_(&self.neg_lr.coef.times(buf));
                }
                None => {
                    let _ = flat.addcdiv_(&self.neg_lr.coef.times(grad), &avg);
                }
            }
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
        let root = self.root.get_or_insert_with(|| self.square_avg.zeros_like());
        // N.B.: the momentum buffer is checked here too, with the rest, before anything changes.
        let mut buffers = vec![&params.flat, &self.grads.grad, &self.square_avg, &*root];
        buffers.extend(self.buf.as_ref());
        // SAFETY: the group's own weights, gradients and state (distinct buffers), which
        // nothing else touches while it steps.
        let Some(slices) = (unsafe { one_pass_buffers(&buffers, &self.runs) }) else { return false };
        let mut slices = slices.into_iter();
        let (w, g, sq) = (slices.next().expect("w"), slices.next().expect("g"), slices.next().expect("sq"));
        // SAFETY: `one_pass_buffers` found AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            square_avg_fma(w, g, sq, &self.runs, &self.each, |e| (e.alpha, e.one_minus_alpha), |e: &Each| e.l2)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, g, sq);
        drop(slices);
        // N.B.: libtorch's float square root is not always the correctly rounded one, so its
        // own kernel takes it (as for Adam).
        let _ = self.square_avg.sqrt_out(root);
        let mut buffers = vec![&params.flat, &self.grads.grad, &*root];
        buffers.extend(self.buf.as_ref());
        // SAFETY: as above. N.B.: square_avg is updated by now, so the rest must be: the
        // first check passed these buffers.
        let slices = unsafe { one_pass_buffers(&buffers, &self.runs) }.expect("the buffers the first pass took");
        let mut slices = slices.into_iter();
        let (w, g, root) = (slices.next().expect("w"), slices.next().expect("g"), slices.next().expect("root"));
        rmsprop_update(w, g, root, slices.next(), &self.runs, &self.each, &self.neg_lr.each);
        self.grads.zeroed = true;
        self.steps.iter_mut().for_each(|s| *s += 1);
        true
    }
}

impl Optimizer for Rmsprop {
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
        let mut buffers = vec![(SQUARE_AVG, &self.square_avg)];
        if let Some(buf) = self.buf.as_ref().filter(|_| self.momenta[m as usize] > 0.0) {
            buffers.push((MOMENTUM, buf));
        }
        member_buffers(arch, params, m, self.steps[m as usize], &buffers)
    }
}

/// The first pass of RMSprop's and Adagrad's two-pass steps, compiled for AVX2 and FMA. Per
/// value, as the tensor operations: the gradient plus the L2 term (the product rounded, then
/// the sum), left in the gradient's place for the second pass; then the running sum of
/// squares `s *= a` (skipped for a = 1) and `s.addcmul_(b·g, g)`, a fused multiply-add of the
/// rounded product (with b = 1, the product g itself). `coefs(e)` gives a member's (a, b).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn square_avg_fma<E>(
    w: &[f32],
    g: &mut [f32],
    sq: &mut [f32],
    runs: &[(usize, usize, usize)],
    each: &[E],
    coefs: impl Fn(&E) -> (f32, f32),
    l2: impl Fn(&E) -> Option<f32>,
) {
    for &(at, len, i) in runs {
        let r = at..at + len;
        let ((a, b), l2) = (coefs(&each[i]), l2(&each[i]));
        let (w, g, sq) = (&w[r.clone()], &mut g[r.clone()], &mut sq[r]);
        for ((w, g), sq) in w.iter().zip(g.iter_mut()).zip(sq.iter_mut()) {
            if let Some(l2) = l2 {
                *g += *w * l2;
            }
            if a != 1.0 {
                *sq *= a;
            }
            *sq = (b * *g).mul_add(*g, *sq);
        }
    }
}

/// `Rmsprop::fused_step`'s second pass: `avg = √square_avg + eps`; with a momentum buffer
/// `buf *= momentum`, `buf + g ÷ avg` and `w + (−lr)·buf`, else `w + (−lr)·g ÷ avg`, each
/// operation rounded in turn as libtorch's; the gradient zeroed.
fn rmsprop_update(
    w: &mut [f32],
    g: &mut [f32],
    root: &[f32],
    mut buf: Option<&mut [f32]>,
    runs: &[(usize, usize, usize)],
    each: &[Each],
    neg_lr: &[f32],
) {
    for &(at, len, i) in runs {
        let r = at..at + len;
        let (e, neg_lr) = (each[i], neg_lr[i]);
        let (w, g, root) = (&mut w[r.clone()], &mut g[r.clone()], &root[r.clone()]);
        match buf.as_deref_mut() {
            Some(buf) => {
                for (((w, g), root), b) in w.iter_mut().zip(g.iter_mut()).zip(root).zip(&mut buf[r]) {
                    let avg = *root + e.eps;
                    *b *= e.momentum;
                    *b += *g / avg;
                    *g = 0.0;
                    *w += neg_lr * *b;
                }
            }
            None => {
                for ((w, g), root) in w.iter_mut().zip(g.iter_mut()).zip(root) {
                    let avg = *root + e.eps;
                    *w += (neg_lr * *g) / avg;
                    *g = 0.0;
                }
            }
        }
    }
}
