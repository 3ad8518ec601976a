-- 0005 jobs (SQLite): the durable job queue, periodic schedules
-- (docs/internals/jobs.md). *_ms columns are milliseconds since the epoch.

-- One row per job. state: available (waiting for run_at_ms), running
-- (leased by `worker` until lease_until_ms), retryable (failed, waiting for
-- run_at_ms), completed, dead (the dead-letter queue), cancelled.
-- order_key: jobs with the same key run one at a time, in seq order.
-- errors: a JSON array of {"attempt", "at", "error"}, one per failed attempt.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('available', 'running', 'retryable',
                                                   'completed', 'dead', 'cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at_ms        INTEGER NOT NULL,
    lease_until_ms   INTEGER,
    worker           TEXT,
    unique_key       TEXT,
    order_key        TEXT,
    traceparent      TEXT,
    errors           TEXT NOT NULL DEFAULT '[]',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    attempted_ms     INTEGER,
    finished_ms      INTEGER
) STRICT;
CREATE INDEX jobs_ready ON jobs (queue, priority, run_at_ms, seq)
    WHERE state IN ('available', 'retryable');
CREATE INDEX jobs_leases ON jobs (lease_until_ms) WHERE state = 'running';
CREATE INDEX jobs_ordered ON jobs (order_key, seq)
    WHERE order_key IS NOT NULL AND state IN ('available', 'running', 'retryable');
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable');
CREATE INDEX jobs_finished ON jobs (state, finished_ms)
    WHERE state IN ('completed', 'dead', 'cancelled');

-- Periodic jobs: the next time each is due. The process whose UPDATE moves
-- next_ms on is the one that enqueues the period's run.
CREATE TABLE job_periodic (
    name    TEXT PRIMARY KEY,
    next_ms INTEGER NOT NULL
) STRICT;
