//! Pure: a class's figures. One section's curves with one thin line per student over the
//! class's median and 25–75 % band (a chosen student drawn bold), and the spread of the
//! class's final test accuracy per run as a box plot with every student a dot.
//!
//! Units: every value is in `EpochMetrics`'s own units (accuracies as fractions 0..1,
//! losses raw); the figures show accuracies in %. Chance levels are in % (as `Series`'s).

use super::{
    acc_range, chance_line, colour, encode, fit_text, font, grid, legend, legend_metrics, title_block, trim_number,
    y_range, DrawResult, Entry, Format, Metric, Paint, PlotError, Rect, Sample, Ticked, YAxis, FAMILY, SAMPLE_W,
};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One epoch of the class's band: the quartiles of the students' values at that epoch, in
/// the values' own units (an accuracy as a fraction 0..1, as `EpochMetrics::test_acc`; a
/// loss raw).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    pub epoch: u32,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    /// How many students have a value at this epoch.
    pub n: usize,
}

/// One student's line in a panel.
#[derive(Debug, Clone)]
pub struct StudentCurve {
    /// Their name (or "you" on a student's own figure).
    pub name: String,
    /// (epoch, value) in epoch order, the value in `EpochMetrics`'s units (an accuracy as a
    /// fraction 0..1, a loss raw); a value that is not finite leaves a gap.
    pub points: Vec<(u32, f64)>,
    /// Drawn bold, in colour, and named in the legend; the others are thin grey lines.
    pub highlighted: bool,
}

/// One run of a section (e.g. "lr 0.1"): the class's band and the students' curves.
#[derive(Debug, Clone)]
pub struct ClassPanel {
    pub title: String,
    pub band: Vec<BandPoint>,
    pub students: Vec<StudentCurve>,
    /// Accuracy at chance in % (marked on accuracy axes), if known.
    pub chance: Option<f64>,
    pub epochs_total: u32,
}

/// A section's curves across the class: a panel per run, one metric (`Loss`, `TrainAcc`
/// or `TestAcc`). Values come as `EpochMetrics` holds them (accuracies as fractions 0..1);
/// the axes show accuracies in %.
#[derive(Debug, Clone)]
pub struct ClassCurves {
    pub title: String,
    pub subtitle: String,
    pub metric: Metric,
    pub panels: Vec<ClassPanel>,
    pub width: u32,
    pub height: u32,
}

/// One student's final value in a distribution panel.
#[derive(Debug, Clone)]
pub struct StudentValue {
    pub name: String,
    /// An accuracy as a fraction 0..1 (as `EpochMetrics::test_acc`), drawn in %; not drawn
    /// when not finite.
    pub value: f64,
    pub highlighted: bool,
    /// Flagged for the instructor's look (drawn as a red ring).
    pub flagged: bool,
}

/// One run's distribution of final values.
#[derive(Debug, Clone)]
pub struct StripPanel {
    pub title: String,
    pub values: Vec<StudentValue>,
    /// Accuracy at chance in %, if known.
    pub chance: Option<f64>,
}

/// A section's distribution of final test accuracy: one box (quartiles, whiskers at 1.5
/// IQR as Tukey's) with the students as jittered dots, per run, side by side on one axis.
#[derive(Debug, Clone)]
pub struct ClassStrip {
    pub title: String,
    pub subtitle: String,
    /// The y axis's name, e.g. "final test accuracy (%)".
    pub y_label: String,
    pub panels: Vec<StripPanel>,
    pub width: u32,
    pub height: u32,
}

/// Shown in a curves panel with nothing to draw.
pub const NO_EPOCH_YET: &str = "no student has finished an epoch yet";
/// Shown in a strip's run with no value.
pub const NO_FINAL_VALUES: &str = "no final values yet";
/// The legend's words for the class's median and its middle half.
pub const MEDIAN_LABEL: &str = "class median";

/// The class's band: blue, as the first job's colour.
const BAND: RGBColor = RGBColor(31, 119, 180);
/// The class's median: a dark blue, over the band.
const MEDIAN: RGBColor = RGBColor(14, 52, 96);
/// Every student's thin line or dot.
const STUDENT: RGBColor = RGBColor(85, 85, 85);
/// A flagged student's ring.
const FLAG: RGBColor = RGBColor(214, 39, 40);
/// The palette's colours a highlighted student is drawn in: not the band's blue, the
/// students' grey or the flags' red.
const HIGHLIGHTS: [usize; 7] = [1, 2, 4, 5, 6, 9, 8];

fn highlight(i: usize) -> RGBColor {
    colour(HIGHLIGHTS[i % HIGHLIGHTS.len()])
}

/// A legend sample of a class figure (see `super::legend`).
#[derive(Clone, Copy)]
pub(super) enum Key {
    /// A job figure's class band: a translucent area and a dashed median, in a colour.
    Band(RGBColor),
    /// The class's median: a dashed dark line.
    Median,
    /// The class's middle 50 %: a translucent area.
    Spread,
    /// A student's thin grey line.
    Student,
    /// A highlighted student's bold line.
    Highlight(RGBColor),
    /// A student's dot.
    Dot,
    /// A highlighted student's large dot.
    BigDot(RGBColor),
    /// A flagged student's red ring.
    Flagged,
    /// A box with its median and whiskers, on its side.
    BoxPlot,
}

/// Draws `key`'s sample between pixels `x0` and `x1` of `root`, centred on row `y`.
pub(super) fn key_sample<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    key: Key,
    (x0, x1): (i32, i32),
    y: i32,
    scale: f64,
) -> DrawResult<DB> {
    let px = |s: f64| ((s * scale).round() as i32).max(1);
    let mid = (x0 + x1) / 2;
    let half = px(6.0);
    let dashed = |c: ShapeStyle| -> DrawResult<DB> {
        let (dash, gap) = (px(7.0), px(4.0));
        let mut a = x0;
        while a < x1 {
            root.draw(&PathElement::new(vec![(a, y), ((a + dash).min(x1), y)], c))?;
            a += dash + gap;
        }
        Ok(())
    };
    match key {
        Key::Band(c) => {
            root.draw(&Rectangle::new([(x0, y - half), (x1, y + half)], c.mix(0.22).filled()))?;
            dashed(c.stroke_width(px(1.5) as u32))?;
        }
        Key::Median => dashed(MEDIAN.stroke_width(px(2.5) as u32))?,
        Key::Spread => root.draw(&Rectangle::new([(x0, y - half), (x1, y + half)], BAND.mix(0.28).filled()))?,
        Key::Student => {
            root.draw(&PathElement::new(vec![(x0, y), (x1, y)], STUDENT.mix(0.8).stroke_width(px(1.3) as u32)))?
        }
        Key::Highlight(c) => {
            root.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(px(3.5) as u32)))?;
            root.draw(&Circle::new((mid, y), px(4.5) as u32, c.filled()))?;
        }
        Key::Dot => root.draw(&Circle::new((mid, y), px(4.0) as u32, STUDENT.mix(0.6).filled()))?,
        Key::BigDot(c) => big_dot(root, (mid, y), c, scale)?,
        Key::Flagged => {
            root.draw(&Circle::new((mid, y), px(4.0) as u32, STUDENT.mix(0.6).filled()))?;
            flag_ring(root, (mid, y), px(4.0) as u32, scale)?;
        }
        Key::BoxPlot => {
            let (a, b) = (x0 + px(8.0), x1 - px(8.0));
            let grey = RGBColor(60, 60, 60).stroke_width(px(1.5) as u32);
            root.draw(&PathElement::new(vec![(x0, y), (a, y)], grey))?;
            root.draw(&PathElement::new(vec![(b, y), (x1, y)], grey))?;
            root.draw(&Rectangle::new([(a, y - half), (b, y + half)], BAND.mix(0.15).filled()))?;
            root.draw(&Rectangle::new([(a, y - half), (b, y + half)], grey))?;
            let m = a + (b - a) * 2 / 5;
            root.draw(&PathElement::new(vec![(m, y - half), (m, y + half)], MEDIAN.stroke_width(px(3.0) as u32)))?;
        }
    }
    Ok(())
}

