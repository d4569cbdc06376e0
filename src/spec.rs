//! The experiment spec: one flat JSON object, every field optional with the PyTorch
//! tutorial's value as default. `Spec::parse` is the only way in; it reports every
//! problem at once, each naming its field and what is allowed.

use crate::dataset::Dataset;
use crate::network::{layers_json, named_layers, parse_layers, plan, smallest_batch, LayerSpec, Naming};
use crate::optimizer::{LrSchedule, OptimizerKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Longest name of a job or a sweep, in characters.
pub const NAME_CHARS: usize = 200;

/// A job's or a sweep's name: a non-empty string of at most `NAME_CHARS` characters with no
/// control characters (a NUL cannot be stored in PostgreSQL, and none belongs in an SVG, a
/// legend or a log line). The error says what was wrong and what is allowed.
pub fn check_name(v: &Value) -> Result<&str, String> {
    let allowed = format!("must be a non-empty string of at most {NAME_CHARS} characters without control characters");
    match v {
        Value::String(s) if s.trim().is_empty() || s.chars().count() > NAME_CHARS => Err(format!("{allowed}, got {v}")),
        Value::String(s) => match s.chars().find(|c| c.is_control()) {
            Some(c) => Err(format!("{allowed} (U+0000-U+001F, U+007F-U+009F); got one with U+{:04X}", c as u32)),
            None => Ok(s),
        },
        _ => Err(format!("{allowed}, got {v}")),
    }
}

/// Largest seed drawn at submission: 2^53, so it survives a round trip through any JSON client.
const DRAWN_SEED_LIMIT: u64 = 1 << 53;

/// The spec's field names, in the table's order (`FIELD_DOCS` is the list).
pub fn field_names() -> Vec<&'static str> {
    FIELD_DOCS.iter().map(|d| d.name).collect()
}

/// True when `name` is a spec field.
pub fn is_field(name: &str) -> bool {
    field_doc(name).is_some()
}

/// Range of `epochs` (a server may allow fewer: `Limits`).
pub const EPOCHS: (u64, u64) = (1, 1000);
/// Range of `batch_size`.
pub const BATCH_SIZE: (u64, u64) = (1, 50_000);
/// Range of each `hidden` width, and how many layers.
pub const HIDDEN_WIDTH: (u64, u64) = (1, 65_536);
pub const HIDDEN_LAYERS: (usize, usize) = (1, 8);

/// What a form needs to know of one spec field: how it is entered and what it means. The
/// ranges are the constants `Spec::parse` checks against; `field_docs()` adds the defaults.
pub struct FieldDoc {
    pub name: &'static str,
    /// `text`, `choice`, `boolean`, `integer`, `number`, `widths` (a list of integers),
    /// `numbers` (a list of numbers), `augment`, `layers` or `schedule`.
    pub input: &'static str,
    pub choices: &'static [&'static str],
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The models the field applies to; empty for all.
    pub models: &'static [&'static str],
    /// The optimisers the field applies to; empty for all.
    pub optimizers: &'static [&'static str],
    pub help: &'static str,
    /// Where a figure's title or legend names the setting (lowest first); `None`: never.
    pub legend: Option<u8>,
    /// The value a title or legend leaves unsaid, as `plot` writes it ("relu").
    pub usual: Option<&'static str>,
    /// Part of `Spec::group_key`: jobs must share it to train as one fused group.
    pub group: bool,
}

const fn doc(name: &'static str, input: &'static str, help: &'static str) -> FieldDoc {
    FieldDoc {
        name,
        input,
        choices: &[],
        min: None,
        max: None,
        models: &[],
        optimizers: &[],
        help,
        legend: None,
        usual: None,
        group: false,
    }
}

/// The fields a title or legend names, in the order it names them.
pub fn legend_fields() -> Vec<&'static FieldDoc> {
    let mut named: Vec<&FieldDoc> = FIELD_DOCS.iter().filter(|d| d.legend.is_some()).collect();
    named.sort_by_key(|d| d.legend);
    named
}

/// The doc of field `name`.
pub fn field_doc(name: &str) -> Option<&'static FieldDoc> {
    FIELD_DOCS.iter().find(|d| d.name == name)
}

