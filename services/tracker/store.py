"""The tracker's Postgres: migrations, the projection's writes, and the status reads.

Every write of a batch happens in one transaction with the consumer offsets it covers;
`events.event_id` is unique, so an event seen twice changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.tracker import callbacks
from services.tracker.projection import (
    AUDIO_WEIGHT,
    SEGMENT_RANK,
    STAGE_OF_EVENT,
    TOPIC_STAGE,
    VIDEO_RANK,
    Segment,
    all_uploaded,
    settled_percent,
    video_percent,
)

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(4242)")  # one migrator at a time
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                     "applied_at timestamptz DEFAULT now())")  # fmt: skip
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name not in done:
                conn.execute(path.read_text())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))


def offsets(conn: psycopg.Connection) -> dict[tuple[str, int], int]:
    rows = conn.execute("SELECT topic, partition, next_offset FROM consumer_offsets")
    return {(t, p): o for t, p, o in rows}


def save_offsets(conn: psycopg.Connection, positions: dict[tuple[str, int], int]) -> None:
    conn.cursor().executemany(
        "INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES (%s, %s, %s) "
        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
        [(t, p, o) for (t, p), o in positions.items()],
    )


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def record_event(conn: psycopg.Connection, topic: str, ev: dict[str, Any]) -> bool:
    """Append to the event log; False if this event_id was seen before."""
    body = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in ev.items()}
    cur = conn.execute(
        "INSERT INTO events (event_id, topic, video_id, generation, track, segment_index, attempt, "
        "produced_at, producer, body) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (event_id) DO NOTHING",
        (ev["event_id"], topic, ev["video_id"], ev["generation"], ev["track"], ev["segment_index"],
         ev["attempt"], _ts(ev["produced_at"]), ev["producer"], Jsonb(body)),
    )  # fmt: skip
    return cur.rowcount == 1


# What one generation of a video records (the rest is the video's own).
GENERATION_COLUMNS = (
    "profile", "source", "request_id", "callback_url", "segment_count", "has_audio", "duration",
    "outputs", "error", "error_stage", "error_kind", "requested_at", "split_at", "completed_at", "failed_at",
)  # fmt: skip


def upsert_video(conn: psycopg.Connection, ev: dict[str, Any], state: str, **fields: Any) -> None:
    """State moves only up its rank (a newer generation starts over); fields fill in."""
    cols = ["video_id", "generation", "state", "state_rank", *fields]
    values = [ev["video_id"], ev["generation"], state, VIDEO_RANK[state],
              *[Jsonb(v) if isinstance(v, dict | list) else v for v in fields.values()]]  # fmt: skip
    # A newer generation starts over: what the older one left (error, outputs, times) is not
    # kept, whichever order the generations' events arrive in; columns this event does not
    # set are cleared too, as an older generation's failure may have come first.
    updates = ", ".join(
        f"{c} = CASE WHEN EXCLUDED.generation > videos.generation THEN EXCLUDED.{c} "
        f"ELSE COALESCE(EXCLUDED.{c}, videos.{c}) END"
        for c in fields
    )
    cleared = ", ".join(
        f"{c} = CASE WHEN EXCLUDED.generation > videos.generation THEN NULL ELSE videos.{c} END"
        for c in GENERATION_COLUMNS if c not in fields
    )  # fmt: skip
    updates = ", ".join(u for u in (updates, cleared) if u)
    conn.execute(
        f"INSERT INTO videos ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        "ON CONFLICT (video_id) DO UPDATE SET "
        "state = CASE WHEN EXCLUDED.generation > videos.generation "
        "  OR EXCLUDED.state_rank > videos.state_rank THEN EXCLUDED.state ELSE videos.state END, "
        "state_rank = CASE WHEN EXCLUDED.generation > videos.generation THEN EXCLUDED.state_rank "
        "  ELSE GREATEST(videos.state_rank, EXCLUDED.state_rank) END, "
        "percent = CASE WHEN EXCLUDED.generation > videos.generation THEN 0 ELSE videos.percent END, "
        "generation = GREATEST(videos.generation, EXCLUDED.generation), updated_at = now()"
        + (f", {updates}" if updates else "")
        + " WHERE EXCLUDED.generation >= videos.generation",
        values,
    )


def upsert_segment(conn: psycopg.Connection, ev: dict[str, Any], stage: str, index: int, **fields: Any) -> None:
    cols = ["video_id", "generation", "track", "segment_index", "stage", "stage_rank", *fields]
    values = [
        ev["video_id"],
        ev["generation"],
        ev["track"],
        index,
        stage,
        SEGMENT_RANK[stage],
        *fields.values(),
    ]
    updates = "".join(f", {c} = COALESCE(EXCLUDED.{c}, segments.{c})" for c in fields if c not in ("attempt", "worker"))
    if "worker" in fields:  # the worker of the furthest stage, whatever the order of arrival
        updates += (", worker = CASE WHEN EXCLUDED.stage_rank >= segments.stage_rank "
                    "THEN EXCLUDED.worker ELSE segments.worker END")  # fmt: skip
    conn.execute(
        f"INSERT INTO segments ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        "ON CONFLICT (video_id, generation, track, segment_index) DO UPDATE SET "
        "stage = CASE WHEN EXCLUDED.stage_rank > segments.stage_rank THEN EXCLUDED.stage ELSE segments.stage END, "
        "stage_rank = GREATEST(segments.stage_rank, EXCLUDED.stage_rank), updated_at = now()"
        + (", attempt = GREATEST(segments.attempt, EXCLUDED.attempt)" if "attempt" in fields else "")
        + updates,
        values,
    )


def segment_index(ev: dict[str, Any]) -> int:
    return -1 if ev["segment_index"] is None else int(ev["segment_index"])


def apply(conn: psycopg.Connection, topic: str, ev: dict[str, Any]) -> None:
    """Project one new event."""
    if topic == "video.requested":
        upsert_video(conn, ev, "queued", profile=ev["profile"], source=ev["source"],
                     request_id=ev["request_id"], callback_url=ev["callback_url"],
                     requested_at=_ts(ev["produced_at"]))  # fmt: skip
    elif topic == "video.split":
        seconds = ev["duration"]
        upsert_video(conn, ev, "transcoding", segment_count=len(ev["segments"]), has_audio=ev["has_audio"],
                     duration=seconds, split_at=_ts(ev["produced_at"]))  # fmt: skip
        fps = ev["fps_num"] / ev["fps_den"]
        for s in ev["segments"]:
            plan = {**ev, "track": "video"}
            upsert_segment(conn, plan, "planned", s["index"], media_seconds=s["frame_count"] / fps)
        if ev["has_audio"]:
            upsert_segment(conn, {**ev, "track": "audio"}, "planned", -1, media_seconds=seconds * AUDIO_WEIGHT)
    elif topic in TOPIC_STAGE:
        upsert_segment(conn, ev, TOPIC_STAGE[topic], segment_index(ev), attempt=ev["attempt"],
                       worker=ev["producer"])  # fmt: skip
        if topic == "segment.uploaded":
            _maybe_stitching(conn, ev)
    elif topic == "task.progress":
        _progress(conn, ev)
    elif topic == "video.completed":
        upsert_video(conn, ev, "completed", outputs=ev["outputs"], completed_at=_ts(ev["produced_at"]))
        conn.execute("UPDATE videos SET percent = 100 WHERE video_id = %s", (ev["video_id"],))
    elif topic == "video.failed":
        upsert_video(conn, ev, "failed", error=ev["reason"], error_stage=ev["stage"], error_kind=ev["kind"],
                     failed_at=_ts(ev["produced_at"]))  # fmt: skip
    elif topic.endswith(".dlq"):
        upsert_segment(conn, ev, "requested", segment_index(ev), error=f"dead-lettered: {ev['reason']}")
    if topic in ("video.requested", "video.completed", "video.failed"):
        callbacks.enqueue(conn, ev["video_id"])
    _refresh_percent(conn, ev)


def _progress(conn: psycopg.Connection, ev: dict[str, Any]) -> None:
    if ev["stage"] == "splitter":
        upsert_video(conn, ev, "splitting")
        return
    working = None if ev["state"] in ("handed_back", "failed") else ev["stage"]
    conn.execute(
        "INSERT INTO segments (video_id, generation, track, segment_index, stage, stage_rank, attempt, worker, "
        "working, work_percent, retrying, last_beat, error) VALUES (%s,%s,%s,%s,'planned',0,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (video_id, generation, track, segment_index) DO UPDATE SET "
        "attempt = GREATEST(segments.attempt, EXCLUDED.attempt), "
        "working = CASE WHEN EXCLUDED.last_beat >= segments.last_beat OR segments.last_beat IS NULL "
        "  THEN EXCLUDED.working ELSE segments.working END, "
        "work_percent = CASE WHEN EXCLUDED.last_beat >= segments.last_beat OR segments.last_beat IS NULL "
        "  THEN EXCLUDED.work_percent ELSE segments.work_percent END, "
        "retrying = segments.retrying OR EXCLUDED.retrying, last_beat = GREATEST(segments.last_beat, "
        "EXCLUDED.last_beat), error = COALESCE(EXCLUDED.error, segments.error), updated_at = now()",
        (ev["video_id"], ev["generation"], ev["track"], segment_index(ev), ev["attempt"], ev["worker"], working,
         ev["percent"], ev["attempt"] > 1, _ts(ev["produced_at"]),
         ev["message"] if ev["state"] == "failed" else None),
    )  # fmt: skip


def _segments(conn: psycopg.Connection, ev: dict[str, Any]) -> list[Segment]:
    rows = conn.execute(
        "SELECT s.stage, s.media_seconds, s.working, s.work_percent FROM segments s JOIN videos v "
        "ON v.video_id = s.video_id AND v.generation = s.generation WHERE s.video_id = %s",
        (ev["video_id"],),
    )
    return [Segment(stage, float(ms), working, float(wp)) for stage, ms, working, wp in rows]


def _maybe_stitching(conn: psycopg.Connection, ev: dict[str, Any]) -> None:
    row = conn.execute("SELECT segment_count, has_audio FROM videos WHERE video_id = %s", (ev["video_id"],)).fetchone()
    if row and row[0] is not None and all_uploaded(_segments(conn, ev), row[0] + (1 if row[1] else 0)):
        upsert_video(conn, ev, "stitching")


def _refresh_percent(conn: psycopg.Connection, ev: dict[str, Any]) -> None:
    """Percent never goes back while a video is in flight; once it failed, it is what its
    segments finished (so a replay in any order gives the same number)."""
    segs = _segments(conn, ev)
    if segs:
        conn.execute("UPDATE videos SET percent = CASE WHEN state = 'failed' THEN %s ELSE GREATEST(percent, %s) END "
                     "WHERE video_id = %s AND state <> 'completed'",
                     (settled_percent(segs), min(99.0, video_percent(segs)), ev["video_id"]))  # fmt: skip


def stage_seconds(conn: psycopg.Connection, topic: str, ev: dict[str, Any]) -> tuple[str, float] | None:
    """(stage, seconds) from the event before this one (STAGE_OF_EVENT), if it arrived."""
    if topic not in STAGE_OF_EVENT:
        return None
    stage, before = STAGE_OF_EVENT[topic]
    sql = "SELECT max(produced_at) FROM events WHERE video_id = %s AND generation = %s AND topic = %s"
    args: list[Any] = [ev["video_id"], ev["generation"], before]
    if topic.startswith("segment."):
        sql += " AND track = %s AND segment_index IS NOT DISTINCT FROM %s"
        args += [ev["track"], ev["segment_index"]]
    row = conn.execute(sql, args).fetchone()
    if row is None or row[0] is None:
        return None
    return stage, max(0.0, (_ts(ev["produced_at"]) - row[0]).total_seconds())


def video_seconds(conn: psycopg.Connection, ev: dict[str, Any]) -> float | None:
    row = conn.execute("SELECT requested_at FROM videos WHERE video_id = %s", (ev["video_id"],)).fetchone()
    if row is None or row[0] is None:
        return None
    return max(0.0, (_ts(ev["produced_at"]) - row[0]).total_seconds())


def claim_retry(conn: psycopg.Connection, video_id: str, segment: int | None = None) -> dict[str, Any] | None:
    """If the video failed, move it to a new generation (queued, error cleared) and return
    that generation's video.requested; else None. Row-locked: two retries, one claim.
    With `segment`, the request reuses the failed generation's work and redoes that segment."""
    row = conn.execute(
        "UPDATE videos SET generation = generation + 1, state = 'queued', state_rank = %s, percent = 0, "
        "error = NULL, error_stage = NULL, error_kind = NULL, failed_at = NULL, completed_at = NULL, outputs = NULL, "
        "updated_at = now() WHERE video_id = %s AND state = 'failed' RETURNING generation",
        (VIDEO_RANK["queued"], video_id),
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
    return {**first[0], "generation": generation, "attempt": 1, "producer": "tracker-retry",
            "event_id": str(uuid.uuid5(uuid.UUID(video_id), f"retry/{generation}")),
            "produced_at": int(time.time() * 1000),
            "reuse_generation": None if segment is None else generation - 1,
            "redo_segments": [] if segment is None else [segment]}  # fmt: skip


# -- reads ---------------------------------------------------------------------------
def video(conn: psycopg.Connection, video_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM videos WHERE video_id = %s", (video_id,)).fetchone()
        if row is None:
            return None
        segs = cur.execute(
            "SELECT track, segment_index, stage, attempt, worker, working, work_percent, media_seconds, "
            "retrying, last_beat, error, updated_at FROM segments WHERE video_id = %s AND generation = %s "
            "ORDER BY track DESC, segment_index",
            (video_id, row["generation"]),
        ).fetchall()
        row["callbacks"] = cur.execute(
            "SELECT c.outcome, c.url, c.state, c.attempts, c.last_error, c.delivered_at, c.next_attempt_at, "
            "COALESCE(json_agg(json_build_object('attempt', a.attempt, 'at', a.at, 'status', a.status, "
            "'error', a.error) ORDER BY a.attempt) FILTER (WHERE a.attempt IS NOT NULL), '[]') AS tries "
            "FROM callbacks c LEFT JOIN callback_attempts a USING (idempotency_key) "
            "WHERE c.video_id = %s GROUP BY c.idempotency_key ORDER BY c.created_at",
            (video_id,),
        ).fetchall()
    row["segments"] = segs
    return row


def playable(conn: psycopg.Connection, video_id: str) -> dict[str, Any] | None:
    """What the playback routes need: generation, state, duration, outputs."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT generation, state, duration, outputs FROM videos WHERE video_id = %s",
                           (video_id,)).fetchone()  # fmt: skip


def videos(conn: psycopg.Connection, state: str | None, limit: int, before: tuple[datetime, str] | None) -> list[dict]:
    sql = "SELECT video_id, generation, state, percent, profile, error, updated_at FROM videos WHERE true"
    args: list[Any] = []
    if state:
        sql += " AND state = %s"
        args.append(state)
    if before:
        sql += " AND (updated_at, video_id) < (%s, %s)"
        args += list(before)
    sql += " ORDER BY updated_at DESC, video_id DESC LIMIT %s"
    args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, args).fetchall()


def counts(conn: psycopg.Connection) -> dict[str, Any]:
    by_state: dict[str, int] = dict(conn.execute("SELECT state, count(*) FROM videos GROUP BY state").fetchall())
    by_stage: dict[str, int] = dict(conn.execute(
        "SELECT s.stage, count(*) FROM segments s JOIN videos v USING (video_id) "
        "WHERE v.generation = s.generation AND v.state_rank < 4 GROUP BY s.stage").fetchall())  # fmt: skip
    backlog: dict[str, float] = dict(conn.execute(
        "SELECT s.stage, sum(s.media_seconds) FROM segments s JOIN videos v USING (video_id) "
        "WHERE v.generation = s.generation AND v.state_rank < 4 GROUP BY s.stage").fetchall())  # fmt: skip
    return {"videos": by_state, "segments": by_stage, "backlog_seconds": backlog}


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
