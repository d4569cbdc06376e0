//! Plots, pure: metrics in, PNG or SVG bytes out.
//!
//! One job's figure (`metric=all`) has three panels: loss (train and test, with a legend)
//! across the top, training and test accuracy (in %) below; `metric=lr` draws each epoch's
//! learning rate alone. A comparison draws each job in
//! its own colour. A loss that was not finite leaves a gap in its line and a red × at the
//! top of the panel; one huge finite value does not wreck the axis: the range is set from
//! the bulk of the values, and points above it are drawn as ▲ on the top edge.

pub mod class;

use crate::job::EpochMetrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::Once;

/// The font every PNG is drawn with (DejaVu Sans, assets/fonts/LICENSE-DejaVu.txt); SVG
/// names the family and lets the viewer's font draw it.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
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
    /// The loss it trained with, as a panel names it ("cross-entropy", "MSE"); series of
    /// different losses get loss panels of their own.
    pub loss: String,
    /// Accuracy at chance (100 / classes, in %), marked on the accuracy axes.
    pub chance: Option<f64>,
    /// The class's test accuracy per epoch (quartiles, fractions 0..1 as `EpochMetrics`'s
    /// `test_acc`): drawn behind the series's line on the test accuracy panel (`metric=all`
    /// or `test_acc`) as a translucent area of its colour with a dashed median.
    pub band: Option<Vec<class::BandPoint>>,
}

impl<'a> Series<'a> {
    /// A job's curves, its loss and chance level read from its spec (as `Spec::to_json`
    /// writes it; `Null` when the spec is unknown).
    pub fn of_spec(label: String, epochs: &'a [EpochMetrics], spec: &serde_json::Value) -> Series<'a> {
        let loss = match spec.get("loss").and_then(|l| l.as_str()) {
            Some("mse") => "MSE",
            Some("cross_entropy") => "cross-entropy",
            Some(other) => other,
            None => "",
        }
        .to_string();
        let dataset = spec.get("dataset").and_then(|d| d.as_str());
        let chance = dataset.and_then(crate::dataset::named).map(|d| 100.0 * d.chance());
        Series { label, epochs, loss, chance, band: None }
    }

    /// Curves with no loss name and no chance level (a test's, a figure of numbers alone).
    pub fn plain(label: impl Into<String>, epochs: &'a [EpochMetrics]) -> Series<'a> {
        Series { label: label.into(), epochs, loss: String::new(), chance: None, band: None }
    }
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
    encode(fig, (fig.width, fig.height), format)
}

/// What a canvas can be painted with: a job figure or a search's scatter.
trait Paint {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

impl Paint for Figure<'_> {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw(root, self)
    }
}

/// Paints `what` on a `w`×`h` canvas of the format asked.
fn encode(what: &impl Paint, (w, h): (u32, u32), format: Format) -> Result<Vec<u8>, PlotError> {
    // Both backends measure text with the font, so it is registered for SVG too.
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
    match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                what.paint(&root).map_err(|e| PlotError(e.to_string()))?;
                root.present().map_err(|e| PlotError(e.to_string()))?;
            }
            Ok(svg.into_bytes())
        }
        Format::Png => {
            let mut pixels = vec![0u8; (w * h * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
                what.paint(&root).map_err(|e| PlotError(e.to_string()))?;
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

/// A rectangle of the figure, in pixels from its top left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// Whether the two share any pixel.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w as i32
            && o.x < self.x + self.w as i32
            && self.y < o.y + o.h as i32
            && o.y < self.y + self.h as i32
    }
}

/// What a panel draws.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelPlace {
    /// Its caption ("test accuracy", "MSE loss").
    pub caption: String,
    /// The whole panel, its axes and labels included: every plotted point lies inside.
    pub area: Rect,
}

/// Where a figure's parts go. N.B.: the legend never overlaps a panel, so it never covers
/// a plotted point (a legend inside the axes hid the best curves of a 12-job comparison).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub panels: Vec<PanelPlace>,
    /// The legend: a column at the right of the panels (a comparison), a row below the
    /// title (one job), or none.
    pub legend: Option<Rect>,
}

/// The losses of a figure's series, in order of first appearance: each gets a loss panel of
/// its own (an MSE of 0.09 beside a cross-entropy of 2.3 on one axis would read as 0).
fn loss_groups<'f>(fig: &'f Figure) -> Vec<&'f str> {
    let mut out: Vec<&str> = Vec::new();
    for s in &fig.series {
        if !out.contains(&s.loss.as_str()) {
            out.push(&s.loss);
        }
    }
    out
}

/// The figure's scale against its 1000×700 design size.
fn scale_of(fig: &Figure) -> f64 {
    (fig.height as f64 / 700.0).min(fig.width as f64 / 1000.0).max(0.5)
}

fn font(size: u32) -> FontDesc<'static> {
    (FAMILY, size).into_font()
}

/// The width of `text` in pixels, at `size`.
fn text_width(text: &str, size: u32) -> u32 {
    font(size).box_size(text).map_or(text.chars().count() as u32 * size * 55 / 100, |(w, _)| w)
}

/// `text` cut with "…" to at most `max` pixels wide at `size`.
fn fit_text(text: &str, size: u32, max: u32) -> String {
    if text_width(text, size) <= max {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let cut: String = chars.iter().collect::<String>() + "…";
        if text_width(&cut, size) <= max {
            return cut;
        }
    }
    "…".into()
}

/// One line of the legend.
#[derive(Clone)]
struct Entry {
    label: String,
    sample: Sample,
}

#[derive(Clone, Copy)]
enum Sample {
    /// A job's line and marker in its colour (`dots`: its runs are single epochs: a dot alone).
    Job {
        index: usize,
        dots: bool,
    },
    /// One job's train loss (solid, filled) or test loss (open).
    Loss {
        index: usize,
        test: bool,
    },
    /// The line style of train (solid) or test (dashed) loss in a comparison; `dots`: every
    /// run is one epoch long, so the styles are a filled (train) and an open (test) dot.
    Style {
        test: bool,
        dots: bool,
    },
    Chance,
    NotFinite,
    OffScale,
    /// A search's trial in the scatter: ran on (a blue dot) or stopped early (an orange ×).
    Trial {
        stopped: bool,
    },
    /// The ring around the best trial.
    Best,
    /// A class figure's marks (and a job figure's class band).
    Class(class::Key),
}

/// Legend text size and line height, in pixels.
fn legend_metrics(scale: f64) -> (u32, u32) {
    let size = (15.0 * scale).round().max(9.0) as u32;
    (size, (size as f64 * 1.55).round() as u32)
}

const SAMPLE_W: u32 = 34;

