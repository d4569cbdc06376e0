//! A network as plain data, before any tensor exists: the layer list a spec writes
//! (`LayerSpec`, its JSON form and its checks), and the plan made from it on a dataset's
//! images (`Architecture`: the layers, the shape each gives, the parameters and running
//! statistics they need, and the memory a job of it needs to train).
//!
//! Spec validation, the API's admission limits, the worker's group sizes and checkpoints
//! read it; the engine (`train::model`) makes tensors from it. No tensor is made here, so a
//! request handler may plan a network: a torch operation on an async runtime thread would
//! start an OpenMP team there, and libgomp throttles every team's spin waits once it manages
//! more threads than there are cores (it made training 3× slower).
//!
//! Every layer follows PyTorch's definition and defaults (`nn.Conv2d`, `nn.MaxPool2d`,
//! `nn.AvgPool2d`, `nn.AdaptiveAvgPool2d(1)`, `nn.BatchNorm1d`/`2d`, `nn.Dropout`,
//! `nn.Flatten`, `nn.Linear`, the activations), so the same list in PyTorch has the same
//! parameters, initialised the same way.

use crate::dataset::Dataset;
use crate::spec::{Activation, ModelKind, Spec};
use serde_json::{json, Map, Value};

// ---------- the list a spec writes ----------

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    Relu,
    /// Negative slope 0.01, PyTorch's default.
    LeakyRelu,
    Tanh,
    Sigmoid,
    /// The exact (erf) form, PyTorch's default.
    Gelu,
}

impl ActKind {
    pub const ALL: [ActKind; 5] = [ActKind::Relu, ActKind::LeakyRelu, ActKind::Tanh, ActKind::Sigmoid, ActKind::Gelu];

    pub fn name(self) -> &'static str {
        match self {
            ActKind::Relu => "relu",
            ActKind::LeakyRelu => "leaky_relu",
            ActKind::Tanh => "tanh",
            ActKind::Sigmoid => "sigmoid",
            ActKind::Gelu => "gelu",
        }
    }
}

/// A convolution's zero padding on every side, or `"same"` (the output keeps the input's
/// size: stride 1 and an odd kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Zeros(i64),
    Same,
}

/// One layer as a spec writes it, its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Conv2d {
        out: i64,
        kernel: i64,
        stride: i64,
        padding: Padding,
    },
    MaxPool2d {
        kernel: i64,
        stride: i64,
    },
    AvgPool2d {
        kernel: i64,
        stride: i64,
    },
    /// The mean of each channel: C×H×W → C×1×1.
    GlobalAvgPool,
    /// 2-d on images, 1-d on features; momentum 0.1, eps 1e-5, running statistics in evaluation.
    BatchNorm,
    /// Zeroes each value with probability p in training (the rest scaled by 1/(1−p)); off in
    /// evaluation.
    Dropout(f64),
    Flatten,
    Linear(i64),
    Act(ActKind),
    /// Layers whose output has their input's shape, added to it.
    Residual(Vec<LayerSpec>),
}

/// One layer kind as `GET /spec` documents it.
pub struct LayerDoc {
    pub name: &'static str,
    /// How it is written, with its options and their defaults.
    pub form: &'static str,
    pub help: &'static str,
}

