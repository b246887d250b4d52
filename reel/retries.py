"""When a task runs again and when it is given up, decided in one place (pure).

Every attempt leaves a marker (reel/attempts.py). Attempts that failed, and attempts that
died (a marker still `started` when the task comes round again: killed, out of memory, a
lost node), are counted; attempts handed back (a rebalance, a drain, an aborted commit)
are not: the task was not at fault. At `max_attempts` counted ones the task is escalated
to its stage's dead letters instead of crash-looping the fleet. A failure that can never
succeed (reel.task.Permanent, an undecodable record) is escalated at once.
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from reel import tenancy
from reel.attempts import COMPLETED, FAILED, HANDED_BACK, STARTED, Marker
from reel.contract import ContractError, envelope
from reel.media import MediaError
from reel.task import EVENT_NS, Kind, Permanent


class Outcome(Enum):
    COMPLETED = COMPLETED
    HANDED_BACK = HANDED_BACK
    FAILED = FAILED
    PERMANENT = "permanent"


# Exhausted attempts leave the rest of the video's work for `reel retry --segment`.
KEEPS_WORK = (Kind.ATTEMPTS_EXHAUSTED, Kind.ENVIRONMENT)
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.ENOMEM)


def outcome(error: BaseException | None, cancelled: bool) -> Outcome:
    """How a handler's run ended (a commit may still abort a completed one: a hand-back)."""
    if error is None:
        return Outcome.COMPLETED
    if isinstance(error, Permanent) or (isinstance(error, MediaError) and error.verdict is not None):
        return Outcome.PERMANENT  # declared, or a refusal of ffmpeg's that a retry cannot change
    if cancelled:  # cancelled mid-work by a revoke or a drain: not a failure
        return Outcome.HANDED_BACK
    return Outcome.FAILED


def kind_of(error: BaseException) -> Kind | None:
    """The kind a failed attempt records: the machine's fault, a declared one, or none."""
    if isinstance(error, Permanent):
        return error.kind
    if isinstance(error, MediaError) and error.verdict is not None:
        return error.verdict.kind
    if isinstance(error, ContractError):
        return Kind.BAD_INPUT
    if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS):
        return Kind.ENVIRONMENT
    return None


# Why a running task is handed back (its marker's reason), and the cause it is counted
# under (reel_handbacks_total{cause}): a rebalance moved its partition (a member joined
# or left: scaling), its member lost the group (a stall, a cut), a SIGTERM's drain ran
# out (a scale-in or a stop), its finished work's commit was aborted (a fence, or a
# generation it could not catch up with), or the attempt died and the next one took it
# over (crash).
REVOKED = "partition revoked in a rebalance"
LOST = "partition lost"
STOPPED = "stopped before the task could finish"
ABORTED = "commit aborted"
CAUSES = {REVOKED: "rebalance", LOST: "lost", STOPPED: "sigterm", ABORTED: "aborted"}
CRASH = "crash"


def died_before(markers: list[Marker]) -> bool:
    """The attempt before this one died mid-task (its marker never ended)."""
    return bool(markers) and markers[-1].state == STARTED


def counted(markers: Iterable[Marker]) -> int:
    """Attempts that failed or died (no completion, no hand-back)."""
    return sum(1 for m in markers if m.state in (STARTED, FAILED))


def attempt_number(markers: Iterable[Marker]) -> int:
    """The number the next attempt carries: hand-backs do not make a task a retry."""
    return counted(markers) + 1


def escalation(markers: list[Marker], max_attempts: int) -> GivenUp | None:
    """Give the task up, and why, once max_attempts attempts failed or died."""
    failed = counted(markers)
    if failed < max_attempts:
        return None
    last = _last_counted(markers)
    kind = Kind(last.kind) if last is not None and last.kind == Kind.ENVIRONMENT.value else Kind.ATTEMPTS_EXHAUSTED
    return GivenUp(
        kind, "attempts-exhausted", f"{failed} attempts failed or died; last: {last_reason(markers)}", failed
    )


def _last_counted(markers: list[Marker]) -> Marker | None:
    counted_ones = [m for m in markers if m.state in (STARTED, FAILED)]
    return counted_ones[-1] if counted_ones else None


def last_reason(markers: list[Marker]) -> str:
    last = _last_counted(markers)
    if last is not None and last.state == FAILED and last.reason:
        return last.reason
    return "the worker died mid-task (killed or out of memory)"


@dataclass(frozen=True)
class Input:
    """Where a task's input record was read, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


# The loop's finer word for why an input was given up (a dead letter's error_kind):
# ContractError.kind's two, a refused tenant or key, a permanent failure, too many attempts.
ERROR_KINDS = ("malformed", "unknown-schema", "refused", "permanent", "attempts-exhausted")


@dataclass(frozen=True)
class GivenUp:
    """Why an input is given up: the kind, the loop's finer word, the reason, how often."""

    kind: Kind
    error_kind: str  # one of ERROR_KINDS
    reason: str
    failed: int


def dead_letter(source: Input, event: dict[str, Any] | None, why: GivenUp, producer: str) -> dict[str, Any]:
    """The dead letter of an input: where it was, the original bytes, why and how often."""
    e = event or {}
    env = envelope(
        video_id=e.get("video_id", "unknown"),
        producer=producer,
        generation=e.get("generation", 0),
        track=e.get("track", "video"),
        segment_index=e.get("segment_index"),
        tenant=tenancy.known(e),
        event_id=str(uuid.uuid5(EVENT_NS, f"{source.topic}/{source.partition}/{source.offset}/dead-letter")),
    )
    where = {
        "original_topic": source.topic,
        "original_partition": source.partition,
        "original_offset": source.offset,
        "original_key": source.key,
        "original_value": source.value,
    }
    return {
        **env,
        **where,
        "reason": why.reason,
        "kind": why.kind.value,
        "error_kind": why.error_kind,
        "failed_attempts": why.failed,
    }