/// The entries every legend of this figure may show (markers included, whether or not the
/// data will need them, so the layout is known before drawing).
fn legend_entries(fig: &Figure) -> Vec<Entry> {
    let comparing = fig.series.len() > 1;
    let mut out = Vec::new();
    let shows_loss = matches!(fig.metric, Metric::All | Metric::Loss);
    if comparing {
        for (i, s) in fig.series.iter().enumerate() {
            let train: Vec<Option<f64>> = s.epochs.iter().map(|e| e.train_loss).collect();
            let dots = train.iter().any(Option::is_some) && dots_only(&train);
            let label = match first_diverged(s) {
                Some(n) => format!("{} (diverged, epoch {n})", s.label),
                None => s.label.clone(),
            };
            out.push(Entry { label, sample: Sample::Job { index: i, dots } });
        }
        if shows_loss {
            // A run of one epoch (or a point between gaps) is a dot, not a line: train filled,
            // test open.
            let lone = |s: &Series| {
                let train: Vec<Option<f64>> = s.epochs.iter().map(|e| e.train_loss).collect();
                train.iter().any(Option::is_some) && dots_only(&train)
            };
            let any_lone = fig.series.iter().any(lone);
            let any_line = fig.series.iter().any(|s| s.epochs.iter().any(|e| e.train_loss.is_some()) && !lone(s));
            let (train, test) = match (any_line, any_lone) {
                (true, true) => ("train loss: solid line or filled dot", "test loss: dashed line or open dot"),
                (false, true) => ("train loss: filled dot", "test loss: open dot"),
                _ => ("train loss", "test loss"),
            };
            if any_line || any_lone {
                out.push(Entry { label: train.into(), sample: Sample::Style { test: false, dots: !any_line } });
                out.push(Entry { label: test.into(), sample: Sample::Style { test: true, dots: !any_line } });
            }
        }
    } else if shows_loss {
        out.push(Entry { label: "train loss".into(), sample: Sample::Loss { index: 0, test: false } });
        out.push(Entry { label: "test loss".into(), sample: Sample::Loss { index: 1, test: true } });
    }
    if shows_band(fig) {
        if !comparing {
            // N.B.: a lone run over the class's band is named, so its line is told from the band.
            out.push(Entry { label: fig.series[0].label.clone(), sample: Sample::Job { index: 0, dots: false } });
        }
        // One entry for every series's band: a comparison's bands are in each job's colour.
        let c = if comparing { RGBColor(120, 120, 120) } else { colour(0) };
        out.push(Entry { label: BAND_LABEL.into(), sample: Sample::Class(class::Key::Band(c)) });
    }
    out
}

/// The legend's words for a job figure's class band.
pub const BAND_LABEL: &str = "class median, middle 50 %";

/// Whether the figure draws a class band: a series has one and a test accuracy panel shows.
fn shows_band(fig: &Figure) -> bool {
    matches!(fig.metric, Metric::All | Metric::TestAcc) && fig.series.iter().any(|s| s.band.is_some())
}

/// The marker entries, known once the panels are drawn.
#[derive(Default)]
struct Marks {
    chance: Vec<f64>,
    not_finite: bool,
    off_scale: Option<f64>,
}

fn mark_entries(marks: &Marks) -> Vec<Entry> {
    let mut out = Vec::new();
    for c in &marks.chance {
        out.push(Entry { label: format!("chance ({} %)", trim_number(*c)), sample: Sample::Chance });
    }
    if marks.not_finite {
        out.push(Entry { label: "not finite (diverged)".into(), sample: Sample::NotFinite });
    }
    if let Some(top) = marks.off_scale {
        out.push(Entry { label: format!("above {top:.3} (off scale)"), sample: Sample::OffScale });
    }
    out
}

/// 10.0 → "10", 1.25 → "1.25".
fn trim_number(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The labels of the marker entries that may appear, for sizing the legend.
const MARK_LABELS: [&str; 3] = ["chance (10 %)", "not finite (diverged)", "above 999.999 (off scale)"];

/// Where the title, legend and panels go.
pub fn layout(fig: &Figure) -> Layout {
    let scale = scale_of(fig);
    let px = |s: f64| (s * scale).round() as u32;
    let title_h = if fig.title.is_empty() && fig.subtitle.is_empty() { 0 } else { px(70.0) };
    let (size, line) = legend_metrics(scale);
    let entries = legend_entries(fig);
    let comparing = fig.series.len() > 1;
    let (w, h) = (fig.width, fig.height);
    let mut body = Rect { x: 0, y: title_h as i32, w, h: h.saturating_sub(title_h) };
    let legend = if comparing {
        // A column on the right, as wide as its longest label, at most 30 % of the figure.
        let widest =
            entries.iter().map(|e| e.label.as_str()).chain(MARK_LABELS).map(|t| text_width(t, size)).max().unwrap_or(0);
        let col = (px(SAMPLE_W as f64) + px(16.0) + widest + px(12.0)).min(w * 30 / 100);
        body.w = w - col;
        Some(Rect { x: body.w as i32, y: body.y + px(24.0) as i32, w: col, h: body.h.saturating_sub(px(24.0)) })
    } else {
        // One job: a row between the title and the panels, always there so its height
        // does not depend on what the data turns out to need.
        let row = line + px(6.0);
        let r = Rect { x: 0, y: body.y, w, h: row };
        body.y += row as i32;
        body.h = body.h.saturating_sub(row);
        Some(r)
    };
    let mut panels = Vec::new();
    let losses = loss_groups(fig);
    let loss_caption =
        |l: &str| if losses.len() > 1 && !l.is_empty() { format!("{l} loss") } else { "loss".to_string() };
    let split_h = |r: Rect, parts: &[String], out: &mut Vec<PanelPlace>| {
        let n = parts.len().max(1) as u32;
        for (i, caption) in parts.iter().enumerate() {
            let x0 = r.x + (r.w * i as u32 / n) as i32;
            let x1 = r.x + (r.w * (i as u32 + 1) / n) as i32;
            out.push(PanelPlace {
                caption: caption.clone(),
                area: Rect { x: x0, y: r.y, w: (x1 - x0) as u32, h: r.h },
            });
        }
    };
    let loss_captions: Vec<String> = losses.iter().map(|l| loss_caption(l)).collect();
    match fig.metric {
        Metric::All => {
            let upper = Rect { h: body.h / 2, ..body };
            let lower = Rect { y: body.y + (body.h / 2) as i32, h: body.h - body.h / 2, ..body };
            split_h(upper, &loss_captions, &mut panels);
            split_h(lower, &["training accuracy".to_string(), "test accuracy".to_string()], &mut panels);
        }
        Metric::Loss => split_h(body, &loss_captions, &mut panels),
        Metric::TrainAcc => split_h(body, &["training accuracy".to_string()], &mut panels),
        Metric::TestAcc => split_h(body, &["test accuracy".to_string()], &mut panels),
        Metric::Lr => split_h(body, &["learning rate".to_string()], &mut panels),
    }
    Layout { panels, legend }
}

/// The first epoch whose loss was not finite.
fn first_diverged(s: &Series) -> Option<u32> {
    s.epochs.iter().find(|e| e.diverged || e.train_loss.is_none() || e.test_loss.is_none()).map(|e| e.epoch)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let scale = scale_of(fig);
    let lay = layout(fig);
    if !(fig.title.is_empty() && fig.subtitle.is_empty()) {
        title_block(root, &fig.title, &fig.subtitle, fig.width, scale)?;
    }
    let losses = loss_groups(fig);
    let mut marks = Marks::default();
    let all: Vec<(usize, &Series)> = fig.series.iter().enumerate().collect();
    let mut loss_panel = 0;
    for place in &lay.panels {
        let r = place.area;
        let area = root.clone().shrink((r.x, r.y), (r.w, r.h));
        let (metric, members): (Metric, Vec<(usize, &Series)>) = match place.caption.as_str() {
            "training accuracy" => (Metric::TrainAcc, all.clone()),
            "test accuracy" => (Metric::TestAcc, all.clone()),
            "learning rate" => (Metric::Lr, all.clone()),
            _ => {
                let loss = losses.get(loss_panel).copied().unwrap_or("");
                loss_panel += 1;
                (Metric::Loss, all.iter().copied().filter(|(_, s)| s.loss == loss).collect())
            }
        };
        panel(&area, fig, metric, &place.caption, &members, scale, &mut marks)?;
    }
    if let Some(l) = lay.legend {
        let mut entries = legend_entries(fig);
        entries.extend(mark_entries(&marks));
        legend(root, l, &entries, fig.series.len() > 1, scale)?;
    }
    Ok(())
}

/// A figure's title and its settings line below, across the top `px(70)` of a figure
/// `width` wide.
fn title_block<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    width: u32,
    scale: f64,
) -> DrawResult<DB> {
    let px = |s: f64| (s * scale).round() as u32;
    let title_size = px(30.0);
    let title = fit_text(title, title_size, width.saturating_sub(px(32.0)));
    root.draw(&Text::new(title, (px(16.0) as i32, px(8.0) as i32), font(title_size)))?;
    // A long settings line gets a smaller font, then an ellipsis, rather than running off
    // the edge.
    let room = width.saturating_sub(px(32.0));
    let mut sub_size = px(18.0).max(9);
    while sub_size > 9 && text_width(subtitle, sub_size) > room {
        sub_size -= 1;
    }
    root.draw(&Text::new(
        fit_text(subtitle, sub_size, room),
        (px(16.0) as i32, px(44.0) as i32),
        font(sub_size).color(&RGBColor(80, 80, 80)),
    ))
}

