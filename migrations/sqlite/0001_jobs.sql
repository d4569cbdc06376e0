-- The users of a shared box. Tokens are kept only as SHA-256 hashes.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    token_hash     TEXT NOT NULL UNIQUE,
    is_admin       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    last_served_at INTEGER                               -- when a worker last took one of their jobs
);

-- The job queue. Times are milliseconds since the Unix epoch, passed in from Rust.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order and list cursor
    id               TEXT NOT NULL UNIQUE,               -- uuid, the public id
    owner_id         INTEGER NOT NULL REFERENCES users (id),
    priority         INTEGER NOT NULL DEFAULT 0,         -- set by admins; higher goes first
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
    idempotency_key  TEXT,
    request_hash     TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_owner ON jobs (owner_id, status);

-- One row per finished epoch of a job; a retried attempt upserts the same rows.
CREATE TABLE epochs (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    epoch    INTEGER NOT NULL,
    metrics  TEXT NOT NULL,                              -- EpochMetrics as JSON
    PRIMARY KEY (job_id, epoch)
);