/// Every field of the spec, in the order forms and `GET /spec` show them: the one table
/// that `parse`, `GET /spec`, the form, sweeps and the figures read.
pub const FIELD_DOCS: &[FieldDoc] = &[
    doc("name", "text", "A label for the job, shown in lists and in legends; at most 200 characters."),
    FieldDoc {
        choices: &["cnn", "linear", "mlp", "custom"],
        legend: Some(0),
        group: true,
        ..doc(
            "model",
            "choice",
            "cnn: the tutorial's network (two convolutions, three linear layers); linear: one linear \
             layer on the image's pixels (3072 on CIFAR-10); mlp: linear layers of the widths in hidden; custom: your own \
             list of layers (layers).",
        )
    },
    FieldDoc {
        min: Some(HIDDEN_WIDTH.0 as f64),
        max: Some(HIDDEN_WIDTH.1 as f64),
        models: &["mlp"],
        legend: Some(1),
        group: true,
        ..doc("hidden", "widths", "The hidden layers' widths, 1 to 8 of them, comma-separated (mlp only).")
    },
    FieldDoc {
        choices: &["relu", "none"],
        models: &["cnn", "mlp"],
        legend: Some(2),
        usual: Some("relu"),
        group: true,
        ..doc(
            "activation",
            "choice",
            "Between layers: relu, or none (an mlp without it is a linear model in disguise).",
        )
    },
    FieldDoc {
        models: &["custom"],
        group: true,
        ..doc(
            "layers",
            "layers",
            "The network as a list of layers, e.g. [{\"conv2d\": {\"out\": 16, \"kernel\": 3}}, \"relu\", \
             {\"maxpool2d\": 2}, \"flatten\", {\"linear\": 10}] (the kinds: GET /spec's layers). A \
             named model's are shown with it.",
        )
    },
    FieldDoc {
        min: Some(EPOCHS.0 as f64),
        max: Some(EPOCHS.1 as f64),
        legend: Some(18),
        ..doc("epochs", "integer", "Passes over the training set; test accuracy is measured after each.")
    },
    FieldDoc {
        min: Some(BATCH_SIZE.0 as f64),
        max: Some(BATCH_SIZE.1 as f64),
        legend: Some(3),
        group: true,
        ..doc("batch_size", "integer", "Images per optimiser step.")
    },
    FieldDoc {
        choices: crate::optimizer::NAMES,
        legend: Some(4),
        usual: Some("sgd"),
        group: true,
        ..doc(
            "optimizer",
            "choice",
            "The update rule, as torch.optim's: sgd, adam, adamw, rmsprop, adagrad or adadelta; each \
             setting's default is torch's for it (GET /spec's optimizers).",
        )
    },
    FieldDoc {
        min: Some(0.0),
        legend: Some(5),
        ..doc("lr", "number", "The learning rate, above 0 (the first epoch's after warm-up; see lr_schedule).")
    },
    FieldDoc {
        min: Some(0.0),
        max: Some(1.0),
        optimizers: &["sgd", "rmsprop"],
        legend: Some(6),
        ..doc("momentum", "number", "Momentum, from 0 to below 1 (sgd's default is the tutorial's 0.9, rmsprop's 0).")
    },
    FieldDoc {
        optimizers: &["sgd"],
        legend: Some(7),
        usual: Some("false"),
        ..doc("nesterov", "boolean", "Nesterov momentum (needs a momentum above 0).")
    },
    FieldDoc {
        min: Some(0.0),
        max: Some(1.0),
        optimizers: &["adam", "adamw"],
        legend: Some(8),
        usual: Some("0.9+0.999"),
        ..doc(
            "betas",
            "numbers",
            "The two running averages' coefficients, each from 0 to below 1 (default 0.9, 0.999).",
        )
    },
    FieldDoc {
        min: Some(0.0),
        max: Some(1.0),
        optimizers: &["rmsprop"],
        legend: Some(9),
        usual: Some("0.99"),
        ..doc(
            "alpha",
            "number",
            "The smoothing constant of the squared gradients' average, from 0 to 1 (default 0.99).",
        )
    },
    FieldDoc {
        min: Some(0.0),
        max: Some(1.0),
        optimizers: &["adadelta"],
        legend: Some(10),
        usual: Some("0.9"),
        ..doc("rho", "number", "The running averages' coefficient, from 0 to 1 (default 0.9).")
    },
    FieldDoc {
        min: Some(0.0),
        optimizers: &["adam", "adamw", "rmsprop", "adagrad", "adadelta"],
        ..doc("eps", "number", "Added to the denominator for stability, above 0 (torch's default per optimiser).")
    },
    FieldDoc {
        optimizers: &["adam", "adamw"],
        legend: Some(11),
        usual: Some("false"),
        ..doc("amsgrad", "boolean", "Divide by the largest squared-gradient average so far (AMSGrad).")
    },
    FieldDoc {
        min: Some(0.0),
        legend: Some(12),
        usual: Some("0"),
        ..doc(
            "weight_decay",
            "number",
            "0 or more: an L2 penalty in the gradient; adamw's is decoupled (its default 0.01, the others' 0).",
        )
    },
    FieldDoc {
        legend: Some(13),
        usual: Some("constant"),
        ..doc(
            "lr_schedule",
            "schedule",
            "How the rate moves per epoch: constant, {\"step\": {\"every\": 30, \"gamma\": 0.1}}, \
             {\"multistep\": {\"at\": [30, 60], \"gamma\": 0.1}}, {\"exponential\": {\"gamma\": 0.95}} or \
             {\"cosine\": {\"min_lr\": 0}} (PyTorch's schedulers, stepped once per epoch).",
        )
    },
    FieldDoc {
        min: Some(0.0),
        max: Some((EPOCHS.1 - 1) as f64),
        legend: Some(14),
        usual: Some("0"),
        ..doc(
            "warmup_epochs",
            "integer",
            "Epochs of linear warm-up before the schedule (lr·1/(n+1), 2/(n+1), …), fewer than epochs.",
        )
    },
    FieldDoc {
        choices: &["cross_entropy", "mse"],
        legend: Some(15),
        ..doc("loss", "choice", "cross_entropy, or mse: the squared error against one-hot targets.")
    },
    FieldDoc {
        legend: Some(16),
        usual: Some("none"),
        ..doc("augment", "augment", "Random resized crops and horizontal flips of the training images.")
    },
    FieldDoc {
        min: Some(0.0),
        ..doc("seed", "integer", "Seeds the weights and the shuffling; drawn at submission when empty, then recorded.")
    },
    FieldDoc {
        choices: crate::dataset::BUILTIN_NAMES,
        group: true,
        ..doc(
            "dataset",
            "choice",
            "The images: cifar10 (CIFAR-10), cifar100 (CIFAR-100, 100 classes), cifar100-coarse (its 20 superclasses), \
             mnist, fashion-mnist, or a dataset the lab imported; GET /datasets lists each with its shape and classes.",
        )
    },
    FieldDoc {
        min: Some(1.0),
        legend: Some(17),
        group: true,
        ..doc(
            "train_limit",
            "integer",
            "Train on the first N training images only (a quick try); at most the dataset's training images; empty for all.",
        )
    },
];

/// The fields as the web form shows them: each `FieldDoc` with its default.
pub fn field_docs() -> Value {
    field_docs_with(crate::dataset::BUILTIN_NAMES)
}

