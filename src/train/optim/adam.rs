//! Adam and AdamW, matching `torch.optim.Adam` and `torch.optim.AdamW` (their single-tensor
//! update) for every member of a group at once: each member its own lr, betas, eps, weight
//! decay, AMSGrad flag and step count, so a member that joined a group late has its own
//! bias correction. A step is about a dozen tensor operations over the group's flat buffer,
//! whatever the number of layers and members, or on a CPU two passes of ours and libtorch's
//! square root, which compute the same bit for bit (`Adam::fused_step`: the step of 8
//! tutorial CNNs 2.9× faster; BENCHMARKS.md, "The optimiser's step in one pass, and a third
//! machine").

use super::{member_buffers, one_pass_buffers, Coef, FlatGrads, Group, MemberState, Optimizer, Spread};
use crate::network::Architecture;
use crate::train::model::GroupParams;
use tch::Tensor;

pub use crate::optimizer::{EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ};

pub struct Adam {
    grads: FlatGrads,
    spread: Spread,
    /// AdamW: weight decay shrinks the weights instead of entering the gradient.
    decoupled: bool,
    lrs: Vec<f64>,
    beta1: Vec<f64>,
    beta2: Vec<f64>,
    wds: Vec<f64>,
    steps: Vec<u64>,
    amsgrad: Vec<bool>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The largest `exp_avg_sq` so far, when some member uses AMSGrad.
    max_exp_avg_sq: Option<Tensor>,
    /// Where AMSGrad applies, when only some members use it.
    amsgrad_mask: Option<Tensor>,
    one_minus_beta1: Coef,
    beta2_coef: Coef,
    one_minus_beta2: Coef,
    eps: Coef,
    /// Each member's eps, for the one-pass step.
    eps_each: Vec<f64>,
    /// Adam: `weight_decay`, added to the gradient as an L2 term; AdamW: `1 − lr·weight_decay`,
    /// the weights' shrink factor. `None` when no member decays.
    decay: Option<Coef>,
    /// Where each member's values lie in the flat buffers (`GroupParams::member_runs`).
    runs: Vec<(usize, usize, usize)>,
    /// √exp_avg_sq by libtorch's own kernel, for the one-pass step (made at its first step).
    root: Option<Tensor>,
}

impl Adam {
    pub fn new(group: Group, decoupled: bool) -> Adam {
        let spread = Spread::new(group.arch, group.params);
        let beta1 = group.each(|s| s.betas.0);
        let beta2 = group.each(|s| s.betas.1);
        let amsgrad: Vec<bool> = group.specs.iter().map(|s| s.amsgrad).collect();
        let any_ams = amsgrad.iter().any(|&a| a);
        let mut adam = Adam {
            grads: FlatGrads::new(group.params),
            one_minus_beta1: spread.coef(&beta1.iter().map(|b| 1.0 - b).collect::<Vec<_>>()),
            beta2_coef: spread.coef(&beta2),
            one_minus_beta2: spread.coef(&beta2.iter().map(|b| 1.0 - b).collect::<Vec<_>>()),
            eps: spread.coef(&group.each(|s| s.eps)),
            eps_each: group.each(|s| s.eps),
            exp_avg: group.buffer(EXP_AVG),
            exp_avg_sq: group.buffer(EXP_AVG_SQ),
            max_exp_avg_sq: any_ams.then(|| group.buffer(MAX_EXP_AVG_SQ)),
            amsgrad_mask: (any_ams && !amsgrad.iter().all(|&a| a)).then(|| spread.mask(&amsgrad)),
            spread,
            decoupled,
            lrs: group.lrs.to_vec(),
            wds: group.each(|s| s.weight_decay),
            steps: group.steps(),
            beta1,
            beta2,
            amsgrad,
            decay: None,
            runs: group.params.member_runs(),
            root: None,
        };
        adam.decay = adam.decay_coef();
        adam
    }

    fn decay_coef(&self) -> Option<Coef> {
        if self.wds.iter().all(|&w| w == 0.0) {
            return None;
        }
        Some(if self.decoupled {
            let shrink: Vec<f64> = self.lrs.iter().zip(&self.wds).map(|(lr, wd)| 1.0 - lr * wd).collect();
            self.spread.coef(&shrink)
        } else {
            self.spread.coef(&self.wds)
        })
    }
}

