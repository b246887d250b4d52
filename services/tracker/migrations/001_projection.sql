-- The tracker's projection of every event, with its consumer offsets in the same database
-- (written in the same transaction), so a replay or a restart changes nothing.

CREATE TABLE IF NOT EXISTS events (
    event_id      uuid PRIMARY KEY,            -- unique: a replayed event is ignored
    topic         text        NOT NULL,
    video_id      text        NOT NULL,
    generation    int         NOT NULL,
    track         text        NOT NULL,
    segment_index int,
    attempt       int         NOT NULL,
    produced_at   timestamptz NOT NULL,
    producer      text        NOT NULL,
    body          jsonb       NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_video ON events (video_id, produced_at);

CREATE TABLE IF NOT EXISTS videos (
    video_id      text PRIMARY KEY,
    generation    int         NOT NULL DEFAULT 0,
    state         text        NOT NULL,
    state_rank    int         NOT NULL,
    percent       real        NOT NULL DEFAULT 0,
    profile       text,
    source        jsonb,
    request_id    text,
    callback_url  text,
    segment_count int,
    has_audio     boolean,
    duration      double precision,
    outputs       jsonb,
    error         text,
    error_stage   text,
    requested_at  timestamptz,
    split_at      timestamptz,
    completed_at  timestamptz,
    failed_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS videos_state ON videos (state, updated_at DESC);

CREATE TABLE IF NOT EXISTS segments (
    video_id      text        NOT NULL,
    generation    int         NOT NULL,
    track         text        NOT NULL,
    segment_index int         NOT NULL,       -- -1 for the audio task
    stage         text        NOT NULL,       -- requested | pulled | transcoded | uploaded
    stage_rank    int         NOT NULL,
    attempt       int         NOT NULL DEFAULT 1,
    worker        text,
    working       text,                       -- the stage a worker is on now (from heartbeats)
    work_percent  real        NOT NULL DEFAULT 0,
    media_seconds double precision NOT NULL DEFAULT 0,
    retrying      boolean     NOT NULL DEFAULT false,
    last_beat     timestamptz,
    error         text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, generation, track, segment_index)
);

CREATE TABLE IF NOT EXISTS consumer_offsets (
    topic         text NOT NULL,
    partition     int  NOT NULL,
    next_offset   bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now());
