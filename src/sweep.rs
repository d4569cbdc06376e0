//! Pure: a sweep request → the jobs to queue. A grid (`base` + `vary`, every combination), a
//! search (`base` + `search`: `trials` points sampled from a space) or a preset (the
//! assignment, with its learning rates searched if asked; the optimisers compared),
//! validated as a whole before anything is queued, with its early-stopping rule.

use crate::search::{Distribution, EarlyStop, Space};
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
    /// Whether the sweep's early-stopping rule watches it (a search's trial, a grid's job).
    pub trial: bool,
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
    /// The rule that stops its trials early, if any.
    pub early_stop: Option<EarlyStop>,
    /// The seed its search sampled with (recorded in the sweep's definition, so the search
    /// can be repeated); `None` for a sweep that samples nothing.
    pub sampling_seed: Option<u64>,
}

/// Trials the assignment's searched learning-rate section runs unless told otherwise.
pub const LR_SEARCH_TRIALS: usize = 9;
/// The range that section searches: the fixed section's 0.0001 to 10.
pub const LR_SEARCH_RANGE: (f64, f64) = (0.0001, 10.0);

/// The section a search's report has: its trials.
pub fn search_section() -> Section {
    Section {
        key: "search",
        title: "Search",
        question: "Which settings of the space train best, and what did stopping bad trials early save?",
    }
}

/// The assignment's learning-rate section when its rates are searched.
pub fn lr_search_section() -> Section {
    Section {
        key: "lr",
        title: "6. Learning rate, searched",
        question: "Which learning rate in [0.0001, 10], sampled log-uniformly, trains the tutorial CNN best, with \
                   ASHA stopping the runs that do not learn, and what did stopping them save?",
    }
}

/// Whether a sweep's definition asks the assignment's learning rates to be searched.
pub fn searches_lr(definition: &Value) -> bool {
    definition.get("lr_search").is_some_and(|v| v != &Value::Bool(false) && !v.is_null())
}

/// A stored sweep's early-stopping rule, from its definition (validated when it was made;
/// the assignment with lr_search and no rule of its own gets ASHA's defaults).
pub fn early_stop_of(definition: &Value) -> Option<EarlyStop> {
    match definition.get("early_stop") {
        None | Some(Value::Null) if definition.get("preset").is_some() && searches_lr(definition) => {
            Some(EarlyStop::Asha { metric: crate::search::Metric::TestAcc, grace_epochs: 1, reduction: 3 })
        }
        None | Some(Value::Null) => None,
        Some(v) => EarlyStop::parse(v).ok(),
    }
}

