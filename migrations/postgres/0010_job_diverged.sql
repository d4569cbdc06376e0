-- PostgreSQL twin of migrations/sqlite/0010_job_diverged.sql.
ALTER TABLE jobs ADD COLUMN diverged_at BIGINT;
UPDATE jobs SET diverged_at =
    (SELECT MIN(e.epoch) FROM epochs e WHERE e.job_id = jobs.id AND (e.metrics::jsonb ->> 'diverged') = 'true');
