//! Pure: a sweep's report, as one self-contained HTML page (inline SVG, no scripts, no
//! external files), as Markdown whose figures link to the plot routes, or as a zip of the
//! Markdown with its figures as files beside it (what a student pastes into their write-up).

use crate::job::{EpochMetrics, JobStatus};
use crate::plot::{self, Figure, Format, Metric, Series};
use crate::sweep::Section;
use std::fmt::Write;

/// One job as a section shows it.
pub struct JobView {
    pub label: String,
    pub id: String,
    pub status: JobStatus,
    pub parameters: i64,
    pub epochs_total: i64,
    pub epochs: Vec<EpochMetrics>,
    /// Its spec as `Spec::to_json` writes it (`Null` when unknown).
    pub spec: serde_json::Value,
}

pub struct SectionView {
    pub section: Section,
    /// The settings the section's jobs share.
    pub shared: String,
    pub jobs: Vec<JobView>,
    /// The search whose trials this section shows, if any.
    pub search: Option<SearchView>,
}

/// A search as its sweep, report and page show it: its rule, its rungs with the trials that
/// reached each, the best trial so far, and the epochs stopping early saved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchView {
    /// The section its trials are in (`search`, or the assignment's `lr`).
    pub section: String,
    /// The early-stopping rule, as `{"asha": {...}}` or `{"median": {...}}`; `None` for a
    /// search that runs every trial to its end.
    pub early_stop: Option<crate::search::EarlyStop>,
    /// The metric trials are compared by (the rule's, else test accuracy).
    pub metric: crate::search::Metric,
    /// The seed the trials were sampled with.
    pub sampling_seed: Option<u64>,
    /// The searched fields, in order, with their distribution as given.
    pub space: Vec<(String, serde_json::Value)>,
    pub trials: Vec<TrialView>,
    /// ASHA's rungs (none for the median rule), lowest first.
    pub rungs: Vec<RungView>,
    /// The trial with the best value of the metric in any epoch so far.
    pub best: Option<TrialView>,
    /// Epochs the trials ran, and would have run with none stopped early.
    pub epochs_run: u64,
    pub epochs_full: u64,
    /// Epochs not run because trials stopped early (`epochs_full` − what stopped trials
    /// would still have run); `epochs_saved / epochs_full` is the share saved.
    pub epochs_saved: u64,
}

/// One trial of a search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrialView {
    pub id: String,
    pub label: String,
    pub status: JobStatus,
    /// Its sampled settings.
    pub point: serde_json::Value,
    pub epochs_done: i64,
    pub epochs_total: i64,
    /// Its best value of the metric in any epoch, and that epoch.
    pub best: Option<f64>,
    pub best_epoch: Option<u32>,
    /// The highest ASHA rung it reached (0 = the first), if any.
    pub rung: Option<u32>,
    /// The decision that stopped it, in words.
    pub stopped_because: Option<String>,
    /// Its owner resumed it after it stopped early; the rule judges it no more.
    pub resumed: bool,
}

/// One ASHA rung: its epoch, and each trial that reached it with its value and verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RungView {
    pub rung: u32,
    pub epoch: u32,
    /// (trial id, label, value at the rung, went on), in the order they arrived.
    pub trials: Vec<RungEntry>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RungEntry {
    pub id: String,
    pub label: String,
    pub value: Option<f64>,
    pub promoted: bool,
}

pub struct Report {
    pub sweep_id: String,
    pub title: String,
    pub created_at: String,
    pub sections: Vec<SectionView>,
}

/// What the numbers of one job say.
struct Stats {
    final_test: Option<f64>,
    best_test: Option<(f64, u32)>,
    final_train: Option<f64>,
    diverged: Option<u32>,
    /// Wall time of its finished epochs, evaluation included.
    seconds: f64,
    /// Its best test accuracy is within two points of chance (1 / classes): it learned nothing.
    at_chance: bool,
}

/// Accuracy at chance (1 / classes) for a job's dataset.
fn chance(j: &JobView) -> Option<f64> {
    let name = j.spec.get("dataset").and_then(|d| d.as_str())?;
    crate::dataset::named(name).map(crate::dataset::Dataset::chance)
}

