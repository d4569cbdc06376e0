//! Plots, pure: metrics in, PNG or SVG bytes out.
//!
//! One job's figure (`metric=all`) has three panels: loss (train and test, with a legend)
//! across the top, training and test accuracy (in %) below; `metric=lr` draws each epoch's
//! learning rate alone. A comparison draws each job in
//! its own colour. A loss that was not finite leaves a gap in its line and a red × at the
//! top of the panel; one huge finite value does not wreck the axis: the range is set from
//! the bulk of the values, and points above it are drawn as ▲ on the top edge.

use crate::job::EpochMetrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

/// The font every PNG is drawn with (DejaVu Sans, assets/fonts/LICENSE-DejaVu.txt); SVG
/// names the family and lets the viewer's font draw it.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

pub const MAX_SERIES: usize = 20;
pub const WIDTHS: (u32, u32) = (300, 2000);
pub const HEIGHTS: (u32, u32) = (200, 2000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Loss,
    TrainAcc,
    TestAcc,
    /// Each epoch's learning rate (its schedule's).
    Lr,
    All,
}

impl Metric {
    pub const NAMES: [&'static str; 5] = ["loss", "train_acc", "test_acc", "lr", "all"];

    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "loss" => Metric::Loss,
            "train_acc" => Metric::TrainAcc,
            "test_acc" => Metric::TestAcc,
            "lr" => Metric::Lr,
            "all" => Metric::All,
            _ => return None,
        })
    }
}

/// How the y axes are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum YAxis {
    /// Fitted to the data, so a short study's differences show (the default).
    #[default]
    Fit,
    /// Loss from 0, accuracy 0–100 %: every figure on one scale.
    Full,
}

impl YAxis {
    pub const NAMES: [&'static str; 2] = ["fit", "full"];

    pub fn parse(s: &str) -> Option<YAxis> {
        match s {
            "fit" => Some(YAxis::Fit),
            "full" => Some(YAxis::Full),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub const NAMES: [&'static str; 2] = ["png", "svg"];

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "png" => Some(Format::Png),
            "svg" => Some(Format::Svg),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Svg => "image/svg+xml",
        }
    }
}

/// One job's curves.
pub struct Series<'a> {
    pub label: String,
    pub epochs: &'a [EpochMetrics],
}

/// What to draw.
pub struct Figure<'a> {
    pub title: String,
    /// A second title line: the settings the jobs share.
    pub subtitle: String,
    pub series: Vec<Series<'a>>,
    pub metric: Metric,
    /// The x axis runs to here (a running job's plot shows how far it has come).
    pub epochs_total: u32,
    /// Shown in an empty panel, e.g. "no epoch finished yet (queued)".
    pub empty_note: String,
    pub width: u32,
    pub height: u32,
    pub y_axis: YAxis,
}

#[derive(Debug, thiserror::Error)]
#[error("drawing the plot failed: {0}")]
pub struct PlotError(String);

/// Ten colours from matplotlib's tab10, then their lighter tab20 partners.
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Draws the figure in the format asked.
pub fn render(fig: &Figure, format: Format) -> Result<Vec<u8>, PlotError> {
    // Both backends measure text with the font, so it is registered for SVG too.
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
    let (w, h) = (fig.width, fig.height);
    match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                draw(&root, fig).map_err(|e| PlotError(e.to_string()))?;
                root.present().map_err(|e| PlotError(e.to_string()))?;
            }
            Ok(svg.into_bytes())
        }
        Format::Png => {
            let mut pixels = vec![0u8; (w * h * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
                draw(&root, fig).map_err(|e| PlotError(e.to_string()))?;
                root.present().map_err(|e| PlotError(e.to_string()))?;
            }
            let img = image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| PlotError("bad buffer".into()))?;
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| PlotError(e.to_string()))?;
            Ok(out.into_inner())
        }
    }
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Which value of an epoch a panel shows.
#[derive(Clone, Copy)]
enum Value {
    TrainLoss,
    TestLoss,
    TrainAcc,
    TestAcc,
    Lr,
}