/// A stored sweep's report sections, in order, from its definition.
pub fn sections_for_definition(definition: &Value) -> Vec<Section> {
    match definition.get("preset").and_then(Value::as_str).and_then(sections_of) {
        Some(sections) => sections
            .into_iter()
            .map(|(s, _)| if s.key == "lr" && searches_lr(definition) { lr_search_section() } else { s })
            .collect(),
        None if definition.get("search").is_some() => vec![search_section()],
        None => vec![grid_section()],
    }
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
    let allowed =
        ["name", "base", "vary", "search", "trials", "seed", "early_stop", "preset", "overrides", "lr_search"];
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
    let lr_search = obj.get("preset").is_some() && searches_lr(body);
    let samples = obj.contains_key("search") || lr_search;
    // The search's sampling seed: the request's, or the sweep's drawn one (recorded).
    let sampling_seed = match obj.get("seed") {
        None | Some(Value::Null) => seed,
        Some(v) => match crate::search::whole(v) {
            Some(n) if samples => n,
            Some(_) => {
                let place = if obj.contains_key("preset") { "overrides.seed" } else { "base.seed" };
                errors.push(err(
                    "seed",
                    format!("a sweep's seed samples a search's trials (search, or lr_search for the preset); set the jobs' training seed in {place}"),
                ));
                seed
            }
            None => {
                errors.push(err("seed", format!("must be a whole number from 0 to 2^64-1, got {v}")));
                seed
            }
        },
    };
    let early_stop = match obj.get("early_stop") {
        None | Some(Value::Null) => early_stop_of(body),
        Some(v) => match EarlyStop::parse(v) {
            Ok(rule) => Some(rule),
            Err(es) => {
                errors.extend(es.into_iter().map(|(f, m)| err(f, m)));
                None
            }
        },
    };
    if obj.contains_key("trials") && !obj.contains_key("search") {
        errors.push(err(
            "trials",
            "trials counts a search's samples; give \"search\" too (the preset takes \"lr_search\": {\"trials\": N})",
        ));
    }
    let jobs = if let Some(preset) = obj.get("preset") {
        for k in ["base", "vary", "search"] {
            if obj.contains_key(k) {
                errors.push(err(
                    k,
                    "a preset takes \"overrides\" (and \"lr_search\"), not \"base\", \"vary\" or \"search\"",
                ));
            }
        }
        let Some(sections) = preset.as_str().and_then(sections_of) else {
            let names: Vec<String> = PRESETS.iter().map(|p| format!("\"{p}\"")).collect();
            errors.push(err("preset", format!("the presets are {}, got {preset}", names.join(", "))));
            return Err(errors);
        };
        let lr_trials = match obj.get("lr_search") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(_) if preset != PRESET => {
                errors.push(err(
                    "lr_search",
                    format!("only the \"{PRESET}\" preset has a learning-rate section to search"),
                ));
                None
            }
            Some(Value::Bool(true)) => Some(LR_SEARCH_TRIALS),
            Some(Value::Object(o)) if o.keys().all(|k| k == "trials") => {
                match o.get("trials").map(|t| crate::search::whole(t).filter(|n| (2..=MAX_JOBS as u64 - 8).contains(n)))
                {
                    None => Some(LR_SEARCH_TRIALS),
                    Some(Some(n)) => Some(n as usize),
                    Some(None) => {
                        let most = MAX_JOBS - 8;
                        errors.push(err(
                            "lr_search.trials",
                            format!("must be a whole number from 2 to {most} (the assignment's 8 other jobs make {MAX_JOBS}, the most a sweep may queue)"),
                        ));
                        None
                    }
                }
            }
            Some(v) => {
                errors.push(err("lr_search", format!("must be true, false or {{\"trials\": N}}, got {v}")));
                None
            }
        };
        if early_stop.is_some() && !lr_search {
            errors.push(err(
                "early_stop",
                "a preset's sections compare fixed runs; early stopping applies to a search, a grid, or the preset with lr_search",
            ));
        }
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
        // With a search, the training seed is the sampling seed unless set: the recorded
        // definition repeats the whole study, not only its points.
        overrides.entry("seed").or_insert(json!(if lr_search { sampling_seed } else { seed }));
        let sections = match lr_trials {
            // The fixed rates give way to the search; the tutorial's 0.001 stays as the
            // reference the trials are read against.
            Some(_) => sections
                .into_iter()
                .map(|(s, jobs)| match s.key {
                    "lr" => (lr_search_section(), jobs.into_iter().filter(|(_, v)| v.get("lr").is_none()).collect()),
                    _ => (s, jobs),
                })
                .collect(),
            None => sections,
        };
        let mut jobs = preset_jobs(sections, &overrides, &mut errors);
        if let Some(trials) = lr_trials {
            let (lo, hi) = LR_SEARCH_RANGE;
            let space = Space(vec![("lr".into(), Distribution::LogUniform(lo, hi))]);
            let sampled = sampled_jobs(
                &overrides,
                &space,
                trials,
                sampling_seed,
                "lr",
                |f| format!("overrides.{f}"),
                &mut errors,
            );
            jobs.extend(sampled);
        }
        jobs
    } else if let Some(search) = obj.get("search") {
        if obj.contains_key("vary") {
            errors.push(err("vary", "a sweep is a grid (vary) or a search (search), not both"));
        }
        let base = object("base", &mut errors);
        let space = parse_space(search, &base, &mut errors);
        let trials = match obj.get("trials") {
            Some(t) => crate::search::whole(t)
                .filter(|n| (1..=MAX_JOBS as u64).contains(n))
                .map(|n| n as usize)
                .or_else(|| {
                    errors.push(err("trials", format!("must be a whole number from 1 to {MAX_JOBS}, got {t}")));
                    None
                }),
            None => {
                errors.push(err(
                    "trials",
                    format!("a search samples \"trials\" points: a whole number from 1 to {MAX_JOBS}"),
                ));
                None
            }
        };
        let mut base = base;
        base.entry("seed").or_insert(json!(sampling_seed));
        match (space, trials) {
            (Some(space), Some(trials)) if errors.is_empty() => {
                sampled_jobs(&base, &space, trials, sampling_seed, "search", |f| format!("base.{f}"), &mut errors)
            }
            _ => Vec::new(),
        }
    } else {
        let mut base = object("base", &mut errors);
        let vary = object("vary", &mut errors);
        if !vary.contains_key("seed") {
            base.entry("seed").or_insert(json!(seed));
        }
        let mut jobs = grid_jobs(&base, &vary, &mut errors);
        for j in &mut jobs {
            j.trial = early_stop.is_some();
        }
        jobs
    };
    let trial_count = jobs.iter().filter(|j| j.trial).count();
    if let Some(EarlyStop::Median { min_trials, .. }) = early_stop {
        if trial_count > 0 && min_trials as usize >= trial_count {
            errors.push(err(
                "early_stop.median.min_trials",
                format!("is {min_trials}, but there are {trial_count} trials: no trial would ever have that many others to compare with; choose fewer than {trial_count}"),
            ));
        }
    }
    if let (Some(rule), Some(most)) = (&early_stop, jobs.iter().filter(|j| j.trial).map(|j| j.spec.epochs).max()) {
        if rule.grace_epochs() >= most && lr_search && obj.get("early_stop").is_none_or(Value::is_null) {
            errors.push(err(
                "lr_search",
                format!("the learning-rate search's ASHA judges its trials first after epoch 1, so they need 2 or more epochs; overrides.epochs is {most}"),
            ));
        } else if rule.grace_epochs() >= most {
            errors.push(err(
                format!("early_stop.{}.grace_epochs", rule.name()),
                format!(
                    "is {}, but the trials train at most {most} epochs: the rule would never judge one; choose fewer than {most}",
                    rule.grace_epochs()
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // N.B.: a sweep is named even when the request names none: lists and reports say what
    // it is ("The CIFAR-10 assignment", "Grid over batch_size × lr"), not a hex id.
    let keys =
        |key: &str| obj.get(key).and_then(Value::as_object).map(|v| v.keys().cloned().collect::<Vec<_>>().join(" × "));
    let name = name.or_else(|| match obj.get("preset").and_then(Value::as_str) {
        Some(p) => {
            preset_title(p).map(|t| if lr_search { format!("{t}, learning rates searched") } else { t.to_owned() })
        }
        None if obj.contains_key("search") => keys("search").map(|k| format!("Search over {k}")),
        None => keys("vary").map(|k| format!("Grid over {k}")),
    });
    Ok(Plan { name, jobs, early_stop, sampling_seed: samples.then_some(sampling_seed) })
}

/// A search's space: each key a spec field not set in `base`, each value a distribution.
fn parse_space(search: &Value, base: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Space> {
    let Some(obj) = search.as_object().filter(|o| !o.is_empty()) else {
        let names: Vec<&str> = crate::search::DISTRIBUTIONS.iter().map(|(n, _)| *n).collect();
        errors.push(err(
            "search",
            format!(
                "must be an object of spec fields, each with a distribution ({}), e.g. {{\"lr\": {{\"log_uniform\": [0.0001, 1.0]}}}}; got {search}",
                names.join(", ")
            ),
        ));
        return None;
    };
    let before = errors.len();
    let mut dims = Vec::new();
    for (k, v) in obj {
        if !is_field(k) {
            errors.push(err(
                format!("search.{k}"),
                format!("unknown field; allowed fields: {}", field_names().join(", ")),
            ));
            continue;
        }
        if base.contains_key(k) {
            errors.push(err(format!("search.{k}"), "is also set in base; set it in one place"));
        }
        match Distribution::parse(v) {
            Ok(d) => dims.push((k.clone(), d)),
            Err(why) => errors.push(err(format!("search.{k}"), why)),
        }
    }
    (errors.len() == before).then_some(Space(dims))
}

/// `trials` points of `space` on top of `base`, each validated as a job (its errors named
/// `{place}.FIELD (value V)`) and labelled `trial N: field=value, …`; all are trials.
fn sampled_jobs(
    base: &Map<String, Value>,
    space: &Space,
    trials: usize,
    seed: u64,
    place: &str,
    base_origin: impl Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Vec<PlannedJob> {
    let section = if place == "lr" { "lr" } else { "search" };
    // A field's error names the value it was given, and where: `search.batch_size (value 0)`.
    let origin_in = |point: &Map<String, Value>, f: &str| match point.get(f) {
        Some(v) if place == "lr" => format!("lr_search (sampled {f} {v})"),
        Some(v) => format!("{place}.{f} (value {v})"),
        None => base_origin(f),
    };
    // N.B.: each distribution's ends (and every choice) first, so whether a search is
    // accepted does not depend on what its seed happens to draw.
    let before = errors.len();
    for (field, d) in &space.0 {
        for probe in d.probes() {
            let point: Map<String, Value> = [(field.clone(), probe)].into_iter().collect();
            parse_job(&merge(base, &point), |f| origin_in(&point, f), errors);
        }
    }
    if errors.len() > before {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    for (i, point) in space.sample(trials, seed).into_iter().enumerate() {
        if let Some(mut spec) = parse_job(&merge(base, &point), |f| origin_in(&point, f), errors) {
            let label = format!("trial {}: {}", i + 1, point_label(&point));
            // A search's own name goes before each trial's label; the assignment's trials
            // are named by their label, as its other jobs are.
            let name = match &spec.name {
                Some(n) if place == "search" => format!("{n}: {label}"),
                _ => label.clone(),
            };
            spec.name = Some(name.chars().take(crate::spec::NAME_CHARS).collect());
            jobs.push(PlannedJob { spec, point, sections: vec![(section.into(), label)], trial: true });
        }
    }
    jobs
}

/// `lr=0.003467, momentum=0.87`: a point as its label shows it.
fn point_label(point: &Map<String, Value>) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect::<Vec<_>>()
        .join(", ")
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
            let label = point_label(&point);
            jobs.push(PlannedJob { spec, point, sections: vec![("all".into(), label)], trial: false });
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
                None => jobs.push(PlannedJob { spec, point: settings, sections: vec![entry], trial: false }),
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
    fn the_assignment_with_lr_search_samples_its_learning_rates_under_asha() {
        let p = plan(&json!({"preset": PRESET, "lr_search": true, "overrides": {"epochs": 3}}), 7).unwrap();
        assert_eq!(p.jobs.len(), 12 - 4 + LR_SEARCH_TRIALS, "the four fixed rates give way to the trials");
        let trials: Vec<&PlannedJob> = p.jobs.iter().filter(|j| j.trial).collect();
        assert_eq!(trials.len(), LR_SEARCH_TRIALS);
        assert!(trials.iter().all(|j| (0.0001..=10.0).contains(&j.spec.lr) && j.sections[0].0 == "lr"));
        assert!(trials.iter().all(|j| j.spec.epochs == 3 && j.spec.seed == 7));
        assert!(!p.jobs.iter().any(|j| !j.trial && [10.0, 0.1, 0.01, 0.0001].contains(&j.spec.lr)));
        let tutorial = p.jobs.iter().find(|j| j.point.is_empty()).unwrap();
        assert!(tutorial.sections.iter().any(|(k, l)| k == "lr" && l == "lr 0.001 (tutorial)"), "the reference stays");
        assert_eq!(
            p.early_stop,
            Some(EarlyStop::Asha { metric: crate::search::Metric::TestAcc, grace_epochs: 1, reduction: 3 })
        );
        assert_eq!(p.sampling_seed, Some(7));
        let def = json!({"preset": PRESET, "lr_search": true});
        let titles: Vec<&str> = sections_for_definition(&def).iter().map(|s| s.title).collect();
        assert_eq!(titles[5], "6. Learning rate, searched");
        assert_eq!(p.name.as_deref(), Some("The CIFAR-10 assignment, learning rates searched"));
        let again = plan(&json!({"preset": PRESET, "lr_search": {"trials": 4}, "seed": 11}), 7).unwrap();
        assert_eq!(again.jobs.iter().filter(|j| j.trial).count(), 4);
        assert_eq!(again.sampling_seed, Some(11));
        for (bad, field) in [
            (json!({"preset": OPTIMIZERS_PRESET, "lr_search": true}), "lr_search"),
            (json!({"preset": PRESET, "lr_search": {"trials": 1}}), "lr_search.trials"),
            (json!({"preset": PRESET, "early_stop": {"asha": {}}}), "early_stop"),
            (json!({"base": {}, "vary": {"lr": [0.1]}, "seed": 3}), "seed"),
        ] {
            let e = plan(&bad, 7).unwrap_err();
            assert_eq!(e[0].field, field, "{bad}: {e:?}");
        }
    }

    #[test]
    fn a_search_is_accepted_or_refused_whatever_its_seed_draws() {
        // 0 is a batch size no seed may draw: refused for every seed, even those that draw none.
        let body = json!({"search": {"batch_size": {"int_uniform": [0, 64]}}, "trials": 2});
        for seed in 0..20 {
            let e = plan(&body, seed).unwrap_err();
            assert_eq!(e[0].field, "search.batch_size (value 0)", "seed {seed}: {e:?}");
        }
        // A real-valued distribution over whole numbers is refused, whatever it would draw.
        let e = plan(&json!({"search": {"batch_size": {"uniform": [1, 64]}}, "trials": 2}), 3).unwrap_err();
        assert!(e[0].field.starts_with("search.batch_size (value 24.3"), "{e:?}");
        let ok =
            plan(&json!({"search": {"batch_size": {"int_uniform": [1, 64]}}, "trials": 50.0, "seed": 9}), 3).unwrap();
        assert_eq!(ok.jobs.len(), 50, "50.0 is a whole number, as JSON Schema's integer allows");
        assert!(ok.jobs.iter().all(|j| j.spec.seed == 9), "the sampling seed is the training seed");
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