/// A highlighted student's dot, ringed in white so it stands out of the others.
fn big_dot<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: (i32, i32),
    c: RGBColor,
    scale: f64,
) -> DrawResult<DB> {
    let r = ((7.0 * scale).round() as u32).max(4);
    area.draw(&Circle::new(p, r, c.filled()))?;
    area.draw(&Circle::new(p, r, WHITE.stroke_width(((1.5 * scale).round() as u32).max(1))))
}

/// A flagged student's red ring around their dot of radius `r`.
fn flag_ring<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: (i32, i32), r: u32, scale: f64) -> DrawResult<DB> {
    let gap = ((3.5 * scale).round() as u32).max(2);
    area.draw(&Circle::new(p, r + gap, FLAG.stroke_width(((2.0 * scale).round() as u32).max(1))))
}

/// How a band is drawn.
pub(super) struct BandStyle {
    /// The area's colour and its opacity.
    pub fill: RGBColor,
    pub alpha: f64,
    /// The median's line (dashed).
    pub median: ShapeStyle,
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws a band's q1–q3 area and its dashed median on `chart`, each value times `unit`
/// (100 for an accuracy in %) and kept within `lo..hi`. A point that is not finite (or of
/// no student) leaves a gap.
pub(super) fn draw_band<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    band: &[BandPoint],
    unit: f64,
    (lo, hi): (f64, f64),
    style: &BandStyle,
    scale: f64,
) -> DrawResult<DB> {
    let ok = |p: &BandPoint| p.n > 0 && [p.q1, p.median, p.q3].iter().all(|v| v.is_finite());
    let y = |v: f64| (v * unit).clamp(lo, hi);
    let mut points: Vec<&BandPoint> = band.iter().collect();
    points.sort_by_key(|p| p.epoch);
    let dash = ((7.0 * scale).round() as u32).max(3);
    let gap = ((4.0 * scale).round() as u32).max(2);
    for run in points.split(|p| !ok(p)).filter(|r| !r.is_empty()) {
        let x = |p: &BandPoint| p.epoch as f64;
        if run.len() == 1 {
            // One epoch: its range as a short bar.
            let p = run[0];
            let w = 0.12;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x(p) - w, y(p.q1)), (x(p) + w, y(p.q3))],
                style.fill.mix(style.alpha).filled(),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x(p) - w, y(p.median)), (x(p) + w, y(p.median))],
                style.median,
            )))?;
            continue;
        }
        let mut outline: Vec<(f64, f64)> = run.iter().map(|p| (x(p), y(p.q3))).collect();
        outline.extend(run.iter().rev().map(|p| (x(p), y(p.q1))));
        chart.draw_series(std::iter::once(Polygon::new(outline, style.fill.mix(style.alpha).filled())))?;
        let median: Vec<(f64, f64)> = run.iter().map(|p| (x(p), y(p.median))).collect();
        chart.draw_series(DashedLineSeries::new(median, dash, gap, style.median))?;
    }
    Ok(())
}

/// The value at fraction `q` (0..=1) of `sorted`, interpolated between neighbours (as
/// numpy's default); NaN for none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (at.floor() as usize, at - at.floor());
    match sorted.get(i + 1) {
        Some(next) if frac > 0.0 => sorted[i] + frac * (next - sorted[i]),
        _ => sorted[i],
    }
}

/// The class's band from its students' curves: per epoch, the quartiles of the finite
/// values (epochs no student has a finite value of are left out).
pub fn band(students: &[StudentCurve]) -> Vec<BandPoint> {
    let mut by_epoch: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
    for s in students {
        for &(e, v) in &s.points {
            if v.is_finite() {
                by_epoch.entry(e).or_default().push(v);
            }
        }
    }
    by_epoch
        .into_iter()
        .map(|(epoch, mut v)| {
            v.sort_by(f64::total_cmp);
            BandPoint { epoch, q1: quantile(&v, 0.25), median: quantile(&v, 0.5), q3: quantile(&v, 0.75), n: v.len() }
        })
        .collect()
}

/// The size a class's curves of `panels` panels is designed for: at it, its text is at full
/// size (15 px ticks and legend, as the job figures at 1000×700).
pub fn curves_size(panels: usize) -> (u32, u32) {
    let (cols, rows) = grid(panels);
    (if cols == 1 { 700 } else { 1000 }, 110 + rows * 380)
}

/// The size a strip of `runs` runs is designed for.
pub fn strip_size(runs: usize) -> (u32, u32) {
    ((260 + 180 * runs.max(1) as u32).clamp(600, 1000), 620)
}

/// `entries` in rows of a legend `width` wide (as `super::legend` spaces a row).
fn legend_rows(entries: Vec<Entry>, width: u32, scale: f64) -> Vec<Vec<Entry>> {
    let px = |s: f64| (s * scale).round() as u32;
    let (size, _) = legend_metrics(scale);
    let room = width.saturating_sub(px(16.0));
    let mut rows: Vec<Vec<Entry>> = Vec::new();
    let mut used = 0;
    for e in entries {
        let w = px(SAMPLE_W as f64) + px(8.0) + super::text_width(&e.label, size) + px(22.0);
        match rows.last_mut() {
            Some(row) if used + w <= room => row.push(e),
            _ => {
                rows.push(vec![e]);
                used = 0;
            }
        }
        used += w;
    }
    rows
}