impl Value {
    fn of(self, e: &EpochMetrics) -> Option<f64> {
        match self {
            Value::TrainLoss => e.train_loss,
            Value::TestLoss => e.test_loss,
            Value::TrainAcc => Some(e.train_acc * 100.0),
            Value::TestAcc => Some(e.test_acc * 100.0),
            Value::Lr => e.lr,
        }
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let scale = (fig.height as f64 / 700.0).min(fig.width as f64 / 1000.0).max(0.5);
    let px = |s: f64| (s * scale).round() as u32;
    // No title and no subtitle (a report gives them in its own text): no title band.
    let title_h = if fig.title.is_empty() && fig.subtitle.is_empty() { 0 } else { px(70.0) };
    let (top, body) = root.split_vertically(title_h);
    top.draw(&Text::new(fig.title.clone(), (px(16.0) as i32, px(8.0) as i32), (FAMILY, px(30.0)).into_font()))?;
    // A long settings line gets a smaller font rather than running off the edge (a glyph
    // of DejaVu Sans is about 0.55 em wide on average).
    let fits = (fig.width as f64 - 32.0) / (0.55 * fig.subtitle.chars().count().max(1) as f64);
    let sub_size = (18.0 * scale).min(fits).max(9.0).round() as u32;
    top.draw(&Text::new(
        fig.subtitle.clone(),
        (px(16.0) as i32, px(44.0) as i32),
        (FAMILY, sub_size).into_font().color(&RGBColor(80, 80, 80)),
    ))?;
    match fig.metric {
        Metric::All => {
            let (upper, lower) = body.split_vertically(body.dim_in_pixel().1 / 2);
            let halves = lower.split_evenly((1, 2));
            panel(&upper, fig, Metric::Loss, scale)?;
            panel(&halves[0], fig, Metric::TrainAcc, scale)?;
            panel(&halves[1], fig, Metric::TestAcc, scale)?;
        }
        m => panel(&body, fig, m, scale)?,
    }
    Ok(())
}

/// A loss range from the bulk of the values: a single huge value (a diverging first epoch)
/// is left off the scale rather than flattening every other curve. `Full` starts at 0;
/// `Fit` hugs the values with a margin (never below 0 for losses that are not).
fn y_range(values: &[f64], axis: YAxis) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f64::total_cmp);
    let min = v[0];
    let max = v[v.len() - 1];
    let q90 = v[((v.len() - 1) as f64 * 0.9).round() as usize];
    let top = if q90 > 0.0 && max > 3.0 * q90 { 1.5 * q90 } else { max };
    match axis {
        YAxis::Full => {
            let (lo, hi) = (min.min(0.0), top * 1.05);
            (lo, if hi > lo { hi } else { lo + 1.0 })
        }
        YAxis::Fit => {
            let floor = if min >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
            fitted(min, top, 0.05 * top.abs().max(1e-3), floor, f64::INFINITY)
        }
    }
}

/// `[min, max]` with a 7% margin each side (at least `least` wide in all), kept within
/// `[floor, ceil]`.
fn fitted(min: f64, max: f64, least: f64, floor: f64, ceil: f64) -> (f64, f64) {
    let span = (max - min).max(least);
    let mid = (min + max) / 2.0;
    let (mut lo, mut hi) = (mid - span / 2.0 - 0.07 * span, mid + span / 2.0 + 0.07 * span);
    if lo < floor {
        hi += floor - lo;
        lo = floor;
    }
    if hi > ceil {
        lo = (lo - (hi - ceil)).max(floor);
        hi = ceil;
    }
    (lo, hi)
}