/// Every layer kind, as a list names them.
pub const LAYER_DOCS: &[LayerDoc] = &[
    LayerDoc {
        name: "conv2d",
        form: r#"{"conv2d": {"out": C, "kernel": K, "stride": 1, "padding": 0}}"#,
        help: "2-d convolution with bias; padding is a number of pixels or \"same\" (stride 1, odd kernel).",
    },
    LayerDoc {
        name: "maxpool2d",
        form: r#"{"maxpool2d": K} or {"maxpool2d": {"kernel": K, "stride": K}}"#,
        help: "Max pooling; the stride defaults to the kernel.",
    },
    LayerDoc {
        name: "avgpool2d",
        form: r#"{"avgpool2d": K} or {"avgpool2d": {"kernel": K, "stride": K}}"#,
        help: "Average pooling; the stride defaults to the kernel.",
    },
    LayerDoc { name: "global_avgpool", form: r#""global_avgpool""#, help: "Each channel's mean: C×H×W to C×1×1." },
    LayerDoc {
        name: "batchnorm",
        form: r#""batchnorm""#,
        help: "Batch normalisation (2-d on images, 1-d on features), momentum 0.1, eps 1e-5; running statistics in evaluation.",
    },
    LayerDoc {
        name: "dropout",
        form: r#""dropout" (p = 0.5) or {"dropout": P}"#,
        help: "Zeroes each value with probability P while training; off in evaluation.",
    },
    LayerDoc { name: "flatten", form: r#""flatten""#, help: "C×H×W to C·H·W features." },
    LayerDoc { name: "linear", form: r#"{"linear": N}"#, help: "Fully connected layer with bias, N outputs." },
    LayerDoc { name: "relu", form: r#""relu""#, help: "max(0, x)." },
    LayerDoc { name: "leaky_relu", form: r#""leaky_relu""#, help: "Leaky ReLU, negative slope 0.01." },
    LayerDoc { name: "tanh", form: r#""tanh""#, help: "Hyperbolic tangent." },
    LayerDoc { name: "sigmoid", form: r#""sigmoid""#, help: "Logistic sigmoid." },
    LayerDoc { name: "gelu", form: r#""gelu""#, help: "GELU (exact)." },
    LayerDoc {
        name: "residual",
        form: r#"{"residual": [layers]}"#,
        help: "Layers whose output has their input's shape, added to their input.",
    },
];

/// Most layers in one list, residual bodies included.
pub const MAX_LAYERS: usize = 64;
/// Most residual blocks inside one another.
pub const MAX_NESTING: usize = 4;
/// Range of a convolution's output channels and a linear layer's outputs.
pub const CHANNELS: (i64, i64) = (1, 4096);
pub const FEATURES: (i64, i64) = (1, 65_536);
/// Range of kernels, strides and paddings.
pub const KERNEL: (i64, i64) = (1, 64);
pub const PADDING: (i64, i64) = (0, 64);

/// One problem in a layer list or its plan: where (`layers[3].conv2d.kernel`) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    pub path: String,
    pub message: String,
}

fn layer_names() -> String {
    LAYER_DOCS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// Reads a layer list (`v` at `path`), its defaults filled in; every problem at once.
pub fn parse_layers(v: &Value, path: &str) -> Result<Vec<LayerSpec>, Vec<LayerError>> {
    let mut p = ListReader { errors: Vec::new(), count: 0 };
    let layers = p.list(v, path, 0);
    if p.count > MAX_LAYERS {
        p.fail(path, format!("holds {} layers (residual bodies included); at most {MAX_LAYERS} are allowed", p.count));
    }
    if p.errors.is_empty() {
        Ok(layers)
    } else {
        Err(p.errors)
    }
}

struct ListReader {
    errors: Vec<LayerError>,
    count: usize,
}

impl ListReader {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(LayerError { path: path.to_string(), message: message.into() });
    }

    fn list(&mut self, v: &Value, path: &str, depth: usize) -> Vec<LayerSpec> {
        let Some(items) = v.as_array() else {
            self.fail(path, format!("must be a list of layers, got {v}"));
            return Vec::new();
        };
        if items.is_empty() {
            self.fail(path, "must hold at least one layer");
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            self.count += 1;
            if let Some(layer) = self.layer(item, &format!("{path}[{i}]"), depth) {
                out.push(layer);
            }
        }
        out
    }

    fn layer(&mut self, v: &Value, path: &str, depth: usize) -> Option<LayerSpec> {
        let (name, options) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) if o.len() == 1 => {
                let (k, v) = o.iter().next().expect("one key");
                (k.as_str(), Some(v).filter(|v| !v.is_null()))
            }
            _ => {
                self.fail(
                    path,
                    format!("a layer is a name (\"relu\") or an object of one key ({{\"linear\": 10}}), got {v}"),
                );
                return None;
            }
        };
        let at = format!("{path}.{name}");
        let simple = |layer: LayerSpec, me: &mut Self| match options {
            None => Some(layer),
            Some(Value::Object(o)) if o.is_empty() => Some(layer),
            Some(o) => {
                me.fail(&at, format!("takes no options, got {o}"));
                None
            }
        };
        if let Some(a) = ActKind::ALL.iter().find(|a| a.name() == name) {
            return simple(LayerSpec::Act(*a), self);
        }
        match name {
            "flatten" => simple(LayerSpec::Flatten, self),
            "batchnorm" => simple(LayerSpec::BatchNorm, self),
            "global_avgpool" => simple(LayerSpec::GlobalAvgPool, self),
            "dropout" => {
                let p = match options {
                    None => Some(0.5),
                    Some(Value::Object(o)) => {
                        self.options(o, &at, &["p"]);
                        o.get("p").map_or(Some(0.5), |p| self.probability(p, &format!("{at}.p")))
                    }
                    Some(p) => self.probability(p, &at),
                };
                p.map(LayerSpec::Dropout)
            }
            "linear" => {
                let out = match options {
                    Some(Value::Object(o)) => {
                        self.options(o, &at, &["out"]);
                        match o.get("out") {
                            Some(n) => self.int(n, &format!("{at}.out"), FEATURES),
                            None => {
                                self.fail(&format!("{at}.out"), "is required: the layer's number of outputs");
                                None
                            }
                        }
                    }
                    Some(n) => self.int(n, &at, FEATURES),
                    None => {
                        self.fail(path, "linear needs its number of outputs: {\"linear\": 10}");
                        None
                    }
                };
                out.map(LayerSpec::Linear)
            }
            "maxpool2d" | "avgpool2d" => {
                let (kernel, stride) = match options {
                    Some(Value::Object(o)) => {
                        self.options(o, &at, &["kernel", "stride"]);
                        let kernel = match o.get("kernel") {
                            Some(k) => self.int(k, &format!("{at}.kernel"), KERNEL),
                            None => {
                                self.fail(&format!("{at}.kernel"), "is required");
                                None
                            }
                        };
                        let stride = o.get("stride").map(|s| self.int(s, &format!("{at}.stride"), KERNEL));
                        (kernel, stride)
                    }
                    Some(k) => (self.int(k, &at, KERNEL), None),
                    None => {
                        self.fail(path, format!("{name} needs its kernel: {{\"{name}\": 2}}"));
                        (None, None)
                    }
                };
                let kernel = kernel?;
                let stride = match stride {
                    None => kernel,
                    Some(s) => s?,
                };
                Some(if name == "maxpool2d" {
                    LayerSpec::MaxPool2d { kernel, stride }
                } else {
                    LayerSpec::AvgPool2d { kernel, stride }
                })
            }
            "conv2d" => {
                let Some(Value::Object(o)) = options else {
                    self.fail(path, "conv2d takes an object: {\"conv2d\": {\"out\": 16, \"kernel\": 3}}");
                    return None;
                };
                self.options(o, &at, &["out", "kernel", "stride", "padding"]);
                let required = |me: &mut Self, key: &str, range| match o.get(key) {
                    Some(v) => me.int(v, &format!("{at}.{key}"), range),
                    None => {
                        me.fail(&format!("{at}.{key}"), "is required");
                        None
                    }
                };
                let out = required(self, "out", CHANNELS);
                let kernel = required(self, "kernel", KERNEL);
                let stride = o.get("stride").map_or(Some(1), |s| self.int(s, &format!("{at}.stride"), KERNEL));
                let padding = match o.get("padding") {
                    None => Some(Padding::Zeros(0)),
                    Some(Value::String(s)) if s == "same" => Some(Padding::Same),
                    Some(p) if p.is_number() => self.int(p, &format!("{at}.padding"), PADDING).map(Padding::Zeros),
                    Some(p) => {
                        self.fail(&format!("{at}.padding"), format!("must be a number of pixels or \"same\", got {p}"));
                        None
                    }
                };
                Some(LayerSpec::Conv2d { out: out?, kernel: kernel?, stride: stride?, padding: padding? })
            }
            "residual" => {
                if depth + 1 > MAX_NESTING {
                    self.fail(&at, format!("residual blocks nest at most {MAX_NESTING} deep"));
                    return None;
                }
                let Some(body) = options else {
                    self.fail(path, "residual needs its layers: {\"residual\": [...]}");
                    return None;
                };
                let before = self.errors.len();
                let body = self.list(body, &at, depth + 1);
                (self.errors.len() == before).then_some(LayerSpec::Residual(body))
            }
            _ => {
                self.fail(path, format!("unknown layer {:?}; the layers are {}", name, layer_names()));
                None
            }
        }
    }

    /// Checks that `o` has only `known` keys, naming each other one.
    fn options(&mut self, o: &Map<String, Value>, at: &str, known: &[&str]) {
        for k in o.keys().filter(|k| !known.contains(&k.as_str())) {
            self.fail(&format!("{at}.{k}"), format!("unknown option; the options are {}", known.join(", ")));
        }
    }

    fn int(&mut self, v: &Value, path: &str, (min, max): (i64, i64)) -> Option<i64> {
        match v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64)) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.fail(path, format!("must be an integer from {min} to {max}, got {v}"));
                None
            }
        }
    }

    fn probability(&mut self, v: &Value, path: &str) -> Option<f64> {
        match v.as_f64() {
            Some(p) if (0.0..1.0).contains(&p) => Some(p),
            _ => {
                self.fail(path, format!("must be a probability from 0 to below 1, got {v}"));
                None
            }
        }
    }
}

impl LayerSpec {
    /// The layer as a returned spec shows it: every option written out.
    pub fn to_json(&self) -> Value {
        let pool = |kernel: i64, stride: i64| {
            if kernel == stride {
                json!(kernel)
            } else {
                json!({"kernel": kernel, "stride": stride})
            }
        };
        match self {
            LayerSpec::Conv2d { out, kernel, stride, padding } => {
                let padding = match padding {
                    Padding::Zeros(p) => json!(p),
                    Padding::Same => json!("same"),
                };
                json!({"conv2d": {"out": out, "kernel": kernel, "stride": stride, "padding": padding}})
            }
            LayerSpec::MaxPool2d { kernel, stride } => json!({ "maxpool2d": pool(*kernel, *stride) }),
            LayerSpec::AvgPool2d { kernel, stride } => json!({ "avgpool2d": pool(*kernel, *stride) }),
            LayerSpec::GlobalAvgPool => json!("global_avgpool"),
            LayerSpec::BatchNorm => json!("batchnorm"),
            LayerSpec::Dropout(p) => json!({ "dropout": p }),
            LayerSpec::Flatten => json!("flatten"),
            LayerSpec::Linear(n) => json!({ "linear": n }),
            LayerSpec::Act(a) => json!(a.name()),
            LayerSpec::Residual(body) => json!({ "residual": layers_json(body) }),
        }
    }
}

/// A layer list as a returned spec shows it.
pub fn layers_json(layers: &[LayerSpec]) -> Value {
    Value::Array(layers.iter().map(LayerSpec::to_json).collect())
}

/// A list in a few characters, as lists and figures name a network of one's own:
/// `conv16-bn-relu-pool-conv32-bn-relu-res(conv32-bn-relu)-gap-drop0.2-fc10` (flatten left
/// unsaid; a convolution's kernel and stride, a pool's kernel, when not 3, 1 and 2).
pub fn summary(layers: &[LayerSpec]) -> String {
    let one = |l: &LayerSpec| -> String {
        match l {
            LayerSpec::Conv2d { out, kernel, stride, .. } => {
                let mut s = format!("conv{out}");
                if *kernel != 3 {
                    s += &format!("k{kernel}");
                }
                if *stride != 1 {
                    s += &format!("s{stride}");
                }
                s
            }
            LayerSpec::MaxPool2d { kernel: 2, stride: 2 } => "pool".into(),
            LayerSpec::MaxPool2d { kernel, .. } => format!("pool{kernel}"),
            LayerSpec::AvgPool2d { kernel: 2, stride: 2 } => "avgpool".into(),
            LayerSpec::AvgPool2d { kernel, .. } => format!("avgpool{kernel}"),
            LayerSpec::GlobalAvgPool => "gap".into(),
            LayerSpec::BatchNorm => "bn".into(),
            LayerSpec::Dropout(p) => format!("drop{p}"),
            LayerSpec::Flatten => String::new(),
            LayerSpec::Linear(n) => format!("fc{n}"),
            LayerSpec::Act(ActKind::LeakyRelu) => "lrelu".into(),
            LayerSpec::Act(a) => a.name().into(),
            LayerSpec::Residual(body) => format!("res({})", summary(body)),
        }
    };
    layers.iter().map(one).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
}

/// A named model's layers: `linear` (one linear layer), `mlp` (linear layers through
/// `hidden`, the activation between them) and the tutorial's `cnn`.
pub fn named_layers(model: ModelKind, hidden: &[i64], activation: Activation, classes: i64) -> Vec<LayerSpec> {
    let act = |out: &mut Vec<LayerSpec>| {
        if activation == Activation::Relu {
            out.push(LayerSpec::Act(ActKind::Relu));
        }
    };
    let dense = |out: &mut Vec<LayerSpec>, hidden: &[i64]| {
        for &w in hidden {
            out.push(LayerSpec::Linear(w));
            act(out);
        }
        out.push(LayerSpec::Linear(classes));
    };
    let mut out = Vec::new();
    match model {
        ModelKind::Linear => out.extend([LayerSpec::Flatten, LayerSpec::Linear(classes)]),
        ModelKind::Mlp => {
            out.push(LayerSpec::Flatten);
            dense(&mut out, hidden);
        }
        ModelKind::Cnn => {
            for c in [6, 16] {
                out.push(LayerSpec::Conv2d { out: c, kernel: 5, stride: 1, padding: Padding::Zeros(0) });
                act(&mut out);
                out.push(LayerSpec::MaxPool2d { kernel: 2, stride: 2 });
            }
            out.push(LayerSpec::Flatten);
            dense(&mut out, &[120, 84]);
        }
        ModelKind::Custom => {}
    }
    out
}

// ---------- the plan ----------

/// How a tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in ±1/sqrt(fan_in): PyTorch's default for Linear and Conv2d weights
    /// (kaiming_uniform with a = sqrt(5)) and biases.
    Uniform {
        fan_in: i64,
    },
    Zeros,
    Ones,
}

