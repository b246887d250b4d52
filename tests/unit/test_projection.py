import pytest

from services.tracker.projection import (
    Segment,
    all_uploaded,
    current_work,
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