/// An accuracy range in %: 0–100, or fitted to the values (at least 4 points wide).
fn acc_range(values: &[f64], axis: YAxis) -> (f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if axis == YAxis::Full || v.is_empty() {
        return (0.0, 100.0);
    }
    let (min, max) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
    fitted(min, max, 4.0, 0.0, 100.0)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    metric: Metric,
    scale: f64,
) -> DrawResult<DB> {
    let px = |s: f64| (s * scale).round() as u32;
    let comparing = fig.series.len() > 1;
    let (caption, y_desc, values): (&str, &str, Vec<Value>) = match metric {
        Metric::Loss => ("loss", "loss", vec![Value::TrainLoss, Value::TestLoss]),
        Metric::TrainAcc => ("training accuracy", "accuracy (%)", vec![Value::TrainAcc]),
        Metric::TestAcc => ("test accuracy", "accuracy (%)", vec![Value::TestAcc]),
        Metric::Lr => ("learning rate", "learning rate", vec![Value::Lr]),
        Metric::All => unreachable!("split before"),
    };
    // A run of one epoch (or a point between gaps) is a dot, not a line: train filled, test
    // open, and the caption and legend say so.
    let lone_only = |s: &Series| {
        let train: Vec<Option<f64>> = s.epochs.iter().map(|e| e.train_loss).collect();
        !train.is_empty() && dots_only(&train)
    };
    let any_lone = fig.series.iter().any(lone_only);
    let any_line = fig.series.iter().any(|s| !s.epochs.is_empty() && !lone_only(s));
    let caption = match (metric == Metric::Loss && comparing, any_line, any_lone) {
        (false, ..) => caption,
        (true, true, true) => "loss (train: solid line or filled dot; test: dashed line or open dot)",
        (true, false, true) => "loss (filled dot: train, open dot: test)",
        (true, ..) => "loss (solid: train, dashed: test)",
    };
    let x_max = fig
        .series
        .iter()
        .flat_map(|s| s.epochs.iter().map(|e| e.epoch))
        .max()
        .unwrap_or(0)
        .max(fig.epochs_total)
        .max(1);
    let (y_lo, y_hi, y_top) = if metric == Metric::Loss {
        let all: Vec<f64> = fig
            .series
            .iter()
            .flat_map(|s| s.epochs.iter())
            .flat_map(|e| [e.train_loss, e.test_loss])
            .flatten()
            .collect();
        let (lo, hi) = y_range(&all, fig.y_axis);
        // Room above the curves for the legend: a line per job (or per loss), plus markers.
        let entries = if comparing { fig.series.len() } else { 2 } + 1;
        (lo, hi, hi + (hi - lo) * (0.1 + 0.08 * entries as f64).min(0.9))
    } else if metric == Metric::Lr {
        // From 0, so a decay reads as the fraction of the rate it leaves; room for a legend.
        let top = fig.series.iter().flat_map(|s| s.epochs.iter()).filter_map(|e| e.lr).fold(0.0, f64::max);
        let hi = if top > 0.0 { top * 1.05 } else { 1.0 };
        (0.0, hi, hi * if comparing { 1.0 + (0.1 + 0.08 * fig.series.len() as f64).min(0.9) } else { 1.0 })
    } else {
        let all: Vec<f64> = fig.series.iter().flat_map(|s| s.epochs.iter()).filter_map(|e| values[0].of(e)).collect();
        let (lo, hi) = acc_range(&all, fig.y_axis);
        (lo, hi, hi)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, px(21.0)))
        .margin(px(12.0))
        .x_label_area_size(px(46.0))
        .y_label_area_size(px(64.0))
        // Room on the right for the last point, on the top for the legend.
        .build_cartesian_2d(0.0..x_max as f64 * 1.02 + 0.2, y_lo..y_top)?;
    let whole = |x: &f64| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() };
    // Enough decimals that neighbouring ticks differ.
    let digits = if (y_top - y_lo) < 0.05 {
        4
    } else if (y_top - y_lo) < 0.5 {
        3
    } else {
        2
    };
    let y_fmt = |y: &f64| {
        if metric == Metric::Lr {
            // Rates span decades (1.0 for Adadelta, 1e-4 for a decayed SGD): 3 significant digits.
            if *y == 0.0 {
                "0".to_string()
            } else if y_top < 0.01 {
                format!("{y:.1e}")
            } else {
                format!("{y:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
            }
        } else if metric == Metric::Loss {
            format!("{y:.digits$}")
        } else {
            format!("{y:.1}").trim_end_matches(".0").to_string()
        }
    };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels((x_max as usize + 1).min(11))
        .y_labels(6)
        .max_light_lines(1)
        .axis_desc_style((FAMILY, px(17.0)))
        .label_style((FAMILY, px(15.0)))
        .x_label_formatter(&whole)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;

    let empty = fig.series.iter().all(|s| s.epochs.is_empty());
    if empty {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            fig.empty_note.clone(),
            (w as i32 / 2 - px(120.0) as i32, h as i32 / 2),
            (FAMILY, px(19.0)).into_font().color(&RGBColor(120, 120, 120)),
        ))?;
        return Ok(());
    }

    let stroke = px(3.0).max(2);
    let mut marked_gap = false;
    let mut marked_off = false;
    for (si, s) in fig.series.iter().enumerate() {
        for (vi, value) in values.iter().enumerate() {
            // One job: train and test loss get colours of their own. Several: one colour
            // per job, and test loss dashed.
            let c = if comparing { colour(si) } else { colour(vi) };
            let dashed = comparing && vi == 1;
            let label = match (comparing, value) {
                (true, _) if vi == 0 => Some(s.label.clone()),
                (true, _) => None,
                (false, Value::TrainLoss) => Some("train loss".to_string()),
                (false, Value::TestLoss) => Some("test loss".to_string()),
                (false, _) => None,
            };
            let points: Vec<(f64, Option<f64>)> = s.epochs.iter().map(|e| (e.epoch as f64, value.of(e))).collect();
            let open = matches!(value, Value::TestLoss);
            let dot = px(5.5);
            let dot_style = if open { c.stroke_width(stroke) } else { c.filled() };
            let marker = move |p: (f64, f64)| Circle::new(p, dot, dot_style);
            // Every drawable run of this value is one epoch long: its legend is a dot too.
            let all_dots = dots_only(&points.iter().map(|(_, v)| *v).collect::<Vec<_>>());
            let mut labelled = false;
            for segment in points.split(|(_, v)| v.is_none()).filter(|seg| !seg.is_empty()) {
                let line: Vec<(f64, f64)> =
                    segment.iter().map(|(x, v)| (*x, v.expect("split on None").min(y_hi))).collect();
                let style = c.stroke_width(stroke);
                if line.len() == 1 {
                    let drawn = chart.draw_series(std::iter::once(marker(line[0])))?;
                    if let (Some(l), false) = (&label, labelled) {
                        if all_dots {
                            drawn.label(l.clone()).legend(move |(x, y)| Circle::new((x + 11, y), dot, dot_style));
                        } else {
                            drawn.label(l.clone()).legend(line_legend(c));
                        }
                        labelled = true;
                    }
                    continue;
                }
                let drawn = if dashed {
                    chart.draw_series(DashedLineSeries::new(line.clone(), px(8.0), px(5.0), style))?
                } else {
                    chart.draw_series(LineSeries::new(line.clone(), style))?
                };
                if let (Some(l), false) = (&label, labelled) {
                    drawn.label(l.clone()).legend(line_legend(c));
                    labelled = true;
                }
                if line.len() <= 60 {
                    chart.draw_series(line.iter().map(|p| Circle::new(*p, stroke + 1, c.filled())))?;
                }
            }
            // A series with nothing drawable (every loss non-finite) still gets its legend line.
            if let (Some(l), false) = (&label, labelled) {
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())?
                    .label(l.clone())
                    .legend(line_legend(c));
            }
            let off: Vec<(f64, f64)> =
                points.iter().filter(|(_, v)| v.is_some_and(|v| v > y_hi)).map(|(x, _)| (*x, y_hi)).collect();
            if !off.is_empty() {
                let drawn = chart.draw_series(off.iter().map(|p| TriangleMarker::new(*p, px(7.0), c.filled())))?;
                if !marked_off {
                    drawn
                        .label(format!("above {y_hi:.3} (off scale)"))
                        .legend(move |(x, y)| TriangleMarker::new((x + 11, y), 6, BLACK.filled()));
                    marked_off = true;
                }
            }
            let gaps: Vec<(f64, f64)> = points.iter().filter(|(_, v)| v.is_none()).map(|(x, _)| (*x, y_hi)).collect();
            if !gaps.is_empty() {
                // Black, so no job's colour is mistaken for it.
                let mark = RGBColor(0, 0, 0);
                let drawn = chart.draw_series(gaps.iter().map(|p| Cross::new(*p, px(6.0), mark.stroke_width(2))))?;
                if !marked_gap {
                    drawn
                        .label("not finite (diverged)")
                        .legend(move |(x, y)| Cross::new((x + 11, y), 5, mark.stroke_width(2)));
                    marked_gap = true;
                }
            }
        }
    }
    // In the three-panel figure the loss panel's legend names the jobs for all three.
    let show_legend = metric == Metric::Loss || (fig.metric != Metric::All && comparing) || marked_gap || marked_off;
    if show_legend {
        chart
            .configure_series_labels()
            .label_font((FAMILY, px(15.0)))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(emptiest_corner(fig, &values, (x_max as f64, y_lo, y_top)))
            .draw()?;
    }
    Ok(())
}

