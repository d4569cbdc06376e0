//! Pure: a class's view of one assignment (a preset). Each student's newest submission of
//! it as a row (completion, each section's headline numbers, flags worth an instructor's
//! look), the class's quartiles per run, the same as CSV for a gradebook, and the data of
//! the class figures (a section's curves over the class's median band, its spread of final
//! test accuracy).
//!
//! A run is one (section, label) of the assignment, e.g. ("lr", "lr 0.1"); the tutorial's
//! network is one job shown in several sections, as in the sweep's report. A searched
//! section (the assignment's `lr_search`) has different trials per student: each student's
//! best trial stands for it, as the run "best trial".

pub mod report;

use crate::job::{EpochMetrics, JobStatus};
use crate::plot;
use crate::plot::class::{BandPoint, ClassCurves, ClassPanel, ClassStrip, StripPanel, StudentCurve, StudentValue};
use crate::search::Metric;
use serde::Serialize;

/// The run a searched section's trials are summed up as.
pub const BEST_TRIAL: &str = "best trial";
/// A final test accuracy within this of chance (as a fraction) counts as at chance.
const CHANCE_MARGIN: f64 = 0.02;
/// A result outside Tukey's fences is far from the class only if also this far from its
/// median (as a fraction), so a tight class does not flag half a point.
const FAR_MIN: f64 = 0.05;
/// Others needed before a result is judged against the class.
const MIN_PEERS: usize = 3;

/// One job of a submission, as the queue has it.
#[derive(Debug, Clone)]
pub struct RunData {
    pub job_id: String,
    /// (section key, label) of each assignment section that shows it.
    pub sections: Vec<(String, String)>,
    pub status: JobStatus,
    pub epochs_done: i64,
    pub epochs_total: i64,
    pub diverged: bool,
    /// Whether it is a trial of the assignment's searched section.
    pub trial: bool,
    pub epochs: Vec<EpochMetrics>,
    /// Accuracy at chance, as a fraction (1 / classes), if known.
    pub chance: Option<f64>,
}

/// One student's submissions of the assignment: the newest, and the older ones.
#[derive(Debug, Clone)]
pub struct Submission {
    pub student: String,
    pub sweep_id: String,
    pub created_at: String,
    /// (id, created_at) of their older sweeps of it, newest first.
    pub earlier: Vec<(String, String)>,
    pub runs: Vec<RunData>,
}

/// The assignment as it is set: its sections in order, each with its runs' labels and the
/// epochs each run is asked to train.
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    pub key: String,
    pub title: String,
    pub sections: Vec<SectionHead>,
    /// Epochs each of its runs trains unless a student overrides them.
    pub epochs: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SectionHead {
    pub key: String,
    pub title: String,
    /// Its runs' labels, in the assignment's order.
    pub runs: Vec<String>,
}

impl Assignment {
    /// The preset named `key`, as its plan with no overrides sets it; `None` for a name
    /// that is not a preset.
    pub fn of_preset(key: &str) -> Option<Assignment> {
        let title = crate::sweep::preset_title(key)?;
        let sections = crate::sweep::sections_of(key)?;
        let plan = crate::sweep::plan(&serde_json::json!({ "preset": key }), 0).ok()?;
        let epochs = plan.jobs.first().map_or(0, |j| i64::from(j.spec.epochs));
        Some(Assignment {
            key: key.into(),
            title: title.into(),
            sections: sections
                .into_iter()
                .map(|(s, runs)| SectionHead {
                    key: s.key.into(),
                    title: s.title.into(),
                    runs: runs.into_iter().map(|(l, _)| l.to_string()).collect(),
                })
                .collect(),
            epochs,
        })
    }

    fn section(&self, key: &str) -> Option<&SectionHead> {
        self.sections.iter().find(|s| s.key == key)
    }
}

/// A run's headline numbers in a student's row.
#[derive(Debug, Clone, Serialize)]
pub struct RunCell {
    pub section: String,
    pub label: String,
    /// The job; for a searched section, its best trial's.
    pub job: String,
    pub status: JobStatus,
    pub epochs_done: i64,
    pub epochs_total: i64,
    /// Test accuracy after its last epoch, and its best in any epoch (fractions).
    pub final_test_acc: Option<f64>,
    pub best_test_acc: Option<f64>,
    pub diverged: bool,
}

