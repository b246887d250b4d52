"""What a viewer sees, measured with ffprobe/ffmpeg independently of the pipeline."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


def ffprobe_json(path: Path | str, *args: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)


@dataclass(frozen=True)
class Frames:
    pts: list[float]  # presentation order
    keys: list[bool]


def decoded_video_frames(path: Path | str) -> Frames:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries",
                        "frame=best_effort_timestamp_time,pkt_dts_time,key_frame")  # fmt: skip
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


def decoded_audio_seconds(path: Path | str) -> tuple[float, float]:
    """(first sample's time, decoded length in seconds) of the first audio stream."""
    data = ffprobe_json(path, "-select_streams", "a:0", "-show_entries",
                        "frame=best_effort_timestamp_time,nb_samples:stream=sample_rate")  # fmt: skip
    frames = data["frames"]
    rate = int(data["streams"][0]["sample_rate"])
    first = _time(frames[0])
    return first, sum(int(f["nb_samples"]) for f in frames) / rate


def video_bitrate(path: Path | str) -> float:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=size")
    s = stream(path, "video")
    assert s is not None
    return 8 * sum(int(p["size"]) for p in data["packets"]) / float(s["duration"])


def psnr(encoded: Path | str, source: Path | str, width: int, height: int) -> float:
    """Average PSNR of `encoded` against the source scaled to its size."""
    graph = f"[1:v]scale={width}:{height}:flags=bicubic,setsar=1[ref];[0:v]setsar=1[enc];[enc][ref]psnr"
    out = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(encoded), "-i", str(source),
                          "-lavfi", graph, "-f", "null", "-"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    m = re.search(r"PSNR .* average:([0-9.]+|inf)", out.stderr)
    assert m, out.stderr[-500:]
    return float(m.group(1))