/// Whether every drawable run of a series' values (split at the non-finite ones) is one
/// epoch long: it is drawn as dots, not lines.
fn dots_only(values: &[Option<f64>]) -> bool {
    values.split(Option::is_none).all(|run| run.len() <= 1)
}

/// A legend entry's sample of a line in colour `c`.
fn line_legend(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3))
}

/// The legend goes in the corner of the panel that the curves cross least (upper right on a
/// tie, where falling loss curves and rising accuracies usually leave room).
fn emptiest_corner(fig: &Figure, values: &[Value], (x_max, y_lo, y_top): (f64, f64, f64)) -> SeriesLabelPosition {
    let (x_mid, y_mid) = (x_max / 2.0, (y_lo + y_top) / 2.0);
    let mut counts = [0usize; 4]; // upper right, upper left, lower right, lower left
    for s in &fig.series {
        for e in s.epochs {
            for v in values.iter().filter_map(|v| v.of(e)) {
                let x = e.epoch as f64;
                let i = match (v >= y_mid, x >= x_mid) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, true) => 2,
                    (false, false) => 3,
                };
                counts[i] += 1;
            }
        }
    }
    let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::LowerLeft,
    ][best]
        .clone()
}

fn setting(spec: &serde_json::Value, key: &str) -> Option<String> {
    let v = spec.get(key)?;
    if key == "model" && v == "custom" {
        // One's own network is named by its layers, so two of them are told apart.
        let layers = spec.get("layers").and_then(|l| crate::network::parse_layers(l, "layers").ok());
        return Some(layers.map_or_else(|| "custom".into(), |l| crate::network::summary(&l)));
    }
    if key == "lr_schedule" {
        if let Ok(schedule) = crate::optimizer::LrSchedule::parse(v) {
            return Some(schedule.short());
        }
    }
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) if key == "augment" && a.is_empty() => "none".into(),
        serde_json::Value::Array(a) => {
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect::<Vec<_>>().join("+")
        }
        other => other.to_string(),
    })
}

