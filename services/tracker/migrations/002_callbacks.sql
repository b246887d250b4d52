-- Callbacks: an outbox written in the same transaction as the terminal state it reports,
-- so a crash between "completed" and "POSTed" loses nothing; delivered at least once,
-- with an idempotency key the receiver drops repeats by.

CREATE TABLE IF NOT EXISTS callbacks (
    idempotency_key text PRIMARY KEY,           -- video_id/generation/outcome
    video_id        text        NOT NULL,
    generation      int         NOT NULL,
    outcome         text        NOT NULL,       -- completed | failed
    url             text        NOT NULL,
    body            jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending',  -- pending | delivered | abandoned
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS callbacks_video ON callbacks (video_id);

CREATE TABLE IF NOT EXISTS callback_attempts (
    idempotency_key text        NOT NULL REFERENCES callbacks ON DELETE CASCADE,
    attempt         int         NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    status          int,                         -- the receiver's HTTP status; null: no answer
    error           text,
    PRIMARY KEY (idempotency_key, attempt)
);
