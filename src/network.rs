//! A network's plan as plain data, before any tensor exists: its layers, the shape each
//! layer gives, the parameters they need, and the memory a job of it needs to train.
//!
//! Spec validation, the API's admission limits, the worker's group sizes and checkpoints
//! read it; the engine (`train::model`) makes tensors from it. No tensor is made here, so a
//! request handler may plan a network: a torch operation on an async runtime thread would
//! start an OpenMP team there, and libgomp throttles every team's spin waits once it manages
//! more threads than there are cores (it made training 3× slower).

use crate::dataset::Dataset;
use crate::spec::{Activation, ModelKind, Spec};

/// One trainable tensor of a member's model, by name and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<i64>,
    /// Inputs per output: the initialisation bound is 1/sqrt(fan_in).
    pub fan_in: i64,
}

impl ParamSpec {
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// One layer; `weight` indexes the architecture's parameters (the bias is the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Stride 1, no padding, with bias.
    Conv2d {
        weight: usize,
        cin: i64,
        cout: i64,
        k: i64,
    },
    /// 2×2 max pooling, stride 2.
    MaxPool2,
    /// [B, C, H, W] → [B, C·H·W].
    Flatten,
    Linear {
        weight: usize,
        inp: i64,
        out: i64,
    },
    Relu,
}

/// What one image is between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Channels, height, width.
    Image { c: i64, h: i64, w: i64 },
    /// Features.
    Flat(i64),
}

impl Shape {
    /// Values per image.
    pub fn numel(&self) -> i64 {
        match *self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(f) => f,
        }
    }
}

/// A model as layers and the parameters they use, before any tensor exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// One input image.
    pub input: Shape,
    pub layers: Vec<Layer>,
    /// What each layer gives, one per layer.
    pub shapes: Vec<Shape>,
    pub params: Vec<ParamSpec>,
    /// Logits per image: the dataset's classes.
    classes: i64,
}

impl Architecture {
    /// The spec's model on its dataset's images: `linear`, `mlp` (with its hidden widths)
    /// or the tutorial's `cnn`.
    pub fn of(spec: &Spec) -> Architecture {
        Self::for_data(spec, spec.data())
    }

    fn for_data(spec: &Spec, data: &Dataset) -> Architecture {
        let input = Shape::Image { c: data.channels, h: data.height, w: data.width };
        let mut a = Architecture {
            input,
            layers: Vec::new(),
            shapes: Vec::new(),
            params: Vec::new(),
            classes: data.num_classes(),
        };
        let relu = spec.activation == Activation::Relu;
        match spec.model {
            ModelKind::Linear => {
                a.push(Layer::Flatten);
                a.linear("fc", a.classes);
            }
            ModelKind::Mlp => {
                a.push(Layer::Flatten);
                a.dense(&spec.hidden, relu);
            }
            ModelKind::Cnn => {
                a.conv("conv1", 6, 5);
                a.act(relu);
                a.push(Layer::MaxPool2);
                a.conv("conv2", 16, 5);
                a.act(relu);
                a.push(Layer::MaxPool2);
                a.push(Layer::Flatten);
                a.dense(&[120, 84], relu);
            }
        }
        a
    }

    /// What the last layer gives (the input before the first).
    pub fn output(&self) -> Shape {
        self.shapes.last().copied().unwrap_or(self.input)
    }

    /// Appends `layer` and the shape it gives.
    fn push(&mut self, layer: Layer) {
        let shape = match (layer, self.output()) {
            (Layer::Conv2d { cout, k, .. }, Shape::Image { h, w, .. }) => {
                Shape::Image { c: cout, h: h - k + 1, w: w - k + 1 }
            }
            (Layer::MaxPool2, Shape::Image { c, h, w }) => Shape::Image { c, h: h / 2, w: w / 2 },
            (Layer::Flatten, s) => Shape::Flat(s.numel()),
            (Layer::Linear { out, .. }, Shape::Flat(_)) => Shape::Flat(out),
            (Layer::Relu, s) => s,
            (layer, s) => panic!("layer {layer:?} does not fit its input {s:?}"),
        };
        self.layers.push(layer);
        self.shapes.push(shape);
    }

