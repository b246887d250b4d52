"""Status and progress from events (pure): states, the merge of each event into the rows
it touches, and percent.

Events of one video arrive on different topics in any order, so every rule here is
order-insensitive: a video's state only moves forward (a newer generation starts over), a
segment shows the furthest stage seen and the worker of that stage, the latest heartbeat
wins, and percent never goes backwards. The store reads a row, merges the event with these
functions and writes the row back: the rules live here, in one language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reel import pipeline

# The way a video moves (failed after completed: a failure after completion is kept), and
# the way a segment moves.
VIDEO_STATES = ("queued", "splitting", "transcoding", "stitching", "completed", "failed")
SEGMENT_STAGES = ("planned", "requested", "pulled", "transcoded", "uploaded")
FINISHED = ("completed", "failed")
TOPIC_STAGE = {
    "segment.requested": "requested",
    "segment.pulled": "pulled",
    "segment.transcoded": "transcoded",
    "segment.uploaded": "uploaded",
}
# The worker group that consumes each input topic (for lag), and, for each event, the
# event before it whose time to it is that stage's duration (queueing included).
GROUP_INPUTS = pipeline.group_inputs()
STAGE_OF_EVENT = pipeline.step_of_event()
# Share of a segment's cost that is done once it reaches a stage (pull, transcode, push).
DONE_AT = {"planned": 0.0, "requested": 0.0, "pulled": 0.1, "transcoded": 0.9, "uploaded": 1.0}
# The span of that cost each worker covers while it works, from its heartbeats.
WORKING = {s.name: s.span for s in pipeline.PIPELINE if s.span[1] > 0}
# What one generation of a video records (the rest is the video's own).
GENERATION_COLUMNS = (
    "profile",
    "source",
    "request_id",
    "callback_url",
    "segment_count",
    "has_audio",
    "duration",
    "outputs",
    "error",
    "error_stage",
    "error_kind",
    "requested_at",
    "split_at",
    "completed_at",
    "failed_at",
)
TIMES = ("requested_at", "split_at", "completed_at", "failed_at")
SEGMENT_DEFAULTS = {
    "attempt": 1,
    "worker": None,
    "working": None,
    "work_percent": 0.0,
    "media_seconds": 0.0,
    "retrying": False,
    "last_beat": None,
    "error": None,
}


def later(order: tuple[str, ...], a: str, b: str) -> str:
    """The further of two states along `order`."""
    return a if order.index(a) >= order.index(b) else b


def reached(stage: str, milestone: str) -> bool:
    return SEGMENT_STAGES.index(stage) >= SEGMENT_STAGES.index(milestone)


Row = dict[str, Any]


def merge_video(old: Row | None, generation: int, state: str, fields: dict[str, Any]) -> Row | None:
    """The video row after an event of `generation` that puts it in `state` and sets
    `fields`; None when a newer generation holds the row (the event changes nothing). A
    newer generation starts over: nothing the older one left is kept, whatever the order
    the two generations' events arrive in."""
    if old is not None and generation < old["generation"]:
        return None
    if old is None or generation > old["generation"]:
        row = {"generation": generation, "state": state, "percent": 0.0, **dict.fromkeys(GENERATION_COLUMNS), **fields}
    else:
        row = {
            **old,
            "state": later(VIDEO_STATES, old["state"], state),
            **{k: v for k, v in fields.items() if v is not None},
        }
        for k in TIMES:  # when it first got there, whichever of two such events comes first
            if old.get(k) is not None and fields.get(k) is not None:
                row[k] = min(old[k], fields[k])
    if row["state"] == "completed":  # done, whatever its segments' rows say
        row["percent"] = 100.0
    return row


def merge_segment(
    old: Row | None, stage: str, attempt: int | None = None, worker: str | None = None, **fields: Any
) -> Row:
    """A segment row after a stage's event: the furthest stage, the worker of the furthest
    stage, the highest attempt; other fields fill in."""
    base = old or {"stage": stage, **SEGMENT_DEFAULTS}
    row = {**base, "stage": later(SEGMENT_STAGES, base["stage"], stage)}
    if attempt is not None:
        row["attempt"] = attempt if old is None else max(base["attempt"], attempt)
    if worker is not None and reached(stage, base["stage"]):
        row["worker"] = worker
    return {**row, **{k: v for k, v in fields.items() if v is not None}}


