"""What a handler is written against: its task, the outputs it returns, the failure it
may declare, and the stage that binds it into the loop (reel/worker.py). No Kafka here:
a handler is a function of a decoded event and its dependencies.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from reel import tenancy
from reel.attempts import Attempt
from reel.contract import envelope
from reel.pipeline import StageSpec
from reel.settings import Settings
from reel.storage import Storage

EVENT_NS = uuid.UUID("5b0c3a52-2f7e-4e0b-9d7e-2a9a4c1f6e11")


@dataclass(frozen=True)
class Deps:
    """What every handler is given: the settings and the object store."""

    settings: Settings
    storage: Storage


class Kind(str, Enum):
    """Why a video failed: the `kind` of video.failed and of a dead letter."""

    BAD_INPUT = "bad_input"  # corrupt, truncated, not media; a request reel cannot read
    UNSUPPORTED_INPUT = "unsupported_input"  # media, but not what reel makes videos of
    SOURCE_MISSING = "source_missing"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    STITCH_GATE = "stitch_gate"
    ENVIRONMENT = "environment"  # the machine, not the input: disk full, out of memory
    INTERNAL = "internal"  # reel broke its own contract (an output its schema refuses)
    CANCELLED = "cancelled"  # its tenant cancelled it, or deleted it once finished (DELETE /videos/{id})
    UNKNOWN = "unknown"  # written before events carried a kind


class Permanent(Exception):
    """The input can never succeed (corrupt, unsupported, …): dead-letter it now."""

    def __init__(self, reason: str, kind: Kind = Kind.BAD_INPUT) -> None:
        super().__init__(reason)
        self.kind = kind


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
            video_id=e["video_id"],
            producer=self.worker_id,
            generation=e["generation"],
            track=e["track"],
            segment_index=e["segment_index"],
            attempt=self.attempt.number,
            event_id=str(uuid.uuid5(EVENT_NS, f"{e['event_id']}/{topic}/{n}")),
            trace_id=e.get("trace_id"),
            tenant=e["tenant"],
        )
        env.update(changes)
        return env


Handler = Callable[[Task], list[Output]]
DeadLetterHook = Callable[[dict[str, Any], str, Kind], list[Output]]


@dataclass(frozen=True)
class Stage:
    name: str  # names the group, the transactional ids and the markers
    topic: str  # input topic
    handle: Handler
    schema: str | None = None  # input event type; default the topic's
    on_dead_letter: DeadLetterHook | None = None  # e.g. a video.failed for the video
    media_seconds: Callable[[dict[str, Any]], float] = lambda _e: 0.0

    @classmethod
    def of(cls, spec: StageSpec, handle: Handler, **options: Any) -> Stage:
        """A pipeline stage: its input from the table, and a dead letter fails the video."""
        return cls(spec.name, spec.input, handle, on_dead_letter=fail_video(spec.name), **options)


def fail_video(stage: str) -> DeadLetterHook:
    """The dead-letter hook of every pipeline stage: the video fails with the reason."""

    def hook(event: dict[str, Any], reason: str, kind: Kind) -> list[Output]:
        env = envelope(
            video_id=event["video_id"],
            producer=stage,
            generation=event["generation"],
            track=event["track"],
            segment_index=event["segment_index"],
            attempt=event.get("attempt", 1),
            trace_id=event.get("trace_id"),
            tenant=tenancy.known(event),
            event_id=str(uuid.uuid5(EVENT_NS, f"{event['event_id']}/video.failed")),
        )
        return [
            Output("video.failed", event["video_id"], video_failed(env, stage, reason, kind, event.get("callback_url")))
        ]

    return hook


def video_failed(env: dict[str, Any], stage: str, reason: str, kind: Kind, callback_url: str | None) -> dict[str, Any]:
    """A video.failed record: the envelope, who failed it, why, and where to call back."""
    return {**env, "stage": stage, "reason": reason, "kind": kind.value, "detail": None, "callback_url": callback_url}
