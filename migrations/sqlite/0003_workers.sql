-- The workers that have served this queue, for GET /workers.
CREATE TABLE workers (
    name         TEXT PRIMARY KEY,                       -- host/pid/device#index
    host         TEXT NOT NULL,
    device       TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    job_id       TEXT,                                   -- the job it runs now
    stopped_at   INTEGER
);
