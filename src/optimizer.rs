//! The optimisers and learning-rate schedules a spec can name, as plain data: each
//! optimiser's name, its settings with torch.optim's defaults, and what it is for; each
//! schedule's rule for the rate of an epoch. The spec's parsing, `GET /spec`, the form and
//! the engine's optimisers (`train::optim`) read these tables; adding an optimiser is a row
//! here and its file there.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Which update rule trains the network: torch.optim's of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
    Adagrad,
    Adadelta,
}

/// Every optimiser's spec name, in the table's order (the spec's choices).
pub const NAMES: &[&str] = &["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"];

/// What one optimiser is, as `GET /spec` and the form tell it.
pub struct OptimizerDoc {
    pub kind: OptimizerKind,
    pub name: &'static str,
    /// Its torch.optim class, for the help text.
    pub torch: &'static str,
    /// torch.optim's defaults (SGD's momentum is the tutorial's 0.9).
    pub lr: f64,
    pub momentum: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub help: &'static str,
}

/// Every optimiser, in the order the form lists them.
pub const OPTIMIZERS: &[OptimizerDoc] = &[
    OptimizerDoc {
        kind: OptimizerKind::Sgd,
        name: "sgd",
        torch: "torch.optim.SGD",
        lr: 0.001,
        momentum: 0.9,
        eps: 0.0,
        weight_decay: 0.0,
        help: "Stochastic gradient descent with momentum (the tutorial's: lr 0.001, momentum 0.9), optionally Nesterov's.",
    },
    OptimizerDoc {
        kind: OptimizerKind::Adam,
        name: "adam",
        torch: "torch.optim.Adam",
        lr: 0.001,
        momentum: 0.0,
        eps: 1e-8,
        weight_decay: 0.0,
        help: "Adam: running averages of the gradient and its square (betas), bias-corrected; weight_decay is an L2 term in the gradient.",
    },
    OptimizerDoc {
        kind: OptimizerKind::Adamw,
        name: "adamw",
        torch: "torch.optim.AdamW",
        lr: 0.001,
        momentum: 0.0,
        eps: 1e-8,
        weight_decay: 0.01,
        help: "AdamW: Adam with decoupled weight decay (the weights shrink by lr·weight_decay each step; default 0.01).",
    },
    OptimizerDoc {
        kind: OptimizerKind::Rmsprop,
        name: "rmsprop",
        torch: "torch.optim.RMSprop",
        lr: 0.01,
        momentum: 0.0,
        eps: 1e-8,
        weight_decay: 0.0,
        help: "RMSprop: the gradient divided by a running root mean square (alpha), optionally with momentum.",
    },
    OptimizerDoc {
        kind: OptimizerKind::Adagrad,
        name: "adagrad",
        torch: "torch.optim.Adagrad",
        lr: 0.01,
        momentum: 0.0,
        eps: 1e-10,
        weight_decay: 0.0,
        help: "Adagrad: each weight's rate divided by the root of its summed squared gradients.",
    },
    OptimizerDoc {
        kind: OptimizerKind::Adadelta,
        name: "adadelta",
        torch: "torch.optim.Adadelta",
        lr: 1.0,
        momentum: 0.0,
        eps: 1e-6,
        weight_decay: 0.0,
        help: "Adadelta: steps scaled by running averages of squared gradients and squared steps (rho); lr 1.0 is its usual value (the MNIST example's).",
    },
];

impl OptimizerKind {
    pub fn doc(self) -> &'static OptimizerDoc {
        OPTIMIZERS.iter().find(|d| d.kind == self).expect("every optimiser has a row")
    }

    pub fn as_str(self) -> &'static str {
        self.doc().name
    }
}

/// The state buffers' names (torch.optim's), as checkpoints name them: `<buffer>.<param>`.
pub const MOMENTUM: &str = "momentum";
pub const EXP_AVG: &str = "exp_avg";
pub const EXP_AVG_SQ: &str = "exp_avg_sq";
pub const MAX_EXP_AVG_SQ: &str = "max_exp_avg_sq";
pub const SQUARE_AVG: &str = "square_avg";
pub const SUM: &str = "sum";
pub const ACC_DELTA: &str = "acc_delta";