/// Jobs of a submission by status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub queued: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub stopped_early: usize,
    /// Of any status, the jobs whose loss stopped being finite.
    pub diverged: usize,
}

/// Something in a row worth an instructor's look.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Flag {
    /// failed, diverged, at_chance, few_epochs or far_from_median.
    pub kind: &'static str,
    pub section: String,
    /// The run, for a flag about one run.
    pub label: Option<String>,
    /// Its job, for a flag about one run.
    pub job: Option<String>,
    pub message: String,
    /// The same said without the class's numbers, as its student reads it.
    #[serde(skip)]
    pub student_message: String,
    /// Other students whose same run it was judged against (0 for a flag about the run alone).
    #[serde(skip)]
    pub peers: usize,
}

/// One student's row.
#[derive(Debug, Clone, Serialize)]
pub struct StudentRow {
    pub student: String,
    pub sweep: String,
    pub created_at: String,
    pub earlier_sweeps: Vec<EarlierSweep>,
    pub jobs: Counts,
    /// Jobs finished (succeeded, or stopped early by the search's rule) / all.
    pub completion: f64,
    pub epochs_done: i64,
    pub epochs_total: i64,
    pub runs: Vec<RunCell>,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EarlierSweep {
    pub id: String,
    pub created_at: String,
}

/// The quartiles of some students' values (linear interpolation, as NumPy's default).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Quartiles {
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub n: usize,
}

/// The class's numbers for one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub section: String,
    pub label: String,
    /// Of the students whose run finished (succeeded or stopped early) with an epoch.
    pub final_test_acc: Option<Quartiles>,
    /// Students who have the run, and how many of those runs diverged.
    pub students: usize,
    pub diverged: usize,
    /// Accuracy at chance for its dataset (a fraction), if known.
    pub chance: Option<f64>,
}

/// The whole class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassView {
    pub assignment: Assignment,
    pub students: Vec<StudentRow>,
    pub runs: Vec<RunSummary>,
}

/// The quartiles of `xs` (non-finite values left out); `None` when none is left.
pub fn quartiles(xs: &[f64]) -> Option<Quartiles> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some(Quartiles { q1: at(0.25), median: at(0.5), q3: at(0.75), n: v.len() })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A run as a student's row shows it, before the class is known.
struct Cell {
    cell: RunCell,
    chance: Option<f64>,
    finished: bool,
    epochs: Vec<EpochMetrics>,
}

fn finished(status: JobStatus) -> bool {
    matches!(status, JobStatus::Succeeded | JobStatus::StoppedEarly)
}

fn cell_of(section: &str, label: &str, r: &RunData) -> Cell {
    let acc: Vec<f64> = r.epochs.iter().map(|e| e.test_acc).filter(|v| v.is_finite()).collect();
    Cell {
        cell: RunCell {
            section: section.into(),
            label: label.into(),
            job: r.job_id.clone(),
            status: r.status,
            epochs_done: r.epochs_done,
            epochs_total: r.epochs_total,
            final_test_acc: r.epochs.last().map(|e| e.test_acc).filter(|v| v.is_finite()),
            best_test_acc: acc.iter().copied().reduce(f64::max),
            diverged: r.diverged,
        },
        chance: r.chance,
        finished: finished(r.status),
        epochs: r.epochs.clone(),
    }
}