impl Optimizer for Adam {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
        let (step_size, bc2_sqrt) = self.advance();
        tch::no_grad(|| self.grads.bind(params));
        if !self.fused_step(params, &step_size, &bc2_sqrt) {
            self.update_by_ops(params, &step_size, &bc2_sqrt);
        }
    }

    fn set_lrs(&mut self, _arch: &Architecture, _params: &GroupParams, lrs: &[f64]) {
        self.lrs = lrs.to_vec();
        self.decay = self.decay_coef();
    }

    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState {
        let step = self.steps[m as usize];
        let mut buffers = vec![(EXP_AVG, &self.exp_avg), (EXP_AVG_SQ, &self.exp_avg_sq)];
        if let Some(max) = self.max_exp_avg_sq.as_ref().filter(|_| self.amsgrad[m as usize]) {
            buffers.push((MAX_EXP_AVG_SQ, max));
        }
        member_buffers(arch, params, m, step, &buffers)
    }
}

impl Adam {
    /// One step by libtorch's tensor operations over the flat buffers, on any device; on a
    /// CPU `step` computes the same bit for bit in one pass, which tests compare with this.
    pub fn step_by_ops(&mut self, params: &GroupParams) {
        let (step_size, bc2_sqrt) = self.advance();
        self.update_by_ops(params, &step_size, &bc2_sqrt);
    }

    /// Counts a step for every member: each one's step size (−lr ÷ (1 − β1^t)) and
    /// √(1 − β2^t) for it, as torch computes them, in double from the step count.
    fn advance(&mut self) -> (Vec<f64>, Vec<f64>) {
        self.steps.iter_mut().for_each(|s| *s += 1);
        let mut step_size = Vec::with_capacity(self.steps.len());
        let mut bc2_sqrt = Vec::with_capacity(self.steps.len());
        for m in 0..self.steps.len() {
            let t = self.steps[m] as i32;
            step_size.push(-self.lrs[m] / (1.0 - self.beta1[m].powi(t)));
            bc2_sqrt.push((1.0 - self.beta2[m].powi(t)).sqrt());
        }
        (step_size, bc2_sqrt)
    }

    fn update_by_ops(&mut self, params: &GroupParams, step_size: &[f64], bc2_sqrt: &[f64]) {
        let (step_size, bc2_sqrt) = (self.spread.coef(step_size), self.spread.coef(bc2_sqrt));
        tch::no_grad(|| {
            self.grads.bind(params);
            let grad = &mut self.grads.grad;
            let mut flat = params.flat.shallow_clone();
            match (&self.decay, self.decoupled) {
                (Some(shrink), true) => shrink.scale(&mut flat),
                (Some(wd), false) => {
                    let _ = grad.g_add_(&wd.times(&flat));
                }
                (None, _) => {}
            }
            self.one_minus_beta1.lerp(&mut self.exp_avg, grad);
            self.beta2_coef.scale(&mut self.exp_avg_sq);
            let _ = self.exp_avg_sq.addcmul_(&self.one_minus_beta2.times(grad), grad);
            let second = match (&mut self.max_exp_avg_sq, &self.amsgrad_mask) {
                (Some(max), mask) => {
                    let _ = max.maximum_out(max, &self.exp_avg_sq);
                    match mask {
                        Some(mask) => max.where_self(mask, &self.exp_avg_sq),
                        None => max.shallow_clone(),
                    }
                }
                (None, _) => self.exp_avg_sq.shallow_clone(),
            };
            let mut denom = second.sqrt();
            bc2_sqrt.divide(&mut denom);
            self.eps.add_to(&mut denom);
            let _ = flat.addcdiv_(&step_size.times(&self.exp_avg), &denom);
        });
    }

    /// The update of `update_by_ops` in two passes over the flat buffers and libtorch's
    /// square root between them, on an x86-64 CPU with AVX2 and FMA (`one_pass_buffers`),
    /// without AMSGrad: each value through the same float32 operations in the same order as
    /// libtorch's kernels there, and its gradient zeroed as it is read. About a dozen passes
    /// over buffers that outgrow the caches in a group become three. `false` (nothing done)
    /// elsewhere.
    fn fused_step(&mut self, params: &GroupParams, step_size: &[f64], bc2_sqrt: &[f64]) -> bool {
        if self.max_exp_avg_sq.is_some() {
            return false;
        }
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let decay = match (self.wds.iter().any(|&w| w != 0.0), self.decoupled) {
            (false, _) => Decay::None,
            (true, true) => {
                Decay::Shrink(f32s(&self.lrs.iter().zip(&self.wds).map(|(lr, wd)| 1.0 - lr * wd).collect::<Vec<_>>()))
            }
            (true, false) => Decay::L2(f32s(&self.wds)),
        };
        let k = AdamScalars {
            one_minus_beta1: f32s(&self.beta1.iter().map(|b| 1.0 - b).collect::<Vec<_>>()),
            beta2: f32s(&self.beta2),
            one_minus_beta2: f32s(&self.beta2.iter().map(|b| 1.0 - b).collect::<Vec<_>>()),
            eps: f32s(&self.eps_each),
            step_size: f32s(step_size),
            bc2_sqrt: f32s(bc2_sqrt),
            decay,
        };
        let buffers = [&params.flat, &self.grads.grad, &self.exp_avg, &self.exp_avg_sq];
        // SAFETY: the group's own weights, gradients and moments (distinct buffers), which
        // nothing else touches while it steps.
        let Some(slices) = (unsafe { one_pass_buffers(&buffers, &self.runs) }) else { return false };
        let [w, g, m, v]: [&mut [f32]; 4] = slices.try_into().expect("four buffers");
        // SAFETY: `one_pass_buffers` found AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            adam_moments_fma(w, g, m, v, &self.runs, &k)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, g, m, v);
        self.grads.zeroed = true;
        // N.B.: libtorch's float square root is not always the correctly rounded one (1 ulp
        // off now and then: Sleef's), so its own kernel takes it, for the same weights.
        let root = self.root.get_or_insert_with(|| self.exp_avg_sq.zeros_like());
        let _ = self.exp_avg_sq.sqrt_out(root);
        let buffers = [&params.flat, &self.exp_avg, &*root];
        // SAFETY: as above; the square root is written.
        // N.B.: the moments are updated by now, so the weights must be too: the first check
        // passed these buffers, and `root` is made as `exp_avg_sq` is.
        let slices = unsafe { one_pass_buffers(&buffers, &self.runs) }.expect("the buffers the first pass took");
        let [w, m, root]: [&mut [f32]; 3] = slices.try_into().expect("three buffers");
        adam_update(w, m, root, &self.runs, &k);
        true
    }
}

