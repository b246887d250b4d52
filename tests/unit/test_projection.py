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


def test_failure_reasons_fall_into_few_classes() -> None:
    from services.tracker.projection import failure_class

    assert failure_class("stitch gate: 240p.mp4: 150 frames, expected 175") == "stitch-gate"
    assert failure_class("3 attempts failed or died; last: ffmpeg exited 1") == "attempts-exhausted"
    assert failure_class("source object reel-sources/x/y.mp4 does not exist") == "source-missing"
    assert failure_class("source is truncated: its video ends at 2.00s of 4.00s") == "source-truncated"
    assert failure_class("something nobody foresaw") == "other"


def test_a_failed_videos_percent_is_its_finished_work_whatever_the_heartbeats_said() -> None:
    segs = [Segment("transcoded", 10.0), Segment("pulled", 10.0, working="transcoder", work_percent=50.0)]
    assert video_percent(segs) == pytest.approx(100 * (9 + 5) / 20)  # live: the heartbeat counts
    assert settled_percent(segs) == pytest.approx(100 * (9 + 1) / 20)  # failed: only finished stages