/// A submission's runs per section of the assignment, in its order; a searched section's
/// trials become their best.
fn cells(a: &Assignment, s: &Submission) -> Vec<Cell> {
    let mut out = Vec::new();
    for section in &a.sections {
        let members: Vec<(&RunData, &str)> = s
            .runs
            .iter()
            .filter_map(|r| r.sections.iter().find(|(k, _)| *k == section.key).map(|(_, l)| (r, l.as_str())))
            .collect();
        if members.iter().any(|(r, _)| r.trial) {
            // N.B.: as the sweep's search names its best: the best test accuracy in any
            // epoch, the first of equals.
            let of = |r: &RunData| {
                Metric::TestAcc.best_by(r.epochs.iter().filter_map(|e| Metric::TestAcc.of(e).map(|v| (v, ()))))
            };
            let best = Metric::TestAcc
                .best_by(members.iter().filter(|(r, _)| r.trial).filter_map(|m| of(m.0).map(|(v, ())| (v, m))))
                .map(|(_, m)| *m);
            for (r, label) in &members {
                if !r.trial {
                    out.push(cell_of(&section.key, label, r));
                }
            }
            if let Some((r, _)) = best {
                out.push(cell_of(&section.key, BEST_TRIAL, r));
            }
            continue;
        }
        let mut ordered = members;
        ordered.sort_by_key(|(_, l)| section.runs.iter().position(|x| x == l).unwrap_or(usize::MAX));
        out.extend(ordered.into_iter().map(|(r, l)| cell_of(&section.key, l, r)));
    }
    out
}