/// Every buffer name any optimiser keeps.
pub const BUFFER_NAMES: &[&str] = &[MOMENTUM, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ, SQUARE_AVG, SUM, ACC_DELTA];

/// The buffers a member of `spec` keeps, each one value per parameter, by name.
pub fn state_buffers(spec: &crate::spec::Spec) -> Vec<&'static str> {
    match spec.optimizer {
        OptimizerKind::Sgd if spec.momentum != 0.0 => vec![MOMENTUM],
        OptimizerKind::Sgd => vec![],
        OptimizerKind::Adam | OptimizerKind::Adamw if spec.amsgrad => vec![EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ],
        OptimizerKind::Adam | OptimizerKind::Adamw => vec![EXP_AVG, EXP_AVG_SQ],
        OptimizerKind::Rmsprop if spec.momentum != 0.0 => vec![SQUARE_AVG, MOMENTUM],
        OptimizerKind::Rmsprop => vec![SQUARE_AVG],
        OptimizerKind::Adagrad => vec![SUM],
        OptimizerKind::Adadelta => vec![SQUARE_AVG, ACC_DELTA],
    }
}

/// Values per parameter that a member of `spec`'s optimiser may hold in a fused group,
/// for the memory estimate: the weight and its gradient; the state of the optimiser's
/// fullest member (a group's buffers are the group's: one member with momentum or AMSGrad
/// gives every member that buffer); a step's temporaries; and, for the optimisers that
/// spread per-member settings over the weights, the member index (8 bytes per weight) and
/// a coefficient per setting that members may set differently.
pub fn values_per_parameter(spec: &crate::spec::Spec) -> i64 {
    // N.B.: SGD's count is what it was before optimisers were a field (weight, gradient,
    // momentum), so an SGD group is sized as before.
    match spec.optimizer {
        OptimizerKind::Sgd => 3 + i64::from(spec.nesterov),
        // exp_avg, exp_avg_sq, max_exp_avg_sq; three temporaries; the index; 1 − β1, β2,
        // 1 − β2, eps, decay, and the step's size and bias correction.
        OptimizerKind::Adam | OptimizerKind::Adamw => 2 + 3 + 3 + 2 + 7,
        // square_avg, momentum; two temporaries; the index; alpha, 1 − alpha, eps,
        // momentum, lr, weight decay.
        OptimizerKind::Rmsprop => 2 + 2 + 2 + 2 + 6,
        // sum; two temporaries; the index; eps, lr, weight decay.
        OptimizerKind::Adagrad => 2 + 1 + 2 + 2 + 3,
        // square_avg, acc_delta; two temporaries; the index; rho, 1 − rho, eps, lr, weight decay.
        OptimizerKind::Adadelta => 2 + 2 + 2 + 2 + 5,
    }
}

/// Default `betas` of Adam and AdamW.
pub const BETAS: (f64, f64) = (0.9, 0.999);
/// Default `alpha` of RMSprop.
pub const ALPHA: f64 = 0.99;
/// Default `rho` of Adadelta.
pub const RHO: f64 = 0.9;
/// Default `gamma` of the step and multistep schedules (torch's StepLR, MultiStepLR).
pub const STEP_GAMMA: f64 = 0.1;
/// Most milestones a multistep schedule names.
pub const MAX_MILESTONES: usize = 32;

/// How the learning rate moves from epoch to epoch (stepped once per epoch, as PyTorch's
/// schedulers are by default), after `warmup_epochs` of linear warm-up.
#[derive(Debug, Clone, PartialEq)]
pub enum LrSchedule {
    /// The spec's lr throughout.
    Constant,
    /// torch's `StepLR(step_size=every, gamma)`.
    Step { every: u32, gamma: f64 },
    /// torch's `MultiStepLR(milestones=at, gamma)`.
    Multistep { at: Vec<u32>, gamma: f64 },
    /// torch's `ExponentialLR(gamma)`.
    Exponential { gamma: f64 },
    /// torch's `CosineAnnealingLR(T_max = the epochs after warm-up, eta_min = min_lr)`.
    Cosine { min_lr: f64 },
}

