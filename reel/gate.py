"""The stitch gate (pure): what a viewer would notice, checked from a file's packets
(ffprobe's, or the same read from an MP4's sample table: media.video_packets).

Used by the transcoder on every segment it makes, before it uploads it (so a bad one
is retried at once, where it was made), and by the pusher on every final output
before video.completed.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from reel.media import Packet

AAC_FRAME = 1024


def check_video(
    packets: Sequence[Packet], fps: Fraction, frames: int, gop: int, joins: Sequence[int] = (0,)
) -> list[str]:
    """Frame count, a constant step of 1/fps from 0 (no gap), monotonic decode order,
    a keyframe on every GOP boundary and at every join (counted in frames)."""
    problems = []
    if len(packets) != frames:
        problems.append(f"{len(packets)} frames, expected {frames}")
    if not packets:
        return problems
    step = 1 / float(fps)
    dts = [p.dts for p in packets]
    if any(b <= a for a, b in zip(dts, dts[1:], strict=False)):
        problems.append("decode timestamps go backwards")
    by_pts = sorted(packets, key=lambda p: p.pts)
    if abs(by_pts[0].pts) > step / 2:
        problems.append(f"first frame at {by_pts[0].pts:.3f}s, not 0")
    for i, (a, b) in enumerate(zip(by_pts, by_pts[1:], strict=False), start=1):
        if abs(b.pts - a.pts - step) > step / 2:
            problems.append(f"frame {i}: step {b.pts - a.pts:.4f}s, expected {step:.4f}s (a gap)")
            break
    for i in sorted({*joins, *range(0, len(by_pts), gop)}):
        if i < len(by_pts) and not by_pts[i].key:
            problems.append(f"frame {i} is not a keyframe (GOP boundary or join)")
            break
    return problems


def check_audio(
    packets: Sequence[Packet], sample_rate: int, expected_s: float, fps: Fraction, at_most: bool = False
) -> list[str]:
    """Audio starts at 0 and lasts as long as expected (or, with at_most, no longer),
    within one AAC frame and one video frame."""
    if not packets:
        return ["no audio"]
    aac = AAC_FRAME / sample_rate
    problems = []
    first = min(p.pts for p in packets)
    if abs(first) > aac:
        problems.append(f"audio starts at {first:.4f}s, not 0")
    end = max(p.pts + p.duration for p in packets)
    over = end - expected_s
    if (over if at_most else abs(over)) > aac + 1 / float(fps):
        problems.append(f"audio lasts {end:.4f}s, expected {expected_s:.4f}s")
    return problems


def check_hls_sync(video_starts: dict[str, float], audio_start: float, sample_rate: int) -> list[str]:
    """Each rendition starts where the audio does (a player aligns them by timestamp),
    within one AAC frame: the audio's priming sits before its first sample."""
    aac = AAC_FRAME / sample_rate
    return [
        f"HLS {name} starts {start - audio_start:+.3f}s from its audio"
        for name, start in video_starts.items()
        if abs(start - audio_start) > aac + 1e-3
    ]
