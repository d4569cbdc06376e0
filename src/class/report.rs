//! Pure: the class report of an assignment, as one self-contained HTML page, as Markdown,
//! or as a zip of the Markdown with its figures (what the sweep's report is for a student).
//!
//! It reads as the sweep's report does (the same page style, tables and inline SVG): a
//! summary line; the students, one row each, with the tutorial's run as their headline;
//! the flags worth a look, student by student; then each section the class has a run in,
//! with the class's numbers per run, each student's final test accuracy there, the class's
//! curves and the spread of its final test accuracy.

use super::{Assignment, ClassView, Counts, RunCell, Submission};
use crate::job::JobStatus;
use crate::plot::{self, Format};
use crate::report::{escape, html_table, md, md_table, page_head, pct};
use crate::search::Metric;
use std::fmt::Write;
use std::sync::Arc;

/// Everything the class report shows.
pub struct ClassReport {
    pub assignment: Assignment,
    pub view: ClassView,
    /// Shared with the server's cache of the class: a report reads it, never copies it.
    pub submissions: Arc<Vec<Submission>>,
}

impl ClassReport {
    pub fn new(a: &Assignment, subs: Arc<Vec<Submission>>) -> ClassReport {
        ClassReport { assignment: a.clone(), view: super::build(a, &subs), submissions: subs }
    }
}

/// Marks a run a flag is about, in the students' tables.
const FLAGGED: &str = " ⚑";

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The class in one line: who submitted, the jobs by status, who is complete, the flags.
fn summary(r: &ClassReport) -> String {
    let students = &r.view.students;
    if students.is_empty() {
        return "No student has submitted this assignment yet.".into();
    }
    let mut all = Counts::default();
    for s in students {
        let j = &s.jobs;
        all.total += j.total;
        all.queued += j.queued;
        all.running += j.running;
        all.succeeded += j.succeeded;
        all.failed += j.failed;
        all.cancelled += j.cancelled;
        all.stopped_early += j.stopped_early;
        all.diverged += j.diverged;
    }
    let by_status: Vec<String> = [
        (all.succeeded, JobStatus::Succeeded),
        (all.stopped_early, JobStatus::StoppedEarly),
        (all.running, JobStatus::Running),
        (all.queued, JobStatus::Queued),
        (all.failed, JobStatus::Failed),
        (all.cancelled, JobStatus::Cancelled),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, s)| format!("{n} {}", s.as_str().replace('_', " ")))
    .collect();
    let diverged = if all.diverged > 0 { format!("; {} diverged", all.diverged) } else { String::new() };
    let complete = students.iter().filter(|s| s.completion >= 1.0).count();
    let flags: usize = students.iter().map(|s| s.flags.len()).sum();
    format!(
        "{} submitted. {}: {}{diverged}. {complete} of {} complete (every job finished). {}.",
        plural(students.len(), "student", "students"),
        plural(all.total, "job", "jobs"),
        if by_status.is_empty() { "none yet".to_string() } else { by_status.join(", ") },
        students.len(),
        plural(flags, "flag", "flags"),
    )
}

/// A student's run in a table: its final test accuracy once it finished, else where it is.
fn cell_text(c: Option<&RunCell>, flagged: bool) -> String {
    let Some(c) = c else { return "–".into() };
    let acc = c.final_test_acc.map(pct);
    let at = format!("{}/{}", c.epochs_done, c.epochs_total);
    let text = if c.diverged {
        "diverged".to_string()
    } else {
        match c.status {
            JobStatus::Succeeded | JobStatus::StoppedEarly => acc.unwrap_or_else(|| "–".into()),
            JobStatus::Running => match acc {
                Some(a) => format!("{a} (running, {at})"),
                None => format!("running, {at}"),
            },
            JobStatus::Queued => "queued".into(),
            JobStatus::Failed => format!("failed at {at}"),
            JobStatus::Cancelled => format!("cancelled at {at}"),
        }
    };
    if flagged {
        text + FLAGGED
    } else {
        text
    }
}

