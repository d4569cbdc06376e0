//! Pure: a sweep request → the jobs to queue. A grid (`base` + `vary`, every combination) or
//! a preset (the assignment; the optimisers compared), validated as a whole before anything
//! is queued.

use crate::spec::{field_names, is_field, FieldError, Spec};
use serde_json::{json, Map, Value};

/// Jobs one sweep may queue.
pub const MAX_JOBS: usize = 100;
/// The assignment preset's name.
pub const PRESET: &str = "cifar10-assignment";
/// The optimisers preset's name.
pub const OPTIMIZERS_PRESET: &str = "optimizers";
/// Every preset, by name.
pub const PRESETS: &[&str] = &[PRESET, OPTIMIZERS_PRESET];

/// A preset's report sections, each with its jobs as (label, settings).
pub type PresetSections = Vec<(Section, Vec<(&'static str, Value)>)>;

/// A preset's title: the name its sweep gets when the request names none.
pub fn preset_title(preset: &str) -> Option<&'static str> {
    match preset {
        PRESET => Some("The CIFAR-10 assignment"),
        OPTIMIZERS_PRESET => Some("Optimisers on the tutorial CNN"),
        _ => None,
    }
}

/// A preset's sections; `None` for no preset.
pub fn sections_of(preset: &str) -> Option<PresetSections> {
    match preset {
        PRESET => Some(preset_sections()),
        OPTIMIZERS_PRESET => Some(optimizer_sections()),
        _ => None,
    }
}

/// The optimisers compared on the tutorial CNN: its SGD, SGD on a cosine schedule, Adam
/// and AdamW at 1e-3, and the MNIST example's Adadelta recipe.
pub fn optimizer_sections() -> PresetSections {
    vec![(
        Section {
            key: "optimizers",
            title: "Optimisers and schedules on the tutorial's network",
            question: "How do the tutorial's SGD, SGD on a cosine schedule, Adam and AdamW at 1e-3, and the \
                       MNIST example's Adadelta (lr 1.0, StepLR(1, 0.7)) compare on the tutorial CNN?",
        },
        vec![
            ("SGD (tutorial)", json!({})),
            ("SGD, cosine schedule", json!({"lr_schedule": "cosine"})),
            ("Adam, lr 0.001", json!({"optimizer": "adam", "lr": 0.001})),
            ("AdamW, lr 0.001", json!({"optimizer": "adamw", "lr": 0.001})),
            (
                "Adadelta + StepLR (MNIST example)",
                json!({"optimizer": "adadelta", "lr": 1.0, "lr_schedule": {"step": {"every": 1, "gamma": 0.7}}}),
            ),
        ],
    )]
}

/// One job of the plan.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub spec: Spec,
    /// The settings that make this job what it is in the sweep, e.g. {"batch_size": 1}.
    pub point: Map<String, Value>,
    /// (section key, label in that section) for every report section that shows this job.
    pub sections: Vec<(String, String)>,
}

/// A report section: a question, and the jobs that answer it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub question: &'static str,
}

