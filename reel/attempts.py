"""Attempt markers in object storage: the re-queue's memory across crashes.

Each attempt first writes a marker named by a unique attempt id, then updates it
when it completes, fails or hands the task back. A marker still "started" when the
task comes round again belongs to an attempt that died. Failed and dead attempts
count toward escalation; hand-backs (rebalance, SIGTERM) do not.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from reel import keys
from reel.storage import ObjectMissing, Storage

STARTED, COMPLETED, FAILED, HANDED_BACK = "started", "completed", "failed", "handed_back"


@dataclass(frozen=True)
class Marker:
    attempt_id: str
    state: str
    worker: str
    started_at: float
    reason: str = ""
    kind: str = ""  # of a failure, when it was the machine's (reel.task.Kind)


@dataclass(frozen=True)
class Attempt:
    attempt_id: str
    number: int  # 1 + the attempts before it that failed or died; travels in the output envelope
    key: str
    marker: Marker


class Attempts:
    def __init__(self, storage: Storage, bucket: str, stage: str) -> None:
        self.storage, self.bucket, self.stage = storage, bucket, stage

    def markers(self, event: dict[str, Any]) -> list[Marker]:
        out = []
        for key in sorted(self.storage.list(self.bucket, keys.attempts_prefix(self.stage, event))):
            out.append(Marker(**json.loads(self.storage.get_bytes(self.bucket, key))))
        return out

    def begin(self, event: dict[str, Any], worker: str, number: int) -> Attempt:
        attempt_id = uuid.uuid4().hex
        key = keys.attempt_marker(self.stage, event, time.time_ns(), attempt_id)
        marker = Marker(attempt_id, STARTED, worker, time.time())
        self._write(key, marker)
        return Attempt(attempt_id, number, key, marker)

    def finish(self, attempt: Attempt, state: str, reason: str = "", kind: str = "") -> None:
        marker = Marker(
            attempt.attempt_id, state, attempt.marker.worker, attempt.marker.started_at, reason[:2000], kind
        )
        self._write(attempt.key, marker)

    # -- failed videos -------------------------------------------------------------
    # A committed video.failed leaves a tombstone; every stage then skips that video's
    # tasks still in flight and removes their work, so a failure leaves nothing behind.
    # Except when a segment exhausted its attempts: then the generation's finished work
    # is kept (`keep_work`), for `reel retry --segment` to reuse.
    def bury(self, event: dict[str, Any], reason: str, keep_work: bool = False) -> None:
        body = {"reason": reason, "keep_work": keep_work}
        self.storage.put_bytes(self.bucket, keys.tombstone(event), json.dumps(body).encode())
        if not keep_work:
            self.clear_work(event)

    def buried(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The tombstone of the event's generation, if it failed."""
        try:
            return dict(json.loads(self.storage.get_bytes(self.bucket, keys.tombstone(event))))
        except ObjectMissing:
            return None

    def clear_work(self, event: dict[str, Any]) -> None:
        self.storage.remove_prefix(self.bucket, keys.generation(event))

    def _write(self, key: str, marker: Marker) -> None:
        self.storage.put_bytes(self.bucket, key, json.dumps(asdict(marker)).encode())