/// One tensor of a member's model (a parameter, or a running statistic), by name and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// One planned layer; `weight` indexes the architecture's parameters (the bias is the next
/// one), `stats` its running statistics (mean, then variance).
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Conv2d {
        weight: usize,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        pad: i64,
        /// Multiply-adds per image: output values × input channels × kernel area.
        macs: i64,
    },
    MaxPool {
        k: i64,
        stride: i64,
    },
    AvgPool {
        k: i64,
        stride: i64,
    },
    GlobalAvgPool,
    BatchNorm {
        weight: usize,
        stats: usize,
        channels: i64,
    },
    /// `slot` numbers the network's dropouts: each draws its masks from its own keys.
    Dropout {
        p: f64,
        slot: usize,
    },
    /// [B, C, H, W] → [B, C·H·W].
    Flatten,
    Linear {
        weight: usize,
        inp: i64,
        out: i64,
    },
    Act(ActKind),
    Residual {
        layers: Vec<Layer>,
        shapes: Vec<Shape>,
    },
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
            Shape::Image { c, h, w } => c.saturating_mul(h).saturating_mul(w),
            Shape::Flat(f) => f,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Image { c, h, w } => write!(f, "{c}×{h}×{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// How parameters are named: the tutorial's `conv1`, `fc1`, … (`fc` for a single linear
/// layer) for the named models, or by position as PyTorch's `nn.Sequential` does (`0`,
/// `3`, `7.0` inside a residual block) for a list of one's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Tutorial,
    Position,
}

