"""One Kafka transaction: a task's output events and its input's next offset, together.

begin, produce, send the consumer's offsets, commit (guarded by a watchdog: librdkafka has
been seen to hang in a commit past its timeout), or abort. A read_committed reader sees
the outputs exactly when the input counts as consumed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from reel.contract import Registry, schema_for_topic
from reel.faults import fault_point
from reel.task import Output

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 30.0
# A commit refused for the group's old generation is sent again this often, this far apart.
NEW_GENERATION_TRIES, NEW_GENERATION_WAIT_S = 20, 0.25


class Fatal(Exception):
    """The producer is fenced or broken: exit non-zero and let the supervisor restart us."""


class Transactions:
    def __init__(self, producer: Producer, consumer: Consumer, registry: Registry) -> None:
        self.producer, self.consumer, self.registry = producer, consumer, registry

    def commit(self, outputs: list[Output], offsets: list[TopicPartition]) -> bool:
        """True once committed; False if aborted (the inputs are then to be read again).

        A member joining or leaving moves the group to a new generation, and the broker
        refuses offsets sent with the old one (ILLEGAL_GENERATION) even for partitions that
        stay ours. While this member is the same one (not dropped and joined again), its
        partitions are still its own: a cooperative rebalance moves one only after we give
        it up inside poll(), which a commit never calls. So the same transaction is sent
        again with the new generation, rather than the task redone."""
        member = self.consumer.memberid()
        for tries in range(1, NEW_GENERATION_TRIES + 1):
            try:
                self._send(outputs, offsets)
                return True
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal():
                    raise Fatal(f"producer: {err}") from exc
                again = (
                    err.code() == KafkaError.ILLEGAL_GENERATION
                    and tries < NEW_GENERATION_TRIES
                    and self.consumer.memberid() == member
                )
                log.log(logging.INFO if again else logging.WARNING, "transaction aborted: %s", err)
                self._abort()
                if not again:
                    return False
                log.info("the group moved to a new generation under the commit: sending it again")
                time.sleep(NEW_GENERATION_WAIT_S)
        return False

    def _send(self, outputs: list[Output], offsets: list[TopicPartition]) -> None:
        self.producer.begin_transaction()
        for out in outputs:
            value = self.registry.encode(out.schema or schema_for_topic(out.topic), out.record)
            partition = -1 if out.partition is None else out.partition  # -1: by key
            self.producer.produce(out.topic, key=out.key.encode(), value=value, partition=partition)
        group = self.consumer.consumer_group_metadata()  # its generation is what the broker checks
        if outputs:  # not in an idle commit or a skip: those leave no task to redo
            fault_point("after-produce")
            # Delivered before the offsets go (the commit waits for them anyway): when the
            # offsets are refused, the abort would purge records still in flight, leaving a
            # gap in the producer's sequence numbers that fails the transaction sent again
            # (OUT_OF_ORDER_SEQUENCE_NUMBER).
            self.producer.flush(COMMIT_TIMEOUT_S)
        self.producer.send_offsets_to_transaction(offsets, group, COMMIT_TIMEOUT_S)
        self._commit_with_watchdog()

    def _commit_with_watchdog(self) -> None:
        with watchdog(COMMIT_TIMEOUT_S * 2 + 10, _wedged):
            while True:
                try:
                    self.producer.commit_transaction(COMMIT_TIMEOUT_S)
                    return
                except KafkaException as exc:
                    if exc.args[0].retriable() and not exc.args[0].txn_requires_abort():
                        log.warning("commit retry: %s", exc.args[0])
                        continue
                    raise

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise Fatal(f"abort: {exc.args[0]}") from exc
            log.warning("abort failed: %s", exc.args[0])


@contextmanager
def watchdog(seconds: float, on_expire: Callable[[], None]) -> Iterator[None]:
    """Call on_expire (from another thread) if the block is still running after `seconds`."""
    timer = threading.Timer(seconds, on_expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _wedged() -> None:
    log.critical("transaction commit hung past its watchdog; exiting")
    os._exit(3)