#[derive(Debug)]
pub struct Plan {
    pub name: Option<String>,
    pub jobs: Vec<PlannedJob>,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// The assignment's eight sections, each with its jobs as (label, settings).
pub fn preset_sections() -> PresetSections {
    vec![
        (
            Section {
                key: "tutorial",
                title: "1. The tutorial's network as it is",
                question: "How well does the tutorial's CNN (batch 4, lr 0.001, momentum 0.9, cross-entropy) learn?",
            },
            vec![("tutorial CNN", json!({}))],
        ),
        (
            Section {
                key: "linear",
                title: "2. A single fully connected layer",
                question: "How far does a linear classifier (3072→10) get?",
            },
            vec![("linear", json!({"model": "linear"})), ("tutorial CNN", json!({}))],
        ),
        (
            Section {
                key: "mlp",
                title: "3. Three fully connected layers, with and without ReLU",
                question: "Does a 3072→120→84→10 network need its non-linearity?",
            },
            vec![
                ("MLP with ReLU", json!({"model": "mlp"})),
                ("MLP without activation", json!({"model": "mlp", "activation": "none"})),
            ],
        ),
        (
            Section {
                key: "cnn",
                title: "4. Two convolutional layers with max pooling before three dense layers",
                question: "What do the convolutions add over the dense networks?",
            },
            vec![
                ("tutorial CNN", json!({})),
                ("MLP with ReLU", json!({"model": "mlp"})),
                ("linear", json!({"model": "linear"})),
            ],
        ),
        (
            Section {
                key: "batch_size",
                title: "5. Batch size",
                question: "How do batch sizes 1, 4 and 1000 compare?",
            },
            vec![
                ("batch 1", json!({"batch_size": 1})),
                ("batch 4 (tutorial)", json!({})),
                ("batch 1000", json!({"batch_size": 1000})),
            ],
        ),
        (
            Section {
                key: "lr",
                title: "6. Learning rate",
                question: "How do learning rates 10, 0.1, 0.01 and 0.0001 compare with the tutorial's 0.001?",
            },
            vec![
                ("lr 10", json!({"lr": 10.0})),
                ("lr 0.1", json!({"lr": 0.1})),
                ("lr 0.01", json!({"lr": 0.01})),
                ("lr 0.001 (tutorial)", json!({})),
                ("lr 0.0001", json!({"lr": 0.0001})),
            ],
        ),
        (
            Section {
                key: "augment",
                title: "7. Data augmentation on training only",
                question: "Do random resized crops and horizontal flips help test accuracy?",
            },
            vec![("no augmentation", json!({})), ("crop + flip", json!({"augment": true}))],
        ),
        (
            Section {
                key: "mse",
                title: "8. Mean squared error instead of cross-entropy",
                question: "How does training on MSE against one-hot targets compare?",
            },
            vec![("cross-entropy", json!({})), ("MSE", json!({"loss": "mse"}))],
        ),
    ]
}

/// The sections a grid sweep's report has: one, comparing every job.
pub fn grid_section() -> Section {
    Section { key: "all", title: "All jobs", question: "How do the settings of the grid compare?" }
}

fn merge(base: &Map<String, Value>, over: &Map<String, Value>) -> Value {
    let mut m = base.clone();
    for (k, v) in over {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

/// Parses one job's spec; its errors are renamed to where they came from in the request.
fn parse_job(spec: &Value, origin: impl Fn(&str) -> String, errors: &mut Vec<FieldError>) -> Option<Spec> {
    match Spec::parse(spec) {
        Ok(s) => Some(s),
        Err(e) => {
            for f in e.0 {
                let fe = err(origin(&f.field), f.message);
                if !errors.contains(&fe) {
                    errors.push(fe);
                }
            }
            None
        }
    }
}

/// Validates a whole sweep request and lays out its jobs; `seed` is used when neither the
/// base, the overrides nor the grid set one, so every job of a sweep shares it.
pub fn plan(body: &Value, seed: u64) -> Result<Plan, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![err(
            "(body)",
            "a sweep is a JSON object: {\"base\", \"vary\"} or {\"preset\", \"overrides\"}",
        )]);
    };
    let mut errors = Vec::new();
    let allowed = ["name", "base", "vary", "preset", "overrides"];
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(err(k.clone(), format!("unknown field; allowed: {}", allowed.join(", "))));
        }
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(v) => match crate::spec::check_name(v) {
            Ok(s) => Some(s.to_string()),
            Err(why) => {
                errors.push(err("name", why));
                None
            }
        },
    };
    let object = |key: &str, errors: &mut Vec<FieldError>| match obj.get(key) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(v) => {
            errors.push(err(key, format!("must be a JSON object of spec fields, got {v}")));
            Map::new()
        }
    };
    let jobs = if let Some(preset) = obj.get("preset") {
        if obj.contains_key("base") || obj.contains_key("vary") {
            errors.push(err("preset", "a preset takes \"overrides\", not \"base\" or \"vary\""));
        }
        let Some(sections) = preset.as_str().and_then(sections_of) else {
            let names: Vec<String> = PRESETS.iter().map(|p| format!("\"{p}\"")).collect();
            errors.push(err("preset", format!("the presets are {}, got {preset}", names.join(", "))));
            return Err(errors);
        };
        let mut overrides = object("overrides", &mut errors);
        if preset == OPTIMIZERS_PRESET {
            // N.B.: the preset's jobs are its optimisers; overriding one would make two of
            // them the same job, or another optimiser's setting would fail the others.
            let set: Vec<&'static str> = crate::spec::FIELD_DOCS
                .iter()
                .filter(|d| {
                    matches!(d.name, "optimizer" | "lr" | "lr_schedule" | "warmup_epochs") || !d.optimizers.is_empty()
                })
                .map(|d| d.name)
                .collect();
            let before = errors.len();
            for key in overrides.keys().filter(|k| set.contains(&k.as_str())) {
                errors.push(err(
                    format!("overrides.{key}"),
                    format!("the optimizers preset sets each job's optimiser and its settings; it takes overrides of the others (epochs, batch_size, train_limit, weight_decay, …), not of {}", set.join(", ")),
                ));
            }
            if errors.len() > before {
                return Err(errors);
            }
        }
        overrides.entry("seed").or_insert(json!(seed));
        preset_jobs(sections, &overrides, &mut errors)
    } else {
        let mut base = object("base", &mut errors);
        let vary = object("vary", &mut errors);
        if !vary.contains_key("seed") {
            base.entry("seed").or_insert(json!(seed));
        }
        grid_jobs(&base, &vary, &mut errors)
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    // N.B.: a sweep is named even when the request names none: lists and reports say what
    // it is ("The CIFAR-10 assignment", "Grid over batch_size × lr"), not a hex id.
    let name = name.or_else(|| match obj.get("preset").and_then(Value::as_str) {
        Some(p) => preset_title(p).map(str::to_owned),
        None => obj
            .get("vary")
            .and_then(Value::as_object)
            .map(|v| format!("Grid over {}", v.keys().cloned().collect::<Vec<_>>().join(" × "))),
    });
    Ok(Plan { name, jobs })
}

