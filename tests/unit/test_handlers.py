"""Each handler's decisions, in process: real ffmpeg and the real Avro contract, an object
store in a folder, no broker (tests/harness.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devstack.clips import synthetic
from reel import PROJECT_ROOT
from reel.contract import envelope
from reel.pipeline import PULLER, PUSHER, SPLITTER, TRANSCODER
from reel.segment import media_seconds
from reel.settings import Settings, load
from reel.task import Deps, Permanent, Stage
from services.puller import handler as puller
from services.pusher import handler as pusher
from services.splitter import handler as splitter
from services.transcoder import handler as transcoder
from tests.harness import FolderStorage, run_stage

FLEET = [list(range(8)), list(range(8, 16))]  # two live transcoders, eight partitions each


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(load({}), min_segment_s=2.0, plan_workers=2)


@pytest.fixture
def storage(tmp_path: Path) -> FolderStorage:
    return FolderStorage(tmp_path / "s3")


def stages(settings: Settings, storage: Any) -> dict[str, Stage]:
    deps, split_deps = Deps(settings, storage), splitter.Deps(settings, storage, lambda: FLEET)
    return {
        "video.requested": Stage.of(SPLITTER, lambda t: splitter.handle(t, split_deps)),
        "segment.requested": Stage.of(PULLER, lambda t: puller.handle(t, puller.Deps(settings, storage))),
        "segment.pulled": Stage.of(TRANSCODER, lambda t: transcoder.handle(t, deps)),
        "segment.transcoded": Stage.of(PUSHER, lambda t: pusher.handle(t, deps)),
    }


def request(storage: FolderStorage, path: Path | None, **fields: Any) -> dict[str, Any]:
    key = f"uploads/{uuid.uuid4().hex}/clip.mp4"
    if path is not None:
        storage.put_file("reel-sources", key, path)
    return {
        **envelope(video_id=str(uuid.uuid4()), producer="test"),
        "request_id": None,
        "profile": "tiny",
        "formats": ["hls", "mp4"],
        "callback_url": None,
        "reuse_generation": None,
        "redo_segments": [],
        "source": {"bucket": "reel-sources", "key": key, "etag": "", "size": 0},
        **fields,
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    synthetic(out, seconds=6, extra=("-g", "50"))
    return out


@pytest.mark.parametrize(
    "fields,says",
    [
        ({"profile": "ultra"}, "unknown profile 'ultra'"),
        ({"formats": ["webm"]}, "unknown output format"),
        ({"source": {"bucket": "reel-sources", "key": "nowhere.mp4", "etag": "", "size": 0}}, "does not exist"),
    ],
)
def test_the_splitter_refuses_what_can_never_work(
    fields: dict[str, Any], says: str, settings: Settings, storage: FolderStorage, clip: Path
) -> None:
    with pytest.raises(Permanent, match=says):
        run_stage(stages(settings, storage)["video.requested"], request(storage, clip, **fields))


def test_the_splitter_refuses_what_is_not_media_naming_the_object(
    settings: Settings, storage: FolderStorage, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video\n" * 50)
    with pytest.raises(Permanent, match="not a readable video.*Invalid data"):
        run_stage(stages(settings, storage)["video.requested"], request(storage, junk))


def test_the_splitter_plans_whole_gops_on_lanes_of_the_fleet(
    settings: Settings, storage: FolderStorage, clip: Path
) -> None:
    ev = request(storage, clip)
    out = run_stage(stages(settings, storage)["video.requested"], ev)
    assert [t for t, _ in out][0] == "video.split"
    split = out[0][1]
    tasks = [r for t, r in out if t == "segment.requested"]
    assert sum(s["frame_count"] for s in split["segments"]) == split["frame_count"] == 150
    assert all(s["frame_count"] % 50 == 0 for s in split["segments"][:-1])  # whole 2 s GOPs
    # Two lanes, the costliest first: one 240p rung at veryfast costs the audio about half
    # the video (72 of the clip's 150 frames), more than a 2 s segment, so its lane holds
    # the last segment beside it (122) and the other lane the first two (100).
    assert [r["track"] for r in tasks] == ["audio", "video", "video", "video"]
    assert split["audio_share"] == pytest.approx(72 / 150, abs=0.005)  # the tracker weighs the audio so
    member = {r["segment_index"]: r["lane"] // 8 for r in tasks}  # FLEET: eight partitions each
    assert member[0] == member[1] != member[2] == member[None]  # a planned lane stays on one
    assert {r["lane"] // 8 for r in tasks} == {0, 1}  # both transcoders get work
    assert not any(r["lane_guessed"] for r in tasks)  # laid on the members alive
    again = run_stage(stages(settings, storage)["video.requested"], ev)  # a redo produces the same ids
    assert [r["event_id"] for _, r in again] == [r["event_id"] for _, r in out]


def test_a_pinned_plan_split_mid_rebalance_spreads_its_lanes_over_every_partition(
    settings: Settings, storage: FolderStorage, clip: Path
) -> None:
    """Four transcoders in the group, caught while a cooperative rebalance moves partitions:
    only one holds any. Its four partitions must not get every unit: they stay its own when
    the rebalance ends (likeliest cause of a 4-node bench run where one ran all 13 units)."""
    caught = [[0, 4, 8, 12], [], [], []]
    split_deps = splitter.Deps(dataclasses.replace(settings, plan_workers=4), storage, lambda: caught)
    stage = Stage.of(SPLITTER, lambda t: splitter.handle(t, split_deps))
    tasks = [r for t, r in run_stage(stage, request(storage, clip)) if t == "segment.requested"]
    assert len(tasks) == 4  # three 2 s segments of the 6 s clip, and the audio
    assert len({r["lane"] for r in tasks}) == len(tasks)  # a partition each, whoever takes it
    assert {r["lane"] for r in tasks} - {0, 4, 8, 12}  # not only the one member's
    assert all(r["lane_guessed"] for r in tasks)  # the puller settles them sooner


@pytest.mark.parametrize(("siblings", "planned"), [(0, 2), (3, 4), (30, 8)])
def test_an_autoscaled_video_in_a_burst_is_split_for_its_siblings_too(
    settings: Settings, storage: FolderStorage, clip: Path, siblings: int, planned: int
) -> None:
    """The 6 s clip brings 4.8 weighted seconds against a target of 6 per replica: alone it
    is split for the two live transcoders (its work asks for one); with 3 siblings for
    ceil(4.8 x 4 / 6) = 4; with 30, for max. The siblings are asked from the burst window
    before its request on."""
    scaled = dataclasses.replace(settings, plan_workers=0, autoscale=True, autoscale_max=8, autoscale_target_s=6.0)
    asked: list[int] = []

    def requested_since(since_ms: int) -> set[str]:
        asked.append(since_ms)
        return {ev["video_id"]} | {f"sibling-{i}" for i in range(siblings)}

    split_deps = splitter.Deps(scaled, storage, lambda: FLEET, heading_for=lambda: 1, requested_since=requested_since)
    stage = Stage.of(SPLITTER, lambda t: splitter.handle(t, split_deps))
    ev = request(storage, clip)
    (split,) = [r for t, r in run_stage(stage, ev) if t == "video.split"]
    assert split["workers"] == planned
    assert asked == [ev["produced_at"] - int(splitter.BURST_WINDOW_S * 1000)]


def test_every_handler_in_turn_turns_a_request_into_a_completed_video(
    settings: Settings, storage: FolderStorage, clip: Path
) -> None:
    by_topic = stages(settings, storage)
    queue = [("video.requested", request(storage, clip))]
    produced: Counter[str] = Counter()
    done: list[dict[str, Any]] = []
    while queue:
        topic, event = queue.pop(0)
        for out_topic, record in run_stage(by_topic[topic], event) if topic in by_topic else []:
            produced[out_topic] += 1
            queue.append((out_topic, record))
            if out_topic == "video.completed":
                done.append(record)
    segments = produced["segment.requested"]
    assert produced == {
        "video.split": 1,
        "segment.requested": segments,
        "segment.pulled": segments,
        "segment.transcoded": segments,
        "segment.uploaded": segments,
        "video.completed": 1,
    }
    kinds = Counter(o["kind"] for o in done[0]["outputs"])
    assert kinds == {"mp4": 1, "hls-master": 1, "hls-playlist": 2, "poster": 1, "manifest": 1}  # 240p only: no upscale
    for o in done[0]["outputs"]:  # every object an event names exists, with that checksum
        assert storage.ref(o["object"]["bucket"], o["object"]["key"]).sha256 == o["object"]["sha256"]


def test_a_pulled_span_covers_its_segment(settings: Settings, storage: FolderStorage, clip: Path) -> None:
    out = run_stage(stages(settings, storage)["video.requested"], request(storage, clip))
    task = next(r for t, r in out if t == "segment.requested" and r["segment_index"] == 1)
    ((topic, pulled),) = run_stage(stages(settings, storage)["segment.requested"], task)
    assert topic == "segment.pulled" and pulled["span"]["key"].startswith(f"{task['video_id']}/0/video/00001/")
    assert pulled["span_start"] <= task["video_start"] + task["start_frame"] / 25
    assert media_seconds(pulled) == task["frame_count"] / 25


def test_no_handler_imports_kafka() -> None:
    """Handlers are written against reel.task alone; the loop and its clients stay apart."""
    handlers = ", ".join(f"services.{s.name}.handler" for s in (SPLITTER, PULLER, TRANSCODER, PUSHER))
    code = f"import sys, {handlers}; print(sorted(m for m in sys.modules if m.startswith('confluent_kafka')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"