    fn act(&mut self, relu: bool) {
        if relu {
            self.push(Layer::Relu);
        }
    }

    /// Linear layers through `hidden` to the classes, with the activation between them.
    fn dense(&mut self, hidden: &[i64], relu: bool) {
        let mut widths = hidden.to_vec();
        widths.push(self.classes);
        for (i, &w) in widths.iter().enumerate() {
            if i > 0 {
                self.act(relu);
            }
            self.linear(&format!("fc{}", i + 1), w);
        }
    }

    fn linear(&mut self, name: &str, out: i64) {
        let inp = self.output().numel();
        let weight = self.params.len();
        self.params.push(ParamSpec { name: format!("{name}.weight"), shape: vec![out, inp], fan_in: inp });
        self.params.push(ParamSpec { name: format!("{name}.bias"), shape: vec![out], fan_in: inp });
        self.push(Layer::Linear { weight, inp, out });
    }

    fn conv(&mut self, name: &str, cout: i64, k: i64) {
        let Shape::Image { c: cin, .. } = self.output() else { panic!("a convolution after a flatten") };
        let weight = self.params.len();
        let fan_in = cin * k * k;
        self.params.push(ParamSpec { name: format!("{name}.weight"), shape: vec![cout, cin, k, k], fan_in });
        self.params.push(ParamSpec { name: format!("{name}.bias"), shape: vec![cout], fan_in });
        self.push(Layer::Conv2d { weight, cin, cout, k });
    }

    /// Trainable parameters of one member.
    pub fn numel(&self) -> i64 {
        self.params.iter().map(ParamSpec::numel).sum()
    }

    /// The job's memory at `batch` images per step, on any device.
    pub fn estimate(&self, batch: i64) -> Estimate {
        // Values per image after each layer; evaluation needs only the widest two at once.
        let sizes = std::iter::once(self.input).chain(self.shapes.iter().copied()).map(|s| s.numel());
        let (total, widest) = sizes.fold((0i64, 0i64), |(t, w), n| (t.saturating_add(n), w.max(n)));
        let parameters = self.numel();
        let train = total.saturating_mul(batch).saturating_mul(2 * 4);
        let eval = widest.saturating_mul(2 * 1000 * 4);
        Estimate { parameters, state_bytes: parameters.saturating_mul(3 * 4), activation_bytes: train.max(eval) }
    }
}

/// What one job needs to train, estimated from its shapes alone (no tensor is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub parameters: i64,
    /// Weights, gradients and momentum, 4 bytes each.
    pub state_bytes: i64,
    /// The larger of a training step's activations (kept for the backward pass, and their
    /// gradients) at the spec's batch size and an evaluation pass's at 1,000 images.
    pub activation_bytes: i64,
}

impl Estimate {
    pub fn bytes(&self) -> i64 {
        self.state_bytes.saturating_add(self.activation_bytes)
    }
}

/// Trainable parameters of the spec's model, counted from its shapes alone.
pub fn parameter_count(spec: &Spec) -> i64 {
    Architecture::of(spec).numel()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tutorial_cnn_gives_the_shapes_its_layers_are_written_for() {
        let cnn = Architecture::of(&Spec::parse(&serde_json::json!({"model": "cnn"})).unwrap());
        let images: Vec<Shape> = cnn.shapes.iter().copied().filter(|s| matches!(s, Shape::Image { .. })).collect();
        assert_eq!(images.first(), Some(&Shape::Image { c: 6, h: 28, w: 28 }));
        assert_eq!(images.last(), Some(&Shape::Image { c: 16, h: 5, w: 5 }));
        assert!(cnn.layers.contains(&Layer::Linear { weight: 4, inp: 16 * 5 * 5, out: 120 }));
        assert_eq!(cnn.output(), Shape::Flat(10));
        assert_eq!(cnn.layers.len(), cnn.shapes.len());
    }
}