/// The style of job `i`'s markers: circles for the first ten, squares for the next ten
/// (their colours are the first ten's lighter partners: shape tells them apart too).
fn square(i: usize) -> bool {
    i >= 10
}

fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    i: usize,
    r: u32,
    style: ShapeStyle,
) -> DrawResult<DB> {
    if square(i) {
        let r = r as i32;
        area.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], style))
    } else {
        area.draw(&Circle::new((x, y), r, style))
    }
}

fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: Rect,
    entries: &[Entry],
    column: bool,
    scale: f64,
) -> DrawResult<DB> {
    let px = |s: f64| (s * scale).round() as u32;
    let (mut size, mut line) = legend_metrics(scale);
    if column && entries.len() as u32 * line > r.h {
        // N.B.: more entries than the column holds (a search of 27 trials): closer lines
        // and a smaller font, rather than the last entries left off.
        line = (r.h / entries.len() as u32).max(11);
        size = size.min((line as f64 / 1.4).floor() as u32).max(8);
    }
    let sample_w = px(SAMPLE_W as f64) as i32;
    let stroke = px(3.0).max(2);
    let dot = px(5.5).max(3);
    let (mut x, mut y) = (r.x + px(8.0) as i32, r.y + (line / 2) as i32);
    for e in entries {
        let text_room = r.w.saturating_sub(sample_w as u32 + px(20.0));
        let label = if column { fit_text(&e.label, size, text_room) } else { e.label.clone() };
        let width = sample_w as u32 + px(8.0) + text_width(&label, size) + px(22.0);
        if column && y + (line / 2) as i32 > r.y + r.h as i32 {
            break;
        }
        if !column && x + width as i32 > r.x + r.w as i32 {
            break;
        }
        let (x0, x1, mid) = (x, x + sample_w, x + sample_w / 2);
        let grey = RGBColor(90, 90, 90);
        match e.sample {
            Sample::Job { index, dots } => {
                let c = colour(index);
                if !dots {
                    root.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(stroke)))?;
                }
                marker(root, (mid, y), index, dot, c.filled())?;
            }
            Sample::Loss { index, test } => {
                let c = colour(index);
                root.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(stroke)))?;
                let style = if test { c.stroke_width(stroke) } else { c.filled() };
                root.draw(&Circle::new((mid, y), dot, style))?;
            }
            Sample::Style { test, dots: true } => {
                let style = if test { grey.stroke_width(stroke) } else { grey.filled() };
                root.draw(&Circle::new((mid, y), dot, style))?;
            }
            Sample::Style { test, dots: false } => {
                if test {
                    let dash = px(8.0) as i32;
                    let gap = px(5.0) as i32;
                    let mut a = x0;
                    while a < x1 {
                        root.draw(&PathElement::new(vec![(a, y), ((a + dash).min(x1), y)], grey.stroke_width(stroke)))?;
                        a += dash + gap;
                    }
                } else {
                    root.draw(&PathElement::new(vec![(x0, y), (x1, y)], grey.stroke_width(stroke)))?;
                }
            }
            Sample::Chance => chance_line(root, (x0, x1), y, scale)?,
            Sample::NotFinite => root.draw(&Cross::new((mid, y), px(6.0), BLACK.stroke_width(2)))?,
            Sample::OffScale => root.draw(&TriangleMarker::new((mid, y), px(7.0), BLACK.filled()))?,
            Sample::Trial { stopped } => trial_mark(root, (mid, y), stopped, scale)?,
            Sample::Best => best_ring(root, (mid, y), scale)?,
            Sample::Class(key) => class::key_sample(root, key, (x0, x1), y, scale)?,
        }
        root.draw(&Text::new(
            label,
            (x1 + px(8.0) as i32, y),
            font(size).color(&RGBColor(30, 30, 30)).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        if column {
            y += line as i32;
        } else {
            x += width as i32;
        }
    }
    Ok(())
}

