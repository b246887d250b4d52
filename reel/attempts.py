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
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from reel.storage import ObjectMissing, Storage

STARTED, COMPLETED, FAILED, HANDED_BACK = "started", "completed", "failed", "handed_back"


@dataclass(frozen=True)
class Marker:
    attempt_id: str
    state: str
    worker: str
    started_at: float
    reason: str = ""


def task_path(stage: str, event: dict[str, Any]) -> str:
    """Where a task's markers (and its attempts' work) live, from the envelope."""
    segment = "all" if event.get("segment_index") is None else f"{event['segment_index']:05d}"
    return f"{event['video_id']}/{event['generation']}/{event['track']}/{segment}/{stage}"


def failed_attempts(markers: Iterable[Marker]) -> int:
    """Attempts that failed or died (no completion, no hand-back)."""
    return sum(1 for m in markers if m.state in (STARTED, FAILED))


@dataclass(frozen=True)
class Attempt:
    attempt_id: str
    number: int  # 1-based: previous markers + 1; travels in the output envelope
    failed_before: int
    key: str
    marker: Marker


class Attempts:
    def __init__(self, storage: Storage, bucket: str, stage: str) -> None:
        self.storage, self.bucket, self.stage = storage, bucket, stage

    def prefix(self, event: dict[str, Any]) -> str:
        return f"attempts/{task_path(self.stage, event)}/"

    def markers(self, event: dict[str, Any]) -> list[Marker]:
        out = []
        for key in sorted(self.storage.list(self.bucket, self.prefix(event))):
            out.append(Marker(**json.loads(self.storage.get_bytes(self.bucket, key))))
        return out

    def begin(self, event: dict[str, Any], worker: str, previous: list[Marker]) -> Attempt:
        attempt_id = uuid.uuid4().hex
        # Time-ordered names, so listing shows the attempts in order.
        key = f"{self.prefix(event)}{time.time_ns():020d}-{attempt_id}.json"
        marker = Marker(attempt_id, STARTED, worker, time.time())
        self._write(key, marker)
        return Attempt(attempt_id, len(previous) + 1, failed_attempts(previous), key, marker)

    def finish(self, attempt: Attempt, state: str, reason: str = "") -> None:
        marker = Marker(attempt.attempt_id, state, attempt.marker.worker,
                        attempt.marker.started_at, reason[:2000])  # fmt: skip
        self._write(attempt.key, marker)

    # -- checkpoints: the finished work of an attempt that died before its commit ----
    # Saved when the handler returns, before the transaction; a later attempt whose
    # objects all still exist reuses it instead of doing the work again. Under the
    # video's generation prefix, so a failure's clean-up removes it too.
    def checkpoint_key(self, event: dict[str, Any]) -> str:
        segment = "all" if event.get("segment_index") is None else f"{event['segment_index']:05d}"
        return f"{event['video_id']}/{event['generation']}/checkpoints/{event['track']}/{segment}/{self.stage}.json"

    def save_checkpoint(self, event: dict[str, Any], outputs: list[dict[str, Any]]) -> None:
        self.storage.put_bytes(self.bucket, self.checkpoint_key(event), json.dumps(outputs).encode())

    def checkpoint(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        key = self.checkpoint_key(event)
        if not self.storage.exists(self.bucket, key):
            return None
        return list(json.loads(self.storage.get_bytes(self.bucket, key)))

    # -- failed videos -------------------------------------------------------------
    # A committed video.failed leaves a tombstone; every stage then skips that video's
    # tasks still in flight and removes their work, so a failure leaves nothing behind.
    # Except when a segment exhausted its attempts: then the generation's finished work
    # is kept (`keep_work`), for `reel retry --segment` to reuse.
    def tombstone(self, event: dict[str, Any]) -> str:
        return f"failed/{event['video_id']}/{event['generation']}.json"

    def bury(self, event: dict[str, Any], reason: str, keep_work: bool = False) -> None:
        body = {"reason": reason, "keep_work": keep_work}
        self.storage.put_bytes(self.bucket, self.tombstone(event), json.dumps(body).encode())
        if not keep_work:
            self.clear_work(event)

    def buried(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The tombstone of the event's generation, if it failed."""
        try:
            return dict(json.loads(self.storage.get_bytes(self.bucket, self.tombstone(event))))
        except ObjectMissing:
            return None

    def clear_work(self, event: dict[str, Any]) -> None:
        self.storage.remove_prefix(self.bucket, f"{event['video_id']}/{event['generation']}/")

    def _write(self, key: str, marker: Marker) -> None:
        self.storage.put_bytes(self.bucket, key, json.dumps(asdict(marker)).encode())