/// As `field_docs`, offering `datasets` (a server's store: the built-in ones and its imports).
pub fn field_docs_with(datasets: &[&str]) -> Value {
    let defaults = Spec::default().to_json();
    // Each optimiser's spec as shown, its defaults filled in (parsed once, not per field).
    let shown: Vec<(&str, Value)> = crate::optimizer::OPTIMIZERS
        .iter()
        .map(|o| {
            let spec = Spec::parse_with_seed(&serde_json::json!({"optimizer": o.name}), || 0)
                .expect("every optimiser's defaults parse");
            (o.name, spec.to_json())
        })
        .collect();
    let fields: Vec<Value> = FIELD_DOCS
        .iter()
        .map(|d| {
            let default = match d.name {
                "hidden" => serde_json::json!([120, 84]),
                // A named model's layers are its own; a list of one's own has no default.
                "seed" | "layers" => Value::Null,
                n => defaults.get(n).cloned().unwrap_or(Value::Null),
            };
            let choices: Vec<&str> = if d.name == "dataset" { datasets.to_vec() } else { d.choices.to_vec() };
            let mut f = serde_json::json!({
                "name": d.name, "input": d.input, "choices": choices, "min": d.min, "max": d.max,
                "models": d.models, "optimizers": d.optimizers, "help": d.help, "default": default,
            });
            // A setting whose default is the optimiser's: each one's, as the form shows it;
            // one that only some optimisers take shows the first one's.
            let by_optimizer: Map<String, Value> = shown
                .iter()
                .filter(|_| d.name != "optimizer")
                .filter_map(|(name, spec)| spec.get(d.name).map(|v| (name.to_string(), v.clone())))
                .collect();
            let first = by_optimizer.values().next();
            if f["default"].is_null() && !d.optimizers.is_empty() {
                f["default"] = first.cloned().unwrap_or(Value::Null);
            }
            if by_optimizer.values().any(|v| Some(v) != first) {
                f["defaults"] = Value::Object(by_optimizer);
            }
            f
        })
        .collect();
    let layers: Vec<Value> = crate::network::LAYER_DOCS
        .iter()
        .map(|d| serde_json::json!({"name": d.name, "form": d.form, "help": d.help}))
        .collect();
    let optimizers: Vec<Value> = crate::optimizer::OPTIMIZERS
        .iter()
        .map(|o| {
            let takes: Vec<&str> =
                FIELD_DOCS.iter().filter(|f| f.optimizers.contains(&o.name)).map(|f| f.name).collect();
            serde_json::json!({"name": o.name, "torch": o.torch, "help": o.help, "settings": takes})
        })
        .collect();
    let schedules: Vec<Value> = crate::optimizer::SCHEDULE_FORMS
        .iter()
        .map(|(name, help)| serde_json::json!({"name": name, "help": help}))
        .collect();
    serde_json::json!({
        "fields": fields,
        "optimizers": optimizers,
        "schedules": schedules,
        "layers": layers,
        "layer_limits": {"layers": crate::network::MAX_LAYERS, "nesting": crate::network::MAX_NESTING},
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Cnn,
    Linear,
    Mlp,
    /// The spec's own `layers`.
    Custom,
}

impl ModelKind {
    /// Its name in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Cnn => "cnn",
            ModelKind::Linear => "linear",
            ModelKind::Mlp => "mlp",
            ModelKind::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    CrossEntropy,
    Mse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augmentation {
    RandomResizedCrop,
    HorizontalFlip,
}

impl Augmentation {
    pub const ALL: [Augmentation; 2] = [Augmentation::RandomResizedCrop, Augmentation::HorizontalFlip];

    fn name(self) -> &'static str {
        match self {
            Augmentation::RandomResizedCrop => "random_resized_crop",
            Augmentation::HorizontalFlip => "horizontal_flip",
        }
    }
}

/// A validated experiment with every default filled in (the seed included), so the
/// stored spec alone repeats the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub name: Option<String>,
    pub model: ModelKind,
    /// Hidden layer widths; used by `mlp` only (empty for the other models).
    pub hidden: Vec<i64>,
    pub activation: Activation,
    /// The network: a named model's expansion, or the spec's own list (`custom`).
    #[serde(serialize_with = "serialize_layers")]
    pub layers: Vec<LayerSpec>,
    pub epochs: u32,
    pub batch_size: u32,
    pub optimizer: OptimizerKind,
    /// The rate of the first epoch after warm-up; `lr_at` gives each epoch's.
    pub lr: f64,
    /// sgd's and rmsprop's (0 for the others).
    pub momentum: f64,
    pub nesterov: bool,
    #[serde(serialize_with = "serialize_pair")]
    pub betas: (f64, f64),
    pub alpha: f64,
    pub rho: f64,
    pub eps: f64,
    pub amsgrad: bool,
    pub weight_decay: f64,
    #[serde(serialize_with = "serialize_schedule")]
    pub lr_schedule: LrSchedule,
    pub warmup_epochs: u32,
    pub loss: LossKind,
    /// Training-time augmentations, in a fixed order; empty means none.
    pub augment: Vec<Augmentation>,
    pub seed: u64,
    pub dataset: String,
    pub train_limit: Option<u32>,
}

/// One invalid field: which, and what is allowed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl From<crate::network::LayerError> for FieldError {
    /// A layer's problem, named by its path (`layers[3].conv2d.kernel`).
    fn from(e: crate::network::LayerError) -> FieldError {
        FieldError { field: e.path, message: e.message }
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecErrors(pub Vec<FieldError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid experiment spec: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl Default for Spec {
    /// The tutorial's experiment, with seed 0.
    fn default() -> Self {
        Spec {
            name: None,
            model: ModelKind::Cnn,
            hidden: Vec::new(),
            activation: Activation::Relu,
            layers: named_layers(ModelKind::Cnn, &[], Activation::Relu, 10),
            epochs: 50,
            batch_size: 4,
            optimizer: OptimizerKind::Sgd,
            lr: 0.001,
            momentum: 0.9,
            nesterov: false,
            betas: crate::optimizer::BETAS,
            alpha: crate::optimizer::ALPHA,
            rho: crate::optimizer::RHO,
            eps: 0.0,
            amsgrad: false,
            weight_decay: 0.0,
            lr_schedule: LrSchedule::Constant,
            warmup_epochs: 0,
            loss: LossKind::CrossEntropy,
            augment: Vec::new(),
            seed: 0,
            dataset: "cifar10".into(),
            train_limit: None,
        }
    }
}

/// Collects field errors while a spec is read.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), message: message.into() });
    }

    fn present(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn int(&mut self, field: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = self.present(field) else { return default };
        match whole(v) {
            Some(n) if (min..=max).contains(&n) => n,
            _ => {
                self.fail(field, format!("must be an integer from {min} to {max}, got {v}"));
                default
            }
        }
    }

    fn float(&mut self, field: &str, default: f64, ok: impl Fn(f64) -> bool, allowed: &str) -> f64 {
        let Some(v) = self.present(field) else { return default };
        match v.as_f64() {
            Some(x) if x.is_finite() && ok(x) => x,
            _ => {
                self.fail(field, format!("must be {allowed}, got {v}"));
                default
            }
        }
    }

    /// A true/false field, false when absent.
    fn boolean(&mut self, field: &str) -> bool {
        match self.present(field) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.fail(field, format!("must be true or false, got {v}"));
                false
            }
        }
    }

    fn choice<T: Copy>(&mut self, field: &str, default: T, options: &[(&str, T)]) -> T {
        let Some(v) = self.present(field) else { return default };
        if let Some(s) = v.as_str() {
            if let Some((_, t)) = options.iter().find(|(name, _)| *name == s) {
                return *t;
            }
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.fail(field, format!("must be one of {}, got {v}", names.join(", ")));
        default
    }
}

impl Spec {
    /// The dataset the spec names (`parse` let no other name in).
    pub fn data(&self) -> &'static Dataset {
        crate::dataset::named(&self.dataset).expect("a parsed spec names a known dataset")
    }

    /// Parses and validates a spec; a missing seed is drawn here, so it is recorded.
    pub fn parse(value: &Value) -> Result<Spec, SpecErrors> {
        Self::parse_with_seed(value, draw_seed)
    }

    /// As `parse`, with the seed to use when the spec names none.
    pub fn parse_with_seed(value: &Value, draw_seed: impl FnOnce() -> u64) -> Result<Spec, SpecErrors> {
        let Some(obj) = value.as_object() else {
            return Err(SpecErrors(vec![FieldError {
                field: "(body)".into(),
                message: format!("the experiment spec must be a JSON object, got {}", json_type(value)),
            }]));
        };
        let mut r = Reader { obj, errors: Vec::new() };
        for key in obj.keys() {
            if !is_field(key) {
                r.fail(key, format!("unknown field; allowed fields: {}", field_names().join(", ")));
            }
        }
        let d = Spec::default();

        let name = match r.present("name") {
            None => None,
            Some(v) => match check_name(v) {
                Ok(s) => Some(s.to_string()),
                Err(why) => {
                    r.fail("name", why);
                    None
                }
            },
        };
        // N.B.: a list of layers without a model is the spec's own network.
        let own = if r.present("layers").is_some() { ModelKind::Custom } else { d.model };
        let model = r.choice(
            "model",
            own,
            &[
                ("cnn", ModelKind::Cnn),
                ("linear", ModelKind::Linear),
                ("mlp", ModelKind::Mlp),
                ("custom", ModelKind::Custom),
            ],
        );
        let hidden = match (r.present("hidden"), model) {
            (None, ModelKind::Mlp) => vec![120, 84],
            (None, _) => Vec::new(),
            (Some(_), ModelKind::Cnn | ModelKind::Linear | ModelKind::Custom) => {
                r.fail(
                    "hidden",
                    "applies only to model \"mlp\"; leave it out for \"cnn\", \"linear\" and your own layers",
                );
                Vec::new()
            }
            (Some(v), ModelKind::Mlp) => {
                let widths: Option<Vec<i64>> = v.as_array().and_then(|a| {
                    a.iter()
                        .map(|w| whole(w).filter(|w| (HIDDEN_WIDTH.0..=HIDDEN_WIDTH.1).contains(w)).map(|w| w as i64))
                        .collect()
                });
                match widths {
                    Some(w) if (HIDDEN_LAYERS.0..=HIDDEN_LAYERS.1).contains(&w.len()) => w,
                    _ => {
                        r.fail(
                            "hidden",
                            format!("must be a list of 1 to 8 layer widths, each from 1 to 65536, got {v}"),
                        );
                        vec![120, 84]
                    }
                }
            }
        };
        let activation =
            r.choice("activation", d.activation, &[("relu", Activation::Relu), ("none", Activation::None)]);
        if model == ModelKind::Linear && r.present("activation").is_some() {
            r.fail("activation", "applies only to models \"mlp\" and \"cnn\"; a linear model has no hidden layer");
        }
        if model == ModelKind::Custom && r.present("activation").is_some() {
            r.fail("activation", "applies only to models \"mlp\" and \"cnn\"; write your activations in layers");
        }
        let epochs = r.int("epochs", d.epochs.into(), EPOCHS.0, EPOCHS.1) as u32;
        let batch_size = r.int("batch_size", d.batch_size.into(), BATCH_SIZE.0, BATCH_SIZE.1) as u32;
        let optimizers: Vec<(&str, OptimizerKind)> =
            crate::optimizer::OPTIMIZERS.iter().map(|o| (o.name, o.kind)).collect();
        let optimizer = r.choice("optimizer", d.optimizer, &optimizers);
        let o = optimizer.doc();
        for f in FIELD_DOCS.iter().filter(|f| !f.optimizers.is_empty() && !f.optimizers.contains(&o.name)) {
            if r.present(f.name).is_some() {
                let to: Vec<String> = f.optimizers.iter().map(|n| format!("\"{n}\"")).collect();
                r.fail(f.name, format!("applies only to optimizer {}; leave it out for \"{}\"", to.join(", "), o.name));
            }
        }
        let applies = |f: &str| field_doc(f).is_some_and(|d| d.optimizers.contains(&o.name));
        let lr = r.float("lr", o.lr, |x| x > 0.0, "a finite number > 0");
        let unit = |x: f64| (0.0..1.0).contains(&x);
        let momentum =
            if applies("momentum") { r.float("momentum", o.momentum, unit, "a number from 0 to below 1") } else { 0.0 };
        let nesterov = applies("nesterov") && r.boolean("nesterov");
        if nesterov && momentum == 0.0 {
            r.fail("nesterov", "needs a momentum above 0 (torch.optim.SGD's rule)");
        }
        let betas = match r.present("betas").filter(|_| applies("betas")) {
            None => crate::optimizer::BETAS,
            Some(v) => match v.as_array().map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()) {
                Some(Some(b)) if b.len() == 2 && b.iter().all(|&x| unit(x)) => (b[0], b[1]),
                _ => {
                    r.fail("betas", format!("must be a list of two numbers, each from 0 to below 1, got {v}"));
                    crate::optimizer::BETAS
                }
            },
        };
        let closed = |x: f64| (0.0..=1.0).contains(&x);
        let alpha = if applies("alpha") {
            r.float("alpha", crate::optimizer::ALPHA, closed, "a number from 0 to 1")
        } else {
            crate::optimizer::ALPHA
        };
        let rho = if applies("rho") {
            r.float("rho", crate::optimizer::RHO, closed, "a number from 0 to 1")
        } else {
            crate::optimizer::RHO
        };
        // N.B.: torch allows eps 0, but a weight whose gradient is exactly 0 (a dead ReLU's)
        // would then step by 0/0: a NaN the student did not ask for.
        let eps = if applies("eps") { r.float("eps", o.eps, |x| x > 0.0, "a finite number > 0") } else { o.eps };
        let amsgrad = applies("amsgrad") && r.boolean("amsgrad");
        let weight_decay = r.float("weight_decay", o.weight_decay, |x| x >= 0.0, "a finite number >= 0");
        let lr_schedule = match r.present("lr_schedule") {
            None => LrSchedule::Constant,
            Some(v) => LrSchedule::parse(v).unwrap_or_else(|why| {
                r.fail("lr_schedule", why);
                LrSchedule::Constant
            }),
        };
        let mut warmup_epochs = r.int("warmup_epochs", 0, 0, EPOCHS.1 - 1) as u32;
        if warmup_epochs >= epochs {
            r.fail("warmup_epochs", format!("must be fewer than the job's epochs ({epochs}), got {warmup_epochs}"));
            warmup_epochs = 0;
        }
        let loss = r.choice("loss", d.loss, &[("cross_entropy", LossKind::CrossEntropy), ("mse", LossKind::Mse)]);
        let augment = match r.present("augment") {
            None | Some(Value::Bool(false)) => Vec::new(),
            Some(Value::Bool(true)) => Augmentation::ALL.to_vec(),
            Some(v) => {
                let list: Option<Vec<Augmentation>> = v.as_array().and_then(|a| {
                    a.iter()
                        .map(|s| s.as_str().and_then(|s| Augmentation::ALL.into_iter().find(|g| g.name() == s)))
                        .collect()
                });
                match list {
                    Some(mut l) => {
                        l.sort();
                        l.dedup();
                        l
                    }
                    None => {
                        r.fail(
                            "augment",
                            format!("must be true, false or a list of \"random_resized_crop\", \"horizontal_flip\"; got {v}"),
                        );
                        Vec::new()
                    }
                }
            }
        };
        let seed = match r.present("seed") {
            None => None,
            Some(v) => match whole(v) {
                Some(s) => Some(s),
                None => {
                    r.fail("seed", format!("must be an integer from 0 to {}, got {v}", u64::MAX));
                    Some(0)
                }
            },
        };
        let datasets: Vec<(&str, &'static Dataset)> = crate::dataset::all().into_iter().map(|d| (d.name, d)).collect();
        let data = r.choice("dataset", crate::dataset::DEFAULT, &datasets);
        // N.B.: a larger limit than the dataset's training images would silently mean "all".
        // An unknown dataset has no size to hold the limit to (it is an error already).
        let known = !r.errors.iter().any(|e| e.field == "dataset");
        let most = if known { data.train_images } else { u64::from(u32::MAX) };
        let train_limit = r.present("train_limit").map(|_| r.int("train_limit", 0, 1, most) as u32);
        let named = (model != ModelKind::Custom).then(|| named_layers(model, &hidden, activation, data.num_classes()));
        let layers = match (r.present("layers"), named) {
            (None, Some(named)) => named,
            (None, None) => {
                r.fail("layers", "model \"custom\" needs its list of layers");
                Vec::new()
            }
            (Some(v), named) => match parse_layers(v, "layers") {
                Err(errors) => {
                    r.errors.extend(errors.into_iter().map(FieldError::from));
                    Vec::new()
                }
                // A returned spec shows a named model's layers; sent back, they must be its own.
                Ok(layers) if named.as_ref().is_some_and(|n| *n != layers) => {
                    r.fail(
                        "layers",
                        format!(
                            "are not model \"{}\"'s layers; leave model out (or say \"custom\") to train your own list",
                            model.as_str()
                        ),
                    );
                    Vec::new()
                }
                Ok(layers) => layers,
            },
        };
        // A schedule that grows the rate (gamma above 1) must keep it a number over the job.
        if let Some(e) = (1..=epochs).find(|&e| !(lr_schedule.lr_at(lr, e, epochs, warmup_epochs) as f32).is_finite()) {
            r.fail(
                "lr_schedule",
                format!("takes the rate past the largest float (3.4e38) by epoch {e} of {epochs}; use a gamma of at most 1, or fewer epochs"),
            );
        }
        if r.errors.is_empty() {
            let smallest = smallest_batch(batch_size, train_limit, data.train_images);
            if let Err(errors) = plan(&layers, data, Naming::for_model(model), smallest) {
                if model == ModelKind::Custom {
                    r.errors.extend(errors.into_iter().map(FieldError::from));
                } else {
                    // A named model's layers are not the student's: say which model does not
                    // fit which dataset, and where.
                    for e in errors {
                        r.fail(
                            "model",
                            format!(
                                "\"{}\" does not fit dataset \"{}\" ({} images): {}: {}; choose another model or a list of layers",
                                model.as_str(),
                                data.name,
                                data.shape_text(),
                                e.path,
                                e.message
                            ),
                        );
                    }
                }
            }
        }

        if !r.errors.is_empty() {
            return Err(SpecErrors(r.errors));
        }
        Ok(Spec {
            name,
            model,
            hidden,
            activation,
            layers,
            epochs,
            batch_size,
            optimizer,
            lr,
            momentum,
            nesterov,
            betas,
            alpha,
            rho,
            eps,
            amsgrad,
            weight_decay,
            lr_schedule,
            warmup_epochs,
            loss,
            augment,
            seed: seed.unwrap_or_else(draw_seed),
            dataset: data.name.to_string(),
            train_limit,
        })
    }

    /// A spec as the queue stored it (`to_json`'s text), parsed and checked again; the
    /// error says what no longer holds. A stored spec always names its seed.
    pub fn from_stored(text: &str) -> Result<Spec, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("the stored spec is not JSON: {e}"))?;
        if value.get("seed").is_none_or(Value::is_null) {
            return Err("the stored spec has no seed".into());
        }
        Spec::parse(&value).map_err(|e| e.to_string())
    }

    /// The spec as stored and shown: every field, defaults included.
    ///
    /// Fields that do not apply to the model (`hidden` but for mlp, `activation` for linear)
    /// are left out, so the result parses back to the same spec.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("a spec always serializes");
        let obj = v.as_object_mut().expect("a spec is an object");
        if self.model != ModelKind::Mlp {
            obj.shift_remove("hidden");
        }
        if matches!(self.model, ModelKind::Linear | ModelKind::Custom) {
            obj.shift_remove("activation");
        }
        let name = self.optimizer.as_str();
        for f in FIELD_DOCS.iter().filter(|f| !f.optimizers.is_empty() && !f.optimizers.contains(&name)) {
            obj.shift_remove(f.name);
        }
        v
    }

    /// The network in a few characters, as lists and figures name it: a named model's name
    /// (`cnn`), or a summary of one's own layers (`conv16-bn-relu-pool-…-fc10`).
    pub fn network_name(&self) -> String {
        match self.model {
            ModelKind::Custom => crate::network::summary(&self.layers),
            named => named.as_str().to_string(),
        }
    }

    /// The learning rate of `epoch` (1-based): the warm-up's, then the schedule's.
    pub fn lr_at(&self, epoch: u32) -> f64 {
        self.lr_schedule.lr_at(self.lr, epoch, self.epochs, self.warmup_epochs)
    }

    pub fn has(&self, aug: Augmentation) -> bool {
        self.augment.contains(&aug)
    }

    /// What jobs must share to train as one fused group: the network's layers (a named
    /// model and its own list are one network), the batch size, the training subset and the
    /// dataset, and the optimiser (one update rule per group). Everything else (seed, every
    /// optimiser setting, the schedule, loss, augmentation, epochs) may differ.
    pub fn group_key(&self) -> String {
        let key = serde_json::json!([layers_json(&self.layers), self.batch_size, self.train_limit, self.dataset]);
        // N.B.: SGD's groups keep the key they had before optimisers were a field, so jobs
        // queued then still join those queued now.
        match self.optimizer {
            OptimizerKind::Sgd => key.to_string(),
            other => serde_json::json!([key, other.as_str()]).to_string(),
        }
    }
}

