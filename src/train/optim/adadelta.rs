//! Adadelta, matching `torch.optim.Adadelta` (its single-tensor update) for every member of
//! a group at once, each with its own lr, rho, eps and weight decay.

use super::{member_buffers, rmsprop::SQUARE_AVG, Coef, FlatGrads, Group, MemberState, Optimizer, Spread};
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
    neg_lr: Coef,
    weight_decay: Option<Coef>,
}

impl Adadelta {
    pub fn new(group: Group) -> Adadelta {
        let spread = Spread::new(group.arch, group.params);
        let rho = group.each(|s| s.rho);
        let wds = group.each(|s| s.weight_decay);
        Adadelta {
            grads: FlatGrads::new(group.params),
            one_minus_rho: spread.coef(&rho.iter().map(|r| 1.0 - r).collect::<Vec<_>>()),
            rho: spread.coef(&rho),
            eps: spread.coef(&group.each(|s| s.eps)),
            neg_lr: spread.neg_lr(group.lrs),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| spread.coef(&wds)),
            square_avg: group.buffer(SQUARE_AVG),
            acc_delta: group.buffer(ACC_DELTA),
            steps: group.steps(),
            spread,
        }
    }
}

impl Optimizer for Adadelta {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
        self.grads.update(params, self.weight_decay.as_ref(), |grad, flat| {
            self.rho.scale(&mut self.square_avg);
            let _ = self.square_avg.addcmul_(&self.one_minus_rho.times(grad), &*grad);
            let mut std = self.eps.plus(&self.square_avg);
            let _ = std.sqrt_();
            let mut delta = self.eps.plus(&self.acc_delta);
            let _ = delta.sqrt_().g_div_(&std).g_mul_(grad);
            self.rho.scale(&mut self.acc_delta);
            let _ = self.acc_delta.addcmul_(&self.one_minus_rho.times(&delta), &delta);
            let _ = flat.g_add_(&self.neg_lr.times(&delta));
        });
        self.steps.iter_mut().for_each(|s| *s += 1);
    }

    fn set_lrs(&mut self, _arch: &Architecture, _params: &GroupParams, lrs: &[f64]) {
        self.neg_lr = self.spread.neg_lr(lrs);
    }

    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState {
        let buffers = [(SQUARE_AVG, &self.square_avg), (ACC_DELTA, &self.acc_delta)];
        member_buffers(arch, params, m, self.steps[m as usize], &buffers)
    }
}
