"""video.requested -> video.split, one segment.requested per segment, and the audio task."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from reel import callback_target, keys, ladder, media, pipeline, task
from reel.contract import Registry, task_key
from reel.faults import fault_point
from reel.media import flags
from reel.mp4 import read_video_samples
from reel.scratch import scratch
from reel.settings import Settings
from reel.storage import ObjectMissing
from reel.task import Kind, Output, Permanent, Task
from services.splitter.plan import (
    dispatch_order,
    fleet_for,
    gop_frames,
    lane_owners,
    lanes,
    plan_lanes,
    pull_partitions,
    segment_cost,
    segment_costs,
    split_evenly,
)
from services.splitter.reuse import reuse_generation

log = logging.getLogger(__name__)

FORMATS = {"hls", "mp4"}
AUDIO = -1  # the audio task's unit id beside the segments' indexes
# Videos requested this close together are one burst, split in parallel before the backlog
# shows any of them: the benchmark's seven came within a second and were split over 6-12 s.
BURST_WINDOW_S = 10.0


@dataclass(frozen=True)
class Deps(task.Deps):
    transcoders: Callable[[], list[list[int]]]  # each live transcoder's segment.pulled partitions
    registry: Registry = field(default_factory=Registry)
    heading_for: Callable[[], int] = lambda: 0  # the autoscaler's desired transcoders (0: none says)
    requested_since: Callable[[int], set[str]] = lambda _ms: set()  # ids of videos requested from then on
    partitions: Callable[[], int] = lambda: 16  # of segment.pulled
    pullers: Callable[[], list[list[int]]] = lambda: []  # each live puller's segment.requested partitions


def needs_remux(probe: media.Probe) -> bool:
    """Anything but an MP4 or QuickTime file with a frame count and a duration in its
    headers is remuxed once, whole (stream copy), into one: every later step seeks by its
    index and counts on it. An FLV's or a Matroska's span seeks were cut short without."""
    v = probe.video
    return v is None or v.frames is None or v.duration is None or not probe.format_name.startswith("mov,")


def frame_count(video: media.VideoStream, duration: float, fps: Fraction) -> int:
    """Output frames: the header's count for constant frame rate; for variable frame
    rate (average differs from nominal), the duration at the nominal rate (capped)."""
    vfr = video.avg_frame_rate > 0 and abs(float(video.avg_frame_rate / fps) - 1) > 0.01
    if video.frames and not vfr and fps == video.frame_rate:
        return video.frames
    return round(duration * fps)


def check_limits(settings: Settings, video: media.VideoStream, duration: float) -> None:
    if duration <= 0:
        raise Permanent("source has zero duration")
    if duration > settings.max_duration_s:
        raise Permanent(
            f"source lasts {duration:.0f}s, over the limit of {settings.max_duration_s:.0f}s", Kind.UNSUPPORTED_INPUT
        )
    if max(video.width, video.height) > settings.max_dimension:
        raise Permanent(
            f"source is {video.width}x{video.height}, over the limit of {settings.max_dimension} pixels a side",
            Kind.UNSUPPORTED_INPUT,
        )


def probe_source(url: str, ca_file: str = "") -> media.Probe:
    try:
        probe = media.probe(url, upload=True, ca_file=ca_file)
    except media.MediaError as exc:
        if exc.verdict is not None:  # refused for a reason ffmpeg names: say that one
            raise Permanent(f"source is not a readable video: {exc}", exc.verdict.kind) from exc
        raise Permanent(f"source is not a readable video (truncated, corrupt or not media): {exc}") from exc
    if probe.video is None and probe.audio is None and not probe.duration:
        raise Permanent("source is empty: zero duration and no streams")
    if probe.video is None:
        raise Permanent("source has no video stream", Kind.UNSUPPORTED_INPUT)
    if probe.format_name in IMAGE_FORMATS or probe.video.frames == 1:
        raise Permanent(f"source is a still image ({probe.format_name}), not a video", Kind.UNSUPPORTED_INPUT)
    return probe


IMAGE_FORMATS = ("png_pipe", "jpeg_pipe", "image2", "bmp_pipe", "gif", "webp_pipe", "tiff_pipe")


def examine(task: Task, deps: Deps, src: dict[str, Any]) -> tuple[dict[str, Any], media.Probe, bool]:
    """Probe the source by its headers over a presigned URL (never downloading it); a
    source without an index has its video remuxed once into the work area. Returns where
    the video tasks read, its probe, and whether the source has audio (the audio task
    always reads the upload itself: a remux changes what a decoder trims of it)."""
    url = deps.storage.presign_get(src["bucket"], src["key"])
    ca = deps.settings.s3_ca
    probe = probe_source(url, ca)
    has_audio = probe.audio is not None
    if not needs_remux(probe):
        return src, probe, has_audio
    ev = task.event
    with scratch(deps.settings, "remux") as tmp:
        out = tmp / "source.mp4"
        reorders = probe.video is not None and probe.video.reorders
        media.copy_into(lambda box: remux_args(url, out, box, reorders, ca), timeout=3600, cancel=task.cancel)
        ref = deps.storage.put_file(deps.settings.bucket_work, keys.remux(ev, task.attempt.attempt_id), out)
        probe = probe_source(str(out))
    remuxed = {"bucket": ref.bucket, "key": ref.key, "etag": ref.sha256, "size": ref.size}
    return remuxed, probe, has_audio


def source_samples(deps: Deps, src: dict[str, Any], probe: media.Probe) -> list[tuple[float, int]] | None:
    """The source's video samples (time, bytes) from its MP4/QuickTime index, read by range."""
    if not probe.format_name.startswith("mov,"):
        return None
    return read_video_samples(lambda at, n: deps.storage.get_range(src["bucket"], src["key"], at, n))


