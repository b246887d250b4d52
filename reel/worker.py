"""The one worker loop every stage runs: exactly once through kills and rebalances.

1. poll one task (read_committed, manual offsets, cooperative-sticky);
2. write an attempt marker, pause every assigned partition and run the handler in a
   worker thread while this thread keeps polling (the member stays alive however
   long the encode); a revoked partition's task is cancelled and handed back;
3. one short transaction: the output events and the input's next offset, committed
   together. After an abort, seek back so the input is not skipped.

A worker that dies never committed its offset: after the rebalance another member
gets the same task - that is the re-queue. The attempt markers count the attempts
that died; at `max_attempts` the task goes to `<topic>.dlq` instead of crash-looping
the fleet. Progress heartbeats go through a second, idempotent producer.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from reel import metrics
from reel.attempts import (
    COMPLETED,
    FAILED,
    HANDED_BACK,
    Attempt,
    Attempts,
    Marker,
    failed_attempts,
)
from reel.contract import ContractError, Registry, dlq_topic, envelope, schema_for_topic
from reel.faults import fault_point
from reel.kafka import consumer_config, producer_config
from reel.logs import task_context
from reel.redact import redact
from reel.settings import Settings
from reel.storage import Storage, transient

log = logging.getLogger(__name__)

EVENT_NS = uuid.UUID("5b0c3a52-2f7e-4e0b-9d7e-2a9a4c1f6e11")
COMMIT_TIMEOUT_S = 30.0
HEARTBEAT_S = 2.0
IDLE_COMMIT_S = 5.0


class Permanent(Exception):
    """The input can never succeed (corrupt, unsupported, …): dead-letter it now."""


class Fatal(Exception):
    """The producer is fenced or broken: exit non-zero and let the supervisor restart us."""


@dataclass
class Output:
    topic: str
    key: str
    record: dict[str, Any]
    schema: str | None = None  # default: the topic's event type
    partition: int | None = None  # default: by key


@dataclass
class Task:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: dict[str, Any]
    attempt: Attempt
    worker_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    percent: float = 0.0

    def report(self, percent: float) -> None:
        self.percent = max(self.percent, min(100.0, percent))

    def envelope(self, topic: str, n: int = 0, **changes: Any) -> dict[str, Any]:
        """The envelope of an output: same video/generation/track/segment, this attempt,
        and an event id derived from the input's, so a re-run produces the same ids."""
        e = self.event
        env = envelope(
            video_id=e["video_id"], producer=self.worker_id, generation=e["generation"],
            track=e["track"], segment_index=e["segment_index"], attempt=self.attempt.number,
            event_id=str(uuid.uuid5(EVENT_NS, f"{e['event_id']}/{topic}/{n}")),
            trace_id=e.get("trace_id"),
        )  # fmt: skip
        env.update(changes)
        return env


Handler = Callable[[Task], list[Output]]
DeadLetterHook = Callable[[dict[str, Any], str], list[Output]]


@dataclass(frozen=True)
class Stage:
    name: str  # names the group, the transactional ids and the markers
    topic: str  # input topic
    handle: Handler
    schema: str | None = None  # input event type; default the topic's
    on_dead_letter: DeadLetterHook | None = None  # e.g. a video.failed for the video
    media_seconds: Callable[[dict[str, Any]], float] = lambda _e: 0.0


@dataclass
class Running:
    task: Task
    thread: threading.Thread
    started: float
    outputs: list[Output] | None = None
    error: BaseException | None = None
    handed_back: bool = False

    def done(self) -> bool:
        return not self.thread.is_alive()


def fail_video(stage: str) -> DeadLetterHook:
    """The dead-letter hook of every pipeline stage: the video fails with the reason."""

    def hook(event: dict[str, Any], reason: str) -> list[Output]:
        env = envelope(
            video_id=event["video_id"], producer=stage, generation=event["generation"],
            track=event["track"], segment_index=event["segment_index"],
            attempt=event.get("attempt", 1), trace_id=event.get("trace_id"),
            event_id=str(uuid.uuid5(EVENT_NS, f"{event['event_id']}/video.failed")),
        )  # fmt: skip
        record = {**env, "stage": stage, "reason": reason, "detail": None,
                  "callback_url": event.get("callback_url")}  # fmt: skip
        return [Output("video.failed", event["video_id"], record)]

    return hook