/// Whether a flag of the student's is about the run.
fn is_flagged(row: &super::StudentRow, section: &str, label: &str) -> bool {
    row.flags.iter().any(|f| f.section == section && f.label.as_deref() == Some(label))
}

/// The run that heads each student's row: the first of the assignment (the tutorial's).
fn headline(r: &ClassReport) -> Option<(&str, &str)> {
    r.view.runs.first().map(|s| (s.section.as_str(), s.label.as_str()))
}

fn student_headers(r: &ClassReport) -> Vec<String> {
    let mut h: Vec<String> =
        ["student", "submitted", "completion", "running", "failed", "diverged", "flags"].map(String::from).to_vec();
    if let Some((_, label)) = headline(r) {
        h.push(format!("{label}: final test acc"));
    }
    h
}

fn student_rows(r: &ClassReport) -> Vec<Vec<String>> {
    let head = headline(r);
    r.view
        .students
        .iter()
        .map(|s| {
            let done = s.jobs.succeeded + s.jobs.stopped_early;
            let mut row = vec![
                s.student.clone(),
                s.created_at.clone(),
                format!("{done}/{} ({})", s.jobs.total, pct(s.completion)),
                s.jobs.running.to_string(),
                s.jobs.failed.to_string(),
                s.jobs.diverged.to_string(),
                s.flags.len().to_string(),
            ];
            if let Some((section, label)) = head {
                let c = s.runs.iter().find(|c| c.section == section && c.label == label);
                row.push(cell_text(c, is_flagged(s, section, label)));
            }
            row
        })
        .collect()
}

/// Each student's flags as (student, lines), the section's title in front of each.
fn flag_lines(r: &ClassReport) -> Vec<(String, Vec<(String, String)>)> {
    r.view
        .students
        .iter()
        .filter(|s| !s.flags.is_empty())
        .map(|s| {
            let lines = s
                .flags
                .iter()
                .map(|f| {
                    let title = r
                        .assignment
                        .sections
                        .iter()
                        .find(|x| x.key == f.section)
                        .map_or_else(|| f.section.clone(), |x| x.title.clone());
                    // A message about a whole section starts with its title already.
                    let message =
                        f.message.strip_prefix(title.as_str()).map_or(f.message.clone(), |m| m.trim_start().into());
                    (title, message)
                })
                .collect();
            (s.student.clone(), lines)
        })
        .collect()
}

/// The sections some student has a run in, in the assignment's order: (key, title).
fn sections(r: &ClassReport) -> Vec<(&str, &str)> {
    r.assignment
        .sections
        .iter()
        .filter(|s| r.view.runs.iter().any(|x| x.section == s.key))
        .map(|s| (s.key.as_str(), s.title.as_str()))
        .collect()
}

const RUN_HEADERS: [&str; 6] =
    ["run", "students with it", "finished", "median final test acc", "middle half (q1–q3)", "diverged"];

/// The class's numbers for each run of the section.
fn run_rows(r: &ClassReport, section: &str) -> Vec<[String; 6]> {
    r.view
        .runs
        .iter()
        .filter(|x| x.section == section)
        .map(|x| {
            let finished = r
                .view
                .students
                .iter()
                .filter_map(|s| s.runs.iter().find(|c| c.section == x.section && c.label == x.label))
                .filter(|c| matches!(c.status, JobStatus::Succeeded | JobStatus::StoppedEarly))
                .count();
            let q = x.final_test_acc;
            [
                x.label.clone(),
                x.students.to_string(),
                finished.to_string(),
                q.map_or("–".into(), |q| pct(q.median)),
                q.map_or("–".into(), |q| format!("{}–{}", pct(q.q1), pct(q.q3))),
                x.diverged.to_string(),
            ]
        })
        .collect()
}

