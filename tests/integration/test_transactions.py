"""A task's transaction on the real broker, when the group moves under its commit.

A member joining while a worker commits moves the group to a new generation; the broker
refuses the offsets sent with the old one (ILLEGAL_GENERATION) and the worker sends the
same transaction again. Here the refusal comes while tens of megabytes of outputs are
still on their way to the broker, as when a splitter on a fifth of a core wrote a long
video's units (the autoscaling benchmark): the abort purges what is in flight, and the
transaction sent again must still commit, each output once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from reel.contract import Registry, envelope
from reel.kafka import admin_client, client_config, consumer_config, producer_config
from reel.settings import Settings
from reel.task import Output
from reel.transaction import Transactions

PARTITIONS = 8
OUTPUTS, PAD = 1500, "p" * 40_000  # 60 MB: still in flight when the refusal comes back
ROUNDS = 3  # the refusal races the deliveries: three rounds make a pass by luck unlikely


class ReadBeforeTheJoin:
    """The worker's own consumer, except that the first time it hands out the group
    metadata it read just before a member joined: the moment of the race, made to last."""

    def __init__(self, consumer: Consumer, held: Any) -> None:
        self.consumer, self.held = consumer, held

    def consumer_group_metadata(self) -> Any:
        held, self.held = self.held, None
        return held or self.consumer.consumer_group_metadata()

    def memberid(self) -> str:
        return self.consumer.memberid()


def _topics(settings: Settings) -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    names = (f"test.txn.in.{run}", f"test.txn.out.{run}")
    admin = admin_client(settings)
    for future in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        future.result(30)
    return names


def _join(settings: Settings, group: str, topic: str, name: str) -> tuple[Consumer, list[int]]:
    """A member, and the sizes of the assignments it is handed (one per generation it sees)."""
    consumer, handed = Consumer(consumer_config(settings, group, name)), []
    consumer.subscribe([topic], on_assign=lambda _c, parts: handed.append(len(parts)))
    return consumer, handed


def _poll_until(members: list[Consumer], done: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the group never settled"
        for c in members:
            c.poll(0.05)


def _read_committed(settings: Settings, topic: str) -> list[str]:
    reader = Consumer(
        {**client_config(settings), "group.id": f"test-txn-{uuid.uuid4()}", "isolation.level": "read_committed"}
    )
    keys: list[str] = []
    try:
        reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        quiet = time.monotonic() + 5
        while time.monotonic() < quiet:
            msg = reader.poll(0.5)
            if msg is not None and msg.error() is None:
                keys.append(msg.key().decode())
                quiet = time.monotonic() + 5
    finally:
        reader.close()
    return keys


def _committed_offsets(settings: Settings, group: str, parts: list[TopicPartition]) -> dict[int, int]:
    reader = Consumer({**client_config(settings), "group.id": group})
    try:
        return {tp.partition: tp.offset for tp in reader.committed(parts, 10)}
    finally:
        reader.close()


def test_a_commit_refused_with_outputs_in_flight_commits_once_when_sent_again(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reel.transaction")
    topic_in, topic_out = _topics(stack)
    group = f"test-txn-{uuid.uuid4().hex[:8]}"
    worker, _ = _join(stack, group, topic_in, "worker")
    _poll_until([worker], lambda: len(worker.assignment()) == PARTITIONS)
    producer = Producer(producer_config(stack, "test-txn", f"test-txn-{group}"))
    producer.init_transactions(30)
    registry, members = Registry(), [worker]
    try:
        for round_ in range(1, ROUNDS + 1):
            held = worker.consumer_group_metadata()
            joiner, handed = _join(stack, group, topic_in, f"joiner-{round_}")
            members.append(joiner)
            _poll_until(members, handed.__len__)  # assigned: the group is in a new generation
            event = {**envelope(video_id=f"round-{round_}", producer="test"), "stage": "test", "reason": PAD}
            event.update(kind="internal", detail=None, callback_url=None)
            outputs = [Output(topic_out, f"{round_}-{i}", event, "reel.events.VideoFailed") for i in range(OUTPUTS)]
            offsets = [TopicPartition(topic_in, tp.partition, round_) for tp in worker.assignment()]
            assert offsets, "the worker kept no partition to commit"
            txn = Transactions(producer, ReadBeforeTheJoin(worker, held), registry)
            assert txn.commit(outputs, offsets), f"round {round_}: the transaction sent again was aborted"
    finally:
        for c in members:
            c.close()
    assert caplog.text.count("sending it again") >= ROUNDS, "the refusal was not what was tested"
    keys = _read_committed(stack, topic_out)
    assert len(keys) == len(set(keys)) == OUTPUTS * ROUNDS, "outputs lost or duplicated"
    last = _committed_offsets(stack, group, [TopicPartition(topic_in, tp.partition) for tp in offsets])
    assert set(last.values()) == {ROUNDS}, last