class Worker:
    def __init__(
        self,
        stage: Stage,
        settings: Settings,
        storage: Storage,
        stopping: threading.Event,
        registry: Registry | None = None,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.storage = storage
        self.stopping = stopping
        self.registry = registry or Registry()
        self.drain_timeout_s = settings.drain_timeout_s
        self.revoke_grace_s = settings.revoke_grace_s
        self.worker_id = f"{stage.name}-{settings.slot}"
        self.attempts = Attempts(storage, settings.bucket_work, stage.name)
        self.group = f"reel.{stage.name}"
        self.consumer = Consumer(consumer_config(settings, self.group, self.worker_id))
        # Stable per slot: a restarted slot fences its zombie and aborts its open transaction.
        self.producer = Producer(producer_config(settings, self.worker_id, f"reel.{self.worker_id}"))
        self.heartbeats = Producer(producer_config(settings, self.worker_id + "-hb", None))
        self.running: Running | None = None
        self.callback_error: Exception | None = None
        # Where each partition we own resumes, as our own transactions committed it. The
        # consumer's fetch position is not trusted for this: in one CI run it went back to
        # an already committed offset after a rebalance, and the input was redone (#3).
        self.committed_next: dict[tuple[str, int], int] = {}
        self.last_activity = time.monotonic()
        self.last_idle_commit = 0.0

    # -- rebalance callbacks (run inside poll) ------------------------------------
    # An exception must not leave a callback: librdkafka would go on to the next one with
    # the Python error still set (seen: a SystemError from incremental_assign after a
    # fenced commit in on_revoke). It is kept and raised once poll() has returned.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)  # before pause: pausing an unassigned one does nothing
        if self.running is not None:
            consumer.pause(partitions)
        log.info("assigned %s", [p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", [p.partition for p in partitions])
        self._guarded(lambda: self._release(partitions, lost=False))
        self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s", [p.partition for p in partitions])
        self._guarded(lambda: self._release(partitions, lost=True))
        self._forget(partitions)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - raised by _poll, outside the callback
            self.callback_error = self.callback_error or exc

    def _poll(self) -> Message | None:
        msg = self.consumer.poll(0.1)
        if self.callback_error is not None:
            raise self.callback_error
        return msg

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:  # its next owner starts from the group's committed offset
            self.committed_next.pop((p.topic, p.partition), None)

    def _release(self, partitions: list[TopicPartition], lost: bool) -> None:
        """A partition with a running task is leaving us. If the task ends within
        revoke_grace_s, commit it now - we still own the partition inside this
        callback - so a scale-out does not redo it; else cancel it and hand it back."""
        run = self.running
        if run is None or (run.task.topic, run.task.partition) not in {(p.topic, p.partition) for p in partitions}:
            return
        if not lost:
            run.thread.join(timeout=self.revoke_grace_s)
            if run.done():
                self._finish(run)
                return
        self._hand_back(run, "partition lost" if lost else "partition revoked in a rebalance")

    def _hand_back(self, run: Running, reason: str) -> None:
        run.task.cancel.set()
        run.thread.join(timeout=10.0)
        run.handed_back = True
        self._mark(run.task.attempt, HANDED_BACK, reason)
        self._heartbeat(run.task, "handed_back", reason)
        metrics.TASKS.labels(self.stage.name, "handed_back").inc()
        log.warning("task handed back: %s", reason)
        self._resume()
        self.running = None
        metrics.IN_FLIGHT.labels(self.stage.name).set(0)

    # -- the loop ----------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM (drained) or a fatal error. Returns the exit code."""
        self.producer.init_transactions(30)
        self.consumer.subscribe(
            [self.stage.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )  # fmt: skip
        log.info("%s consuming %s as group %s", self.worker_id, self.stage.topic, self.group)
        code = 0
        try:
            self._loop()
        except Fatal as exc:
            log.error("fatal: %s", exc)
            code = 2
        finally:
            self._close()
        return code

    def _loop(self) -> None:
        drain_deadline: float | None = None
        while True:
            if self.stopping.is_set() and drain_deadline is None:
                drain_deadline = time.monotonic() + self.drain_timeout_s
                log.info("draining: no new tasks; finishing the current one")
            if drain_deadline is not None:
                if self.running is None:
                    return
                if time.monotonic() > drain_deadline:
                    self._hand_back(self.running, "stopped before the task could finish")
                    return
            msg = self._poll()
            if msg is not None:
                self._on_message(msg, accept=drain_deadline is None)
            if self.running is not None and self.running.done():
                self._finish(self.running)
            if self.running is None and msg is None:
                self._idle_commit()

    def _on_message(self, msg: Message, accept: bool) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
                if err.fatal():
                    raise Fatal(str(err))
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        done_below = self.committed_next.get((topic, partition), -1)
        if offset < done_below:
            log.warning("%s[%d]@%d re-delivered after we committed up to %d: skipped",
                        topic, partition, offset, done_below)  # fmt: skip
            self._seek(topic, partition, done_below)
            return
        if self.running is not None or not accept:
            # Fetched before the pause took effect: give it back for later.
            self._seek(topic, partition, offset)
            return
        try:
            self._start(msg)
        except Exception as exc:
            if not transient(exc):
                raise
            # Object storage is out of reach (past its in-place retries): without markers
            # the attempt cannot be counted, so the task waits rather than runs.
            log.warning("storage unreachable, task put back: %s", exc)
            self.running = None
            self._resume(wake=TopicPartition(topic, partition, offset))
            time.sleep(1.0)

    def _start(self, msg: Message) -> None:
        self.last_activity = time.monotonic()
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        with task_context(topic=topic, partition=partition, offset=offset):
            try:
                event = self.registry.decode(msg.value() or b"", self.stage.schema or schema_for_topic(topic))
            except ContractError as exc:
                log.error("undecodable record: %s", exc)
                self._dead_letter(msg, None, exc.kind, str(exc), 0)
                return
        ctx = {
            "topic": topic, "partition": partition, "offset": offset,
            "video_id": event["video_id"], "track": event["track"],
            "segment": event["segment_index"],
        }  # fmt: skip
        with task_context(**ctx):
            tomb = self.attempts.buried(event)
            if tomb is not None:
                if tomb.get("keep_work"):
                    log.info("video already failed: task skipped, its work kept for a segment retry")
                else:
                    log.info("video already failed: task skipped, its work removed")
                    self.attempts.clear_work(event)
                self._transaction([], [TopicPartition(topic, partition, offset + 1)], seek_back=True)
                return
            previous = self.attempts.markers(event)
            failed = failed_attempts(previous)
            if failed >= self.settings.max_attempts:
                reason = f"{failed} attempts failed or died; last: {_last_reason(previous)}"
                log.error("escalating: %s", reason)
                self._dead_letter(msg, event, "attempts-exhausted", reason, failed)
                return
            attempt = self.attempts.begin(event, self.worker_id, previous)
        ctx["attempt"] = attempt.number
        task = Task(topic, partition, offset, msg.key(), msg.value() or b"", event, attempt, self.worker_id)
        self.consumer.pause(self.consumer.assignment())
        with task_context(**ctx):
            log.info("task started (attempt %d, id %s)", attempt.number, attempt.attempt_id)
            fault_point("before-work")
        run = Running(task, threading.Thread(target=lambda: None), time.monotonic())
        run.thread = threading.Thread(target=self._work, args=(run, ctx), daemon=True)
        self.running = run
        metrics.IN_FLIGHT.labels(self.stage.name).set(1)
        self._heartbeat(task, "started")
        run.thread.start()

    def _work(self, run: Running, ctx: dict[str, Any]) -> None:
        """The worker thread: the handler, with heartbeats every few seconds."""
        with task_context(**ctx):
            beat = threading.Thread(target=self._beat_while_running, args=(run,), daemon=True)
            beat.start()
            try:
                reused = self._reuse(run.task) if run.task.attempt.number > 1 else None
                if reused is not None:
                    run.outputs = reused
                    return
                run.outputs = self.stage.handle(run.task)
                self._save_checkpoint(run.task, run.outputs)
            except BaseException as exc:  # noqa: BLE001 - judged on the loop thread
                run.error = exc

    def _save_checkpoint(self, task: Task, outputs: list[Output]) -> None:
        saved = [{"topic": o.topic, "key": o.key, "schema": o.schema, "partition": o.partition,
                  "value": base64.b64encode(self.registry.encode(o.schema or schema_for_topic(o.topic),
                                                                o.record)).decode()}
                 for o in outputs]  # fmt: skip
        try:
            self.attempts.save_checkpoint(task.event, saved)
        except Exception as exc:  # noqa: BLE001 - only a later attempt would have used it
            log.warning("checkpoint not saved: %s", exc)

    def _reuse(self, task: Task) -> list[Output] | None:
        """The outputs of an earlier attempt that finished its work but died before its
        commit, if every object they point at is still there; as this attempt's."""
        saved = self.attempts.checkpoint(task.event)
        if saved is None:
            return None
        outputs = checkpointed_outputs(saved, self.registry)
        if not all_objects_exist(self.storage, outputs):
            log.info("checkpoint of an earlier attempt is incomplete: doing the work again")
            return None
        for o in outputs:
            o.record.update(attempt=task.attempt.number, producer=self.worker_id)
        log.info("reusing the finished work of an earlier attempt (%d outputs)", len(outputs))
        metrics.TASKS.labels(self.stage.name, "reused").inc()
        return outputs

    def _beat_while_running(self, run: Running) -> None:
        while not run.task.cancel.wait(HEARTBEAT_S):
            if not run.thread.is_alive() or self.running is not run:
                return
            self._heartbeat(run.task, "running")

    def _finish(self, run: Running) -> None:
        task = run.task
        self.running = None
        metrics.IN_FLIGHT.labels(self.stage.name).set(0)
        ctx = {"topic": task.topic, "partition": task.partition, "offset": task.offset,
               "video_id": task.event["video_id"], "segment": task.event["segment_index"],
               "attempt": task.attempt.number}  # fmt: skip
        with task_context(**ctx):
            metrics.TASK_SECONDS.labels(self.stage.name).observe(time.monotonic() - run.started)
            done = False  # whether the input's offset moved past this task
            if run.error is None:
                done = self._commit(run.outputs or [], task)
                if done:
                    self._mark(task.attempt, COMPLETED)
                    metrics.TASKS.labels(self.stage.name, "completed").inc()
                    log.info("task completed in %.2fs", time.monotonic() - run.started)
                else:  # aborted (a rebalance or a fence took the partition): not the task's fault
                    self._mark(task.attempt, HANDED_BACK, "commit aborted")
            elif isinstance(run.error, Permanent):
                reason = redact(str(run.error))
                log.error("permanent failure: %s", reason)
                self._mark(task.attempt, FAILED, reason)
                done = self._dead_letter_task(task, "permanent", reason)
            elif task.cancel.is_set():  # cancelled mid-work: not a failure
                self._mark(task.attempt, HANDED_BACK, "cancelled")
            else:
                reason = redact(f"{type(run.error).__name__}: {run.error}")
                log.error("attempt failed: %s", reason, exc_info=run.error)
                self._mark(task.attempt, FAILED, reason)
                self._heartbeat(task, "failed", reason)
                metrics.TASKS.labels(self.stage.name, "failed").inc()
            # Not done: the task runs again (a failed attempt is counted by its marker).
            next_offset = task.offset + 1 if done else task.offset
            self._resume(wake=TopicPartition(task.topic, task.partition, next_offset))
            self.last_activity = time.monotonic()

    def _mark(self, attempt: Attempt, state: str, reason: str = "") -> None:
        """Record how an attempt ended. If storage is unreachable the marker stays
        "started", which counts the same as a failure: never worth a crash."""
        try:
            self.attempts.finish(attempt, state, reason)
        except Exception as exc:  # noqa: BLE001
            log.warning("attempt marker not updated (%s): %s", state, exc)

    # -- transactions ------------------------------------------------------------
    def _commit(self, outputs: list[Output], task: Task) -> bool:
        """Outputs and the input's next offset in one transaction. False if aborted."""
        next_offset = [TopicPartition(task.topic, task.partition, task.offset + 1)]
        return self._transaction(outputs, next_offset, seek_back=True)

    def _transaction(self, outputs: list[Output], offsets: list[TopicPartition], seek_back: bool) -> bool:
        """One transaction; after an abort, seek_back sets each input back to its offset."""
        try:
            self.producer.begin_transaction()
            for out in outputs:
                schema = out.schema or schema_for_topic(out.topic)
                value = self.registry.encode(schema, out.record)
                partition = -1 if out.partition is None else out.partition  # -1: by key
                self.producer.produce(out.topic, key=out.key.encode(), value=value, partition=partition)
            if outputs:  # not in an idle commit or a skip: those leave no task to redo
                fault_point("after-produce")
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), COMMIT_TIMEOUT_S
            )
            self._commit_with_watchdog()
            for tp in offsets:
                key = (tp.topic, tp.partition)
                self.committed_next[key] = max(tp.offset, self.committed_next.get(key, -1))
            # A segment that exhausted its attempts leaves the rest of the work for a
            # segment retry; anything else (a bad input) fails the whole video.
            exhausted = any(o.topic.endswith(".dlq") and o.record["error_kind"] == "attempts-exhausted"
                            for o in outputs)  # fmt: skip
            for out in outputs:
                if out.topic == "video.failed":
                    self.attempts.bury(out.record, out.record["reason"], keep_work=exhausted)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise Fatal(f"producer: {err}") from exc
            log.warning("transaction aborted: %s", err)
            self._abort()
            if seek_back:
                for tp in offsets:
                    self._seek(tp.topic, tp.partition, tp.offset - 1)
            return False
        fault_point("after-commit")
        return True

    def _commit_with_watchdog(self) -> None:
        # librdkafka has been seen to hang in commit past its timeout: exit rather than wedge.
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

    def _resume(self, wake: TopicPartition | None = None) -> None:
        assignment = self.consumer.assignment()
        self.consumer.resume(assignment)
        # Every partition restarts where our own commits say, not where librdkafka kept
        # it. The seek also wakes the fetcher, which otherwise idles until its next tick
        # after a resume of all partitions (measured with 1.3 s tasks: next task 0.57 s
        # -> 0.001 s). `wake` is the task's partition when its input was not consumed.
        starts = {(tp.topic, tp.partition): self.committed_next.get((tp.topic, tp.partition)) for tp in assignment}
        if wake is not None:
            starts[(wake.topic, wake.partition)] = wake.offset
        for (topic, partition), offset in starts.items():
            if offset is not None and offset >= 0:
                self._seek(topic, partition, offset)

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        try:
            self.consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # no longer ours: its new owner starts from the commit
            log.info("seek %s[%d]@%d skipped: %s", topic, partition, offset, exc.args[0])

    def _idle_commit(self) -> None:
        """Commit the advanced position of idle partitions.

        Input topics are written transactionally, so each ends with a commit marker
        that takes an offset; the position steps past it only on a later fetch. Without
        this, an idle group shows a lag of 1 per partition (librdkafka issue 3917).
        """
        now = time.monotonic()
        if now - self.last_activity < 1.0 or now - self.last_idle_commit < IDLE_COMMIT_S:
            return
        self.last_idle_commit = now
        assignment = self.consumer.assignment()
        if not assignment:
            return
        try:
            positions = self.consumer.position(assignment)
            committed = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(assignment, 10)}
        except KafkaException as exc:
            log.info("idle commit skipped: %s", exc.args[0])
            return
        ahead = [
            tp for tp in positions
            if tp.offset >= 0
            and tp.offset > max(committed.get((tp.topic, tp.partition), -1),
                                self.committed_next.get((tp.topic, tp.partition), -1))
        ]  # fmt: skip
        if ahead:
            log.debug("idle commit of %d partitions", len(ahead))
            self._transaction([], ahead, seek_back=False)

    # -- dead letters --------------------------------------------------------------
    def _dead_letter(self, msg: Message, event: dict[str, Any] | None, kind: str, reason: str, failed: int) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        self._send_dead_letter(topic, partition, offset, msg.key(), msg.value() or b"", event, kind, reason, failed)

    def _dead_letter_task(self, task: Task, kind: str, reason: str) -> bool:
        failed = failed_attempts(self.attempts.markers(task.event))
        return self._send_dead_letter(task.topic, task.partition, task.offset, task.key, task.value,
                               task.event, kind, reason, failed)  # fmt: skip

    def _send_dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
        event: dict[str, Any] | None, kind: str, reason: str, failed: int,
    ) -> bool:  # fmt: skip
        reason = redact(reason)  # it is stored and shown everywhere: no presigned URL in it
        e = event or {}
        env = envelope(
            video_id=e.get("video_id", "unknown"), producer=self.worker_id,
            generation=e.get("generation", 0), track=e.get("track", "video"),
            segment_index=e.get("segment_index"),
            event_id=str(uuid.uuid5(EVENT_NS, f"{topic}/{partition}/{offset}/dead-letter")),
        )  # fmt: skip
        record = {**env, "original_topic": topic, "original_partition": partition,
                  "original_offset": offset, "original_key": key, "original_value": value,
                  "reason": reason, "error_kind": kind, "failed_attempts": failed}  # fmt: skip
        outputs = [Output(dlq_topic(topic), (key or b"").decode(errors="replace"), record)]
        if event is not None and self.stage.on_dead_letter is not None:
            outputs += self.stage.on_dead_letter(event, reason)
        if self._transaction(outputs, [TopicPartition(topic, partition, offset + 1)], seek_back=True):
            metrics.DEAD_LETTERS.labels(topic, kind).inc()
            log.error("dead-lettered to %s: %s (%s)", dlq_topic(topic), reason, kind)
            return True
        return False

    # -- heartbeats ----------------------------------------------------------------
    def _heartbeat(self, task: Task, state: str, message: str | None = None) -> None:
        env = task.envelope("task.progress", event_id=str(uuid.uuid4()))
        record = {**env, "stage": self.stage.name, "state": state, "percent": task.percent,
                  "media_seconds": self.stage.media_seconds(task.event), "worker": self.worker_id,
                  "attempt_id": task.attempt.attempt_id, "message": message}  # fmt: skip
        try:
            value = self.registry.encode_for_topic("task.progress", record)
            self.heartbeats.produce("task.progress", key=task.event["video_id"].encode(), value=value)
            self.heartbeats.poll(0)
        except (BufferError, KafkaException) as exc:  # heartbeats are best effort
            log.warning("heartbeat not sent: %s", exc)

    def _close(self) -> None:
        try:
            self.consumer.close()  # leave the group: partitions move at once
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close: %s", exc)
        for producer in (self.heartbeats, self.producer):
            try:
                producer.flush(5)
            except KafkaException as exc:  # a fenced producer refuses even this
                log.warning("producer flush: %s", exc.args[0])
        log.info("%s stopped", self.worker_id)


def checkpointed_outputs(saved: list[dict[str, Any]], registry: Registry) -> list[Output]:
    """The outputs a checkpoint holds (as `_save_checkpoint` wrote them)."""
    return [Output(o["topic"], o["key"], registry.decode(base64.b64decode(o["value"])), o["schema"], o["partition"])
            for o in saved]  # fmt: skip


def all_objects_exist(storage: Storage, outputs: list[Output]) -> bool:
    return all(storage.exists(b, k) for o in outputs for b, k in object_refs(o.record))


def object_refs(value: Any) -> list[tuple[str, str]]:
    """Every (bucket, key) an event points at, however deep."""
    if isinstance(value, dict):
        own = [(value["bucket"], value["key"])] if isinstance(value.get("bucket"), str) and "key" in value else []
        return own + [ref for v in value.values() for ref in object_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in object_refs(v)]
    return []


def _last_reason(markers: list[Marker]) -> str:
    counted = [m for m in markers if m.state != HANDED_BACK and m.state != COMPLETED]
    if counted and counted[-1].state == FAILED and counted[-1].reason:
        return counted[-1].reason
    return "the worker died mid-task (killed or out of memory)"


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
