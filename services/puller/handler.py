"""segment.requested -> segment.pulled: only the bytes a segment needs, in the work area.

A video segment becomes a stream-copied span from the source keyframe at or before its
first frame to a margin past its end, source timestamps kept (-copyts): in MP4 when MP4
carries the codec (it keeps the rotation matrix), else QuickTime, else Matroska. The audio
task decodes the upload's whole audio track into lossless FLAC, as a player would play it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from reel import keys, media, mp4, task
from reel.contract import task_fields, task_key
from reel.faults import fault_point
from reel.media import flags
from reel.parallel import alongside
from reel.scratch import scratch
from reel.segment import SegmentTask
from reel.storage import ObjectMissing
from reel.task import Kind, Output, Permanent, Task
from services.puller.lanes import bind_lane

log = logging.getLogger(__name__)

MARGIN_S = 1.0  # past the segment's end: B-frames and open GOPs need the packets after it


@dataclass(frozen=True)
class Deps(task.Deps):
    # Each live transcoder's segment.pulled partitions and the units queued on each.
    transcoders: Callable[[], list[dict[int, int]]] = lambda: []


def span_args(url: str, start: float, length: float, out: Path, container: str = "mp4", ca_file: str = "") -> list[str]:
    """Stream copy from the keyframe at or before the segment to a margin past its end.
    -seek_timestamp makes the input -ss a source timestamp (not an offset from the
    container's start, which would take a probe of the source to learn). Source
    timestamps are kept (-copyts), so the end is an absolute output -to: a duration
    would count from that keyframe, which may lie tens of seconds earlier."""
    end = start + length + MARGIN_S
    copy = flags(f"-map 0:v:0 -c copy -to {end:.6f} -strict experimental -f {container} -y")
    return [*flags(f"-copyts -seek_timestamp 1 -ss {start:.6f}"), *media.upload_input(url, ca_file), *copy, str(out)]


def audio_args(url: str, out: Path, ca_file: str = "") -> list[str]:
    """The audio, decoded exactly as a player decodes it, into lossless FLAC (Matroska,
    source timestamps kept). A stream copy lost what a decoder trims: the encoder delay of
    an MP3 (LAME's header), an MP4's edit list; MP3 sources came out 35 ms long. Stereo,
    16 bits, as every output is: a quarter of the bytes of the source's own layout."""
    decode = flags("-map 0:a:0 -c:a flac -ac 2 -sample_fmt s16 -f matroska -y")
    return ["-copyts", *media.upload_input(url, ca_file), *decode, str(out)]


def span_bounds(out: Path) -> tuple[float, float]:
    """Where the span's video starts and ends, on the source's clock: from an MP4 span's
    sample table (its source timestamps an empty edit before the media; a small node's
    ffprobe cost half a second a pull), else from ffprobe."""
    packets = mp4.from_moov(mp4.file_reader(out), mp4.video_packets)
    if packets:
        return min(p[0] for p in packets), max(p[0] + p[2] for p in packets)
    probe = media.probe(out)
    if probe.video is None:
        raise RuntimeError("the pulled span has no video")
    start = probe.video.start_time
    return start, start + (probe.video.duration or probe.duration or 0.0)  # Matroska: the file's


def span_start_of(out: Path, seg: SegmentTask) -> float:
    """The pulled span's first video timestamp (the source keyframe at or before the
    segment), after checking that the span covers the segment."""
    span_start, span_end = span_bounds(out)
    if span_end < min(seg.start_s + seg.length_s, seg.video_start + seg.total_s) - 2 * seg.frame_s:
        raise Permanent(
            f"source is truncated: its video ends at {span_end - seg.video_start:.2f}s of {seg.total_s:.2f}s"
        )
    if span_start > seg.start_s + 0.5 * seg.frame_s:
        raise RuntimeError(f"span starts at {span_start:.3f}s, after the segment ({seg.start_s:.3f}s)")
    return span_start


def audio_start_of(out: Path) -> float:
    probe = media.probe(out)
    if probe.audio is None:
        raise Permanent("the source's audio track could not be copied", Kind.UNSUPPORTED_INPUT)
    return probe.audio.start_time


def handle(task: Task, deps: Deps) -> list[Output]:
    ev = task.event
    src = ev["source"]
    try:
        deps.storage.stat(src["bucket"], src["key"])
    except ObjectMissing as exc:
        raise Permanent(f"source object {src['bucket']}/{src['key']} does not exist", Kind.SOURCE_MISSING) from exc
    url = deps.storage.presign_get(src["bucket"], src["key"])
    with scratch(deps.settings, "pull") as tmp:
        if ev["track"] == "audio":
            out, name = tmp / "audio.mka", "audio.mka"
            media.run_ffmpeg(audio_args(url, out, deps.settings.s3_ca), timeout=600, cancel=task.cancel, nice=0)
            check = partial(audio_start_of, out)
        else:
            out, name = tmp / "span.mp4", "span.mp4"
            seg = SegmentTask.of(ev)
            start, length = seg.start_s, seg.length_s
            media.copy_into(  # MP4 if it carries the codec, else QuickTime, else Matroska
                lambda container: span_args(url, start, length, out, container, deps.settings.s3_ca),
                timeout=120 + 4 * length,
                cancel=task.cancel,
                on_progress=lambda s: task.report(100 * s / (length + MARGIN_S)),
                nice=0,  # a stream copy: short, and it feeds the encoders
            )
            fault_point("mid-pull")
            check = partial(span_start_of, out, seg)
        key = keys.work(ev, task.attempt.attempt_id, name)
        # The upload needs nothing from the checks: it goes while they run (a refused
        # span leaves an object in its attempt's work area, like a killed pull).
        with alongside(deps.storage.put_file, deps.settings.bucket_work, key, out) as upload:
            span_start = check()
        ref = upload.result()
    record = {**task.envelope("segment.pulled"), **task_fields(ev), "span": ref.as_record(), "span_start": span_start}
    key = task_key(ev["video_id"], ev["track"], ev["segment_index"])
    lane = ev.get("lane", -1)
    if lane >= 0:
        lane = lane_now(lane, key, deps, ev.get("lane_guessed", False))
    return [Output("segment.pulled", key, record, partition=lane if lane >= 0 else None)]


def lane_now(lane: int, key: str, deps: Deps, guessed: bool = False) -> int:
    """The splitter's lane (a transcoder's partition), or a less loaded transcoder's when the
    fleet it was laid for is not the fleet now. A failed look keeps the lane."""
    try:
        members = deps.transcoders()
    except Exception as exc:  # noqa: BLE001 - the lane still works, only less balanced
        log.warning("transcoders' queues not read (%s): %s stays on lane %d", exc, key, lane)
        return lane
    bound = bind_lane(lane, members, key, guessed)
    if bound != lane:
        queued = [sum(m.values()) for m in members if m]
        log.info("%s: lane %d -> %d (units queued per transcoder: %s)", key, lane, bound, queued)
    return bound
