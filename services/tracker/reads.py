"""What the status endpoint and the metrics read from the projection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services.tracker.db import ts
from services.tracker.projection import FINISHED, SEGMENT_STAGES, STAGE_OF_EVENT, VIDEO_STATES, backlog


def video(conn: psycopg.Connection, video_id: str, tenant: str | None) -> dict[str, Any] | None:
    """The video with its segments and callbacks; None if unknown or another tenant's (the
    same query either way). tenant None: whoever's it is (a signed link's request)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM videos WHERE video_id = %s AND tenant = coalesce(%s, tenant)", (video_id, tenant)
        ).fetchone()
        if row is None:
            return None
        # A unit's hand-backs: its heartbeats that said handed_back (the audio task is -1 here, null there).
        segs = cur.execute(
            "SELECT track, segment_index, stage, attempt, worker, working, work_percent, media_seconds, "
            "retrying, last_beat, error, updated_at, (SELECT count(*) FROM events e WHERE e.video_id = s.video_id "
            "AND e.generation = s.generation AND e.topic = 'task.progress' AND e.track = s.track "
            "AND coalesce(e.segment_index, -1) = s.segment_index AND e.body->>'state' = 'handed_back') AS handbacks "
            "FROM segments s WHERE video_id = %s AND generation = %s ORDER BY track DESC, segment_index",
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
        return cur.execute(
            "SELECT tenant, generation, state, duration, outputs FROM videos WHERE video_id = %s", (video_id,)
        ).fetchone()


def videos(
    conn: psycopg.Connection, tenant: str, state: str | None, limit: int, before: tuple[datetime, str] | None
) -> list[dict]:
    sql = "SELECT video_id, generation, state, percent, profile, error, updated_at FROM videos WHERE tenant = %s"
    args: list[Any] = [tenant]
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
    """Videos by state, segments of unfinished videos by stage, and each worker group's
    backlog (projection.backlog)."""
    # Every state and stage, at 0 when none is in it: a gauge not set again keeps its last value.
    by_state = dict.fromkeys(VIDEO_STATES, 0) | dict(conn.execute("SELECT state, count(*) FROM videos GROUP BY state"))
    unfinished = (
        "FROM segments s JOIN videos v USING (video_id) "
        "WHERE v.generation = s.generation AND v.state <> ALL(%s) GROUP BY 1"
    )
    finished = (list(FINISHED),)
    by_stage = dict.fromkeys(SEGMENT_STAGES, 0) | dict(conn.execute(f"SELECT s.stage, count(*) {unfinished}", finished))
    units = conn.execute(f"SELECT s.stage, sum(s.media_seconds) {unfinished}", finished).fetchall()
    stitching = conn.execute("SELECT coalesce(sum(duration), 0) FROM videos WHERE state = 'stitching'").fetchone()
    work = backlog([(stage, float(seconds or 0)) for stage, seconds in units], float(stitching[0] if stitching else 0))
    return {"videos": by_state, "segments": by_stage, "backlog": work}


def unfinished_ages(conn: psycopg.Connection) -> list[tuple[str, float, float | None]]:
    """(state, age in seconds, length) of every unfinished video, its age counted from its
    generation's first event (a retried video starts again)."""
    rows = conn.execute(
        "SELECT v.state, extract(epoch FROM now() - min(e.produced_at)), v.duration "
        "FROM videos v JOIN events e ON e.video_id = v.video_id AND e.generation = v.generation "
        "WHERE v.state <> ALL(%s) GROUP BY v.video_id, v.state, v.duration",
        (list(FINISHED),),
    ).fetchall()
    return [(state, max(0.0, float(age)), duration) for state, age, duration in rows]


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
    return stage, max(0.0, (ts(ev["produced_at"]) - row[0]).total_seconds())


def duration(conn: psycopg.Connection, video_id: str) -> float:
    """The video's length in seconds (0 while unknown)."""
    row = conn.execute("SELECT duration FROM videos WHERE video_id = %s", (video_id,)).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def video_seconds(conn: psycopg.Connection, ev: dict[str, Any]) -> float | None:
    row = conn.execute("SELECT requested_at FROM videos WHERE video_id = %s", (ev["video_id"],)).fetchone()
    if row is None or row[0] is None:
        return None
    return max(0.0, (ts(ev["produced_at"]) - row[0]).total_seconds())