@dataclass(frozen=True)
class Beat:
    """What a heartbeat says of a segment."""

    attempt: int
    worker: str
    working: str | None  # the stage at work, None once handed back or failed
    work_percent: float
    retrying: bool
    at: datetime
    error: str | None


def merge_beat(old: Row | None, beat: Beat) -> Row:
    """A segment row after a heartbeat: the latest beat says who works on it and how far."""
    if old is None:
        return {
            "stage": "planned",
            **SEGMENT_DEFAULTS,
            "attempt": beat.attempt,
            "worker": beat.worker,
            "working": beat.working,
            "work_percent": beat.work_percent,
            "retrying": beat.retrying,
            "last_beat": beat.at,
            "error": beat.error,
        }
    newer = old["last_beat"] is None or beat.at >= old["last_beat"]
    return {
        **old,
        "attempt": max(old["attempt"], beat.attempt),
        "working": beat.working if newer else old["working"],
        "work_percent": beat.work_percent if newer else old["work_percent"],
        "retrying": old["retrying"] or beat.retrying,
        "last_beat": beat.at if newer else old["last_beat"],
        "error": beat.error if beat.error is not None else old["error"],
    }


@dataclass(frozen=True)
class Segment:
    stage: str
    media_seconds: float
    working: str | None = None  # the worker kind on it now
    work_percent: float = 0.0


# The stage a worker kind's work ends at: a heartbeat is stale once the segment is past it.
ENDS_AT = {"puller": "pulled", "transcoder": "transcoded", "pusher": "uploaded"}


def current_work(stage: str, working: str | None) -> str | None:
    """The worker kind on the segment now, or None when its last heartbeat is stale."""
    if working is None or working not in ENDS_AT or reached(stage, ENDS_AT[working]):
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


def percent_after(state: str, percent: float, segments: list[Segment]) -> float:
    """A video's percent once an event is in: never back while in flight (99 at most until
    completed); a completed one is done; a failed one is what its segments finished."""
    if state == "completed":
        return percent
    if state == "failed":
        return settled_percent(segments)
    return max(percent, min(99.0, video_percent(segments)))


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


def backlog(units: list[tuple[str, float]], stitching_s: float) -> dict[str, float]:
    """Each worker group's backlog: media-seconds of work it has still to do for the videos
    in flight - its units waiting or in flight, and those still upstream of it, which will
    be its own once the stage before is done - weighted by stage cost (the spans the percent
    uses: pull 0.1, transcode 0.8, push 0.1; the audio task by the share video.split gives
    it). A queue of diverse sizes is measured by the work in it, and the transcoders see a
    burst when it is split, not only as fast as its units are pulled. units: (stage,
    media-seconds) of unfinished videos' segments (finished ones count for none);
    stitching_s: the length of videos being stitched, the pusher's whole-video work."""
    out = {spec.group: 0.0 for spec in pipeline.PIPELINE if spec.name in ENDS_AT}
    for stage, seconds in units:
        for spec in pipeline.PIPELINE:
            if spec.name in ENDS_AT and not reached(stage, ENDS_AT[spec.name]):
                out[spec.group] += seconds * pipeline.share(spec)
    out[pipeline.PUSHER.group] += stitching_s * pipeline.share(pipeline.PUSHER)
    return out


def oldest(
    videos: list[tuple[str, float, float | None]], base_s: float, per_media_s: float
) -> dict[str, tuple[float, float]]:
    """Per unfinished state: (age of its oldest video, largest age / budget), from
    (state, age_s, length_s or None before the split) of each unfinished video; every
    unfinished state appears, at 0 when it holds none. A budget is base_s + per_media_s x
    length: a long video may take longer before it counts as late."""
    out = {state: (0.0, 0.0) for state in VIDEO_STATES if state not in FINISHED}
    for state, age_s, length_s in videos:
        budget = base_s + per_media_s * (length_s or 0.0)
        age, late = out.get(state, (0.0, 0.0))
        out[state] = (max(age, age_s), max(late, age_s / budget))
    return out