/// Draws the title, then the legend's rows below it; returns where the panels go.
fn head<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, subtitle): (&str, &str),
    entries: Vec<Entry>,
    (w, h): (u32, u32),
    scale: f64,
) -> Result<Rect, DrawingAreaErrorKind<DB::ErrorType>> {
    let px = |s: f64| (s * scale).round() as u32;
    let mut y = 0;
    if !(title.is_empty() && subtitle.is_empty()) {
        title_block(root, title, subtitle, w, scale)?;
        y = px(70.0) as i32;
    }
    let (_, line) = legend_metrics(scale);
    for row in legend_rows(entries, w, scale) {
        legend(root, Rect { x: 0, y, w, h: line }, &row, false, scale)?;
        y += line as i32;
    }
    y += px(4.0) as i32;
    Ok(Rect { x: 0, y, w, h: h.saturating_sub(y as u32) })
}

/// A grey note centred at `p`, cut to `max` pixels.
fn note<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    p: (i32, i32),
    size: u32,
    max: u32,
) -> DrawResult<DB> {
    area.draw(&Text::new(
        fit_text(text, size, max),
        p,
        font(size).color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
}

/// Draws a section's class curves.
pub fn curves(fig: &ClassCurves, format: Format) -> Result<Vec<u8>, PlotError> {
    if !matches!(fig.metric, Metric::Loss | Metric::TrainAcc | Metric::TestAcc) {
        return Err(PlotError(format!("a class's curves show loss or an accuracy, not {:?}", fig.metric)));
    }
    encode(fig, (fig.width, fig.height), format)
}

impl Paint for ClassCurves {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_curves(root, self)
    }
}

/// What the curves' axes show, shared by every panel.
struct Axes {
    /// 100 for an accuracy (a fraction drawn in %), 1 for a loss.
    unit: f64,
    y: (f64, f64),
    /// The names of the highlighted students, in order of first appearance: their colour.
    highlighted: Vec<String>,
}

impl Axes {
    fn of(fig: &ClassCurves) -> Axes {
        let acc = fig.metric != Metric::Loss;
        let unit = if acc { 100.0 } else { 1.0 };
        let students = || fig.panels.iter().flat_map(|p| p.students.iter());
        let values: Vec<f64> =
            students().flat_map(|s| s.points.iter().map(|(_, v)| v * unit)).filter(|v| v.is_finite()).collect();
        let bulk: Vec<f64> = fig
            .panels
            .iter()
            .flat_map(|p| p.band.iter().filter(|b| b.n > 0).flat_map(|b| [b.q1, b.median, b.q3]))
            .map(|v| v * unit)
            .filter(|v| v.is_finite())
            .collect();
        let y = if acc {
            // Chance too, so a student stuck there is seen against it.
            let chances = fig.panels.iter().filter_map(|p| p.chance);
            acc_range(
                &values.iter().copied().chain(bulk.iter().copied()).chain(chances).collect::<Vec<_>>(),
                YAxis::Fit,
            )
        } else {
            // From the bulk of the class: the middle half's values set the scale, and a
            // student far above it (a diverged run) is drawn up to the top edge, not
            // flattening everyone else.
            let cap = bulk.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let kept: Vec<f64> = if cap > 0.0 {
                values.iter().copied().filter(|v| *v <= 3.0 * cap).chain(bulk.iter().copied()).collect()
            } else {
                values.clone()
            };
            y_range(&kept, YAxis::Fit)
        };
        let mut highlighted: Vec<String> = Vec::new();
        for s in students().filter(|s| s.highlighted) {
            if !highlighted.contains(&s.name) {
                highlighted.push(s.name.clone());
            }
        }
        Axes { unit, y, highlighted }
    }

    fn colour_of(&self, name: &str) -> RGBColor {
        highlight(self.highlighted.iter().position(|n| n == name).unwrap_or(0))
    }
}

/// The legend of a class's curves: only what its panels draw.
fn curves_entries(fig: &ClassCurves, axes: &Axes) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, name) in axes.highlighted.iter().enumerate() {
        out.push(Entry { label: name.clone(), sample: Sample::Class(Key::Highlight(highlight(i))) });
    }
    let bands = || fig.panels.iter().flat_map(|p| p.band.iter()).filter(|b| b.n > 0);
    if bands().next().is_some() {
        let n = bands().map(|b| b.n).max().unwrap_or(0);
        out.push(Entry { label: MEDIAN_LABEL.into(), sample: Sample::Class(Key::Median) });
        let students = if n == 1 { "1 student".to_string() } else { format!("{n} students") };
        out.push(Entry { label: format!("middle 50 % of the class ({students})"), sample: Sample::Class(Key::Spread) });
    }
    let students = || fig.panels.iter().flat_map(|p| p.students.iter());
    if students().any(|s| !s.highlighted && !s.points.is_empty()) {
        let label = if axes.highlighted.is_empty() { "each student" } else { "other students" };
        out.push(Entry { label: label.into(), sample: Sample::Class(Key::Student) });
    }
    if fig.metric != Metric::Loss {
        let mut chances: Vec<f64> = fig.panels.iter().filter_map(|p| p.chance).collect();
        chances.sort_by(f64::total_cmp);
        chances.dedup();
        for c in chances.into_iter().filter(|c| (axes.y.0..=axes.y.1).contains(c)) {
            out.push(Entry { label: format!("chance ({} %)", trim_number(c)), sample: Sample::Chance });
        }
    }
    let values = || students().flat_map(|s| s.points.iter().map(|(_, v)| *v));
    if values().any(|v| !v.is_finite()) {
        out.push(Entry { label: "not finite (diverged)".into(), sample: Sample::NotFinite });
    }
    if values().any(|v| v.is_finite() && v * axes.unit > axes.y.1) {
        out.push(Entry { label: format!("above {:.3} (off scale)", axes.y.1), sample: Sample::OffScale });
    }
    out
}

fn draw_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &ClassCurves) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (dw, dh) = curves_size(fig.panels.len());
    let scale = (fig.width as f64 / dw as f64).min(fig.height as f64 / dh as f64).max(0.5);
    let px = |s: f64| (s * scale).round() as u32;
    let axes = Axes::of(fig);
    let entries = curves_entries(fig, &axes);
    let body = head(root, (&fig.title, &fig.subtitle), entries, (fig.width, fig.height), scale)?;
    if fig.panels.is_empty() {
        let p = ((body.w / 2) as i32, body.y + body.h as i32 / 2);
        return note(root, NO_EPOCH_YET, p, px(19.0), body.w.saturating_sub(px(40.0)));
    }
    let (cols, rows) = grid(fig.panels.len());
    for (i, p) in fig.panels.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        let x0 = body.x + (body.w * c / cols) as i32;
        let x1 = body.x + (body.w * (c + 1) / cols) as i32;
        let y0 = body.y + (body.h * r / rows) as i32;
        let y1 = body.y + (body.h * (r + 1) / rows) as i32;
        let area = root.clone().shrink((x0, y0), ((x1 - x0) as u32, (y1 - y0) as u32));
        curves_panel(&area, fig, p, &axes, scale)?;
    }
    Ok(())
}