/// The chance level's line: grey dots.
fn chance_line<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x0, x1): (i32, i32),
    y: i32,
    scale: f64,
) -> DrawResult<DB> {
    let step = ((6.0 * scale).round() as i32).max(4);
    let mut x = x0;
    while x <= x1 {
        area.draw(&Circle::new((x, y), 1, RGBColor(110, 110, 110).filled()))?;
        x += step;
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

/// One panel: `members` are the series it draws, with their index in the figure (their
/// colour and marker).
#[allow(clippy::too_many_arguments)]
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    metric: Metric,
    caption: &str,
    members: &[(usize, &Series)],
    scale: f64,
    marks: &mut Marks,
) -> DrawResult<DB> {
    let px = |s: f64| (s * scale).round() as u32;
    let comparing = fig.series.len() > 1;
    let (y_desc, values): (&str, Vec<Value>) = match metric {
        Metric::Loss => ("loss", vec![Value::TrainLoss, Value::TestLoss]),
        Metric::TrainAcc | Metric::TestAcc => {
            ("accuracy (%)", vec![if metric == Metric::TrainAcc { Value::TrainAcc } else { Value::TestAcc }])
        }
        Metric::Lr => ("learning rate", vec![Value::Lr]),
        Metric::All => unreachable!("split before"),
    };
    // N.B.: a comparison's legend says which line style (or dot) is train and which test.
    let caption = caption.to_string();
    // The class's bands (test accuracy only: they hold the class's test accuracy).
    let bands: Vec<(usize, &[class::BandPoint])> = if metric == Metric::TestAcc {
        members.iter().filter_map(|(si, s)| s.band.as_deref().map(|b| (*si, b))).collect()
    } else {
        Vec::new()
    };
    let x_max = members
        .iter()
        .flat_map(|(_, s)| s.epochs.iter().map(|e| e.epoch))
        .chain(bands.iter().flat_map(|(_, b)| b.iter().map(|p| p.epoch)))
        .max()
        .unwrap_or(0)
        .max(fig.epochs_total)
        .max(1);
    let finite: Vec<f64> = members
        .iter()
        .flat_map(|(_, s)| s.epochs.iter())
        .flat_map(|e| values.iter().filter_map(|v| v.of(e)))
        .chain(bands.iter().flat_map(|(_, b)| b.iter().flat_map(|p| [100.0 * p.q1, 100.0 * p.q3])))
        .filter(|v| v.is_finite())
        .collect();
    let chances: Vec<f64> = if matches!(metric, Metric::TrainAcc | Metric::TestAcc) {
        let mut c: Vec<f64> = members.iter().filter_map(|(_, s)| s.chance).collect();
        c.sort_by(f64::total_cmp);
        c.dedup();
        c
    } else {
        Vec::new()
    };
    let (y_lo, y_hi) = match metric {
        Metric::Loss => y_range(&finite, fig.y_axis),
        Metric::Lr => {
            // From 0, so a decay reads as the fraction of the rate it leaves.
            let top = finite.iter().copied().fold(0.0, f64::max);
            (0.0, if top > 0.0 { top * 1.05 } else { 1.0 })
        }
        _ => acc_range(&finite, fig.y_axis),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, px(21.0)))
        .margin(px(12.0))
        .x_label_area_size(px(46.0))
        .y_label_area_size(px(64.0))
        // Room on the right for the last point.
        .build_cartesian_2d(0.0..x_max as f64 * 1.02 + 0.2, y_lo..y_hi)?;
    let whole = |x: &f64| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() };
    // Enough decimals that neighbouring ticks differ.
    let digits = if (y_hi - y_lo) < 0.05 {
        4
    } else if (y_hi - y_lo) < 0.5 {
        3
    } else {
        2
    };
    let y_fmt = |y: &f64| {
        if metric == Metric::Lr {
            // Rates span decades (1.0 for Adadelta, 1e-4 for a decayed SGD): 3 significant digits.
            if *y == 0.0 {
                "0".to_string()
            } else if y_hi < 0.01 {
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

    // Chance level first, so every curve draws over it.
    for c in &chances {
        if (y_lo..=y_hi).contains(c) {
            let n = 160;
            let right = x_max as f64 * 1.02 + 0.2;
            chart.draw_series(
                (0..=n).map(|i| Circle::new((right * i as f64 / n as f64, *c), 1, RGBColor(110, 110, 110).filled())),
            )?;
            if !marks.chance.contains(c) {
                marks.chance.push(*c);
            }
        }
    }

    // The class's bands over the chance line, under every job's line.
    for &(si, band) in &bands {
        let c = if comparing { colour(si) } else { colour(0) };
        let style = class::BandStyle { fill: c, alpha: 0.16, median: c.stroke_width(px(1.5).max(1)) };
        class::draw_band(&mut chart, band, 100.0, (y_lo, y_hi), &style, scale)?;
    }

    let note = |text: String| -> DrawResult<DB> {
        let (w, h) = area.dim_in_pixel();
        let size = px(19.0);
        let text = fit_text(&text, size, w.saturating_sub(px(90.0)));
        area.draw(&Text::new(
            text,
            (w as i32 / 2 + px(26.0) as i32, h as i32 / 2),
            font(size).color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
    };
    if members.iter().all(|(_, s)| s.epochs.is_empty()) {
        return note(fig.empty_note.clone());
    }
    if finite.is_empty() && metric == Metric::Loss {
        // Every loss was NaN or infinite: the empty panel says why.
        let from = members.iter().filter_map(|(_, s)| first_diverged(s)).min().unwrap_or(1);
        note(format!("loss was not finite from epoch {from}"))?;
    }

    let stroke = px(3.0).max(2);
    for &(si, s) in members {
        for (vi, value) in values.iter().enumerate() {
            // One job: train and test loss get colours of their own. Several: one colour
            // per job, and test loss dashed.
            let c = if comparing { colour(si) } else { colour(vi) };
            let dashed = comparing && vi == 1;
            let points: Vec<(f64, Option<f64>)> =
                s.epochs.iter().map(|e| (e.epoch as f64, value.of(e).filter(|v| v.is_finite()))).collect();
            let open = matches!(value, Value::TestLoss);
            let dot = px(5.5);
            let shape = if comparing { si } else { 0 };
            for segment in points.split(|(_, v)| v.is_none()).filter(|seg| !seg.is_empty()) {
                let line: Vec<(f64, f64)> =
                    segment.iter().map(|(x, v)| (*x, v.expect("split on None").min(y_hi))).collect();
                let style = c.stroke_width(stroke);
                if line.len() == 1 {
                    let p = chart.backend_coord(&line[0]);
                    let p = (p.0 - area.get_base_pixel().0, p.1 - area.get_base_pixel().1);
                    marker(area, p, shape, dot, if open { c.stroke_width(stroke) } else { c.filled() })?;
                    continue;
                }
                if dashed {
                    chart.draw_series(DashedLineSeries::new(line.clone(), px(8.0), px(5.0), style))?;
                } else {
                    chart.draw_series(LineSeries::new(line.clone(), style))?;
                }
                if line.len() <= 60 {
                    let r = stroke + 1;
                    for p in &line {
                        let p = chart.backend_coord(p);
                        let p = (p.0 - area.get_base_pixel().0, p.1 - area.get_base_pixel().1);
                        marker(area, p, shape, r, c.filled())?;
                    }
                }
            }
            let off: Vec<(f64, f64)> =
                points.iter().filter(|(_, v)| v.is_some_and(|v| v > y_hi)).map(|(x, _)| (*x, y_hi)).collect();
            if !off.is_empty() {
                chart.draw_series(off.iter().map(|p| TriangleMarker::new(*p, px(7.0), c.filled())))?;
                marks.off_scale.get_or_insert(y_hi);
            }
            // Losses only: an accuracy is always a number.
            let gaps: Vec<(f64, f64)> = points
                .iter()
                .filter(|(_, v)| v.is_none() && metric == Metric::Loss)
                .map(|(x, _)| (*x, y_hi - 0.04 * (y_hi - y_lo)))
                .collect();
            if !gaps.is_empty() {
                // Black, so no job's colour is mistaken for it.
                chart.draw_series(gaps.iter().map(|p| Cross::new(*p, px(6.0), BLACK.stroke_width(2))))?;
                marks.not_finite = true;
            }
        }
    }
    Ok(())
}

/// Whether every drawable run of a series' values (split at the non-finite ones) is one
/// epoch long: it is drawn as dots, not lines.
fn dots_only(values: &[Option<f64>]) -> bool {
    values.split(Option::is_none).all(|run| run.len() <= 1)
}

/// A search's figure: each trial's best value of the metric (y) against each numeric
/// setting it sampled (x), a panel per setting, every panel on one y scale. Trials the rule
/// stopped early are orange ×s, the others blue dots; the best trial is ringed.
pub struct Scatter {
    /// Above the panels; empty for none (a report's heading names the figure already).
    pub title: String,
    /// The y axis's label, e.g. "best test accuracy (%)".
    pub y_desc: String,
    /// The values are accuracies in %: the axis stays within 0–100.
    pub percent: bool,
    pub panels: Vec<ScatterPanel>,
    /// Shown in each panel while no trial has a value, e.g. "no trial has finished an epoch yet".
    pub empty_note: String,
    pub width: u32,
    pub height: u32,
}

/// One searched setting's panel.
pub struct ScatterPanel {
    /// The setting's name: the x axis's label.
    pub field: String,
    /// A logarithmic x axis (a log-uniform setting, or choices that span decades).
    pub log: bool,
    /// The range searched: the axis shows all of it, so the panel says where in it the
    /// trials fell.
    pub range: Option<(f64, f64)>,
    /// The values to mark on the axis (a choice's); empty: chosen from the range.
    pub ticks: Vec<f64>,
    /// Whole numbers only (an int_uniform setting): no tick falls between them.
    pub whole: bool,
    pub points: Vec<TrialPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialPoint {
    /// The setting's value (not drawn when not finite, or not positive on a log axis).
    pub x: f64,
    /// The trial's best value of the metric (not drawn when `None` or not finite).
    pub y: Option<f64>,
    /// The search's rule stopped it early.
    pub stopped: bool,
    /// The best trial of the search.
    pub best: bool,
}

/// The legend's words for the two kinds of trial.
pub const RAN_ON: &str = "finished or running";
pub const STOPPED_EARLY: &str = "stopped early";

/// How many columns and rows a scatter of `panels` panels is laid out in.
fn grid(panels: usize) -> (u32, u32) {
    let cols = match panels {
        0 | 1 => 1,
        2 | 4 => 2,
        _ => 3,
    };
    (cols, (panels.max(1) as u32).div_ceil(cols))
}

/// The size a scatter of `panels` panels is designed for: at it, its text is at full size
/// (15 px ticks and legend, as the job figures at 1000×700).
pub fn scatter_size(panels: usize) -> (u32, u32) {
    let (cols, rows) = grid(panels);
    (if cols == 1 { 640 } else { 1000 }, 36 + rows * 400)
}

/// Draws a search's scatter in the format asked.
pub fn scatter(s: &Scatter, format: Format) -> Result<Vec<u8>, PlotError> {
    encode(s, (s.width, s.height), format)
}

impl Paint for Scatter {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_scatter(root, self)
    }
}

/// A trial's mark at pixel `p` of `area`: a blue dot, or an orange × for one stopped early
/// (told apart by shape as well as colour).
fn trial_mark<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: (i32, i32),
    stopped: bool,
    scale: f64,
) -> DrawResult<DB> {
    let r = ((5.5 * scale).round() as u32).max(3);
    if stopped {
        let stroke = ((2.5 * scale).round() as u32).max(2);
        area.draw(&Cross::new(p, r, colour(1).stroke_width(stroke)))
    } else {
        area.draw(&Circle::new(p, r, colour(0).filled()))?;
        area.draw(&Circle::new(p, r, WHITE.stroke_width(1)))
    }
}

/// The best trial's ring, around its mark at pixel `p`.
fn best_ring<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: (i32, i32), scale: f64) -> DrawResult<DB> {
    let r = ((11.0 * scale).round() as u32).max(6);
    area.draw(&Circle::new(p, r, BLACK.stroke_width(((2.0 * scale).round() as u32).max(1))))
}

/// An axis tick's text: 0.001, 0.05, 5, 200, but 1e-4 and 1e4 beyond.
fn tick_text(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&a) {
        let decimals = (-a.log10().floor()).max(0.0) as usize;
        let t = format!("{v:.decimals$}");
        // 0.0025 at 3 decimals would read 0.003: keep what the value says.
        if (t.parse::<f64>().unwrap_or(v) - v).abs() > 1e-9 * a {
            format!("{v}")
        } else {
            t
        }
    } else {
        format!("{v:.0e}")
    }
}

/// Ticks over [lo, hi] at a step of 1, 2 or 5 × 10^k, as near `n` of them as those steps
/// give (whole numbers only when `whole`), with their text.
fn linear_ticks(lo: f64, hi: f64, n: usize, whole: bool) -> Vec<(f64, String)> {
    let raw = (hi - lo) / n.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return Vec::new();
    }
    let mag = 10f64.powf(raw.log10().floor());
    let count = |step: f64| ((hi / step).floor() - (lo / step).ceil() + 1.0).max(0.0) as usize;
    let step = [10.0, 5.0, 2.0, 1.0]
        .iter()
        .map(|m| if whole { (m * mag).max(1.0) } else { m * mag })
        .min_by_key(|s| count(*s).abs_diff(n))
        .unwrap_or(mag);
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            (v, if v == 0.0 { "0".into() } else { format!("{v:.decimals$}") })
        })
        .collect()
}