fn serialize_pair<S: serde::Serializer>(pair: &(f64, f64), s: S) -> Result<S::Ok, S::Error> {
    [pair.0, pair.1].serialize(s)
}

fn serialize_schedule<S: serde::Serializer>(schedule: &LrSchedule, s: S) -> Result<S::Ok, S::Error> {
    schedule.to_json().serialize(s)
}

fn serialize_layers<S: serde::Serializer>(layers: &[LayerSpec], s: S) -> Result<S::Ok, S::Error> {
    layers_json(layers).serialize(s)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A fresh seed for a spec that names none (below 2^53, so JSON clients keep it exact).
pub fn draw_seed() -> u64 {
    rand_seed() % DRAWN_SEED_LIMIT
}

/// A seed from the OS's randomness (through std's hasher keys) mixed with the clock.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A whole number ≥ 0 as JSON Schema counts one: `2` and `2.0` alike (some clients write
/// every number as a float).
pub fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(53)).map(|f| f as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Value) -> Vec<FieldError> {
        Spec::parse(&v).unwrap_err().0
    }

    #[test]
    fn an_empty_object_is_the_tutorial_experiment_with_a_drawn_seed() {
        let s = Spec::parse_with_seed(&json!({}), || 42).unwrap();
        assert_eq!(s, Spec { seed: 42, ..Spec::default() });
        let a = Spec::parse(&json!({})).unwrap();
        let b = Spec::parse(&json!({})).unwrap();
        assert_ne!(a.seed, b.seed, "seeds are drawn afresh");
        assert!(a.seed < DRAWN_SEED_LIMIT);
    }

    #[test]
    fn mlp_gets_the_default_hidden_widths_and_every_filled_spec_round_trips() {
        let s = Spec::parse(&json!({"model": "mlp", "augment": true, "seed": 7})).unwrap();
        assert_eq!(s.hidden, vec![120, 84]);
        assert_eq!(s.augment, Augmentation::ALL.to_vec());
        for model in ["mlp", "cnn", "linear"] {
            let s = Spec::parse(&json!({"model": model, "name": "x", "train_limit": 9})).unwrap();
            let shown = s.to_json();
            assert_eq!(Spec::parse(&shown).unwrap(), s, "{shown}");
            assert_eq!(shown["seed"], json!(s.seed));
            assert_eq!(shown["momentum"], json!(0.9));
        }
    }

    #[test]
    fn null_means_the_default_as_openapi_says_so_a_returned_spec_can_be_sent_back() {
        let s = Spec::parse_with_seed(&json!({"augment": null, "train_limit": null, "name": null}), || 3).unwrap();
        assert_eq!(s, Spec { seed: 3, ..Spec::default() });
        let shown = Spec::parse(&json!({"model": "cnn"})).unwrap().to_json();
        assert!(shown["train_limit"].is_null() && shown["name"].is_null(), "{shown}");
        assert!(Spec::parse(&shown).is_ok());
    }

    #[test]
    fn every_field_has_a_doc_with_its_default_and_the_defaults_parse() {
        // The table holds every field a spec has, in the struct's order (as it is shown).
        // A spec shows the fields of its model and optimiser, in the table's order.
        for o in crate::optimizer::NAMES {
            let shown = Spec::parse(&json!({"model": "mlp", "optimizer": o})).unwrap().to_json();
            let keys: Vec<&str> = shown.as_object().unwrap().keys().map(String::as_str).collect();
            let applies = |d: &&FieldDoc| d.optimizers.is_empty() || d.optimizers.contains(o);
            assert_eq!(keys, FIELD_DOCS.iter().filter(applies).map(|d| d.name).collect::<Vec<_>>(), "{o}");
            assert_eq!(Spec::parse(&shown).unwrap().to_json(), shown, "{o}: a shown spec reads back the same");
        }
        let docs = field_docs();
        let mut spec = Map::new();
        for f in docs["fields"].as_array().unwrap() {
            assert!(!f["help"].as_str().unwrap().is_empty());
            let sgd = f["optimizers"].as_array().unwrap();
            let applies = f["models"].as_array().unwrap().is_empty() && (sgd.is_empty() || sgd.contains(&json!("sgd")));
            if applies && !f["default"].is_null() {
                spec.insert(f["name"].as_str().unwrap().into(), f["default"].clone());
            }
        }
        assert_eq!(Spec::parse_with_seed(&Value::Object(spec), || 0).unwrap(), Spec::default());
        let epochs = &docs["fields"][5];
        assert_eq!((epochs["name"].as_str(), epochs["max"].as_f64()), (Some("epochs"), Some(1000.0)));
        assert!(errors(json!({"epochs": 1001}))[0].message.contains("from 1 to 1000"));
    }

    #[test]
    fn the_tables_group_fields_are_what_the_group_key_holds() {
        let base = json!({"model": "mlp", "seed": 1});
        let other = |field: &str| match field {
            "name" => json!("x"),
            "model" => json!("cnn"),
            "hidden" => json!([10]),
            "activation" => json!("none"),
            "loss" => json!("mse"),
            "augment" => json!(true),
            "lr" | "momentum" | "weight_decay" => json!(0.5),
            "optimizer" => json!("adam"),
            "nesterov" => json!(true),
            "lr_schedule" => json!({"step": 2}),
            "warmup_epochs" => json!(1),
            "betas" => json!([0.5, 0.5]),
            "alpha" | "rho" | "eps" => json!(0.5),
            "amsgrad" => json!(true),
            "dataset" => json!("cifar100"),
            _ => json!(8),
        };
        let key = |v: &Value| Spec::parse(v).unwrap().group_key();
        for d in FIELD_DOCS.iter().filter(|d| d.choices.len() != 1) {
            // An optimiser's own setting is changed under that optimiser.
            let mut base = base.clone();
            if !d.optimizers.is_empty() && !d.optimizers.contains(&"sgd") {
                base["optimizer"] = json!(d.optimizers[0]);
            }
            let mut changed = base.clone();
            changed[d.name] = other(d.name);
            if d.name == "layers" {
                changed = json!({"seed": 1, "layers": ["flatten", {"linear": 10}]});
            }
            assert_eq!(key(&changed) != key(&base), d.group, "{}: in the group key or not, as the table says", d.name);
        }
        let named: Vec<&str> = legend_fields().iter().map(|d| d.name).collect();
        assert_eq!(named[..3], ["model", "hidden", "activation"]);
        assert_eq!(named.last(), Some(&"epochs"));
    }

    #[test]
    fn each_optimiser_gets_torchs_defaults_and_refuses_another_optimisers_settings() {
        let s = Spec::parse(&json!({"optimizer": "adadelta"})).unwrap();
        assert_eq!((s.lr, s.rho, s.eps, s.momentum), (1.0, 0.9, 1e-6, 0.0));
        let s = Spec::parse(&json!({"optimizer": "adamw"})).unwrap();
        assert_eq!((s.lr, s.betas, s.eps, s.weight_decay), (0.001, (0.9, 0.999), 1e-8, 0.01));
        let s = Spec::parse(&json!({"optimizer": "rmsprop"})).unwrap();
        assert_eq!((s.lr, s.alpha, s.momentum), (0.01, 0.99, 0.0));
        assert_eq!(Spec::parse(&json!({"optimizer": "adagrad"})).unwrap().eps, 1e-10);
        let e = errors(json!({"betas": [0.9, 0.99], "rho": 0.5}));
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].message, "applies only to optimizer \"adam\", \"adamw\"; leave it out for \"sgd\"");
        assert!(errors(json!({"optimizer": "adam", "momentum": 0.9}))[0].message.contains("\"sgd\", \"rmsprop\""));
        assert!(errors(json!({"nesterov": true, "momentum": 0}))[0].message.contains("needs a momentum above 0"));
        assert_eq!(errors(json!({"optimizer": "adam", "betas": [0.9, 1.0]}))[0].field, "betas");
        assert_eq!(errors(json!({"optimizer": "adam", "betas": [0.9]}))[0].field, "betas");
        assert_eq!(errors(json!({"optimizer": "adam", "amsgrad": "yes"}))[0].field, "amsgrad");
        assert!(errors(json!({"optimizer": "lbfgs"}))[0].message.contains("\"adadelta\""));
        let w = errors(json!({"epochs": 3, "warmup_epochs": 3}));
        assert_eq!(w[0].message, "must be fewer than the job's epochs (3), got 3");
        assert_eq!(errors(json!({"lr_schedule": {"cosine": {"eta_min": 0}}}))[0].field, "lr_schedule");
        assert!(errors(json!({"optimizer": "adam", "eps": 0}))[0].message.contains("> 0"));
        let grow = errors(json!({"epochs": 1000, "lr_schedule": {"exponential": 1.2}}));
        assert!(grow[0].message.contains("past the largest float"), "{grow:?}");
        assert!(
            Spec::parse(&json!({"epochs": 20, "lr_schedule": {"exponential": 1.1}})).is_ok(),
            "a growth that stays finite"
        );
        let docs = field_docs();
        let doc = |n: &str| docs["fields"].as_array().unwrap().iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(doc("betas")["default"], json!([0.9, 0.999]));
        assert_eq!(doc("rho")["default"], json!(0.9));
        assert_eq!(doc("lr")["defaults"]["adadelta"], json!(1.0));
        assert!(doc("optimizer").get("defaults").is_none());
    }

    #[test]
    fn an_epochs_rate_follows_the_warm_up_then_the_schedule() {
        let s = Spec::parse(&json!({"lr": 0.1, "epochs": 6, "warmup_epochs": 1, "lr_schedule": {"step": 2}})).unwrap();
        let rates: Vec<f64> = (1..=6).map(|e| s.lr_at(e)).collect();
        let want = [0.05, 0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1];
        assert!(rates.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-15), "{rates:?}");
        assert_eq!(Spec::parse(&json!({})).unwrap().lr_at(50), 0.001, "constant by default");
    }

    #[test]
    fn sgd_keeps_its_group_key_and_another_optimiser_has_its_own() {
        let key = |v: Value| Spec::parse(&v).unwrap().group_key();
        let old = serde_json::json!([layers_json(&Spec::default().layers), 4, null, "cifar10"]).to_string();
        assert_eq!(key(json!({"seed": 1})), old, "jobs queued before optimisers were a field still fuse with new ones");
        assert_eq!(key(json!({"lr_schedule": "cosine", "nesterov": true})), old);
        assert_ne!(key(json!({"optimizer": "adam"})), key(json!({"optimizer": "adamw"})));
        assert_eq!(
            key(json!({"optimizer": "adam"})),
            key(json!({"optimizer": "adam", "betas": [0.5, 0.5], "amsgrad": true}))
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let e = errors(json!({"learning_rate": 0.1}));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "learning_rate");
        assert!(e[0].message.contains("allowed fields"), "{}", e[0].message);
        assert!(e[0].message.contains("lr"));
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_allowed_range() {
        let e = errors(json!({
            "model": "resnet", "epochs": 0, "batch_size": 50001, "lr": -1, "momentum": 1.0,
            "loss": "hinge", "augment": ["rotate"], "seed": -3, "dataset": "imagenet", "train_limit": 0,
            "weight_decay": -0.1
        }));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "model",
                "epochs",
                "batch_size",
                "lr",
                "momentum",
                "weight_decay",
                "loss",
                "augment",
                "seed",
                "dataset",
                "train_limit"
            ]
        );
        let msg = |f: &str| e.iter().find(|x| x.field == f).unwrap().message.clone();
        assert!(msg("epochs").contains("from 1 to 1000"));
        assert!(msg("batch_size").contains("from 1 to 50000"));
        assert!(msg("model").contains("\"cnn\", \"linear\", \"mlp\""));
        assert!(msg("lr").contains("> 0"));
    }

    #[test]
    fn non_finite_and_wrongly_typed_values_are_rejected() {
        assert_eq!(errors(json!({"lr": "0.1"}))[0].field, "lr");
        assert_eq!(errors(json!({"epochs": 2.5}))[0].field, "epochs");
        let too_many = errors(json!({"train_limit": 50001}));
        assert_eq!(too_many[0].field, "train_limit");
        assert!(too_many[0].message.contains("from 1 to 50000"), "{}", too_many[0].message);
        assert_eq!(Spec::parse(&json!({"train_limit": 50000})).unwrap().train_limit, Some(50000));
        assert_eq!(errors(json!({"hidden": [120, 0], "model": "mlp"}))[0].field, "hidden");
        assert_eq!(errors(json!({"hidden": [10]}))[0].field, "hidden", "hidden needs model mlp");
        assert_eq!(errors(json!({"model": "linear", "activation": "none"}))[0].field, "activation");
        assert_eq!(errors(json!([1, 2]))[0].field, "(body)");
    }
}