/// The class's view of the assignment from every student's newest submission.
pub fn build(a: &Assignment, subs: &[Submission]) -> ClassView {
    let all: Vec<Vec<Cell>> = subs.iter().map(|s| cells(a, s)).collect();
    // Every run some student has, in the assignment's order.
    let mut keys: Vec<(String, String)> = Vec::new();
    for c in all.iter().flatten() {
        let k = (c.cell.section.clone(), c.cell.label.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let order = |(s, l): &(String, String)| {
        let si = a.sections.iter().position(|x| &x.key == s).unwrap_or(usize::MAX);
        let li = a.section(s).and_then(|x| x.runs.iter().position(|r| r == l)).unwrap_or(usize::MAX);
        (si, li)
    };
    keys.sort_by_key(order);
    // Each run's cells by student, so a class of hundreds is read once, not once per cell.
    let mut by_run: std::collections::HashMap<(&str, &str), Vec<(usize, &Cell)>> = Default::default();
    for (i, cs) in all.iter().enumerate() {
        for c in cs {
            let list = by_run.entry((c.cell.section.as_str(), c.cell.label.as_str())).or_default();
            if list.last().is_none_or(|(j, _)| *j != i) {
                list.push((i, c));
            }
        }
    }
    let of_run = |k: &(String, String), skip: Option<usize>| -> Vec<&Cell> {
        by_run
            .get(&(k.0.as_str(), k.1.as_str()))
            .map(|v| v.iter().filter(|(i, _)| Some(*i) != skip).map(|(_, c)| *c).collect())
            .unwrap_or_default()
    };
    let finals =
        |cs: &[&Cell]| -> Vec<f64> { cs.iter().filter(|c| c.finished).filter_map(|c| c.cell.final_test_acc).collect() };
    let runs: Vec<RunSummary> = keys
        .iter()
        .map(|k| {
            let cs = of_run(k, None);
            RunSummary {
                section: k.0.clone(),
                label: k.1.clone(),
                final_test_acc: quartiles(&finals(&cs)),
                students: cs.len(),
                diverged: cs.iter().filter(|c| c.cell.diverged).count(),
                chance: cs.iter().find_map(|c| c.chance),
            }
        })
        .collect();
    let students = subs
        .iter()
        .zip(&all)
        .enumerate()
        .map(|(i, (s, cs))| {
            let mut flags = Vec::new();
            for c in cs {
                let k = (c.cell.section.clone(), c.cell.label.clone());
                let peers = of_run(&k, Some(i));
                flags.extend(run_flags(c, &peers, &finals(&peers)));
            }
            flags.extend(epoch_flags(a, cs));
            // A job shown in several sections is flagged once, where it first appears.
            let mut seen: Vec<(&'static str, String)> = Vec::new();
            flags.retain(|f: &Flag| {
                let key = (f.kind, f.job.clone().unwrap_or_else(|| f.section.clone()));
                let new = !seen.contains(&key);
                seen.push(key);
                new
            });
            row(s, cs, flags)
        })
        .collect();
    ClassView { assignment: a.clone(), students, runs }
}

fn row(s: &Submission, cs: &[Cell], flags: Vec<Flag>) -> StudentRow {
    let mut jobs = Counts { total: s.runs.len(), ..Counts::default() };
    for r in &s.runs {
        match r.status {
            JobStatus::Queued => jobs.queued += 1,
            JobStatus::Running => jobs.running += 1,
            JobStatus::Succeeded => jobs.succeeded += 1,
            JobStatus::Failed => jobs.failed += 1,
            JobStatus::Cancelled => jobs.cancelled += 1,
            JobStatus::StoppedEarly => jobs.stopped_early += 1,
        }
        jobs.diverged += usize::from(r.diverged);
    }
    let done = jobs.succeeded + jobs.stopped_early;
    StudentRow {
        student: s.student.clone(),
        sweep: s.sweep_id.clone(),
        created_at: s.created_at.clone(),
        earlier_sweeps: s
            .earlier
            .iter()
            .map(|(id, at)| EarlierSweep { id: id.clone(), created_at: at.clone() })
            .collect(),
        completion: if jobs.total == 0 { 0.0 } else { done as f64 / jobs.total as f64 },
        jobs,
        epochs_done: s.runs.iter().map(|r| r.epochs_done).sum(),
        epochs_total: s.runs.iter().map(|r| r.epochs_total).sum(),
        runs: cs.iter().map(|c| c.cell.clone()).collect(),
        flags,
    }
}

/// Flags about one run, judged against the same run of the other students (`peers`, and
/// the final test accuracies of theirs that finished).
fn run_flags(c: &Cell, peers: &[&Cell], peer_finals: &[f64]) -> Vec<Flag> {
    let cell = &c.cell;
    let flag = |kind, message: String, student_message: String, peers: usize| Flag {
        kind,
        section: cell.section.clone(),
        label: Some(cell.label.clone()),
        job: Some(cell.job.clone()),
        message,
        student_message,
        peers,
    };
    let mut out = Vec::new();
    if cell.status == JobStatus::Failed {
        let m = format!("{} failed after {} of {} epochs", cell.label, cell.epochs_done, cell.epochs_total);
        out.push(flag("failed", m.clone(), m, 0));
    }
    if cell.diverged {
        // N.B.: a run the whole class sees diverge (lr 10) is the assignment's point, not a
        // flag; a run not started yet says nothing either way.
        let started: Vec<&&Cell> = peers.iter().filter(|p| p.cell.epochs_done > 0).collect();
        let others = started.iter().filter(|p| p.cell.diverged).count();
        if started.is_empty() || 2 * others < started.len() {
            let class = if started.is_empty() {
                "no other student has trained this run yet".to_string()
            } else {
                format!("{others} of {} other students' did", started.len())
            };
            let m = format!("{}'s loss stopped being finite", cell.label);
            out.push(flag("diverged", format!("{m} ({class})"), m, started.len()));
        }
        return out;
    }
    let peer_median = quartiles(peer_finals).filter(|q| q.n >= MIN_PEERS);
    if let (true, Some(x), Some(chance)) = (c.finished, cell.final_test_acc, c.chance) {
        let class_at_chance = peer_median.is_some_and(|q| q.median <= chance + CHANCE_MARGIN);
        if x <= chance + CHANCE_MARGIN && !class_at_chance {
            let m = format!("{} ends at {} test accuracy, chance is {}", cell.label, pct(x), pct(chance));
            out.push(flag("at_chance", m.clone(), m, 0));
            return out;
        }
    }
    if let (true, Some(x), Some(q)) = (c.finished, cell.final_test_acc, peer_median) {
        let iqr = q.q3 - q.q1;
        let outside = x < q.q1 - 1.5 * iqr || x > q.q3 + 1.5 * iqr;
        if outside && (x - q.median).abs() >= FAR_MIN {
            let side = if x < q.median { "far below" } else { "far above" };
            out.push(flag(
                "far_from_median",
                format!(
                    "{} ends at {} test accuracy, {side} the class's median {} (middle half {}–{}, {} others)",
                    cell.label,
                    pct(x),
                    pct(q.median),
                    pct(q.q1),
                    pct(q.q3),
                    q.n
                ),
                format!("{} ends at {} test accuracy, {side} the class's", cell.label, pct(x)),
                q.n,
            ));
        }
    }
    out
}

/// A section that trains far fewer epochs than the assignment asks: its runs' epochs (done,
/// for a run that ended; asked, for one still to run or stopped by its search's rule)
/// below half of the assignment's.
fn epoch_flags(a: &Assignment, cs: &[Cell]) -> Vec<Flag> {
    let mut out = Vec::new();
    for section in &a.sections {
        let mine: Vec<&Cell> = cs.iter().filter(|c| c.cell.section == section.key).collect();
        if mine.is_empty() {
            continue;
        }
        let planned: i64 = mine
            .iter()
            .map(|c| match c.cell.status {
                JobStatus::Failed | JobStatus::Cancelled => c.cell.epochs_done,
                _ => c.cell.epochs_total,
            })
            .sum();
        let asked = a.epochs.saturating_mul(mine.len() as i64);
        if planned.saturating_mul(2) < asked {
            let message =
                format!("{}: its runs train {planned} epochs in all; the assignment asks {asked}", section.title);
            out.push(Flag {
                kind: "few_epochs",
                section: section.key.clone(),
                label: None,
                job: None,
                student_message: message.clone(),
                message,
                peers: 0,
            });
        }
    }
    out
}

/// The class's band at each epoch: the quartiles of the values students have there.
pub fn band(curves: &[Vec<(u32, f64)>]) -> Vec<BandPoint> {
    let last = curves.iter().flat_map(|c| c.iter().map(|p| p.0)).max().unwrap_or(0);
    (1..=last)
        .filter_map(|epoch| {
            let at: Vec<f64> = curves.iter().filter_map(|c| c.iter().find(|p| p.0 == epoch).map(|p| p.1)).collect();
            quartiles(&at).map(|q| BandPoint { epoch, q1: q.q1, median: q.median, q3: q.q3, n: q.n })
        })
        .collect()
}

/// One student's curve of `metric` for a run, from the epochs their row's job has.
pub fn curve(epochs: &[EpochMetrics], metric: Metric) -> Vec<(u32, f64)> {
    epochs.iter().map(|e| (e.epoch, metric.of(e).unwrap_or(f64::NAN))).collect()
}

/// For each run of a section: (label, chance, each student's (name, curve)), in the
/// assignment's order; the epochs come from the same submissions `build` saw.
pub type SectionCurves = Vec<(String, Option<f64>, Vec<(String, Vec<(u32, f64)>)>)>;

pub fn section_curves<'s>(
    a: &Assignment,
    subs: impl IntoIterator<Item = &'s Submission>,
    section: &str,
    metric: Metric,
) -> SectionCurves {
    let mut out: SectionCurves = Vec::new();
    for s in subs {
        for c in cells(a, s).into_iter().filter(|c| c.cell.section == section) {
            let points = curve(&c.epochs, metric);
            match out.iter_mut().find(|(l, _, _)| *l == c.cell.label) {
                Some((_, chance, students)) => {
                    *chance = chance.or(c.chance);
                    students.push((s.student.clone(), points));
                }
                None => out.push((c.cell.label.clone(), c.chance, vec![(s.student.clone(), points)])),
            }
        }
    }
    if let Some(head) = a.section(section) {
        out.sort_by_key(|(l, _, _)| head.runs.iter().position(|r| r == l).unwrap_or(usize::MAX));
    }
    out
}

/// A plot metric's words on an axis.
pub fn metric_words(m: Metric) -> &'static str {
    match m {
        Metric::TestAcc => "test accuracy",
        Metric::TrainAcc => "training accuracy",
        Metric::TestLoss => "test loss",
        Metric::TrainLoss => "training loss",
    }
}

/// A section's class curves: a panel per run, each student a line (named only for readers
/// of everyone; a student's own figure names them "you" and draws no one else), the
/// class's band from every student who has the run.
pub fn curves_figure(
    a: &Assignment,
    subs: &[Submission],
    section: &str,
    metric: Metric,
    highlight: Option<&str>,
    own_only: Option<&str>,
) -> ClassCurves {
    let title = a.sections.iter().find(|s| s.key == section).map_or(section.to_string(), |s| s.title.clone());
    let panels = section_curves(a, subs, section, metric)
        .into_iter()
        .map(|(label, chance, students)| {
            let band = band(&students.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>());
            let epochs_total = students.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).max().unwrap_or(1);
            let students = students
                .into_iter()
                .filter(|(name, _)| own_only.is_none_or(|me| me == name))
                .map(|(name, points)| StudentCurve {
                    highlighted: highlight == Some(name.as_str()) || own_only.is_some(),
                    name: if own_only.is_some() { "you".into() } else { name },
                    points,
                })
                .collect();
            ClassPanel { title: label, band, students, chance: chance.map(|c| 100.0 * c), epochs_total }
        })
        .collect();
    ClassCurves {
        title: format!("{}: {}", a.title, title),
        subtitle: format!(
            "{} per epoch: {} students; the class's median and middle half",
            metric_words(metric),
            subs.len()
        ),
        metric: match metric {
            Metric::TestAcc => plot::Metric::TestAcc,
            Metric::TrainAcc => plot::Metric::TrainAcc,
            Metric::TestLoss | Metric::TrainLoss => plot::Metric::Loss,
        },
        panels,
        width: 1000,
        height: 700,
    }
}