fn grid_jobs(base: &Map<String, Value>, vary: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Vec<PlannedJob> {
    if vary.is_empty() {
        errors.push(err(
            "vary",
            "name at least one spec field with a list of values, e.g. {\"batch_size\": [1, 4, 1000]}",
        ));
        return Vec::new();
    }
    // N.B.: every key is checked, and the grid's size computed with checked arithmetic, before
    // anything is expanded: 64 axes of two values overflow a usize and are refused here. An
    // unknown key is no axis; the known ones are still checked, so every problem shows at once.
    let known = |k: &String| is_field(k);
    let mut unknown = Vec::new();
    for (place, k) in base.keys().map(|k| ("base", k)).chain(vary.keys().map(|k| ("vary", k))) {
        if !known(k) {
            unknown.push(err(
                format!("{place}.{k}"),
                format!("unknown field; allowed fields: {}", field_names().join(", ")),
            ));
        }
    }
    let base: Map<String, Value> = base.iter().filter(|(k, _)| known(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let base = &base;
    let mut axes: Vec<(&String, &Vec<Value>)> = Vec::new();
    for (k, v) in vary {
        if !is_field(k) {
            continue;
        }
        match v.as_array() {
            Some(values) if !values.is_empty() => axes.push((k, values)),
            _ => errors.push(err(format!("vary.{k}"), format!("must be a non-empty list of values, got {v}"))),
        }
        if base.contains_key(k) && k != "seed" {
            errors.push(err(format!("vary.{k}"), "is also set in base; set it in one place"));
        }
    }
    let total = axes.iter().try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()).filter(|&n| n <= MAX_JOBS));
    let Some(_) = total else {
        let exact = axes.iter().try_fold(1u128, |n, (_, v)| n.checked_mul(v.len() as u128));
        let size = exact.map_or_else(|| "more than 2^128".to_string(), |n| n.to_string());
        errors
            .push(err("vary", format!("the grid has {size} combinations; a sweep may queue at most {MAX_JOBS} jobs")));
        errors.extend(unknown);
        return Vec::new();
    };
    if !errors.is_empty() {
        errors.extend(unknown);
        return Vec::new();
    }
    let mut points: Vec<Map<String, Value>> = vec![Map::new()];
    for (k, values) in &axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert((*k).clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    let mut jobs = Vec::new();
    for point in points {
        let origin = |f: &str| match point.get(f) {
            Some(v) => format!("vary.{f} (value {v})"),
            None => format!("base.{f}"),
        };
        if let Some(spec) = parse_job(&merge(base, &point), origin, errors) {
            let label = point
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect::<Vec<_>>()
                .join(", ");
            jobs.push(PlannedJob { spec, point, sections: vec![("all".into(), label)] });
        }
    }
    errors.extend(unknown);
    jobs
}

fn preset_jobs(
    sections: PresetSections,
    overrides: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Vec<PlannedJob> {
    let mut jobs: Vec<PlannedJob> = Vec::new();
    for (section, members) in sections {
        for (label, settings) in members {
            let settings = settings.as_object().cloned().unwrap_or_default();
            let Some(spec) = parse_job(&merge(overrides, &settings), |f| format!("overrides.{f}"), errors) else {
                continue;
            };
            // Sections that name the same experiment share one job.
            let entry = (section.key.to_string(), label.to_string());
            match jobs.iter_mut().find(|j| j.spec == spec) {
                Some(j) => j.sections.push(entry),
                None => jobs.push(PlannedJob { spec, point: settings, sections: vec![entry] }),
            }
        }
    }
    // Each job is named by its first section's label ("batch 1000"), after the sweep's own
    // name when the overrides give one, so lists and comparisons say what it is.
    for j in &mut jobs {
        let label = &j.sections[0].1;
        let name = match &j.spec.name {
            Some(n) => format!("{n}: {label}"),
            None => label.clone(),
        };
        j.spec.name = Some(name.chars().take(crate::spec::NAME_CHARS).collect());
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_optimizers_preset_compares_five_recipes_on_the_tutorial_cnn() {
        let p = plan(&json!({"preset": OPTIMIZERS_PRESET, "overrides": {"epochs": 3}}), 7).unwrap();
        let got: Vec<(&str, f64, u32)> =
            p.jobs.iter().map(|j| (j.spec.optimizer.as_str(), j.spec.lr, j.spec.epochs)).collect();
        assert_eq!(
            got,
            [("sgd", 0.001, 3), ("sgd", 0.001, 3), ("adam", 0.001, 3), ("adamw", 0.001, 3), ("adadelta", 1.0, 3)]
        );
        let mnist = &p.jobs[4].spec;
        assert_eq!(mnist.lr_at(3), 1.0 * 0.7 * 0.7, "StepLR(1, 0.7)");
        assert!(p.jobs.iter().all(|j| j.spec.model == crate::spec::ModelKind::Cnn && j.spec.seed == 7));
        let e =
            plan(&json!({"preset": OPTIMIZERS_PRESET, "overrides": {"momentum": 0.5, "epochs": 2}}), 7).unwrap_err();
        assert_eq!(e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["overrides.momentum"]);
        let e = plan(&json!({"preset": "mnist"}), 7).unwrap_err();
        assert!(e[0].message.contains("\"cifar10-assignment\", \"optimizers\""), "{}", e[0].message);
    }

    #[test]
    fn the_preset_queues_twelve_distinct_jobs_with_the_tutorial_net_shared() {
        let p = plan(&json!({"preset": PRESET, "overrides": {"epochs": 2}}), 7).unwrap();
        assert_eq!(p.jobs.len(), 12);
        assert!(p.jobs.iter().all(|j| j.spec.epochs == 2 && j.spec.seed == 7));
        let tutorial = p.jobs.iter().find(|j| j.point.is_empty()).unwrap();
        let keys: Vec<&str> = tutorial.sections.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["tutorial", "linear", "cnn", "batch_size", "lr", "augment", "mse"]);
    }

    #[test]
    fn a_grid_is_every_combination_and_names_each_bad_value() {
        let p =
            plan(&json!({"base": {"epochs": 3}, "vary": {"batch_size": [1, 4], "lr": [0.1, 0.01, 0.001]}}), 1).unwrap();
        assert_eq!(p.jobs.len(), 6);
        assert_eq!(p.jobs[5].sections[0].1, "batch_size=4, lr=0.001");
        let e = plan(&json!({"base": {"epochs": 0}, "vary": {"lr": [0.1, -1]}}), 1).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["base.epochs", "vary.lr (value -1)"]);
        let e = plan(&json!({"vary": {"lr": []}}), 1).unwrap_err();
        assert_eq!(e[0].field, "vary.lr");
        let many: Vec<u32> = (1..=11).collect();
        let e = plan(&json!({"vary": {"batch_size": many, "epochs": many}}), 1).unwrap_err();
        assert!(e[0].message.contains("121 combinations"), "{:?}", e);
    }

    #[test]
    fn a_grid_of_64_axes_is_refused_before_it_is_expanded() {
        // 2^64 combinations: a usize product wraps to 0 in release builds.
        let vary: Map<String, Value> = (0..64).map(|i| (format!("a{i:02}"), json!([1, 2]))).collect();
        let e = plan(&json!({"vary": vary}), 1).unwrap_err();
        assert_eq!(e.len(), 64, "only the unknown fields: {e:?}");
        assert!(e.iter().all(|f| f.field.starts_with("vary.a") && f.message.starts_with("unknown field")), "{e:?}");
        // The same size over known fields: the count is exact, and nothing is built.
        let values: Vec<u64> = (1..=2).collect();
        let mut vary = Map::new();
        for f in ["epochs", "batch_size", "lr", "momentum", "seed", "train_limit", "hidden"] {
            vary.insert(f.into(), json!(values));
        }
        let huge: Vec<u64> = (1..=1_000_000).collect();
        vary.insert("epochs".into(), json!(huge));
        let e = plan(&json!({"vary": vary}), 1).unwrap_err();
        assert_eq!(e[0].field, "vary");
        assert!(e[0].message.contains("64000000 combinations"), "{e:?}");
    }
}