/// A model as layers and the tensors they use, before any tensor exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// One input image.
    pub input: Shape,
    pub layers: Vec<Layer>,
    /// What each layer gives, one per layer.
    pub shapes: Vec<Shape>,
    /// Trainable parameters, in the order they are initialised and laid out.
    pub params: Vec<ParamSpec>,
    /// Running statistics (batch normalisation's), updated in training, not trained.
    pub stats: Vec<ParamSpec>,
    /// How many dropout layers.
    pub dropouts: usize,
}

impl Naming {
    /// How `model`'s parameters are named.
    pub fn for_model(model: ModelKind) -> Naming {
        if model == ModelKind::Custom {
            Naming::Position
        } else {
            Naming::Tutorial
        }
    }
}

/// The fewest images a training step sees: `batch`, or the epoch's last batch of `images`
/// training images (or of `limit`'s, when fewer) when that is smaller.
pub fn smallest_batch(batch: u32, limit: Option<u32>, images: u64) -> i64 {
    let n = limit.map_or(images, |l| u64::from(l).min(images));
    let batch = u64::from(batch.max(1));
    let last = n % batch;
    (if last == 0 { batch } else { last }).min(batch) as i64
}

impl Architecture {
    /// The spec's network on its dataset's images (parse checked that it plans).
    pub fn of(spec: &Spec) -> Architecture {
        Self::on_images(spec, spec.data().train_images).expect("a parsed spec's layers plan")
    }

