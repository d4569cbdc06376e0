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
    diverged: bool,
}

fn stats(j: &JobView) -> Stats {
    let best = j.epochs.iter().map(|e| (e.test_acc, e.epoch)).fold(None, |b: Option<(f64, u32)>, x| match b {
        Some(b) if b.0 >= x.0 => Some(b),
        _ => Some(x),
    });
    Stats {
        final_test: j.epochs.last().map(|e| e.test_acc),
        best_test: best,
        final_train: j.epochs.last().map(|e| e.train_acc),
        diverged: j.epochs.iter().any(|e| e.diverged),
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
    let diverged: Vec<&str> = with.iter().filter(|(_, s)| s.diverged).map(|(j, _)| j.label.as_str()).collect();
    if !diverged.is_empty() {
        out.push(format!("Diverged (loss not finite): {}.", diverged.join(", ")));
    }
    for (j, s) in &with {
        let (best, at) = s.best_test.expect("has epochs");
        let last = j.epochs.last().expect("has epochs");
        let train_at_best = j.epochs.iter().find(|e| e.epoch == at).map_or(0.0, |e| e.train_acc);
        // Two points either way, so one noisy epoch does not make a finding.
        if at < last.epoch && best - last.test_acc >= 0.02 && last.train_acc - train_at_best >= 0.02 && !s.diverged {
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The section's three-panel figure (loss, training and test accuracy).
fn section_figure(sv: &SectionView) -> Figure<'_> {
    Figure {
        // The section's heading and settings line stand above the figure already.
        title: String::new(),
        subtitle: String::new(),
        series: sv.jobs.iter().map(|j| Series { label: j.label.clone(), epochs: &j.epochs }).collect(),
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

fn table_rows(sv: &SectionView) -> Vec<[String; 7]> {
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
                s.final_train.map_or("–".into(), pct) + if s.diverged { " · diverged" } else { "" },
            ]
        })
        .collect()
}

const HEADERS: [&str; 7] =
    ["job", "status", "parameters", "epochs", "final test acc", "best test acc", "final train acc"];

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0 1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         th{{background:#f3f3f3}}td.n{{text-align:right}}.q{{color:#555;font-style:italic}}.f li{{margin:.2em 0}}\
         section{{border-top:1px solid #ddd;margin-top:2em}}svg{{max-width:100%;height:auto}}</style></head><body>\n\
         <h1>{title}</h1>\n<p>Sweep <code>{id}</code>, created {created}. {summary}</p>\n",
        title = escape(&r.title),
        id = escape(&r.sweep_id),
        created = escape(&r.created_at),
        summary = escape(&summary(r)),
    );
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
        for f in findings(&sv.jobs) {
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
    let _ = write!(m, "# {}\n\nSweep `{}`, created {}. {}\n", r.title, r.sweep_id, r.created_at, summary(r));
    for sv in &r.sections {
        let _ = write!(m, "\n## {}\n\n*{}*\n\n", sv.section.title, sv.section.question);
        if !sv.shared.is_empty() {
            let _ = write!(m, "Shared settings: {}\n\n", sv.shared);
        }
        let _ = writeln!(m, "| {} |", HEADERS.join(" | "));
        let _ = writeln!(m, "|{}", "---|".repeat(HEADERS.len()));
        for row in table_rows(sv) {
            let _ = writeln!(m, "| {} |", row.join(" | "));
        }
        m.push('\n');
        for f in findings(&sv.jobs) {
            let _ = writeln!(m, "- {f}");
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
    fn findings_name_the_best_the_diverged_and_a_real_fall_in_test_accuracy() {
        let jobs = vec![
            job("a", &[(0.3, 0.3), (0.5, 0.45), (0.7, 0.40)], None),
            job("b", &[(0.3, 0.3), (0.4, 0.35), (0.45, 0.345)], None),
            job("c", &[(0.1, 0.1), (0.1, 0.1), (0.1, 0.1)], Some(1)),
        ];
        let f = findings(&jobs);
        assert_eq!(f[0], "Best test accuracy: a, 45.0% in epoch 2.");
        assert_eq!(f[1], "Diverged (loss not finite): c.");
        assert!(f[2].starts_with("a: test accuracy peaked at 45.0% in epoch 2 and fell to 40.0%"), "{f:?}");
        assert_eq!(f.len(), 3, "b's half-point dip is noise, not a finding: {f:?}");
        assert_eq!(findings(&[job("x", &[], None)]), ["No epoch has finished yet."]);
    }
}
