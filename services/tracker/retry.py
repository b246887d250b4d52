"""Re-driving a failed video: which failures a segment retry may take, and the claim of
a new generation (row-locked: two retries, one claim)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
from fastapi.exceptions import RequestValidationError

from reel.retries import KEEPS_WORK


class Conflict(Exception):
    """The video is not in a state the request can act on (HTTP 409)."""


def check_segment_retry(row: dict[str, Any], segment: int) -> None:
    """A segment retry reuses the work that only exhausted attempts leave (any other
    failure removes it), and names a segment of the failed generation."""
    if row["error_kind"] not in KEEPS_WORK:
        raise Conflict(
            f"video {row['video_id']} failed at the {row['error_stage']}: {row['error']}; "
            "nothing of it is kept to reuse: retry it whole"
        )
    indices = sorted(s["segment_index"] for s in row["segments"] if s["track"] == "video")
    if segment not in indices:
        known = f"{indices[0]}..{indices[-1]}" if indices else "none"
        msg = f"no segment {segment}: generation {row['generation']} has video segments {known}"
        raise RequestValidationError([{"loc": ["query", "segment"], "type": "value_error", "msg": msg}])


def claim_retry(conn: psycopg.Connection, video_id: str, segment: int | None = None) -> dict[str, Any] | None:
    """If the video failed, move it to a new generation (queued, error cleared) and return
    that generation's video.requested; else None. Row-locked: two retries, one claim.
    With `segment`, the request reuses the failed generation's work and redoes that segment."""
    row = conn.execute(
        "UPDATE videos SET generation = generation + 1, state = 'queued', percent = 0, "
        "error = NULL, error_stage = NULL, error_kind = NULL, failed_at = NULL, completed_at = NULL, outputs = NULL, "
        "updated_at = now() WHERE video_id = %s AND state = 'failed' RETURNING generation",
        (video_id,),
    ).fetchone()
    if row is None:
        return None
    first = conn.execute(
        "SELECT body FROM events WHERE video_id = %s AND topic = 'video.requested' ORDER BY generation LIMIT 1",
        (video_id,),
    ).fetchone()
    if first is None:  # failed before its request was seen: nothing to re-drive from
        raise LookupError(f"no video.requested recorded for {video_id}")
    generation = int(row[0])
    return {
        **first[0],
        "generation": generation,
        "attempt": 1,
        "producer": "tracker-retry",
        "event_id": str(uuid.uuid5(uuid.UUID(video_id), f"retry/{generation}")),
        "produced_at": int(time.time() * 1000),
        "reuse_generation": None if segment is None else generation - 1,
        "redo_segments": [] if segment is None else [segment],
    }