    /// The spec's network when its training split holds `images` images (a copy smaller than
    /// the dataset's nominal size can leave a batch norm a last batch of one).
    pub fn on_images(spec: &Spec, images: u64) -> Result<Architecture, Vec<LayerError>> {
        let smallest = smallest_batch(spec.batch_size, spec.train_limit, images);
        plan(&spec.layers, spec.data(), Naming::for_model(spec.model), smallest)
    }

    /// What the last layer gives (the input before the first).
    pub fn output(&self) -> Shape {
        self.shapes.last().copied().unwrap_or(self.input)
    }

    /// Trainable parameters of one member.
    pub fn numel(&self) -> i64 {
        self.params.iter().map(ParamSpec::numel).sum()
    }

    /// Whether it has a convolution (a 4-dimensional weight).
    pub fn convolutional(&self) -> bool {
        self.params.iter().any(|p| p.shape.len() == 4)
    }

    /// Multiply-adds of one image's forward pass through the convolutions and linear
    /// layers, and the layers in all (those inside residual blocks included).
    pub fn work_per_image(&self) -> (i64, i64) {
        fn walk(layers: &[Layer], macs: &mut i64, count: &mut i64) {
            for layer in layers {
                *count += 1;
                match layer {
                    Layer::Conv2d { macs: m, .. } => *macs = macs.saturating_add(*m),
                    Layer::Linear { inp, out, .. } => *macs = macs.saturating_add(inp.saturating_mul(*out)),
                    Layer::Residual { layers, .. } => walk(layers, macs, count),
                    _ => {}
                }
            }
        }
        let (mut macs, mut count) = (0, 0);
        walk(&self.layers, &mut macs, &mut count);
        (macs, count)
    }

    /// Running statistics of one member.
    pub fn stats_numel(&self) -> i64 {
        self.stats.iter().map(ParamSpec::numel).sum()
    }

    /// The job's memory at `batch` images per step, on any device, with an optimiser that
    /// keeps `per_parameter` values per weight (the weight and its gradient included:
    /// `crate::optimizer::values_per_parameter`).
    pub fn estimate(&self, batch: i64, per_parameter: i64) -> Estimate {
        // Values per image after each layer; evaluation needs only the widest two at once.
        fn sizes(layers: &[Layer], shapes: &[Shape], out: &mut Vec<i64>) {
            for (layer, shape) in layers.iter().zip(shapes) {
                if let Layer::Residual { layers, shapes } = layer {
                    sizes(layers, shapes, out);
                }
                out.push(shape.numel());
            }
        }
        let mut all = vec![self.input.numel()];
        sizes(&self.layers, &self.shapes, &mut all);
        let (total, widest) = all.iter().fold((0i64, 0i64), |(t, w), &n| (t.saturating_add(n), w.max(n)));
        let parameters = self.numel();
        let train = total.saturating_mul(batch).saturating_mul(2 * 4);
        let eval = widest.saturating_mul(2 * 1000 * 4);
        let state = parameters
            .saturating_mul(per_parameter.saturating_mul(4))
            .saturating_add(self.stats_numel().saturating_mul(4));
        Estimate { parameters, state_bytes: state, activation_bytes: train.max(eval) }
    }
}

/// Plans `layers` on `data`'s images: each layer's shape, parameters and statistics, or
/// what does not fit, each naming its layer (`layers[3].conv2d.kernel: 7 is larger than its
/// 5×5 input`). `smallest_batch` is the fewest images a training step sees (batch
/// normalisation needs more than one value per channel).
///
/// N.B.: shapes flow from the first layer on; past a layer that does not fit, the shapes
/// are unknown, so the plan reports the first such layer (every option was checked before).
pub fn plan(
    layers: &[LayerSpec],
    data: &Dataset,
    naming: Naming,
    smallest_batch: i64,
) -> Result<Architecture, Vec<LayerError>> {
    let input = Shape::Image { c: data.channels, h: data.height, w: data.width };
    let mut p = Planner {
        arch: Architecture {
            input,
            layers: Vec::new(),
            shapes: Vec::new(),
            params: Vec::new(),
            stats: Vec::new(),
            dropouts: 0,
        },
        naming,
        convs: 0,
        linears: 0,
        single_linear: layers.iter().filter(|l| matches!(l, LayerSpec::Linear(_))).count() == 1
            && !layers.iter().any(|l| matches!(l, LayerSpec::Conv2d { .. } | LayerSpec::Residual(_))),
        smallest_batch,
    };
    let (planned, shapes, out) = p.block(layers, input, "layers", "")?;
    let classes = data.num_classes();
    if out != Shape::Flat(classes) {
        let last = format!("layers[{}]", layers.len().saturating_sub(1));
        let message = match out {
            Shape::Flat(n) => format!("the last layer gives {n} outputs; {} has {classes} classes", data.name),
            image => format!(
                "the last layer gives {image} values per image; end with \"flatten\" and {{\"linear\": {classes}}} ({} has {classes} classes)",
                data.name
            ),
        };
        return Err(vec![LayerError { path: last, message }]);
    }
    p.arch.layers = planned;
    p.arch.shapes = shapes;
    Ok(p.arch)
}

