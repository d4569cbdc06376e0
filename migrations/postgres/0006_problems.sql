-- What keeps the box from training, for its own reasons (its data missing or corrupt, a
-- fetch that failed): shown by GET /readyz and GET /queue while it lasts. Jobs wait queued
-- meanwhile instead of failing; a worker that trains again clears the problem.
CREATE TABLE problems (
    key     TEXT NOT NULL PRIMARY KEY,   -- what is wrong, e.g. 'data'
    message TEXT NOT NULL,
    since   BIGINT NOT NULL
);
