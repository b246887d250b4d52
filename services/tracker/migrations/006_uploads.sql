-- The front door's uploads: what each tenant's POST /videos asked for, the multipart
-- upload its parts go to, and when it was started (video.requested produced).
CREATE TABLE IF NOT EXISTS uploads (
    video_id    text PRIMARY KEY,
    tenant      text        NOT NULL,
    request     jsonb       NOT NULL,
    upload_id   text,                   -- NULL: the tenant had already stored this source
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz
);
