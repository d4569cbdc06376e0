//! SGD with momentum and weight decay, matching `torch.optim.SGD` (dampening 0, no
//! Nesterov) for every member of a group at once, each with its own lr, momentum and weight
//! decay: a step is at most four tensor operations over the group's flat buffer, whatever
//! the number of layers and members.
//!
//! N.B.: the momentum buffer starts at zero rather than "unset until the first step", as in
//! PyTorch: 0·m + g is exactly g, so the first step agrees, and a member that joins a group
//! later starts where it would alone.

use super::{FlatGrads, Hyper, MemberState, Optimizer};
use crate::network::Architecture;
use crate::train::model::GroupParams;
use tch::Tensor;

/// The momentum buffer's name in a member's state (and its checkpoint: `momentum.<param>`).
pub const MOMENTUM: &str = "momentum";

/// Each member's settings, in member order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberHyper {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

pub struct Sgd {
    grads: FlatGrads,
    /// The momentum buffer, laid out as the parameters; `None` when no member uses momentum.
    buf: Option<Tensor>,
    /// Each member's momentum: who keeps a buffer.
    momenta: Vec<f64>,
    neg_lr: Hyper,
    momentum: Hyper,
    weight_decay: Option<Hyper>,
}

impl Sgd {
    /// An optimiser for `params`; `states` holds each member's saved momentum buffer, or
    /// nothing to start from zero.
    pub fn new(arch: &Architecture, params: &GroupParams, members: &[MemberHyper], states: Vec<MemberState>) -> Sgd {
        let lrs: Vec<f64> = members.iter().map(|m| -m.lr).collect();
        let momenta: Vec<f64> = members.iter().map(|m| m.momentum).collect();
        let wds: Vec<f64> = members.iter().map(|m| m.weight_decay).collect();
        let device = params.flat.device();
        let buf = momenta.iter().any(|&m| m != 0.0).then(|| {
            let rows: Vec<Tensor> = (0..members.len())
                .map(|i| match states.get(i).and_then(|s| s.get(MOMENTUM)) {
                    Some(t) => t.to_device(device),
                    None => Tensor::zeros([arch.numel()], (tch::Kind::Float, device)),
                })
                .collect();
            crate::train::model::stack_rows(arch, &rows).to_device(device)
        });
        Sgd {
            grads: FlatGrads::new(params),
            buf,
            neg_lr: Hyper::new(arch, params, &lrs),
            momentum: Hyper::new(arch, params, &momenta),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| Hyper::new(arch, params, &wds)),
            momenta,
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
            let direction = match &mut self.buf {
                Some(buf) => {
                    let _ = buf.g_mul_(self.momentum.tensor()).g_add_(grad);
                    &*buf
                }
                None => &*grad,
            };
            let mut flat = params.flat.shallow_clone();
            let _ = flat.addcmul_(direction, self.neg_lr.tensor());
        });
    }

    /// A member without momentum keeps no buffer (its share of the group's would be unused).
    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState {
        let mut state = MemberState::default();
        if let Some(buf) = self.buf.as_ref().filter(|_| self.momenta[m as usize] != 0.0) {
            state.buffers.push((MOMENTUM.to_string(), params.member(arch, buf, m)));
        }
        state
    }
}
