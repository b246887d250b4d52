"""Kafka client settings (exactly once: read_committed, manual offsets, idempotent and
transactional producers; fast reconnects) and consumer-group lag."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from reel.settings import Settings


def client_config(settings: Settings) -> dict[str, Any]:
    """Where the broker is and how to reach it: in plain text, or (kafka_security
    `sasl_ssl`) over TLS verified against the CA bundle, authenticated with SCRAM-SHA-512."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    if settings.kafka_security == "sasl_ssl":
        conf |= {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": settings.kafka_username,
            "sasl.password": settings.kafka_password,
            "ssl.endpoint.identification.algorithm": "https",  # the broker's name is checked
        }
        if settings.kafka_ca:
            conf["ssl.ca.location"] = settings.kafka_ca
    elif settings.kafka_security != "plaintext":
        raise ValueError(f"REEL_KAFKA_SECURITY is plaintext or sasl_ssl, not {settings.kafka_security!r}")
    return conf


def admin_client(settings: Settings, **extra: Any) -> AdminClient:
    return AdminClient(client_config(settings) | extra)


def consumer_config(settings: Settings, group: str, client_id: str) -> dict[str, Any]:
    return {
        **client_config(settings),
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
        # bound is never reached by an encode; it only catches a stuck loop. It is also
        # the rebalance timeout: a member finishing a revoked partition's task inside the
        # callback (up to the drain timeout) must not be dropped from the group for it.
        "max.poll.interval.ms": int(max(300.0, settings.drain_timeout_s + 60.0) * 1000),
        # Back within a session timeout after a short network cut (the default backoff
        # grows to 10 s, longer than the session: a blip would cost a re-queue).
        "reconnect.backoff.max.ms": 1000,
    }


def producer_config(settings: Settings, client_id: str, transactional_id: str | None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **client_config(settings),
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "reconnect.backoff.max.ms": 1000,
    }
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return conf