/// A panel's x axis, in plotting units (log10 of the value on a log axis): its span, the
/// labelled ticks and the light grid lines.
struct XAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
    light: Vec<f64>,
}

fn x_axis(p: &ScatterPanel) -> XAxis {
    let mut values: Vec<f64> = p.points.iter().map(|t| t.x).chain(p.ticks.iter().copied()).collect();
    if let Some((a, b)) = p.range {
        values.extend([a, b]);
    }
    values.retain(|v| v.is_finite() && (!p.log || *v > 0.0));
    let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
    if p.log {
        if !p.ticks.is_empty() {
            // A choice's values, each marked: the axis spans them alone.
            let (lo, hi) = (min.log10(), max.log10());
            let pad = if hi - lo > 1e-9 { 0.08 * (hi - lo) } else { 0.5 };
            let ticks = p.ticks.iter().filter(|v| **v > 0.0).map(|v| (v.log10(), format!("{v}"))).collect();
            return XAxis { lo: lo - pad, hi: hi + pad, ticks, light: Vec::new() };
        }
        // Whole decades, so every axis has at least two labelled powers of ten.
        let (lo, mut hi) = if values.is_empty() { (-3.0, 0.0) } else { (min.log10().floor(), max.log10().ceil()) };
        if hi - lo < 1.0 {
            hi = lo + 1.0;
        }
        let pad = 0.04 * (hi - lo);
        let span = hi - lo;
        let decades = lo as i32..=hi as i32;
        // Within two decades, 2 and 5 of each are labelled too.
        let mantissas: &[f64] = if span <= 2.0 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        let ticks: Vec<(f64, String)> = decades
            .clone()
            .flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| v.log10() <= hi + 1e-9)
            .map(|v| (v.log10(), tick_text(v)))
            .collect();
        let light = if span <= 5.0 {
            decades
                .flat_map(|d| (2..10).map(move |m| (m as f64 * 10f64.powi(d)).log10()))
                .filter(|l| *l <= hi)
                .collect()
        } else {
            Vec::new()
        };
        return XAxis { lo: lo - pad, hi: hi + pad, ticks, light };
    }
    let (mut lo, mut hi) = if values.is_empty() { (0.0, 1.0) } else { (min, max) };
    if hi - lo <= 1e-12 * lo.abs().max(1.0) {
        let half = if p.whole {
            1.0
        } else if lo == 0.0 {
            0.5
        } else {
            0.1 * lo.abs()
        };
        (lo, hi) = (lo - half, hi + half);
    }
    let pad = if p.whole { 0.5 } else { 0.05 * (hi - lo) };
    let (lo, hi) = (lo - pad, hi + pad);
    let ticks = if p.ticks.is_empty() {
        linear_ticks(lo, hi, 5, p.whole)
    } else {
        p.ticks.iter().map(|v| (*v, format!("{v}"))).collect()
    };
    XAxis { lo, hi, ticks, light: Vec::new() }
}

