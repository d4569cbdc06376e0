-- PostgreSQL twin of migrations/sqlite/0008_sweep_idempotency.sql.
ALTER TABLE sweeps ADD COLUMN idempotency_key TEXT;
ALTER TABLE sweeps ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX sweeps_idempotency ON sweeps (owner_id, idempotency_key);