def remux_args(url: str, out: Path, fmt: str, reorders: bool, ca_file: str = "") -> list[str]:
    """The video, stream-copied, its timestamps kept (-copyts): the audio task decodes
    the upload itself on the same clock. Containers such as AVI keep no presentation
    times: with B-frames they are made up (+genpts, one frame of reordering delay);
    without, they are the decode times, as a player takes them (made up, the video
    came 40 ms late)."""
    copy = flags(f"-map 0:v:0 -c copy -strict experimental -f {fmt} -y")
    return [
        "-copyts",
        *(["-fflags", "+genpts"] if reorders else []),
        *media.upload_input(url, ca_file),
        *copy,
        str(out),
    ]


def audio_share(profile: ladder.Profile, video: media.VideoStream, display: tuple[int, int], fps: Fraction) -> float:
    """What a second of the audio task costs against a second of the video: its share by
    the ladder (ladder.audio_share), or the constant measured on the tiny ladder for a
    codec not measured. The lanes weigh the audio by it, and the tracker (from video.split)."""
    share = ladder.audio_share(profile, ladder.renditions(profile, *display), video.width, video.height, fps)
    return pipeline.AUDIO_COST if share is None else share


def burst_siblings(deps: Deps, ev: dict[str, Any]) -> int:
    """Other videos requested in this one's burst: from BURST_WINDOW_S before it on."""
    since = ev["produced_at"] - int(BURST_WINDOW_S * 1000)
    return len(deps.requested_since(since) - {ev["video_id"]})


