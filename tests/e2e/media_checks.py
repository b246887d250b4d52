"""What a viewer sees, measured with ffprobe/ffmpeg independently of the pipeline."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from devstack.baseline import psnr
from reel.media import flags

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
