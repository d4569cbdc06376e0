-- The first epoch whose loss was not finite: the job diverged (its status may still be
-- `succeeded`). Set when that epoch is recorded; filled in here for jobs recorded before.
ALTER TABLE jobs ADD COLUMN diverged_at INTEGER;
UPDATE jobs SET diverged_at =
    (SELECT MIN(e.epoch) FROM epochs e WHERE e.job_id = jobs.id AND json_extract(e.metrics, '$.diverged') = 1);
