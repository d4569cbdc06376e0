//! SGD with momentum, Nesterov momentum and weight decay, matching `torch.optim.SGD`
//! (dampening 0) for every member of a group at once, each with its own lr, momentum,
//! weight decay and Nesterov flag: a step is at most five tensor operations over the
//! group's flat buffer, whatever the number of layers and members, or on a CPU one pass of
//! ours over it that computes the same bit for bit and zeroes the gradients as it goes
//! (`Sgd::fused_step`: the step of 8 tutorial CNNs 2.3× faster; BENCHMARKS.md, "The
//! optimiser's step in one pass, and a third machine").
//!
//! N.B.: the momentum buffer starts at zero rather than "unset until the first step", as in
//! PyTorch: 0·m + g is exactly g, so the first step agrees, and a member that joins a group
//! later starts where it would alone.

use super::{member_buffers, one_pass_buffers, FlatGrads, Group, Hyper, MemberState, Optimizer};
use crate::network::Architecture;
use crate::train::model::GroupParams;
use tch::Tensor;

pub use crate::optimizer::MOMENTUM;

/// Each member's settings, in member order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberHyper {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

pub struct Sgd {
    grads: FlatGrads,
    /// The momentum buffer, laid out as the parameters; `None` when no member uses momentum.
    buf: Option<Tensor>,
    /// Each member's momentum: who keeps a buffer.
    momenta: Vec<f64>,
    steps: Vec<u64>,
    neg_lr: Hyper,
    momentum: Hyper,
    weight_decay: Option<Hyper>,
    /// The direction `buf·a + g·b` when some member uses Nesterov momentum (a = its
    /// momentum, b = 1; a = 1, b = 0 for the others); `None` when none does.
    nesterov: Option<(Hyper, Hyper)>,
    /// The same settings per member, as the float32 numbers the tensors above hold, for the
    /// one-pass update on a CPU (`fused_step`).
    each: EachMember,
    /// Where each member's values lie in the flat buffers (`GroupParams::member_runs`).
    runs: Vec<(usize, usize, usize)>,
}

/// Each member's −lr, momentum, weight decay and Nesterov coefficients (a, b), in member
/// order, as float32 (what `Hyper` holds).
struct EachMember {
    neg_lr: Vec<f32>,
    momentum: Vec<f32>,
    weight_decay: Option<Vec<f32>>,
    nesterov: Option<(Vec<f32>, Vec<f32>)>,
}

impl Sgd {
    /// An optimiser for the group; each member's saved momentum buffer, or zeros.
    pub fn new(group: Group) -> Sgd {
        let members: Vec<MemberHyper> = group
            .specs
            .iter()
            .zip(group.lrs)
            .map(|(s, &lr)| MemberHyper {
                lr,
                momentum: s.momentum,
                weight_decay: s.weight_decay,
                nesterov: s.nesterov,
            })
            .collect();
        let momenta: Vec<f64> = members.iter().map(|m| m.momentum).collect();
        let buf = momenta.iter().any(|&m| m != 0.0).then(|| group.buffer(MOMENTUM));
        Sgd::with(group.arch, group.params, &members, buf, group.steps())
    }

    /// An optimiser for `params` with these settings, from zero state (for tests and
    /// benchmarks that build a group by hand).
    pub fn from_hyper(arch: &Architecture, params: &GroupParams, members: &[MemberHyper]) -> Sgd {
        let buf = members.iter().any(|m| m.momentum != 0.0).then(|| params.flat.zeros_like());
        Sgd::with(arch, params, members, buf, vec![0; members.len()])
    }

