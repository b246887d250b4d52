"""segment.pulled -> segment.transcoded: the segment cut exactly out of its span and
encoded into every rung in one ffmpeg run; or the audio track, encoded once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reel import gate, keys, ladder, media
from reel.contract import task_fields
from reel.faults import fault_point
from reel.ladder import Rendition
from reel.parallel import in_threads
from reel.scratch import scratch
from reel.segment import SegmentTask
from reel.storage import ObjectRef
from reel.task import Deps, Output, Permanent, Task
from services.transcoder.encode import audio_args, cut, segment_runs


def encode_timeout(seconds: float) -> float:
    """A hung ffmpeg is killed: generous for a 2-core machine, bounded by the unit length."""
    return 120.0 + 20.0 * seconds


def _progress(
    task: Task, total: float, run: int = 0, runs: int = 1, point: str = "mid-encode"
) -> Callable[[float], None]:
    """Reports percent of the whole task from run `run` of `runs` (two-pass encodes);
    past half of the last run is the fault point `point`."""

    def report(done: float) -> None:
        task.report(100 * (run + min(done / total, 1.0)) / runs if total else 0.0)
        if run == runs - 1 and done >= total / 2:
            fault_point(point)

    return report


def transcode_video(task: Task, deps: Deps, span: Path, tmp: Path) -> list[dict[str, Any]]:
    ev = task.event
    profile = ladder.load(ev["profile"], deps.settings.profiles_dir)
    rends = ladder.renditions(profile, ev["display_width"], ev["display_height"])
    seg = SegmentTask.of(ev)
    fps, start, length = seg.fps, seg.start_s, seg.length_s
    outs = [tmp / f"{r.name}.mp4" for r in rends]
    runs = segment_runs(
        span, cut(start, ev["span_start"], fps), ev["frame_count"], fps, rends, profile, ev["gop_frames"], outs
    )
    for n, args in enumerate(runs):
        media.run_ffmpeg(
            args, timeout=encode_timeout(length), cancel=task.cancel, on_progress=_progress(task, length, n, len(runs))
        )

    def check_and_upload(item: tuple[Rendition, Path]) -> dict[str, Any]:
        r, out = item
        # The cut must be frame-exact, start at 0 with no gap, and keep the GOP grid.
        problems = gate.check_video(media.video_packets(out), fps, ev["frame_count"], ev["gop_frames"])
        if problems:
            raise RuntimeError(f"segment {ev['segment_index']} {r.name}: {'; '.join(problems)}")
        ref = deps.storage.put_file(deps.settings.bucket_work, keys.work(ev, task.attempt.attempt_id, out.name), out)
        return {
            "rung": r.name,
            "codec": "hevc" if profile.hevc else "h264",
            "width": r.width,
            "height": r.height,
            "bitrate": r.bitrate,
            "object": ref.as_record(),
        }

    # The rungs are independent: checked and uploaded side by side, while this worker's core is free.
    return in_threads(check_and_upload, list(zip(rends, outs, strict=True)))


def transcode_audio(task: Task, deps: Deps, src: Path, tmp: Path) -> list[dict[str, Any]]:
    ev = task.event
    spec = ladder.load(ev["profile"], deps.settings.profiles_dir).audio
    seg = SegmentTask.of(ev)
    duration = seg.total_s
    out = tmp / "audio.m4a"
    offset = ev["span_start"] - ev["video_start"]
    media.run_ffmpeg(
        audio_args(src, offset, duration, spec, out),
        timeout=encode_timeout(duration),
        cancel=task.cancel,
        on_progress=_progress(task, duration, point="mid-encode-audio"),
    )
    # A source's audio may end before its video: only its start and its bound are known here.
    problems = gate.check_audio(media.audio_packets(out), spec.sample_rate, duration, seg.fps, at_most=True)
    if problems:
        raise RuntimeError(f"audio: {'; '.join(problems)}")
    key = keys.work(ev, task.attempt.attempt_id, out.name)
    ref = deps.storage.put_file(deps.settings.bucket_work, key, out)
    return [
        {"rung": "audio", "codec": "aac", "width": 0, "height": 0, "bitrate": spec.bitrate, "object": ref.as_record()}
    ]


def handle(task: Task, deps: Deps) -> list[Output]:
    ev = task.event
    try:
        ladder.load(ev["profile"], deps.settings.profiles_dir)
    except ladder.UnknownProfile as exc:
        raise Permanent(str(exc)) from exc
    with scratch(deps.settings, "transcode") as tmp:
        span = deps.storage.get_file(ObjectRef.from_record(ev["span"]), tmp / "in" / "span")
        if ev["track"] == "audio":
            renditions = transcode_audio(task, deps, span, tmp)
        else:
            renditions = transcode_video(task, deps, span, tmp)
    record = {**task.envelope("segment.transcoded"), **task_fields(ev), "renditions": renditions}
    # Keyed by video: one pusher owns a video's assembly.
    return [Output("segment.transcoded", ev["video_id"], record)]
