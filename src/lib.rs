//! trainyard: an HTTP training service for a shared lab GPU box.
//!
//! A job flows: HTTP request (`api`) → validated spec (`spec`) → row in the queue (`queue`)
//! → claimed by a worker (`worker`) → trained on a device (`train`) → epoch metrics → JSON and
//! plots (`plot`).
//!
//! - `config`: the settings of `trainyard serve`.
//! - `job`: a job's status, its epoch rows and in-epoch progress: one shape for the queue,
//!   JSON, events and Prometheus.
//! - `api`: the router, one file per resource, the error type.
//! - `queue`: the only place that holds SQL: claim, heartbeat, finish, metrics upsert.
//! - `schedule`: pure: queue positions and estimated starts under the fair-share rule.
//! - `telemetry`: Prometheus metrics (GET /metrics).
//! - `storage`: the process's view of its database's health (a full disk, a vanished file).
//! - `token_file`: the admin's token file, kept true when the token changes.
//! - `hub`: the process's event hub: job changes, stop flags, the idle workers' wake-up.
//! - `worker`: claim → heartbeat → train → record, on OS threads of its own.
//! - `server`: `trainyard serve`, the API and workers in one process.
//! - `fetch`: `trainyard data fetch`.
//! - `plot`: pure: metrics in, PNG or SVG bytes out.
//! - `spec`: the experiment spec — parse, defaults, validation — and its table of fields.
//! - `network`: a spec's network as plain data: layers, shapes, parameters, memory.
//! - `optimizer`: the optimisers and learning-rate schedules a spec can name, as plain data.
//! - `dataset`: the datasets a spec can name: image shape, classes, splits, normalisation.
//! - `sweep`: pure: a sweep request (a grid, a search, or a preset) → the jobs to queue.
//! - `search`: pure: a search's sampled space and its early-stopping rules (ASHA, median).
//! - `report`: pure: a sweep's report as self-contained HTML or Markdown.
//! - `class`: pure: a class's view of one assignment: a row per student, flags, CSV.
//! - `train`: blocking training code: data, models, augmentation, optimisers, the loop,
//!   checkpoints.
//! - `device`: naming and checking torch devices.
//! - `cli`: the `trainyard` command's subcommands.

pub mod alloc;
pub mod api;
pub mod class;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod device;
pub mod fetch;
pub mod hub;
pub mod job;
pub mod network;
pub mod optimizer;
pub mod plot;
pub mod queue;
pub mod report;
pub mod schedule;
pub mod search;
pub mod server;
pub mod spec;
pub mod storage;
pub mod sweep;
pub mod telemetry;
pub mod token_file;
pub mod train;
pub mod worker;
