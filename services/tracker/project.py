"""The projection's writes: each event merged into the rows it touches.

A row is read (locked), merged with the event by the pure rules of projection.py and
written back; the batch's transaction (db.py) holds the lock until its offsets commit.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.tracker import callbacks, db
from services.tracker.db import ts
from services.tracker.projection import (
    GENERATION_COLUMNS,
    SEGMENT_DEFAULTS,
    TOPIC_STAGE,
    Beat,
    Row,
    Segment,
    all_uploaded,
    merge_beat,
    merge_segment,
    merge_video,
    percent_after,
)

VIDEO_COLUMNS = ("generation", "state", "percent", *GENERATION_COLUMNS)
SEGMENT_COLUMNS = ("stage", *SEGMENT_DEFAULTS)
SEGMENT_KEY = ("video_id", "generation", "track", "segment_index")


def record(conn: psycopg.Connection, topic: str, ev: dict[str, Any]) -> dict[str, Any] | None:
    """Log a decoded event and project it, once: the event as stored, or None if it was
    seen before. Its strings are made storable first (db.storable)."""
    ev = db.storable(ev)
    if not db.record_event(conn, topic, ev):
        return None
    apply(conn, topic, ev)
    return ev


def apply(conn: psycopg.Connection, topic: str, ev: dict[str, Any]) -> None:
    """Project one new event."""
    at = ts(ev["produced_at"])
    if topic == "video.requested":
        request = {k: ev[k] for k in ("profile", "source", "request_id", "callback_url")}
        video(conn, ev, "queued", **request, requested_at=at)
    elif topic == "video.split":
        plan = {"segment_count": len(ev["segments"]), "has_audio": ev["has_audio"], "duration": ev["duration"]}
        video(conn, ev, "transcoding", **plan, split_at=at)
        fps = ev["fps_num"] / ev["fps_den"]
        for s in ev["segments"]:
            unit = {**ev, "track": "video", "segment_index": s["index"]}
            segment(conn, unit, "planned", media_seconds=s["frame_count"] / fps)
        if ev["has_audio"]:
            audio = {**ev, "track": "audio", "segment_index": None}
            segment(conn, audio, "planned", media_seconds=ev["duration"] * ev["audio_share"])
    elif topic in TOPIC_STAGE:
        segment(conn, ev, TOPIC_STAGE[topic], attempt=ev["attempt"], worker=ev["producer"])
        if topic == "segment.uploaded":
            _maybe_stitching(conn, ev)
    elif topic == "task.progress":
        _progress(conn, ev)
    elif topic == "video.completed":
        video(conn, ev, "completed", outputs=ev["outputs"], completed_at=at)
    elif topic == "video.failed":
        why = {"error": ev["reason"], "error_stage": ev["stage"], "error_kind": ev["kind"]}
        video(conn, ev, "failed", **why, failed_at=at)
    elif topic.endswith(".dlq"):
        segment(conn, ev, "requested", error=f"dead-lettered: {ev['reason']}")
    if topic in ("video.requested", "video.completed", "video.failed"):
        callbacks.enqueue(conn, ev["video_id"])
    _refresh_percent(conn, ev)


def video(conn: psycopg.Connection, ev: dict[str, Any], state: str, **fields: Any) -> None:
    with conn.cursor(row_factory=dict_row) as cur:
        old = cur.execute(
            f"SELECT {', '.join(VIDEO_COLUMNS)} FROM videos WHERE video_id = %s FOR UPDATE", (ev["video_id"],)
        ).fetchone()
    row = merge_video(old, ev["generation"], state, fields)
    if row is not None:
        if old is None:  # whose the video is, from its first event; never changed after
            row["tenant"] = ev["tenant"]
        _write(conn, "videos", {"video_id": ev["video_id"]}, row)


def segment(conn: psycopg.Connection, ev: dict[str, Any], stage: str, **changes: Any) -> None:
    key = _segment_key(ev)
    _write(conn, "segments", key, merge_segment(_segment(conn, key), stage, **changes))


def _progress(conn: psycopg.Connection, ev: dict[str, Any]) -> None:
    if ev["stage"] == "splitter":
        video(conn, ev, "splitting")
        return
    working = None if ev["state"] in ("handed_back", "failed") else ev["stage"]
    beat = Beat(
        ev["attempt"],
        ev["worker"],
        working,
        ev["percent"],
        ev["attempt"] > 1,
        ts(ev["produced_at"]),
        ev["message"] if ev["state"] == "failed" else None,
    )
    key = _segment_key(ev)
    _write(conn, "segments", key, merge_beat(_segment(conn, key), beat))


def _segment_key(ev: dict[str, Any]) -> dict[str, Any]:
    index = -1 if ev["segment_index"] is None else int(ev["segment_index"])  # -1: the audio task
    return {"video_id": ev["video_id"], "generation": ev["generation"], "track": ev["track"], "segment_index": index}


def _segment(conn: psycopg.Connection, key: dict[str, Any]) -> Row | None:
    where = " AND ".join(f"{c} = %s" for c in SEGMENT_KEY)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {', '.join(SEGMENT_COLUMNS)} FROM segments WHERE {where} FOR UPDATE", [key[c] for c in SEGMENT_KEY]
        ).fetchone()


def _write(conn: psycopg.Connection, table: str, key: dict[str, Any], row: Row) -> None:
    """Insert or replace the row (the merge has decided every column)."""
    cols = [*key, *row]
    values = [*key.values(), *(Jsonb(v) if isinstance(v, dict | list) else v for v in row.values())]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in row)
    conn.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}, updated_at = now()",
        values,
    )


def _segments(conn: psycopg.Connection, ev: dict[str, Any]) -> tuple[str, float, list[Segment]] | None:
    """The video's state and percent, and its current generation's segments."""
    rows = conn.execute(
        "SELECT v.state, v.percent, s.stage, s.media_seconds, s.working, s.work_percent FROM segments s JOIN videos v "
        "ON v.video_id = s.video_id AND v.generation = s.generation WHERE s.video_id = %s",
        (ev["video_id"],),
    ).fetchall()
    if not rows:
        return None
    return rows[0][0], float(rows[0][1]), [Segment(st, float(ms), w, float(wp)) for _, _, st, ms, w, wp in rows]


def _maybe_stitching(conn: psycopg.Connection, ev: dict[str, Any]) -> None:
    row = conn.execute("SELECT segment_count, has_audio FROM videos WHERE video_id = %s", (ev["video_id"],)).fetchone()
    found = _segments(conn, ev)
    if row and row[0] is not None and found and all_uploaded(found[2], row[0] + (1 if row[1] else 0)):
        video(conn, ev, "stitching")


def _refresh_percent(conn: psycopg.Connection, ev: dict[str, Any]) -> None:
    found = _segments(conn, ev)
    if found is None:
        return
    state, percent, segs = found
    after = percent_after(state, percent, segs)
    if after != percent:
        conn.execute("UPDATE videos SET percent = %s WHERE video_id = %s", (after, ev["video_id"]))
