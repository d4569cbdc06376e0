-- A sweep: one request that queued many jobs (a grid, or the assignment preset).
CREATE TABLE sweeps (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    owner_id   INTEGER NOT NULL REFERENCES users (id),
    name       TEXT,
    definition TEXT NOT NULL,                            -- the request as given (JSON)
    created_at INTEGER NOT NULL
);

-- Its jobs: the point of the grid each one is, and the report sections that show it.
CREATE TABLE sweep_jobs (
    sweep_id TEXT NOT NULL REFERENCES sweeps (id),
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    position INTEGER NOT NULL,
    point    TEXT NOT NULL,                              -- the varied settings, e.g. {"batch_size": 1}
    sections TEXT NOT NULL,                              -- JSON list of section keys (presets)
    PRIMARY KEY (sweep_id, job_id)
);
