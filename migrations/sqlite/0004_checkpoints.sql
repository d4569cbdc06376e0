-- Each job's latest checkpoint (safetensors: weights, momentum, epoch, metrics so far),
-- in the database so that a worker on any machine can resume the job. Written fenced on
-- the job's attempt, after the epoch's metrics row.
CREATE TABLE checkpoints (
    job_id     TEXT PRIMARY KEY REFERENCES jobs (id),
    epoch      INTEGER NOT NULL,
    data       BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