    fn with(
        arch: &Architecture,
        params: &GroupParams,
        members: &[MemberHyper],
        buf: Option<Tensor>,
        steps: Vec<u64>,
    ) -> Sgd {
        let lrs: Vec<f64> = members.iter().map(|m| -m.lr).collect();
        let momenta: Vec<f64> = members.iter().map(|m| m.momentum).collect();
        let wds: Vec<f64> = members.iter().map(|m| m.weight_decay).collect();
        let ab = members.iter().any(|m| m.nesterov).then(|| {
            let a: Vec<f64> = members.iter().map(|m| if m.nesterov { m.momentum } else { 1.0 }).collect();
            let b: Vec<f64> = members.iter().map(|m| if m.nesterov { 1.0 } else { 0.0 }).collect();
            (a, b)
        });
        let nesterov = ab.as_ref().map(|(a, b)| (Hyper::new(arch, params, a), Hyper::new(arch, params, b)));
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let each = EachMember {
            neg_lr: f32s(&lrs),
            momentum: f32s(&momenta),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| f32s(&wds)),
            nesterov: ab.as_ref().map(|(a, b)| (f32s(a), f32s(b))),
        };
        Sgd {
            each,
            runs: params.member_runs(),
            grads: FlatGrads::new(params),
            buf,
            neg_lr: Hyper::new(arch, params, &lrs),
            momentum: Hyper::new(arch, params, &momenta),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| Hyper::new(arch, params, &wds)),
            momenta,
            steps,
            nesterov,
        }
    }

    /// One step by libtorch's tensor operations over the flat buffers, on any device (the
    /// gradients left as they are); on a CPU `step` computes the same bit for bit in one
    /// pass, which tests compare with this.
    pub fn step_by_ops(&mut self, params: &GroupParams) {
        self.steps.iter_mut().for_each(|s| *s += 1);
        self.update_by_ops(params);
    }

    fn update_by_ops(&mut self, params: &GroupParams) {
        tch::no_grad(|| {
            self.grads.bind(params);
            let grad = &mut self.grads.grad;
            if let Some(wd) = &self.weight_decay {
                let _ = grad.addcmul_(&params.flat, wd.tensor());
            }
            let mut flat = params.flat.shallow_clone();
            match (&mut self.buf, &self.nesterov) {
                (Some(buf), None) => {
                    let _ = buf.g_mul_(self.momentum.tensor()).g_add_(grad);
                    let _ = flat.addcmul_(buf, self.neg_lr.tensor());
                }
                // torch: g + momentum·buf; the others' buf·1 + g·0 is their buf exactly.
                (Some(buf), Some((a, b))) => {
                    let _ = buf.g_mul_(self.momentum.tensor()).g_add_(grad);
                    let direction = match b {
                        Hyper::Same(_) => grad.addcmul(buf, a.tensor()),
                        Hyper::PerElement(b) => (&*buf * a.tensor()).addcmul(grad, b),
                    };
                    let _ = flat.addcmul_(&direction, self.neg_lr.tensor());
                }
                (None, _) => {
                    let _ = flat.addcmul_(grad, self.neg_lr.tensor());
                }
            }
        });
    }

    /// The update of `update_by_ops` in one pass over the flat buffers, on an x86-64 CPU with
    /// AVX2 and FMA: each value goes through the same float32 operations in the same order as
    /// libtorch's kernels take it there (so the weights are the same bit for bit; its
    /// `addcmul` is a fused multiply-add), and its gradient is zeroed as it is read. The tensor
    /// operations make four or five passes over buffers that outgrow the caches in a group
    /// (2 MB each for 8 tutorial CNNs), and read each member's settings from buffers as
    /// large. `false` (nothing done) elsewhere: another device or CPU, or buffers not
    /// contiguous float32.
    fn fused_step(&mut self, params: &GroupParams) -> bool {
        let mut buffers = vec![&params.flat, &self.grads.grad];
        buffers.extend(self.buf.as_ref());
        // SAFETY: the group's own weights, gradients and momentum (distinct buffers), which
        // nothing else touches while it steps.
        let Some(mut slices) = (unsafe { one_pass_buffers(&buffers, &self.runs) }) else { return false };
        let b = (slices.len() == 3).then(|| slices.pop()).flatten();
        let g = slices.pop().expect("the gradients");
        let w = slices.pop().expect("the weights");
        // SAFETY: `one_pass_buffers` found AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            one_pass_fma(w, g, b, &self.runs, &self.each)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, g, b);
        self.grads.zeroed = true;
        true
    }
}

/// `Sgd::fused_step`'s pass, compiled for AVX2 and FMA. Per value, as the tensor operations:
/// `grad.addcmul_(flat, wd)` is fma(w, wd, g); `buf.mul_(momentum).add_(grad)` rounds the
/// product, then the sum; Nesterov's `grad.addcmul(buf, a)` (one setting for all) is
/// fma(buf, a, g), and `(buf * a).addcmul(grad, b)` (settings per member) fma(g, b, buf·a);
/// `flat.addcmul_(direction, −lr)` is fma(direction, −lr, w).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn one_pass_fma(
    w: &mut [f32],
    g: &mut [f32],
    mut b: Option<&mut [f32]>,
    runs: &[(usize, usize, usize)],
    e: &EachMember,
) {
    let nesterov_per_member = e.nesterov.as_ref().is_some_and(|(_, nb)| nb.windows(2).any(|p| p[0] != p[1]));
    for &(at, len, m) in runs {
        let (w, g) = (&mut w[at..at + len], &mut g[at..at + len]);
        let wd = e.weight_decay.as_ref().map(|wd| wd[m]);
        // The gradient with its L2 term, read once and left zero.
        let grad = |w: f32, g: &mut f32| {
            let v = wd.map_or(*g, |wd| w.mul_add(wd, *g));
            *g = 0.0;
            v
        };
        let lr = e.neg_lr[m];
        match (b.as_deref_mut(), &e.nesterov) {
            (Some(b), None) => {
                let mu = e.momentum[m];
                for ((w, g), b) in w.iter_mut().zip(g.iter_mut()).zip(&mut b[at..at + len]) {
                    *b = *b * mu + grad(*w, g);
                    *w = b.mul_add(lr, *w);
                }
            }
            (Some(b), Some((na, nb))) => {
                let (mu, na, nb) = (e.momentum[m], na[m], nb[m]);
                for ((w, g), b) in w.iter_mut().zip(g.iter_mut()).zip(&mut b[at..at + len]) {
                    let g = grad(*w, g);
                    *b = *b * mu + g;
                    let d = if nesterov_per_member { g.mul_add(nb, *b * na) } else { b.mul_add(na, g) };
                    *w = d.mul_add(lr, *w);
                }
            }
            (None, _) => {
                for (w, g) in w.iter_mut().zip(g.iter_mut()) {
                    *w = grad(*w, g).mul_add(lr, *w);
                }
            }
        }
    }
}

impl Optimizer for Sgd {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
        self.steps.iter_mut().for_each(|s| *s += 1);
        tch::no_grad(|| self.grads.bind(params));
        if !self.fused_step(params) {
            self.update_by_ops(params);
        }
    }

    fn set_lrs(&mut self, arch: &Architecture, params: &GroupParams, lrs: &[f64]) {
        let neg: Vec<f64> = lrs.iter().map(|l| -l).collect();
        self.neg_lr = Hyper::new(arch, params, &neg);
        self.each.neg_lr = neg.iter().map(|&x| x as f32).collect();
    }

    /// A member without momentum keeps no buffer (its share of the group's would be unused).
    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState {
        let step = self.steps[m as usize];
        match self.buf.as_ref().filter(|_| self.momenta[m as usize] != 0.0) {
            Some(buf) => member_buffers(arch, params, m, step, &[(MOMENTUM, buf)]),
            None => MemberState { buffers: Vec::new(), step },
        }
    }
}
