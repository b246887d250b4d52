"""Kill any container mid-task: nothing lost, nothing duplicated, outputs bit-identical.

The running fleet is armed through REEL_FAULT_FILE: each armed cell SIGKILLs the process
group of the named service the first time it reaches the point (ffmpeg children die with
it), once across restarts; the supervisor restarts the slot and the task is re-queued.
One video per round carries one cell per service, so a round kills up to five processes
in turn. After each round: every armed cell fired, the video completed with outputs whose
sha256 equal an undisturbed run's (bit-exact settings, the plan pinned by
REEL_PLAN_WORKERS), every killed stage redid its task as a later attempt, no event is
duplicated for a read_committed reader, the tracker's event log holds exactly the video's
events (it was killed mid-batch in round 1), and its status said `retrying (attempt n)`
while a kill was being recovered. Then: every transcoder lost at once; a multipart upload
killed between parts and resumed; a segment that kills its worker every time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.clips import synthetic
from reel.attempts import COMPLETED, STARTED, Attempts
from reel.checkpoints import object_refs
from reel.contract import Registry
from reel.kafka import read_to_end
from reel.media import flags
from reel.settings import Settings
from reel.storage import PART_SIZE, Storage
from reel.submit import submit, wait
from tests.e2e.client import authorized
from tests.e2e.conftest import E2E_ENV

pytestmark = pytest.mark.usefixtures("fleet")

ROUNDS = {
    "mid-task": [
        ("splitter", "mid-work"),
        ("puller", "mid-pull"),
        ("transcoder", "mid-encode"),
        ("pusher", "mid-place"),
        ("tracker", "mid-batch"),
    ],
    "after-produce": [
        ("splitter", "after-produce"),
        ("puller", "after-produce"),
        ("transcoder", "after-produce"),
        ("pusher", "mid-join"),
    ],
    "audio-and-upload": [("transcoder", "mid-encode-audio"), ("pusher", "mid-upload")],
    "pusher-commit": [("pusher", "after-produce")],
}
# Which topic shows a stage's redo: its output event carries the later attempt.
OUTPUT_OF = {
    "splitter": "video.split",
    "puller": "segment.pulled",
    "transcoder": "segment.transcoded",
    "pusher": "segment.uploaded",
}
ONCE_PER_VIDEO = ["video.split", "video.completed"]
TRACKER = f"http://127.0.0.1:{E2E_ENV['REEL_TRACKER_PORT']}"
ONCE_PER_SEGMENT = ["segment.requested", "segment.pulled", "segment.transcoded", "segment.uploaded"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kill") / "clip.mp4"
    synthetic(out, seconds=7)
    return out


def run(settings: Settings, clip: Path, seen: set[str] | None = None, profile: str = "tiny") -> dict[str, Any]:
    """Submit and wait for completion; `seen` collects the segment states the status
    endpoint showed while the video was in flight (sampled every 0.1 s)."""
    sub = submit(settings, Storage.from_settings(settings), clip, profile, request_id=str(uuid.uuid4()))
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_states, args=(sub.video_id, seen, stop), daemon=True)
    if seen is not None:
        sampler.start()
    try:
        end = wait(settings, sub.video_id, sub.submitted_ms, timeout=300)
    finally:
        stop.set()
    assert end["topic"] == "video.completed", end.get("reason")
    return end


def _sample_states(video_id: str, seen: set[str], stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            with urllib.request.urlopen(authorized(f"{TRACKER}/videos/{video_id}"), timeout=2) as resp:
                seen.update(s["state"] for s in json.loads(resp.read())["segments"])
        except (OSError, ValueError):
            pass  # not projected yet, or the tracker is being restarted after its own kill


def manifest(settings: Settings, end: dict[str, Any]) -> list[tuple[Any, ...]]:
    ref = end["manifest"]
    rows = json.loads(Storage.from_settings(settings).get_bytes(ref["bucket"], ref["key"]))["outputs"]
    return sorted((r["kind"], r["rung"], r["size"], r["sha256"]) for r in rows)


@pytest.fixture(scope="module")
def undisturbed(e2e_settings: Settings, clip: Path) -> list[tuple[Any, ...]]:
    return manifest(e2e_settings, run(e2e_settings, clip))


def events(settings: Settings, video_id: str, topics: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    registry = Registry()
    topics = topics or ONCE_PER_VIDEO + ONCE_PER_SEGMENT + ["video.requested", "video.failed", "task.progress"]
    msgs = read_to_end(settings, topics)
    decoded = [(m.topic(), registry.decode_for_topic(m.topic(), m.value())) for m in msgs]
    return [(t, e) for t, e in decoded if e["video_id"] == video_id]


def held_by(home: Path, arm: str, timeout: float = 120) -> int:
    """The pid of the process a `hold` arm froze, once one has reached its point."""
    deadline = time.monotonic() + timeout
    while True:
        for line in (home / "faults.log").read_text().splitlines():
            if line.split()[2:4] == [arm, "held"]:
                return int(line.split()[1])
        assert time.monotonic() < deadline, f"no process ever reached the point {arm} holds at"
        time.sleep(0.05)


def tracked_event_ids(settings: Settings, video_id: str) -> list[str]:
    with psycopg.connect(settings.postgres_url) as conn:
        rows = conn.execute("SELECT event_id::text FROM events WHERE video_id = %s", (video_id,)).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("name", list(ROUNDS))
def test_kills_lose_nothing_and_duplicate_nothing(
    name: str, e2e_settings: Settings, clip: Path, undisturbed: list[tuple[Any, ...]]
) -> None:
    home = e2e_settings.home
    arms = {f"{name}-{service}-{point}-{uuid.uuid4().hex[:6]}": (service, point) for service, point in ROUNDS[name]}
    (home / "faults.armed").write_text("".join(f"{a} {s} {p}\n" for a, (s, p) in arms.items()))
    seen: set[str] = set()
    try:
        end = run(e2e_settings, clip, seen)
    finally:
        (home / "faults.armed").write_text("")
    fired = {line.split()[2] for line in (home / "faults.log").read_text().splitlines() if len(line.split()) > 2}
    assert set(arms) <= fired, f"cells not reached: {set(arms) - fired}"

    # What a viewer gets is exactly what an undisturbed run gave.
    assert manifest(e2e_settings, end) == undisturbed

    # Nothing duplicated, and each killed stage redid its task as a later attempt.
    evs = events(e2e_settings, end["video_id"])
    ids = Counter(e["event_id"] for t, e in evs if t != "task.progress")
    assert not [i for i, n in ids.items() if n > 1], "an event was committed twice"
    per = Counter((t, e["track"], e["segment_index"]) for t, e in evs if t in ONCE_PER_VIDEO + ONCE_PER_SEGMENT)
    assert not {k: n for k, n in per.items() if n > 1}, "a task's output was committed twice"
    assert not [e for t, e in evs if t == "video.failed"]
    for service, point in arms.values():
        if service in OUTPUT_OF:  # the killed attempt was re-queued and a later one finished
            assert max(e["attempt"] for t, e in evs if t == OUTPUT_OF[service]) >= 2, (service, point)

    # Reuse, not just recovery: killed after its work was done, the next attempt used that
    # work (its objects carry the dead attempt's id); killed mid-work, it did the work anew.
    storage = Storage.from_settings(e2e_settings)
    for service, point in arms.values():
        if service not in ("puller", "transcoder") or point not in ("after-produce", "mid-pull", "mid-encode"):
            continue
        redone = [e for t, e in evs if t == OUTPUT_OF[service] and e["attempt"] >= 2]
        assert redone, (service, point)
        for e in redone:
            markers = Attempts(storage, e2e_settings.bucket_work, service).markers(e)
            died = [m.attempt_id for m in markers if m.state == STARTED]
            done = [m.attempt_id for m in markers if m.state == COMPLETED]
            keys = [k for _, k in object_refs(e) if k.startswith(e["video_id"])]
            made_by = died if point == "after-produce" else done
            assert keys and all(any(a in k for a in made_by) for k in keys), (service, point, keys, markers)

    # The tracker projected every committed event of the video once (a replay adds nothing).
    kafka_ids = sorted(e["event_id"] for _, e in evs)
    deadline = time.monotonic() + 60
    while sorted(tracked := tracked_event_ids(e2e_settings, end["video_id"])) != kafka_ids:
        assert time.monotonic() < deadline, (len(tracked), len(kafka_ids))
        time.sleep(0.5)
    assert len(tracked) == len(set(tracked))
    # ... and its status shows every segment done, the re-queued ones at their later attempt.
    with urllib.request.urlopen(authorized(f"{TRACKER}/videos/{end['video_id']}"), timeout=10) as resp:
        view = json.loads(resp.read())
    assert view["state"] == "completed" and {s["stage"] for s in view["segments"]} == {"uploaded"}
    if {s for s, _ in arms.values()} & {"puller", "transcoder", "pusher"}:
        assert max(s["attempt"] for s in view["segments"]) >= 2
    if {s for s, _ in arms.values()} & {"puller", "transcoder"}:  # redos long enough to sample
        # ... and while the kill was being recovered, it said so.
        assert any(s.startswith("retrying (attempt ") for s in seen), seen


def test_losing_every_transcoder_at_once_loses_nothing(
    e2e_settings: Settings, clip: Path, undisturbed: list[tuple[Any, ...]]
) -> None:
    """A whole "pod" of transcoders lost mid-encode: every one SIGKILLed, its local files
    deleted and its in-flight multipart uploads aborted; the work restarts from what object
    storage holds and the outputs are the undisturbed run's."""
    home = e2e_settings.home
    storage = Storage.from_settings(e2e_settings)
    arm = f"pod-{uuid.uuid4().hex[:6]}"
    sub = submit(e2e_settings, storage, clip, "tiny", request_id=str(uuid.uuid4()))
    # The first transcoder half way through an encode of this video freezes there, its
    # ffmpeg stopped with it: the strike lands while that encode is provably unfinished.
    (home / "faults.armed").write_text(f"{arm} transcoder mid-encode video_id={sub.video_id} hold\n")
    try:
        held = held_by(home, arm)
        pids = [s["pid"] for s in json.loads((home / "services.json").read_text()) if s["kind"] == "transcoder"]
        assert len(pids) == 2 and held in pids
        for pid in pids:
            os.killpg(pid, signal.SIGKILL)
    finally:
        (home / "faults.armed").write_text("")
    for tmp in (home / "scratch").glob("reel-transcode-*"):
        shutil.rmtree(tmp)
    client = storage.client
    for upload in client._list_multipart_uploads(e2e_settings.bucket_work, prefix=sub.video_id).uploads:
        client._abort_multipart_upload(e2e_settings.bucket_work, upload.object_name, str(upload.upload_id))

    end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=300)
    assert end["topic"] == "video.completed", end.get("reason")
    assert manifest(e2e_settings, end) == undisturbed
    evs = events(e2e_settings, sub.video_id)
    per = Counter((t, e["track"], e["segment_index"]) for t, e in evs if t in ONCE_PER_VIDEO + ONCE_PER_SEGMENT)
    assert not {k: n for k, n in per.items() if n > 1}, "a task's output was committed twice"
    assert max(e["attempt"] for t, e in evs if t == "segment.transcoded") >= 2  # the lost work was redone