fn curves_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &ClassCurves,
    p: &ClassPanel,
    axes: &Axes,
    scale: f64,
) -> DrawResult<DB> {
    let px = |s: f64| (s * scale).round() as u32;
    let (y_lo, y_hi) = axes.y;
    let unit = axes.unit;
    let x_max = p
        .students
        .iter()
        .flat_map(|s| s.points.iter().map(|(e, _)| *e))
        .chain(p.band.iter().map(|b| b.epoch))
        .max()
        .unwrap_or(0)
        .max(p.epochs_total)
        .max(1);
    let (w, _) = area.dim_in_pixel();
    let caption = fit_text(&p.title, px(21.0), w.saturating_sub(px(24.0)));
    let pad = (0.02 * x_max as f64).max(0.25);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, px(21.0)))
        .margin(px(12.0))
        .x_label_area_size(px(46.0))
        .y_label_area_size(px(64.0))
        .build_cartesian_2d(1.0 - pad..x_max as f64 + pad, y_lo..y_hi)?;
    let whole = |x: &f64| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() };
    let digits = if (y_hi - y_lo) < 0.05 {
        4
    } else if (y_hi - y_lo) < 0.5 {
        3
    } else {
        2
    };
    let acc = fig.metric != Metric::Loss;
    let y_fmt =
        |y: &f64| if acc { format!("{y:.1}").trim_end_matches(".0").to_string() } else { format!("{y:.digits$}") };
    let y_desc = match fig.metric {
        Metric::TrainAcc => "training accuracy (%)",
        Metric::TestAcc => "test accuracy (%)",
        _ => "loss",
    };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels((x_max as usize).clamp(2, 11))
        .y_labels(6)
        .max_light_lines(1)
        .axis_desc_style((FAMILY, px(17.0)))
        .label_style((FAMILY, px(15.0)))
        .x_label_formatter(&whole)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    let base = area.get_base_pixel();
    let pixel = |chart: &Chart<DB>, x: f64, y: f64| {
        let p = chart.backend_coord(&(x, y));
        (p.0 - base.0, p.1 - base.1)
    };

    // Chance first, so everything draws over it.
    if let Some(c) = p.chance.filter(|c| acc && (y_lo..=y_hi).contains(c)) {
        let (a, y) = pixel(&chart, 1.0 - pad, c);
        let (b, _) = pixel(&chart, x_max as f64 + pad, c);
        chance_line(area, (a, b), y, scale)?;
    }
    let drawn =
        p.band.iter().any(|b| b.n > 0) || p.students.iter().any(|s| s.points.iter().any(|(_, v)| v.is_finite()));
    if !drawn {
        let (w, h) = area.dim_in_pixel();
        return note(
            area,
            NO_EPOCH_YET,
            (w as i32 / 2 + px(26.0) as i32, h as i32 / 2),
            px(17.0),
            w.saturating_sub(px(90.0)),
        );
    }

    // The band behind every line.
    let style = BandStyle { fill: BAND, alpha: 0.28, median: MEDIAN.stroke_width(px(2.5).max(2)) };
    let band_area = BandStyle { alpha: 0.28, median: TRANSPARENT.into(), ..style };
    draw_band(&mut chart, &p.band, unit, (y_lo, y_hi), &band_area, scale)?;

    // The other students: thin grey lines, fainter the more of them there are.
    let others = p.students.iter().filter(|s| !s.highlighted).count();
    let alpha = (1.6 / (others.max(1) as f64).sqrt()).clamp(0.13, 0.5);
    let thin = STUDENT.mix(alpha).stroke_width(px(1.2).max(1));
    let mut off_scale = Vec::new();
    let mut gaps = Vec::new();
    let mut line = |chart: &mut Chart<DB>, s: &StudentCurve, style: ShapeStyle, dot: u32| -> DrawResult<DB> {
        let points: Vec<(f64, Option<f64>)> =
            s.points.iter().map(|(e, v)| (*e as f64, Some(v * unit).filter(|v| v.is_finite()))).collect();
        for (x, v) in &points {
            match v {
                None => gaps.push(*x),
                Some(v) if *v > y_hi => off_scale.push((*x, style.color)),
                _ => {}
            }
        }
        for run in points.split(|(_, v)| v.is_none()).filter(|r| !r.is_empty()) {
            let run: Vec<(f64, f64)> = run.iter().map(|(x, v)| (*x, v.unwrap_or(y_lo).clamp(y_lo, y_hi))).collect();
            if run.len() > 1 {
                chart.draw_series(LineSeries::new(run.clone(), style))?;
            }
            if run.len() == 1 || (dot > 1 && run.len() <= 60) {
                for q in &run {
                    area.draw(&Circle::new(pixel(chart, q.0, q.1), dot.max(2), style.color.filled()))?;
                }
            }
        }
        Ok(())
    };
    for s in p.students.iter().filter(|s| !s.highlighted) {
        line(&mut chart, s, thin, 1)?;
    }
    // The median over the students, the highlighted over everything.
    let median_only = BandStyle { alpha: 0.0, ..style };
    draw_band(&mut chart, &p.band, unit, (y_lo, y_hi), &median_only, scale)?;
    let bold = px(3.5).max(2);
    for s in p.students.iter().filter(|s| s.highlighted) {
        line(&mut chart, s, axes.colour_of(&s.name).stroke_width(bold), bold + 1)?;
    }
    // Off the scale: ▲ on the top edge; not finite: × near it.
    for (x, c) in &off_scale {
        area.draw(&TriangleMarker::new(pixel(&chart, *x, y_hi), px(5.0).max(3), c.filled()))?;
    }
    gaps.sort_by(f64::total_cmp);
    gaps.dedup();
    for x in gaps {
        let at = pixel(&chart, x, y_hi - 0.04 * (y_hi - y_lo));
        area.draw(&Cross::new(at, px(5.0).max(3), BLACK.stroke_width(2)))?;
    }
    Ok(())
}

/// Draws a section's distribution of final values.
pub fn strip(fig: &ClassStrip, format: Format) -> Result<Vec<u8>, PlotError> {
    encode(fig, (fig.width, fig.height), format)
}

impl Paint for ClassStrip {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_strip(root, self)
    }
}

/// A run's box: quartiles, and whiskers to the furthest values within 1.5 IQR (Tukey's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxStats {
    pub low: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub high: f64,
}

impl BoxStats {
    /// `None` without a finite value.
    pub fn of(values: &[f64]) -> Option<BoxStats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let (q1, median, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
        let reach = 1.5 * (q3 - q1);
        let low = v.iter().copied().find(|x| *x >= q1 - reach).unwrap_or(q1);
        let high = v.iter().rev().copied().find(|x| *x <= q3 + reach).unwrap_or(q3);
        Some(BoxStats { low: low.min(q1), q1, median, q3, high: high.max(q3) })
    }
}

