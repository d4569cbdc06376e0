//! The job queue in SQLite or PostgreSQL: the only module that holds SQL.
//!
//! - A worker claims the next job with one conditional `UPDATE … RETURNING`; the claim bumps
//!   `attempt` and sets a lease that heartbeats renew. On PostgreSQL the claim's subquery
//!   locks the row it picks `FOR UPDATE SKIP LOCKED`, so two workers never take one job.
//! - Every write a worker makes is fenced on (id, attempt, status = 'running'): zero rows
//!   affected means the lease was lost (expired, or the job was cancelled), and the worker
//!   must stop.
//! - SQLite: read-then-write transactions begin IMMEDIATE; the database is in WAL mode with
//!   a busy timeout, so no client sees "database is locked". PostgreSQL: READ COMMITTED, and
//!   the one read-then-write (a cancel) locks its row.
//! - "now" is passed in from Rust (milliseconds since the epoch), so tests can move the clock.
//! - Fair scheduling: the next job is the oldest queued job of the user with the fewest
//!   running jobs (ties: the user served longest ago); an admin's priority goes first.
//!
//! One SQL text serves both databases: it is written with SQLite's `?`/`?N` placeholders and
//! `Dialect::sql` renumbers them as `$N` for PostgreSQL; the few real differences (JSON
//! access, row locks) are `Dialect` methods. `on_db!` compiles a body once per backend, so
//! each runs through its own sqlx driver with its own types.

pub mod checkpoints;
mod db;
pub mod events;
mod jobs;
pub mod problems;
pub mod search;
pub mod sweeps;
pub mod users;
pub mod workers;

pub use db::{
    backup, compact, connect, display_url, now_ms, open_existing, sqlite_file, Compacted, Dialect, Pool, QueueError,
};
pub(crate) use db::{decode, on_db, Tx};
pub use jobs::*;
pub(crate) use jobs::{create_job_in, lock_queued_count, JobRecord, JOB_COLUMNS};
