"""What a viewer sees, measured with ffprobe/ffmpeg independently of the pipeline."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from devstack.baseline import psnr
from reel.download import get
from reel.media import flags
from reel.settings import Settings
from reel.storage import Storage

__all__ = ["psnr"]  # the tests measure quality as the benchmark does


def ffprobe_json(path: Path | str, *args: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@dataclass(frozen=True)
class Frames:
    pts: list[float]  # presentation order
    keys: list[bool]


def decoded_video_frames(path: Path | str) -> Frames:
    data = ffprobe_json(
        path, "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time,pkt_dts_time,key_frame"
    )
    frames = sorted((_time(f), f["key_frame"] == 1) for f in data["frames"])
    return Frames([p for p, _ in frames], [k for _, k in frames])


def _time(frame: dict) -> float:
    """A decoded frame's time; AVI frames may carry only a decode timestamp."""
    return float(frame.get("best_effort_timestamp_time", frame.get("pkt_dts_time", "nan")))


def stream(path: Path | str, kind: str) -> dict | None:
    data = ffprobe_json(path, "-show_streams", "-show_format")
    return next((s for s in data["streams"] if s["codec_type"] == kind), None)


def frame_rate(path: Path | str) -> Fraction:
    s = stream(path, "video")
    assert s is not None
    return Fraction(s["r_frame_rate"])


AUDIO_FRAME_FIELDS = "frame=best_effort_timestamp_time,nb_samples:stream=sample_rate"


def decoded_audio_seconds(path: Path | str) -> tuple[float, float]:
    """(first sample's time, decoded length in seconds) of the first audio stream."""
    data = ffprobe_json(path, *flags("-select_streams a:0 -show_entries"), AUDIO_FRAME_FIELDS)
    frames = data["frames"]
    rate = int(data["streams"][0]["sample_rate"])
    first = _time(frames[0])
    return first, sum(int(f["nb_samples"]) for f in frames) / rate


def video_bitrate(path: Path | str) -> float:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=size")
    s = stream(path, "video")
    assert s is not None
    return 8 * sum(int(p["size"]) for p in data["packets"]) / float(s["duration"])


AAC_FRAME_S = 1024 / 48000  # every output's audio is AAC at 48 kHz


def expected_frames(source: Path, fps: Fraction) -> int:
    """Frames after the frame-rate rule, counted by ffmpeg on its own: CFR at the nominal rate."""
    count = flags(f"-map 0:v:0 -vf fps={fps.numerator}/{fps.denominator} -f null - -progress pipe:1")
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), *count], capture_output=True, text=True, check=True
    )
    return int([ln for ln in out.stdout.splitlines() if ln.startswith("frame=")][-1][6:])


def judge(source: Path, out: Path) -> None:
    """What a viewer sees in every MP4 reel made of `source` (downloaded to `out`): the
    source's frames at constant rate, even square-pixel sizes, stereo audio that starts
    where the source's did against its first frame (within a frame) and lasts as long as
    the source's decoded audio (within one AAC frame)."""
    src_video = stream(source, "video")
    assert src_video is not None
    fps = min(Fraction(src_video["r_frame_rate"]), Fraction(60))
    total = expected_frames(source, fps)
    mp4s = sorted((out / "mp4").glob("*.mp4"))
    assert mp4s
    src_audio = stream(source, "audio")
    for mp4 in mp4s:
        got = decoded_video_frames(mp4)
        assert abs(len(got.pts) - total) <= 1, f"{mp4.name}: {len(got.pts)} frames, expected {total}"
        steps = [b - a for a, b in zip(got.pts, got.pts[1:], strict=False)]
        assert all(abs(s - 1 / float(fps)) < 0.5 / float(fps) for s in steps), f"{mp4.name}: not CFR"
        v = stream(mp4, "video")
        assert v is not None and v["width"] % 2 == 0 and v["height"] % 2 == 0
        assert v.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1")  # square pixels out
        if src_audio is None:
            assert stream(mp4, "audio") is None
            continue
        a = stream(mp4, "audio")
        assert a is not None and a["channels"] == 2
        first, length = decoded_audio_seconds(mp4)
        src_first, src_length = decoded_audio_seconds(source)
        src_v0 = decoded_video_frames(source).pts[0]
        # The output's audio starts with its first frame (silence pads a late start, what came
        # before the first frame is trimmed) and ends where the source's or the video ends.
        assert abs(first) <= 1 / float(fps) + 1e-3, f"{mp4.name}: audio starts at {first:.4f}s"
        expected = min(src_first + src_length - src_v0, len(got.pts) / float(fps))
        assert abs(length - expected) <= AAC_FRAME_S + 1e-3, f"{mp4.name}: audio {length:.4f}s not {expected:.4f}s"


def download(settings: Settings, storage: Storage, video_id: str, out: Path) -> None:
    """Every output of a video, as `reel get` fetches them (checked against its manifest)."""
    manifest = storage.get_bytes(settings.bucket_outputs, f"{video_id}/manifest.json")
    get(storage, settings.bucket_outputs, manifest, out, [], None, lambda _todo, _n: lambda _w: lambda _b: None)