/// A linear coordinate whose grid lines fall where the axis says (plotters' `WithKeyPoints`
/// takes no label formatter over an `f64` range).
struct Ticked {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let at = (v - self.lo) / (self.hi - self.lo);
        limit.0 + ((limit.1 - limit.0) as f64 * at).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

fn draw_scatter<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Scatter) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (dw, dh) = scatter_size(s.panels.len());
    let title_h = if s.title.is_empty() { 0.0 } else { 50.0 };
    let scale = (s.width as f64 / dw as f64).min(s.height as f64 / (dh as f64 + title_h)).max(0.5);
    let px = |v: f64| (v * scale).round() as u32;
    let mut top = 0;
    if !s.title.is_empty() {
        let size = px(26.0);
        root.draw(&Text::new(
            fit_text(&s.title, size, s.width.saturating_sub(px(32.0))),
            (px(16.0) as i32, px(8.0) as i32),
            font(size),
        ))?;
        top = px(title_h) as i32;
    }
    let (_, line) = legend_metrics(scale);
    let legend_r = Rect { x: 0, y: top, w: s.width, h: line + px(6.0) };
    let body = Rect {
        x: 0,
        y: legend_r.y + legend_r.h as i32,
        w: s.width,
        h: s.height.saturating_sub((legend_r.y + legend_r.h as i32) as u32),
    };
    let drawn = |t: &TrialPoint, log: bool| t.x.is_finite() && (!log || t.x > 0.0) && t.y.is_some_and(f64::is_finite);
    let ys: Vec<f64> =
        s.panels.iter().flat_map(|p| p.points.iter().filter(|t| drawn(t, p.log)).filter_map(|t| t.y)).collect();
    let (y_lo, y_hi) = if s.percent { acc_range(&ys, YAxis::Fit) } else { y_range(&ys, YAxis::Fit) };
    let (cols, rows) = grid(s.panels.len());
    let mut off_scale = false;
    for (i, p) in s.panels.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        let x0 = body.x + (body.w * c / cols) as i32;
        let x1 = body.x + (body.w * (c + 1) / cols) as i32;
        let y0 = body.y + (body.h * r / rows) as i32;
        let y1 = body.y + (body.h * (r + 1) / rows) as i32;
        let area = root.clone().shrink((x0, y0), ((x1 - x0) as u32, (y1 - y0) as u32));
        off_scale |= scatter_panel(&area, s, p, (y_lo, y_hi), ys.is_empty(), scale)?;
    }
    if s.panels.is_empty() {
        root.draw(&Text::new(
            fit_text(&s.empty_note, px(19.0), s.width.saturating_sub(px(40.0))),
            ((s.width / 2) as i32, body.y + body.h as i32 / 2),
            font(px(19.0)).color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    let all = || s.panels.iter().flat_map(|p| p.points.iter().filter(move |t| drawn(t, p.log)));
    let mut entries = Vec::new();
    if all().any(|t| !t.stopped) {
        entries.push(Entry { label: RAN_ON.into(), sample: Sample::Trial { stopped: false } });
    }
    if all().any(|t| t.stopped) {
        entries.push(Entry { label: STOPPED_EARLY.into(), sample: Sample::Trial { stopped: true } });
    }
    if all().any(|t| t.best) {
        entries.push(Entry { label: "best trial".into(), sample: Sample::Best });
    }
    if off_scale {
        entries.push(Entry { label: format!("above {y_hi:.3} (off scale)"), sample: Sample::OffScale });
    }
    legend(root, legend_r, &entries, false, scale)
}

/// One setting's panel; says whether a point lay above the axis (drawn as ▲ on its top edge).
fn scatter_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Scatter,
    p: &ScatterPanel,
    (y_lo, y_hi): (f64, f64),
    empty: bool,
    scale: f64,
) -> Result<bool, DrawingAreaErrorKind<DB::ErrorType>> {
    let px = |v: f64| (v * scale).round() as u32;
    let axis = x_axis(p);
    let positions: Vec<f64> = axis.ticks.iter().map(|(x, _)| *x).collect();
    let mut chart = ChartBuilder::on(area)
        .margin(px(12.0))
        .x_label_area_size(px(46.0))
        .y_label_area_size(px(64.0))
        .build_cartesian_2d(
            Ticked { lo: axis.lo, hi: axis.hi, bold: positions, light: axis.light.clone() },
            y_lo..y_hi,
        )?;
    // Every k-th tick labelled, the smallest k whose labels do not touch (1e-6 … 10 in a
    // third of the figure).
    let label_size = px(15.0);
    let at = |x: f64| chart.backend_coord(&(x, y_lo)).0;
    let fits = |k: usize| {
        let kept: Vec<&(f64, String)> = axis.ticks.iter().step_by(k).collect();
        kept.windows(2).all(|w| {
            let room = (at(w[1].0) - at(w[0].0)).unsigned_abs();
            room >= (text_width(&w[0].1, label_size) + text_width(&w[1].1, label_size)) / 2 + px(10.0)
        })
    };
    let stride = (1..=axis.ticks.len().max(1)).find(|k| fits(*k)).unwrap_or(1);
    let labels: Vec<(f64, String)> = axis
        .ticks
        .iter()
        .enumerate()
        .map(|(i, (x, t))| (*x, if i % stride == 0 { t.clone() } else { String::new() }))
        .collect();
    let x_fmt =
        |x: &f64| labels.iter().find(|(at, _)| (at - x).abs() < 1e-9).map_or_else(String::new, |(_, t)| t.clone());
    let digits = if (y_hi - y_lo) < 0.05 {
        4
    } else if (y_hi - y_lo) < 0.5 {
        3
    } else {
        2
    };
    let y_fmt = |y: &f64| {
        if s.percent {
            format!("{y:.1}").trim_end_matches(".0").to_string()
        } else {
            format!("{y:.digits$}")
        }
    };
    let x_desc = if p.log { format!("{} (log scale)", p.field) } else { p.field.clone() };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(s.y_desc.as_str())
        .y_labels(6)
        .max_light_lines(1)
        .axis_desc_style((FAMILY, px(17.0)))
        .label_style((FAMILY, px(15.0)))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    if empty {
        let (w, h) = area.dim_in_pixel();
        let size = px(19.0);
        area.draw(&Text::new(
            fit_text(&s.empty_note, size, w.saturating_sub(px(90.0))),
            (w as i32 / 2 + px(26.0) as i32, h as i32 / 2),
            font(size).color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        return Ok(false);
    }
    let base = area.get_base_pixel();
    let pixel = |x: f64, y: f64| {
        let p = chart.backend_coord(&(x, y));
        (p.0 - base.0, p.1 - base.1)
    };
    let shown: Vec<(f64, f64, &TrialPoint)> = p
        .points
        .iter()
        .filter(|t| t.x.is_finite() && (!p.log || t.x > 0.0))
        .filter_map(|t| t.y.filter(|y| y.is_finite()).map(|y| (if p.log { t.x.log10() } else { t.x }, y, t)))
        .collect();
    let mut off_scale = false;
    // Dots first, so no × hides under one; the ring over both.
    for stopped in [false, true] {
        for (x, y, t) in shown.iter().filter(|(_, _, t)| t.stopped == stopped) {
            if *y > y_hi {
                let c = if t.stopped { colour(1) } else { colour(0) };
                area.draw(&TriangleMarker::new(pixel(*x, y_hi), px(7.0), c.filled()))?;
                off_scale = true;
            } else {
                trial_mark(area, pixel(*x, *y), t.stopped, scale)?;
            }
        }
    }
    for (x, y, _) in shown.iter().filter(|(_, _, t)| t.best) {
        best_ring(area, pixel(*x, y.min(y_hi)), scale)?;
    }
    Ok(off_scale)
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
        // Short names: a legend entry "augment=crop+flip" fits where the long one did not.
        serde_json::Value::Array(a) if key == "augment" => a
            .iter()
            .map(|x| match x.as_str() {
                Some("random_resized_crop") => "crop".to_string(),
                Some("horizontal_flip") => "flip".to_string(),
                _ => short_number(x),
            })
            .collect::<Vec<_>>()
            .join("+"),
        serde_json::Value::Array(a) => {
            a.iter().map(|x| x.as_str().map_or_else(|| short_number(x), str::to_owned)).collect::<Vec<_>>().join("+")
        }
        other => short_number(other),
    })
}

/// A JSON value as text, a float in Rust's shortest form (10.0 → "10", 1e-4 → "0.0001").
fn short_number(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if v.is_f64() => format!("{x}"),
        _ => v.to_string(),
    }
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

/// 42.4 → "42 s", 754 → "12.6 min", 9000 → "2.5 h": a duration as people say it.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        "–".into()
    } else if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 90.0 * 60.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// How several jobs are told apart.