/// Each student's final test accuracy in the section, a column per run; `None` for a
/// section whose one run is the students' headline (their table shows it already).
fn section_students(r: &ClassReport, section: &str) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let labels: Vec<&str> = r.view.runs.iter().filter(|x| x.section == section).map(|x| x.label.as_str()).collect();
    if headline(r).is_some_and(|(s, l)| s == section && labels == [l]) {
        return None;
    }
    let headers = std::iter::once("student".to_string()).chain(labels.iter().map(|l| l.to_string())).collect();
    let rows = r
        .view
        .students
        .iter()
        .filter(|s| s.runs.iter().any(|c| c.section == section))
        .map(|s| {
            let mut row = vec![s.student.clone()];
            for l in &labels {
                let c = s.runs.iter().find(|c| c.section == section && c.label == *l);
                row.push(cell_text(c, is_flagged(s, section, l)));
            }
            row
        })
        .collect();
    Some((headers, rows))
}

/// A line under the students' tables that says what the marks mean.
const CELL_NOTE: &str =
    "Final test accuracy of runs that finished; a run still going shows its latest and its epochs, \
                         and ⚑ marks a run with a flag.";

// N.B.: the section's heading stands above each figure already, so they have no title
// (as the sweep's report draws its figures).
fn curves_fig(r: &ClassReport, section: &str) -> plot::class::ClassCurves {
    let mut fig = super::curves_figure(&r.assignment, &r.submissions, section, Metric::TestAcc, None, None);
    fig.title = String::new();
    fig
}

fn strip_fig(r: &ClassReport, section: &str) -> plot::class::ClassStrip {
    let mut fig = super::strip_figure(&r.assignment, &r.view, section, None);
    fig.title = String::new();
    fig
}

fn inline(drawn: Result<Vec<u8>, plot::PlotError>) -> String {
    match drawn {
        Ok(svg) => String::from_utf8_lossy(&svg).into_owned(),
        Err(e) => format!("<p>(the figure could not be drawn: {})</p>", escape(&e.to_string())),
    }
}

/// The class report as one self-contained HTML page.
pub fn html(r: &ClassReport) -> String {
    let title = format!("{}: the class", r.assignment.title);
    let intro = format!("Assignment <code>{}</code>. {}", escape(&r.assignment.key), escape(&summary(r)));
    let mut h = page_head(&title, &intro);
    if r.view.students.is_empty() {
        h.push_str("</body></html>\n");
        return h;
    }
    h.push_str("<h2>Students</h2>\n");
    h.push_str(&html_table(&student_headers(r), &student_rows(r), |i| i >= 2));
    if headline(r).is_some() {
        let _ = writeln!(h, "<p class=\"q\">{}</p>", escape(CELL_NOTE));
    }
    h.push_str("<h2>Flags worth a look</h2>\n");
    let flags = flag_lines(r);
    if flags.is_empty() {
        h.push_str("<p>No flags.</p>\n");
    } else {
        h.push_str("<ul class=\"f\">\n");
        for (student, lines) in &flags {
            let _ = writeln!(h, "<li><strong>{}</strong>\n<ul>", escape(student));
            for (section, message) in lines {
                let _ = writeln!(h, "<li>{}: {}</li>", escape(section), escape(message));
            }
            h.push_str("</ul></li>\n");
        }
        h.push_str("</ul>\n");
    }
    for (key, title) in sections(r) {
        let _ = write!(h, "<section id=\"{}\">\n<h2>{}</h2>\n", escape(key), escape(title));
        h.push_str(&html_table(&RUN_HEADERS, &run_rows(r, key), |i| i >= 1));
        if let Some((headers, rows)) = section_students(r, key) {
            h.push_str("<p>Each student's final test accuracy:</p>\n");
            h.push_str(&html_table(&headers, &rows, |i| i >= 1));
        }
        h.push_str(&inline(plot::class::curves(&curves_fig(r, key), Format::Svg)));
        h.push('\n');
        h.push_str(&inline(plot::class::strip(&strip_fig(r, key), Format::Svg)));
        h.push_str("\n</section>\n");
    }
    h.push_str("</body></html>\n");
    h
}