fn stats(j: &JobView) -> Stats {
    let best = crate::search::Metric::TestAcc.best_by(j.epochs.iter().map(|e| (e.test_acc, e.epoch)));
    let at_chance = match (best, chance(j)) {
        (Some((b, _)), Some(c)) => b < c + 0.02,
        _ => false,
    };
    Stats {
        final_test: j.epochs.last().map(|e| e.test_acc),
        best_test: best,
        final_train: j.epochs.last().map(|e| e.train_acc),
        diverged: j.epochs.iter().find(|e| e.diverged).map(|e| e.epoch),
        seconds: j.epochs.iter().map(|e| e.seconds).sum(),
        at_chance,
    }
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A few factual sentences drawn from the numbers.
pub fn findings(jobs: &[JobView]) -> Vec<String> {
    let mut out = Vec::new();
    let with: Vec<(&JobView, Stats)> = jobs.iter().filter(|j| !j.epochs.is_empty()).map(|j| (j, stats(j))).collect();
    if with.is_empty() {
        return vec!["No epoch has finished yet.".into()];
    }
    if let Some((j, s)) =
        with.iter().max_by(|a, b| a.1.best_test.map(|b| b.0).partial_cmp(&b.1.best_test.map(|b| b.0)).unwrap())
    {
        let (acc, epoch) = s.best_test.expect("has epochs");
        let done = j.epochs.len() as i64;
        let progress =
            if done < j.epochs_total { format!(" (after {done} of {} epochs)", j.epochs_total) } else { String::new() };
        if with.len() > 1 {
            out.push(format!("Best test accuracy: {}, {} in epoch {epoch}{progress}.", j.label, pct(acc)));
        } else {
            out.push(format!("{} reached {} test accuracy, best in epoch {epoch}{progress}.", j.label, pct(acc)));
        }
    }
    let diverged: Vec<String> =
        with.iter().filter_map(|(j, s)| s.diverged.map(|n| format!("{} (from epoch {n})", j.label))).collect();
    if !diverged.is_empty() {
        out.push(format!(
            "Diverged (the loss became NaN or infinite; the accuracies after that mean nothing): {}.",
            diverged.join(", ")
        ));
    }
    let stuck: Vec<String> = with
        .iter()
        .filter(|(_, s)| s.at_chance && s.diverged.is_none())
        .map(|(j, s)| format!("{} ({})", j.label, s.best_test.map_or("–".into(), |b| pct(b.0))))
        .collect();
    if !stuck.is_empty() {
        let c = with.iter().find_map(|(j, _)| chance(j)).unwrap_or(0.1);
        out.push(format!(
            "At chance level ({} for guessing among {} classes; these runs learned nothing): {}.",
            pct(c),
            (1.0 / c).round(),
            stuck.join(", ")
        ));
    }
    for (j, s) in &with {
        let (best, at) = s.best_test.expect("has epochs");
        let last = j.epochs.last().expect("has epochs");
        let train_at_best = j.epochs.iter().find(|e| e.epoch == at).map_or(0.0, |e| e.train_acc);
        // Two points either way, so one noisy epoch does not make a finding.
        if at < last.epoch
            && best - last.test_acc >= 0.02
            && last.train_acc - train_at_best >= 0.02
            && s.diverged.is_none()
        {
            out.push(format!(
                "{}: test accuracy peaked at {} in epoch {at} and fell to {} while training accuracy kept rising, from {} to {}.",
                j.label,
                pct(best),
                pct(last.test_acc),
                pct(train_at_best),
                pct(last.train_acc)
            ));
        }
    }
    out
}

/// The sentences that answer a preset section's question, from its jobs and the rest of the
/// report (the no-ReLU MLP set against the linear model of section 2, say). Empty for a
/// section without a written answer (a grid's), or while the jobs it needs have no epoch.
pub fn answers(r: &Report, sv: &SectionView) -> Vec<String> {
    let jobs = || r.sections.iter().flat_map(|s| s.jobs.iter());
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| jobs().find(|j| !j.epochs.is_empty() && pred(&j.spec));
    let str_of = |spec: &serde_json::Value, k: &str| spec.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let is = |spec: &serde_json::Value, k: &str, v: &str| str_of(spec, k).as_deref() == Some(v);
    let plain = |spec: &serde_json::Value| {
        spec.get("augment").is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)) && is(spec, "loss", "cross_entropy")
    };
    let best = |j: &JobView| stats(j).best_test.map(|b| b.0);
    let acc = |j: &JobView| best(j).map_or("–".into(), pct);
    let points = |a: f64, b: f64| format!("{:+.1} points", (a - b) * 100.0);
    let tutorial = sv.jobs.iter().chain(jobs()).find(|j| {
        is(&j.spec, "model", "cnn")
            && j.spec.get("batch_size") == Some(&4.into())
            && plain(&j.spec)
            && !j.epochs.is_empty()
    });
    let linear = find(&|s| is(s, "model", "linear") && plain(s));
    let mlp_relu = find(&|s| is(s, "model", "mlp") && is(s, "activation", "relu") && plain(s));
    let mlp_none = find(&|s| is(s, "model", "mlp") && is(s, "activation", "none") && plain(s));
    let mut out = Vec::new();
    match sv.section.key {
        "linear" => {
            if let (Some(l), Some(c)) = (linear, tutorial) {
                if let (Some(a), Some(b)) = (best(l), best(c)) {
                    out.push(format!(
                        "The linear model reached {} and the tutorial CNN {} ({} for the convolutions and depth), with {} against {} parameters.",
                        pct(a), pct(b), points(b, a), plot::thousands(l.parameters), plot::thousands(c.parameters)
                    ));
                }
            }
        }
        "mlp" => {
            if let (Some(n), Some(l)) = (mlp_none, linear) {
                if let (Some(a), Some(b)) = (best(n), best(l)) {
                    let verdict = if (a - b).abs() < 0.02 {
                        "as that argument predicts, within two points of each other".to_string()
                    } else {
                        format!("{} apart: the same functions, reached by another path (the factored layers train differently)", points(a, b).trim_start_matches('+'))
                    };
                    out.push(format!(
                        "Without an activation the three layers compose to a single linear map (3072→10): the same function class as the linear model of section 2. The MLP without activation reached {}, the linear model {}; {verdict}.",
                        pct(a), pct(b)
                    ));
                }
            }
            if let (Some(rl), Some(n)) = (mlp_relu, mlp_none) {
                if let (Some(a), Some(b)) = (best(rl), best(n)) {
                    out.push(format!("With ReLU the MLP reached {} ({} over no activation): the non-linearity is what the extra layers add.", pct(a), points(a, b)));
                }
            }
        }
        "cnn" => {
            let named: Vec<String> =
                [("the CNN", tutorial), ("the MLP with ReLU", mlp_relu), ("the linear model", linear)]
                    .iter()
                    .filter_map(|(name, j)| {
                        j.map(|j| format!("{name} {} with {} parameters", acc(j), plot::thousands(j.parameters)))
                    })
                    .collect();
            if named.len() > 1 {
                out.push(format!("Best test accuracy: {}.", named.join("; ")));
            }
        }
        "batch_size" => {
            let steps = |j: &JobView| {
                let images = j.spec.get("train_limit").and_then(|v| v.as_u64()).unwrap_or(50_000);
                let batch = j.spec.get("batch_size").and_then(|v| v.as_u64()).unwrap_or(4).max(1);
                images.div_ceil(batch)
            };
            let each: Vec<String> = sv
                .jobs
                .iter()
                .filter(|j| !j.epochs.is_empty())
                .map(|j| {
                    let st = stats(j);
                    format!(
                        "{}: {} per epoch ({} optimiser steps), best test accuracy {}",
                        j.label,
                        plot::duration(st.seconds / j.epochs.len() as f64),
                        plot::thousands(steps(j) as i64),
                        acc(j)
                    )
                })
                .collect();
            if !each.is_empty() {
                out.push(format!("{}. A larger batch takes fewer, averaged steps per epoch: faster epochs, but at one learning rate it needs more of them.", each.join("; ")));
            }
        }
        "lr" => {
            let ranked: Vec<(&JobView, f64)> = sv.jobs.iter().filter_map(|j| best(j).map(|b| (j, b))).collect();
            if let Some((j, b)) = ranked.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
                let bad: Vec<String> = sv
                    .jobs
                    .iter()
                    .filter_map(|j| {
                        let st = stats(j);
                        if st.diverged.is_some() {
                            Some(format!("{} diverged", j.label))
                        } else if st.at_chance {
                            Some(format!("{} stayed at chance", j.label))
                        } else {
                            None
                        }
                    })
                    .collect();
                let tail = if bad.is_empty() { String::new() } else { format!("; {}", bad.join(", ")) };
                out.push(format!("The best rate here was {} ({}){tail}. Too large a rate overshoots (or diverges); too small a rate barely moves in the epochs given.", j.label, pct(*b)));
            }
        }
        "augment" => {
            let aug = sv.jobs.iter().find(|j| !plain(&j.spec) && !j.epochs.is_empty());
            let none = sv.jobs.iter().find(|j| plain(&j.spec) && !j.epochs.is_empty());
            if let (Some(a), Some(n)) = (aug, none) {
                let (sa, sn) = (stats(a), stats(n));
                if let (Some(ba), Some(bn), Some(ta), Some(tn), Some(fa), Some(fn_)) =
                    (best(a), best(n), sa.final_train, sn.final_train, sa.final_test, sn.final_test)
                {
                    out.push(format!(
                        "Augmentation moved the best test accuracy from {} to {} ({}), and the gap between final training and test accuracy from {:.1} to {:.1} points: it fights overfitting, which shows only once training runs long enough to overfit.",
                        pct(bn), pct(ba), points(ba, bn), (tn - fn_) * 100.0, (ta - fa) * 100.0
                    ));
                }
            }
        }
        "mse" => {
            let mse = sv.jobs.iter().find(|j| is(&j.spec, "loss", "mse") && !j.epochs.is_empty());
            let ce = sv.jobs.iter().find(|j| is(&j.spec, "loss", "cross_entropy") && !j.epochs.is_empty());
            if let (Some(m), Some(c)) = (mse, ce) {
                out.push(format!(
                    "MSE on one-hot targets reached {} against cross-entropy's {} ({}). Their loss values are on different scales (the figure gives each loss its own panel): compare the accuracies, not the losses.",
                    acc(m), acc(c), match (best(m), best(c)) { (Some(a), Some(b)) => points(a, b), _ => "–".into() }
                ));
            }
        }
        _ => {}
    }
    out
}

