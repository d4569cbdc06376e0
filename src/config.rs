//! The settings of `trainyard serve`: each a flag with a `TRAINYARD_` environment variable.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address the HTTP API listens on (port 0 picks a free one; the log says which).
    #[arg(long, env = "TRAINYARD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The job database, created on first start; migrations run at every start.
    #[arg(long, env = "TRAINYARD_DATABASE", default_value = "sqlite://var/trainyard.db")]
    pub database: String,
    /// The dataset store: a folder per dataset (cifar10, cifar100, mnist, fashion-mnist,
    /// and a lab's imports); CIFAR-10's files directly in it, or in its
    /// cifar-10-batches-bin folder, also work. A built-in dataset whose folder is empty is
    /// fetched by the first job that needs it.
    #[arg(long, env = "TRAINYARD_DATA_DIR", default_value = "var/data")]
    pub data_dir: PathBuf,
    /// Run the API only; `trainyard worker` processes on the same database do the training.
    #[arg(long, env = "TRAINYARD_NO_WORKERS")]
    pub no_workers: bool,
    /// Workers on each CUDA device (several let small jobs share a GPU).
    #[arg(long, env = "TRAINYARD_WORKERS_PER_GPU", default_value_t = 1)]
    pub workers_per_gpu: usize,
    /// Workers on a machine without a GPU (0 runs the API alone) [default: one per core, which
    /// measured best for a class's many small jobs: BENCHMARKS.md].
    #[arg(long, env = "TRAINYARD_CPU_WORKERS")]
    pub cpu_workers: Option<usize>,
    /// torch's CPU threads per worker [default: the machine's cores shared among the CPU workers,
    /// and an idle CPU worker's lent to the groups still training where they measure faster].
    #[arg(long, env = "TRAINYARD_THREADS_PER_WORKER")]
    pub threads_per_worker: Option<i32>,
    /// Most compatible jobs (same model, batch size and data) one worker trains as one fused
    /// group; 1 trains each job alone [default: 8 on a CPU, 32 on a GPU].
    #[arg(long, env = "TRAINYARD_MAX_GROUP", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_group: Option<u64>,
    /// Seconds workers wait before trying again when the data cannot be loaded (jobs wait
    /// queued meanwhile, and a change to the data directory ends the wait at once).
    #[arg(long, env = "TRAINYARD_RETRY_SECONDS", default_value_t = 60.0)]
    pub retry_seconds: f64,
    /// Datasets each device keeps in memory at once; past it, the least recently used one
    /// is dropped (and loaded again when a job needs it).
    #[arg(long, env = "TRAINYARD_DATASETS_IN_MEMORY", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub datasets_in_memory: u64,
    /// Seconds without a heartbeat after which a running job's worker counts as dead and
    /// the job goes back to the queue.
    #[arg(long, env = "TRAINYARD_LEASE_SECONDS", default_value_t = 30.0)]
    pub lease_seconds: f64,
    /// Claims of one job (after worker deaths) before it fails for good.
    #[arg(long, env = "TRAINYARD_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i64,
    /// Most queued jobs one user may have; past it POST /jobs answers 429.
    #[arg(long, env = "TRAINYARD_MAX_QUEUED_PER_USER", default_value_t = 100)]
    pub max_queued_per_user: i64,
    /// Most epochs one job may ask for (at most 1000).
    #[arg(long, env = "TRAINYARD_MAX_EPOCHS_PER_JOB", default_value_t = 1000)]
    pub max_epochs_per_job: u32,
    /// Most trainable parameters one job's model may have; past it POST /jobs answers 422
    /// (the assignment's largest model, the MLP, has 379,774).
    #[arg(long, env = "TRAINYARD_MAX_PARAMETERS", default_value_t = 50_000_000)]
    pub max_parameters: i64,
    /// Most memory one job may need, in MB, by its estimate at submission (weights,
    /// gradients, momentum and activations at its batch size); past it POST /jobs answers 422.
    #[arg(long, env = "TRAINYARD_MAX_JOB_MEMORY_MB", default_value_t = 4096)]
    pub max_job_memory_mb: i64,
    /// Most jobs of one user running at once; further jobs wait (0: no limit beyond fairness).
    #[arg(long, env = "TRAINYARD_MAX_RUNNING_PER_USER", default_value_t = 0)]
    pub max_running_per_user: i64,
    /// Event streams (GET /events, GET /jobs/ID/events) one user may have open at once; past
    /// it 429.
    #[arg(long, env = "TRAINYARD_MAX_STREAMS_PER_USER", default_value_t = 8)]
    pub max_streams_per_user: usize,
    /// Requests per second per token (bursts of twice that); past it 429 with Retry-After (0: off).
    #[arg(long, env = "TRAINYARD_RATE_LIMIT", default_value_t = 20.0)]
    pub rate_limit: f64,
    /// Whether a student may see the class's anonymous median band behind their own curves
    /// (`GET /sweeps/ID/plot?class=true`, "compare me with the class" on their sweep's page)
    /// and the class's quartiles beside their row of `GET /class/ASSIGNMENT`: the other
    /// students' median and middle half, no name.
    #[arg(long, env = "TRAINYARD_CLASS_BAND", default_value_t = true, action = clap::ArgAction::Set)]
    pub class_band: bool,
    /// Other students whose finished run a band needs before a student sees it: a band of
    /// fewer would tell too much about each of them.
    #[arg(long, env = "TRAINYARD_CLASS_MIN_STUDENTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub class_min_students: u32,
    /// Days a finished job's checkpoint (its weights) is kept; older ones are dropped hourly
    /// by the server, as `trainyard gc` would (metrics, plots and reports stay). 0 keeps
    /// them forever.
    #[arg(long, env = "TRAINYARD_KEEP_CHECKPOINTS_DAYS", default_value_t = 90.0)]
    pub keep_checkpoints_days: f64,
    /// Seconds after which a lost or stopped worker is no longer listed by GET /workers.
    #[arg(long, env = "TRAINYARD_FORGET_WORKERS_SECONDS", default_value_t = 3600.0)]
    pub forget_workers_seconds: f64,
    /// `trainyard worker` only: serve this process's Prometheus metrics (GET /metrics, an
    /// admin's token) on this address.
    #[arg(long, env = "TRAINYARD_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// Seconds a connection may take to send a request's headers (and an idle keep-alive
    /// connection may wait for its next request) before it is closed.
    #[arg(long, env = "TRAINYARD_HEADER_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub header_timeout_seconds: f64,
    /// Most HTTP connections open at once; a connection past it is closed at once, so the
    /// process never runs out of file descriptors (keep it well under `ulimit -n`).
    #[arg(long, env = "TRAINYARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Create a new, empty SQLite database even where this machine's trainyard created one
    /// before that is now missing (deleted or moved); without it, such a start is an error.
    #[arg(long, env = "TRAINYARD_INIT")]
    pub init: bool,
    /// Where trainyard remembers the SQLite databases it created (to notice one deleted)
    /// [default: $XDG_STATE_HOME/trainyard, or ~/.local/state/trainyard].
    #[arg(long, env = "TRAINYARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where the first admin's token is written (mode 0600) when the server starts with no users.
    #[arg(long, env = "TRAINYARD_ADMIN_TOKEN_FILE", default_value = "var/admin.token")]
    pub admin_token_file: PathBuf,
    /// Where the CIFAR-10 archive is fetched from.
    #[arg(long, env = "TRAINYARD_DATA_URL", default_value = crate::fetch::OFFICIAL_URL, hide = true)]
    pub data_url: String,
    /// The archive's MD5.
    #[arg(long, env = "TRAINYARD_DATA_MD5", default_value = crate::fetch::OFFICIAL_MD5, hide = true)]
    pub data_md5: String,
    /// A mirror of the built-in datasets' files (a lab's own web server or folder served over
    /// HTTP): each file is fetched as MIRROR/<dataset folder>/<file name> (e.g.
    /// MIRROR/mnist/train-images-idx3-ubyte.gz) and checked against its published MD5.
    #[arg(long, env = "TRAINYARD_DATA_MIRROR")]
    pub data_mirror: Option<String>,
}

impl ServeConfig {
    /// The HTTP connections' limits.
    pub fn connections(&self) -> crate::api::serve::ConnectionLimits {
        crate::api::serve::ConnectionLimits {
            header_timeout: std::time::Duration::from_secs_f64(self.header_timeout_seconds.clamp(0.1, 3600.0)),
            max_connections: self.max_connections.max(1),
        }
    }

    /// How often an idle worker says it is alive (a busy one: every heartbeat).
    pub fn alive_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.lease_seconds.clamp(0.5, 5.0))
    }

    /// A worker silent this long is lost: three missed reports.
    pub fn live_window(&self) -> std::time::Duration {
        self.alive_every() * 3
    }
}