struct Planner {
    arch: Architecture,
    naming: Naming,
    convs: usize,
    linears: usize,
    single_linear: bool,
    smallest_batch: i64,
}

type Planned = (Vec<Layer>, Vec<Shape>, Shape);

impl Planner {
    fn block(
        &mut self,
        layers: &[LayerSpec],
        input: Shape,
        path: &str,
        prefix: &str,
    ) -> Result<Planned, Vec<LayerError>> {
        let (mut planned, mut shapes, mut shape) = (Vec::new(), Vec::new(), input);
        for (i, spec) in layers.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let name = format!("{prefix}{i}");
            let (layer, out) = self.layer(spec, shape, &at, &name)?;
            planned.push(layer);
            shapes.push(out);
            shape = out;
        }
        Ok((planned, shapes, shape))
    }

    fn err<T>(path: String, message: String) -> Result<T, Vec<LayerError>> {
        Err(vec![LayerError { path, message }])
    }

    /// The parameter name prefix of a convolution or linear layer at position `name`.
    fn prefix(&mut self, conv: bool, name: &str) -> String {
        match (self.naming, conv) {
            (Naming::Position, _) => name.to_string(),
            (Naming::Tutorial, true) => {
                self.convs += 1;
                format!("conv{}", self.convs)
            }
            (Naming::Tutorial, false) if self.single_linear => "fc".to_string(),
            (Naming::Tutorial, false) => {
                self.linears += 1;
                format!("fc{}", self.linears)
            }
        }
    }

    fn param(&mut self, name: String, shape: Vec<i64>, init: Init) -> usize {
        self.arch.params.push(ParamSpec { name, shape, init });
        self.arch.params.len() - 1
    }

    fn layer(
        &mut self,
        spec: &LayerSpec,
        input: Shape,
        at: &str,
        name: &str,
    ) -> Result<(Layer, Shape), Vec<LayerError>> {
        let image = |kind: &str| match input {
            Shape::Image { c, h, w } => Ok((c, h, w)),
            Shape::Flat(n) => Self::err(
                at.to_string(),
                format!("{kind} needs an image input (channels×height×width), but its input is {n} features"),
            ),
        };
        Ok(match *spec {
            LayerSpec::Conv2d { out, kernel, stride, padding } => {
                let (c, h, w) = image("conv2d")?;
                let pad = match padding {
                    Padding::Zeros(p) => p,
                    Padding::Same if stride != 1 => {
                        return Self::err(
                            format!("{at}.conv2d.padding"),
                            format!("\"same\" needs stride 1 (PyTorch's rule), got stride {stride}"),
                        )
                    }
                    Padding::Same if kernel % 2 == 0 => {
                        return Self::err(
                            format!("{at}.conv2d.padding"),
                            format!("\"same\" needs an odd kernel here, got {kernel}"),
                        )
                    }
                    Padding::Same => (kernel - 1) / 2,
                };
                let (ph, pw) = (h + 2 * pad, w + 2 * pad);
                if kernel > ph || kernel > pw {
                    let padded = if pad > 0 { format!(" (padded: {ph}×{pw})") } else { String::new() };
                    return Self::err(
                        format!("{at}.conv2d.kernel"),
                        format!("{kernel} is larger than its {h}×{w} input{padded}"),
                    );
                }
                let prefix = self.prefix(true, name);
                let fan_in = c * kernel * kernel;
                let weight =
                    self.param(format!("{prefix}.weight"), vec![out, c, kernel, kernel], Init::Uniform { fan_in });
                self.param(format!("{prefix}.bias"), vec![out], Init::Uniform { fan_in });
                let shape = Shape::Image { c: out, h: (ph - kernel) / stride + 1, w: (pw - kernel) / stride + 1 };
                let macs = shape.numel().saturating_mul(c).saturating_mul(kernel.saturating_mul(kernel));
                (Layer::Conv2d { weight, cin: c, cout: out, k: kernel, stride, pad, macs }, shape)
            }
            LayerSpec::MaxPool2d { kernel, stride } | LayerSpec::AvgPool2d { kernel, stride } => {
                let max = matches!(spec, LayerSpec::MaxPool2d { .. });
                let kind = if max { "maxpool2d" } else { "avgpool2d" };
                let (c, h, w) = image(kind)?;
                if kernel > h || kernel > w {
                    return Self::err(
                        format!("{at}.{kind}"),
                        format!("kernel {kernel} is larger than its {h}×{w} input"),
                    );
                }
                let shape = Shape::Image { c, h: (h - kernel) / stride + 1, w: (w - kernel) / stride + 1 };
                let layer =
                    if max { Layer::MaxPool { k: kernel, stride } } else { Layer::AvgPool { k: kernel, stride } };
                (layer, shape)
            }
            LayerSpec::GlobalAvgPool => {
                let (c, _, _) = image("global_avgpool")?;
                (Layer::GlobalAvgPool, Shape::Image { c, h: 1, w: 1 })
            }
            LayerSpec::BatchNorm => {
                let (channels, per_channel) = match input {
                    Shape::Image { c, h, w } => (c, h * w),
                    Shape::Flat(n) => (n, 1),
                };
                if self.smallest_batch.saturating_mul(per_channel) <= 1 {
                    return Self::err(
                        at.to_string(),
                        format!(
                            "batchnorm needs more than one value per channel to train, but a step of {} image(s) gives one here \
                             (its input is {input}); use a larger batch size (or train_limit that leaves no batch of one)",
                            self.smallest_batch
                        ),
                    );
                }
                let weight = self.param(format!("{name}.weight"), vec![channels], Init::Ones);
                self.param(format!("{name}.bias"), vec![channels], Init::Zeros);
                self.arch.stats.push(ParamSpec {
                    name: format!("{name}.running_mean"),
                    shape: vec![channels],
                    init: Init::Zeros,
                });
                self.arch.stats.push(ParamSpec {
                    name: format!("{name}.running_var"),
                    shape: vec![channels],
                    init: Init::Ones,
                });
                (Layer::BatchNorm { weight, stats: self.arch.stats.len() - 2, channels }, input)
            }
            LayerSpec::Dropout(p) => {
                self.arch.dropouts += 1;
                (Layer::Dropout { p, slot: self.arch.dropouts - 1 }, input)
            }
            LayerSpec::Flatten => (Layer::Flatten, Shape::Flat(input.numel())),
            LayerSpec::Linear(out) => {
                let Shape::Flat(inp) = input else {
                    return Self::err(
                        at.to_string(),
                        format!(
                            "linear needs features, but its input is an image ({input}); put \"flatten\" before it"
                        ),
                    );
                };
                let prefix = self.prefix(false, name);
                let weight = self.param(format!("{prefix}.weight"), vec![out, inp], Init::Uniform { fan_in: inp });
                self.param(format!("{prefix}.bias"), vec![out], Init::Uniform { fan_in: inp });
                (Layer::Linear { weight, inp, out }, Shape::Flat(out))
            }
            LayerSpec::Act(a) => (Layer::Act(a), input),
            LayerSpec::Residual(ref body) => {
                let (layers, shapes, out) = self.block(body, input, &format!("{at}.residual"), &format!("{name}."))?;
                if out != input {
                    return Self::err(
                        format!("{at}.residual"),
                        format!("its output is {out} but its input is {input}; a residual block must keep the shape"),
                    );
                }
                (Layer::Residual { layers, shapes }, input)
            }
        })
    }
}