def test_a_segment_that_kills_its_worker_every_time_is_escalated_then_retried(
    e2e_settings: Settings, clip: Path, undisturbed: list[tuple[Any, ...]]
) -> None:
    """Segment 1 SIGKILLs its transcoder three times running (as an OOM would): after exactly
    N=3 attempts, counted across the crashes, it goes to segment.pulled.dlq and the video
    fails with that reason while another video flows past it; once the cause is gone,
    `retry --segment 1` completes it as generation 1, redoing segment 1 and reusing every
    task the failed generation finished."""
    home = e2e_settings.home
    storage = Storage.from_settings(e2e_settings)
    tag = uuid.uuid4().hex[:6]
    first, arms = f"poison-{tag}-held", [f"poison-{tag}-{n}" for n in range(2)]
    sub = submit(e2e_settings, storage, clip, "tiny", request_id=str(uuid.uuid4()))
    poison = f"transcoder mid-encode segment=1 video_id={sub.video_id}"  # this video only: the other must flow
    # The first attempt freezes half way until another unit of the video is done, so the
    # retry has something to reuse whatever the machine's pace; then it dies, and the next
    # two die on their own.
    (home / "faults.armed").write_text(f"{first} {poison} hold\n")
    other = submit(e2e_settings, storage, clip, "tiny", request_id=str(uuid.uuid4()))
    try:
        held = held_by(home, first)
        deadline = time.monotonic() + 120
        while not [e for _, e in events(e2e_settings, sub.video_id, ["segment.transcoded"]) if e["segment_index"] != 1]:
            assert time.monotonic() < deadline, "no other unit of the video was transcoded"
            time.sleep(0.5)
        (home / "faults.armed").write_text("".join(f"{a} {poison}\n" for a in arms))
        os.killpg(held, signal.SIGKILL)
        end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=300)
        other_end = wait(e2e_settings, other.video_id, other.submitted_ms, timeout=300)
    finally:
        (home / "faults.armed").write_text("")  # the cause removed
    assert other_end["topic"] == "video.completed" and manifest(e2e_settings, other_end) == undisturbed
    fired = {line.split()[2] for line in (home / "faults.log").read_text().splitlines() if len(line.split()) > 2}
    assert {first, *arms} <= fired
    assert end["topic"] == "video.failed" and end["stage"] == "transcoder", end
    assert end["reason"].startswith("3 attempts failed or died; last: the worker died mid-task"), end["reason"]
    dead = [e for t, e in events(e2e_settings, sub.video_id, ["segment.pulled.dlq"])]
    assert len(dead) == 1 and dead[0]["segment_index"] == 1 and dead[0]["failed_attempts"] == 3

    url = f"{TRACKER}/videos/{sub.video_id}"
    deadline = time.monotonic() + 30
    while json.loads(urllib.request.urlopen(authorized(url), timeout=10).read())["state"] != "failed":
        assert time.monotonic() < deadline, "the tracker never saw the failure"
        time.sleep(0.3)
    with pytest.raises(urllib.error.HTTPError) as no_such:  # a segment the plan does not have
        urllib.request.urlopen(authorized(f"{url}/retry?segment=99", method="POST"), timeout=10)
    assert no_such.value.code == 422 and "has video segments 0.." in no_such.value.read().decode()
    with urllib.request.urlopen(authorized(f"{url}/retry?segment=1", method="POST"), timeout=10) as r:
        assert json.loads(r.read())["generation"] == 1
    deadline = time.monotonic() + 300
    while not (done := [e for t, e in events(e2e_settings, sub.video_id, ["video.completed"])]):
        assert time.monotonic() < deadline, "the retried video never completed"
        time.sleep(1)
    assert [e["generation"] for e in done] == [1]
    assert manifest(e2e_settings, {"manifest": done[0]["manifest"]}) == undisturbed

    # Redone: segment 1, and whatever had not finished when the video failed; the rest
    # came from generation 0's objects, handed to the pusher without a pull or an encode.
    evs = events(e2e_settings, sub.video_id, ["segment.requested", "segment.transcoded"])
    tasks = {(e["track"], e["segment_index"]) for t, e in evs if t == "segment.requested" and e["generation"] == 0}
    finished = {(e["track"], e["segment_index"]) for t, e in evs if t == "segment.transcoded" and e["generation"] == 0}
    again = {(e["track"], e["segment_index"]) for t, e in evs if t == "segment.requested" and e["generation"] == 1}
    assert ("video", 1) not in finished and again == tasks - finished, (tasks, finished, again)
    assert tasks - again, "nothing was reused"
    for t, e in evs:
        if t == "segment.transcoded" and e["generation"] == 1:
            reused = (e["track"], e["segment_index"]) not in again
            keys = [k for _, k in object_refs(e) if k.startswith(sub.video_id)]  # not the source
            assert keys and e["producer"].startswith("splitter" if reused else "transcoder"), e["producer"]
            assert all(k.startswith(f"{sub.video_id}/{0 if reused else 1}/") for k in keys), keys


