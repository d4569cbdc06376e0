-- PostgreSQL twin of migrations/sqlite/0003_workers.sql.
CREATE TABLE workers (
    name         TEXT PRIMARY KEY,                       -- host/pid/device#index
    host         TEXT NOT NULL,
    device       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    job_id       TEXT,                                   -- the job it runs now
    stopped_at   BIGINT
);