/// The class report as Markdown; each section's figures link to the class's plot route
/// (which needs the token: see `bundle` for a report that stands alone).
pub fn markdown(r: &ClassReport) -> String {
    let a = &r.assignment.key;
    markdown_with(r, |key| {
        format!(
            "![the class's test accuracy per epoch](/class/{a}/plot?section={key}&metric=test_acc)\n\
             ![the class's final test accuracy](/class/{a}/plot?section={key}&kind=final)"
        )
    })
}

/// The Markdown report; `figures` gives a section's figures from its key.
fn markdown_with(r: &ClassReport, figures: impl Fn(&str) -> String) -> String {
    let mut m = String::new();
    let _ = write!(
        m,
        "# {}: the class\n\nAssignment `{}`. {}\n",
        md(&r.assignment.title),
        r.assignment.key.replace('`', ""),
        md(&summary(r))
    );
    if r.view.students.is_empty() {
        return m;
    }
    m.push_str("\n## Students\n\n");
    let rows = student_rows(r);
    m.push_str(&md_table(&student_headers(r), &rows));
    if headline(r).is_some() {
        let _ = write!(m, "*{}*\n\n", md(CELL_NOTE));
    }
    m.push_str("## Flags worth a look\n\n");
    let flags = flag_lines(r);
    if flags.is_empty() {
        m.push_str("No flags.\n");
    } else {
        for (student, lines) in &flags {
            let _ = writeln!(m, "- **{}**", md(student));
            for (section, message) in lines {
                // N.B.: the title in emphasis, so "6. Learning rate" does not start a list.
                let _ = writeln!(m, "  - *{}*: {}", md(section), md(message));
            }
        }
    }
    for (key, title) in sections(r) {
        let _ = write!(m, "\n## {}\n\n", md(title));
        m.push_str(&md_table(&RUN_HEADERS, &run_rows(r, key)));
        if let Some((headers, rows)) = section_students(r, key) {
            m.push_str("Each student's final test accuracy:\n\n");
            m.push_str(&md_table(&headers, &rows));
        }
        let _ = writeln!(m, "{}", figures(key));
    }
    m
}

