-- 0005 jobs (PostgreSQL): the durable job queue, periodic schedules and the
-- outbox relay's progress (docs/internals/jobs.md). *_ms columns are
-- milliseconds since the epoch.

-- One row per job. state: available (waiting for run_at_ms), running
-- (leased by `worker` until lease_until_ms), retryable (failed, waiting for
-- run_at_ms), completed, dead (the dead-letter queue), cancelled.
-- order_key: jobs with the same key run one at a time, in seq order.
-- errors: a JSON array of {"attempt", "at", "error"}, one per failed attempt.
CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               uuid NOT NULL UNIQUE,
    queue            text NOT NULL,
    kind             text NOT NULL,
    payload          text NOT NULL,
    state            text NOT NULL CHECK (state IN ('available', 'running', 'retryable',
                                                   'completed', 'dead', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    run_at_ms        bigint NOT NULL,
    lease_until_ms   bigint,
    worker           text,
    unique_key       text,
    order_key        text,
    traceparent      text,
    errors           jsonb NOT NULL DEFAULT '[]',
    cancel_requested boolean NOT NULL DEFAULT false,
    created_ms       bigint NOT NULL,
    attempted_ms     bigint,
    finished_ms      bigint
);
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
    name    text PRIMARY KEY,
    next_ms bigint NOT NULL
);