/// A warning when the study is too short to compare settings: few epochs, or a part of the
/// training set.
pub fn caveat(r: &Report) -> Option<String> {
    let jobs: Vec<&JobView> = r.sections.iter().flat_map(|s| s.jobs.iter()).collect();
    let epochs = jobs.iter().map(|j| j.epochs_total).max()?;
    let limit = jobs.iter().filter_map(|j| j.spec.get("train_limit").and_then(|v| v.as_u64())).max();
    if epochs >= 10 && limit.is_none() {
        return None;
    }
    let on = limit.map_or(String::new(), |n| format!(" on the first {} training images", plot::thousands(n as i64)));
    Some(format!(
        "This study is short ({epochs} epoch{}{on}): it compares settings early in training. Differences of a point or two are noise, and settings that learn slowly (a small learning rate, a large batch, augmentation) have not had their chance; the assignment runs 50 epochs on every image.",
        if epochs == 1 { "" } else { "s" }
    ))
}

/// Text for Markdown: its punctuation escaped, so a name reads as written (`# <script>` is
/// not a heading or a tag).
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The section's three-panel figure (loss, training and test accuracy).
fn section_figure(sv: &SectionView) -> Figure<'_> {
    Figure {
        // The section's heading and settings line stand above the figure already.
        title: String::new(),
        subtitle: String::new(),
        series: sv.jobs.iter().map(|j| Series::of_spec(j.label.clone(), &j.epochs, &j.spec)).collect(),
        metric: Metric::All,
        epochs_total: sv.jobs.iter().map(|j| j.epochs_total as u32).max().unwrap_or(1),
        empty_note: "no epoch finished yet".into(),
        width: 1000,
        height: 700,
        y_axis: Default::default(),
    }
}

fn figure(sv: &SectionView) -> String {
    match plot::render(&section_figure(sv), Format::Svg) {
        Ok(svg) => String::from_utf8_lossy(&svg).into_owned(),
        Err(e) => format!("<p>(the figure could not be drawn: {})</p>", escape(&e.to_string())),
    }
}

fn table_rows(sv: &SectionView) -> Vec<[String; 9]> {
    sv.jobs
        .iter()
        .map(|j| {
            let s = stats(j);
            [
                j.label.clone(),
                j.status.to_string(),
                plot::thousands(j.parameters),
                format!("{}/{}", j.epochs.len(), j.epochs_total),
                s.final_test.map_or("–".into(), pct),
                s.best_test.map_or("–".into(), |(a, e)| format!("{} (epoch {e})", pct(a))),
                s.final_train.map_or("–".into(), pct)
                    + match (s.diverged, s.at_chance) {
                        (Some(_), _) => " · diverged",
                        (None, true) => " · at chance",
                        _ => "",
                    },
                if j.epochs.is_empty() { "–".into() } else { plot::duration(s.seconds) },
                if j.epochs.is_empty() { "–".into() } else { format!("{:.1} s", s.seconds / j.epochs.len() as f64) },
            ]
        })
        .collect()
}

const HEADERS: [&str; 9] = [
    "job",
    "status",
    "parameters",
    "epochs",
    "final test acc",
    "best test acc",
    "final train acc",
    "wall time",
    "per epoch",
];

/// A metric in words: "test accuracy".
fn metric_words(m: crate::search::Metric) -> &'static str {
    use crate::search::Metric as M;
    match m {
        M::TestAcc => "test accuracy",
        M::TrainAcc => "training accuracy",
        M::TestLoss => "test loss",
        M::TrainLoss => "training loss",
    }
}

/// Whether the metric is an accuracy (a fraction, shown in %).
fn is_accuracy(m: crate::search::Metric) -> bool {
    matches!(m, crate::search::Metric::TestAcc | crate::search::Metric::TrainAcc)
}

/// A value of the metric as the report writes it: an accuracy in %, a loss to 4 places.
fn metric_value(m: crate::search::Metric, v: f64) -> String {
    if is_accuracy(m) {
        pct(v)
    } else {
        format!("{v:.4}")
    }
}

/// A sampled or searched value as text: 0.003467, 16, sgd.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), |x| format!("{x}")),
        other => other.to_string(),
    }
}

/// A distribution in words: "log-uniform in [0.0001, 1]".
fn distribution_words(d: &serde_json::Value) -> String {
    use crate::search::Distribution as D;
    match D::parse(d) {
        Ok(D::Uniform(a, b)) => format!("uniform in [{a}, {b}]"),
        Ok(D::LogUniform(a, b)) => format!("log-uniform in [{a}, {b}]"),
        Ok(D::IntUniform(a, b)) => format!("a whole number from {a} to {b}"),
        Ok(D::Choice(values)) => format!("one of {}", values.iter().map(value_text).collect::<Vec<_>>().join(", ")),
        Err(_) => d.to_string(),
    }
}

