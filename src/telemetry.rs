//! Prometheus metrics of this process, under `trainyard_` (no per-job labels). Workers and
//! the API count what they do here (jobs finished, queue waits, job and epoch durations);
//! the API's `GET /metrics` adds the box's state read from the database at scrape time
//! (jobs by state, workers by device and state, the oldest queued job's age, training
//! throughput) and the event streams open. `trainyard worker` serves its own counters on
//! `--metrics-bind`.

use crate::job::JobStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub device: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Seconds from a minute to a day: a class's jobs wait and run minutes to hours.
const LONG: [f64; 12] = [10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0];
/// Seconds from a tenth of a second to an hour: an epoch of a tiny test job to a big one.
const EPOCH: [f64; 11] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];

/// The metrics one process keeps.
pub struct Telemetry {
    registry: Registry,
    finished: Family<StatusLabel, Counter>,
    queue_wait: Histogram,
    job_duration: Histogram,
    epoch_duration: Histogram,
    // Set at scrape time (the API's view of the box).
    jobs: Family<StateLabel, Gauge>,
    workers: Family<WorkerLabels, Gauge>,
    oldest_queued: Gauge<f64, AtomicU64>,
    samples_per_second: Gauge<f64, AtomicU64>,
    streams: Gauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(true)
    }
}

impl Telemetry {
    /// This process's metrics; with `box_state`, also the gauges of the box's state that
    /// the API sets at scrape time (a worker process exports only its own counters).
    pub fn new(box_state: bool) -> Self {
        let mut registry = Registry::with_prefix("trainyard");
        let t = Telemetry {
            finished: Family::default(),
            queue_wait: Histogram::new(LONG),
            job_duration: Histogram::new(LONG),
            epoch_duration: Histogram::new(EPOCH),
            jobs: Family::default(),
            workers: Family::default(),
            oldest_queued: Gauge::default(),
            samples_per_second: Gauge::default(),
            streams: Gauge::default(),
            registry: Registry::default(),
        };
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "The running trainyard's version", build);
        registry.register("jobs_finished", "Jobs this process saw end, by final status", t.finished.clone());
        registry.register(
            "queue_wait_seconds",
            "From submission to a worker's first claim, for jobs this process's workers claimed",
            t.queue_wait.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "From a job's first start to its end, for jobs this process's workers ended",
            t.job_duration.clone(),
        );
        registry.register(
            "epoch_duration_seconds",
            "One epoch, evaluation included, trained by this process's workers",
            t.epoch_duration.clone(),
        );
        if !box_state {
            return Telemetry { registry, ..t };
        }
        registry.register("jobs", "Jobs in the queue's database, by state", t.jobs.clone());
        registry.register("workers", "Workers seen in the last hour, by device and state", t.workers.clone());
        registry.register(
            "oldest_queued_job_age_seconds",
            "How long the oldest queued job has waited (0: none waits)",
            t.oldest_queued.clone(),
        );
        registry.register(
            "training_samples_per_second",
            "Training samples per second of all running jobs together, as their workers last said",
            t.samples_per_second.clone(),
        );
        registry.register("event_streams_open", "Event streams this server has open", t.streams.clone());
        Telemetry { registry, ..t }
    }

    /// A job ended as `status`.
    pub fn job_finished(&self, status: JobStatus) {
        self.finished.get_or_create(&StatusLabel { status: status.to_string() }).inc();
    }

    /// A job was claimed for its first attempt after waiting `seconds`.
    pub fn job_claimed(&self, waited_seconds: f64) {
        self.queue_wait.observe(waited_seconds.max(0.0));
    }

    /// A job ended `seconds` after it first started.
    pub fn job_ended(&self, seconds: f64) {
        self.job_duration.observe(seconds.max(0.0));
    }

    pub fn epoch(&self, seconds: f64) {
        self.epoch_duration.observe(seconds.max(0.0));
    }

    /// The box's state, for the next scrape.
    pub fn set_box(&self, view: &BoxView) {
        for s in JobStatus::ALL {
            let n = view.jobs.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
            self.jobs.get_or_create(&StateLabel { state: s.to_string() }).set(n);
        }
        self.workers.clear();
        for (device, state, n) in &view.workers {
            self.workers.get_or_create(&WorkerLabels { device: device.clone(), state: state.clone() }).set(*n);
        }
        self.oldest_queued.set(view.oldest_queued_seconds);
        self.samples_per_second.set(view.samples_per_second);
    }

    pub fn set_streams(&self, open: usize) {
        self.streams.set(open as i64);
    }

    /// The Prometheus text (OpenMetrics) of everything registered.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter's HELP and TYPE name its
/// `_total` sample (OpenMetrics names the family without it, and `promtool check metrics`
/// then finds a sample with no help text), and there is no `# EOF`.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{tag}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None if line.starts_with("# UNIT ") => continue,
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The box's state as the database has it, for the gauges.
#[derive(Debug, Default)]
pub struct BoxView {
    pub jobs: Vec<(JobStatus, i64)>,
    /// (device, state, count).
    pub workers: Vec<(String, String, i64)>,
    pub oldest_queued_seconds: f64,
    pub samples_per_second: f64,
}
