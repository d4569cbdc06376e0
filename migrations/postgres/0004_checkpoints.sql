-- PostgreSQL twin of migrations/sqlite/0004_checkpoints.sql.
CREATE TABLE checkpoints (
    job_id     TEXT PRIMARY KEY REFERENCES jobs (id),
    epoch      BIGINT NOT NULL,
    data       BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
