//! Adagrad, matching `torch.optim.Adagrad` (lr_decay 0, initial accumulator 0; its
//! single-tensor update) for every member of a group at once, each with its own lr, eps
//! and weight decay.

use super::{member_buffers, Coef, FlatGrads, Group, MemberState, Optimizer, Spread};
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
    neg_lr: Coef,
    weight_decay: Option<Coef>,
}

impl Adagrad {
    pub fn new(group: Group) -> Adagrad {
        let spread = Spread::new(group.arch, group.params);
        let wds = group.each(|s| s.weight_decay);
        Adagrad {
            grads: FlatGrads::new(group.params),
            eps: spread.coef(&group.each(|s| s.eps)),
            neg_lr: spread.neg_lr(group.lrs),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| spread.coef(&wds)),
            sum: group.buffer(SUM),
            steps: group.steps(),
            spread,
        }
    }
}

impl Optimizer for Adagrad {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
        self.grads.update(params, self.weight_decay.as_ref(), |grad, flat| {
            let _ = self.sum.addcmul_(&*grad, &*grad);
            let mut std = self.sum.sqrt();
            self.eps.add_to(&mut std);
            let _ = flat.addcdiv_(&self.neg_lr.times(grad), &std);
        });
        self.steps.iter_mut().for_each(|s| *s += 1);
    }

    fn set_lrs(&mut self, _arch: &Architecture, _params: &GroupParams, lrs: &[f64]) {
        self.neg_lr = self.spread.neg_lr(lrs);
    }

    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState {
        member_buffers(arch, params, m, self.steps[m as usize], &[(SUM, &self.sum)])
    }
}
