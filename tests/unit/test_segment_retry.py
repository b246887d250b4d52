"""Which failed videos a segment retry may re-drive (pure: the tracker's check)."""

import pytest
from fastapi.exceptions import RequestValidationError

from services.tracker.retry import Conflict, check_segment_retry


def failed(reason: str, stage: str = "transcoder", kind: str = "attempts_exhausted") -> dict:
    return {
        "video_id": "v",
        "generation": 0,
        "error": reason,
        "error_stage": stage,
        "error_kind": kind,
        "segments": [{"track": "video", "segment_index": i} for i in range(3)]
        + [{"track": "audio", "segment_index": -1}],
    }


def test_a_segment_that_exhausted_its_attempts_can_be_redone_alone() -> None:
    check_segment_retry(failed("3 attempts failed or died; last: the worker died mid-task"), 1)


def test_a_failure_that_kept_nothing_must_be_retried_whole() -> None:
    with pytest.raises(Conflict, match="retry it whole"):
        check_segment_retry(failed("source object b/k does not exist", "splitter", "source_missing"), 0)
    with pytest.raises(Conflict, match="retry it whole"):  # written before kinds: nothing is known kept
        check_segment_retry(failed("3 attempts failed or died; last: x", kind="unknown"), 0)


@pytest.mark.parametrize("segment", [-1, 3, 99])
def test_a_segment_the_plan_does_not_have_is_refused(segment: int) -> None:
    with pytest.raises(RequestValidationError) as exc:
        check_segment_retry(failed("3 attempts failed or died; last: x"), segment)
    assert "video segments 0..2" in exc.value.errors()[0]["msg"]
