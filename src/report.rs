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
    let best = j.epochs.iter().map(|e| (e.test_acc, e.epoch)).fold(None, |b: Option<(f64, u32)>, x| match b {
        Some(b) if b.0 >= x.0 => Some(b),
        _ => Some(x),
    });
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

fn pct(x: f64) -> String {
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
fn md(s: &str) -> String {
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

fn escape(s: &str) -> String {
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

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0 1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         th{{background:#f3f3f3}}td.n{{text-align:right}}.q{{color:#555;font-style:italic}}.f li{{margin:.2em 0}}\
         section{{border-top:1px solid #ddd;margin-top:2em}}.warn{{background:#fff6e0;border-left:4px solid #9a6700;padding:.5em .8em}}svg{{max-width:100%;height:auto}}</style></head><body>\n\
         <h1>{title}</h1>\n<p>Sweep <code>{id}</code>, created {created}. {summary}</p>\n",
        title = escape(&r.title),
        id = escape(&r.sweep_id),
        created = escape(&r.created_at),
        summary = escape(&summary(r)),
    );
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
        h.push_str("<table><tr>");
        for th in HEADERS {
            let _ = write!(h, "<th>{th}</th>");
        }
        h.push_str("</tr>\n");
        for row in table_rows(sv) {
            h.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if i >= 2 { " class=\"n\"" } else { "" };
                let _ = write!(h, "<td{class}>{}</td>", escape(cell));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n<ul class=\"f\">\n");
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
    markdown_with(r, |key| {
        [("loss", "loss"), ("train_acc", "training accuracy"), ("test_acc", "test accuracy")]
            .map(|(metric, name)| format!("![{name}](/sweeps/{}/plot?section={key}&metric={metric})", r.sweep_id))
            .join("\n")
    })
}

fn markdown_with(r: &Report, figures: impl Fn(&str) -> String) -> String {
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
        let _ = writeln!(m, "| {} |", HEADERS.join(" | "));
        let _ = writeln!(m, "|{}", "---|".repeat(HEADERS.len()));
        for row in table_rows(sv) {
            let _ = writeln!(m, "| {} |", row.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        }
        m.push('\n');
        for f in answers(r, sv).into_iter().chain(findings(&sv.jobs)) {
            let _ = writeln!(m, "- {}", md(&f));
        }
        m.push('\n');
        let _ = writeln!(m, "{}", figures(sv.section.key));
    }
    m
}

/// The Markdown report in a zip with its figures as files: `report.md`, and for each section
/// `figures/SECTION.png` (linked from the Markdown) and `figures/SECTION.svg`.
pub fn bundle(r: &Report) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let md = markdown_with(r, |key| {
        format!("![Loss, training and test accuracy](figures/{key}.png)\n\n(Also as [SVG](figures/{key}.svg).)")
    });
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
            sections: vec![SectionView { section, shared: String::new(), jobs }],
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