/// Settings at their usual value (ReLU, no weight decay, no augmentation: the spec's table
/// says) go unsaid.
fn usual(key: &str, value: &str) -> bool {
    crate::spec::field_doc(key).and_then(|d| d.usual) == Some(value)
}

/// The settings a title or legend names, in the order it names them (the spec's table).
fn key_settings() -> impl Iterator<Item = &'static str> {
    crate::spec::legend_fields().into_iter().map(|d| d.name)
}

/// "cnn · batch_size=4 · lr=0.001 · …": the given keys of a spec, usual values left out.
fn describe<'k>(spec: &serde_json::Value, keys: impl Iterator<Item = &'k str>) -> String {
    keys.filter_map(|k| {
        setting(spec, k).filter(|v| !usual(k, v)).map(|v| if k == "model" { v } else { format!("{k}={v}") })
    })
    .collect::<Vec<_>>()
    .join(" · ")
}

/// One spec's key settings, for a title.
pub fn settings_line(spec: &serde_json::Value) -> String {
    describe(spec, key_settings())
}

/// 62006 → "62,006".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// How several jobs are told apart.
pub struct Comparison {
    /// Every job's name when each has its own, else for all the settings that differ
    /// (`batch_size=1`, …).
    pub labels: Vec<String>,
    /// The settings every job shares.
    pub shared: String,
    /// The names of the settings that differ.
    pub varying: Vec<&'static str>,
}

