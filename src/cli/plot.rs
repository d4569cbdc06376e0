//! `trainyard plot`: the figure of `GET /jobs/{id}/plot`, offline, from `trainyard train`'s output.

use crate::job::EpochMetrics;
use crate::plot::{self, Figure, Format, Metric, Series};
use anyhow::{bail, Context};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// metrics.jsonl written by `trainyard train` (its spec.json beside it names the run).
    #[arg(long)]
    metrics: PathBuf,
    /// The picture to write, .png or .svg [default: plot.png beside the metrics].
    #[arg(long)]
    out: Option<PathBuf>,
    /// loss, train_acc, test_acc or all (three panels).
    #[arg(long, default_value = "all")]
    metric: String,
    #[arg(long, default_value_t = 1000)]
    width: u32,
    #[arg(long, default_value_t = 700)]
    height: u32,
}

pub fn plot(args: PlotArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.metrics).with_context(|| format!("reading {}", args.metrics.display()))?;
    let epochs: Vec<EpochMetrics> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", args.metrics.display(), i + 1)))
        .collect::<anyhow::Result<_>>()?;
    let dir = args.metrics.parent().map(PathBuf::from).unwrap_or_default();
    let spec: serde_json::Value = std::fs::read_to_string(dir.join("spec.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let out = args.out.unwrap_or_else(|| dir.join("plot.png"));
    let format = match out.extension().and_then(|e| e.to_str()) {
        Some("png") => Format::Png,
        Some("svg") => Format::Svg,
        _ => bail!("--out must end in .png or .svg, got {}", out.display()),
    };
    let Some(metric) = Metric::parse(&args.metric) else {
        bail!("--metric must be one of {}, got {:?}", Metric::NAMES.join(", "), args.metric);
    };
    let (lo, hi) = (plot::WIDTHS, plot::HEIGHTS);
    if !(lo.0..=lo.1).contains(&args.width) || !(hi.0..=hi.1).contains(&args.height) {
        bail!("--width must be {}..={} and --height {}..={}", lo.0, lo.1, hi.0, hi.1);
    }
    let name = spec["name"].as_str().map(str::to_owned).unwrap_or_else(|| dir.display().to_string());
    let epochs_total = spec["epochs"].as_u64().map_or(epochs.len() as u32, |e| e as u32);
    let fig = Figure {
        title: format!("{name} ({} of {epochs_total} epochs)", epochs.len()),
        subtitle: if spec.is_null() {
            String::new()
        } else {
            format!("{} · seed={}", plot::settings_line(&spec), spec["seed"])
        },
        series: vec![Series::of_spec(name.clone(), &epochs, &spec)],
        metric,
        epochs_total,
        empty_note: "no epoch finished yet".into(),
        width: args.width,
        height: args.height,
        y_axis: Default::default(),
    };
    let bytes = plot::render(&fig, format)?;
    std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