/// What `GET /spec` says of the schedules.
pub const SCHEDULE_FORMS: &[(&str, &str)] = &[
    ("constant", "\"constant\": the lr throughout (the default)"),
    ("step", "{\"step\": {\"every\": 30, \"gamma\": 0.1}}: times gamma every `every` epochs (StepLR); {\"step\": 30} for gamma 0.1"),
    (
        "multistep",
        "{\"multistep\": {\"at\": [30, 60], \"gamma\": 0.1}}: times gamma at each epoch count in `at` (MultiStepLR); {\"multistep\": [30, 60]} for gamma 0.1",
    ),
    ("exponential", "{\"exponential\": {\"gamma\": 0.95}}: times gamma every epoch (ExponentialLR); {\"exponential\": 0.95}"),
    (
        "cosine",
        "{\"cosine\": {\"min_lr\": 0}}: half a cosine from lr down to min_lr over the epochs after warm-up (CosineAnnealingLR); \"cosine\" for min_lr 0",
    ),
];

impl LrSchedule {
    /// The schedule as a spec shows it, every option written out.
    pub fn to_json(&self) -> Value {
        match self {
            LrSchedule::Constant => json!("constant"),
            LrSchedule::Step { every, gamma } => json!({"step": {"every": every, "gamma": gamma}}),
            LrSchedule::Multistep { at, gamma } => json!({"multistep": {"at": at, "gamma": gamma}}),
            LrSchedule::Exponential { gamma } => json!({"exponential": {"gamma": gamma}}),
            LrSchedule::Cosine { min_lr } => json!({"cosine": {"min_lr": min_lr}}),
        }
    }

    /// The schedule in a few characters, as a legend names it: `constant`, `step(30, ×0.1)`,
    /// `multistep(30+60, ×0.1)`, `exponential(×0.95)`, `cosine(→0)`.
    pub fn short(&self) -> String {
        match self {
            LrSchedule::Constant => "constant".into(),
            LrSchedule::Step { every, gamma } => format!("step({every}, ×{gamma})"),
            LrSchedule::Multistep { at, gamma } => {
                let at: Vec<String> = at.iter().map(u32::to_string).collect();
                format!("multistep({}, ×{gamma})", at.join("+"))
            }
            LrSchedule::Exponential { gamma } => format!("exponential(×{gamma})"),
            LrSchedule::Cosine { min_lr } => format!("cosine(→{min_lr})"),
        }
    }

