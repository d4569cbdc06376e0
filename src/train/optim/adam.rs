//! Adam and AdamW, matching `torch.optim.Adam` and `torch.optim.AdamW` (their single-tensor
//! update) for every member of a group at once: each member its own lr, betas, eps, weight
//! decay, AMSGrad flag and step count, so a member that joined a group late has its own
//! bias correction. A step is about a dozen tensor operations over the group's flat buffer,
//! whatever the number of layers and members.

use super::{member_buffers, Coef, FlatGrads, Group, MemberState, Optimizer, Spread};
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
    /// Adam: `weight_decay`, added to the gradient as an L2 term; AdamW: `1 − lr·weight_decay`,
    /// the weights' shrink factor. `None` when no member decays.
    decay: Option<Coef>,
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
        self.steps.iter_mut().for_each(|s| *s += 1);
        // torch computes these in double from the step count, per parameter.
        let mut step_size = Vec::with_capacity(self.steps.len());
        let mut bc2_sqrt = Vec::with_capacity(self.steps.len());
        for m in 0..self.steps.len() {
            let t = self.steps[m] as i32;
            step_size.push(-self.lrs[m] / (1.0 - self.beta1[m].powi(t)));
            bc2_sqrt.push((1.0 - self.beta2[m].powi(t)).sqrt());
        }
        let (step_size, bc2_sqrt) = (self.spread.coef(&step_size), self.spread.coef(&bc2_sqrt));
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
