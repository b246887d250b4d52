"""The tracker's Postgres: its migrations, the event log and the consumer offsets.

This is what makes the projection exactly once: a batch's rows, its events in the log
(`event_id` is unique, so an event seen again changes nothing) and the offsets it covers
are written in one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(4242)")  # one migrator at a time
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
        )
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


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def storable(value: Any) -> Any:
    """The event as Postgres can hold it: text and jsonb take no NUL, which only a broken
    or hostile producer writes (the workers refuse such keys); each becomes U+FFFD, so one
    event cannot stop the projection."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def record_event(conn: psycopg.Connection, topic: str, ev: dict[str, Any]) -> bool:
    """Append to the event log; False if this event_id was seen before."""
    body = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in ev.items()}
    cur = conn.execute(
        "INSERT INTO events (event_id, topic, video_id, generation, track, segment_index, attempt, "
        "produced_at, producer, body) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (event_id) DO NOTHING",
        (
            ev["event_id"],
            topic,
            ev["video_id"],
            ev["generation"],
            ev["track"],
            ev["segment_index"],
            ev["attempt"],
            ts(ev["produced_at"]),
            ev["producer"],
            Jsonb(body),
        ),
    )
    return cur.rowcount == 1