/// A trial's sampled settings, in the search's order: "lr=0.003467, momentum=0.91".
fn point_text(s: &SearchView, point: &serde_json::Value) -> String {
    let mut parts: Vec<String> =
        s.space.iter().filter_map(|(k, _)| point.get(k).map(|v| format!("{k}={}", value_text(v)))).collect();
    if let Some(o) = point.as_object() {
        parts.extend(
            o.iter()
                .filter(|(k, _)| !s.space.iter().any(|(f, _)| f == *k))
                .map(|(k, v)| format!("{k}={}", value_text(v))),
        );
    }
    parts.join(", ")
}

/// ASHA's rung epochs: from its rule and the trials' epochs, with any rung a decision
/// recorded.
fn rung_epochs(s: &SearchView) -> Vec<u32> {
    let epochs = s.trials.iter().map(|t| t.epochs_total.clamp(0, u32::MAX.into()) as u32).max().unwrap_or(0);
    let mut out = s.early_stop.map_or_else(Vec::new, |r| r.rungs(epochs));
    out.extend(s.rungs.iter().map(|r| r.epoch));
    out.sort_unstable();
    out.dedup();
    out
}

/// The early-stopping rule in words.
pub fn rule_words(s: &SearchView) -> String {
    use crate::search::EarlyStop;
    let words = metric_words(s.metric);
    match s.early_stop {
        None => format!("No early stopping: every trial runs all its epochs; trials are compared by {words}."),
        Some(EarlyStop::Asha { grace_epochs, reduction, .. }) => {
            let rungs = rung_epochs(s);
            if rungs.is_empty() {
                format!(
                    "ASHA (asynchronous successive halving) on {words}, from epoch {grace_epochs} with reduction {reduction}: no rung falls before the trials' last epoch, so every trial runs to its end."
                )
            } else {
                let list = rungs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                format!(
                    "ASHA (asynchronous successive halving) on {words}: rungs at epoch{} {list}; at each, the top 1/{reduction} of the trials that reached it so far go on (the first to arrive always does), and the rest stop there.",
                    if rungs.len() == 1 { "" } else { "s" }
                )
            }
        }
        Some(EarlyStop::Median { grace_epochs, min_trials, .. }) => format!(
            "The median stopping rule on {words}: from epoch {grace_epochs} on, a trial stops when its best {words} so far is worse than the median of the other trials' running averages at the same epoch (once {min_trials} other{} reached it).",
            if min_trials == 1 { " has" } else { "s have" }
        ),
    }
}

/// How many trials stopped early the search block lists by name; the section's table gives
/// every trial's status.
const STOPPED_LISTED: usize = 10;

