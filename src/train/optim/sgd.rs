//! SGD with momentum, Nesterov momentum and weight decay, matching `torch.optim.SGD`
//! (dampening 0) for every member of a group at once, each with its own lr, momentum,
//! weight decay and Nesterov flag: a step is at most five tensor operations over the
//! group's flat buffer, whatever the number of layers and members.
//!
//! N.B.: the momentum buffer starts at zero rather than "unset until the first step", as in
//! PyTorch: 0·m + g is exactly g, so the first step agrees, and a member that joins a group
//! later starts where it would alone.

use super::{member_buffers, FlatGrads, Group, Hyper, MemberState, Optimizer};
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
        let nesterov = members.iter().any(|m| m.nesterov).then(|| {
            let a: Vec<f64> = members.iter().map(|m| if m.nesterov { m.momentum } else { 1.0 }).collect();
            let b: Vec<f64> = members.iter().map(|m| if m.nesterov { 1.0 } else { 0.0 }).collect();
            (Hyper::new(arch, params, &a), Hyper::new(arch, params, &b))
        });
        Sgd {
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
}

impl Optimizer for Sgd {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
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
        self.steps.iter_mut().for_each(|s| *s += 1);
    }

    fn set_lrs(&mut self, arch: &Architecture, params: &GroupParams, lrs: &[f64]) {
        let neg: Vec<f64> = lrs.iter().map(|l| -l).collect();
        self.neg_lr = Hyper::new(arch, params, &neg);
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
