"""`reel get`: every output downloaded and checked against the manifest; a download cut
in the middle (through a proxy that resets every connection) resumes by ranged GETs, in
the same run or the next; bad requests are refused with nothing written."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.clips import synthetic
from reel.settings import Settings
from reel.storage import Storage, sha256_file
from reel.submit import submit, wait
from tests.e2e.client import cli, status_when
from tests.proxy import TcpProxy

pytestmark = pytest.mark.usefixtures("fleet")


@pytest.fixture(scope="module")
def video(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = tmp_path_factory.mktemp("get") / "clip.mp4"
    synthetic(source, size="640x360", seconds=8)
    storage = Storage.from_settings(e2e_settings)
    sub = submit(e2e_settings, storage, source, "tiny", request_id=str(uuid.uuid4()))
    end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=300)
    assert end["topic"] == "video.completed", end.get("reason")
    status_when(sub.video_id, "completed")
    manifest = json.loads(storage.get_bytes(e2e_settings.bucket_outputs, f"{sub.video_id}/manifest.json"))
    return {"id": sub.video_id, "manifest": manifest}


def matches_manifest(dest: Path, rows: list[dict[str, Any]], video_id: str) -> None:
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == sorted([r["key"].removeprefix(f"{video_id}/") for r in rows] + ["manifest.json"])
    for r in rows:
        path = dest / r["key"].removeprefix(f"{video_id}/")
        assert path.stat().st_size == r["size"] and sha256_file(path) == r["sha256"], r["key"]


def ranges(proxy: TcpProxy) -> dict[str, int]:
    """The start of every ranged GET that went through the proxy, by object path."""
    out = {}
    for req in proxy.requests:
        head = req.decode("latin-1")
        line, found = head.split("\r\n", 1)[0], re.search(r"(?i)\r\nrange: bytes=(\d+)-", head)
        if found and line.startswith("GET "):
            out[line.split()[1].split("?")[0]] = int(found.group(1))
    return out


def test_everything_is_fetched_checked_and_the_manifest_lists_every_object(
    video: dict[str, Any], e2e_settings: Settings, tmp_path: Path
) -> None:
    rows = video["manifest"]["outputs"]
    assert {r["kind"] for r in rows} == {"mp4", "hls-master", "hls-playlist", "hls-segment", "poster"}
    segments = [r["rung"] for r in rows if r["kind"] == "hls-segment"]
    assert segments.count("240p") == segments.count("360p") == 4 and segments.count("audio") >= 4  # 2 s each
    stored = set(Storage.from_settings(e2e_settings).list(e2e_settings.bucket_outputs, f"{video['id']}/"))
    assert stored == {r["key"] for r in rows} | {f"{video['id']}/manifest.json"}  # every object, no other
    done = cli(e2e_settings, "get", video["id"], str(tmp_path / "all"))
    assert done.returncode == 0, done.stderr
    assert f"{len(rows)} files in" in done.stdout and "each matching the manifest's sha256" in done.stdout
    matches_manifest(tmp_path / "all", rows, video["id"])
    again = cli(e2e_settings, "get", video["id"], str(tmp_path / "all"))  # nothing left to do
    assert again.returncode == 0 and f"0 downloaded, {len(rows)} already there" in again.stdout


def test_a_download_cut_in_the_middle_resumes_where_it_stopped(
    video: dict[str, Any], e2e_settings: Settings, tmp_path: Path
) -> None:
    rows = video["manifest"]["outputs"]
    largest = max(r["size"] for r in rows)
    assert largest > 256 * 1024
    # In the same run: the storage client retries in place, from the bytes each file has.
    proxy = TcpProxy(e2e_settings.s3_port, cut_after=largest // 2)
    try:
        done = cli(e2e_settings, "get", video["id"], str(tmp_path / "a"), REEL_S3_ENDPOINT=f"127.0.0.1:{proxy.port}")
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert proxy.cut_after is None, "the proxy never cut"
    resumed = {path: start for path, start in ranges(proxy).items() if start > 0}
    assert resumed, "no file was resumed by a ranged GET"
    matches_manifest(tmp_path / "a", rows, video["id"])

    # Across runs: no retry in place, so the cut ends the run and leaves its parts ...
    proxy = TcpProxy(e2e_settings.s3_port, cut_after=largest // 2)
    try:
        cut = cli(
            e2e_settings,
            "get",
            video["id"],
            str(tmp_path / "b"),
            REEL_S3_ENDPOINT=f"127.0.0.1:{proxy.port}",
            REEL_STORAGE_RETRY_S="0",
        )
    finally:
        proxy.close()
    assert cut.returncode == 1 and "run it again to resume" in cut.stderr, cut.stderr
    parts = {
        p.relative_to(tmp_path / "b").as_posix()[: -len(".part")]: p.stat().st_size
        for p in (tmp_path / "b").rglob("*.part")
        if p.stat().st_size > 0
    }
    assert parts, "the cut left no partial file"
    proxy = TcpProxy(e2e_settings.s3_port)  # ... which the next run takes up from their last byte
    try:
        again = cli(e2e_settings, "get", video["id"], str(tmp_path / "b"), REEL_S3_ENDPOINT=f"127.0.0.1:{proxy.port}")
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr
    starts = ranges(proxy)
    bucket = e2e_settings.bucket_outputs
    for rel, size in parts.items():
        assert starts.get(f"/{bucket}/{video['id']}/{rel}") == size, (rel, size, starts)
    matches_manifest(tmp_path / "b", rows, video["id"])


def test_a_rung_or_a_format_alone(video: dict[str, Any], e2e_settings: Settings, tmp_path: Path) -> None:
    vid = video["id"]
    mp4 = cli(e2e_settings, "get", vid, str(tmp_path / "mp4"), "--format", "mp4", "--rung", "240p")
    assert mp4.returncode == 0, mp4.stderr
    assert sorted(p.relative_to(tmp_path / "mp4").as_posix() for p in (tmp_path / "mp4").rglob("*") if p.is_file()) == [
        "manifest.json",
        "mp4/240p.mp4",
        "poster.jpg",
    ]
    hls = cli(e2e_settings, "get", vid, str(tmp_path / "hls"), "--format", "hls", "--rung", "360p")
    assert hls.returncode == 0, hls.stderr
    got = {
        p.relative_to(tmp_path / "hls").as_posix().split("/")[1]
        for p in (tmp_path / "hls" / "hls").rglob("*")
        if p.is_file()
    }
    assert got == {"360p", "audio"}  # its rendition and the shared audio, not the master naming the others


def test_bad_requests_are_refused_and_nothing_is_written(
    video: dict[str, Any], e2e_settings: Settings, tmp_path: Path
) -> None:
    unknown = cli(e2e_settings, "get", str(uuid.uuid4()), str(tmp_path / "x"))
    assert unknown.returncode == 2 and "no video" in unknown.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all\n" * 100)
    sub = submit(e2e_settings, Storage.from_settings(e2e_settings), junk, "tiny", request_id=str(uuid.uuid4()))
    assert wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=120)["topic"] == "video.failed"
    status_when(sub.video_id, "failed")
    failed = cli(e2e_settings, "get", sub.video_id, str(tmp_path / "x"))
    assert failed.returncode == 2 and "is failed" in failed.stderr and "only a completed video" in failed.stderr
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "holiday.mp4").write_bytes(b"mine")
    refused = cli(e2e_settings, "get", video["id"], str(occupied))
    assert refused.returncode == 2 and "holds other files (holiday.mp4)" in refused.stderr
    assert [p.name for p in occupied.rglob("*")] == ["holiday.mp4"]
    rung = cli(e2e_settings, "get", video["id"], str(tmp_path / "y"), "--rung", "4k")
    assert rung.returncode == 2 and "no rung 4k" in rung.stderr and "240p, 360p" in rung.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