/// The Markdown report in a zip with its figures as files: `report.md`, and for each
/// section `figures/SECTION-curves.png` and `figures/SECTION-final.png` (linked from the
/// Markdown), each also as `.svg`.
pub fn bundle(r: &ClassReport) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let md = markdown_with(r, |key| {
        format!(
            "![the class's test accuracy per epoch](figures/{key}-curves.png)\n\n(Also as [SVG](figures/{key}-curves.svg).)\n\n\
             ![the class's final test accuracy](figures/{key}-final.png)\n\n(Also as [SVG](figures/{key}-final.svg).)"
        )
    });
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    // N.B.: PNG is compressed already; storing it saves time and loses nothing.
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("report.md", deflated)?;
    zip.write_all(md.as_bytes())?;
    for (key, _) in sections(r) {
        let curves = curves_fig(r, key);
        zip.start_file(format!("figures/{key}-curves.png"), stored)?;
        zip.write_all(&plot::class::curves(&curves, Format::Png)?)?;
        zip.start_file(format!("figures/{key}-curves.svg"), deflated)?;
        zip.write_all(&plot::class::curves(&curves, Format::Svg)?)?;
        let strip = strip_fig(r, key);
        zip.start_file(format!("figures/{key}-final.png"), stored)?;
        zip.write_all(&plot::class::strip(&strip, Format::Png)?)?;
        zip.start_file(format!("figures/{key}-final.svg"), deflated)?;
        zip.write_all(&plot::class::strip(&strip, Format::Svg)?)?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::tests::epochs;
    use crate::class::{RunData, SectionHead};
    use std::io::Read;

    /// A job shown in each (section, label) of `sections`.
    fn run(job: &str, sections: &[(&str, &str)], status: JobStatus, accs: &[f64]) -> RunData {
        RunData {
            job_id: job.into(),
            sections: sections.iter().map(|(s, l)| (s.to_string(), l.to_string())).collect(),
            status,
            epochs_done: accs.len() as i64,
            epochs_total: 3,
            diverged: false,
            trial: false,
            epochs: epochs(accs),
            chance: Some(0.1),
        }
    }

    /// Two sections; the tutorial's run is shown in both, as the preset shows it.
    fn assignment() -> Assignment {
        Assignment {
            key: "cifar10-assignment".into(),
            title: "The CIFAR-10 assignment".into(),
            sections: vec![
                SectionHead {
                    key: "tutorial".into(),
                    title: "1. The tutorial's network".into(),
                    runs: vec!["tutorial CNN".into()],
                },
                SectionHead {
                    key: "lr".into(),
                    title: "2. Learning rate".into(),
                    runs: vec!["lr 0.1".into(), "lr 0.001 (tutorial)".into()],
                },
                SectionHead { key: "mse".into(), title: "3. Mean squared error".into(), runs: vec!["MSE".into()] },
            ],
            epochs: 3,
        }
    }

    fn student(name: &str, at: &str, tutorial: &[f64], lr: (JobStatus, &[f64])) -> Submission {
        Submission {
            student: name.into(),
            sweep_id: format!("sweep-{name}"),
            created_at: at.into(),
            earlier: vec![],
            runs: vec![
                run(
                    &format!("{name}-t"),
                    &[("tutorial", "tutorial CNN"), ("lr", "lr 0.001 (tutorial)")],
                    JobStatus::Succeeded,
                    tutorial,
                ),
                run(&format!("{name}-lr"), &[("lr", "lr 0.1")], lr.0, lr.1),
            ],
        }
    }

    /// Three students: ann and bob complete, cat's lr 0.1 failed after one epoch.
    fn class() -> ClassReport {
        let subs = [
            student("ann", "2025-03-01 10:00", &[0.3, 0.45, 0.55], (JobStatus::Succeeded, &[0.4, 0.5, 0.6])),
            student("bob", "2025-03-02 11:30", &[0.3, 0.4, 0.5], (JobStatus::Succeeded, &[0.35, 0.5, 0.58])),
            student("cat", "2025-03-03 09:15", &[0.25, 0.4, 0.52], (JobStatus::Failed, &[0.3])),
        ];
        ClassReport::new(&assignment(), Arc::new(subs.to_vec()))
    }

    const FAILED: &str = "lr 0.1 failed after 1 of 3 epochs";

    #[test]
    fn the_text_names_every_student_the_flags_and_the_class_numbers() {
        let r = class();
        assert_eq!(
            summary(&r),
            "3 students submitted. 6 jobs: 5 succeeded, 1 failed. 2 of 3 complete (every job finished). 1 flag."
        );
        let rows = student_rows(&r);
        assert_eq!(rows[0], ["ann", "2025-03-01 10:00", "2/2 (100.0%)", "0", "0", "0", "0", "55.0%"]);
        assert_eq!(rows[2][2..7], ["1/2 (50.0%)", "0", "1", "0", "1"]);
        assert_eq!(student_headers(&r).last().unwrap(), "tutorial CNN: final test acc");
        assert_eq!(flag_lines(&r), [("cat".to_string(), vec![("2. Learning rate".to_string(), FAILED.to_string())])]);
        // The section's own run first, as the assignment orders it; cat's failed run is
        // the class's, but not a finished one.
        let lr = run_rows(&r, "lr");
        assert_eq!(lr[0], ["lr 0.1", "3", "2", "59.0%", "58.5%–59.5%", "0"]);
        assert_eq!(lr[1], ["lr 0.001 (tutorial)", "3", "3", "52.0%", "51.0%–53.5%", "0"]);
        let (headers, rows) = section_students(&r, "lr").unwrap();
        assert_eq!(headers, ["student", "lr 0.1", "lr 0.001 (tutorial)"]);
        assert_eq!(rows[2], ["cat", "failed at 1/3 ⚑", "52.0%"]);
        assert_eq!(
            sections(&r),
            [("tutorial", "1. The tutorial's network"), ("lr", "2. Learning rate")],
            "no one has MSE"
        );
    }

    #[test]
    fn a_class_without_flags_or_submissions_says_so() {
        let mut r = class();
        for s in &mut r.view.students {
            s.flags.clear();
        }
        assert!(markdown(&r).contains("## Flags worth a look\n\nNo flags.\n"));
        let empty = ClassReport::new(&assignment(), Arc::default());
        assert!(html(&empty).contains("No student has submitted this assignment yet."));
        assert!(markdown(&empty).ends_with("No student has submitted this assignment yet.\n"));
    }

    #[test]
    fn the_html_has_each_student_flag_section_and_both_figures_of_each_section() {
        let h = html(&class());
        for text in ["ann", "bob", "cat", FAILED, "1. The tutorial's network", "2. Learning rate", "Flags worth a look"]
        {
            assert!(h.contains(text), "{text:?} in\n{h}");
        }
        assert!(h.contains("<li>2. Learning rate: lr 0.1 failed after 1 of 3 epochs</li>"), "{h}");
        assert!(!h.contains("3. Mean squared error"), "a section no one has a run in is left out");
        assert_eq!(h.matches("<p>Each student's final test accuracy:</p>").count(), 1, "the lr section's alone");
        assert_eq!(h.matches("<svg").count(), 4, "curves and final accuracy for each of 2 sections");
        assert!(!h.contains("could not be drawn"));
    }

    #[test]
    fn the_markdown_links_the_class_plot_routes_and_escapes_what_it_shows() {
        let mut a = assignment();
        a.title = "# <script>alert(1)</script> *bold*".into();
        let subs = class().submissions;
        let m = markdown(&ClassReport::new(&a, subs.clone()));
        assert!(m.starts_with("# \\# &lt;script&gt;alert(1)&lt;/script&gt; \\*bold\\*: the class\n"), "{m}");
        assert!(!m.contains("<script>"));
        for key in ["tutorial", "lr"] {
            assert!(m.contains(&format!("](/class/cifar10-assignment/plot?section={key}&metric=test_acc)")), "{m}");
            assert!(m.contains(&format!("](/class/cifar10-assignment/plot?section={key}&kind=final)")), "{m}");
        }
        assert!(m.contains("- **cat**\n  - *2. Learning rate*: lr 0.1 failed after 1 of 3 epochs\n"), "{m}");
        assert!(m.contains("| lr 0.1 | 3 | 2 | 59.0% | 58.5%–59.5% | 0 |"), "{m}");
        let h = html(&ClassReport::new(&a, subs));
        assert!(!h.contains("<script>") && h.contains("&lt;script&gt;"));
    }

    #[test]
    fn the_zip_holds_the_markdown_and_four_figure_files_per_section() {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle(&class()).unwrap())).unwrap();
        let mut text = String::new();
        zip.by_name("report.md").unwrap().read_to_string(&mut text).unwrap();
        for key in ["tutorial", "lr"] {
            for end in ["curves.png", "curves.svg", "final.png", "final.svg"] {
                let name = format!("figures/{key}-{end}");
                assert!(text.contains(&format!("](figures/{key}-{end})")), "report.md links {name}:\n{text}");
                let mut bytes = Vec::new();
                zip.by_name(&name).unwrap().read_to_end(&mut bytes).unwrap();
                if end.ends_with("png") {
                    assert!(image::load_from_memory(&bytes).is_ok(), "{name} is a PNG");
                } else {
                    assert!(String::from_utf8_lossy(&bytes).contains("<svg"), "{name} is an SVG");
                }
            }
        }
        assert!(!text.contains("/class/"), "the zip's report stands alone");
        assert_eq!(zip.len(), 1 + 2 * 4);
    }
}
