"""The tracker's consumer: every topic, read_committed, projected into Postgres with
its offsets in the same transaction (offsets live in Postgres; it seeks to them on start)."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from reel import metrics
from reel.contract import ContractError, Registry, all_topics
from reel.faults import fault_point
from reel.settings import Settings
from services.tracker import store

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, settings: Settings, stopping: threading.Event) -> None:
        self.settings = settings
        self.stopping = stopping
        self.registry = Registry()
        self.ready = threading.Event()
        self.projected = 0

    def run(self) -> None:
        # autocommit: each batch is exactly one explicit transaction (conn.transaction()).
        with psycopg.connect(self.settings.postgres_url, autocommit=True) as conn:
            store.migrate(conn)
            consumer = Consumer({
                "bootstrap.servers": self.settings.kafka_bootstrap, "group.id": "reel.tracker",
                "isolation.level": "read_committed", "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "client.id": "tracker",
            })  # fmt: skip
            try:
                self._assign(conn, consumer)
                self.ready.set()
                while not self.stopping.is_set():
                    msgs = consumer.consume(self.settings.tracker_batch, timeout=0.5)
                    if msgs:
                        self._batch(conn, msgs)
            finally:
                consumer.close()

    def _assign(self, conn: psycopg.Connection, consumer: Consumer) -> None:
        stored = store.offsets(conn)
        meta = consumer.list_topics(timeout=30).topics
        parts = [TopicPartition(t, p, stored.get((t, p), OFFSET_BEGINNING))
                 for t in all_topics() if t in meta for p in meta[t].partitions]  # fmt: skip
        consumer.assign(parts)
        log.info("tracking %d partitions of %d topics", len(parts), len(all_topics()))

    def _batch(self, conn: psycopg.Connection, msgs: list) -> None:
        positions: dict[tuple[str, int], int] = {}
        with conn.transaction():
            for n, msg in enumerate(m for m in msgs if m.error() is None):
                topic = msg.topic()
                positions[(topic, msg.partition())] = msg.offset() + 1
                try:
                    event = self.registry.decode_for_topic(topic, msg.value() or b"")
                except ContractError as exc:
                    log.warning("undecodable record on %s: %s", topic, exc)
                    continue
                if store.record_event(conn, topic, event):
                    store.apply(conn, topic, event)
                    self.projected += 1
                    self._observe(topic, event)
                if n == 0:
                    fault_point("mid-batch")
            store.save_offsets(conn, positions)

    def _observe(self, topic: str, event: dict) -> None:
        if topic == "video.failed":
            metrics.VIDEO_FAILURES.labels(event["stage"]).inc()
        elif topic == "video.completed":
            metrics.VIDEOS_COMPLETED.inc()


def refresh_gauges(settings: Settings, stopping: threading.Event, every_s: float = 5.0) -> None:
    """Videos by state, segments by stage and backlog in media-seconds, for /metrics."""
    while not stopping.wait(every_s):
        try:
            with psycopg.connect(settings.postgres_url, connect_timeout=5) as conn:
                c = store.counts(conn)
            for state, n in c["videos"].items():
                metrics.VIDEOS.labels(state).set(n)
            for stage, n in c["segments"].items():
                metrics.SEGMENTS.labels(stage).set(n)
            for stage, seconds in c["backlog_seconds"].items():
                metrics.BACKLOG.labels(stage).set(float(seconds or 0))
        except psycopg.Error as exc:
            log.warning("gauges not refreshed: %s", exc)
            time.sleep(1)