pub struct Comparison {
    /// Every job's name when each has its own, else what sets it apart: the settings where
    /// it differs from the rest (`lr=0.1`), short enough for a legend.
    pub labels: Vec<String>,
    /// The settings every job shares, then the baseline: the value most jobs have of each
    /// setting a label leaves out ("baseline: batch_size=4 · lr=0.001").
    pub shared: String,
    /// The names of the settings that differ.
    pub varying: Vec<&'static str>,
}

/// The value most of `values` have, when at least two share it and it is not everyone's
/// (ties: the first to appear).
fn baseline_value(values: &[Option<String>]) -> Option<&Option<String>> {
    let mut best: Option<(&Option<String>, usize)> = None;
    for v in values {
        let n = values.iter().filter(|w| *w == v).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((v, n));
        }
    }
    best.filter(|(_, n)| *n >= 2 && *n < values.len()).map(|(v, _)| v)
}

pub fn compare(jobs: &[(Option<String>, serde_json::Value)]) -> Comparison {
    let differs = |k: &str| jobs.iter().any(|(_, s)| setting(s, k) != setting(&jobs[0].1, k));
    let varying: Vec<&'static str> = key_settings().filter(|k| differs(k)).collect();
    let mut shared = describe(&jobs[0].1, key_settings().filter(|k| !differs(k)));
    // N.B.: one style for the whole legend: names when every job has its own, otherwise the
    // settings that differ for all (a name beside "batch_size=1, epochs=1" reads as noise).
    let names: Vec<&String> = jobs.iter().filter_map(|(n, _)| n.as_ref()).collect();
    let distinct = names.iter().collect::<std::collections::HashSet<_>>().len() == jobs.len();
    if distinct {
        let labels = jobs.iter().map(|(n, _)| n.clone().unwrap_or_default()).collect();
        return Comparison { labels, shared, varying };
    }
    // Each varying setting's baseline: a job at it leaves the setting out of its label. The
    // model is always said when it varies (a label names what was trained).
    let values: Vec<Vec<Option<String>>> =
        varying.iter().map(|k| jobs.iter().map(|(_, s)| setting(s, k)).collect()).collect();
    let baselines: Vec<Option<&Option<String>>> =
        varying.iter().zip(&values).map(|(k, v)| if *k == "model" { None } else { baseline_value(v) }).collect();
    let part = |k: &str, v: &str| if k == "model" { v.to_string() } else { format!("{k}={v}") };
    let mut labels: Vec<String> = (0..jobs.len())
        .map(|j| {
            let parts: Vec<String> = varying
                .iter()
                .zip(&values)
                .zip(&baselines)
                .filter(|((_, v), b)| b.is_none_or(|b| *b != v[j]))
                .filter_map(|((k, v), _)| v[j].as_deref().map(|v| part(k, v)))
                .collect();
            if parts.is_empty() {
                "baseline".to_string()
            } else {
                parts.join(", ")
            }
        })
        .collect();
    // Jobs alike but for their seed say their seed.
    let before = labels.clone();
    for j in 0..jobs.len() {
        if before.iter().filter(|l| **l == before[j]).count() > 1 {
            let seed = setting(&jobs[j].1, "seed").unwrap_or_default();
            labels[j] = if varying.is_empty() { format!("seed={seed}") } else { format!("{}, seed={seed}", labels[j]) };
        }
    }
    let base: Vec<String> = varying
        .iter()
        .zip(&baselines)
        .filter_map(|(k, b)| b.and_then(|b| b.as_deref()).filter(|v| !usual(k, v)).map(|v| part(k, v)))
        .collect();
    if !base.is_empty() {
        shared = if shared.is_empty() {
            format!("baseline: {}", base.join(" · "))
        } else {
            format!("{shared} — baseline: {}", base.join(" · "))
        };
    }
    Comparison { labels, shared, varying }
}

