"""The tracker against real Kafka and Postgres: status, live progress, exactly-once and
order-insensitive projection, a SIGKILL mid-batch."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.clips import synthetic
from devstack.procs import free_port
from reel import PROJECT_ROOT
from reel.contract import Registry, all_topics, envelope
from reel.kafka import read_to_end
from reel.pipeline import AUDIO_COST
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import produce, submit, wait
from services.tracker import db, reads
from services.tracker import project as projection
from tests.e2e.client import authorized, cli

pytestmark = pytest.mark.usefixtures("fleet")
API = "http://127.0.0.1:28080"


def get(path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(authorized(API + path), timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sse(path: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Every status event of a live progress stream, until it ends."""
    deadline = time.monotonic() + timeout
    while True:  # the stream 404s until the request itself has been projected
        try:
            resp = urllib.request.urlopen(authorized(API + path), timeout=timeout)
            break
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    out = []
    with resp:
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def test_status_follows_a_run_live(e2e_settings: Settings, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    synthetic(clip, seconds=8)
    sub = submit(e2e_settings, Storage.from_settings(e2e_settings), clip, "tiny", request_id=str(uuid.uuid4()))
    updates = sse(f"/videos/{sub.video_id}/events")
    ranks = {"queued": 0, "splitting": 1, "transcoding": 2, "stitching": 3, "completed": 4}
    states = [u["state"] for u in updates]
    assert [ranks[s] for s in states] == sorted(ranks[s] for s in states), states
    percents = [u["percent"] for u in updates]
    assert percents == sorted(percents), "percent went backwards"
    assert states[-1] == "completed" and percents[-1] == 100.0
    assert len(updates) >= 3  # it streamed changes, not just the end
    status, final = get(f"/videos/{sub.video_id}")
    assert status == 200 and final["state"] == "completed"
    assert {s["stage"] for s in final["segments"]} == {"uploaded"} and len(final["segments"]) >= 4
    assert final["timings"]["completed_at"] and not final["error"]
    mp4 = next(o for o in final["outputs"] if o["kind"] == "mp4")
    with urllib.request.urlopen(mp4["url"], timeout=10) as resp:  # presigned, expires in an hour
        assert resp.status == 200 and len(resp.read()) == mp4["object"]["size"]
    status, listing = get("/videos?state=completed&limit=200")
    assert status == 200 and sub.video_id in [v["video_id"] for v in listing["videos"]]
    paged, cursor = [], None  # page by page, one at a time: the same videos in the same order
    for _ in range(len(listing["videos"]) + 1):
        status, page = get("/videos?state=completed&limit=1" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        paged += [v["video_id"] for v in page["videos"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert paged == [v["video_id"] for v in listing["videos"]]

    # What an operator's dashboard reads: durations, lag per group (back to 0 when idle).
    deadline = time.monotonic() + 60
    while True:
        m = metrics()
        idle = all(
            m.get(f'reel_consumer_lag{{group="reel.{g}"}}') == 0.0
            for g in ("splitter", "puller", "transcoder", "pusher", "tracker")
        )
        if idle or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert idle, {k: v for k, v in m.items() if k.startswith("reel_consumer_lag")}
    assert m['reel_video_seconds_count{outcome="completed"}'] >= 1
    for stage in ("split", "pull", "transcode", "push", "stitch"):
        assert m[f'reel_stage_seconds_count{{stage="{stage}"}}'] >= 1, stage


def metrics() -> dict[str, float]:
    with urllib.request.urlopen(API + "/metrics/", timeout=10) as resp:
        text = resp.read().decode()
    return {
        k: float(v) for k, _, v in (line.rpartition(" ") for line in text.splitlines()) if k and not k.startswith("#")
    }


@pytest.mark.parametrize(
    "path,code",
    [
        (f"/videos/{uuid.uuid4()}", 404),
        ("/videos/not-an-id", 422),
        ("/videos?state=bogus", 422),
        ("/videos?limit=0", 422),
        ("/videos?cursor=garbage", 422),
        (f"/videos/{uuid.uuid4()}/events", 404),
    ],
)
def test_bad_ids_and_queries_get_clear_json_errors(path: str, code: int) -> None:
    status, body = get(path)
    assert status == code and body["error"]


def test_health_and_openapi() -> None:
    assert get("/healthz") == (200, {"status": "ok"})
    assert get("/readyz") == (200, {"status": "ready"})
    status, spec = get("/openapi.json")
    assert status == 200 and "/videos/{video_id}" in spec["paths"]
    assert {"get", "post"} <= set(spec["paths"]["/videos"])  # the list, and the front door
    assert "post" in spec["paths"]["/videos/{video_id}/start"]
    assert {"file_name", "size", "sha256"} <= set(spec["components"]["schemas"]["NewVideo"]["required"])


# -- exactly once and order-insensitive ----------------------------------------------
def all_events(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    registry = Registry()
    msgs = read_to_end(settings, all_topics())
    return [(m.topic(), registry.decode_for_topic(m.topic(), m.value())) for m in msgs]


def fresh_database(settings: Settings) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(settings.postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"


def project(url: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        db.migrate(conn)
        with conn.transaction():
            for topic, ev in events:
                projection.record(conn, topic, ev)


def snapshot(url: str) -> dict[str, Any]:
    """The projection of finished videos, without bookkeeping columns."""
    with psycopg.connect(url) as conn:
        videos = conn.execute(
            "SELECT video_id, generation, state, percent, profile, segment_count, has_audio, "
            "outputs::text, error, split_at, completed_at, failed_at FROM videos "
            "WHERE state IN ('completed', 'failed') "
            "ORDER BY video_id"
        ).fetchall()
        done = [v[0] for v in videos]
        segments = conn.execute(
            "SELECT video_id, generation, track, segment_index, stage, attempt, worker, working, work_percent, "
            "retrying, last_beat FROM segments WHERE video_id = ANY(%s) ORDER BY 1, 2, 3, 4",
            (done,),
        ).fetchall()  # a retried video has rows in two generations
        events = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    return {"videos": videos, "segments": segments, "events": events}


def differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """The rows each side has and the other lacks, per table (the failure names them)."""
    out = {}
    for name in want:
        if name == "events":
            if got[name] != want[name]:
                out[name] = (got[name], want[name])
            continue
        extra, missing = set(got[name]) - set(want[name]), set(want[name]) - set(got[name])
        for row in missing:  # the row as it should be, and the columns that differ
            twin = next((r for r in extra if r[:2] == row[:2]), None)
            cols = [i for i in range(len(row)) if twin is None or twin[i] != row[i]]
            out.setdefault(name, []).append((row[:4], {i: (twin and twin[i], row[i]) for i in cols}))
        if extra and name not in out:
            out[name] = sorted(extra, key=str)
    return out


@pytest.fixture(scope="module")
def recorded(e2e_settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    events = all_events(e2e_settings)
    assert sum(1 for t, _ in events if t == "video.completed") >= 1, "run the happy path first"
    return events


def test_replay_and_any_order_give_the_same_projection(e2e_settings: Settings, recorded: list) -> None:
    in_order, shuffled = fresh_database(e2e_settings), fresh_database(e2e_settings)
    project(in_order, recorded)
    reference = snapshot(in_order)
    project(in_order, recorded)  # a replay of every topic from the start
    assert differences(snapshot(in_order), reference) == {}
    mixed = list(recorded)
    random.Random(20261128).shuffle(mixed)
    project(shuffled, mixed)
    assert differences(snapshot(shuffled), reference) == {}
    # The order of a live retry: every event of a failed generation (its failure included)
    # before any of the next one's, which must start over.
    by_generation = fresh_database(e2e_settings)
    project(by_generation, sorted(recorded, key=lambda te: te[1]["generation"]))
    assert differences(snapshot(by_generation), reference) == {}
    assert reference["events"][0] == reference["events"][1] == len({e["event_id"] for _, e in recorded})


def test_sigkill_mid_batch_loses_and_doubles_nothing(
    e2e_settings: Settings, stack_env: dict[str, str], recorded: list, tmp_path: Path
) -> None:
    clean = fresh_database(e2e_settings)
    project(clean, recorded)
    url = fresh_database(e2e_settings)
    env = {
        **os.environ,
        **stack_env,
        "DATABASE_URL": url,
        "REEL_TRACKER_PORT": str(free_port()),
        "REEL_SLOT": "9",
        "REEL_FAULT_LOG": str(tmp_path / "faults"),
        "REEL_TRACKER_BATCH": "10",
    }

    def tracker(fault: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "services.tracker"],
            cwd=PROJECT_ROOT,
            env={**env, "REEL_FAULT": fault},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    assert len(recorded) > 30  # several batches: some are committed before the kill
    killed = tracker("mid-batch@3")
    assert killed.wait(timeout=120) == -9  # SIGKILLed by its own fault point
    assert (tmp_path / "faults").read_text().startswith("mid-batch")
    survivor = tracker("")
    try:
        want = snapshot(clean)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = snapshot(url)
            if got["events"][1] >= want["events"][1]:
                break
            time.sleep(1)
        assert got == want
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)


# -- the CLI on the tracker --------------------------------------------------------------
def test_submit_wait_status_and_list_follow_the_tracker(e2e_settings: Settings, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    synthetic(clip, audio=False)
    done = cli(
        e2e_settings, "submit", str(clip), "--profile", "tiny", "--request-id", str(uuid.uuid4()), "--wait", merged=True
    )
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    video_id = next(line for line in lines if re.fullmatch(r"[0-9a-f-]{36}", line))  # a line of its own
    assert "completed" in done.stdout and "100%" in done.stdout  # the progress it drew
    outputs = [line for line in lines if line.split(" ", 1)[0] in ("hls-master", "mp4", "poster", "manifest")]
    assert {line.split()[0] for line in outputs} == {"hls-master", "mp4", "poster", "manifest"}  # each on its own line
    urls = [line.strip() for line in lines if line.strip().startswith("http")]
    master = next(u for u in urls if "/hls/master.m3u8?token=" in u)
    assert master.startswith(f"{API}/videos/{video_id}/hls/master.m3u8")  # the tracker's signed playlist ...
    assert json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-of", "json", "-show_streams", master],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["streams"]  # ... plays
    assert any("X-Amz-Signature" in u and "/mp4/" in u for u in urls)  # the MP4s are presigned
    status = cli(e2e_settings, "status", video_id)
    assert status.returncode == 0 and "completed" in status.stdout and "segment 0" in status.stdout
    listing = cli(e2e_settings, "list", "--state", "completed", "--limit", "50")
    assert listing.returncode == 0 and video_id in listing.stdout

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    bad = cli(e2e_settings, "submit", str(junk), "--profile", "tiny", "--request-id", str(uuid.uuid4()), "--wait")
    assert bad.returncode == 1 and "failed" in bad.stderr and "splitter" in bad.stderr, bad.stderr

    # No tracker: --wait falls back to the video's events on Kafka.
    again = cli(
        e2e_settings,
        "submit",
        str(clip),
        "--profile",
        "tiny",
        "--request-id",
        str(uuid.uuid4()),
        "--wait",
        tracker_port=free_port(),
    )
    assert again.returncode == 0 and "following the video's events on Kafka" in again.stderr, again.stderr
    assert "hls-master" in again.stdout


def test_status_of_unknown_and_malformed_ids(e2e_settings: Settings) -> None:
    unknown = cli(e2e_settings, "status", str(uuid.uuid4()))
    assert unknown.returncode == 2 and "no video" in unknown.stderr
    malformed = cli(e2e_settings, "status", "not-an-id")
    assert malformed.returncode == 2 and "invalid request" in malformed.stderr
    down = cli(e2e_settings, "status", str(uuid.uuid4()), tracker_port=free_port())
    assert down.returncode == 1 and "cannot be reached" in down.stderr


def test_retry_re_drives_a_failed_video_once_its_cause_is_removed(e2e_settings: Settings, tmp_path: Path) -> None:
    video_id, key = str(uuid.uuid4()), f"later/{uuid.uuid4()}.mp4"
    request = {
        **envelope(video_id=video_id, producer="test"),
        "request_id": None,
        "profile": "tiny",
        "formats": ["mp4"],
        "callback_url": None,
        "source": {"bucket": e2e_settings.bucket_sources, "key": key, "etag": "", "size": 0},
    }
    since = int(time.time() * 1000)
    produce(e2e_settings, "video.requested", video_id, request)
    failed = wait(e2e_settings, video_id, since, timeout=120)
    assert failed["topic"] == "video.failed" and "does not exist" in failed["reason"]

    clip = tmp_path / "clip.mp4"  # the cause removed: the source is there now
    synthetic(clip, audio=False)
    Storage.from_settings(e2e_settings).put_file(e2e_settings.bucket_sources, key, clip)
    deadline = time.monotonic() + 30
    while get(f"/videos/{video_id}")[1].get("state") != "failed":  # the tracker has seen the failure
        assert time.monotonic() < deadline
        time.sleep(0.3)
    # It failed on its input: nothing is kept, so there is no segment to redo alone.
    one = cli(e2e_settings, "retry", video_id, "--segment", "0")
    assert one.returncode == 2 and "retry it whole" in one.stderr, one.stderr
    assert get(f"/videos/{video_id}")[1]["state"] == "failed"
    retried = cli(e2e_settings, "retry", video_id, "--wait")
    assert retried.returncode == 0, retried.stderr
    assert f"{video_id} generation 1" in retried.stdout and "mp4" in retried.stdout

    status, view = get(f"/videos/{video_id}")
    assert status == 200 and view["state"] == "completed" and view["generation"] == 1 and not view["error"]
    done = [e for t, e in all_events(e2e_settings) if e["video_id"] == video_id and t == "video.completed"]
    assert [e["generation"] for e in done] == [1]
    again = cli(e2e_settings, "retry", video_id)
    assert again.returncode == 2 and "only a failed video can be retried" in again.stderr
    unknown = cli(e2e_settings, "retry", str(uuid.uuid4()))
    assert unknown.returncode == 2 and "no video" in unknown.stderr


def test_a_units_hand_backs_are_counted_in_its_status(e2e_settings: Settings, recorded: list) -> None:
    """A unit's hand-backs in GET /videos/{id} (and the status page) are its task.progress
    events that said handed_back: the run's own events, plus one such heartbeat for one
    segment of a completed video (a SIGTERM past the drain timeout sends it), projected."""
    done = next(e for t, e in recorded if t == "video.completed")
    beats = [
        e
        for t, e in recorded
        if t == "task.progress"
        and e["video_id"] == done["video_id"]
        and e["generation"] == done["generation"]
        and e["track"] == "video"
        and e["segment_index"] == 0
    ]
    assert beats, "the happy path's transcoder sent heartbeats for segment 0"
    handed = {**beats[0], "event_id": str(uuid.uuid4()), "state": "handed_back", "message": "stopped"}
    url = fresh_database(e2e_settings)
    project(url, [*recorded, ("task.progress", handed), ("task.progress", handed)])  # the replay counts once
    with psycopg.connect(url) as conn:
        row = reads.video(conn, done["video_id"], None)
    assert row is not None
    counts = {(s["track"], s["segment_index"]): s["handbacks"] for s in row["segments"]}
    assert counts.pop(("video", 0)) == 1 and set(counts.values()) == {0}, counts


def test_the_audio_unit_weighs_what_the_splitter_said(e2e_settings: Settings, recorded: list) -> None:
    """The audio task's media-seconds (progress and backlog weigh by them) are its length
    times the share video.split carries, the ladder's (not the constant of splits before it)."""
    splits = {(e["video_id"], e["generation"]): e for t, e in recorded if t == "video.split" and e["has_audio"]}
    assert splits, "the run split a video with audio"
    assert any(e["audio_share"] != AUDIO_COST for e in splits.values())
    url = fresh_database(e2e_settings)
    project(url, recorded)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT video_id, generation, media_seconds FROM segments WHERE track = 'audio'").fetchall()
    weighed = {(v, g): s for v, g, s in rows if (v, g) in splits}
    assert weighed.keys() == splits.keys()
    for key, seconds in weighed.items():
        assert seconds == pytest.approx(splits[key]["duration"] * splits[key]["audio_share"]), key