/// A section's spread of final test accuracy, a dot per student whose run finished.
pub fn strip_figure(a: &Assignment, view: &ClassView, section: &str, highlight: Option<&str>) -> ClassStrip {
    let title = a.sections.iter().find(|s| s.key == section).map_or(section.to_string(), |s| s.title.clone());
    let mut panels: Vec<StripPanel> = Vec::new();
    for run in view.runs.iter().filter(|r| r.section == section) {
        let values = view
            .students
            .iter()
            .filter_map(|s| {
                let cell = s.runs.iter().find(|c| c.section == run.section && c.label == run.label)?;
                let done =
                    matches!(cell.status, crate::job::JobStatus::Succeeded | crate::job::JobStatus::StoppedEarly);
                let value = cell.final_test_acc.filter(|_| done)?;
                Some(StudentValue {
                    name: s.student.clone(),
                    value,
                    highlighted: highlight == Some(s.student.as_str()),
                    flagged: s.flags.iter().any(|f| f.job.as_ref() == Some(&cell.job)),
                })
            })
            .collect();
        panels.push(StripPanel { title: run.label.clone(), values, chance: run.chance.map(|c| 100.0 * c) });
    }
    ClassStrip {
        title: format!("{}: {}", a.title, title),
        subtitle: format!("final test accuracy of each student's finished run ({} students)", view.students.len()),
        y_label: "final test accuracy (%)".into(),
        panels,
        width: 1000,
        height: 600,
    }
}

