"""segment.transcoded -> segment.uploaded, and at the last segment: stitch, publish ->
video.completed (or video.failed when the stitch gate says no).

Keyed by video, so one pusher at a time owns a video's assembly: placing a segment
(place.py), joining and packaging the video (stitch.py), uploading it and its manifest
(publish.py).
"""

from __future__ import annotations

import logging
import time

from reel import ladder
from reel.ladder import Profile, Rendition
from reel.scratch import scratch
from reel.task import Deps, Kind, Output, Task
from services.pusher.place import all_in, place
from services.pusher.publish import publish
from services.pusher.stitch import GateFailed, stitch

log = logging.getLogger(__name__)


def handle(task: Task, deps: Deps) -> list[Output]:
    ev = task.event
    profile = ladder.load(ev["profile"], deps.settings.profiles_dir)
    uploaded = {
        **task.envelope("segment.uploaded"),
        "profile": ev["profile"],
        "segment_count": ev["segment_count"],
        "renditions": place(deps, ev),
    }
    outputs = [Output("segment.uploaded", ev["video_id"], uploaded)]
    rends = ladder.renditions(profile, ev["display_width"], ev["display_height"])
    if all_in(deps, ev, rends):
        outputs.append(assemble(task, deps, profile, rends))
    return outputs


def assemble(task: Task, deps: Deps, profile: Profile, rends: list[Rendition]) -> Output:
    try:
        with scratch(deps.settings, "stitch") as tmp:
            began = time.monotonic()
            made = stitch(task, deps, profile, rends, tmp)
            joined = time.monotonic()
            done = publish(task, deps, made)
            # The stitch is the one serial step after the fleet's work: its parts, timed.
            log.info("stitched in %.2fs, published in %.2fs", joined - began, time.monotonic() - joined)
    except GateFailed as exc:
        return failed(task, f"stitch gate: {exc}", Kind.STITCH_GATE)
    record = {
        **task.envelope("video.completed", segment_index=None, track="video"),
        "manifest": done.manifest.as_record(),
        "outputs": done.listed,
        "callback_url": None,
    }
    return Output("video.completed", task.event["video_id"], record)


def failed(task: Task, reason: str, kind: Kind) -> Output:
    record = {
        **task.envelope("video.failed", segment_index=None, track="video"),
        "stage": "pusher",
        "reason": reason,
        "kind": kind.value,
        "detail": None,
        "callback_url": None,
    }
    return Output("video.failed", task.event["video_id"], record)