/// A member's weight decay in `adam_moments_fma`.
enum Decay {
    None,
    /// AdamW: the weights times 1 − lr·weight_decay.
    Shrink(Vec<f32>),
    /// Adam: weight_decay·w added to the gradient.
    L2(Vec<f32>),
}

/// Each member's settings for this step, as the float32 numbers libtorch's kernels apply.
struct AdamScalars {
    one_minus_beta1: Vec<f32>,
    beta2: Vec<f32>,
    one_minus_beta2: Vec<f32>,
    eps: Vec<f32>,
    step_size: Vec<f32>,
    bc2_sqrt: Vec<f32>,
    decay: Decay,
}

/// `Adam::fused_step`'s first pass, compiled for AVX2 and FMA. Per value, as the tensor
/// operations: `flat *= shrink` or `grad += wd·w` (the product rounded, then the sum);
/// `exp_avg.lerp_(grad, 1 − β1)`, libtorch's lerp: for a weight below ½ fma(wt, g − m, m),
/// else fma(wt − 1, g − m, g); `exp_avg_sq *= β2`, then `addcmul_((1 − β2)·g, g)`, a fused
/// multiply-add of the rounded product.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_moments_fma(
    w: &mut [f32],
    g: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    runs: &[(usize, usize, usize)],
    k: &AdamScalars,
) {
    for &(at, len, i) in runs {
        let r = at..at + len;
        let (w, g, m, v) = (&mut w[r.clone()], &mut g[r.clone()], &mut m[r.clone()], &mut v[r]);
        let (wt, b2, omb2) = (k.one_minus_beta1[i], k.beta2[i], k.one_minus_beta2[i]);
        let small = wt.abs() < 0.5;
        let (shrink, l2) = match &k.decay {
            Decay::None => (None, None),
            Decay::Shrink(s) => (Some(s[i]), None),
            Decay::L2(d) => (None, Some(d[i])),
        };
        for (((w, g), m), v) in w.iter_mut().zip(g.iter_mut()).zip(m.iter_mut()).zip(v.iter_mut()) {
            if let Some(s) = shrink {
                *w *= s;
            }
            let grad = match l2 {
                Some(d) => *g + *w * d,
                None => *g,
            };
            *g = 0.0;
            let diff = grad - *m;
            *m = if small { wt.mul_add(diff, *m) } else { (wt - 1.0).mul_add(diff, grad) };
            *v *= b2;
            *v = (omb2 * grad).mul_add(grad, *v);
        }
    }
}

/// `Adam::fused_step`'s second pass: the denominator √v ÷ √(1 − β2^t) + eps and
/// `flat.addcdiv_(step_size·m, denom)`, each operation rounded in turn, as libtorch's.
fn adam_update(w: &mut [f32], m: &[f32], root: &[f32], runs: &[(usize, usize, usize)], k: &AdamScalars) {
    for &(at, len, i) in runs {
        let r = at..at + len;
        let (w, m, root) = (&mut w[r.clone()], &m[r.clone()], &root[r]);
        let (eps, step, bc2) = (k.eps[i], k.step_size[i], k.bc2_sqrt[i]);
        for ((w, m), root) in w.iter_mut().zip(m).zip(root) {
            *w += (step * m) / (root / bc2 + eps);
        }
    }
}
