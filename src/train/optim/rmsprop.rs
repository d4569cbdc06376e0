//! RMSprop, matching `torch.optim.RMSprop` (not centred; its single-tensor update) for every
//! member of a group at once, each with its own lr, alpha, eps, momentum and weight decay.

use super::{member_buffers, sgd::MOMENTUM, Coef, FlatGrads, Group, MemberState, Optimizer, Spread};
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
    neg_lr: Coef,
    weight_decay: Option<Coef>,
}

impl Rmsprop {
    pub fn new(group: Group) -> Rmsprop {
        let spread = Spread::new(group.arch, group.params);
        let alpha = group.each(|s| s.alpha);
        let momenta = group.each(|s| s.momentum);
        let wds = group.each(|s| s.weight_decay);
        Rmsprop {
            grads: FlatGrads::new(group.params),
            one_minus_alpha: spread.coef(&alpha.iter().map(|a| 1.0 - a).collect::<Vec<_>>()),
            alpha: spread.coef(&alpha),
            eps: spread.coef(&group.each(|s| s.eps)),
            momentum: spread.coef(&momenta),
            neg_lr: spread.neg_lr(group.lrs),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| spread.coef(&wds)),
            square_avg: group.buffer(SQUARE_AVG),
            buf: momenta.iter().any(|&m| m > 0.0).then(|| group.buffer(MOMENTUM)),
            steps: group.steps(),
            momenta,
            spread,
        }
    }
}

impl Optimizer for Rmsprop {
    fn zero_grad(&mut self, params: &GroupParams) {
        self.grads.zero(params);
    }

    fn step(&mut self, params: &GroupParams) {
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
                    let _ = flat.g_add_(&self.neg_lr.times(buf));
                }
                None => {
                    let _ = flat.addcdiv_(&self.neg_lr.times(grad), &avg);
                }
            }
        });
        self.steps.iter_mut().for_each(|s| *s += 1);
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
