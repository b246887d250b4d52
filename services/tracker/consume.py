"""The tracker's consumer: every topic, read_committed, projected into Postgres with
its offsets in the same transaction (offsets live in Postgres; it seeks to them on start)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from reel import metrics
from reel.contract import ContractError, Registry, all_topics
from reel.faults import fault_point
from reel.kafka import admin_client, client_config, end_offsets, group_lag, group_members
from reel.pipeline import PIPELINE, TRACKER_GROUP
from reel.settings import Settings
from reel.task import Kind
from services.tracker import db, project, reads
from services.tracker.projection import GROUP_INPUTS, oldest

log = logging.getLogger(__name__)

IDLE_SAVE_S = 3.0


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes


class Projector:
    def __init__(
        self, settings: Settings, stopping: threading.Event, on_turn: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self.stopping = stopping
        self.on_turn = on_turn  # each turn of the loop: liveness (reel/health.py)
        self.registry = Registry()
        self.ready = threading.Event()
        self.projected = 0
        self.stored: dict[tuple[str, int], int] = {}  # next offset per partition, as saved
        metrics.zero_tracker([*(spec.name for spec in PIPELINE), "tracker"], [k.value for k in Kind])

    def run(self) -> None:
        # autocommit: each batch is exactly one explicit transaction (conn.transaction()).
        with psycopg.connect(self.settings.postgres_url, autocommit=True) as conn:
            db.migrate(conn)
            consumer = Consumer(
                {
                    **client_config(self.settings),
                    "group.id": TRACKER_GROUP,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "client.id": "tracker",
                }
            )
            try:
                self._assign(conn, consumer)
                self.ready.set()
                idle_since = time.monotonic()
                while not self.stopping.is_set():
                    self.on_turn()
                    msgs = consumer.consume(self.settings.tracker_batch, timeout=0.5)
                    if msgs:
                        self._batch(conn, msgs)
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > IDLE_SAVE_S:
                        self._save_idle_positions(conn, consumer)
                        idle_since = time.monotonic()
            finally:
                consumer.close()

    def _save_idle_positions(self, conn: psycopg.Connection, consumer: Consumer) -> None:
        """Topics written in transactions end with a commit marker that takes an offset; the
        position steps past it only on a later fetch. Saved when idle, or the tracker would
        show a lag of 1 per such partition forever (as the workers' idle commit does)."""
        ahead = {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.position(consumer.assignment())
            if tp.offset >= 0 and tp.offset > self.stored.get((tp.topic, tp.partition), -1)
        }
        if ahead:
            with conn.transaction():
                db.save_offsets(conn, ahead)
            self.stored.update(ahead)

    def _assign(self, conn: psycopg.Connection, consumer: Consumer) -> None:
        stored = db.offsets(conn)
        self.stored = dict(stored)
        meta = consumer.list_topics(timeout=30).topics
        parts = [
            TopicPartition(t, p, stored.get((t, p), OFFSET_BEGINNING))
            for t in all_topics()
            if t in meta
            for p in meta[t].partitions
        ]
        consumer.assign(parts)
        log.info("tracking %d partitions of %d topics", len(parts), len(all_topics()))

    def _batch(self, conn: psycopg.Connection, msgs: list) -> None:
        self.project(
            conn, [Record(m.topic(), m.partition(), m.offset(), m.value() or b"") for m in msgs if m.error() is None]
        )

    def project(self, conn: psycopg.Connection, records: list[Record]) -> None:
        """One batch in one transaction: the events, and the offsets that cover them."""
        positions: dict[tuple[str, int], int] = {}
        with conn.transaction():
            for n, rec in enumerate(records):
                topic = rec.topic
                positions[(topic, rec.partition)] = rec.offset + 1
                try:
                    event = self.registry.decode_for_topic(topic, rec.value)
                    uuid.UUID(event["event_id"])  # the event log's key
                except (ContractError, ValueError) as exc:
                    log.warning("undecodable record on %s: %s", topic, exc)
                    continue
                stored = project.record(conn, topic, event)
                if stored is not None:
                    self.projected += 1
                    self._observe(conn, topic, stored)
                if n == 0:
                    fault_point("mid-batch")
            db.save_offsets(conn, positions)
        self.stored.update(positions)

    def _observe(self, conn: psycopg.Connection, topic: str, event: dict) -> None:
        """Metrics of a newly projected event (an event seen again is not counted again)."""
        if topic == "video.failed":
            metrics.VIDEO_FAILURES.labels(event["stage"], event["kind"]).inc()
        elif topic == "video.completed":
            metrics.VIDEOS_COMPLETED.inc()
            metrics.MEDIA_COMPLETED.inc(reads.duration(conn, event["video_id"]))
        if topic in ("video.completed", "video.failed"):
            seconds = reads.video_seconds(conn, event)
            if seconds is not None:
                metrics.VIDEO_SECONDS.labels(topic.split(".")[1]).observe(seconds)
        timed = reads.stage_seconds(conn, topic, event)
        if timed is not None:
            metrics.STAGE_SECONDS.labels(timed[0]).observe(timed[1])


def refresh_gauges(settings: Settings, stopping: threading.Event) -> None:
    """Videos by state, segments by stage, the oldest unfinished videos, backlog in
    media-seconds, lag and members per consumer group, for /metrics: every 5 s, or as
    often as a local autoscaler decides."""
    every_s = min(5.0, settings.autoscale_interval_s) if settings.autoscale else 5.0
    admin = admin_client(settings)
    while not stopping.wait(every_s):
        try:
            for group, topic in GROUP_INPUTS.items():
                metrics.LAG.labels(group).set(sum(group_lag(admin, group, topic).values()))
            for group, n in group_members(admin, list(GROUP_INPUTS)).items():
                metrics.GROUP_MEMBERS.labels(group).set(n)
        except (KafkaException, KeyError) as exc:
            log.warning("lag not refreshed: %s", exc)
        try:
            with psycopg.connect(settings.postgres_url, connect_timeout=5) as conn:
                stored = db.offsets(conn)
                c = reads.counts(conn)
                ages = reads.unfinished_ages(conn)
            ends = end_offsets(admin, sorted({t for t, _ in stored}))
            metrics.LAG.labels(TRACKER_GROUP).set(sum(max(0, ends[tp] - o) for tp, o in stored.items() if tp in ends))
            for state, n in c["videos"].items():
                metrics.VIDEOS.labels(state).set(n)
            for stage, n in c["segments"].items():
                metrics.SEGMENTS.labels(stage).set(n)
            for group, seconds in c["backlog"].items():
                metrics.BACKLOG.labels(group).set(seconds)
            for state, (age_s, late) in oldest(
                ages, settings.video_budget_s, settings.video_budget_per_media_s
            ).items():
                metrics.OLDEST_VIDEO.labels(state).set(age_s)
                metrics.VIDEO_LATENESS.labels(state).set(late)
        except (psycopg.Error, KafkaException) as exc:
            log.warning("gauges not refreshed: %s", exc)
            time.sleep(1)