    /// Reads a schedule as `SCHEDULE_FORMS` shows them; the error says what was wrong and
    /// what is allowed, without the field's name.
    pub fn parse(v: &Value) -> Result<LrSchedule, String> {
        let kinds = || SCHEDULE_FORMS.iter().map(|(k, _)| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
        let (kind, options) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) if o.len() == 1 => {
                let (k, v) = o.iter().next().expect("one key");
                (k.as_str(), Some(v))
            }
            _ => {
                return Err(format!(
                    "must be \"constant\" or an object of one schedule, e.g. {{\"step\": {{\"every\": 30, \"gamma\": 0.1}}}}; the schedules: {}; got {v}",
                    kinds()
                ))
            }
        };
        let options = options.filter(|o| !o.is_null());
        // The main option alone, or an object of named options.
        let field = |name: &str, main: &str| -> Option<&Value> {
            match options {
                Some(Value::Object(o)) => o.get(name),
                Some(other) if name == main => Some(other),
                _ => None,
            }
        };
        let unknown = |allowed: &[&str]| -> Result<(), String> {
            if let Some(Value::Object(o)) = options {
                if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
                    return Err(format!("{kind}: unknown option \"{k}\"; its options: {}", allowed.join(", ")));
                }
            }
            Ok(())
        };
        let gamma = |default: Option<f64>, main: &str| -> Result<f64, String> {
            match field("gamma", main) {
                None if default.is_some() => Ok(default.unwrap_or_default()),
                None => Err(format!("{kind}: needs gamma, a number above 0, e.g. {{\"{kind}\": {{\"gamma\": 0.95}}}}")),
                Some(g) => match g.as_f64() {
                    Some(x) if x.is_finite() && x > 0.0 => Ok(x),
                    _ => Err(format!("{kind}.gamma: must be a finite number above 0, got {g}")),
                },
            }
        };
        let epochs = crate::spec::EPOCHS.1;
        match kind {
            "constant" if options.is_none() => Ok(LrSchedule::Constant),
            "step" => {
                unknown(&["every", "gamma"])?;
                let every = match field("every", "every") {
                    None => {
                        return Err(
                            "step: needs every, the epochs between decays, e.g. {\"step\": {\"every\": 30}}".into()
                        )
                    }
                    Some(e) => crate::spec::whole(e)
                        .filter(|n| (1..=epochs).contains(n))
                        .ok_or_else(|| format!("step.every: must be an integer from 1 to {epochs}, got {e}"))?,
                };
                Ok(LrSchedule::Step { every: every as u32, gamma: gamma(Some(STEP_GAMMA), "every")? })
            }
            "multistep" => {
                unknown(&["at", "gamma"])?;
                let allowed = format!(
                    "a list of 1 to {MAX_MILESTONES} epoch counts in increasing order, each from 1 to {epochs}"
                );
                let at = match field("at", "at") {
                    None => {
                        return Err(format!(
                            "multistep: needs at, {allowed}, e.g. {{\"multistep\": {{\"at\": [30, 60]}}}}"
                        ))
                    }
                    Some(a) => a
                        .as_array()
                        .filter(|a| (1..=MAX_MILESTONES).contains(&a.len()))
                        .and_then(|a| {
                            a.iter()
                                .map(|m| crate::spec::whole(m).filter(|n| (1..=epochs).contains(n)).map(|n| n as u32))
                                .collect::<Option<Vec<u32>>>()
                        })
                        .filter(|at| at.windows(2).all(|w| w[0] < w[1]))
                        .ok_or_else(|| format!("multistep.at: must be {allowed}, got {a}"))?,
                };
                Ok(LrSchedule::Multistep { at, gamma: gamma(Some(STEP_GAMMA), "at")? })
            }
            "exponential" => {
                unknown(&["gamma"])?;
                Ok(LrSchedule::Exponential { gamma: gamma(None, "gamma")? })
            }
            "cosine" => {
                unknown(&["min_lr"])?;
                let min_lr = match field("min_lr", "min_lr") {
                    None => 0.0,
                    Some(m) => m
                        .as_f64()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| format!("cosine.min_lr: must be a finite number >= 0, got {m}"))?,
                };
                Ok(LrSchedule::Cosine { min_lr })
            }
            "constant" => Err(format!("constant: takes no options, got {v}")),
            other => Err(format!("unknown schedule \"{other}\"; the schedules: {}", kinds())),
        }
    }

    /// The rate of `epoch` (1-based) for a job of `epochs` epochs that starts at `lr` and
    /// warms up linearly over its first `warmup` epochs: PyTorch's
    /// `SequentialLR([LinearLR(start_factor=1/(warmup+1), total_iters=warmup), <this>],
    /// milestones=[warmup])`, stepped once per epoch.
    ///
    /// N.B.: after a warm-up the schedule counts its epochs from the warm-up's end, as
    /// SequentialLR restarts it there; a cosine spans the epochs after the warm-up.
    pub fn lr_at(&self, lr: f64, epoch: u32, epochs: u32, warmup: u32) -> f64 {
        let t = epoch.saturating_sub(1);
        if t < warmup {
            return lr * f64::from(t + 1) / f64::from(warmup + 1);
        }
        let t = t - warmup;
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Step { every, gamma } => lr * gamma.powi((t / every) as i32),
            LrSchedule::Multistep { at, gamma } => lr * gamma.powi(at.iter().filter(|&&m| m <= t).count() as i32),
            LrSchedule::Exponential { gamma } => lr * gamma.powi(t as i32),
            LrSchedule::Cosine { min_lr } => {
                let span = epochs.saturating_sub(warmup).max(1);
                let t = t.min(span);
                min_lr + (lr - min_lr) * (1.0 + (std::f64::consts::PI * f64::from(t) / f64::from(span)).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_tables() {
        assert_eq!(NAMES, OPTIMIZERS.iter().map(|d| d.name).collect::<Vec<_>>());
    }

    #[test]
    fn schedules_read_in_both_forms_and_show_every_option() {
        let full = |v: Value| LrSchedule::parse(&v).unwrap().to_json();
        assert_eq!(full(json!({"step": 30})), json!({"step": {"every": 30, "gamma": 0.1}}));
        assert_eq!(full(json!({"multistep": [30, 60]})), json!({"multistep": {"at": [30, 60], "gamma": 0.1}}));
        assert_eq!(full(json!({"exponential": 0.95})), json!({"exponential": {"gamma": 0.95}}));
        assert_eq!(full(json!("cosine")), json!({"cosine": {"min_lr": 0.0}}));
        assert_eq!(full(json!("constant")), json!("constant"));
        let short = |v: Value| LrSchedule::parse(&v).unwrap().short();
        assert_eq!(short(json!({"step": 30})), "step(30, ×0.1)");
        assert_eq!(short(json!({"multistep": [30, 60]})), "multistep(30+60, ×0.1)");
        assert_eq!(short(json!("cosine")), "cosine(→0)");
        for v in [full(json!({"step": {"every": 2, "gamma": 0.5}})), full(json!({"cosine": {"min_lr": 1e-4}}))] {
            assert_eq!(full(v.clone()), v, "a shown schedule reads back the same");
        }
    }

    #[test]
    fn a_bad_schedule_says_what_is_wrong_and_what_is_allowed() {
        let err = |v: Value| LrSchedule::parse(&v).unwrap_err();
        assert!(err(json!("linear")).contains("\"step\""), "{}", err(json!("linear")));
        assert!(err(json!({"step": {"gamma": 0.1}})).contains("needs every"));
        assert!(err(json!({"step": {"every": 0}})).contains("from 1 to 1000"));
        assert!(err(json!({"multistep": [60, 30]})).contains("increasing"));
        assert!(err(json!({"exponential": {}})).contains("needs gamma"));
        assert!(err(json!({"exponential": -1})).contains("above 0"));
        assert!(err(json!({"cosine": {"eta_min": 0}})).contains("unknown option \"eta_min\""));
        assert!(err(json!({"step": 1, "cosine": {}})).contains("one schedule"));
    }

    #[test]
    fn rates_follow_torchs_closed_forms() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b.abs().max(1e-300);
        let step = LrSchedule::Step { every: 2, gamma: 0.5 };
        let rates: Vec<f64> = (1..=5).map(|e| step.lr_at(1.0, e, 5, 0)).collect();
        assert_eq!(rates, [1.0, 1.0, 0.5, 0.5, 0.25]);
        let multi = LrSchedule::Multistep { at: vec![1, 3], gamma: 0.1 };
        assert!(close(multi.lr_at(1.0, 4, 5, 0), 0.01) && multi.lr_at(1.0, 1, 5, 0) == 1.0);
        // Warm-up: 1/3, 2/3 of the rate, then the schedule from its own epoch 0.
        let cos = LrSchedule::Cosine { min_lr: 0.0 };
        let warm: Vec<f64> = (1..=6).map(|e| cos.lr_at(0.3, e, 6, 2)).collect();
        assert!(close(warm[0], 0.1) && close(warm[1], 0.2) && close(warm[2], 0.3), "{warm:?}");
        assert!(close(warm[4], 0.15) && warm[5] > 0.0, "half-way through the 4 epochs after warm-up: {warm:?}");
    }
}