#[cfg(test)]
mod tests {
    use super::{acc_range, duration, thousands, y_range, YAxis};

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(754.0), "12.6 min");
        assert_eq!(duration(9000.0), "2.5 h");
        assert_eq!(duration(f64::NAN), "–");
    }

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

#[cfg(test)]
mod scatter_tests {
    use super::*;

    fn panel(field: &str, log: bool, range: Option<(f64, f64)>, points: Vec<TrialPoint>) -> ScatterPanel {
        ScatterPanel { field: field.into(), log, range, ticks: Vec::new(), whole: false, points }
    }

    fn figure(panels: Vec<ScatterPanel>) -> Scatter {
        let (width, height) = scatter_size(panels.len());
        Scatter {
            title: String::new(),
            y_desc: "best test accuracy (%)".into(),
            percent: true,
            panels,
            empty_note: "no trial has finished an epoch yet".into(),
            width,
            height,
        }
    }

    fn point(x: f64, y: Option<f64>, stopped: bool) -> TrialPoint {
        TrialPoint { x, y, stopped, best: false }
    }

    #[test]
    fn a_search_scatter_tells_stopped_trials_from_finished_ones_on_a_log_axis() {
        let points = vec![
            TrialPoint { best: true, ..point(0.003, Some(55.0), false) },
            point(2e-6, Some(12.0), true),
            point(0.4, Some(31.0), true),
            // Not drawn: no value yet, a value or a setting that is not finite.
            point(5.0, None, false),
            point(f64::NAN, Some(30.0), false),
            point(0.1, Some(f64::NAN), false),
        ];
        let fig = figure(vec![panel("lr", true, Some((1e-6, 10.0)), points)]);
        let svg = String::from_utf8(scatter(&fig, Format::Svg).unwrap()).unwrap();
        for label in [RAN_ON, STOPPED_EARLY, "best trial", "lr (log scale)", "best test accuracy (%)"] {
            assert!(svg.contains(&format!(">\n{label}\n<")), "the figure says {label:?}");
        }
        // Powers of ten, from the range's low end (always labelled) up.
        assert!(svg.contains(">\n1e-6\n<") && svg.contains(">\n0.001\n<"), "decades labelled");

        let png = scatter(&fig, Format::Png).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (fig.width, fig.height));
        // The marks themselves, below the legend's row: a blue dot and an orange ×.
        let below_legend = |c: RGBColor| img.enumerate_pixels().any(|(_, y, p)| y > 60 && p.0 == [c.0, c.1, c.2]);
        assert!(below_legend(colour(0)), "a finished trial's dot");
        assert!(below_legend(colour(1)), "a stopped trial's ×");
    }

    #[test]
    fn a_scatter_with_no_values_one_trial_or_equal_values_still_draws() {
        let cases = [
            vec![point(0.01, None, false), point(0.1, None, true)],
            vec![point(0.01, Some(40.0), false)],
            vec![point(0.01, Some(40.0), false), point(0.02, Some(40.0), true), point(0.03, Some(40.0), false)],
        ];
        for points in cases {
            let fig = figure(vec![
                panel("lr", true, None, points.clone()),
                panel("momentum", false, None, points.iter().map(|p| TrialPoint { x: 0.9, ..*p }).collect()),
                ScatterPanel { whole: true, ..panel("epochs", false, Some((1.0, 3.0)), points.clone()) },
            ]);
            for format in [Format::Png, Format::Svg] {
                scatter(&fig, format).unwrap();
            }
        }
        let svg = String::from_utf8(
            scatter(&figure(vec![panel("lr", true, None, vec![point(0.01, None, false)])]), Format::Svg).unwrap(),
        )
        .unwrap();
        assert!(svg.contains("no trial has finished an epoch yet"), "an empty panel says why");
        assert!(!svg.contains(&format!(">\n{RAN_ON}\n<")), "no legend entry for marks not drawn");
        scatter(&figure(Vec::new()), Format::Png).unwrap();
    }

    #[test]
    fn ticks_read_as_numbers_people_write() {
        assert_eq!(tick_text(1e-6), "1e-6");
        assert_eq!(tick_text(0.001), "0.001");
        assert_eq!(tick_text(0.0025), "0.0025");
        assert_eq!(tick_text(10.0), "10");
        assert_eq!(tick_text(2e4), "2e4");
        let whole: Vec<String> = linear_ticks(0.5, 3.5, 5, true).into_iter().map(|t| t.1).collect();
        assert_eq!(whole, ["1", "2", "3"]);
        let real: Vec<String> = linear_ticks(0.48, 1.01, 5, false).into_iter().map(|t| t.1).collect();
        assert_eq!(real, ["0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]);
        let axis = x_axis(&panel("lr", true, Some((1e-6, 10.0)), Vec::new()));
        let labels: Vec<&str> = axis.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1", "10"]);
        // Within a decade: its ends, 2 and 5 labelled.
        let axis = x_axis(&panel("lr", true, Some((0.001, 0.003)), Vec::new()));
        let labels: Vec<&str> = axis.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.001", "0.002", "0.005", "0.01"]);
    }

    #[test]
    fn a_legend_of_27_jobs_keeps_every_entry() {
        let epochs: Vec<EpochMetrics> = (1..=3)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: Some(2.0 / e as f64),
                train_acc: 0.2 * e as f64,
                test_loss: Some(2.1 / e as f64),
                test_acc: 0.19 * e as f64,
                seconds: 1.0,
                train_seconds: 1.0,
                samples_per_second: 1.0,
                diverged: false,
                lr: None,
            })
            .collect();
        let spec = serde_json::json!({"loss": "cross_entropy", "dataset": "cifar10"});
        let fig = Figure {
            title: String::new(),
            subtitle: String::new(),
            series: (0..27).map(|i| Series::of_spec(format!("trial {i}: lr=0.00{i}"), &epochs, &spec)).collect(),
            metric: Metric::All,
            epochs_total: 27,
            empty_note: String::new(),
            width: 1000,
            height: 700,
            y_axis: YAxis::Full,
        };
        let svg = String::from_utf8(render(&fig, Format::Svg).unwrap()).unwrap();
        for label in ["trial 26: lr=0.0026", "test loss", "chance (10 %)"] {
            assert!(svg.contains(&format!(">\n{label}\n<")), "the legend holds {label:?}");
        }
    }
}
