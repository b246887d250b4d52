"""Benchmark: how fast the tracker projects events into Postgres.

One real video runs through the pipeline on the embedded stack (`reel up`); its events
(progress beats included) are cloned into 1,000 videos' worth, each clone with its own
video id and event ids, interleaved in time order, encoded as on the wire. The tracker's
own projection (decode, event log, rows, offsets; one transaction per batch) then takes
them into a fresh database, batch after batch. Kafka's fetch is not in the timing: it
is not what bounds the tracker.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from bench.pipeline import events_of
from devstack.clips import synthetic
from reel.contract import Registry
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from services.tracker import db
from services.tracker.consume import Projector, Record

VIDEOS = 1000
CLONE_NS = uuid.UUID("0c6f7f0e-2b55-4a43-8d7b-6c1b0f3f4a10")


def one_real_run(settings: Settings, work: Path) -> list[tuple[str, dict[str, Any]]]:
    clip = work / "projection-clip.mp4"
    if not clip.exists():
        synthetic(clip, size="640x360", seconds=30)
    sub = submit(settings, Storage.from_settings(settings), clip, "tiny", request_id=str(uuid.uuid4()))
    end = wait(settings, sub.video_id, sub.submitted_ms, timeout=600)
    assert end["topic"] == "video.completed", end
    by_topic = events_of(settings, sub.video_id, sub.submitted_ms)
    return [(topic, e) for topic, events in by_topic.items() for e in events]


def clones(events: list[tuple[str, dict[str, Any]]], n: int) -> list[Record]:
    """n copies of one video's events, as records on the wire, interleaved in time order."""
    registry = Registry()
    t0 = min(e["produced_at"] for _, e in events)
    rows = []
    for i in range(n):
        vid = str(uuid.uuid5(CLONE_NS, str(i)))
        for topic, e in events:
            clone = {
                **e,
                "video_id": vid,
                "event_id": str(uuid.uuid5(CLONE_NS, f"{i}/{e['event_id']}")),
                "produced_at": e["produced_at"] + i * 37,
            }
            rows.append((clone["produced_at"] - t0, topic, registry.encode_for_topic(topic, clone)))
    rows.sort(key=lambda r: r[0])
    return [Record(topic, 0, offset, value) for offset, (_, topic, value) in enumerate(rows)]


def project_all(settings: Settings, records: list[Record]) -> dict[str, Any]:
    name = f"bench_projection_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        projector = Projector(replace(settings, database_url=url), threading.Event())
        batch = settings.tracker_batch
        times = []
        with psycopg.connect(url, autocommit=True) as conn:
            db.migrate(conn)
            t0 = time.monotonic()
            for start in range(0, len(records), batch):
                b0 = time.monotonic()
                projector.project(conn, records[start : start + batch])
                times.append(time.monotonic() - b0)
            wall = time.monotonic() - t0
            videos = conn.execute("SELECT count(*) FROM videos WHERE state = 'completed'").fetchone()
        assert projector.projected == len(records) and videos and videos[0] == VIDEOS
        times.sort()
        return {
            "events": len(records),
            "videos": VIDEOS,
            "batch": batch,
            "seconds": round(wall, 2),
            "events_per_s": round(len(records) / wall),
            "batch_ms_p50": round(1000 * statistics.median(times), 1),
            "batch_ms_p95": round(1000 * times[int(0.95 * (len(times) - 1))], 1),
        }
    finally:
        with psycopg.connect(settings.postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main(settings: Settings, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    events = one_real_run(settings, work)
    result = project_all(settings, clones(events, VIDEOS))
    result["events_per_video"] = len(events)
    return result


def report(result: dict[str, Any]) -> str:
    return (
        f"projected {result['events']} events of {result['videos']} videos "
        f"({result['events_per_video']} each) in {result['seconds']} s: "
        f"{result['events_per_s']} events/s; batch of {result['batch']}: "
        f"p50 {result['batch_ms_p50']} ms, p95 {result['batch_ms_p95']} ms"
    )
