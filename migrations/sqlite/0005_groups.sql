-- Fused groups: queued jobs with the same group key (architecture, batch size, train_limit,
-- dataset: Spec::group_key) may train as one group on one worker.
ALTER TABLE jobs ADD COLUMN group_key TEXT;  -- NULL for jobs queued before groups: they train alone
ALTER TABLE jobs ADD COLUMN group_id TEXT;   -- the group it trains or last trained in
CREATE INDEX jobs_by_group_key ON jobs (status, group_key);
CREATE INDEX jobs_by_group ON jobs (group_id);