/// What one job needs to train, estimated from its shapes alone (no tensor is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub parameters: i64,
    /// Weights, gradients, the optimiser's state and a step's temporaries, 4 bytes each, and
    /// the running statistics.
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
    use crate::dataset::CIFAR10;

    fn planned(v: Value) -> Result<Architecture, Vec<LayerError>> {
        let layers = parse_layers(&v, "layers").expect("parses");
        plan(&layers, &CIFAR10, Naming::Position, 4)
    }

    #[test]
    fn the_tutorial_cnn_gives_the_shapes_its_layers_are_written_for() {
        let cnn = Architecture::of(&Spec::parse(&json!({"model": "cnn"})).unwrap());
        let images: Vec<Shape> = cnn.shapes.iter().copied().filter(|s| matches!(s, Shape::Image { .. })).collect();
        assert_eq!(images.first(), Some(&Shape::Image { c: 6, h: 28, w: 28 }));
        assert_eq!(images.last(), Some(&Shape::Image { c: 16, h: 5, w: 5 }));
        assert!(cnn.layers.contains(&Layer::Linear { weight: 4, inp: 16 * 5 * 5, out: 120 }));
        assert_eq!(cnn.output(), Shape::Flat(10));
        assert_eq!(cnn.layers.len(), cnn.shapes.len());
        let names: Vec<&str> = cnn.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names[..4], ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]);
        assert_eq!(
            names[4..].iter().step_by(2).copied().collect::<Vec<_>>(),
            ["fc1.weight", "fc2.weight", "fc3.weight"]
        );
    }

    #[test]
    fn the_tutorial_cnns_work_per_image_counts_its_multiply_adds_and_layers() {
        let cnn = Architecture::of(&Spec::parse(&json!({"model": "cnn"})).unwrap());
        // conv1 6·28·28·3·25, conv2 16·10·10·6·25, then 400·120 + 120·84 + 84·10.
        let macs = 6 * 28 * 28 * 3 * 25 + 16 * 10 * 10 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10;
        assert_eq!(cnn.work_per_image(), (macs, cnn.layers.len() as i64));
        let a = planned(json!([{"conv2d": {"out": 4, "kernel": 3, "padding": 1}},
            {"residual": [{"conv2d": {"out": 4, "kernel": 3, "padding": 1}}, "relu"]}, "flatten", {"linear": 10}]))
        .unwrap();
        // 3→4 and 4→4 channels at 3×3 on 32×32, then 4096→10; six layers, two inside the block.
        assert_eq!(a.work_per_image(), (4 * 32 * 32 * 3 * 9 + 4 * 32 * 32 * 4 * 9 + 4096 * 10, 6));
    }

    #[test]
    fn the_issues_lists_have_pytorchs_parameter_counts() {
        let a = planned(json!([
          {"conv2d": {"out": 16, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool2d": 2},
          {"conv2d": {"out": 32, "kernel": 3, "padding": 1}}, "batchnorm", "relu",
          {"residual": [{"conv2d": {"out": 32, "kernel": 3, "padding": 1}}, "batchnorm", "relu"]},
          "global_avgpool", "flatten", {"dropout": 0.2}, {"linear": 10}
        ]))
        .unwrap();
        assert_eq!(a.numel(), 14_826);
        assert_eq!(a.stats_numel(), 2 * (16 + 32 + 32));
        let names: Vec<&str> = a.params.iter().map(|p| p.name.as_str()).collect();
        assert!(
            names.contains(&"7.0.weight") && names.contains(&"7.1.bias") && names.contains(&"11.weight"),
            "{names:?}"
        );
        let b = planned(
            json!([{"conv2d": {"out": 8, "kernel": 3, "stride": 2, "padding": 1}}, "leaky_relu", {"avgpool2d": 2},
            "flatten", {"linear": 64}, "tanh", {"linear": 32}, "sigmoid", {"linear": 10}]),
        )
        .unwrap();
        assert_eq!(b.numel(), 35_466);
        assert_eq!(b.shapes[0], Shape::Image { c: 8, h: 16, w: 16 });
    }

    #[test]
    fn a_list_that_does_not_fit_names_the_layer_and_what_fits() {
        let err = |v: Value| planned(v).unwrap_err()[0].clone();
        let e = err(
            json!([{"conv2d": {"out": 4, "kernel": 5}}, {"maxpool2d": 5}, {"conv2d": {"out": 4, "kernel": 7}}, "flatten", {"linear": 10}]),
        );
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("layers[2].conv2d.kernel", "7 is larger than its 5×5 input")
        );
        let e = err(
            json!([{"conv2d": {"out": 4, "kernel": 3}}, {"residual": [{"conv2d": {"out": 8, "kernel": 3, "padding": 1}}]}, "flatten", {"linear": 10}]),
        );
        assert_eq!(e.path, "layers[1].residual");
        assert!(e.message.contains("its output is 8×30×30 but its input is 4×30×30"), "{}", e.message);
        let e = err(json!(["flatten", {"linear": 7}]));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("layers[1]", "the last layer gives 7 outputs; cifar10 has 10 classes")
        );
        let e = err(json!([{"linear": 10}]));
        assert!(e.message.contains("put \"flatten\" before it"), "{}", e.message);
        let bad = parse_layers(
            &json!(["relu", "softmax", {"conv2d": {"out": 0, "kernel": 3, "size": 1}}, {"linear": 10, "x": 1}]),
            "layers",
        )
        .unwrap_err();
        let paths: Vec<&str> = bad.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["layers[1]", "layers[2].conv2d.size", "layers[2].conv2d.out", "layers[3]"]);
        assert!(
            bad[0].message.contains("unknown layer \"softmax\"") && bad[0].message.contains("conv2d, maxpool2d"),
            "{}",
            bad[0].message
        );
        let one = plan(
            &parse_layers(&json!(["flatten", "batchnorm", {"linear": 10}]), "l").unwrap(),
            &CIFAR10,
            Naming::Position,
            1,
        );
        assert!(one.unwrap_err()[0].message.contains("more than one value per channel"));
    }

    #[test]
    fn an_unknown_option_is_named_alone() {
        let e = parse_layers(&json!([{"linear": {"out": 10, "bias": false}}]), "layers").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "layers[0].linear.bias");
    }

    #[test]
    fn a_list_is_summarised_in_a_few_characters() {
        let layers = parse_layers(
            &json!([
              {"conv2d": {"out": 16, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool2d": 2},
              {"residual": [{"conv2d": {"out": 16, "kernel": 5, "stride": 2}}, "leaky_relu"]},
              "global_avgpool", "flatten", {"dropout": 0.2}, {"linear": 10}
            ]),
            "layers",
        )
        .unwrap();
        assert_eq!(summary(&layers), "conv16-bn-relu-pool-res(conv16k5s2-lrelu)-gap-drop0.2-fc10");
    }

    #[test]
    fn a_returned_list_reads_back_to_itself() {
        let v = json!([{"conv2d": {"out": 8, "kernel": 3, "padding": "same"}}, {"maxpool2d": {"kernel": 3, "stride": 2}},
            "dropout", {"residual": ["gelu"]}, "flatten", {"linear": {"out": 10}}]);
        let layers = parse_layers(&v, "layers").unwrap();
        let shown = layers_json(&layers);
        assert_eq!(shown[2], json!({"dropout": 0.5}));
        assert_eq!(shown[5], json!({"linear": 10}));
        assert_eq!(parse_layers(&shown, "layers").unwrap(), layers);
    }
}
