"""The stitch gate refuses to publish: segments that each pass their own check but do not
add up to the source end as video.failed with the gate's reason, and nothing is published.

The test plays the transcoder: real segments, encoded by the transcoder's own ffmpeg
arguments, reach the running pusher as segment.transcoded events. The events say the
source has 175 frames while the three segments hold 150, as a planner that dropped the
tail would; each segment is valid, only the joined video is short - the gate's case.
"""

from __future__ import annotations

import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

from reel import ladder, media
from reel.contract import envelope
from reel.media import flags
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import produce, wait
from services.transcoder.encode import Cut, segment_runs
from tests.e2e.client import status_when
from tests.e2e.test_tracker import metrics
from tests.e2e.test_untidy_inputs import events_for

FPS, GOP, SEGMENTS, WIDTH, HEIGHT = 25, 50, 3, 320, 240


def encode_segments(tmp: Path, profile: ladder.Profile) -> list[list[tuple[ladder.Rendition, Path]]]:
    span = tmp / "span.mp4"
    pattern = flags(f"-f lavfi -i testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS} -frames:v {GOP * SEGMENTS}")
    media.run_ffmpeg([*pattern, *flags(f"-c:v libx264 -g {GOP} -y"), str(span)], timeout=60)
    rends = ladder.renditions(profile, WIDTH, HEIGHT)
    out = []
    for i in range(SEGMENTS):
        paths = [tmp / f"{i}-{r.name}.mp4" for r in rends]
        at = Cut(seek=i * GOP / FPS, first_at=0.0)
        for args in segment_runs(span, at, GOP, Fraction(FPS), rends, profile, GOP, paths):
            media.run_ffmpeg(args, timeout=120)
        out.append(list(zip(rends, paths, strict=True)))
    return out


def transcoded_event(video_id: str, index: int, renditions: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {
        **envelope(video_id=video_id, producer="test-transcoder", segment_index=index),
        "source": {"bucket": "reel-sources", "key": f"{video_id}/src.mp4", "etag": "e", "size": 1},
        "profile": "tiny",
        "formats": ["mp4", "hls"],
        "fps_num": FPS,
        "fps_den": 1,
        "gop_frames": GOP,
        "start_frame": index * GOP,
        "frame_count": GOP,
        "segment_count": SEGMENTS,
        "total_frames": total,
        "video_start": 0.0,
        "has_audio": False,
        "display_width": WIDTH,
        "display_height": HEIGHT,
        "renditions": renditions,
    }


def test_a_failing_stitch_gate_fails_the_video_with_its_reason(
    fleet: Path, e2e_settings: Settings, tmp_path: Path
) -> None:
    storage = Storage.from_settings(e2e_settings)
    profile = ladder.load("tiny")
    video_id = str(uuid.uuid4())
    since_ms = int(time.time() * 1000)
    for i, rungs in enumerate(encode_segments(tmp_path, profile)):
        renditions = []
        for r, path in rungs:
            ref = storage.put_file(e2e_settings.bucket_work, f"{video_id}/0/test/{i}/{r.name}.mp4", path)
            renditions.append(
                {
                    "rung": r.name,
                    "codec": "h264",
                    "width": r.width,
                    "height": r.height,
                    "bitrate": r.bitrate,
                    "object": ref.as_record(),
                }
            )
        event = transcoded_event(video_id, i, renditions, total=GOP * SEGMENTS + FPS)
        produce(e2e_settings, "segment.transcoded", video_id, event)

    end = wait(e2e_settings, video_id, since_ms, timeout=180)
    assert end["topic"] == "video.failed", end
    assert end["stage"] == "pusher"
    assert end["reason"].startswith("stitch gate: "), end["reason"]
    assert "150" in end["reason"] and "175" in end["reason"], end["reason"]  # what the gate counted
    assert len(events_for(e2e_settings, "video.failed", video_id)) == 1
    assert not events_for(e2e_settings, "video.completed", video_id)
    assert not list(storage.list(e2e_settings.bucket_outputs, f"{video_id}/"))  # nothing published
    # Every segment was placed (each passed its own check) before the gate said no.
    assert len(events_for(e2e_settings, "segment.uploaded", video_id)) == SEGMENTS

    # The status endpoint carries the same reason, once the tracker has projected it (it may
    # still be a 404 when video.failed is read from Kafka: the tracker reads it too).
    status = status_when(video_id, "failed", timeout=30)
    failures = {k: v for k, v in metrics().items() if k.startswith("reel_video_failures_total")}
    assert failures.get('reel_video_failures_total{kind="stitch_gate",stage="pusher"}', 0) >= 1, failures
    assert status["error"]["stage"] == "pusher" and status["error"]["reason"] == end["reason"]
