//! Render time of the plots (BENCHMARKS.md): 1 job × 50 epochs and 10 jobs × 50 epochs,
//! PNG and SVG, at the default 1000×700. Run with `make bench-plot`.

use std::time::Instant;
use trainyard::job::EpochMetrics;
use trainyard::plot::{render, Figure, Format, Metric, Series};

fn curve(shift: f64) -> Vec<EpochMetrics> {
    (1..=50u32)
        .map(|e| EpochMetrics {
            epoch: e,
            train_loss: Some(2.3 / (e as f64).sqrt() + shift),
            train_acc: (0.3 + 0.012 * e as f64 - shift / 10.0).min(1.0),
            test_loss: Some(2.0 / (e as f64).powf(0.3) + shift),
            test_acc: 0.3 + 0.005 * e as f64,
            seconds: 9.0,
            train_seconds: 8.5,
            samples_per_second: 6000.0,
            diverged: false,
            lr: None,
        })
        .collect()
}

fn main() {
    let curves: Vec<Vec<EpochMetrics>> = (0..10).map(|i| curve(i as f64 * 0.05)).collect();
    for jobs in [1usize, 10] {
        for format in [Format::Png, Format::Svg] {
            let fig = Figure {
                title: format!("{jobs} jobs"),
                subtitle: "cnn · batch_size=4 · lr=0.001".into(),
                series: curves[..jobs].iter().enumerate().map(|(i, c)| Series::plain(format!("job {i}"), c)).collect(),
                metric: Metric::All,
                epochs_total: 50,
                empty_note: String::new(),
                width: 1000,
                height: 700,
                y_axis: Default::default(),
            };
            render(&fig, format).unwrap(); // warm-up: font registration, allocations
            let runs = 20;
            let t = Instant::now();
            let mut bytes = 0;
            for _ in 0..runs {
                bytes = render(&fig, format).unwrap().len();
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0 / runs as f64;
            println!(
                "{jobs:>2} job(s) x 50 epochs, all panels, {format:?}: {ms:6.1} ms per render ({} KiB)",
                bytes / 1024
            );
        }
    }
}
