//! `trainyard train` and `trainyard demo`: one experiment in the foreground.

use crate::device::{device_name, parse_device};
use crate::spec::Spec;
use crate::train::data::Data;
use crate::train::metrics::{EpochMetrics, MetricSink};
use crate::train::{self, Outcome, TrainOptions};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The experiment spec, a JSON file (the same object as the body of POST /jobs).
    #[arg(long)]
    spec: PathBuf,
    /// The dataset store (as serve's --data-dir), or a directory with CIFAR-10's binary
    /// files (data_batch_1..5.bin, test_batch.bin).
    #[arg(long, env = "TRAINYARD_DATA_DIR")]
    data_dir: PathBuf,
    /// Where metrics.jsonl, spec.json and the checkpoint go [default: var/runs/<name>-<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// torch's intra-op threads [default: torch's choice, one per core].
    #[arg(long)]
    threads: Option<i32>,
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.spec).with_context(|| format!("reading spec file {}", args.spec.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("spec file {} is not valid JSON", args.spec.display()))?;
    // A lab's own datasets are named from the store's descriptions.
    for (dir, why) in crate::dataset::scan(&args.data_dir) {
        eprintln!("warning: {} is not a dataset: {why}", dir.display());
    }
    // Rerunning with the same --out resumes; a spec without a seed takes the saved run's seed.
    let saved_seed = args.out.as_ref().and_then(|o| saved_spec(o)).map(|s| s.seed);
    let spec = match Spec::parse_with_seed(&value, || saved_seed.unwrap_or_else(crate::spec::draw_seed)) {
        Ok(s) => s,
        Err(errors) => {
            let lines: Vec<String> = errors.0.iter().map(|e| format!("  {}: {}", e.field, e.message)).collect();
            bail!("invalid spec in {}:\n{}", args.spec.display(), lines.join("\n"));
        }
    };
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let out = args.out.unwrap_or_else(|| {
        let label = spec.name.clone().unwrap_or_else(|| format!("{:?}", spec.model).to_lowercase());
        let safe: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        PathBuf::from(format!("var/runs/{safe}-{}", spec.seed))
    });
    run_one(&spec, &args.data_dir, &out, device, args.threads)
}

fn saved_spec(out: &Path) -> Option<Spec> {
    let text = std::fs::read_to_string(out.join("spec.json")).ok()?;
    Spec::parse(&serde_json::from_str(&text).ok()?).ok()
}

fn run_one(spec: &Spec, data_dir: &Path, out: &Path, device: tch::Device, threads: Option<i32>) -> anyhow::Result<()> {
    let data = Data::load(spec.data(), data_dir, device)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("spec.json"), serde_json::to_string_pretty(&spec.to_json())? + "\n")?;
    println!(
        "{}: model {}, {} trainable parameters, batch {}, lr {}, {} epochs, seed {}, on {} ({} training / {} test images)",
        spec.name.as_deref().unwrap_or("experiment"),
        spec.network_name(),
        crate::network::parameter_count(spec),
        spec.batch_size,
        spec.lr,
        spec.epochs,
        spec.seed,
        device_name(device),
        spec.train_limit.map_or(data.train.len(), |l| (l as usize).min(data.train.len())),
        data.test.len(),
    );
    println!("writing {}", out.display());
    let mut sink = FileSink::open(out)?;
    let store = train::DirStore::new(out);
    let opts = TrainOptions { checkpoints: Some(&store), threads };
    match train::train(spec, &data, &opts, &mut sink, &AtomicBool::new(false))? {
        Outcome::Finished { epochs } => {
            println!("done: {epochs} epochs; metrics in {}", out.join("metrics.jsonl").display())
        }
        Outcome::Stopped { epochs_done } => println!("stopped after {epochs_done} epochs"),
    }
    Ok(())
}

/// Writes metrics.jsonl (one JSON object per epoch, upserted by epoch so a resumed run
/// never repeats a line), prints a line per epoch and draws the progress bar.
struct FileSink {
    path: PathBuf,
    epochs: Vec<EpochMetrics>,
    bar: Option<ProgressBar>,
}

impl FileSink {
    fn open(dir: &Path) -> anyhow::Result<FileSink> {
        let path = dir.join("metrics.jsonl");
        let epochs = match std::fs::read_to_string(&path) {
            Ok(text) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
            Err(_) => Vec::new(),
        };
        Ok(FileSink { path, epochs, bar: None })
    }
}

impl MetricSink for FileSink {
    fn record_epoch(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.epochs.retain(|e| e.epoch < m.epoch);
        self.epochs.push(m.clone());
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for e in &self.epochs {
            writeln!(f, "{}", serde_json::to_string(e)?)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        let loss = |l: Option<f64>| match l {
            None => "   n/a".to_string(),
            Some(l) if l.abs() < 1e4 => format!("{l:.4}"),
            Some(l) => format!("{l:.2e}"),
        };
        println!(
            "epoch {:>3}  train loss {}  train acc {:5.1}%  test loss {}  test acc {:5.1}%  {:6.1}s  {:>7.0} samples/s{}",
            m.epoch,
            loss(m.train_loss),
            m.train_acc * 100.0,
            loss(m.test_loss),
            m.test_acc * 100.0,
            m.seconds,
            m.samples_per_second,
            if m.diverged { "  (diverged)" } else { "" }
        );
        Ok(())
    }

    fn batch_done(&mut self, epoch: u32, done: usize, total: usize) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {msg} [{bar:40}] {pos}/{len} batches, eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(epoch.to_string());
            bar
        });
        bar.set_position(done as u64);
    }
}
