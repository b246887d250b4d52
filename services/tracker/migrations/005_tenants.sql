-- Whose each video is. Rows from before tenants belong to the default tenant, as their
-- events read (an event without a tenant decodes as `default`).
ALTER TABLE videos ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
CREATE INDEX IF NOT EXISTS videos_tenant ON videos (tenant, updated_at DESC, video_id DESC);
