"""The media adapter against real ffmpeg/ffprobe and a real clip."""

from __future__ import annotations

import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from reel.media import FfmpegCancelled, FfmpegTimeout, MediaError, flags, packets, probe, probe_with_packets, run_ffmpeg

ENDLESS = ["-f", "lavfi", "-re", "-i", "testsrc2=size=320x240:rate=25", "-f", "null", "-"]


def _ffmpeg_children() -> list[str]:
    out = subprocess.run(["pgrep", "-f", "testsrc2=size=320x240"], capture_output=True, text=True)
    return out.stdout.split()


def test_probe_real_clip(bunny: Path) -> None:
    p = probe(bunny)
    assert p.video is not None and p.audio is not None
    assert (p.video.codec, p.video.width, p.video.height) == ("h264", 1280, 720)
    assert p.video.frame_rate == Fraction(25)
    assert p.audio.codec == "aac" and p.audio.channels == 6
    assert p.duration is not None and 5.0 < p.duration < 6.0
    assert "mp4" in p.format_name


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[float] = []
    args = [
        *flags("-f lavfi -i testsrc2=size=160x120:rate=25:duration=3 -c:v libx264 -preset ultrafast"),
        str(tmp_path / "o.mp4"),
    ]
    run_ffmpeg(args, timeout=60, on_progress=seen.append)
    assert seen and seen == sorted(seen)
    assert seen[-1] == pytest.approx(3.0, abs=0.1)
    assert probe(tmp_path / "o.mp4").video is not None


def test_timeout_kills_ffmpeg() -> None:
    started = time.monotonic()
    with pytest.raises(FfmpegTimeout):
        run_ffmpeg(ENDLESS, timeout=1.5)
    assert time.monotonic() - started < 10
    assert _ffmpeg_children() == []


def test_cancel_kills_ffmpeg() -> None:
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    with pytest.raises(FfmpegCancelled):
        run_ffmpeg(ENDLESS, timeout=60, cancel=cancel)
    assert _ffmpeg_children() == []


def test_corrupt_file_error_carries_ffmpeg_words(tmp_path: Path, bunny: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + bunny.read_bytes()[4096:8192])
    with pytest.raises(MediaError, match="Invalid data found|moov atom not found"):
        probe(bad)
    with pytest.raises(MediaError, match="exited with .*(Invalid data|moov atom)"):
        run_ffmpeg(["-i", str(bad), "-f", "null", "-"], timeout=30)


def test_probe_reads_codec_profile_and_level(bunny: Path) -> None:
    v = probe(bunny).video
    assert v is not None and v.profile in ("High", "Main", "Constrained Baseline") and v.level > 0


def test_one_probe_reads_the_first_video_and_audio_streams(tmp_path: Path) -> None:
    """probe_with_packets (one ffprobe run) gives what probe gives, and what packets gives
    per stream; a second audio stream is not mixed into the first."""
    out = tmp_path / "two-audio.mp4"
    clip = "-f lavfi -i testsrc2=size=160x120:rate=25:duration=2 -f lavfi -i sine=frequency=440:duration=2"
    clip += " -f lavfi -i sine=frequency=880:duration=1 -map 0 -map 1 -map 2 -c:v libx264 -preset ultrafast -c:a aac"
    subprocess.run(["ffmpeg", "-v", "error", *flags(clip), "-y", str(out)], check=True)
    probed, found = probe_with_packets(out)
    assert probed == probe(out)  # format and streams as probe reads them
    assert found["video"] == packets(out, "v:0") and len(found["video"]) == 50
    assert found["audio"] == packets(out, "a:0") != packets(out, "a:1")
