-- Why a video failed, as data (reel.task.Kind; 'unknown' for events written before kinds):
-- the failure metric, the status and the segment-retry check read it, not the reason's text.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS error_kind text;