def handle(task: Task, deps: Deps) -> list[Output]:
    ev = task.event
    try:
        profile = ladder.load(ev["profile"], deps.settings.profiles_dir)
    except ladder.UnknownProfile as exc:
        raise Permanent(str(exc)) from exc
    formats = list(ev["formats"])
    if not formats or set(formats) - FORMATS:
        raise Permanent(f"unknown output format in {formats}; known: {', '.join(sorted(FORMATS))}")
    if ev.get("callback_url"):  # refused now, with the reason, rather than never delivered
        try:
            callback_target.check(ev["callback_url"], callback_target.allow_list(deps.settings.callback_allow))
        except callback_target.Refused as exc:
            raise Permanent(str(exc)) from exc
    if ev.get("reuse_generation") is not None:  # reel retry --segment
        reused = reuse_generation(task, deps, deps.registry)
        if reused is not None:
            return reused
    src = ev["source"]
    try:
        deps.storage.stat(src["bucket"], src["key"])
    except ObjectMissing as exc:
        raise Permanent(f"source object {src['bucket']}/{src['key']} does not exist", Kind.SOURCE_MISSING) from exc
    upload = src
    src, probe, has_audio = examine(task, deps, src)
    fault_point("mid-work")
    video = probe.video
    assert video is not None
    fps = media.frame_rate(video)
    duration = video.duration or probe.duration or 0.0
    total = frame_count(video, duration, fps)
    check_limits(deps.settings, video, duration)
    gop = gop_frames(fps, profile.gop_seconds)
    s = deps.settings
    fleet = deps.transcoders()
    target = s.autoscale_target_s if s.autoscale else 0.0
    most = min(s.autoscale_max, deps.partitions()) if s.autoscale else 0
    work = duration * pipeline.share(pipeline.TRANSCODER)  # as the tracker's backlog weighs it
    heading, siblings = (deps.heading_for(), burst_siblings(deps, ev)) if target else (0, 0)
    workers = s.plan_workers or fleet_for(len(fleet), heading, work, target, most, siblings)
    samples = source_samples(deps, src, probe)
    width, height = ladder.display_size(video.width, video.height, video.sample_aspect, video.rotation)
    share = audio_share(profile, video, (width, height), fps)
    audio = total * share if has_audio else 0.0  # the audio task's cost in frames of the video's encode
    gop_costs = segment_costs(split_evenly(total, gop, -(-total // gop)), fps, samples)  # one a GOP
    bounds = (s.oversubscription, s.min_segment_s, s.max_segment_s)
    planned = plan_lanes(total, fps, workers, gop, gop_costs, audio, *bounds)
    segments = [seg for lane in planned for seg in lane]
    common: dict[str, Any] = {
        "source": src,
        "profile": profile.name,
        "formats": formats,
        "fps_num": fps.numerator,
        "fps_den": fps.denominator,
        "gop_frames": gop,
    }
    task_common = {
        **common,
        "segment_count": len(segments),
        "total_frames": total,
        "video_start": video.start_time,
        "has_audio": has_audio,
        "display_width": width,
        "display_height": height,
    }
    split = {
        **task.envelope("video.split"),
        **common,
        "frame_count": total,
        "duration": total / float(fps),
        "width": width,
        "height": height,
        "has_audio": has_audio,
        "audio_share": share,
        "video_start": video.start_time,
        "workers": workers,
        "segments": [{"index": x.index, "start_frame": x.start_frame, "frame_count": x.frame_count} for x in segments],
    }
    vid = ev["video_id"]
    outputs = [Output("video.split", vid, split)]
    groups = [[(seg.index, segment_cost(seg, gop, gop_costs)) for seg in lane] for lane in planned]
    if audio:
        groups[-1].append((AUDIO, audio))
    groups = [g for g in groups if g]
    units = [unit for group in groups for unit in group]
    # Members caught mid-rebalance hold nothing yet: the lanes then go over the partitions
    # (pinned plan or not), or the one member holding partitions would be given every unit.
    owners, guessed = lane_owners(fleet, workers, deps.partitions(), len(units))
    log.info(
        "split %s for %d transcoders (burst siblings: %d) into %d units: members' partitions %s, lanes over %d owners",
        vid,
        workers,
        siblings,
        len(units),
        fleet,
        len(owners),
    )
    # A guessed lane is settled unit by unit as it is pulled: each unit goes on its own.
    if guessed:
        groups = [[unit] for unit in units]
    lane = lanes(groups, owners)
    order = dispatch_order(groups)
    pull_on = pull_partitions(order, deps.pullers())
    by_index = {seg.index: seg for seg in segments}
    for unit in order:
        seg = by_index.get(unit)
        if seg is None:  # the audio: the whole track, decoded from the upload itself
            env = task.envelope("segment.requested", AUDIO, segment_index=None, track="audio")
            rec = {**env, **task_common, "source": upload, "start_frame": 0, "frame_count": total}
            key = task_key(vid, "audio", None)
        else:
            env = task.envelope("segment.requested", seg.index, segment_index=seg.index, track="video")
            rec = {**env, **task_common, "start_frame": seg.start_frame, "frame_count": seg.frame_count}
            key = task_key(vid, "video", seg.index)
        rec["lane"], rec["lane_guessed"] = lane.get(unit, -1), guessed
        outputs.append(Output("segment.requested", key, rec, partition=pull_on.get(unit)))
    return outputs
