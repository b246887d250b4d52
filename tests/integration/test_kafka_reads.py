"""Reading from a time on, on the real broker: a record committed between the lookup and
the first fetch is read (the consumer's own lookup answers "none yet" with the log's end
at its first fetch, and skipped such a record: `reel submit --wait` missed a video.failed
committed in that window). And what the pullers read of the transcoders' queues."""

from __future__ import annotations

import dataclasses
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from devstack.procs import free_port
from reel.kafka import admin_client, client_config, consumer_config, member_queues, offsets_since, producer_config
from reel.settings import Settings
from services.splitter.__main__ import requested_since


def fresh_topic(settings: Settings) -> str:
    name = f"test.reads.{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)  # kept alive until the topic is there
    (future,) = admin.create_topics([NewTopic(name, 2, 1)]).values()
    future.result(30)
    return name


def read_keys(settings: Settings, start: list[TopicPartition], want: bytes, timeout: float = 15) -> list[bytes]:
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-reads-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    keys: list[bytes] = []
    try:
        consumer.assign(start)
        deadline = time.monotonic() + timeout
        while want not in keys and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                keys.append(msg.key() or b"")
    finally:
        consumer.close()
    return keys


def test_a_record_committed_after_the_lookup_is_read(stack: Settings) -> None:
    topic = fresh_topic(stack)
    producer = Producer(producer_config(stack, "test-reads", None))
    producer.produce(topic, key=b"before", value=b"x", partition=0)  # older than `since`
    assert producer.flush(30) == 0
    time.sleep(0.05)
    since = int(time.time() * 1000)
    start = offsets_since(stack, [topic], since)
    assert {tp.partition for tp in start} == {0, 1} and all(tp.offset >= 0 for tp in start)
    producer.produce(topic, key=b"after", value=b"x", partition=0)
    assert producer.flush(30) == 0
    assert read_keys(stack, start, b"after") == [b"after"]


def test_a_record_in_a_transaction_open_at_the_lookup_is_read_once_committed(stack: Settings) -> None:
    topic = fresh_topic(stack)
    producer = Producer(producer_config(stack, "test-reads", f"test-reads-{uuid.uuid4()}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"open", value=b"x", partition=1)
    producer.flush(30)  # written, not yet committed: past the last stable offset
    start = offsets_since(stack, [topic], int(time.time() * 1000) - 60_000)
    producer.commit_transaction(30)
    assert read_keys(stack, start, b"open") == [b"open"]


def test_the_splitter_finds_the_videos_requested_since_a_time_and_none_when_it_cannot_ask(stack: Settings) -> None:
    topic = fresh_topic(stack)
    producer = Producer(producer_config(stack, "test-requested", None))
    now_ms = int(time.time() * 1000)
    producer.produce(topic, key=b"before", value=b"requested", partition=0, timestamp=now_ms - 60_000)
    for i, key in enumerate((b"video-1", b"video-2", b"video-2", None)):  # a repeat; one with no key
        producer.produce(topic, key=key, value=b"requested", partition=i % 2, timestamp=now_ms)
    producer.flush(10)
    assert requested_since(stack, topic)(now_ms - 10_000) == {"video-1", "video-2"}
    gone = dataclasses.replace(stack, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    assert requested_since(gone, topic)(now_ms - 10_000) == set()  # split as if alone, not failed


def test_the_units_queued_per_member_count_records_not_their_commit_markers(stack: Settings) -> None:
    """Each record in a transaction of its own, as the pullers write segment.pulled: every
    one takes two offsets, and a member that did all its work has a lag of one (its last
    marker) until it commits past it."""
    topic, group = fresh_topic(stack), f"test-queues-{uuid.uuid4().hex[:8]}"
    producer = Producer(producer_config(stack, "test-queues", f"test-queues-{uuid.uuid4()}"))
    producer.init_transactions(30)
    for partition in (0, 0, 0, 1):
        producer.begin_transaction()
        producer.produce(topic, key=b"unit", value=b"span", partition=partition)
        producer.commit_transaction(30)
    admin = admin_client(stack)
    assert member_queues(admin, group, topic) == []  # no member yet
    member = Consumer(consumer_config(stack, group, "test-queues-0"))
    member.subscribe([topic])
    try:
        deadline, first = time.monotonic() + 30, None
        while first is None and time.monotonic() < deadline:
            msg = member.poll(0.2)
            first = msg if msg is not None and msg.error() is None and msg.partition() == 0 else None
        assert first is not None
        member.commit(offsets=[TopicPartition(topic, 0, first.offset() + 1)], asynchronous=False)
        assert member_queues(admin, group, topic) == [{0: 2, 1: 1}]  # partition 1: none committed yet
        ends = {p: member.get_watermark_offsets(TopicPartition(topic, p))[1] for p in (0, 1)}
        done = [TopicPartition(topic, p, end - 1) for p, end in ends.items()]  # past each last record
        member.commit(offsets=done, asynchronous=False)
        assert member_queues(admin, group, topic) == [{0: 0, 1: 0}]
    finally:
        member.close()
