//! Optimisers for a fused group: one step updates every member's every weight, each member
//! with its own settings and its own state.
//!
//! A member's state outside the group (while the group is rebuilt, in its checkpoint) is a
//! `MemberState`: named buffers, each [P] in the architecture's parameter order, as
//! torch.optim keeps per-parameter state (SGD's `momentum_buffer`, Adam's `exp_avg`). An
//! optimiser declares its buffers' names (`state_names`) so checkpoints can read them back;
//! adding an optimiser is a file here and its line in `for_members` and `state_names`.

pub mod sgd;

use super::model::GroupParams;
use crate::network::Architecture;
use crate::spec::Spec;
use tch::Tensor;

/// Every buffer name any optimiser uses; a checkpoint's tensors named `<buffer>.<param>`
/// for one of these are optimiser state, the others weights.
pub const BUFFER_NAMES: &[&str] = &[sgd::MOMENTUM];

/// One member's optimiser state: its named buffers, each [P] in parameter order. Empty for
/// a member that has not stepped yet, or whose optimiser keeps nothing.
#[derive(Default)]
pub struct MemberState {
    pub buffers: Vec<(String, Tensor)>,
}

impl MemberState {
    /// The buffer called `name`, if the member has one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.buffers.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// What the engine asks of a group's optimiser.
pub trait Optimizer {
    /// Clears the gradients before the next backward pass.
    fn zero_grad(&mut self, params: &GroupParams);
    /// One update of every member from the gradients autograd left in the parameters.
    fn step(&mut self, params: &GroupParams);
    /// Member `m`'s state, as it would carry it alone.
    fn member_state(&self, arch: &Architecture, params: &GroupParams, m: i64) -> MemberState;
}

/// The optimiser of the members with these specs (in member order), each resuming from its
/// state (empty: from the start).
pub fn for_members(
    arch: &Architecture,
    params: &GroupParams,
    specs: &[&Spec],
    states: Vec<MemberState>,
) -> Box<dyn Optimizer> {
    let hyper: Vec<sgd::MemberHyper> = specs
        .iter()
        .map(|s| sgd::MemberHyper { lr: s.lr, momentum: s.momentum, weight_decay: s.weight_decay })
        .collect();
    Box::new(sgd::Sgd::new(arch, params, &hyper, states))
}

/// The buffers a member of `spec` keeps, by name, as its checkpoint holds them.
pub fn state_names(spec: &Spec) -> &'static [&'static str] {
    if spec.momentum != 0.0 {
        &[sgd::MOMENTUM]
    } else {
        &[]
    }
}

/// One hyperparameter over a group: a scalar when every member shares it, else a value per
/// element of the flat buffer.
pub(crate) enum Hyper {
    Same(Tensor),
    PerElement(Tensor),
}

impl Hyper {
    pub(crate) fn new(arch: &Architecture, params: &GroupParams, values: &[f64]) -> Hyper {
        if values.windows(2).all(|w| w[0] == w[1]) {
            Hyper::Same(Tensor::from(values.first().copied().unwrap_or(0.0) as f32).to_device(params.flat.device()))
        } else {
            Hyper::PerElement(params.per_element(arch, values))
        }
    }

    pub(crate) fn tensor(&self) -> &Tensor {
        match self {
            Hyper::Same(t) | Hyper::PerElement(t) => t,
        }
    }
}

/// The group's gradients in one flat buffer laid out as the parameters, so an update is a
/// handful of operations over all of it.
pub(crate) struct FlatGrads {
    pub(crate) grad: Tensor,
    bound: bool,
}

impl FlatGrads {
    pub(crate) fn new(params: &GroupParams) -> FlatGrads {
        FlatGrads { grad: params.flat.zeros_like(), bound: false }
    }

    /// Makes every parameter's `.grad` a view into the flat buffer (once, after the first
    /// backward pass made them), so that autograd accumulates into it in place from then on.
    pub(crate) fn bind(&mut self, params: &GroupParams) {
        if self.bound {
            return;
        }
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

    pub(crate) fn zero(&mut self, params: &GroupParams) {
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
}
