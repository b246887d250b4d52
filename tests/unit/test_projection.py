from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tracker.projection import (
    VIDEO_STATES,
    Beat,
    Segment,
    all_uploaded,
    backlog,
    current_work,
    later,
    merge_beat,
    merge_segment,
    merge_video,
    oldest,
    percent_after,
    segment_progress,
    settled_percent,
    stalled,
    video_percent,
)


def test_progress_follows_stage_cost_and_heartbeats() -> None:
    assert segment_progress(Segment("requested", 10)) == 0.0
    assert segment_progress(Segment("pulled", 10, "transcoder", 50)) == 0.1 + 0.8 * 0.5
    assert segment_progress(Segment("uploaded", 10, "pusher", 10)) == 1.0
    # A stale heartbeat (the segment is past that worker's stage) is ignored.
    assert segment_progress(Segment("transcoded", 10, "puller", 10)) == 0.9


def test_percent_is_weighted_by_media_seconds() -> None:
    segs = [Segment("uploaded", 30), Segment("requested", 10)]
    assert video_percent(segs) == 75.0
    assert video_percent([]) == 0.0


def test_stitching_needs_every_unit() -> None:
    assert all_uploaded([Segment("uploaded", 1)] * 4, 4)
    assert not all_uploaded([Segment("uploaded", 1)] * 3, 4)
    assert not all_uploaded([Segment("uploaded", 1), Segment("transcoded", 1)], 2)


def test_stalled_only_while_a_worker_holds_it() -> None:
    assert stalled(20.0, "transcoder", "pulled", 15.0)
    assert not stalled(5.0, "transcoder", "pulled", 15.0)
    assert not stalled(20.0, "transcoder", "transcoded", 15.0)
    assert current_work("uploaded", "pusher") is None and current_work("pulled", "transcoder") == "transcoder"


def test_a_failed_videos_percent_is_its_finished_work_whatever_the_heartbeats_said() -> None:
    segs = [Segment("transcoded", 10.0), Segment("pulled", 10.0, working="transcoder", work_percent=50.0)]
    assert video_percent(segs) == pytest.approx(100 * (9 + 5) / 20)  # live: the heartbeat counts
    assert settled_percent(segs) == pytest.approx(100 * (9 + 1) / 20)  # failed: only finished stages


# -- merging events into rows, in any order -------------------------------------------
VIDEO_EVENTS = [  # (generation, state, fields) as the tracker's events set them
    (0, "queued", {"profile": "tiny", "request_id": "r"}),
    (0, "splitting", {}),
    (0, "transcoding", {"segment_count": 3, "duration": 6.0}),
    (0, "stitching", {}),
    (0, "failed", {"error": "stitch gate: 240p.mp4: a gap", "error_kind": "stitch_gate"}),
    (1, "queued", {"profile": "tiny", "request_id": "r"}),
    (1, "transcoding", {"segment_count": 3, "duration": 6.0}),
    (1, "completed", {"outputs": [{"kind": "mp4"}]}),
]


def fold_video(events: list[tuple[int, str, dict]]) -> dict | None:
    row = None
    for generation, state, fields in events:
        row = merge_video(row, generation, state, fields) or row
    return row


@settings(max_examples=200, deadline=None)
@given(st.permutations(VIDEO_EVENTS))
def test_a_video_row_is_the_same_whatever_order_its_events_arrive_in(events: list) -> None:
    got = fold_video(events)
    assert got == fold_video(VIDEO_EVENTS)
    assert got is not None and got["generation"] == 1 and got["state"] == "completed" and got["percent"] == 100.0
    assert got["error"] is None and got["error_kind"] is None  # the failed generation left nothing behind


def test_an_older_generations_event_changes_nothing() -> None:
    newer = merge_video(None, 2, "queued", {"profile": "tiny"})
    assert merge_video(newer, 1, "failed", {"error": "late"}) is None
    assert later(VIDEO_STATES, "completed", "failed") == "failed"  # a failure after completion is kept


SEGMENT_EVENTS = [
    ("requested", {"attempt": 1, "worker": "splitter-0"}),
    ("pulled", {"attempt": 1, "worker": "puller-0"}),
    ("transcoded", {"attempt": 2, "worker": "transcoder-1"}),
    ("planned", {"media_seconds": 4.0}),
    ("uploaded", {"attempt": 2, "worker": "pusher-0"}),
]
T0 = datetime(2026, 12, 1, tzinfo=UTC)
BEATS = [
    Beat(1, "transcoder-0", "transcoder", 40.0, False, T0, None),
    Beat(2, "transcoder-1", "transcoder", 10.0, True, T0 + timedelta(seconds=5), None),
    Beat(1, "transcoder-0", None, 60.0, False, T0 + timedelta(seconds=2), "MediaError: x"),
]


