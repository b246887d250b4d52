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

Around it: the API handlers are written against (reel/task.py), when a task is retried
or given up (reel/retries.py), the transaction (reel/transaction.py) and the
checkpoints of finished work (reel/checkpoints.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from reel import metrics, retries, tenancy
from reel.attempts import COMPLETED, FAILED, HANDED_BACK, Attempt, Attempts
from reel.checkpoints import Checkpoints
from reel.contract import ContractError, Registry, dlq_topic, schema_for_topic
from reel.faults import fault_point
from reel.kafka import admin_client, consumer_config, producer_config, watermarks
from reel.logs import task_context
from reel.redact import redact
from reel.retries import GivenUp, Input, Outcome
from reel.settings import Settings
from reel.storage import Storage, transient
from reel.task import Kind, Output, Permanent, Stage, Task
from reel.transaction import Fatal, Transactions

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> offset
HEARTBEAT_S = 2.0
IDLE_COMMIT_S = 5.0


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


class Worker:
    def __init__(
        self,
        stage: Stage,
        settings: Settings,
        storage: Storage,
        stopping: threading.Event,
        registry: Registry | None = None,
        on_turn: Callable[[], None] = lambda: None,
    ) -> None:
        self.stage = stage
        self.on_turn = on_turn  # each turn of the loop: liveness (reel/health.py)
        self.settings = settings
        self.storage = storage
        self.stopping = stopping
        self.registry = registry or Registry()
        self.drain_timeout_s = settings.drain_timeout_s
        self.worker_id = f"{stage.name}-{settings.slot}"
        self.attempts = Attempts(storage, settings.bucket_work, stage.name)
        self.checkpoints = Checkpoints(storage, settings.bucket_work, self.registry, stage.name)
        self.buckets = (settings.bucket_sources, settings.bucket_work, settings.bucket_outputs)
        self.group = f"reel.{stage.name}"
        metrics.zero_worker(stage.name, stage.topic, [*retries.CAUSES.values(), retries.CRASH], retries.ERROR_KINDS)
        self.consumer = Consumer(consumer_config(settings, self.group, self.worker_id))
        # Stable per slot: a restarted slot fences its zombie and aborts its open transaction.
        self.producer = Producer(producer_config(settings, self.worker_id, f"reel.{self.worker_id}"))
        self.heartbeats = Producer(producer_config(settings, self.worker_id + "-hb", None))
        self.admin = admin_client(settings)  # offsets of our partitions, asked beside the fetch
        self.transactions = Transactions(self.producer, self.consumer, self.registry)
        self.running: Running | None = None
        self.callback_error: Exception | None = None
        # Where each partition we own resumes, as our own transactions committed it. The
        # consumer's fetch position is not trusted for this: in one CI run it went back to
        # an already committed offset after a rebalance, and the input was redone (#3).
        self.committed_next: dict[tuple[str, int], int] = {}
        self.last_activity = time.monotonic()
        self.last_idle_commit = 0.0
        # Partitions we own with records waiting that poll() has not delivered: since when.
        self.waiting_since: dict[tuple[str, int], float] = {}
        self.healed: set[tuple[str, int]] = set()  # resumed once already; still waiting: not live

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
        """A partition with a running task is leaving us. If the task ends within the
        drain timeout, commit it now - we still own the partition inside this callback -
        so a scale-out does not redo it; else cancel it and hand it back. The rebalance
        waits for us meanwhile (its new owner starts when we return): work kept is
        worth more than the seconds."""
        run = self.running
        if run is None or (run.task.topic, run.task.partition) not in {(p.topic, p.partition) for p in partitions}:
            return
        if not lost:
            run.thread.join(timeout=self.drain_timeout_s)
            if run.done():
                self._finish(run)
                return
        self._hand_back(run, retries.LOST if lost else retries.REVOKED)

    def _hand_back(self, run: Running, reason: str) -> None:
        run.task.cancel.set()
        run.thread.join(timeout=10.0)
        run.handed_back = True
        self._mark(run.task.attempt, HANDED_BACK, reason)
        self._heartbeat(run.task, "handed_back", reason)
        metrics.TASKS.labels(self.stage.name, "handed_back").inc()
        metrics.HANDBACKS.labels(self.stage.name, retries.CAUSES[reason]).inc()
        log.warning("task handed back: %s", reason)
        self._resume()
        self.running = None
        metrics.IN_FLIGHT.labels(self.stage.name).set(0)

    # -- the loop ----------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM (drained) or a fatal error. Returns the exit code."""
        self.producer.init_transactions(30)
        self.consumer.subscribe(
            [self.stage.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
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
            if not self.healed & self.waiting_since.keys():
                self.on_turn()  # else /healthz fails: a restart is the cure left
            if self.stopping.is_set() and drain_deadline is None:
                drain_deadline = time.monotonic() + self.drain_timeout_s
                log.info("draining: no new tasks; finishing the current one")
            if drain_deadline is not None:
                if self.running is None:
                    return
                if time.monotonic() > drain_deadline:
                    self._hand_back(self.running, retries.STOPPED)
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
            log.warning(
                "%s[%d]@%d re-delivered after we committed up to %d: skipped", topic, partition, offset, done_below
            )
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
        self.waiting_since.clear()  # a record came: nothing is stuck
        self.healed.clear()
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        with task_context(topic=topic, partition=partition, offset=offset):
            try:
                event = self.registry.decode(msg.value() or b"", self.stage.schema or schema_for_topic(topic))
            except ContractError as exc:
                log.error("undecodable record: %s", exc)
                self._dead_letter(msg, None, GivenUp(Kind.BAD_INPUT, exc.kind, str(exc), 0))
                return
            try:  # before anything reads or writes storage for it
                tenancy.check_event(event, self.buckets)
            except tenancy.Refused as exc:
                log.error("refused: %s", exc)
                self._dead_letter(msg, event, GivenUp(Kind.BAD_INPUT, "refused", str(exc), 0))
                return
        ctx = {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "video_id": event["video_id"],
            "track": event["track"],
            "segment": event["segment_index"],
        }
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
            given_up = retries.escalation(previous, self.settings.max_attempts)
            if given_up is not None:
                log.error("escalating: %s", given_up.reason)
                self._dead_letter(msg, event, given_up)
                return
            if retries.died_before(previous):
                metrics.HANDBACKS.labels(self.stage.name, retries.CRASH).inc()
            attempt = self.attempts.begin(event, self.worker_id, retries.attempt_number(previous))
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
                self._check_outputs(run.outputs)
                self._save_checkpoint(run.task, run.outputs)
            except BaseException as exc:  # noqa: BLE001 - judged on the loop thread
                run.error = exc

    def _check_outputs(self, outputs: list[Output]) -> None:
        """An output its schema refuses is reel's own bug: it would fail the same way every
        attempt, so it is given up at once (kind internal) instead of inside the commit."""
        for o in outputs:
            try:
                self.registry.encode(o.schema or schema_for_topic(o.topic), o.record)
            except (ValueError, TypeError, KeyError) as exc:
                raise Permanent(f"{self.stage.name} made a {o.topic} its schema refuses: {exc}", Kind.INTERNAL) from exc

    def _save_checkpoint(self, task: Task, outputs: list[Output]) -> None:
        try:
            self.checkpoints.save(task.event, outputs)
        except Exception as exc:  # noqa: BLE001 - only a later attempt would have used it
            log.warning("checkpoint not saved: %s", exc)

    def _reuse(self, task: Task) -> list[Output] | None:
        """The outputs of an earlier attempt that finished its work but died before its
        commit, if every object they point at is still there; as this attempt's."""
        outputs = self.checkpoints.reusable(task.event)
        if outputs is None:
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
        ctx = {
            "topic": task.topic,
            "partition": task.partition,
            "offset": task.offset,
            "video_id": task.event["video_id"],
            "segment": task.event["segment_index"],
            "attempt": task.attempt.number,
        }
        with task_context(**ctx):
            metrics.TASK_SECONDS.labels(self.stage.name).observe(time.monotonic() - run.started)
            done = False  # whether the input's offset moved past this task
            result = retries.outcome(run.error, task.cancel.is_set())
            if result is Outcome.COMPLETED:
                done = self._commit(run.outputs or [], task)
                if done:
                    self._mark(task.attempt, COMPLETED)
                    metrics.TASKS.labels(self.stage.name, "completed").inc()
                    log.info("task completed in %.2fs", time.monotonic() - run.started)
                else:  # aborted (a fence, or a rebalance took the partition): not the task's fault
                    self._mark(task.attempt, HANDED_BACK, retries.ABORTED)
                    self._heartbeat(task, "handed_back", retries.ABORTED)
                    metrics.HANDBACKS.labels(self.stage.name, retries.CAUSES[retries.ABORTED]).inc()
            elif result is Outcome.HANDED_BACK:
                self._mark(task.attempt, HANDED_BACK, "cancelled")
            else:
                assert run.error is not None
                reason = redact(
                    str(run.error) if result is Outcome.PERMANENT else f"{type(run.error).__name__}: {run.error}"
                )
                kind = retries.kind_of(run.error)
                self._mark(task.attempt, FAILED, reason, kind.value if kind else "")
                if result is Outcome.PERMANENT:
                    log.error("permanent failure: %s", reason)
                    done = self._dead_letter_task(task, kind or Kind.BAD_INPUT, reason)
                else:
                    log.error("attempt failed: %s", reason, exc_info=run.error)
                    self._heartbeat(task, "failed", reason)
                    metrics.TASKS.labels(self.stage.name, "failed").inc()
            # Not done: the task runs again (a failed attempt is counted by its marker).
            next_offset = task.offset + 1 if done else task.offset
            self._resume(wake=TopicPartition(task.topic, task.partition, next_offset))
            self.last_activity = time.monotonic()

    def _mark(self, attempt: Attempt, state: str, reason: str = "", kind: str = "") -> None:
        """Record how an attempt ended. If storage is unreachable the marker stays
        "started", which counts the same as a failure: never worth a crash."""
        try:
            self.attempts.finish(attempt, state, reason, kind)
        except Exception as exc:  # noqa: BLE001
            log.warning("attempt marker not updated (%s): %s", state, exc)

    # -- transactions ------------------------------------------------------------
    def _commit(self, outputs: list[Output], task: Task) -> bool:
        """Outputs and the input's next offset in one transaction. False if aborted."""
        next_offset = [TopicPartition(task.topic, task.partition, task.offset + 1)]
        return self._transaction(outputs, next_offset, seek_back=True)

    def _transaction(self, outputs: list[Output], offsets: list[TopicPartition], seek_back: bool) -> bool:
        """One transaction; after an abort, seek_back sets each input back to its offset."""
        if not self.transactions.commit(outputs, offsets):
            if seek_back:
                for tp in offsets:
                    self._seek(tp.topic, tp.partition, tp.offset - 1)
            return False
        for tp in offsets:
            key = (tp.topic, tp.partition)
            self.committed_next[key] = max(tp.offset, self.committed_next.get(key, -1))
        for out in outputs:
            if out.topic == "video.failed":
                self._bury(out.record)
        fault_point("after-commit")
        return True

    def _bury(self, failed: dict[str, Any]) -> None:
        """A committed video.failed leaves a tombstone, so the video's tasks still in flight
        are skipped. The commit stands whatever happens here: a storage error only means
        those tasks run and their work stays (said loudly), never a crash after a commit."""
        keep = Kind(failed["kind"]) in retries.KEEPS_WORK  # exhausted: kept for `retry --segment`
        try:
            fault_point("before-bury")
            self.attempts.bury(failed, failed["reason"], keep_work=keep)
        except Exception as exc:  # noqa: BLE001
            log.error(
                "tombstone of failed video %s not written (%s): its tasks in flight will run", failed["video_id"], exc
            )

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
            tp
            for tp in positions
            if tp.offset >= 0
            and tp.offset
            > max(committed.get((tp.topic, tp.partition), -1), self.committed_next.get((tp.topic, tp.partition), -1))
        ]
        if ahead:
            log.debug("idle commit of %d partitions", len(ahead))
            self._transaction([], ahead, seek_back=False)
        self._watch_waiting(assignment, {(tp.topic, tp.partition): tp.offset for tp in positions}, committed)

    def _watch_waiting(self, assignment: list[TopicPartition], positions: Offsets, committed: Offsets) -> None:
        """At each idle commit: a partition we own whose records poll() has not delivered for
        REEL_STALLED_S is resumed and sought to where our commits say, once. If it still
        waits, the loop stops counting as live and /healthz fails.

        In one autoscale benchmark run a splitter owned a partition with a video waiting
        on it, polled, and was given nothing for twenty minutes (cause not found)."""
        now = time.monotonic()
        try:
            marks = watermarks(self.admin, [TopicPartition(tp.topic, tp.partition) for tp in assignment])
        except (KafkaException, TimeoutError) as exc:
            log.info("waiting records not checked: %s", exc.args[0])
            return
        waiting = set()
        for key, (low, end) in marks.items():
            at = max(positions.get(key, -1), committed.get(key, -1), self.committed_next.get(key, -1))
            if end > (at if at >= 0 else low):  # nothing committed yet: it starts at the earliest
                waiting.add(key)
        self.waiting_since = {k: self.waiting_since.get(k, now) for k in waiting}
        self.healed &= waiting
        for (topic, partition), since in self.waiting_since.items():
            if now - since < self.settings.stalled_s or (topic, partition) in self.healed:
                continue
            key = (topic, partition)
            offset = max(committed.get(key, -1), self.committed_next.get(key, -1), marks[key][0])
            waited = now - since
            log.warning("%s[%d]: records waiting %.0fs, none read: resumed at %d", topic, partition, waited, offset)
            metrics.STALLED.labels(self.stage.name).inc()
            self.consumer.resume([TopicPartition(topic, partition)])
            if offset >= 0:
                self._seek(topic, partition, offset)
            self.healed.add((topic, partition))
            self.waiting_since[(topic, partition)] = now

    # -- dead letters --------------------------------------------------------------
    def _dead_letter(self, msg: Message, event: dict[str, Any] | None, why: GivenUp) -> None:
        self._send_dead_letter(
            Input(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value() or b""), event, why
        )

    def _dead_letter_task(self, task: Task, kind: Kind, reason: str) -> bool:
        why = GivenUp(kind, "permanent", reason, retries.counted(self.attempts.markers(task.event)))
        return self._send_dead_letter(
            Input(task.topic, task.partition, task.offset, task.key, task.value), task.event, why
        )

    def _send_dead_letter(self, source: Input, event: dict[str, Any] | None, why: GivenUp) -> bool:
        why = dataclasses.replace(why, reason=redact(why.reason))  # stored and shown everywhere: no presigned URL
        outputs = [
            Output(
                dlq_topic(source.topic),
                (source.key or b"").decode(errors="replace"),
                retries.dead_letter(source, event, why, self.worker_id),
            )
        ]
        if event is not None and self.stage.on_dead_letter is not None:
            outputs += self.stage.on_dead_letter(event, why.reason, why.kind)
        if self._transaction(
            outputs, [TopicPartition(source.topic, source.partition, source.offset + 1)], seek_back=True
        ):
            metrics.DEAD_LETTERS.labels(source.topic, why.error_kind).inc()
            log.error("dead-lettered to %s: %s (%s)", dlq_topic(source.topic), why.reason, why.kind.value)
            return True
        return False

    # -- heartbeats ----------------------------------------------------------------
    def _heartbeat(self, task: Task, state: str, message: str | None = None) -> None:
        env = task.envelope("task.progress", event_id=str(uuid.uuid4()))
        record = {
            **env,
            "stage": self.stage.name,
            "state": state,
            "percent": task.percent,
            "media_seconds": self.stage.media_seconds(task.event),
            "worker": self.worker_id,
            "attempt_id": task.attempt.attempt_id,
            "message": message,
        }
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