# One 360p rung at 16 Mb/s: six seconds of noise (which does not compress) make an MP4 of
# about 12 MB, two 8 MiB parts; the tiny profile's outputs fit in one part.
BULKY = {
    "name": "bulky",
    "description": "outputs of several multipart parts",
    "codec": "libx264",
    "preset": "veryfast",
    "gop_seconds": 2,
    "two_pass_below_s": 0,
    "rungs": [{"name": "360p", "height": 360, "bitrate": 16_000_000}],
    "audio": {"codec": "aac", "bitrate": 96000, "channels": 2, "sample_rate": 48000},
}


def test_a_killed_upload_resumes_and_sends_only_the_missing_parts(e2e_settings: Settings, tmp_path: Path) -> None:
    """The pusher SIGKILLed between two parts of a rendition's multipart upload: its next
    attempt finds the open upload, checks the listed parts against the (bit-exact) file and
    sends only the missing ones; the output equals an undisturbed run's."""
    home = e2e_settings.home
    (Path(e2e_settings.profiles_dir) / "bulky.json").write_text(json.dumps(BULKY))
    noisy = tmp_path / "noisy.mp4"
    noise = "testsrc2=size=640x360:rate=25:duration=6,noise=alls=60:allf=t"  # does not compress
    inputs = flags(f"ffmpeg -v error -f lavfi -i {noise} -f lavfi -i sine=frequency=440:duration=6")
    subprocess.run(
        [*inputs, *flags("-c:v libx264 -preset ultrafast -crf 10 -c:a aac -shortest"), str(noisy)], check=True
    )
    undisturbed = manifest(e2e_settings, run(e2e_settings, noisy, profile="bulky"))
    big = [(rung, size) for kind, rung, size, _ in undisturbed if kind == "mp4" and size > PART_SIZE]
    assert big, f"no output spans two parts: {undisturbed}"

    arm = f"part-{uuid.uuid4().hex[:6]}"
    (home / "faults.armed").write_text(f"{arm} pusher mid-part\n")
    try:
        end = run(e2e_settings, noisy, profile="bulky")
    finally:
        (home / "faults.armed").write_text("")
    fired = {line.split()[2] for line in (home / "faults.log").read_text().splitlines() if len(line.split()) > 2}
    assert arm in fired
    assert manifest(e2e_settings, end) == undisturbed

    rung, size = big[0]
    key = f"{e2e_settings.bucket_outputs}/{end['video_id']}/mp4/{rung}.mp4"
    said = [
        json.loads(line)["msg"]
        for log in (home / "logs").glob("pusher-*.log")
        for line in log.read_text().splitlines()
        if key in line
    ]
    uploads = [
        tuple(map(int, m.groups()))
        for m in (re.search(r"in (\d+) parts: (\d+) sent, (\d+) reused", s) for s in said)
        if m
    ]
    total = -(-size // PART_SIZE)
    # Only the resumed attempt completed the upload: it reused what the killed one sent.
    assert len(uploads) == 1, said
    parts, sent, reused = uploads[0]
    assert parts == total and reused >= 1 and sent == total - reused < total, uploads