def end_offsets(admin: AdminClient, topics: list[str], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """Last stable offset of every partition of `topics`."""
    meta = admin.list_topics(timeout=timeout).topics
    parts = [TopicPartition(t, p) for t in topics if t in meta for p in sorted(meta[t].partitions)]
    return _offsets(admin, parts, OffsetSpec.latest(), timeout) if parts else {}


def group_lag(
    admin: AdminClient, group: str, topic: str, timeout: float = 10.0, partitions: list[int] | None = None
) -> dict[int, int]:
    """Lag per partition (of `partitions`, else of every one): last stable offset minus
    committed offset (clamped at 0).

    A partition with no committed offset counts from its earliest offset, asked only for
    such partitions: a puller looks before every unit it writes.
    """
    if partitions is None:
        partitions = sorted(admin.list_topics(topic, timeout=timeout).topics[topic].partitions)
    parts = [TopicPartition(topic, p) for p in partitions]
    latest = {p: o for (_, p), o in _offsets(admin, parts, OffsetSpec.latest(), timeout).items()}
    request = [ConsumerGroupTopicPartitions(group, parts)]
    committed_tps = admin.list_consumer_group_offsets(request)[group].result(timeout)
    start = {tp.partition: tp.offset for tp in committed_tps.topic_partitions if tp.offset >= 0}
    fresh = [tp for tp in parts if tp.partition not in start]
    if fresh:
        start |= {p: o for (_, p), o in _offsets(admin, fresh, OffsetSpec.earliest(), timeout).items()}
    return {p: max(0, latest[p] - start[p]) for p in partitions}


def group_members(admin: AdminClient, groups: list[str], timeout: float = 10.0) -> dict[str, int]:
    """Members of each consumer group now (0 for a group with none, or none yet)."""
    futures = admin.describe_consumer_groups(groups, request_timeout=timeout)
    return {group: len(future.result(timeout).members) for group, future in futures.items()}


def watermarks(
    admin: AdminClient, parts: list[TopicPartition], timeout: float = 5.0
) -> dict[tuple[str, int], tuple[int, int]]:
    """Each partition's (low, high) watermark offsets, what a consumer's
    get_watermark_offsets gives, in one request each for every partition. A consumer's own
    query waits behind its long-poll fetch on the same connection: half a second a
    partition, so sixteen held a worker's loop (and the next task) for 8 s. The admin
    client asks on connections of its own."""
    uncommitted = IsolationLevel.READ_UNCOMMITTED
    high = _offsets(admin, parts, OffsetSpec.latest(), timeout, uncommitted)
    low = _offsets(admin, parts, OffsetSpec.earliest(), timeout, uncommitted)
    return {key: (low[key], high[key]) for key in high}


def _offsets(
    admin: AdminClient,
    parts: list[TopicPartition],
    spec: OffsetSpec,
    timeout: float,
    isolation: IsolationLevel = IsolationLevel.READ_COMMITTED,
) -> dict[tuple[str, int], int]:
    request = {tp: spec for tp in parts}
    futures = admin.list_offsets(request, isolation_level=isolation, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result(timeout).offset for tp, f in futures.items()}


def offsets_since(settings: Settings, topics: list[str], since_ms: int, timeout: float = 10.0) -> list[TopicPartition]:
    """Where to read each partition of `topics` from to see every committed record stamped
    at `since_ms` or later, those committed while this runs included. A partition with no
    such record yet starts at its last stable offset as it was before the lookup: the
    consumer's own "none yet" means the end as of its first fetch, and a record committed
    in between would be skipped."""
    admin = admin_client(settings)
    ends = end_offsets(admin, topics, timeout)
    found = _offsets(admin, [TopicPartition(t, p) for t, p in ends], OffsetSpec.for_timestamp(since_ms), timeout)
    return [TopicPartition(t, p, offset if offset >= 0 else ends[(t, p)]) for (t, p), offset in found.items()]


def read_to_end(
    settings: Settings, topics: list[str], since_ms: int | None = None, timeout: float = 60.0
) -> list[Message]:
    """Every committed record of `topics` (from `since_ms` if given) up to their current end.

    Done when every partition has reported end-of-partition - at the last stable offset,
    for a read_committed reader - so a slow first fetch cannot cut the read short the way
    "stop after N quiet seconds" does.
    """
    c = Consumer(
        {
            **client_config(settings),
            "group.id": f"reel-reader-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # End-of-partition comes only with a fetch that returns empty: the broker's
            # default half-second wait for data would be paid once per read.
            "fetch.wait.max.ms": 20,
        }
    )
    try:
        if since_ms is None:
            meta = c.list_topics(timeout=10).topics
            parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in meta[t].partitions]
        else:
            parts = offsets_since(settings, topics, since_ms)
        c.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        records: list[Message] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} partitions of {topics} not read to the end in {timeout:.0f}s")
            for msg in c.consume(500, timeout=0.05):
                err = msg.error()
                if err is None:
                    records.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                else:
                    raise KafkaException(err)
        return records
    finally:
        c.close()


def member_partitions(admin: AdminClient, group: str, topic: str) -> list[list[int]]:
    """Each live member's partitions of `topic` ([] when the group has no members yet)."""
    try:
        (future,) = admin.describe_consumer_groups([group]).values()
        members = future.result(10).members
    except Exception:  # noqa: BLE001 - no group yet
        return []
    return [[tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic] for m in members]


def member_queues(admin: AdminClient, group: str, topic: str, timeout: float = 5.0) -> list[dict[int, int]]:
    """Each live member's partitions of `topic`, with the records on each past the group's
    committed offset (the one in work included). For a topic whose every record is
    written in a transaction of its own, as reel's workers write them: each record
    takes two offsets, itself and its commit marker, and a committed position stands
    before or after the marker of the last one done, so records = lag // 2."""
    members = member_partitions(admin, group, topic)
    if not any(members):
        return [{} for _ in members]
    lag = group_lag(admin, group, topic, timeout, sorted(p for owned in members for p in owned))
    return [{p: lag[p] // 2 for p in owned} for owned in members]


def kafka_reachable(settings: Settings, timeout: float) -> None:
    """Raises when the broker does not answer a metadata request within timeout."""
    admin_client(settings).list_topics(timeout=timeout)
