"""video.requested -> video.split, one segment.requested per segment, and the audio task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient

from reel import ladder, media
from reel.contract import task_key
from reel.settings import Settings
from reel.storage import ObjectMissing, Storage
from reel.worker import Output, Permanent, Stage, Task, fail_video
from services.splitter.plan import dispatch_order, gop_frames, plan_segments

FORMATS = {"hls", "mp4"}


@dataclass(frozen=True)
class Deps:
    settings: Settings
    storage: Storage
    transcoders: Callable[[], int]  # live transcoder workers, for sizing the plan


def count_members(admin: AdminClient, group: str) -> int:
    """Members of a consumer group (at least 1: a plan is never sized for nobody)."""
    try:
        (future,) = admin.describe_consumer_groups([group]).values()
        return max(1, len(future.result(10).members))
    except Exception:  # noqa: BLE001 - no group yet
        return 1


def handle(task: Task, deps: Deps) -> list[Output]:
    ev = task.event
    try:
        profile = ladder.load(ev["profile"])
    except ladder.UnknownProfile as exc:
        raise Permanent(str(exc)) from exc
    formats = list(ev["formats"])
    if not formats or set(formats) - FORMATS:
        raise Permanent(f"unknown output format in {formats}; known: {', '.join(sorted(FORMATS))}")
    src = ev["source"]
    try:
        deps.storage.stat(src["bucket"], src["key"])
    except ObjectMissing as exc:
        raise Permanent(f"source object {src['bucket']}/{src['key']} does not exist") from exc
    # Headers only, over a presigned URL: the source is never downloaded here.
    url = deps.storage.presign_get(src["bucket"], src["key"])
    try:
        probe = media.probe(url)
    except media.MediaError as exc:
        raise Permanent(f"source is not a readable video: {exc}") from exc
    if probe.video is None:
        raise Permanent("source has no video stream")
    video = probe.video
    fps = media.frame_rate(video)
    duration = video.duration or probe.duration
    if not duration or duration <= 0:
        raise Permanent("source has no duration (zero-length or unindexed)")
    total = video.frames or round(duration * fps)
    gop = gop_frames(fps, profile.gop_seconds)
    s = deps.settings
    workers = deps.transcoders()
    segments = plan_segments(total, fps, workers, gop, s.oversubscription, s.min_segment_s, s.max_segment_s)
    width, height = ladder.display_size(video.width, video.height, video.sample_aspect, video.rotation)
    has_audio = probe.audio is not None
    common: dict[str, Any] = {
        "source": src, "profile": profile.name, "formats": formats,
        "fps_num": fps.numerator, "fps_den": fps.denominator, "gop_frames": gop,
    }  # fmt: skip
    task_common = {**common, "segment_count": len(segments), "total_frames": total,
                   "video_start": video.start_time, "has_audio": has_audio,
                   "display_width": width, "display_height": height}  # fmt: skip
    split = {
        **task.envelope("video.split"), **common, "frame_count": total,
        "duration": total / float(fps), "width": width, "height": height,
        "has_audio": has_audio, "video_start": video.start_time, "workers": workers,
        "segments": [{"index": x.index, "start_frame": x.start_frame, "frame_count": x.frame_count}
                     for x in segments],
    }  # fmt: skip
    vid = ev["video_id"]
    outputs = [Output("video.split", vid, split)]
    for seg in dispatch_order(segments):
        env = task.envelope("segment.requested", seg.index, segment_index=seg.index, track="video")
        rec = {**env, **task_common, "start_frame": seg.start_frame, "frame_count": seg.frame_count}
        outputs.append(Output("segment.requested", task_key(vid, "video", seg.index), rec))
    if has_audio:
        env = task.envelope("segment.requested", -1, segment_index=None, track="audio")
        rec = {**env, **task_common, "start_frame": 0, "frame_count": total}
        outputs.append(Output("segment.requested", task_key(vid, "audio", None), rec))
    return outputs


def make_stage(settings: Settings, storage: Storage) -> Stage:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deps = Deps(settings, storage, lambda: count_members(admin, "reel.transcoder"))
    return Stage("splitter", "video.requested", lambda t: handle(t, deps),
                 on_dead_letter=fail_video("splitter"))  # fmt: skip
