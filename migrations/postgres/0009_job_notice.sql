-- PostgreSQL twin of migrations/sqlite/0009_job_notice.sql.
ALTER TABLE jobs ADD COLUMN notice TEXT;