@settings(max_examples=200, deadline=None)
@given(st.permutations([*SEGMENT_EVENTS, *BEATS]))
def test_a_segment_row_is_the_same_whatever_order_its_events_and_beats_arrive_in(events: list) -> None:
    def fold(items: list) -> dict:
        row = None
        for item in items:
            row = merge_beat(row, item) if isinstance(item, Beat) else merge_segment(row, item[0], **item[1])
        assert row is not None
        return row

    got = fold(events)
    assert got == fold([*SEGMENT_EVENTS, *BEATS])
    assert (got["stage"], got["worker"], got["attempt"], got["media_seconds"]) == ("uploaded", "pusher-0", 2, 4.0)
    assert (got["working"], got["work_percent"], got["last_beat"]) == ("transcoder", 10.0, T0 + timedelta(seconds=5))
    assert got["retrying"] and got["error"] == "MediaError: x"


def test_percent_never_goes_back_in_flight_and_settles_on_failure() -> None:
    segs = [Segment("transcoded", 10.0), Segment("pulled", 10.0, working="transcoder", work_percent=50.0)]
    assert percent_after("transcoding", 80.0, segs) == 80.0  # an older, higher reading stands
    assert percent_after("transcoding", 10.0, segs) == pytest.approx(70.0)
    assert percent_after("failed", 80.0, segs) == pytest.approx(50.0)  # what was finished
    assert percent_after("completed", 100.0, []) == 100.0


def test_each_group_backlog_is_the_work_it_has_still_to_do_weighted_by_stage_cost() -> None:
    units = [("planned", 4.0), ("requested", 10.0), ("pulled", 20.0), ("pulled", 2.0), ("transcoded", 5.0)]
    got = backlog([*units, ("uploaded", 300.0)], stitching_s=40.0)
    assert got.keys() == {"reel.puller", "reel.transcoder", "reel.pusher"}
    assert got["reel.puller"] == pytest.approx((4 + 10) * 0.1)
    assert got["reel.transcoder"] == pytest.approx((4 + 10 + 20 + 2) * 0.8)  # what is still to pull counts too
    assert got["reel.pusher"] == pytest.approx((4 + 10 + 20 + 2 + 5) * 0.1 + 40 * 0.1)  # and a stitch
    assert backlog([("uploaded", 300.0)], 0.0) == {"reel.puller": 0.0, "reel.transcoder": 0.0, "reel.pusher": 0.0}
    assert backlog([], 0.0) == {"reel.puller": 0.0, "reel.transcoder": 0.0, "reel.pusher": 0.0}  # idle: 0


def test_two_failures_of_one_generation_keep_the_first_time_in_either_order() -> None:
    """A video deleted twice (DELETE /videos/{id}) gets two video.failed events: a replay
    in any order must show the same row."""
    from datetime import UTC, datetime

    from services.tracker.projection import merge_video

    first, second = datetime(2026, 12, 2, 3, 5, 30, tzinfo=UTC), datetime(2026, 12, 2, 3, 5, 31, tzinfo=UTC)
    base = merge_video(None, 0, "completed", {"completed_at": first})
    rows = []
    for a, b in ((first, second), (second, first)):
        row = merge_video(base, 0, "failed", {"failed_at": a, "error": "deleted"})
        rows.append(merge_video(row, 0, "failed", {"failed_at": b, "error": "deleted"}))
    assert rows[0] == rows[1] and rows[0]["failed_at"] == first and rows[0]["state"] == "failed"


def test_the_oldest_video_and_lateness_per_state_weigh_each_videos_length() -> None:
    ages = [("transcoding", 100.0, 10.0), ("transcoding", 400.0, 600.0), ("queued", 50.0, None)]
    out = oldest(ages, base_s=60.0, per_media_s=2.0)
    # transcoding: the older one (400 s) is the long one, budget 60 + 2 x 600 = 1260 s, not late;
    # the 10 s one is, at 100 / (60 + 20) = 1.25.
    assert out["transcoding"] == (400.0, 1.25)
    assert out["queued"] == (50.0, 50.0 / 60.0)  # no length yet: the base budget
    assert out["splitting"] == (0.0, 0.0) and out["stitching"] == (0.0, 0.0)  # empty states read 0
    assert "completed" not in out and "failed" not in out
