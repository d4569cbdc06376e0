-- What happened to each job, in order: the log the event streams (GET /jobs/{id}/events,
-- GET /events) read, whichever process made the change. `seq` is the events' id, so a
-- client that reconnects with Last-Event-ID gets exactly what it missed.
CREATE TABLE events (
    seq      BIGSERIAL PRIMARY KEY,
    job_id   TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    kind     TEXT NOT NULL,          -- 'status' (data: the new status) or 'epoch' (data: the row)
    data     TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, seq);
CREATE INDEX events_by_owner ON events (owner_id, seq);

-- Where a running job is inside its epoch (job::Progress as JSON), carried on the heartbeat.
ALTER TABLE jobs ADD COLUMN progress TEXT;
