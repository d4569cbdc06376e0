//! SGD with momentum and weight decay, matching `torch.optim.SGD` (dampening 0, no
//! Nesterov) for every member of a group at once, each with its own lr, momentum and weight
//! decay: a step is at most four tensor operations over the group's flat buffer, whatever
//! the number of layers and members.
//!
//! N.B.: the momentum buffer starts at zero rather than "unset until the first step", as in
//! PyTorch: 0·m + g is exactly g, so the first step agrees, and a member that joins a group
//! later starts where it would alone.

use super::model::{Architecture, GroupParams};
use tch::Tensor;

/// One hyperparameter: a scalar when every member shares it, else a value per element.
enum Hyper {
    Same(Tensor),
    PerElement(Tensor),
}

impl Hyper {
    fn new(arch: &Architecture, params: &GroupParams, values: &[f64]) -> Hyper {
        if values.windows(2).all(|w| w[0] == w[1]) {
            Hyper::Same(Tensor::from(values.first().copied().unwrap_or(0.0) as f32).to_device(params.flat.device()))
        } else {
            Hyper::PerElement(params.per_element(arch, values))
        }
    }

    fn tensor(&self) -> &Tensor {
        match self {
            Hyper::Same(t) | Hyper::PerElement(t) => t,
        }
    }
}

/// Each member's settings, in member order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberHyper {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

pub struct Sgd {
    grad: Tensor,
    /// The momentum buffer, laid out as the parameters; `None` when no member uses momentum.
    pub buf: Option<Tensor>,
    neg_lr: Hyper,
    momentum: Hyper,
    weight_decay: Option<Hyper>,
    bound: bool,
}

impl Sgd {
    /// An optimiser for `params`; `momentum` is each member's saved buffer ([P], parameter
    /// order) or `None` to start from zero.
    pub fn new(arch: &Architecture, params: &GroupParams, members: &[MemberHyper], momentum: &[Option<Tensor>]) -> Sgd {
        let lrs: Vec<f64> = members.iter().map(|m| -m.lr).collect();
        let moms: Vec<f64> = members.iter().map(|m| m.momentum).collect();
        let wds: Vec<f64> = members.iter().map(|m| m.weight_decay).collect();
        let device = params.flat.device();
        let buf = moms.iter().any(|&m| m != 0.0).then(|| {
            let rows: Vec<Tensor> = momentum
                .iter()
                .map(|m| match m {
                    Some(t) => t.to_device(device),
                    None => Tensor::zeros([arch.numel()], (tch::Kind::Float, device)),
                })
                .collect();
            super::model::stack_rows(arch, &rows).to_device(device)
        });
        Sgd {
            grad: params.flat.zeros_like(),
            buf,
            neg_lr: Hyper::new(arch, params, &lrs),
            momentum: Hyper::new(arch, params, &moms),
            weight_decay: wds.iter().any(|&w| w != 0.0).then(|| Hyper::new(arch, params, &wds)),
            bound: false,
        }
    }

    /// Makes every parameter's `.grad` a view into the one flat gradient buffer, so that
    /// autograd accumulates into it in place from then on.
    fn bind_grads(&mut self, params: &GroupParams) {
        for (i, t) in params.tensors.iter().enumerate() {
            let mut g = t.grad();
            let mut slot = params.view_of(&self.grad, i);
            if g.defined() {
                slot.copy_(&g);
                g.set_data(&slot);
            }
        }
        self.bound = true;
    }

    /// Clears the gradients before the next backward pass.
    pub fn zero_grad(&mut self, params: &GroupParams) {
        if self.bound {
            let _ = self.grad.zero_();
        } else {
            for t in &params.tensors {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
    }

    /// One update from the gradients autograd left in the parameters.
    pub fn step(&mut self, params: &GroupParams) {
        tch::no_grad(|| {
            if !self.bound {
                self.bind_grads(params);
            }
            if let Some(wd) = &self.weight_decay {
                let _ = self.grad.addcmul_(&params.flat, wd.tensor());
            }
            let direction = match &mut self.buf {
                Some(buf) => {
                    let _ = buf.g_mul_(self.momentum.tensor()).g_add_(&self.grad);
                    &*buf
                }
                None => &self.grad,
            };
            let mut flat = params.flat.shallow_clone();
            let _ = flat.addcmul_(direction, self.neg_lr.tensor());
        });
    }
}
