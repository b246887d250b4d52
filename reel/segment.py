"""A segment task's numbers, read off its event (every stage's event carries them), so the
frame-rate arithmetic is written once: counted in frames, converted to seconds here."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class SegmentTask:
    fps: Fraction  # the output frame rate
    start_frame: int  # of the segment, on the output grid (0 for the audio task)
    frame_count: int  # of the segment (the whole video for the audio task)
    total_frames: int  # of the video
    video_start: float  # the source's first video timestamp

    @classmethod
    def of(cls, ev: dict[str, Any]) -> SegmentTask:
        return cls(
            Fraction(ev["fps_num"], ev["fps_den"]),
            ev["start_frame"],
            ev["frame_count"],
            ev["total_frames"],
            ev["video_start"],
        )

    @property
    def start_s(self) -> float:
        """The source timestamp of the segment's first frame."""
        return self.video_start + float(self.start_frame / self.fps)

    @property
    def length_s(self) -> float:
        return float(self.frame_count / self.fps)

    @property
    def total_s(self) -> float:
        """The whole video's length at the output frame rate."""
        return float(self.total_frames / self.fps)

    @property
    def frame_s(self) -> float:
        return float(1 / self.fps)


def media_seconds(ev: dict[str, Any]) -> float:
    """Seconds of media a task covers (the backlog's unit of work)."""
    return SegmentTask.of(ev).length_s
