"""Status and progress from events (pure): states, ranks and percent.

Events of one video arrive on different topics in any order, so every rule here is
order-insensitive: a state only moves up its rank, a segment shows the furthest stage
seen, and percent never goes backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from reel import pipeline

VIDEO_RANK = {"queued": 0, "splitting": 1, "transcoding": 2, "stitching": 3, "completed": 4, "failed": 5}
SEGMENT_RANK = {"planned": 0, "requested": 1, "pulled": 2, "transcoded": 3, "uploaded": 4}
TOPIC_STAGE = {"segment.requested": "requested", "segment.pulled": "pulled",
               "segment.transcoded": "transcoded", "segment.uploaded": "uploaded"}  # fmt: skip
# The worker group that consumes each input topic (for lag), and, for each event, the
# event before it whose time to it is that stage's duration (queueing included).
GROUP_INPUTS = pipeline.group_inputs()
STAGE_OF_EVENT = pipeline.step_of_event()
# Share of a segment's cost that is done once it reaches a stage (pull, transcode, push).
DONE_AT = {"planned": 0.0, "requested": 0.0, "pulled": 0.1, "transcoded": 0.9, "uploaded": 1.0}
# The span of that cost each worker covers while it works, from its heartbeats.
WORKING = {"puller": (0.0, 0.1), "transcoder": (0.1, 0.9), "pusher": (0.9, 1.0)}
AUDIO_WEIGHT = 0.1  # the audio track is encoded once, cheaply: a tenth of its duration in cost


@dataclass(frozen=True)
class Segment:
    stage: str
    media_seconds: float
    working: str | None = None  # the worker kind on it now
    work_percent: float = 0.0


# The stage a worker kind's work ends at: a heartbeat is stale once the segment is past it.
ENDS_AT = {
    "puller": SEGMENT_RANK["pulled"],
    "transcoder": SEGMENT_RANK["transcoded"],
    "pusher": SEGMENT_RANK["uploaded"],
}


def current_work(stage: str, working: str | None) -> str | None:
    """The worker kind on the segment now, or None when its last heartbeat is stale."""
    if working is None or SEGMENT_RANK.get(stage, 0) >= ENDS_AT.get(working, 0):
        return None
    return working


def segment_progress(seg: Segment) -> float:
    """Share of a segment's work done, 0..1."""
    done = DONE_AT.get(seg.stage, 0.0)
    if current_work(seg.stage, seg.working):
        low, high = WORKING[seg.working]  # type: ignore[index]
        if done <= low:
            done = max(done, low + (high - low) * min(100.0, seg.work_percent) / 100)
    return done


def video_percent(segments: list[Segment]) -> float:
    """Media-seconds done over total, weighted by stage cost."""
    total = sum(s.media_seconds for s in segments)
    if total <= 0:
        return 0.0
    return 100 * sum(s.media_seconds * segment_progress(s) for s in segments) / total


def settled_percent(segments: list[Segment]) -> float:
    """A failed video's percent: the work its segments finished, heartbeats aside. The
    running maximum an active video shows depends on the order its events were read in;
    this depends only on the furthest stage of each segment."""
    return video_percent([Segment(s.stage, s.media_seconds) for s in segments])


def all_uploaded(segments: list[Segment], expected: int) -> bool:
    return len(segments) >= expected > 0 and all(s.stage == "uploaded" for s in segments)


def stalled(last_beat_age_s: float | None, working: str | None, stage: str, stall_s: float) -> bool:
    """A worker holds the segment but its heartbeats stopped."""
    return current_work(stage, working) is not None and last_beat_age_s is not None and last_beat_age_s > stall_s