/// Quotes a CSV field when it needs it (RFC 4180), and defuses a spreadsheet formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_pct(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{:.2}", 100.0 * v))
}

/// The class as CSV, a row per student: completion, then each run's final and best test
/// accuracy (in %), then the flags in words.
pub fn csv(v: &ClassView) -> String {
    // N.B.: the columns are every run a row or the class has (a student's CSV keeps their own
    // runs when the class's numbers are not shown to them), in the assignment's order.
    let mut runs: Vec<(String, String)> = Vec::new();
    let cells = v.students.iter().flat_map(|s| s.runs.iter().map(|c| (&c.section, &c.label)));
    for (s, l) in v.runs.iter().map(|r| (&r.section, &r.label)).chain(cells) {
        if !runs.iter().any(|(a, b)| a == s && b == l) {
            runs.push((s.clone(), l.clone()));
        }
    }
    let a = &v.assignment;
    runs.sort_by_key(|(s, l)| {
        let si = a.sections.iter().position(|x| &x.key == s).unwrap_or(usize::MAX);
        (si, a.section(s).and_then(|x| x.runs.iter().position(|r| r == l)).unwrap_or(usize::MAX))
    });
    let mut header: Vec<String> = [
        "student",
        "sweep",
        "submitted",
        "jobs",
        "succeeded",
        "stopped_early",
        "running",
        "queued",
        "failed",
        "cancelled",
        "diverged",
        "completion_pct",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (s, l) in &runs {
        header.push(format!("{s}: {l} final test acc %"));
        header.push(format!("{s}: {l} best test acc %"));
    }
    header.push("flags".into());
    let mut out = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    for r in &v.students {
        let j = &r.jobs;
        let mut fields: Vec<String> = vec![
            r.student.clone(),
            r.sweep.clone(),
            r.created_at.clone(),
            j.total.to_string(),
            j.succeeded.to_string(),
            j.stopped_early.to_string(),
            j.running.to_string(),
            j.queued.to_string(),
            j.failed.to_string(),
            j.cancelled.to_string(),
            j.diverged.to_string(),
            format!("{:.0}", 100.0 * r.completion),
        ];
        for (s, l) in &runs {
            let c = r.runs.iter().find(|c| &c.section == s && &c.label == l);
            fields.push(csv_pct(c.and_then(|c| c.final_test_acc)));
            fields.push(csv_pct(c.and_then(|c| c.best_test_acc)));
        }
        fields.push(r.flags.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; "));
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Epochs with these test (and training) accuracies, losses of 1.
    pub(crate) fn epochs(accs: &[f64]) -> Vec<EpochMetrics> {
        accs.iter()
            .enumerate()
            .map(|(i, &a)| EpochMetrics {
                epoch: i as u32 + 1,
                train_loss: Some(1.0),
                train_acc: a,
                test_loss: Some(1.0),
                test_acc: a,
                seconds: 1.0,
                train_seconds: 1.0,
                samples_per_second: 1.0,
                diverged: false,
                lr: None,
            })
            .collect()
    }

    fn run(job: &str, section: &str, label: &str, status: JobStatus, accs: &[f64]) -> RunData {
        RunData {
            job_id: job.into(),
            sections: vec![(section.into(), label.into())],
            status,
            epochs_done: accs.len() as i64,
            epochs_total: 2,
            diverged: false,
            trial: false,
            epochs: epochs(accs),
            chance: Some(0.1),
        }
    }

    fn assignment() -> Assignment {
        Assignment {
            key: "a".into(),
            title: "A".into(),
            sections: vec![SectionHead {
                key: "lr".into(),
                title: "Learning rate".into(),
                runs: vec!["lr 1".into(), "lr 2".into()],
            }],
            epochs: 2,
        }
    }

    fn sub(student: &str, runs: Vec<RunData>) -> Submission {
        Submission {
            student: student.into(),
            sweep_id: format!("sweep-{student}"),
            created_at: String::new(),
            earlier: vec![],
            runs,
        }
    }

    #[test]
    fn quartiles_interpolate_as_numpy_does() {
        let q = quartiles(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!((q.q1, q.median, q.q3, q.n), (1.75, 2.5, 3.25, 4));
        assert_eq!(quartiles(&[f64::NAN]), None);
        assert_eq!(quartiles(&[5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn a_result_far_below_the_class_is_flagged_and_one_inside_it_is_not() {
        let a = assignment();
        let mut subs: Vec<Submission> = [0.50, 0.52, 0.51, 0.53]
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                sub(&format!("s{i}"), vec![run(&format!("j{i}"), "lr", "lr 1", JobStatus::Succeeded, &[0.3, x])])
            })
            .collect();
        subs.push(sub("low", vec![run("jl", "lr", "lr 1", JobStatus::Succeeded, &[0.2, 0.3])]));
        let v = build(&a, &subs);
        let low = v.students.iter().find(|r| r.student == "low").unwrap();
        assert_eq!(low.flags.iter().map(|f| f.kind).collect::<Vec<_>>(), ["far_from_median"]);
        assert!(low.flags[0].message.contains("far below"), "{}", low.flags[0].message);
        assert!(v.students.iter().filter(|r| r.student != "low").all(|r| r.flags.is_empty()));
        assert_eq!(v.runs[0].final_test_acc.unwrap().n, 5);
    }

    #[test]
    fn a_diverged_run_is_flagged_only_where_the_class_did_not_diverge() {
        let a = assignment();
        let mk = |i: usize, diverged: bool| {
            let mut r = run(&format!("j{i}"), "lr", "lr 1", JobStatus::Succeeded, &[0.1, 0.1]);
            r.diverged = diverged;
            sub(&format!("s{i}"), vec![r])
        };
        let alone: Vec<Submission> = (0..4).map(|i| mk(i, i == 0)).collect();
        let v = build(&a, &alone);
        assert_eq!(v.students[0].flags.iter().map(|f| f.kind).collect::<Vec<_>>(), ["diverged"]);
        let all: Vec<Submission> = (0..4).map(|i| mk(i, true)).collect();
        assert!(build(&a, &all).students.iter().all(|r| r.flags.is_empty()));
    }

    #[test]
    fn a_run_at_chance_is_flagged_unless_the_class_is_at_chance_too() {
        let a = assignment();
        let v = build(&a, &[sub("s", vec![run("j", "lr", "lr 1", JobStatus::Succeeded, &[0.1, 0.105])])]);
        assert_eq!(v.students[0].flags[0].kind, "at_chance");
        let class: Vec<Submission> = (0..4)
            .map(|i| {
                sub(&format!("s{i}"), vec![run(&format!("j{i}"), "lr", "lr 1", JobStatus::Succeeded, &[0.1, 0.1])])
            })
            .collect();
        assert!(build(&a, &class).students.iter().all(|r| r.flags.is_empty()));
    }

    #[test]
    fn a_section_with_far_fewer_epochs_than_asked_is_flagged() {
        let mut a = assignment();
        a.epochs = 50;
        let v = build(&a, &[sub("s", vec![run("j", "lr", "lr 1", JobStatus::Succeeded, &[0.4, 0.5])])]);
        let f = &v.students[0].flags;
        assert_eq!(f.iter().map(|f| f.kind).collect::<Vec<_>>(), ["few_epochs"]);
        assert!(f[0].message.contains("2 epochs in all; the assignment asks 50"), "{}", f[0].message);
    }

    #[test]
    fn a_searched_section_is_its_best_trial() {
        let a = assignment();
        let mut t1 = run("t1", "lr", "trial 1: lr=0.1", JobStatus::StoppedEarly, &[0.2]);
        let mut t2 = run("t2", "lr", "trial 2: lr=0.01", JobStatus::Succeeded, &[0.3, 0.4]);
        t1.trial = true;
        t2.trial = true;
        let v = build(&a, &[sub("s", vec![t1, t2])]);
        let cells = &v.students[0].runs;
        assert_eq!(cells.len(), 1);
        assert_eq!((cells[0].label.as_str(), cells[0].job.as_str()), (BEST_TRIAL, "t2"));
    }

    #[test]
    fn the_csv_has_a_row_per_student_and_quotes_what_needs_it() {
        let a = assignment();
        let v = build(
            &a,
            &[
                sub("ann", vec![run("j1", "lr", "lr 1", JobStatus::Succeeded, &[0.3, 0.4])]),
                sub("bob", vec![run("j2", "lr", "lr 1", JobStatus::Failed, &[0.3])]),
            ],
        );
        let text = csv(&v);
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("student,sweep,submitted,jobs,"));
        assert!(lines[0].contains("lr: lr 1 final test acc %"));
        assert!(lines[1].starts_with("ann,sweep-ann,,1,1,0,0,0,0,0,0,100,40.00,40.00,"), "{}", lines[1]);
        assert!(lines[2].starts_with("bob,sweep-bob,,1,0,0,0,0,1,0,0,0,30.00,30.00,"), "{}", lines[2]);
        assert!(lines[2].ends_with(",lr 1 failed after 1 of 2 epochs"), "{}", lines[2]);
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