pub fn compare(jobs: &[(Option<String>, serde_json::Value)]) -> Comparison {
    let differs = |k: &str| jobs.iter().any(|(_, s)| setting(s, k) != setting(&jobs[0].1, k));
    let varying: Vec<&'static str> = key_settings().filter(|k| differs(k)).collect();
    let shared = describe(&jobs[0].1, key_settings().filter(|k| !differs(k)));
    // N.B.: one style for the whole legend: names when every job has its own, otherwise the
    // settings that differ for all (a name beside "batch_size=1, epochs=1" reads as noise).
    let names: Vec<&String> = jobs.iter().filter_map(|(n, _)| n.as_ref()).collect();
    let distinct = names.iter().collect::<std::collections::HashSet<_>>().len() == jobs.len();
    let labels = jobs
        .iter()
        .map(|(name, spec)| match name {
            Some(n) if distinct => n.clone(),
            _ if varying.is_empty() => format!("seed={}", setting(spec, "seed").unwrap_or_default()),
            _ => varying
                .iter()
                .filter_map(|k| setting(spec, k).map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    Comparison { labels, shared, varying }
}

#[cfg(test)]
mod tests {
    use super::{acc_range, thousands, y_range, YAxis};

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(62006), "62,006");
        assert_eq!(thousands(379774), "379,774");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn one_huge_value_does_not_set_the_range_but_a_normal_curve_does() {
        let (lo, hi) = y_range(&[6e29, 18.0, 18.5, 19.0, 18.2, 18.1, 18.3, 18.4, 18.6, 18.7, 18.9], YAxis::Full);
        assert_eq!(lo, 0.0);
        assert!(hi > 19.0 && hi < 40.0, "{hi}");
        let (_, hi) = y_range(&[2.3, 2.0, 1.7, 1.5, 1.4], YAxis::Full);
        assert!((hi - 2.3 * 1.05).abs() < 1e-9);
        assert_eq!(y_range(&[f64::NAN], YAxis::Full), (0.0, 1.0));
    }

    #[test]
    fn a_legend_names_every_job_the_same_way() {
        let spec = |b: u64| serde_json::json!({"model": "cnn", "batch_size": b, "seed": 1});
        let named = super::compare(&[(Some("tutorial".into()), spec(4)), (Some("big batch".into()), spec(1000))]);
        assert_eq!(named.labels, ["tutorial", "big batch"]);
        // One job without a name: every job is named by what differs.
        let mixed = super::compare(&[(Some("tutorial".into()), spec(4)), (None, spec(1000))]);
        assert_eq!(mixed.labels, ["batch_size=4", "batch_size=1000"]);
        // Two jobs of one name say so by their settings too.
        let same = super::compare(&[(Some("run".into()), spec(4)), (Some("run".into()), spec(1))]);
        assert_eq!(same.labels, ["batch_size=4", "batch_size=1"]);
    }

    #[test]
    fn fitted_axes_hug_the_values_and_full_ones_start_at_zero() {
        // A short study: losses 1.40–1.52, accuracies 44–49 %.
        let (lo, hi) = y_range(&[1.52, 1.47, 1.40], YAxis::Fit);
        assert!(lo > 1.3 && lo < 1.40 && hi > 1.52 && hi < 1.62, "{lo}..{hi}");
        assert_eq!(y_range(&[1.52, 1.47, 1.40], YAxis::Full).0, 0.0);
        let (lo, hi) = acc_range(&[44.0, 46.5, 49.0], YAxis::Fit);
        assert!(lo > 40.0 && lo < 44.0 && hi > 49.0 && hi < 53.0, "{lo}..{hi}");
        assert_eq!(acc_range(&[44.0, 49.0], YAxis::Full), (0.0, 100.0));
        // Never past 0 or 100 %, and never narrower than 4 points.
        let (lo, hi) = acc_range(&[99.5, 100.0], YAxis::Fit);
        assert!(hi == 100.0 && (95.0..96.0).contains(&lo), "{lo}..{hi}");
        let (lo, _) = y_range(&[0.001, 0.002], YAxis::Fit);
        assert!(lo >= 0.0);
    }
}
