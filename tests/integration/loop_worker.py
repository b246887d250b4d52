"""A worker process for the loop tests: the real loop with a handler that does real
work in object storage. Run as `python -m tests.integration.loop_worker`.

LOOP_STAGE, LOOP_IN, LOOP_OUT name the stage and topics; LOOP_WORK_S makes each task
keep reading and verifying its object for that long (one whose source key is "slow",
4 s whatever LOOP_WORK_S says); a task whose source key is "poison" SIGKILLs its
worker every time (as an OOM kill would); "hang" runs an ffmpeg that never ends, killed
at its 1 s timeout; "garbage" gives ffmpeg an input it refuses (a refusal of
reel/refusals.py); "strange" fails in words the table does not know; "refused" is
refused for good (Permanent), and with LOOP_FAIL_VIDEO=1 its video fails as a pipeline
stage's would. LOOP_REWIND=1 makes the consumer re-deliver what was just committed, as
librdkafka once did (issue #3); LOOP_LEAK_PAUSE leaves partitions paused (LeakingPauseWorker).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from reel import media
from reel.contract import task_fields
from reel.faults import fault_point
from reel.media import flags
from reel.service import start
from reel.storage import Storage
from reel.task import Kind, Output, Permanent, Stage, Task, fail_video
from reel.worker import Worker


def make_handler(storage: Storage, bucket: str, out_topic: str, work_s: float):
    def handle(task: Task) -> list[Output]:
        ev = task.event
        prefix = f"loop/{ev['video_id']}/{ev['segment_index']}/{task.attempt.attempt_id}/"
        payload = hashlib.sha256(ev["event_id"].encode()).digest() * 2048  # 64 KiB
        first = storage.put_bytes(bucket, prefix + "part1", payload)
        fault_point("mid-work")
        if ev["source"]["key"] == "refused":
            raise Permanent("the input is refused for good", Kind.BAD_INPUT)
        if ev["source"]["key"] == "poison":
            os.killpg(os.getpgrp(), signal.SIGKILL)
        if ev["source"]["key"] == "hang":  # an ffmpeg that never ends, as on a stuck input
            media.run_ffmpeg(
                ["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "null", "-"],
                timeout=1.0,
                cancel=task.cancel,
            )
        if ev["source"]["key"] == "strange":  # ffmpeg fails in words no refusal of the table has
            media.run_ffmpeg(flags("-f lavfi -i anullsrc -af nosuchfilter -f null -"), timeout=30, cancel=task.cancel)
        if ev["source"]["key"] == "garbage":  # an input ffmpeg refuses, the same way every time
            with tempfile.TemporaryDirectory() as tmp:
                junk = Path(tmp) / "junk.mp4"
                junk.write_bytes(bytes(65536))  # zeros: an MP4 without its moov atom
                media.run_ffmpeg(["-i", str(junk), "-f", "null", "-"], timeout=30, cancel=task.cancel)
        seconds = 4.0 if ev["source"]["key"] == "slow" else work_s
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not task.cancel.is_set():
            assert storage.get_bytes(bucket, first.key) == payload
            task.report(100 * (1 - (deadline - time.monotonic()) / seconds))
        if task.cancel.is_set():
            raise RuntimeError("cancelled")
        result = storage.put_bytes(bucket, prefix + "result", hashlib.sha256(payload).hexdigest().encode())
        record = {**task.envelope(out_topic), **task_fields(ev), "span": result.as_record(), "span_start": 0.0}
        return [Output(out_topic, (task.key or b"").decode(), record, "reel.events.SegmentPulled")]

    return handle


class RewindingWorker(Worker):
    """After every task, seeks every partition back to offset 0: the consumer re-delivers
    inputs whose outputs are already committed."""

    def _resume(self, wake: TopicPartition | None = None) -> None:
        super()._resume(wake)
        for tp in self.consumer.assignment():
            self._seek(tp.topic, tp.partition, 0)


class LeakingPauseWorker(Worker):
    """Pauses the partitions it is first given with no bookkeeping, as a resume lost in the
    client would leave them (LOOP_LEAK_PAUSE=once), or again after every watch (always)."""

    leaked = False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        super()._on_assign(consumer, partitions)
        if partitions and not self.leaked:
            consumer.pause(partitions)
            self.leaked = True

    def _watch_waiting(self, *args: Any) -> None:
        super()._watch_waiting(*args)
        if os.environ["LOOP_LEAK_PAUSE"] == "always":
            self.consumer.pause(self.consumer.assignment())


def main() -> int:
    proc = start("loop")
    env = os.environ
    storage = Storage.from_settings(proc.settings)
    handler = make_handler(storage, proc.settings.bucket_work, env["LOOP_OUT"], float(env.get("LOOP_WORK_S", "0")))
    fails_video = fail_video(env["LOOP_STAGE"]) if env.get("LOOP_FAIL_VIDEO") == "1" else None
    stage = Stage(
        env["LOOP_STAGE"], env["LOOP_IN"], handler, schema="reel.events.SegmentRequested", on_dead_letter=fails_video
    )
    worker = RewindingWorker if env.get("LOOP_REWIND") == "1" else Worker
    worker = LeakingPauseWorker if env.get("LOOP_LEAK_PAUSE") else worker
    return worker(stage, proc.settings, storage, proc.stopping, on_turn=proc.health.tick).run()


if __name__ == "__main__":
    sys.exit(main())
