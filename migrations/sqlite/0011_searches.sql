-- Searches that stop bad trials early (issue 26).
--
-- A job may end `stopped_early`: SQLite cannot change a CHECK constraint in place, so the
-- jobs table is made again with it, inside this migration's transaction: its rows copied
-- aside, the table dropped and created anew, the rows copied back. Foreign keys are
-- deferred meanwhile (the drop's implicit delete leaves the epochs, checkpoints and sweep
-- rows without their job for a moment; copying the jobs back restores every one, and the
-- commit checks it), and the AUTOINCREMENT counter is kept, so no job's seq is ever reused.
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE jobs_aside AS SELECT * FROM jobs;
CREATE TEMP TABLE jobs_counter AS SELECT seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    owner_id         INTEGER NOT NULL REFERENCES users (id),
    priority         INTEGER NOT NULL DEFAULT 0,
    name             TEXT,
    spec             TEXT NOT NULL,
    parameters       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'stopped_early')),
    epochs_total     INTEGER NOT NULL,
    epochs_done      INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,
    device           TEXT,
    lease_expires_at INTEGER,
    error            TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    group_key        TEXT,
    group_id         TEXT,
    progress         TEXT,
    notice           TEXT,
    diverged_at      INTEGER,
    UNIQUE (owner_id, idempotency_key)
);
INSERT INTO jobs (seq, id, owner_id, priority, name, spec, parameters, status, epochs_total, epochs_done,
    attempt, worker, device, lease_expires_at, error, idempotency_key, request_hash, created_at, started_at,
    finished_at, group_key, group_id, progress, notice, diverged_at)
SELECT seq, id, owner_id, priority, name, spec, parameters, status, epochs_total, epochs_done,
    attempt, worker, device, lease_expires_at, error, idempotency_key, request_hash, created_at, started_at,
    finished_at, group_key, group_id, progress, notice, diverged_at FROM jobs_aside;
DELETE FROM sqlite_sequence WHERE name = 'jobs';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'jobs', MAX(COALESCE((SELECT seq FROM jobs_counter), 0), COALESCE((SELECT MAX(seq) FROM jobs), 0));
DROP TABLE jobs_aside;
DROP TABLE jobs_counter;
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_owner ON jobs (owner_id, status);
CREATE INDEX jobs_by_group_key ON jobs (status, group_key);
CREATE INDEX jobs_by_group ON jobs (group_id);

-- Which of a sweep's jobs are its search's trials (or its grid's jobs under an early-stopping
-- rule); a trial its owner resumed by hand stays one, but its rule judges it no more.
ALTER TABLE sweep_jobs ADD COLUMN trial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sweep_jobs ADD COLUMN resumed INTEGER NOT NULL DEFAULT 0;

-- Every early-stopping decision, made once and kept: a restart repeats none of them.
CREATE TABLE trial_decisions (
    sweep_id   TEXT NOT NULL REFERENCES sweeps (id),
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    epoch      INTEGER NOT NULL,                     -- the epoch the decision followed
    rule       TEXT NOT NULL,                        -- 'asha', 'median' or 'diverged'
    rung       INTEGER,                              -- ASHA's rung (0 = the first), else NULL
    value      REAL,                                 -- the metric at that epoch (NULL when not finite)
    promoted   INTEGER NOT NULL,                     -- 1: it goes on; 0: it stopped there
    reason     TEXT NOT NULL,                        -- the decision, in words
    decided_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE INDEX trial_decisions_by_rung ON trial_decisions (sweep_id, rule, epoch);
