-- PostgreSQL twin of migrations/sqlite/0011_searches.sql.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'stopped_early'));

ALTER TABLE sweep_jobs ADD COLUMN trial BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sweep_jobs ADD COLUMN resumed BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE trial_decisions (
    sweep_id   TEXT NOT NULL REFERENCES sweeps (id),
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    epoch      BIGINT NOT NULL,
    rule       TEXT NOT NULL,
    rung       BIGINT,
    value      DOUBLE PRECISION,
    promoted   BOOLEAN NOT NULL,
    reason     TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE INDEX trial_decisions_by_rung ON trial_decisions (sweep_id, rule, epoch);