/// Where in `-1..1` of its run's width a student's dot goes: from their name, so it stays
/// put from one drawing to the next.
fn jitter(name: &str) -> f64 {
    // FNV-1a, then SplitMix64's finish so names alike but for their last letter land far
    // apart: the same on every build (std's hasher is not promised to be).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn strip_entries(fig: &ClassStrip, highlighted: &[String], y: (f64, f64)) -> Vec<Entry> {
    let mut out = Vec::new();
    let values = || fig.panels.iter().flat_map(|p| p.values.iter()).filter(|v| v.value.is_finite());
    for (i, name) in highlighted.iter().enumerate() {
        out.push(Entry { label: name.clone(), sample: Sample::Class(Key::BigDot(highlight(i))) });
    }
    if values().any(|v| !v.highlighted) {
        let label = if highlighted.is_empty() { "each student" } else { "other students" };
        out.push(Entry { label: label.into(), sample: Sample::Class(Key::Dot) });
    }
    if values().any(|v| v.flagged) {
        out.push(Entry { label: "flagged for a look".into(), sample: Sample::Class(Key::Flagged) });
    }
    if values().next().is_some() {
        out.push(Entry {
            label: "median, middle 50 %, whiskers to 1.5 × IQR".into(),
            sample: Sample::Class(Key::BoxPlot),
        });
    }
    let mut chances: Vec<f64> = fig.panels.iter().filter_map(|p| p.chance).collect();
    chances.sort_by(f64::total_cmp);
    chances.dedup();
    for c in chances.into_iter().filter(|c| (y.0..=y.1).contains(c)) {
        out.push(Entry { label: format!("chance ({} %)", trim_number(c)), sample: Sample::Chance });
    }
    out
}

