//! The assignment's three networks, with every weight living in one flat buffer.
//!
//! N.B.: each parameter is a leaf tensor whose data is a view into `ParamSet::flat` (and,
//! once `Sgd` binds them, whose gradient is a view into one flat gradient buffer). The
//! optimiser then updates all weights with a handful of operations instead of a handful per
//! layer — at batch 4 dispatch, not arithmetic, costs the time.

use super::rng::EpochRng;
use crate::spec::{Activation, ModelKind, Spec};
use tch::{Device, Kind, Tensor};

/// One named parameter inside the flat buffer.
pub struct Param {
    pub name: String,
    pub shape: Vec<i64>,
    pub offset: i64,
    pub numel: i64,
    pub tensor: Tensor,
}

/// All trainable weights of a model.
pub struct ParamSet {
    pub flat: Tensor,
    pub params: Vec<Param>,
}

impl ParamSet {
    pub fn numel(&self) -> i64 {
        self.params.iter().map(|p| p.numel).sum()
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.params.iter().find(|p| p.name == name).map(|p| &p.tensor)
    }

    /// The slice of a flat buffer (params, gradients or momentum) that belongs to `p`.
    pub fn view_of(flat: &Tensor, p: &Param) -> Tensor {
        flat.narrow(0, p.offset, p.numel).view(p.shape.as_slice())
    }
}

/// Collects layer shapes, then allocates and initialises the flat buffer once.
struct Builder {
    specs: Vec<(String, Vec<i64>, i64)>,
}

impl Builder {
    fn new() -> Self {
        Builder { specs: Vec::new() }
    }

    fn linear(&mut self, name: &str, inp: i64, out: i64) -> usize {
        self.specs.push((format!("{name}.weight"), vec![out, inp], inp));
        self.specs.push((format!("{name}.bias"), vec![out], inp));
        self.specs.len() - 2
    }

    fn conv(&mut self, name: &str, inp: i64, out: i64, k: i64) -> usize {
        self.specs.push((format!("{name}.weight"), vec![out, inp, k, k], inp * k * k));
        self.specs.push((format!("{name}.bias"), vec![out], inp * k * k));
        self.specs.len() - 2
    }

    /// PyTorch's default init for Linear and Conv2d: weights and biases uniform in
    /// ±1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)), drawn from our own RNG stream.
    fn build(self, rng: &mut EpochRng, device: Device) -> ParamSet {
        let mut values: Vec<f32> = Vec::new();
        let mut params = Vec::new();
        for (name, shape, fan_in) in self.specs {
            let numel: i64 = shape.iter().product();
            let bound = 1.0 / (fan_in as f32).sqrt();
            let offset = values.len() as i64;
            values.extend((0..numel).map(|_| (rng.uniform() * 2.0 - 1.0) * bound));
            params.push(Param { name, shape, offset, numel, tensor: Tensor::new() });
        }
        let flat = Tensor::from_slice(&values).to_device(device);
        for p in &mut params {
            let mut t = Tensor::zeros(p.shape.as_slice(), (Kind::Float, device)).set_requires_grad(true);
            t.set_data(&ParamSet::view_of(&flat, p));
            p.tensor = t;
        }
        ParamSet { flat, params }
    }
}

fn linear(xs: &Tensor, ps: &ParamSet, at: usize) -> Tensor {
    xs.linear(&ps.params[at].tensor, Some(&ps.params[at + 1].tensor))
}

fn conv(xs: &Tensor, ps: &ParamSet, at: usize) -> Tensor {
    xs.conv2d(&ps.params[at].tensor, Some(&ps.params[at + 1].tensor), [1, 1], [0, 0], [1, 1], 1)
}

/// The spec's layers and parameter shapes, before any tensor exists.
fn plan(spec: &Spec) -> (Layers, Builder) {
    let mut b = Builder::new();
    let input = 3 * 32 * 32;
    let layers = match spec.model {
        ModelKind::Linear => Layers::Linear { fc: b.linear("fc", input, 10) },
        ModelKind::Mlp => {
            let mut widths = vec![input];
            widths.extend(&spec.hidden);
            widths.push(10);
            let fcs =
                widths.windows(2).enumerate().map(|(i, w)| b.linear(&format!("fc{}", i + 1), w[0], w[1])).collect();
            Layers::Mlp { fcs }
        }
        ModelKind::Cnn => Layers::Cnn {
            conv1: b.conv("conv1", 3, 6, 5),
            conv2: b.conv("conv2", 6, 16, 5),
            fcs: [b.linear("fc1", 16 * 5 * 5, 120), b.linear("fc2", 120, 84), b.linear("fc3", 84, 10)],
        },
    };
    (layers, b)
}

/// Trainable parameters of the spec's model, counted from its shapes alone.
///
/// N.B.: no tensor is made, so request handlers can call this: a torch operation on an async
/// runtime thread would start an OpenMP team there, and libgomp throttles every team's spin
/// waits once it manages more threads than there are cores (it made training 3× slower).
pub fn parameter_count(spec: &Spec) -> i64 {
    plan(spec).1.specs.iter().map(|(_, shape, _)| shape.iter().product::<i64>()).sum()
}

enum Layers {
    Linear { fc: usize },
    Mlp { fcs: Vec<usize> },
    Cnn { conv1: usize, conv2: usize, fcs: [usize; 3] },
}

/// A network: its layers' places in the parameter set, and whether it uses ReLU.
pub struct Net {
    layers: Layers,
    relu: bool,
    pub params: ParamSet,
}

impl Net {
    /// Builds the spec's model with weights drawn from the spec's seed (stream 0).
    pub fn new(spec: &Spec, device: Device) -> Net {
        let (layers, b) = plan(spec);
        let params = b.build(&mut EpochRng::new(spec.seed, 0), device);
        Net { layers, relu: spec.activation == Activation::Relu, params }
    }

    pub fn parameter_count(&self) -> i64 {
        self.params.numel()
    }

    fn act(&self, xs: Tensor) -> Tensor {
        if self.relu {
            xs.relu()
        } else {
            xs
        }
    }

    fn dense(&self, mut xs: Tensor, fcs: &[usize]) -> Tensor {
        for (i, &at) in fcs.iter().enumerate() {
            xs = linear(&xs, &self.params, at);
            if i + 1 < fcs.len() {
                xs = self.act(xs);
            }
        }
        xs
    }

    /// Logits [B, 10] for normalised images [B, 3, 32, 32]. `_train` is there for layers
    /// that differ between training and evaluation; these three networks have none.
    pub fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        match &self.layers {
            Layers::Linear { fc } => linear(&xs.flatten(1, -1), &self.params, *fc),
            Layers::Mlp { fcs } => self.dense(xs.flatten(1, -1), fcs),
            Layers::Cnn { conv1, conv2, fcs } => {
                let xs = self.act(conv(xs, &self.params, *conv1)).max_pool2d_default(2);
                let xs = self.act(conv(&xs, &self.params, *conv2)).max_pool2d_default(2);
                self.dense(xs.flatten(1, -1), fcs)
            }
        }
    }
}
