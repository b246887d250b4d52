-- States are named, and their order lives in one place (services/tracker/projection.py):
-- the rank columns that let SQL compare them are gone.
ALTER TABLE videos DROP COLUMN IF EXISTS state_rank;
ALTER TABLE segments DROP COLUMN IF EXISTS stage_rank;
