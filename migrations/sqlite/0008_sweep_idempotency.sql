-- A sweep's Idempotency-Key (as a job's): a retried POST /sweeps gets the same sweep back.
ALTER TABLE sweeps ADD COLUMN idempotency_key TEXT;
ALTER TABLE sweeps ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX sweeps_idempotency ON sweeps (owner_id, idempotency_key);
