"""When a task runs again and when it is given up (reel/retries.py)."""

from __future__ import annotations

import errno

import pytest

from reel.attempts import COMPLETED, FAILED, HANDED_BACK, STARTED, Marker
from reel.contract import Registry
from reel.retries import (
    GivenUp,
    Input,
    Outcome,
    attempt_number,
    counted,
    dead_letter,
    escalation,
    kind_of,
    last_reason,
    outcome,
)
from reel.task import Kind, Permanent


def marker(state: str, reason: str = "", kind: str = "") -> Marker:
    return Marker("id", state, "w-0", 0.0, reason, kind)


@pytest.mark.parametrize(
    "error,cancelled,expected",
    [
        (None, False, Outcome.COMPLETED),
        (None, True, Outcome.COMPLETED),  # done before the cancel: commit it
        (Permanent("corrupt"), False, Outcome.PERMANENT),
        (Permanent("corrupt"), True, Outcome.PERMANENT),
        (RuntimeError("ffmpeg exited 1"), True, Outcome.HANDED_BACK),
        (RuntimeError("x"), False, Outcome.FAILED),
    ],
)
def test_an_outcome_is_judged_by_its_error_and_the_cancel(
    error: BaseException | None, cancelled: bool, expected: Outcome
) -> None:
    assert outcome(error, cancelled) is expected


def test_hand_backs_neither_count_nor_make_a_retry() -> None:
    history = [marker(HANDED_BACK), marker(STARTED), marker(HANDED_BACK), marker(FAILED, "x"), marker(COMPLETED)]
    assert counted(history) == 2  # one died (still started), one failed
    assert attempt_number([marker(HANDED_BACK), marker(HANDED_BACK)]) == 1  # not "retrying"
    assert attempt_number(history) == 3


def test_the_task_is_given_up_at_exactly_n_counted_attempts() -> None:
    two = [marker(FAILED, "MediaError: ffmpeg exited with 1: Invalid data"), marker(HANDED_BACK), marker(STARTED)]
    assert escalation(two, 3) is None
    three = [*two, marker(FAILED, "MediaError: ffmpeg exited with 1: Invalid data")]
    given_up = escalation(three, 3)
    assert given_up is not None and given_up.failed == 3 and given_up.kind is Kind.ATTEMPTS_EXHAUSTED
    assert given_up.reason == "3 attempts failed or died; last: MediaError: ffmpeg exited with 1: Invalid data"
    died = escalation([*three[:3], marker(STARTED)], 3)
    assert died is not None and died.reason.endswith("the worker died mid-task (killed or out of memory)")
    assert (
        last_reason([marker(HANDED_BACK, "partition revoked")]) == "the worker died mid-task (killed or out of memory)"
    )


def test_a_machine_that_keeps_failing_is_named_as_the_cause() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert kind_of(full) is Kind.ENVIRONMENT and kind_of(MemoryError()) is Kind.ENVIRONMENT
    assert kind_of(RuntimeError("x")) is None and kind_of(Permanent("gone", Kind.SOURCE_MISSING)) is Kind.SOURCE_MISSING
    history = [marker(FAILED, "OSError: no space", Kind.ENVIRONMENT.value)] * 3
    given_up = escalation(history, 3)
    assert given_up is not None and given_up.kind is Kind.ENVIRONMENT


def test_a_dead_letter_carries_the_input_and_fits_its_schema() -> None:
    source = Input("segment.pulled", 3, 41, b"v:video:1", b"\xc3\x01...")
    event = {"video_id": "v", "generation": 2, "track": "video", "segment_index": 1}
    why = GivenUp(Kind.ATTEMPTS_EXHAUSTED, "attempts-exhausted", "3 attempts failed", 3)
    record = dead_letter(source, event, why, "transcoder-0")
    registry = Registry()
    decoded = registry.decode_for_topic("segment.pulled.dlq", registry.encode_for_topic("segment.pulled.dlq", record))
    assert decoded["kind"] == "attempts_exhausted" and decoded["original_offset"] == 41
    assert decoded["segment_index"] == 1 and decoded["generation"] == 2 and decoded["failed_attempts"] == 3
    again = dead_letter(
        Input("segment.pulled", 3, 41, None, b""), None, GivenUp(Kind.BAD_INPUT, "malformed", "r", 0), "p"
    )
    assert again["event_id"] == record["event_id"]  # one dead letter per input, however often it is written
