-- The job queue. Times are milliseconds since the Unix epoch, passed in from Rust.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order and list cursor
    id               TEXT NOT NULL UNIQUE,               -- uuid, the public id
    name             TEXT,
    spec             TEXT NOT NULL,                      -- the validated spec, defaults filled in (JSON)
    parameters       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    epochs_total     INTEGER NOT NULL,
    epochs_done      INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,         -- bumped by every claim; fences the claimant's writes
    worker           TEXT,                               -- who holds the lease while running
    device           TEXT,
    lease_expires_at INTEGER,
    error            TEXT,
    idempotency_key  TEXT UNIQUE,
    request_hash     TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX jobs_by_status ON jobs (status, seq);

-- One row per finished epoch of a job; a retried attempt upserts the same rows.
CREATE TABLE epochs (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    epoch    INTEGER NOT NULL,
    metrics  TEXT NOT NULL,                              -- EpochMetrics as JSON
    PRIMARY KEY (job_id, epoch)
);
