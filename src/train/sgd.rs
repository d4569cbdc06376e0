//! SGD with momentum and weight decay, matching `torch.optim.SGD` (dampening 0, no
//! Nesterov), over the flat parameter buffer: a step is four tensor operations whatever the
//! number of layers. It owns its momentum buffer, so checkpoints can save it.

use super::model::ParamSet;
use tch::{Kind, Tensor};

pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    grad: Tensor,
    /// The momentum buffer; `None` until the first step, as in PyTorch.
    pub buf: Option<Tensor>,
    neg_lr: Tensor,
    weight_decay_t: Tensor,
    bound: bool,
}

impl Sgd {
    pub fn new(params: &ParamSet, lr: f64, momentum: f64, weight_decay: f64) -> Sgd {
        let opts = (Kind::Float, params.flat.device());
        Sgd {
            lr,
            momentum,
            weight_decay,
            grad: params.flat.zeros_like(),
            buf: None,
            neg_lr: Tensor::from(-lr as f32).to_device(opts.1),
            weight_decay_t: Tensor::from(weight_decay as f32).to_device(opts.1),
            bound: false,
        }
    }

    /// Makes every parameter's `.grad` a view into the one flat gradient buffer, so that
    /// autograd accumulates into it in place from then on.
    fn bind_grads(&mut self, params: &ParamSet) {
        for p in &params.params {
            let mut g = p.tensor.grad();
            let mut slot = ParamSet::view_of(&self.grad, p);
            if g.defined() {
                slot.copy_(&g);
                g.set_data(&slot);
            }
        }
        self.bound = true;
    }

    /// Clears the gradients before the next backward pass.
    pub fn zero_grad(&mut self, params: &ParamSet) {
        if self.bound {
            let _ = self.grad.zero_();
        } else {
            for p in &params.params {
                let mut g = p.tensor.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
    }

    /// One update from the gradients autograd left in the parameters.
    pub fn step(&mut self, params: &ParamSet) {
        tch::no_grad(|| {
            if !self.bound {
                self.bind_grads(params);
            }
            if self.weight_decay != 0.0 {
                let _ = self.grad.addcmul_(&params.flat, &self.weight_decay_t);
            }
            let direction = if self.momentum != 0.0 {
                match &mut self.buf {
                    Some(buf) => {
                        let _ = buf.g_mul_scalar_(self.momentum).g_add_(&self.grad);
                    }
                    None => self.buf = Some(self.grad.copy()),
                }
                self.buf.as_ref().expect("set above")
            } else {
                &self.grad
            };
            let mut flat = params.flat.shallow_clone();
            let _ = flat.addcmul_(direction, &self.neg_lr);
        });
    }
}
