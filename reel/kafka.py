"""Kafka client settings (notes/kafka.md) and consumer-group lag."""

from __future__ import annotations

from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from reel.settings import Settings


def consumer_config(settings: Settings, group: str, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "client.id": client_id,
        "group.protocol": "classic",
        # With the eager assignor every join (every scale-out) revokes every in-flight task.
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(300, settings.session_timeout_ms // 3),
        # Long work runs with every partition paused while poll() keeps going, so this
        # bound is never reached by an encode; it only catches a stuck loop.
        "max.poll.interval.ms": 300_000,
    }


def producer_config(settings: Settings, client_id: str, transactional_id: str | None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    }
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return conf


def group_lag(admin: AdminClient, group: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Lag per partition: last stable offset minus committed offset (clamped at 0).

    A partition with no committed offset counts from its earliest offset.
    """
    meta = admin.list_topics(topic, timeout=timeout).topics[topic]
    parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    latest = _offsets(admin, parts, OffsetSpec.latest(), timeout)
    earliest = _offsets(admin, parts, OffsetSpec.earliest(), timeout)
    request = [ConsumerGroupTopicPartitions(group, parts)]
    committed_tps = admin.list_consumer_group_offsets(request)[group].result(timeout)
    committed = {tp.partition: tp.offset for tp in committed_tps.topic_partitions}
    lag = {}
    for tp in parts:
        start = committed.get(tp.partition, -1)
        if start < 0:
            start = earliest[tp.partition]
        lag[tp.partition] = max(0, latest[tp.partition] - start)
    return lag


def _offsets(admin: AdminClient, parts: list[TopicPartition], spec: OffsetSpec, timeout: float) -> dict[int, int]:
    request = {tp: spec for tp in parts}
    futures = admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
    return {tp.partition: f.result(timeout).offset for tp, f in futures.items()}