fn draw_strip<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &ClassStrip) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (dw, dh) = strip_size(fig.panels.len());
    let scale = (fig.width as f64 / dw as f64).min(fig.height as f64 / dh as f64).max(0.5);
    let px = |s: f64| (s * scale).round() as u32;
    let unit = 100.0;
    let values: Vec<f64> = fig
        .panels
        .iter()
        .flat_map(|p| p.values.iter().map(|v| v.value * unit))
        .chain(fig.panels.iter().filter_map(|p| p.chance))
        .filter(|v| v.is_finite())
        .collect();
    let (y_lo, y_hi) = acc_range(&values, YAxis::Fit);
    let mut highlighted: Vec<String> = Vec::new();
    for v in fig.panels.iter().flat_map(|p| p.values.iter()).filter(|v| v.highlighted && v.value.is_finite()) {
        if !highlighted.contains(&v.name) {
            highlighted.push(v.name.clone());
        }
    }
    let entries = strip_entries(fig, &highlighted, (y_lo, y_hi));
    let body = head(root, (&fig.title, &fig.subtitle), entries, (fig.width, fig.height), scale)?;
    let area = root.clone().shrink((body.x, body.y), (body.w, body.h));
    let n = fig.panels.len().max(1);
    let mut chart = ChartBuilder::on(&area)
        .margin(px(12.0))
        .margin_right(px(20.0))
        .x_label_area_size(px(56.0))
        .y_label_area_size(px(64.0))
        .build_cartesian_2d(
            Ticked { lo: -0.5, hi: n as f64 - 0.5, bold: (0..n).map(|i| i as f64).collect(), light: Vec::new() },
            y_lo..y_hi,
        )?;
    let blank = |_: &f64| String::new();
    let y_fmt = |y: &f64| format!("{y:.1}").trim_end_matches(".0").to_string();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(fig.y_label.as_str())
        .y_labels(8)
        .max_light_lines(1)
        .axis_desc_style((FAMILY, px(17.0)))
        .label_style((FAMILY, px(15.0)))
        .x_label_formatter(&blank)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    let at = |x: f64, y: f64| chart.backend_coord(&(x, y));
    let slot = (at(1.0, y_lo).0 - at(0.0, y_lo).0).max(1) as f64;
    let box_half = (0.24 * slot).min(px(60.0) as f64).max(4.0) as i32;
    let spread = box_half as f64 * 0.9;
    let (left, _) = at(-0.5, y_lo);
    let (right, _) = at(n as f64 - 0.5, y_lo);
    for c in fig.panels.iter().filter_map(|p| p.chance).filter(|c| (y_lo..=y_hi).contains(c)) {
        chance_line(root, (left, right), at(0.0, c).1, scale)?;
    }
    let label_size = px(15.0);
    let dark = RGBColor(60, 60, 60);
    for (i, p) in fig.panels.iter().enumerate() {
        let x = i as f64;
        let (cx, bottom) = at(x, y_lo);
        // The run's name under its box, and how many students it holds.
        let shown: Vec<&StudentValue> = p.values.iter().filter(|v| v.value.is_finite()).collect();
        let name_room = (slot as u32).saturating_sub(px(10.0));
        root.draw(&Text::new(
            fit_text(&p.title, label_size, name_room),
            (cx, bottom + px(10.0) as i32),
            font(label_size).color(&RGBColor(30, 30, 30)).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        let count = match shown.len() {
            1 => "1 student".to_string(),
            k => format!("{k} students"),
        };
        root.draw(&Text::new(
            fit_text(&count, px(13.0), name_room),
            (cx, bottom + px(31.0) as i32),
            font(px(13.0)).color(&RGBColor(110, 110, 110)).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        let Some(b) = BoxStats::of(&shown.iter().map(|v| v.value * unit).collect::<Vec<_>>()) else {
            let mid = at(x, (y_lo + y_hi) / 2.0).1;
            note(root, NO_FINAL_VALUES, (cx, mid), px(15.0), name_room)?;
            continue;
        };
        let y = |v: f64| at(x, v).1;
        let line = dark.stroke_width(px(1.5).max(1));
        // The box's ground, the students' dots over it, then its lines over them (so 100
        // dots do not hide the median), the flags and the highlighted over everything.
        let corners = [(cx - box_half, y(b.q3)), (cx + box_half, y(b.q1))];
        root.draw(&Rectangle::new(corners, BAND.mix(0.15).filled()))?;
        let dot = px(4.0).max(2);
        let alpha = (0.7 - 0.004 * shown.len() as f64).clamp(0.4, 0.7);
        let place = |v: &StudentValue| (cx + (jitter(&v.name) * spread).round() as i32, y(v.value * unit));
        for v in shown.iter().filter(|v| !v.highlighted) {
            root.draw(&Circle::new(place(v), dot, STUDENT.mix(alpha).filled()))?;
        }
        let cap = box_half / 2;
        for (from, to) in [(b.q3, b.high), (b.q1, b.low)] {
            root.draw(&PathElement::new(vec![(cx, y(from)), (cx, y(to))], line))?;
            root.draw(&PathElement::new(vec![(cx - cap, y(to)), (cx + cap, y(to))], line))?;
        }
        root.draw(&Rectangle::new(corners, line))?;
        root.draw(&PathElement::new(
            vec![(cx - box_half, y(b.median)), (cx + box_half, y(b.median))],
            MEDIAN.stroke_width(px(3.0).max(2)),
        ))?;
        for v in shown.iter().filter(|v| v.flagged && !v.highlighted) {
            flag_ring(root, place(v), dot, scale)?;
        }
        // The highlighted: a large dot, its name right of the box (in the room between
        // boxes, where no dot falls), joined to it by a thin line.
        let size = px(14.0);
        let mut marked: Vec<&&StudentValue> = shown.iter().filter(|v| v.highlighted).collect();
        marked.sort_by_key(|v| place(v).1);
        let mut last_y = i32::MIN;
        for v in marked {
            let c = highlight(highlighted.iter().position(|h| *h == v.name).unwrap_or(0));
            let p = place(v);
            let r = px(7.0).max(4);
            let x0 = cx + box_half + px(8.0) as i32;
            let ty = p.1.max(last_y + size as i32 + 2);
            last_y = ty;
            root.draw(&PathElement::new(vec![(p.0 + r as i32, p.1), (x0 - px(3.0) as i32, ty)], c.stroke_width(1)))?;
            big_dot(root, p, c, scale)?;
            if v.flagged {
                flag_ring(root, p, r, scale)?;
            }
            let room = (slot as u32).saturating_sub(2 * box_half as u32 + px(16.0)).max(px(40.0));
            let text = fit_text(&v.name, size, room);
            let tw = super::text_width(&text, size) as i32;
            let half = (size as i32 * 3) / 5;
            root.draw(&Rectangle::new([(x0 - 2, ty - half), (x0 + tw + 2, ty + half)], WHITE.mix(0.85).filled()))?;
            root.draw(&Text::new(text, (x0, ty), font(size).color(&c).pos(Pos::new(HPos::Left, VPos::Center))))?;
        }
    }
    if fig.panels.is_empty() {
        let mid = at(0.0, (y_lo + y_hi) / 2.0);
        note(root, NO_FINAL_VALUES, mid, px(17.0), body.w.saturating_sub(px(100.0)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{render, EpochMetrics, Figure, Series, BAND_LABEL};
    use super::*;

    const NAMES: [&str; 12] =
        ["ada", "ben", "chloé", "dmitri", "emeka", "fatima", "gus", "hana", "ivan", "jules", "kofi", "lena"];

    /// Student `i`'s curve: accuracies (fractions) rising to a level of their own, or losses
    /// falling; `diverged`: NaN from epoch 3, 1e30 before it.
    fn curve(i: usize, metric: Metric, epochs: u32, diverged: bool) -> StudentCurve {
        let level = 0.35 + 0.03 * i as f64;
        let points = (1..=epochs)
            .map(|e| {
                let t = 1.0 - (-(e as f64) / 3.0).exp();
                let v = match metric {
                    Metric::Loss if diverged => {
                        if e < 3 {
                            1e30
                        } else {
                            f64::NAN
                        }
                    }
                    Metric::Loss => 2.3 - (2.3 - 1.9 * (1.0 - level)) * t,
                    _ if diverged => 0.1,
                    _ => 0.1 + (level - 0.1) * t,
                };
                (e, v)
            })
            .collect();
        StudentCurve { name: NAMES[i % NAMES.len()].to_string(), points, highlighted: i == 4 }
    }

    fn class_panel(title: &str, metric: Metric, students: usize, epochs: u32) -> ClassPanel {
        let students: Vec<StudentCurve> = (0..students).map(|i| curve(i, metric, epochs, i == 7)).collect();
        ClassPanel { title: title.into(), band: band(&students), students, chance: Some(10.0), epochs_total: 10 }
    }

    fn curves_fig(metric: Metric, panels: Vec<ClassPanel>) -> ClassCurves {
        let (width, height) = curves_size(panels.len());
        ClassCurves {
            title: "Section 2: the learning rate".into(),
            subtitle: "cnn · batch_size=32 · epochs=10 · 12 students".into(),
            metric,
            panels,
            width,
            height,
        }
    }

    fn strip_panel(title: &str, students: usize, shift: f64) -> StripPanel {
        let values = (0..students)
            .map(|i| StudentValue {
                name: NAMES[i % NAMES.len()].to_string(),
                value: if i == 7 { 0.1 } else { 0.4 + shift + 0.02 * (i as f64 - 6.0).abs() },
                highlighted: i == 4,
                flagged: i == 9,
            })
            .collect();
        StripPanel { title: title.into(), values, chance: Some(10.0) }
    }

    fn strip_fig(panels: Vec<StripPanel>) -> ClassStrip {
        let (width, height) = strip_size(panels.len());
        ClassStrip {
            title: "Section 2: final test accuracy".into(),
            subtitle: "cnn · batch_size=32 · epochs=10".into(),
            y_label: "final test accuracy (%)".into(),
            panels,
            width,
            height,
        }
    }

    fn svg_text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    fn says(svg: &str, label: &str) -> bool {
        svg.contains(&format!(">\n{label}\n<"))
    }

    fn png_size(png: &[u8]) -> (u32, u32) {
        image::load_from_memory(png).unwrap().to_rgb8().dimensions()
    }

    fn has_colour(png: &[u8], c: RGBColor) -> bool {
        image::load_from_memory(png).unwrap().to_rgb8().pixels().any(|p| p.0 == [c.0, c.1, c.2])
    }

    #[test]
    fn class_curves_draw_the_band_the_class_and_the_highlighted_student() {
        for metric in [Metric::TestAcc, Metric::TrainAcc, Metric::Loss] {
            let fig =
                curves_fig(metric, vec![class_panel("lr 0.1", metric, 12, 10), class_panel("lr 0.01", metric, 12, 6)]);
            let svg = svg_text(curves(&fig, Format::Svg).unwrap());
            for label in ["emeka", MEDIAN_LABEL, "middle 50 % of the class (12 students)", "other students", "lr 0.1"] {
                assert!(says(&svg, label), "{metric:?}: the figure says {label:?}");
            }
            assert_eq!(says(&svg, "chance (10 %)"), metric != Metric::Loss, "{metric:?}: chance on accuracy only");
            let png = curves(&fig, Format::Png).unwrap();
            assert_eq!(png_size(&png), (fig.width, fig.height));
            assert!(has_colour(&png, highlight(0)), "{metric:?}: the highlighted student's line");
        }
        // The diverged student's loss: gaps and off-scale marks, and the axis keeps to the bulk.
        let fig = curves_fig(Metric::Loss, vec![class_panel("lr 10", Metric::Loss, 12, 10)]);
        let svg = svg_text(curves(&fig, Format::Svg).unwrap());
        assert!(says(&svg, "not finite (diverged)"));
        let axes = Axes::of(&fig);
        assert!(axes.y.1 < 5.0, "one diverged student does not set the scale: {:?}", axes.y);
        assert!(svg.contains("above "), "a 1e30 loss is marked off scale");
    }

    #[test]
    fn class_curves_with_empty_panels_one_student_or_none_still_draw() {
        let empty =
            ClassPanel { title: "lr 1".into(), band: Vec::new(), students: Vec::new(), chance: None, epochs_total: 5 };
        let one = {
            let students = vec![curve(0, Metric::TestAcc, 1, false)];
            ClassPanel { title: "lr 0.1".into(), band: band(&students), students, chance: None, epochs_total: 5 }
        };
        let cases = [vec![empty.clone()], vec![one.clone(), empty.clone()], vec![one], Vec::new()];
        for panels in cases {
            let fig = curves_fig(Metric::TestAcc, panels);
            for format in [Format::Png, Format::Svg] {
                curves(&fig, format).unwrap();
            }
        }
        let svg = svg_text(curves(&curves_fig(Metric::TestAcc, vec![empty.clone()]), Format::Svg).unwrap());
        assert!(says(&svg, NO_EPOCH_YET), "an empty panel says why");
        assert!(!says(&svg, MEDIAN_LABEL), "no legend entry for a band not drawn");
        let svg = svg_text(curves(&curves_fig(Metric::TestAcc, Vec::new()), Format::Svg).unwrap());
        assert!(says(&svg, NO_EPOCH_YET));
        // A single student: their own band, "1 student".
        let students = vec![StudentCurve { highlighted: true, ..curve(2, Metric::TestAcc, 4, false) }];
        let p =
            ClassPanel { title: "alone".into(), band: band(&students), students, chance: Some(10.0), epochs_total: 4 };
        let svg = svg_text(curves(&curves_fig(Metric::TestAcc, vec![p]), Format::Svg).unwrap());
        assert!(says(&svg, "chloé") && says(&svg, "middle 50 % of the class (1 student)"));
        assert!(!says(&svg, "other students"));
        // All is not one metric.
        assert!(curves(&curves_fig(Metric::All, vec![empty]), Format::Svg).is_err());
    }

    #[test]
    fn a_strip_draws_boxes_dots_the_highlighted_name_and_flags() {
        let fig = strip_fig(vec![
            strip_panel("lr 0.1", 12, 0.0),
            strip_panel("lr 0.01 with a name too long to fit under its box", 12, 0.1),
        ]);
        let svg = svg_text(strip(&fig, Format::Svg).unwrap());
        for label in
            ["emeka", "flagged for a look", "median, middle 50 %, whiskers to 1.5 × IQR", "lr 0.1", "12 students"]
        {
            assert!(says(&svg, label), "the strip says {label:?}");
        }
        assert!(svg.contains("…"), "a long run title is cut");
        let png = strip(&fig, Format::Png).unwrap();
        assert_eq!(png_size(&png), (fig.width, fig.height));
        assert!(has_colour(&png, highlight(0)), "the highlighted student's dot");
        assert!(has_colour(&png, FLAG), "a flagged student's ring");
    }

    #[test]
    fn a_strip_with_empty_runs_one_student_or_none_still_draws() {
        let empty = StripPanel { title: "lr 1".into(), values: Vec::new(), chance: None };
        let nan = StripPanel {
            title: "lr 10".into(),
            values: vec![StudentValue { name: "x".into(), value: f64::NAN, highlighted: false, flagged: true }],
            chance: None,
        };
        let cases = [vec![empty.clone()], vec![strip_panel("one", 1, 0.0), empty.clone(), nan], Vec::new()];
        for panels in cases {
            let fig = strip_fig(panels);
            for format in [Format::Png, Format::Svg] {
                let out = strip(&fig, format).unwrap();
                if format == Format::Png {
                    assert_eq!(png_size(&out), (fig.width, fig.height));
                }
            }
        }
        let svg = svg_text(strip(&strip_fig(vec![empty]), Format::Svg).unwrap());
        assert!(says(&svg, NO_FINAL_VALUES));
        assert!(!svg.contains("whiskers"), "no box in the legend without one drawn");
        let svg = svg_text(strip(&strip_fig(vec![strip_panel("one", 1, 0.0)]), Format::Svg).unwrap());
        assert!(says(&svg, "1 student") && says(&svg, "each student"));
    }

    #[test]
    fn boxes_reach_to_1_5_iqr_and_jitter_is_stable() {
        let b = BoxStats::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 100.0, f64::NAN]).unwrap();
        assert_eq!((b.q1, b.median, b.q3), (2.25, 3.5, 4.75));
        assert_eq!((b.low, b.high), (1.0, 5.0), "100 is an outlier: a dot beyond the whisker");
        assert_eq!(BoxStats::of(&[f64::NAN]), None);
        assert_eq!(BoxStats::of(&[0.5]).map(|b| (b.low, b.high)), Some((0.5, 0.5)));
        assert_eq!(jitter("ada"), jitter("ada"));
        assert_ne!(jitter("ada"), jitter("ben"));
        assert!((0..200).map(|i| jitter(&format!("s{i}"))).all(|j| (-1.0..1.0).contains(&j)));
        let students = vec![
            StudentCurve { name: "a".into(), points: vec![(1, 0.2), (2, f64::NAN)], highlighted: false },
            StudentCurve { name: "b".into(), points: vec![(1, 0.4)], highlighted: false },
        ];
        let bands = band(&students);
        assert_eq!(bands.len(), 1, "no finite value, no band point");
        assert!((bands[0].median - 0.3).abs() < 1e-12 && bands[0].n == 2);
    }

    fn epochs(n: u32, level: f64) -> Vec<EpochMetrics> {
        (1..=n)
            .map(|e| {
                let t = 1.0 - (-(e as f64) / 3.0).exp();
                EpochMetrics {
                    epoch: e,
                    train_loss: Some(2.3 - 1.2 * t),
                    train_acc: 0.1 + (level + 0.05 - 0.1) * t,
                    test_loss: Some(2.3 - 1.1 * t),
                    test_acc: 0.1 + (level - 0.1) * t,
                    seconds: 1.0,
                    train_seconds: 1.0,
                    samples_per_second: 1.0,
                    diverged: false,
                    lr: None,
                }
            })
            .collect()
    }

    fn job_figure<'a>(series: Vec<Series<'a>>, metric: Metric) -> Figure<'a> {
        Figure {
            title: "Your run: lr 0.1".into(),
            subtitle: "cnn · batch_size=32 · lr=0.1".into(),
            series,
            metric,
            epochs_total: 10,
            empty_note: "no epoch finished yet (queued)".into(),
            width: 1000,
            height: 700,
            y_axis: YAxis::Fit,
        }
    }

    fn class_band() -> Vec<BandPoint> {
        let students: Vec<StudentCurve> = (0..12).map(|i| curve(i, Metric::TestAcc, 10, i == 7)).collect();
        band(&students)
    }

    #[test]
    fn a_job_figure_draws_the_class_band_on_test_accuracy_alone() {
        let mine = epochs(6, 0.55);
        let spec = serde_json::json!({"loss": "cross_entropy", "dataset": "cifar10"});
        let with = || Series { band: Some(class_band()), ..Series::of_spec("you".into(), &mine, &spec) };
        for metric in [Metric::All, Metric::TestAcc] {
            let svg = svg_text(render(&job_figure(vec![with()], metric), Format::Svg).unwrap());
            assert!(says(&svg, BAND_LABEL), "{metric:?}: the band is in the legend");
            let png = render(&job_figure(vec![with()], metric), Format::Png).unwrap();
            assert_eq!(png_size(&png), (1000, 700));
            let plain = svg_text(
                render(&job_figure(vec![Series::of_spec("you".into(), &mine, &spec)], metric), Format::Svg).unwrap(),
            );
            assert!(!says(&plain, BAND_LABEL), "{metric:?}: no band, no legend entry");
        }
        for metric in [Metric::Loss, Metric::TrainAcc, Metric::Lr] {
            let svg = svg_text(render(&job_figure(vec![with()], metric), Format::Svg).unwrap());
            assert!(!says(&svg, BAND_LABEL), "{metric:?}: no test accuracy panel, no band");
        }
        // A comparison names the band once, however many series have one.
        let other = epochs(4, 0.45);
        let both = vec![with(), Series { band: Some(class_band()), ..Series::of_spec("them".into(), &other, &spec) }];
        let svg = svg_text(render(&job_figure(both, Metric::All), Format::Svg).unwrap());
        assert_eq!(svg.matches(&format!(">\n{BAND_LABEL}\n<")).count(), 1);
        // A queued job's figure still draws the class's band.
        let none: Vec<EpochMetrics> = Vec::new();
        let queued = Series { band: Some(class_band()), ..Series::plain("you", &none) };
        render(&job_figure(vec![queued], Metric::TestAcc), Format::Png).unwrap();
    }

    /// Writes sample figures to `$CLASSPLOT_SAMPLES` (e.g. /tmp/classplot) to look at.
    #[test]
    fn sample_figures() {
        let Ok(dir) = std::env::var("CLASSPLOT_SAMPLES") else { return };
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        // 100 students, each at a level of their own (from their name), one diverged.
        let big = |title: &str, metric: Metric, k: usize, epochs: u32, lift: f64| {
            let students: Vec<StudentCurve> = (0..100)
                .map(|i| {
                    let name = if i < 12 { NAMES[i].to_string() } else { format!("student {i}") };
                    let level = (0.5 + lift + 0.14 * jitter(&format!("{name}/{k}"))).clamp(0.12, 0.95);
                    let speed = 2.0 + 1.5 * (jitter(&format!("{name}-{k}")) + 1.0);
                    let diverged = i == 7 && k == 3;
                    let points = (1..=epochs)
                        .map(|e| {
                            let t = 1.0 - (-(e as f64) / speed).exp();
                            let v = match metric {
                                Metric::Loss if diverged => match e {
                                    1 | 2 => 1e30,
                                    3 | 4 => 40.0,
                                    _ => f64::NAN,
                                },
                                Metric::Loss => 2.3 - (2.3 - 2.1 * (1.0 - level)) * t,
                                _ if diverged => 0.1,
                                _ => 0.1 + (level - 0.1) * t,
                            };
                            (e, v)
                        })
                        .collect();
                    StudentCurve { name, points, highlighted: i == 4 }
                })
                .collect();
            ClassPanel { title: title.into(), band: band(&students), students, chance: Some(10.0), epochs_total: 10 }
        };
        for (metric, file) in [(Metric::TestAcc, "curves_test_acc.png"), (Metric::Loss, "curves_loss.png")] {
            let panels = vec![
                big("lr 0.001", metric, 0, 10, -0.1),
                big("lr 0.01", metric, 1, 10, 0.0),
                big("lr 0.1", metric, 2, 7, 0.08),
                big("lr 10 (too high)", metric, 3, 10, 0.0),
            ];
            let fig = curves_fig(metric, panels);
            std::fs::write(dir.join(file), curves(&fig, Format::Png).unwrap()).unwrap();
            std::fs::write(dir.join(file.replace(".png", ".svg")), curves(&fig, Format::Svg).unwrap()).unwrap();
        }
        let fig = curves_fig(Metric::TestAcc, vec![big("lr 0.01", Metric::TestAcc, 1, 10, 0.0)]);
        std::fs::write(dir.join("curves_one.png"), curves(&fig, Format::Png).unwrap()).unwrap();
        let runs: Vec<StripPanel> = ["lr 0.001", "lr 0.01", "lr 0.1", "lr 10 with a long name for its run"]
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let mut p = strip_panel(t, 12, [-0.1, 0.0, 0.1, -0.25][k]);
                let more: Vec<StudentValue> = (0..88)
                    .map(|i| StudentValue {
                        name: format!("student {i}"),
                        value: 0.45 + [-0.1, 0.0, 0.1, -0.25][k] + 0.1 * jitter(&format!("v{i}{k}")),
                        highlighted: false,
                        flagged: i == 3 && k == 2,
                    })
                    .collect();
                p.values.extend(more);
                if k == 3 {
                    p.values.truncate(0);
                }
                p
            })
            .collect();
        let fig = strip_fig(runs);
        std::fs::write(dir.join("strip.png"), strip(&fig, Format::Png).unwrap()).unwrap();
        std::fs::write(dir.join("strip.svg"), strip(&fig, Format::Svg).unwrap()).unwrap();
        let mine = epochs(6, 0.55);
        let spec = serde_json::json!({"loss": "cross_entropy", "dataset": "cifar10"});
        let series = vec![Series { band: Some(class_band()), ..Series::of_spec("you".into(), &mine, &spec) }];
        std::fs::write(dir.join("job_band.png"), render(&job_figure(series, Metric::All), Format::Png).unwrap())
            .unwrap();
        let other = epochs(10, 0.45);
        let series = vec![
            Series { band: Some(class_band()), ..Series::of_spec("you".into(), &mine, &spec) },
            Series::of_spec("tutorial".into(), &other, &spec),
        ];
        std::fs::write(
            dir.join("job_band_compare.png"),
            render(&job_figure(series, Metric::TestAcc), Format::Png).unwrap(),
        )
        .unwrap();
    }
}