/// A search's block, in words and rows, for the HTML and the Markdown alike.
struct SearchBlock {
    /// The space, the rule, the seed and the epochs saved: a paragraph each.
    lines: Vec<String>,
    /// "Best" or "Best so far", then the best trial, its value and settings.
    best: (&'static str, String),
    rung_headers: [String; 5],
    rungs: Vec<[String; 5]>,
    /// The trials stopped early, with why (the first `STOPPED_LISTED`), and how many more.
    stopped: Vec<String>,
    more_stopped: usize,
}

fn search_block(s: &SearchView) -> SearchBlock {
    let n = s.trials.len();
    let trials = if n == 1 { "1 trial".to_string() } else { format!("{n} trials") };
    let running = s.trials.iter().any(|t| matches!(t.status, JobStatus::Queued | JobStatus::Running));
    let mut lines = Vec::new();
    if s.space.is_empty() {
        lines.push(format!("{trials}."));
    } else {
        let space: Vec<String> = s.space.iter().map(|(k, d)| format!("{k} {}", distribution_words(d))).collect();
        lines.push(format!("{trials}, sampled from: {}.", space.join("; ")));
    }
    lines.push(rule_words(s));
    if let Some(seed) = s.sampling_seed {
        lines.push(format!("Sampled with seed {seed}: the same request with this seed samples the same trials."));
    }
    if s.early_stop.is_some() {
        let share = if s.epochs_full > 0 { pct(s.epochs_saved as f64 / s.epochs_full as f64) } else { "0.0%".into() };
        let epochs = |k: u64| if k == 1 { "1 epoch".to_string() } else { format!("{k} epochs") };
        lines.push(if running {
            format!(
                "{trials} have run {} so far of the {} that running every trial to its end would take: {share} saved so far ({} not run).",
                epochs(s.epochs_run),
                s.epochs_full,
                epochs(s.epochs_saved)
            )
        } else {
            format!(
                "{trials} ran {} of the {} that running every trial to its end would take: {share} saved ({} not run).",
                epochs(s.epochs_run),
                s.epochs_full,
                epochs(s.epochs_saved)
            )
        });
    }
    let best = match &s.best {
        Some(b) => {
            let value = b.best.map_or("–".into(), |v| metric_value(s.metric, v));
            let epoch = b.best_epoch.map_or(String::new(), |e| format!(" in epoch {e}"));
            let state = match b.status {
                JobStatus::Succeeded => String::new(),
                other => {
                    format!(" ({}, {} of {} epochs)", other.as_str().replace('_', " "), b.epochs_done, b.epochs_total)
                }
            };
            let settings = point_text(s, &b.point);
            let settings = if settings.is_empty() { String::new() } else { format!(" Its settings: {settings}.") };
            let head = if running { "Best so far:" } else { "Best:" };
            (head, format!("{}{state}, {value} {}{epoch}.{settings}", b.label, metric_words(s.metric)))
        }
        None => ("", format!("No trial has a {} yet.", metric_words(s.metric))),
    };
    let rungs = s
        .rungs
        .iter()
        .map(|r| {
            let top = r.trials.iter().filter_map(|e| e.value.filter(|v| v.is_finite()).map(|v| (v, e))).fold(
                None,
                |b: Option<(f64, &RungEntry)>, x| match b {
                    Some(b) if !s.metric.better(x.0, b.0) => Some(b),
                    _ => Some(x),
                },
            );
            [
                r.rung.to_string(),
                r.epoch.to_string(),
                r.trials.len().to_string(),
                r.trials.iter().filter(|e| e.promoted).count().to_string(),
                top.map_or("–".into(), |(v, e)| format!("{} ({})", metric_value(s.metric, v), e.label)),
            ]
        })
        .collect();
    let stopped: Vec<&TrialView> = s.trials.iter().filter(|t| t.status == JobStatus::StoppedEarly).collect();
    SearchBlock {
        lines,
        best,
        rung_headers: [
            "rung".into(),
            "epoch".into(),
            "trials that reached it".into(),
            "went on".into(),
            format!("best {} there", metric_words(s.metric)),
        ],
        rungs,
        more_stopped: stopped.len().saturating_sub(STOPPED_LISTED),
        stopped: stopped
            .iter()
            .take(STOPPED_LISTED)
            .map(|t| {
                format!(
                    "{}, after {} of {} epochs: {}",
                    t.label,
                    t.epochs_done,
                    t.epochs_total,
                    t.stopped_because.as_deref().unwrap_or("no reason recorded")
                )
            })
            .collect(),
    }
}

/// The search's figure: each trial's best value of the metric against each searched setting
/// that is a number; `None` when none is.
fn search_scatter(s: &SearchView) -> Option<plot::Scatter> {
    use crate::search::Distribution as D;
    let percent = is_accuracy(s.metric);
    let best_id = s.best.as_ref().map(|b| b.id.as_str());
    let panels: Vec<plot::ScatterPanel> = s
        .space
        .iter()
        .filter_map(|(field, dist)| {
            let (log, range, ticks, whole) = match D::parse(dist).ok()? {
                D::Uniform(a, b) => (false, Some((a, b)), Vec::new(), false),
                D::LogUniform(a, b) => (true, Some((a, b)), Vec::new(), false),
                D::IntUniform(a, b) => (false, Some((a as f64, b as f64)), Vec::new(), true),
                D::Choice(values) => {
                    // Choices that are all numbers are a numeric axis, logarithmic when they
                    // span decades (batch sizes 4 to 1024).
                    let mut xs = values.iter().map(serde_json::Value::as_f64).collect::<Option<Vec<f64>>>()?;
                    xs.retain(|x| x.is_finite());
                    xs.sort_by(f64::total_cmp);
                    xs.dedup();
                    let (lo, hi) = (*xs.first()?, *xs.last()?);
                    let log = lo > 0.0 && hi / lo >= 20.0;
                    let whole = values.iter().all(|v| v.is_i64() || v.is_u64());
                    let ticks = if xs.len() <= 12 { xs } else { Vec::new() };
                    (log, Some((lo, hi)), ticks, whole)
                }
            };
            let points = s
                .trials
                .iter()
                .filter_map(|t| {
                    Some(plot::TrialPoint {
                        x: t.point.get(field)?.as_f64()?,
                        y: t.best.map(|v| if percent { v * 100.0 } else { v }),
                        stopped: t.status == JobStatus::StoppedEarly,
                        best: best_id == Some(t.id.as_str()),
                    })
                })
                .collect();
            Some(plot::ScatterPanel { field: field.clone(), log, range, ticks, whole, points })
        })
        .collect();
    if panels.is_empty() {
        return None;
    }
    let (width, height) = plot::scatter_size(panels.len());
    let words = metric_words(s.metric);
    Some(plot::Scatter {
        title: String::new(),
        y_desc: if percent { format!("best {words} (%)") } else { format!("lowest {words}") },
        percent,
        panels,
        empty_note: "no trial has finished an epoch yet".into(),
        width,
        height,
    })
}

/// What the search's figure shows, for its caption and alt text.
fn scatter_caption(s: &SearchView) -> String {
    format!("Each trial's best {} against its sampled settings", metric_words(s.metric))
}

/// The search block as HTML, its figure inline.
fn search_html(s: &SearchView) -> String {
    let b = search_block(s);
    let mut h = String::from("<h3>Search</h3>\n");
    for l in &b.lines {
        let _ = writeln!(h, "<p>{}</p>", escape(l));
    }
    let _ = writeln!(h, "<p><strong>{}</strong> {}</p>", b.best.0, escape(&b.best.1));
    if !b.rungs.is_empty() {
        h.push_str(&html_table(&b.rung_headers, &b.rungs, |i| i < 4));
    }
    if !b.stopped.is_empty() {
        let _ = writeln!(h, "<p>Stopped early:</p>\n<ul class=\"f\">");
        for l in &b.stopped {
            let _ = writeln!(h, "<li>{}</li>", escape(l));
        }
        if b.more_stopped > 0 {
            let _ = writeln!(h, "<li>… and {} more (the table above gives every trial's status).</li>", b.more_stopped);
        }
        h.push_str("</ul>\n");
    }
    match search_scatter(s) {
        Some(fig) => {
            let _ = writeln!(h, "<p>{}:</p>", escape(&scatter_caption(s)));
            match plot::scatter(&fig, Format::Svg) {
                Ok(svg) => h.push_str(&String::from_utf8_lossy(&svg)),
                Err(e) => {
                    let _ = write!(h, "<p>(the figure could not be drawn: {})</p>", escape(&e.to_string()));
                }
            }
            h.push('\n');
        }
        None => {
            h.push_str("<p>No searched setting is a number, so there is no figure of settings against results.</p>\n")
        }
    }
    h
}

/// The search block as Markdown; `figure` links the search's figure (given its section key
/// and caption).
fn search_markdown(s: &SearchView, key: &str, figure: &dyn Fn(&str, &str) -> String) -> String {
    let b = search_block(s);
    let mut m = String::from("### Search\n\n");
    for l in &b.lines {
        let _ = write!(m, "{}\n\n", md(l));
    }
    if b.best.0.is_empty() {
        let _ = write!(m, "{}\n\n", md(&b.best.1));
    } else {
        let _ = write!(m, "**{}** {}\n\n", b.best.0, md(&b.best.1));
    }
    if !b.rungs.is_empty() {
        m.push_str(&md_table(&b.rung_headers, &b.rungs));
    }
    if !b.stopped.is_empty() {
        m.push_str("Stopped early:\n\n");
        for l in &b.stopped {
            let _ = writeln!(m, "- {}", md(l));
        }
        if b.more_stopped > 0 {
            let _ = writeln!(m, "- … and {} more (the table above gives every trial's status).", b.more_stopped);
        }
        m.push('\n');
    }
    match search_scatter(s) {
        Some(_) => {
            let _ = write!(m, "{}\n\n", figure(key, &scatter_caption(s)));
        }
        None => m.push_str("No searched setting is a number, so there is no figure of settings against results.\n\n"),
    }
    m
}

/// An HTML table of `rows` under `headers`, every cell escaped; the columns `numeric` picks
/// are aligned right.
pub(crate) fn html_table<H: AsRef<str>, R: AsRef<[String]>>(
    headers: &[H],
    rows: &[R],
    numeric: impl Fn(usize) -> bool,
) -> String {
    let mut h = String::from("<table><tr>");
    for th in headers {
        let _ = write!(h, "<th>{}</th>", escape(th.as_ref()));
    }
    h.push_str("</tr>\n");
    for row in rows {
        h.push_str("<tr>");
        for (i, cell) in row.as_ref().iter().enumerate() {
            let class = if numeric(i) { " class=\"n\"" } else { "" };
            let _ = write!(h, "<td{class}>{}</td>", escape(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// A Markdown table of `rows` under `headers`, every cell escaped, and the blank line after.
pub(crate) fn md_table<H: AsRef<str>, R: AsRef<[String]>>(headers: &[H], rows: &[R]) -> String {
    let line =
        |cells: &mut dyn Iterator<Item = &str>| format!("| {} |\n", cells.map(md).collect::<Vec<_>>().join(" | "));
    let mut m = line(&mut headers.iter().map(AsRef::as_ref));
    let _ = writeln!(m, "|{}", "---|".repeat(headers.len()));
    for row in rows {
        m.push_str(&line(&mut row.as_ref().iter().map(String::as_str)));
    }
    m.push('\n');
    m
}

/// A self-contained report page's head, style and title, with `intro` (HTML, escaped by
/// the caller) as its first paragraph: what a sweep's and a class's report share.
pub(crate) fn page_head(title: &str, intro: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0 1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         th{{background:#f3f3f3}}td.n{{text-align:right}}.q{{color:#555;font-style:italic}}.f li{{margin:.2em 0}}\
         section{{border-top:1px solid #ddd;margin-top:2em}}.warn{{background:#fff6e0;border-left:4px solid #9a6700;padding:.5em .8em}}svg{{max-width:100%;height:auto}}</style></head><body>\n\
         <h1>{title}</h1>\n<p>{intro}</p>\n",
        title = escape(title),
    )
}

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let intro = format!(
        "Sweep <code>{}</code>, created {}. {}",
        escape(&r.sweep_id),
        escape(&r.created_at),
        escape(&summary(r))
    );
    let mut h = page_head(&r.title, &intro);
    if let Some(c) = caveat(r) {
        let _ = writeln!(h, "<p class=\"warn\"><strong>Note:</strong> {}</p>", escape(&c));
    }
    for sv in &r.sections {
        let _ = write!(
            h,
            "<section id=\"{}\">\n<h2>{}</h2>\n<p class=\"q\">{}</p>\n",
            sv.section.key,
            escape(sv.section.title),
            escape(sv.section.question)
        );
        if !sv.shared.is_empty() {
            let _ = writeln!(h, "<p>Shared settings: {}</p>", escape(&sv.shared));
        }
        h.push_str(&html_table(&HEADERS, &table_rows(sv), |i| i >= 2));
        if let Some(search) = &sv.search {
            h.push_str(&search_html(search));
        }
        h.push_str("<ul class=\"f\">\n");
        for f in answers(r, sv).into_iter().chain(findings(&sv.jobs)) {
            let _ = writeln!(h, "<li>{}</li>", escape(&f));
        }
        h.push_str("</ul>\n");
        h.push_str(&figure(sv));
        h.push_str("\n</section>\n");
    }
    h.push_str("</body></html>\n");
    h
}

fn summary(r: &Report) -> String {
    let mut seen = std::collections::BTreeMap::<&str, &str>::new();
    for sv in &r.sections {
        for j in &sv.jobs {
            seen.insert(&j.id, j.status.as_str());
        }
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for s in seen.values() {
        *counts.entry(s).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} jobs: {}.", seen.len(), parts.join(", "))
}

/// The report as Markdown; each section's figures link to the sweep's plot route (which
/// needs the token: see `bundle` for a report that stands alone).
pub fn markdown(r: &Report) -> String {
    markdown_with(
        r,
        |key| {
            [("loss", "loss"), ("train_acc", "training accuracy"), ("test_acc", "test accuracy")]
                .map(|(metric, name)| format!("![{name}](/sweeps/{}/plot?section={key}&metric={metric})", r.sweep_id))
                .join("\n")
        },
        // No plot route draws a search's figure.
        &|_, caption| {
            format!(
                "The figure of {} is in the HTML report and in the zip (`?format=zip`).",
                md(&caption.to_lowercase())
            )
        },
    )
}

/// The Markdown report: `figures` gives a section's figures (from its key), `search_figure`
/// its search's figure (from its key and caption).
fn markdown_with(r: &Report, figures: impl Fn(&str) -> String, search_figure: &dyn Fn(&str, &str) -> String) -> String {
    let mut m = String::new();
    let _ = write!(m, "# {}\n\nSweep `{}`, created {}. {}\n", md(&r.title), r.sweep_id, r.created_at, md(&summary(r)));
    if let Some(c) = caveat(r) {
        let _ = write!(m, "\n> **Note:** {}\n", md(&c));
    }
    for sv in &r.sections {
        let _ = write!(m, "\n## {}\n\n*{}*\n\n", md(sv.section.title), md(sv.section.question));
        if !sv.shared.is_empty() {
            let _ = write!(m, "Shared settings: {}\n\n", md(&sv.shared));
        }
        m.push_str(&md_table(&HEADERS, &table_rows(sv)));
        if let Some(search) = &sv.search {
            m.push_str(&search_markdown(search, sv.section.key, search_figure));
        }
        for f in answers(r, sv).into_iter().chain(findings(&sv.jobs)) {
            let _ = writeln!(m, "- {}", md(&f));
        }
        m.push('\n');
        let _ = writeln!(m, "{}", figures(sv.section.key));
    }
    m
}

/// The Markdown report in a zip with its figures as files: `report.md`, and for each section
/// `figures/SECTION.png` (linked from the Markdown) and `figures/SECTION.svg`, and for a
/// section with a search `figures/SECTION-search.png` and `.svg`.
pub fn bundle(r: &Report) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let md = markdown_with(
        r,
        |key| format!("![Loss, training and test accuracy](figures/{key}.png)\n\n(Also as [SVG](figures/{key}.svg).)"),
        &|key, caption| {
            format!("![{}](figures/{key}-search.png)\n\n(Also as [SVG](figures/{key}-search.svg).)", md(caption))
        },
    );
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    // N.B.: PNG is compressed already; storing it saves time and loses nothing.
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("report.md", deflated)?;
    zip.write_all(md.as_bytes())?;
    for sv in &r.sections {
        let fig = section_figure(sv);
        zip.start_file(format!("figures/{}.png", sv.section.key), stored)?;
        zip.write_all(&plot::render(&fig, Format::Png)?)?;
        zip.start_file(format!("figures/{}.svg", sv.section.key), deflated)?;
        zip.write_all(&plot::render(&fig, Format::Svg)?)?;
        if let Some(fig) = sv.search.as_ref().and_then(search_scatter) {
            zip.start_file(format!("figures/{}-search.png", sv.section.key), stored)?;
            zip.write_all(&plot::scatter(&fig, Format::Png)?)?;
            zip.start_file(format!("figures/{}-search.svg", sv.section.key), deflated)?;
            zip.write_all(&plot::scatter(&fig, Format::Svg)?)?;
        }
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(label: &str, accs: &[(f64, f64)], diverged_at: Option<usize>) -> JobView {
        JobView {
            label: label.into(),
            id: label.into(),
            status: JobStatus::Succeeded,
            parameters: 1,
            epochs_total: accs.len() as i64,
            spec: serde_json::json!({"loss": "cross_entropy", "dataset": "cifar10"}),
            epochs: accs
                .iter()
                .enumerate()
                .map(|(i, &(train, test))| EpochMetrics {
                    epoch: i as u32 + 1,
                    train_loss: if Some(i) == diverged_at { None } else { Some(1.0) },
                    train_acc: train,
                    test_loss: Some(1.0),
                    test_acc: test,
                    seconds: 1.0,
                    train_seconds: 1.0,
                    samples_per_second: 1.0,
                    diverged: Some(i) == diverged_at,
                    lr: None,
                })
                .collect(),
        }
    }

    #[test]
    fn runs_at_chance_are_named_a_short_study_is_flagged_and_markdown_is_escaped() {
        let jobs = vec![
            job("lr 0.0001", &[(0.1, 0.1), (0.11, 0.105)], None),
            job("tutorial", &[(0.3, 0.3), (0.5, 0.45)], None),
        ];
        let f = findings(&jobs);
        assert!(
            f.iter().any(|l| l.starts_with("At chance level (10.0% for guessing among 10 classes")
                && l.contains("lr 0.0001 (10.5%)")),
            "{f:?}"
        );
        let section = Section { key: "lr", title: "6. Learning rate", question: "?" };
        let r = Report {
            sweep_id: "s".into(),
            title: "# <script>alert(1)</script> *bold*".into(),
            created_at: "now".into(),
            sections: vec![SectionView { section, shared: String::new(), jobs, search: None }],
        };
        let c = caveat(&r).expect("two epochs is short");
        assert!(c.starts_with("This study is short (2 epochs)"), "{c}");
        let md = markdown(&r);
        assert!(md.starts_with("# \\# &lt;script&gt;alert(1)&lt;/script&gt; \\*bold\\*\n"), "{}", &md[..80]);
        assert!(!md.contains("<script>"));
        let answers = answers(&r, &r.sections[0]);
        assert!(
            answers[0].starts_with("The best rate here was tutorial (45.0%); lr 0.0001 stayed at chance"),
            "{answers:?}"
        );
    }

    #[test]
    fn findings_name_the_best_the_diverged_and_a_real_fall_in_test_accuracy() {
        let jobs = vec![
            job("a", &[(0.3, 0.3), (0.5, 0.45), (0.7, 0.40)], None),
            job("b", &[(0.3, 0.3), (0.4, 0.35), (0.45, 0.345)], None),
            job("c", &[(0.1, 0.1), (0.1, 0.1), (0.1, 0.1)], Some(1)),
        ];
        let f = findings(&jobs);
        assert_eq!(f[0], "Best test accuracy: a, 45.0% in epoch 2.");
        assert_eq!(
            f[1],
            "Diverged (the loss became NaN or infinite; the accuracies after that mean nothing): c (from epoch 2)."
        );
        assert!(f[2].starts_with("a: test accuracy peaked at 45.0% in epoch 2 and fell to 40.0%"), "{f:?}");
        assert_eq!(f.len(), 3, "b's half-point dip is noise, not a finding: {f:?}");
        assert_eq!(findings(&[job("x", &[], None)]), ["No epoch has finished yet."]);
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;
    use crate::search::{EarlyStop, Metric as M};
    use serde_json::json;

    fn trial(n: u32, lr: f64, status: JobStatus, done: i64, best: f64, why: Option<&str>) -> TrialView {
        TrialView {
            id: format!("t{n}"),
            label: format!("trial {n}: lr={lr}"),
            status,
            point: json!({"lr": lr, "momentum": 0.9}),
            epochs_done: done,
            epochs_total: 9,
            best: Some(best),
            best_epoch: Some(done as u32),
            rung: None,
            stopped_because: why.map(str::to_owned),
            resumed: false,
        }
    }

    fn entry(t: &TrialView, value: f64, promoted: bool) -> RungEntry {
        RungEntry { id: t.id.clone(), label: t.label.clone(), value: Some(value), promoted }
    }

    /// Three trials of 9 epochs under ASHA (grace 1, reduction 3: rungs at epochs 1 and 3):
    /// trial 1 runs to its end, trial 2 stops at the first rung, trial 3 at the second.
    fn search() -> SearchView {
        let t1 = trial(1, 0.003467, JobStatus::Succeeded, 9, 0.612, None);
        let t2 = trial(
            2,
            0.1,
            JobStatus::StoppedEarly,
            1,
            0.1,
            Some("rung 0 (epoch 1): test_acc 0.1 ranks 2 of 2 so far; the best goes on: stopped"),
        );
        let t3 = trial(
            3,
            0.0002,
            JobStatus::StoppedEarly,
            3,
            0.35,
            Some("rung 1 (epoch 3): test_acc 0.35 ranks 2 of 2 so far; the best goes on: stopped"),
        );
        SearchView {
            section: "search".into(),
            early_stop: Some(EarlyStop::Asha { metric: M::TestAcc, grace_epochs: 1, reduction: 3 }),
            metric: M::TestAcc,
            sampling_seed: Some(7),
            space: vec![
                ("lr".into(), json!({"log_uniform": [0.0001, 1.0]})),
                ("momentum".into(), json!({"uniform": [0.5, 0.99]})),
            ],
            rungs: vec![
                RungView {
                    rung: 0,
                    epoch: 1,
                    trials: vec![entry(&t1, 0.30, true), entry(&t2, 0.10, false), entry(&t3, 0.35, true)],
                },
                RungView { rung: 1, epoch: 3, trials: vec![entry(&t1, 0.45, true), entry(&t3, 0.35, false)] },
            ],
            best: Some(t1.clone()),
            // 9 + 1 + 3 run; 27 in full; 8 + 6 not run.
            epochs_run: 13,
            epochs_full: 27,
            epochs_saved: 14,
            trials: vec![t1, t2, t3],
        }
    }

    fn report(search: SearchView) -> Report {
        let jobs = search
            .trials
            .iter()
            .map(|t| JobView {
                label: t.label.clone(),
                id: t.id.clone(),
                status: t.status,
                parameters: 62006,
                epochs_total: t.epochs_total,
                epochs: Vec::new(),
                spec: json!({"loss": "cross_entropy", "dataset": "cifar10"}),
            })
            .collect();
        let section = Section { key: "search", title: "Search", question: "Which learning rate?" };
        Report {
            sweep_id: "s".into(),
            title: "lr search".into(),
            created_at: "now".into(),
            sections: vec![SectionView { section, shared: String::new(), jobs, search: Some(search) }],
        }
    }

    const RULE: &str = "ASHA (asynchronous successive halving) on test accuracy: rungs at epochs 1, 3; at each, the top 1/3 of the trials that reached it so far go on";
    const SAVED: &str = "3 trials ran 13 epochs of the 27 that running every trial to its end would take: 51.9% saved (14 epochs not run).";
    const SEED: &str = "Sampled with seed 7: the same request with this seed samples the same trials.";
    const BEST: &str = "trial 1: lr=0.003467, 61.2% test accuracy in epoch 9. Its settings: lr=0.003467, momentum=0.9.";

    #[test]
    fn the_html_report_says_the_rule_the_epochs_saved_and_the_best_trial_with_its_figure() {
        let h = html(&report(search()));
        for text in [RULE, SAVED, SEED, "lr log-uniform in [0.0001, 1]; momentum uniform in [0.5, 0.99]"] {
            assert!(h.contains(&escape(text)), "{text:?} in\n{h}");
        }
        assert!(h.contains(&format!("<p><strong>Best:</strong> {BEST}</p>")), "{h}");
        assert!(
            h.contains("<tr><td class=\"n\">0</td><td class=\"n\">1</td><td class=\"n\">3</td><td class=\"n\">2</td><td>35.0% (trial 3: lr=0.0002)</td></tr>"),
            "rung 0: 3 reached it, 2 went on, trial 3 best there"
        );
        assert!(h.contains("<td>45.0% (trial 1: lr=0.003467)</td>"));
        assert!(h.contains("<li>trial 2: lr=0.1, after 1 of 9 epochs: rung 0 (epoch 1)"), "why it stopped");
        // The block stands between the trials' table and the section's curves, with its
        // scatter inline: one panel per searched number.
        let (table, search, curves) =
            (h.find("<th>job</th>").unwrap(), h.find("<h3>Search</h3>").unwrap(), h.rfind("<svg").unwrap());
        assert!(table < search && search < curves);
        let scatter = &h[search..h[search..].find("</svg>").unwrap() + search];
        for label in ["lr (log scale)", "momentum", plot::STOPPED_EARLY, plot::RAN_ON, "best test accuracy (%)"] {
            assert!(scatter.contains(&format!(">\n{label}\n<")), "the scatter shows {label:?}");
        }
    }

    #[test]
    fn the_markdown_says_the_same_and_the_zip_holds_the_scatter() {
        let r = report(search());
        let m = markdown(&r);
        for text in [RULE, SAVED, SEED] {
            assert!(m.contains(&md(text)), "{text:?} in\n{m}");
        }
        assert!(m.contains(&format!("**Best:** {BEST}\n")), "{m}");
        assert!(m.contains("| 0 | 1 | 3 | 2 | 35.0% (trial 3: lr=0.0002) |"), "{m}");
        assert!(m.contains("- trial 3: lr=0.0002, after 3 of 9 epochs: rung 1 (epoch 3): test\\_acc 0.35"), "{m}");
        assert!(m.contains("The figure of each trial's best test accuracy against its sampled settings is in the HTML report and in the zip"));

        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle(&r).unwrap())).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("report.md").unwrap(), &mut text).unwrap();
        assert!(
            text.contains("](figures/search-search.png)") && text.contains("](figures/search-search.svg)"),
            "{text}"
        );
        let mut png = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name("figures/search-search.png").unwrap(), &mut png).unwrap();
        let (w, h) = plot::scatter_size(2);
        assert_eq!(image::load_from_memory(&png).unwrap().to_rgb8().dimensions(), (w, h));
        assert!(zip.by_name("figures/search-search.svg").is_ok());
    }

    #[test]
    fn a_search_with_no_values_yet_or_other_rules_reads_well() {
        let mut s = search();
        for t in &mut s.trials {
            (t.status, t.best, t.best_epoch, t.epochs_done, t.stopped_because) =
                (JobStatus::Queued, None, None, 0, None);
        }
        (s.best, s.rungs, s.epochs_run, s.epochs_saved) = (None, Vec::new(), 0, 0);
        let h = html(&report(s.clone()));
        assert!(
            h.contains("No trial has a test accuracy yet.") && h.contains("no trial has finished an epoch yet"),
            "{h}"
        );
        assert!(h.contains("3 trials have run 0 epochs so far of the 27 that running every trial to its end would take: 0.0% saved so far"));

        s.early_stop = Some(EarlyStop::Median { metric: M::TestLoss, grace_epochs: 2, min_trials: 3 });
        s.metric = M::TestLoss;
        s.space.push(("augment".into(), json!({"choice": [[], ["horizontal_flip"]]})));
        let b = search_block(&s);
        assert_eq!(
            b.lines[1],
            "The median stopping rule on test loss: from epoch 2 on, a trial stops when its best test loss so far is worse than the median of the other trials' running averages at the same epoch (once 3 others have reached it)."
        );
        let fig = search_scatter(&s).unwrap();
        assert_eq!(
            fig.panels.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["lr", "momentum"],
            "a choice of lists is no axis"
        );
        assert_eq!(fig.y_desc, "lowest test loss");

        s.early_stop = None;
        let b = search_block(&s);
        assert!(!b.lines.iter().any(|l| l.contains("saved")), "nothing stopped early, nothing saved: {:?}", b.lines);
        s.space.retain(|(k, _)| k == "augment");
        assert!(search_scatter(&s).is_none());
        assert!(html(&report(s)).contains("No searched setting is a number"));
    }
}
